//! Who is calling: employees and staff by access token (JWT signed by
//! identity), merchant backends by API key, anyone on the public routes.
//! Each extractor yields a context whose `request()` builds the gRPC request
//! with the caller, the trace context and the request id in its metadata.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::FromRequestParts;
use axum::http::HeaderMap;
use axum::http::request::Parts;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use tavana_kit::caller::{Caller, RoleGrant};
use tavana_proto::identity::v1::{CheckSessionRequest, GetSigningKeysRequest};
use tavana_proto::merchant_directory::v1::{AuthenticateMerchantRequest, MerchantStatus};
use tokio::sync::{Mutex, RwLock};
use tonic::metadata::{MetadataMap, MetadataValue};

use crate::AppState;
use crate::edge::SessionRead;
use crate::error::ApiError;

/// Issuer and audience of access tokens, as identity signs them.
const TOKEN_ISSUER: &str = "tavana";
const TOKEN_AUDIENCE: &str = "tavana";
/// Headers carried from the HTTP request into every gRPC call it makes.
const FORWARDED_HEADERS: [&str; 3] = ["traceparent", "tracestate", "x-request-id"];
/// How often an unknown `kid` may trigger a fetch of identity's keys.
const KEY_REFRESH_INTERVAL: Duration = Duration::from_secs(10);
/// How many verified tokens are remembered, and for how long at most: a signature is
/// checked once a minute per token, not on every request. Expiry is still checked on every
/// use, and revocation is checked per request by the caller.
const VERIFIED_CAPACITY: u64 = 20_000;
const VERIFIED_TTL: Duration = Duration::from_secs(60);
/// Clock skew allowed on `exp`, in seconds.
const EXP_LEEWAY: u64 = 5;

/// Claims of an access token.
#[derive(Clone, Debug, Deserialize)]
pub struct Claims {
    /// The employee id.
    pub sub: String,
    /// The employee's national ID.
    pub nid: String,
    /// Role grants, `role` or `role@REGION`.
    #[serde(default)]
    pub roles: Vec<String>,
    /// The session id.
    pub sid: String,
    /// When the token expires (Unix seconds).
    pub exp: u64,
}

/// Public keys that verify access tokens, by `kid`, fetched from identity
/// and fetched again when a token names a key not seen yet (rotation).
pub struct TokenKeys {
    keys: RwLock<HashMap<String, DecodingKey>>,
    last_refresh: Mutex<Option<Instant>>,
    verified: moka::sync::Cache<String, Arc<Claims>>,
}

impl Default for TokenKeys {
    fn default() -> Self {
        TokenKeys {
            keys: RwLock::default(),
            last_refresh: Mutex::default(),
            verified: moka::sync::Cache::builder()
                .max_capacity(VERIFIED_CAPACITY)
                .time_to_live(VERIFIED_TTL)
                .build(),
        }
    }
}

impl TokenKeys {
    async fn key(&self, state: &AppState, kid: &str) -> Option<DecodingKey> {
        if let Some(key) = self.keys.read().await.get(kid) {
            return Some(key.clone());
        }
        self.refresh(state).await;
        self.keys.read().await.get(kid).cloned()
    }

    async fn refresh(&self, state: &AppState) {
        let mut last_refresh = self.last_refresh.lock().await;
        if last_refresh.is_some_and(|at| at.elapsed() < KEY_REFRESH_INTERVAL) {
            return;
        }
        *last_refresh = Some(Instant::now());
        let request =
            tavana_kit::caller::attach(GetSigningKeysRequest {}, &Caller::service("gateway"));
        let response = match state.identity.clone().get_signing_keys(request).await {
            Ok(response) => response.into_inner(),
            Err(status) => {
                tracing::warn!(code = ?status.code(), "cannot fetch token signing keys");
                return;
            }
        };
        let mut keys = HashMap::new();
        for key in response.keys {
            match DecodingKey::from_ed_pem(key.public_key_pem.as_bytes()) {
                Ok(decoding) => {
                    keys.insert(key.kid, decoding);
                }
                Err(error) => tracing::warn!(kid = %key.kid, %error, "unusable signing key"),
            }
        }
        *self.keys.write().await = keys;
    }

    /// Verifies an access token and returns its claims; a token verified in the last
    /// minute is not verified again, but its expiry is.
    pub async fn verify(&self, state: &AppState, token: &str) -> Option<Arc<Claims>> {
        if let Some(cached) = self.cached(token, jsonwebtoken::get_current_timestamp()) {
            return cached;
        }
        let claims = Arc::new(self.verify_signed(state, token).await?);
        self.verified.insert(token.to_owned(), Arc::clone(&claims));
        Some(claims)
    }

    /// The session of the bearer token in `headers` when the gateway verified that token
    /// lately and it has not expired; no signature is checked here.
    pub fn remembered_session(&self, headers: &HeaderMap) -> Option<String> {
        let claims = self.cached(bearer(headers)?, jsonwebtoken::get_current_timestamp())??;
        Some(claims.sid.clone())
    }

    /// A verified token's claims while it has not expired at `now`; `None` when the token
    /// was not verified lately.
    fn cached(&self, token: &str, now: u64) -> Option<Option<Arc<Claims>>> {
        let claims = self.verified.get(token)?;
        Some((claims.exp + EXP_LEEWAY >= now).then_some(claims))
    }

    async fn verify_signed(&self, state: &AppState, token: &str) -> Option<Claims> {
        let header = jsonwebtoken::decode_header(token).ok()?;
        if header.alg != Algorithm::EdDSA {
            return None;
        }
        let key = self.key(state, header.kid.as_deref()?).await?;
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_issuer(&[TOKEN_ISSUER]);
        validation.set_audience(&[TOKEN_AUDIENCE]);
        validation.leeway = EXP_LEEWAY;
        jsonwebtoken::decode::<Claims>(token, &key, &validation)
            .ok()
            .map(|data| data.claims)
    }
}

/// The caller of one HTTP request and what to forward to the services.
#[derive(Clone, Debug)]
pub struct CallContext {
    /// Who is calling.
    pub caller: Caller,
    forwarded: Vec<(&'static str, String)>,
}

impl CallContext {
    fn new(caller: Caller, headers: &HeaderMap) -> CallContext {
        let forwarded = FORWARDED_HEADERS
            .iter()
            .filter_map(|name| {
                let value = headers.get(*name)?.to_str().ok()?;
                Some((*name, value.to_owned()))
            })
            .collect();
        CallContext { caller, forwarded }
    }

    /// Builds a gRPC request carrying the caller and the trace context.
    pub fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        self.write_metadata(request.metadata_mut());
        request
    }

    /// Writes the caller and the forwarded headers into gRPC metadata.
    pub fn write_metadata(&self, metadata: &mut MetadataMap) {
        self.caller.write_metadata(metadata);
        for (name, value) in &self.forwarded {
            if let Ok(value) = MetadataValue::try_from(value.as_str()) {
                metadata.insert(*name, value);
            }
        }
    }
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|token| !token.is_empty())
}

/// An employee or staff member with a valid access token.
#[derive(Clone, Debug)]
pub struct User {
    /// The call context with `Caller::User`.
    pub context: CallContext,
    /// The session the token belongs to.
    pub session_id: String,
}

impl User {
    /// Builds a gRPC request as this user.
    pub fn request<T>(&self, message: T) -> tonic::Request<T> {
        self.context.request(message)
    }

    /// Returns the user as a caller.
    pub fn caller(&self) -> &Caller {
        &self.context.caller
    }
}

impl FromRequestParts<AppState> for User {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = bearer(&parts.headers).ok_or_else(ApiError::unauthenticated)?;
        let claims = state
            .token_keys
            .verify(state, token)
            .await
            .ok_or_else(ApiError::unauthenticated)?;
        let read = parts
            .extensions
            .get::<SessionRead>()
            .filter(|read| read.session_id == claims.sid);
        if session_revoked(state, &claims.sid, read).await? {
            return Err(ApiError::unauthenticated());
        }
        let grants = claims
            .roles
            .iter()
            .filter_map(|text| RoleGrant::parse(text))
            .collect();
        let caller = Caller::User {
            employee_id: claims.sub.clone(),
            national_id: claims.nid.clone(),
            grants,
        };
        Ok(User {
            context: CallContext::new(caller, &parts.headers),
            session_id: claims.sid.clone(),
        })
    }
}

/// Tells whether the session of an access token is revoked: from the cache
/// in the shared store (as `read` with the request's rate, or else read now), or
/// else from identity's sessions table (the durable record), whose answer is then
/// cached (R5).
async fn session_revoked(
    state: &AppState,
    session_id: &str,
    read: Option<&SessionRead>,
) -> Result<bool, ApiError> {
    use tavana_kit::revocation;
    let store = state.store.as_ref();
    let cached = match read {
        Some(read) => read.revoked,
        None => revocation::cached(store, session_id)
            .await
            .map_err(ApiError::internal)?,
    };
    if let Some(revoked) = cached {
        return Ok(revoked);
    }
    let request = tavana_kit::caller::attach(
        CheckSessionRequest {
            session_id: session_id.to_owned(),
        },
        &Caller::service("gateway"),
    );
    let active = state
        .identity
        .clone()
        .check_session(request)
        .await?
        .into_inner()
        .active;
    let remembered = if active {
        revocation::remember_active(store, session_id).await
    } else {
        revocation::revoke_session(store, session_id).await
    };
    if let Err(error) = remembered {
        tracing::warn!(%error, "session check not cached");
    }
    Ok(!active)
}

/// A merchant backend authenticated by its API key.
#[derive(Clone, Debug)]
pub struct Merchant {
    /// The call context with `Caller::Merchant`.
    pub context: CallContext,
}

impl Merchant {
    /// Builds a gRPC request as this merchant.
    pub fn request<T>(&self, message: T) -> tonic::Request<T> {
        self.context.request(message)
    }
}

impl FromRequestParts<AppState> for Merchant {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let api_key = bearer(&parts.headers).ok_or_else(ApiError::unauthenticated)?;
        let request = tavana_kit::caller::attach(
            AuthenticateMerchantRequest {
                api_key: api_key.to_owned(),
            },
            &Caller::service("gateway"),
        );
        let response = match state.merchants.clone().authenticate_merchant(request).await {
            Ok(response) => response.into_inner(),
            Err(status) if status.code() == tonic::Code::Unauthenticated => {
                return Err(ApiError::unauthenticated());
            }
            Err(status) if status.code() == tonic::Code::NotFound => {
                return Err(ApiError::unauthenticated());
            }
            Err(status) => return Err(status.into()),
        };
        if response.status != MerchantStatus::Contracted as i32 {
            return Err(ApiError(tavana_kit::error::Problem::new(
                tavana_kit::error::ErrorKind::PermissionDenied,
                "merchant_suspended",
                "This merchant's contract is suspended.",
                "قرارداد این فروشگاه تعلیق شده است.",
            )));
        }
        let caller = Caller::Merchant {
            merchant_id: response.merchant_id,
        };
        Ok(Merchant {
            context: CallContext::new(caller, &parts.headers),
        })
    }
}

/// Anyone, on the public routes: a valid access token makes them a user,
/// anything else (no token, a merchant key) anonymous.
#[derive(Clone, Debug)]
pub struct Public {
    /// The call context, `Caller::Anonymous` without a token.
    pub context: CallContext,
}

impl Public {
    /// Builds a gRPC request as this caller.
    pub fn request<T>(&self, message: T) -> tonic::Request<T> {
        self.context.request(message)
    }
}

impl FromRequestParts<AppState> for Public {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        if bearer(&parts.headers).is_some()
            && let Ok(user) = User::from_request_parts(parts, state).await
        {
            return Ok(Public {
                context: user.context,
            });
        }
        Ok(Public {
            context: CallContext::new(Caller::Anonymous, &parts.headers),
        })
    }
}

/// A shared handle to the token keys.
pub type SharedTokenKeys = Arc<TokenKeys>;

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(exp: u64) -> Arc<Claims> {
        Arc::new(Claims {
            sub: "e1".into(),
            nid: "0000000000".into(),
            roles: vec![],
            sid: "s1".into(),
            exp,
        })
    }

    #[test]
    fn a_remembered_token_still_expires() {
        let keys = TokenKeys::default();
        assert!(keys.cached("t", 1_000).is_none(), "never verified");
        keys.verified.insert("t".into(), claims(1_000));
        let fresh = keys.cached("t", 1_000 + EXP_LEEWAY).expect("remembered");
        assert_eq!(fresh.map(|c| c.sub.clone()).as_deref(), Some("e1"));
        let stale = keys.cached("t", 1_001 + EXP_LEEWAY).expect("remembered");
        assert!(stale.is_none(), "past exp + leeway the token is refused");
    }
}
