//! The gateway's HTTP API as the portal calls it: the user's access token
//! forwarded, refreshed once when it has expired, and every refusal read as
//! the API's problem+json.

use std::time::{Duration, SystemTime};

use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::session::{Sessions, Tokens};

/// How long before its expiry an access token is refreshed.
const EXPIRY_MARGIN: Duration = Duration::from_secs(20);

/// One field the API refused.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct Violation {
    /// The field, e.g. `monthly_credit`.
    pub field: String,
    /// A stable code, e.g. `guarantor_other_region`.
    pub code: String,
    /// In English.
    pub message_en: String,
    /// In Persian.
    pub message_fa: String,
}

/// A problem+json answer of the gateway.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct Problem {
    /// The HTTP status.
    pub status: u16,
    /// A stable snake_case code.
    pub code: String,
    /// What to show in Persian.
    pub message_fa: String,
    /// What to show in English.
    pub message_en: String,
    /// Every refused field or rule.
    pub violations: Vec<Violation>,
}

/// Why a call to the gateway did not give what was asked.
#[derive(Debug)]
pub enum ApiError {
    /// The gateway refused, with its problem+json.
    Problem(Problem),
    /// The session has no valid tokens any more: sign in again.
    SignedOut,
}

impl ApiError {
    fn unreachable(detail: impl std::fmt::Display) -> ApiError {
        tracing::warn!(%detail, "gateway call failed");
        ApiError::Problem(Problem {
            status: 502,
            code: "gateway_unreachable".into(),
            message_fa: "ارتباط با سامانه برقرار نشد؛ کمی بعد دوباره تلاش کنید.".into(),
            message_en: "The service could not be reached; try again shortly.".into(),
            violations: Vec::new(),
        })
    }
}

/// What a call sends.
#[derive(Debug)]
pub enum Payload {
    /// No body.
    Empty,
    /// `application/json`.
    Json(Value),
    /// `text/csv`.
    Csv(String),
}

/// One call to the gateway.
#[derive(Debug)]
pub struct Call {
    method: Method,
    path: String,
    query: Vec<(String, String)>,
    payload: Payload,
    accept_csv: bool,
}

impl Call {
    /// A `GET` of `path` (starting with `/v1/`).
    pub fn get(path: impl Into<String>) -> Call {
        Call {
            method: Method::GET,
            path: path.into(),
            query: Vec::new(),
            payload: Payload::Empty,
            accept_csv: false,
        }
    }

    /// A `POST` of `path` with `payload`.
    pub fn post(path: impl Into<String>, payload: Payload) -> Call {
        Call {
            method: Method::POST,
            path: path.into(),
            query: Vec::new(),
            payload,
            accept_csv: false,
        }
    }

    /// Adds a query parameter, skipping empty values.
    pub fn query(mut self, key: &str, value: &str) -> Call {
        if !value.trim().is_empty() {
            self.query.push((key.to_owned(), value.trim().to_owned()));
        }
        self
    }

    /// Asks for CSV instead of JSON.
    pub fn accept_csv(mut self) -> Call {
        self.accept_csv = true;
        self
    }
}

/// The pair `/v1/auth/token` and `/v1/auth/refresh` answer.
#[derive(Debug, Deserialize)]
pub struct TokenPair {
    /// Bearer token for the API.
    pub access_token: String,
    /// For `/v1/auth/refresh`.
    pub refresh_token: String,
    /// Seconds until the access token expires.
    #[serde(default)]
    pub expires_in: i64,
}

impl TokenPair {
    /// Turns the answer into what the session keeps.
    pub fn into_tokens(self) -> Tokens {
        let lifetime = Duration::from_secs(u64::try_from(self.expires_in).unwrap_or(0).max(1));
        Tokens {
            access: self.access_token,
            refresh: self.refresh_token,
            access_expires: SystemTime::now() + lifetime.saturating_sub(EXPIRY_MARGIN),
        }
    }
}

/// The header in which the gateway names the client of a request, and the portal
/// names it back on the calls it makes for that request.
const CLIENT_IP: &str = "x-tavana-client-ip";
/// The header that proves the portal's [`CLIENT_IP`] to the gateway.
const FORWARD_TOKEN: &str = "x-tavana-forward-token";

tokio::task_local! {
    /// The client IP of the page request being served.
    static PAGE_CLIENT_IP: Option<String>;
}

/// Keeps the client IP the gateway resolved for this page request, so that the API
/// calls made for it are counted against that client, not against the portal.
pub async fn remember_client_ip(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let ip = request
        .headers()
        .get(CLIENT_IP)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    PAGE_CLIENT_IP.scope(ip, next.run(request)).await
}

/// The gateway as seen from the portal.
#[derive(Clone)]
pub struct Gateway {
    client: reqwest::Client,
    base: String,
    sessions: Sessions,
    forward_token: Option<String>,
}

impl Gateway {
    /// Builds a client of the gateway at `base` (e.g. `http://127.0.0.1:8080`).
    pub fn new(base: &str, sessions: Sessions) -> Gateway {
        let client = tavana_kit::http::client_builder()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap_or_else(|_| tavana_kit::http::client());
        Gateway {
            client,
            base: base.trim_end_matches('/').to_owned(),
            sessions,
            forward_token: None,
        }
    }

    /// Names the page's client on every call, proved by `token`.
    pub fn with_forward_token(mut self, token: Option<String>) -> Gateway {
        self.forward_token = token;
        self
    }

    fn request(&self, call: &Call, access: Option<&str>) -> reqwest::RequestBuilder {
        let mut request = self
            .client
            .request(call.method.clone(), format!("{}{}", self.base, call.path))
            .header(
                reqwest::header::ACCEPT,
                if call.accept_csv {
                    "text/csv"
                } else {
                    "application/json"
                },
            );
        if !call.query.is_empty() {
            request = request.query(&call.query);
        }
        let client_ip = PAGE_CLIENT_IP.try_with(Clone::clone).ok().flatten();
        if let (Some(token), Some(ip)) = (&self.forward_token, client_ip) {
            request = request.header(FORWARD_TOKEN, token).header(CLIENT_IP, ip);
        }
        if let Some(access) = access {
            request = request.bearer_auth(access);
        }
        match &call.payload {
            Payload::Empty => request,
            Payload::Json(body) => request.json(body),
            Payload::Csv(body) => request
                .header(reqwest::header::CONTENT_TYPE, "text/csv")
                .body(body.clone()),
        }
    }

    /// Sends a call without a token (login, the public merchant list).
    pub async fn send_anonymous(&self, call: &Call) -> Result<reqwest::Response, ApiError> {
        let response = self
            .request(call, None)
            .send()
            .await
            .map_err(ApiError::unreachable)?;
        checked(response).await
    }

    /// Sends a call as the session's user: refreshes an expired access
    /// token first, and once more if the gateway still answers 401.
    pub async fn send(&self, session: &str, call: &Call) -> Result<reqwest::Response, ApiError> {
        let access = self.access_token(session, None).await?;
        let response = self
            .request(call, Some(&access))
            .send()
            .await
            .map_err(ApiError::unreachable)?;
        if response.status() != StatusCode::UNAUTHORIZED {
            return checked(response).await;
        }
        let access = self.access_token(session, Some(&access)).await?;
        let response = self
            .request(call, Some(&access))
            .send()
            .await
            .map_err(ApiError::unreachable)?;
        if response.status() == StatusCode::UNAUTHORIZED {
            self.sessions.sign_out(session);
            return Err(ApiError::SignedOut);
        }
        checked(response).await
    }

    /// Sends a call as the session's user and reads the JSON answer.
    pub async fn json<T: DeserializeOwned>(
        &self,
        session: &str,
        call: &Call,
    ) -> Result<T, ApiError> {
        let response = self.send(session, call).await?;
        read_json(response).await
    }

    /// Sends a call without a token and reads the JSON answer.
    pub async fn json_anonymous<T: DeserializeOwned>(&self, call: &Call) -> Result<T, ApiError> {
        let response = self.send_anonymous(call).await?;
        read_json(response).await
    }

    /// Returns a usable access token of the session. `rejected` is a token
    /// the gateway just refused: it is refreshed even if not yet expired,
    /// unless another request has refreshed it meanwhile.
    async fn access_token(
        &self,
        session: &str,
        rejected: Option<&str>,
    ) -> Result<String, ApiError> {
        let current = |sessions: &Sessions| {
            sessions
                .with(session, |state| {
                    state
                        .tokens
                        .clone()
                        .map(|tokens| (tokens, state.refresh_lock.clone()))
                })
                .flatten()
        };
        let (tokens, lock) = current(&self.sessions).ok_or(ApiError::SignedOut)?;
        let fresh = |tokens: &Tokens| {
            SystemTime::now() < tokens.access_expires && Some(tokens.access.as_str()) != rejected
        };
        if fresh(&tokens) {
            return Ok(tokens.access);
        }
        // One refresh at a time per session: the gateway revokes the whole
        // session when a refresh token is used twice.
        let _guard = lock.lock().await;
        let (tokens, _) = current(&self.sessions).ok_or(ApiError::SignedOut)?;
        if fresh(&tokens) {
            return Ok(tokens.access);
        }
        let call = Call::post(
            "/v1/auth/refresh",
            Payload::Json(json!({ "refresh_token": tokens.refresh })),
        );
        let pair: TokenPair = match self.json_anonymous(&call).await {
            Ok(pair) => pair,
            Err(ApiError::Problem(problem)) if problem.status >= 500 => {
                return Err(ApiError::Problem(problem));
            }
            Err(_) => {
                self.sessions.sign_out(session);
                return Err(ApiError::SignedOut);
            }
        };
        let tokens = pair.into_tokens();
        let access = tokens.access.clone();
        self.sessions
            .with(session, |state| state.tokens = Some(tokens))
            .ok_or(ApiError::SignedOut)?;
        Ok(access)
    }
}

async fn read_json<T: DeserializeOwned>(response: reqwest::Response) -> Result<T, ApiError> {
    let bytes = response.bytes().await.map_err(ApiError::unreachable)?;
    let body = if bytes.is_empty() {
        &b"null"[..]
    } else {
        &bytes[..]
    };
    serde_json::from_slice(body).map_err(ApiError::unreachable)
}

/// Passes a success through and turns anything else into its problem.
async fn checked(response: reqwest::Response) -> Result<reqwest::Response, ApiError> {
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let bytes = response.bytes().await.unwrap_or_default();
    let mut problem: Problem = serde_json::from_slice(&bytes).unwrap_or_default();
    problem.status = status.as_u16();
    if problem.message_fa.is_empty() {
        problem.message_fa = format!("درخواست پذیرفته نشد (کد {}).", status.as_u16());
    }
    if problem.message_en.is_empty() {
        problem.message_en = format!("The request was refused ({status}).");
    }
    Err(ApiError::Problem(problem))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use axum::Json;
    use axum::Router;
    use axum::http::{HeaderMap, StatusCode};
    use axum::response::IntoResponse;
    use axum::routing::{get, post};

    use super::*;

    /// A gateway that accepts only the access token `fresh` and counts the
    /// refreshes; it refuses a refresh token used twice, as the real one does.
    async fn fake_gateway(refreshes: Arc<AtomicUsize>) -> String {
        let used = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
        let app = Router::new()
            .route(
                "/v1/me",
                get(|headers: HeaderMap| async move {
                    let authorized = headers
                        .get("authorization")
                        .is_some_and(|value| value == "Bearer fresh");
                    if authorized {
                        (StatusCode::OK, Json(json!({"full_name": "x"}))).into_response()
                    } else {
                        (
                            StatusCode::UNAUTHORIZED,
                            Json(json!({"code": "unauthenticated"})),
                        )
                            .into_response()
                    }
                }),
            )
            .route(
                "/v1/auth/refresh",
                post(move |Json(body): Json<Value>| {
                    let refreshes = refreshes.clone();
                    let used = used.clone();
                    async move {
                        let token = body["refresh_token"]
                            .as_str()
                            .unwrap_or_default()
                            .to_owned();
                        let mut used = used.lock().unwrap();
                        if used.contains(&token) {
                            return (
                                StatusCode::UNAUTHORIZED,
                                Json(json!({"code": "refresh_token_reused"})),
                            )
                                .into_response();
                        }
                        used.push(token);
                        refreshes.fetch_add(1, Ordering::SeqCst);
                        Json(json!({
                            "access_token": "fresh",
                            "refresh_token": "next",
                            "expires_in": 900
                        }))
                        .into_response()
                    }
                }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        format!("http://{address}")
    }

    async fn signed_in(sessions: &Sessions, access: &str, expires: SystemTime) -> String {
        let (id, _) = sessions.open(None).await;
        sessions.with(&id, |session| {
            session.tokens = Some(Tokens {
                access: access.to_owned(),
                refresh: "first".to_owned(),
                access_expires: expires,
            });
        });
        id
    }

    #[tokio::test]
    async fn an_expired_access_token_is_refreshed_once_for_concurrent_calls() {
        let refreshes = Arc::new(AtomicUsize::new(0));
        let sessions = Sessions::default();
        let gateway = Gateway::new(&fake_gateway(refreshes.clone()).await, sessions.clone());
        let session = signed_in(&sessions, "stale", SystemTime::now()).await;

        let call = Call::get("/v1/me");
        let (first, second) = tokio::join!(
            gateway.json::<Value>(&session, &call),
            gateway.json::<Value>(&session, &call)
        );

        assert!(first.is_ok() && second.is_ok());
        assert_eq!(refreshes.load(Ordering::SeqCst), 1);
        let kept = sessions
            .with(&session, |s| s.tokens.clone())
            .flatten()
            .unwrap();
        assert_eq!(
            (kept.access.as_str(), kept.refresh.as_str()),
            ("fresh", "next")
        );
    }

    #[tokio::test]
    async fn a_token_the_gateway_refuses_before_its_expiry_is_refreshed_and_retried() {
        let refreshes = Arc::new(AtomicUsize::new(0));
        let sessions = Sessions::default();
        let gateway = Gateway::new(&fake_gateway(refreshes.clone()).await, sessions.clone());
        let session = signed_in(
            &sessions,
            "revoked",
            SystemTime::now() + Duration::from_secs(600),
        )
        .await;

        let answer = gateway.json::<Value>(&session, &Call::get("/v1/me")).await;

        assert!(answer.is_ok());
        assert_eq!(refreshes.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_refused_refresh_signs_the_session_out() {
        let refreshes = Arc::new(AtomicUsize::new(0));
        let sessions = Sessions::default();
        let gateway = Gateway::new(&fake_gateway(refreshes.clone()).await, sessions.clone());
        let first = signed_in(&sessions, "stale", SystemTime::now()).await;
        gateway
            .json::<Value>(&first, &Call::get("/v1/me"))
            .await
            .unwrap();
        // Another session holding the same, now used, refresh token.
        let second = signed_in(&sessions, "stale", SystemTime::now()).await;

        let answer = gateway.json::<Value>(&second, &Call::get("/v1/me")).await;

        assert!(matches!(answer, Err(ApiError::SignedOut)));
        assert!(sessions.with(&second, |s| s.tokens.is_none()).unwrap());
    }

    #[tokio::test]
    async fn a_refusal_is_read_as_the_apis_problem() {
        let sessions = Sessions::default();
        let gateway = Gateway::new(&fake_gateway(Arc::default()).await, sessions);

        let answer = gateway
            .json_anonymous::<Value>(&Call::get("/v1/missing"))
            .await;

        let Err(ApiError::Problem(problem)) = answer else {
            panic!("expected a problem");
        };
        assert_eq!(problem.status, 404);
        assert!(!problem.message_fa.is_empty());
    }
}
