//! The layers every request passes before a handler (API.md, Conventions):
//! who the client is (peer address or trusted `X-Forwarded-For` hops), rate
//! limits, and body limits enforced before the body is read.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use tavana_kit::error::{ErrorKind, Problem};
use tavana_kit::store::RateLimit;

use crate::AppState;
use crate::error::ApiError;

/// The client's IP as the gateway resolved it, on every request it passes on
/// (the portal forwards it on its own calls to the API).
pub const CLIENT_IP: HeaderName = HeaderName::from_static("x-tavana-client-ip");
/// The portal's proof that [`CLIENT_IP`] on its call was set by the gateway.
pub const FORWARD_TOKEN: HeaderName = HeaderName::from_static("x-tavana-forward-token");

/// Returns a fresh random secret for [`FORWARD_TOKEN`].
pub fn new_forward_token() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

/// Route templates whose bodies may be as large as `max_upload_bytes`: the CSV and
/// JSON uploads of API.md, and the portal's remittance upload form.
const UPLOAD_ROUTES: [&str; 3] = [
    "/v1/employees/import",
    "/v1/remittances",
    "/portal/support/remittances",
];

/// The client IP of a request, as [`client_ip`] resolved it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientIp(pub Option<IpAddr>);

impl std::fmt::Display for ClientIp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(ip) => write!(f, "{ip}"),
            None => f.write_str("unknown"),
        }
    }
}

/// Returns the client's IP: the connection's peer when no proxy is trusted,
/// otherwise the `X-Forwarded-For` entry `trusted_hops` from the right (each
/// trusted proxy appends the address it saw; entries further left are the
/// client's to write and never believed). A header with fewer entries gives
/// its first one; an entry that is not an IP gives the peer.
pub fn resolve_client_ip(
    peer: Option<IpAddr>,
    forwarded_for: Option<&str>,
    trusted_hops: usize,
) -> Option<IpAddr> {
    if trusted_hops == 0 {
        return peer;
    }
    let Some(header) = forwarded_for else {
        return peer;
    };
    let entries: Vec<&str> = header
        .split(',')
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
        .collect();
    let index = entries.len().saturating_sub(trusted_hops);
    entries
        .get(index)
        .and_then(|entry| entry.parse().ok())
        .or(peer)
}

fn header_text<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Option<&'a str> {
    headers.get(name).and_then(|value| value.to_str().ok())
}

/// Compares two secrets in time independent of where they differ.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Refuses a URL whose path or query holds an encoded NUL (`%00`) with a 400
/// `text_has_nul`: no text column stores one (PostgreSQL refuses it), so no path
/// parameter or query value may carry it to a service.
pub async fn refuse_nul_in_url(request: Request, next: Next) -> Response {
    let uri = request.uri();
    let encoded_nul = |part: &str| part.contains("%00");
    if encoded_nul(uri.path()) || uri.query().is_some_and(encoded_nul) {
        return crate::extract::nul_refused().into_response();
    }
    next.run(request).await
}

/// Resolves the client IP once, keeps it in the request's extensions and in the
/// [`CLIENT_IP`] header (replacing whatever the client sent there).
pub async fn client_ip(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let headers = request.headers();
    let from_portal = state.forward_token.as_deref().is_some_and(|token| {
        header_text(headers, &FORWARD_TOKEN)
            .is_some_and(|given| same_secret(given.as_bytes(), token.as_bytes()))
    });
    let forwarded = from_portal
        .then(|| header_text(headers, &CLIENT_IP)?.parse::<IpAddr>().ok())
        .flatten();
    let ip = forwarded.or_else(|| {
        let peer = request
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(address)| address.ip());
        resolve_client_ip(
            peer,
            header_text(headers, &HeaderName::from_static("x-forwarded-for")),
            state.settings.trusted_proxy_hops,
        )
    });
    let headers = request.headers_mut();
    headers.remove(FORWARD_TOKEN);
    headers.remove(CLIENT_IP);
    if let Some(value) = ip.and_then(|ip| HeaderValue::from_str(&ip.to_string()).ok()) {
        headers.insert(CLIENT_IP, value);
    }
    request.extensions_mut().insert(ClientIp(ip));
    next.run(request).await
}

/// Returns the route template a request matched, e.g. `/v1/employees/{national_id}`,
/// for spans and logs: never the raw path, which may hold national IDs or card numbers.
pub fn route_of(request: &Request) -> &str {
    request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str)
}

/// A 429 `rate_limited` with `Retry-After`.
pub fn rate_limited(retry_after: Duration) -> ApiError {
    ApiError(
        Problem::new(
            ErrorKind::RateLimited,
            "rate_limited",
            "Too many requests; try again later.",
            "درخواست‌ها بیش از حد مجاز است؛ کمی بعد دوباره تلاش کنید.",
        )
        .with_extra("retry_after_seconds", retry_after.as_secs().max(1)),
    )
}

/// Counts one request against `key` (per minute, on the real clock, in the shared
/// store so that the limit holds across gateway replicas); a store failure lets the
/// request through rather than taking the API down.
pub async fn check_rate_per_minute(
    state: &AppState,
    key: &str,
    limit: u64,
) -> Result<(), ApiError> {
    count_per_minute(state, key, limit, None).await.map(drop)
}

/// Counts one request as [`check_rate_per_minute`] does and returns what the store holds
/// under `read`, read in the same round trip; `None` when the store failed.
async fn count_per_minute(
    state: &AppState,
    key: &str,
    limit: u64,
    read: Option<&str>,
) -> Result<Option<Option<String>>, ApiError> {
    let rule = RateLimit {
        limit,
        window: Duration::from_secs(60),
    };
    match tavana_kit::store::check_rate_reading(state.store.as_ref(), key, rule, read).await {
        Ok((Ok(()), value)) => Ok(Some(value)),
        Ok((Err(retry_after), _)) => Err(rate_limited(retry_after)),
        Err(error) => {
            tracing::warn!(%error, "rate limiter unavailable");
            Ok(None)
        }
    }
}

/// Returns a store key for a secret-ish value (a card number): its SHA-256, so that
/// the store never holds the value itself.
pub fn hashed_key(prefix: &str, value: &str) -> String {
    format!("{prefix}{}", hex_digest(value))
}

fn hex_digest(value: &str) -> String {
    Sha256::digest(value.as_bytes())
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// Limits requests per client IP per minute. A request whose access token the gateway
/// verified lately also reads its session's revocation in the same round trip to the
/// store, for [`crate::auth::User`] to use (R5).
pub async fn rate_limit_per_ip(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let ip = request
        .extensions()
        .get::<ClientIp>()
        .copied()
        .unwrap_or(ClientIp(None));
    let key = format!("gateway:rate:ip:{ip}");
    let limit = state.settings.rate_limit_per_ip_per_minute;
    let session_id = state.token_keys.remembered_session(request.headers());
    let read = session_id
        .as_deref()
        .map(tavana_kit::revocation::session_key);
    match count_per_minute(&state, &key, limit, read.as_deref()).await {
        Ok(value) => {
            if let (Some(session_id), Some(value)) = (session_id, value) {
                request.extensions_mut().insert(SessionRead {
                    session_id,
                    revoked: tavana_kit::revocation::answer(value.as_deref()),
                });
            }
            next.run(request).await
        }
        Err(refused) => refused.into_response(),
    }
}

/// What the store held about a request's session when its rate was counted: `revoked` as
/// [`tavana_kit::revocation::cached`] tells it.
#[derive(Clone, Debug)]
pub struct SessionRead {
    /// The session of the request's access token.
    pub session_id: String,
    /// `Some(true)` revoked, `Some(false)` active, `None` unknown (ask identity).
    pub revoked: Option<bool>,
}

fn body_too_large(limit: usize) -> Response {
    ApiError::body_too_large(limit).into_response()
}

/// Enforces the body limit of the matched route before the body is read: a declared
/// `Content-Length` above it is refused at once, and a body that streams past it is
/// cut off; either way the answer is a 413 problem.
pub async fn limit_body(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let limit = if UPLOAD_ROUTES.contains(&route_of(&request)) {
        state.settings.max_upload_bytes
    } else {
        state.settings.max_body_bytes
    };
    let declared = header_text(request.headers(), &header::CONTENT_LENGTH)
        .and_then(|length| length.trim().parse::<u64>().ok());
    // usize fits in u64 on every supported target; saturating keeps a huge limit huge.
    let limit_u64 = u64::try_from(limit).unwrap_or(u64::MAX);
    if declared.is_some_and(|length| length > limit_u64) {
        return body_too_large(limit);
    }
    let request = request.map(|body| Body::new(http_body_util::Limited::new(body, limit)));
    let response = next.run(request).await;
    // Extractors that met the cut-off body answer a 413 without the limit (axum's
    // own is plain text): answer ours.
    if response.status() == StatusCode::PAYLOAD_TOO_LARGE {
        return body_too_large(limit);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> Option<IpAddr> {
        Some(text.parse().unwrap())
    }

    #[test]
    fn no_trusted_hop_uses_the_peer_and_ignores_the_header() {
        let client = resolve_client_ip(ip("10.0.0.9"), Some("1.2.3.4"), 0);

        assert_eq!(client, ip("10.0.0.9"));
    }

    #[test]
    fn one_trusted_hop_takes_the_entry_the_proxy_appended() {
        // The client wrote "6.6.6.6" itself; the ingress appended the address it saw.
        let client = resolve_client_ip(ip("10.0.0.9"), Some("6.6.6.6, 1.2.3.4"), 1);

        assert_eq!(client, ip("1.2.3.4"));
    }

    #[test]
    fn two_trusted_hops_take_the_second_entry_from_the_right() {
        let client = resolve_client_ip(ip("10.0.0.9"), Some("6.6.6.6, 1.2.3.4, 10.0.0.7"), 2);

        assert_eq!(client, ip("1.2.3.4"));
    }

    #[test]
    fn a_short_or_broken_header_falls_back_safely() {
        assert_eq!(
            resolve_client_ip(ip("10.0.0.9"), Some("1.2.3.4"), 3),
            ip("1.2.3.4")
        );
        assert_eq!(
            resolve_client_ip(ip("10.0.0.9"), Some("not-an-ip"), 1),
            ip("10.0.0.9")
        );
        assert_eq!(resolve_client_ip(ip("10.0.0.9"), None, 1), ip("10.0.0.9"));
    }

    #[test]
    fn card_numbers_are_hashed_in_store_keys() {
        let key = hashed_key("gateway:rate:card:", "6037990000000012");

        assert!(key.starts_with("gateway:rate:card:"));
        assert!(!key.contains("6037990000000012"));
    }
}
