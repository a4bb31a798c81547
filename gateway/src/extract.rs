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
        // JSON Schema's `integer` includes `146.0` (OpenAPI 3.1): whole numbers written
        // with a fraction are read as the integers they are, as the document promises.
        let axum::Json(mut value) = axum::Json::<serde_json::Value>::from_request(request, state)
            .await
            .map_err(json_rejection)?;
        whole_numbers_as_integers(&mut value);
        if holds_nul(&value) {
            return Err(nul_refused());
        }
        serde_json::from_value(value).map(ApiJson).map_err(|error| {
            ApiError::bad_request(
                "malformed_body",
                &format!("Failed to deserialize the JSON body into the target type: {error}"),
                "فیلدهای بدنهٔ درخواست نامعتبر یا ناقص است.",
            )
        })
    }
}

/// Reads a JSON body read as bytes by a handler (optional or content-negotiated bodies),
/// with whole numbers written as `146.0` taken as integers and a NUL in a text refused, as
/// [`ApiJson`] does; `malformed` says what is wrong with a body that does not parse.
pub fn json_from_slice<T: DeserializeOwned>(
    bytes: &[u8],
    malformed: impl Fn(serde_json::Error) -> ApiError,
) -> Result<T, ApiError> {
    let mut value: serde_json::Value = serde_json::from_slice(bytes).map_err(&malformed)?;
    whole_numbers_as_integers(&mut value);
    if holds_nul(&value) {
        return Err(nul_refused());
    }
    serde_json::from_value(value).map_err(malformed)
}

/// Whether a text of `value` (a member's name included) holds a NUL (U+0000): no text
/// column stores one (PostgreSQL refuses it), so it is refused at the edge.
fn holds_nul(value: &serde_json::Value) -> bool {
    use serde_json::Value;
    match value {
        Value::String(text) => text.contains('\0'),
        Value::Array(items) => items.iter().any(holds_nul),
        Value::Object(members) => members
            .iter()
            .any(|(name, member)| name.contains('\0') || holds_nul(member)),
        _ => false,
    }
}

/// The 400 `text_has_nul` for a NUL (U+0000) in a body's text or in the URL.
pub fn nul_refused() -> ApiError {
    ApiError::bad_request(
        "text_has_nul",
        "A text in the request holds a NUL character (U+0000), which no field accepts.",
        "متنی در درخواست نویسهٔ NUL (U+0000) دارد که هیچ فیلدی نمی‌پذیرد.",
    )
}

/// Rewrites every number with a zero fraction (`146.0`) as an integer, in place.
fn whole_numbers_as_integers(value: &mut serde_json::Value) {
    use serde_json::Value;
    match value {
        Value::Number(number) if !number.is_i64() && !number.is_u64() => {
            // Only where a float is exact (below 2^53); larger ones stay floats and
            // are refused as before.
            if let Some(float) = number.as_f64()
                && float.fract() == 0.0
                && float.abs() <= 9_007_199_254_740_992.0
            {
                #[allow(clippy::cast_possible_truncation)]
                let whole = float as i64;
                *value = Value::from(whole);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(whole_numbers_as_integers),
        Value::Object(members) => members.values_mut().for_each(whole_numbers_as_integers),
        _ => {}
    }
}

fn json_rejection(rejection: JsonRejection) -> ApiError {
    if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
        // The limit itself is named by the body-limit layer, which answers this 413.
        return ApiError::body_too_large(0);
    }
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
        // As the OpenAPI document says: 1 to 255 visible ASCII characters.
        if value.len() > 255 || !value.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(ApiError::bad_request(
                "idempotency_key_invalid",
                "The Idempotency-Key header must be 1 to 255 visible ASCII characters.",
                "سرآیند Idempotency-Key باید ۱ تا ۲۵۵ نویسهٔ اسکی دیدنی باشد.",
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
    #[serde(default, deserialize_with = "page_size")]
    pub page_size: Option<u32>,
    /// The `next_page_token` of the previous page.
    pub page_token: Option<String>,
}

/// Reads `?page_size=`: 1 to 100, as the OpenAPI document says (API.md conventions);
/// 0 or more than 100 is a 400 `malformed_query`, not a page of another size.
pub fn page_size<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<u32>, D::Error> {
    let size = Option::<u32>::deserialize(deserializer)?;
    match size {
        Some(size) if !(1..=100).contains(&size) => Err(serde::de::Error::custom(
            "page_size must be between 1 and 100",
        )),
        size => Ok(size),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_size_is_1_to_100_as_the_document_says() {
        let parse = |query: &str| {
            let uri: axum::http::Uri = format!("/v1/me/purchases?{query}").parse().unwrap();
            axum::extract::Query::<Paging>::try_from_uri(&uri).map(|query| query.0)
        };

        assert_eq!(parse("page_size=1").unwrap().page_size, Some(1));
        assert_eq!(parse("page_size=100").unwrap().page_size, Some(100));
        assert_eq!(parse("").unwrap().page_size, None);
        assert!(parse("page_size=0").is_err());
        assert!(parse("page_size=101").is_err());
    }

    #[derive(Debug, Deserialize, PartialEq)]
    struct Months {
        months: u32,
        amount: i64,
    }

    #[test]
    fn whole_numbers_written_with_a_fraction_are_integers() {
        let read = |body: &str| {
            json_from_slice::<Months>(body.as_bytes(), |error| {
                ApiError::bad_request("malformed_body", &error.to_string(), "")
            })
        };

        assert_eq!(
            read(r#"{"months": 146.0, "amount": -3.0}"#).unwrap(),
            Months {
                months: 146,
                amount: -3
            }
        );
        assert!(read(r#"{"months": 1.5, "amount": 1}"#).is_err());
        assert!(read(r#"{"months": 1, "amount": 1e300}"#).is_err());
    }

    #[test]
    fn a_nul_anywhere_in_a_text_is_found_and_other_texts_pass() {
        let holds = |body: &str| holds_nul(&serde_json::from_str(body).unwrap());

        assert!(holds(r#"{"name": "a\u0000b"}"#));
        assert!(holds(r#"{"lines": [{"ref": "\u0000"}]}"#));
        assert!(holds(r#"{"a\u0000": 1}"#));
        assert!(!holds(r#"{"name": "a\\u0000b", "n": 0, "ok": null}"#));
        assert!(!holds(r#"{"name": "کتاب\u0001"}"#));
    }
}
