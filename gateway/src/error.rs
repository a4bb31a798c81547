//! The gateway's one error type: a `Problem` answered as
//! `application/problem+json` (RFC 9457) with the HTTP status of its kind.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};
use tavana_kit::error::{ErrorKind, Problem};

/// The code of the 413 for a body over the route's limit: the one problem whose HTTP
/// status is not its kind's (it never comes from a service).
pub const BODY_TOO_LARGE: &str = "body_too_large";

/// Returns the HTTP status of a problem.
fn http_status(problem: &Problem) -> u16 {
    if problem.code == BODY_TOO_LARGE {
        413
    } else {
        problem.kind.http_status()
    }
}

/// An error answered to an HTTP client as problem+json.
#[derive(Debug)]
pub struct ApiError(pub Problem);

impl ApiError {
    /// A 400 for a request the gateway itself finds malformed.
    pub fn bad_request(code: &str, message_en: &str, message_fa: &str) -> ApiError {
        ApiError(Problem::new(
            ErrorKind::InvalidArgument,
            code,
            message_en,
            message_fa,
        ))
    }

    /// A 401: no token, or one that does not verify.
    pub fn unauthenticated() -> ApiError {
        ApiError(Problem::new(
            ErrorKind::Unauthenticated,
            "unauthenticated",
            "A valid access token is required.",
            "برای این کار باید با توکن معتبر وارد شوید.",
        ))
    }

    /// A 413: the body is larger than the route accepts (`limit` bytes).
    pub fn body_too_large(limit: usize) -> ApiError {
        ApiError(
            Problem::new(
                ErrorKind::InvalidArgument,
                BODY_TOO_LARGE,
                "The request body is larger than this route accepts.",
                "حجم بدنهٔ درخواست بیش از حد مجاز این مسیر است.",
            )
            .with_extra("max_body_bytes", limit),
        )
    }

    /// A 404 that never reveals whether the item exists.
    pub fn not_found() -> ApiError {
        ApiError(Problem::not_found("not_found"))
    }

    /// A 500 whose body says nothing of the cause; the cause is logged.
    pub fn internal(cause: impl std::fmt::Display) -> ApiError {
        ApiError(Problem::internal(cause))
    }
}

impl From<tonic::Status> for ApiError {
    fn from(status: tonic::Status) -> ApiError {
        let problem = Problem::from_status(&status);
        if problem.kind == ErrorKind::Internal || problem.kind == ErrorKind::Unavailable {
            tracing::warn!(grpc_code = ?status.code(), message = status.message(), "service call failed");
        }
        ApiError(problem)
    }
}

/// A malformed code or identifier in a path or body: a 400 naming the field.
pub fn invalid_id(field: &str, error: &tavana_kit::ids::IdError) -> ApiError {
    let mut problem = Problem::new(
        ErrorKind::InvalidArgument,
        error.code(),
        error.to_string(),
        error.message_fa(),
    );
    problem.violations.push(error.violation(field));
    ApiError(problem)
}

impl From<Problem> for ApiError {
    fn from(problem: Problem) -> ApiError {
        ApiError(problem)
    }
}

/// Renders a problem as the JSON body of API.md: `type`, `title`, `status`,
/// `detail`, `code`, `message_fa`, `message_en`, `violations`, and the
/// problem's extra values (e.g. `available_monthly`) as top-level members.
pub fn problem_body(problem: &Problem) -> Value {
    let status = http_status(problem);
    let mut body = Map::new();
    for (key, value) in &problem.extra {
        body.insert(key.clone(), value.clone());
    }
    body.insert(
        "type".into(),
        json!(format!("https://tavana.ir/problems/{}", problem.code)),
    );
    body.insert("title".into(), json!(problem.message_en));
    body.insert("status".into(), json!(status));
    body.insert("detail".into(), json!(problem.message_en));
    body.insert("code".into(), json!(problem.code));
    body.insert("message_fa".into(), json!(problem.message_fa));
    body.insert("message_en".into(), json!(problem.message_en));
    if !problem.violations.is_empty() {
        let violations: Vec<Value> = problem
            .violations
            .iter()
            .map(|violation| {
                json!({
                    "field": violation.field,
                    "code": violation.code,
                    "message_en": violation.message_en,
                    "message_fa": violation.message_fa,
                })
            })
            .collect();
        body.insert("violations".into(), Value::Array(violations));
    }
    Value::Object(body)
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let problem = self.0;
        let status = StatusCode::from_u16(http_status(&problem))
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let retry_after = problem
            .extra
            .get("retry_after_seconds")
            .and_then(Value::as_u64);
        let body = problem_body(&problem).to_string();
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if problem.kind == ErrorKind::RateLimited {
            let seconds = retry_after.unwrap_or(60).max(1);
            if let Ok(value) = HeaderValue::from_str(&seconds.to_string()) {
                headers.insert(header::RETRY_AFTER, value);
            }
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extra_values_become_top_level_members() {
        let problem = Problem::new(
            ErrorKind::RuleRefused,
            "insufficient_credit",
            "Not enough credit.",
            "اعتبار کافی نیست.",
        )
        .with_extra("available_monthly", 1200);

        let body = problem_body(&problem);

        assert_eq!(body["status"], 422);
        assert_eq!(body["code"], "insufficient_credit");
        assert_eq!(body["available_monthly"], 1200);
        assert!(body.get("violations").is_none());
    }

    #[test]
    fn extra_values_never_override_the_standard_members() {
        let problem = Problem::new(ErrorKind::Conflict, "x", "en", "fa").with_extra("status", 1);

        let body = problem_body(&problem);

        assert_eq!(body["status"], 409);
    }

    #[test]
    fn rate_limited_problem_carries_retry_after() {
        let problem = Problem::new(ErrorKind::RateLimited, "rate_limited", "slow", "آهسته")
            .with_extra("retry_after_seconds", 42);

        let response = ApiError(problem).into_response();

        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()[header::RETRY_AFTER], "42");
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            "application/problem+json"
        );
    }
}
