//! Request extractors whose rejections are problem+json, not axum's plain
//! text.

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use utoipa::{IntoParams, ToSchema};

use crate::error::ApiError;

/// A JSON body; a malformed one is a 400 `malformed_body` that says what is
/// wrong.
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(request, state).await {
            Ok(axum::Json(value)) => Ok(ApiJson(value)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

fn json_rejection(rejection: JsonRejection) -> ApiError {
    let (code, message_fa) = match &rejection {
        JsonRejection::MissingJsonContentType(_) => (
            "unsupported_media_type",
            "بدنهٔ درخواست باید JSON باشد (Content-Type: application/json).",
        ),
        JsonRejection::JsonSyntaxError(_) => ("malformed_body", "بدنهٔ درخواست JSON معتبر نیست."),
        _ => (
            "malformed_body",
            "فیلدهای بدنهٔ درخواست نامعتبر یا ناقص است.",
        ),
    };
    ApiError::bad_request(code, &rejection.body_text(), message_fa)
}

/// Query parameters; malformed ones are a 400 `malformed_query`.
pub struct ApiQuery<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiQuery<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(ApiQuery(value)),
            Err(rejection) => Err(query_rejection(rejection)),
        }
    }
}

fn query_rejection(rejection: QueryRejection) -> ApiError {
    ApiError::bad_request(
        "malformed_query",
        &rejection.body_text(),
        "پارامترهای نشانی نامعتبر است.",
    )
}

/// The `Idempotency-Key` header that every money-spending `POST` needs
/// (R19); a missing or unusable one is a 400.
pub struct IdempotencyKey(pub String);

impl<S: Send + Sync> FromRequestParts<S> for IdempotencyKey {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let value = parts
            .headers
            .get("idempotency-key")
            .and_then(|value| value.to_str().ok())
            .map(str::trim)
            .unwrap_or_default();
        if value.is_empty() {
            return Err(ApiError::bad_request(
                "idempotency_key_missing",
                "The Idempotency-Key header is required for this request.",
                "سرآیند Idempotency-Key برای این درخواست لازم است.",
            ));
        }
        if value.len() > 255 {
            return Err(ApiError::bad_request(
                "idempotency_key_invalid",
                "The Idempotency-Key header must be at most 255 characters.",
                "سرآیند Idempotency-Key حداکثر ۲۵۵ نویسه است.",
            ));
        }
        Ok(IdempotencyKey(value.to_owned()))
    }
}

/// `?page_size=&page_token=` of every list (API.md conventions).
#[derive(Clone, Debug, Default, Deserialize, IntoParams, ToSchema)]
#[into_params(parameter_in = Query)]
pub struct Paging {
    /// Items per page: default 20, at most 100.
    #[param(minimum = 1, maximum = 100)]
    pub page_size: Option<u32>,
    /// The `next_page_token` of the previous page.
    pub page_token: Option<String>,
}

impl Paging {
    /// Returns the page size to ask a service for (0 lets it choose the default).
    pub fn size(&self) -> u32 {
        self.page_size.unwrap_or(0).min(100)
    }

    /// Returns the page token, empty on the first page.
    pub fn token(&self) -> String {
        self.page_token.clone().unwrap_or_default()
    }
}

/// Turns a service's `next_page_token` into the API's: absent on the last page.
pub fn next_token(token: String) -> Option<String> {
    (!token.is_empty()).then_some(token)
}
