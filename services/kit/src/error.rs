//! The one error shape shared by all services, and its mapping to gRPC and HTTP.

use std::collections::HashMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, FieldViolation, StatusExt};

/// The error domain written in every `ErrorInfo`.
pub const ERROR_DOMAIN: &str = "tavana";

/// The codes several services share, defined once; a service's own codes live in its
/// `error.rs`, next to the variant they name.
pub mod codes {
    /// A required field is missing or empty (a field violation's code).
    pub const REQUIRED: &str = "required";
    /// The caller's roles do not allow this.
    pub const PERMISSION_DENIED: &str = "permission_denied";
    /// The page token is not one the service made.
    pub const PAGE_TOKEN_INVALID: &str = "page_token_invalid";
    /// One or more fields are invalid; the violations name them.
    pub const INVALID_ARGUMENT: &str = "invalid_argument";
    /// No caller identity came with the call.
    pub const UNAUTHENTICATED: &str = "unauthenticated";
    /// A peer service could not be reached.
    pub const UNAVAILABLE: &str = "unavailable";
    /// A bug or an infrastructure failure; the log has the cause.
    pub const INTERNAL: &str = "internal";
}

const META_MESSAGE_EN: &str = "message_en";
const META_MESSAGE_FA: &str = "message_fa";
const META_EXTRA: &str = "extra";

/// The class of a failure, which fixes its gRPC code and HTTP status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The request is malformed or a field is invalid (gRPC InvalidArgument, HTTP 400).
    InvalidArgument,
    /// The caller is not authenticated (gRPC Unauthenticated, HTTP 401).
    Unauthenticated,
    /// The caller may not do this (gRPC PermissionDenied, HTTP 403).
    PermissionDenied,
    /// The thing asked for does not exist (gRPC NotFound, HTTP 404).
    NotFound,
    /// The request conflicts with the current state (gRPC Aborted, HTTP 409).
    Conflict,
    /// A business rule refuses the request (gRPC FailedPrecondition, HTTP 422).
    RuleRefused,
    /// Too many requests (gRPC ResourceExhausted, HTTP 429).
    RateLimited,
    /// A dependency is unavailable; retrying may help (gRPC Unavailable, HTTP 503).
    Unavailable,
    /// A bug or an unexpected failure (gRPC Internal, HTTP 500).
    Internal,
}

impl ErrorKind {
    /// Returns the gRPC code of this kind.
    pub fn grpc_code(self) -> Code {
        match self {
            ErrorKind::InvalidArgument => Code::InvalidArgument,
            ErrorKind::Unauthenticated => Code::Unauthenticated,
            ErrorKind::PermissionDenied => Code::PermissionDenied,
            ErrorKind::NotFound => Code::NotFound,
            ErrorKind::Conflict => Code::Aborted,
            ErrorKind::RuleRefused => Code::FailedPrecondition,
            ErrorKind::RateLimited => Code::ResourceExhausted,
            ErrorKind::Unavailable => Code::Unavailable,
            ErrorKind::Internal => Code::Internal,
        }
    }

    /// Returns the HTTP status of this kind.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorKind::InvalidArgument => 400,
            ErrorKind::Unauthenticated => 401,
            ErrorKind::PermissionDenied => 403,
            ErrorKind::NotFound => 404,
            ErrorKind::Conflict => 409,
            ErrorKind::RuleRefused => 422,
            ErrorKind::RateLimited => 429,
            ErrorKind::Unavailable => 503,
            ErrorKind::Internal => 500,
        }
    }

    /// Returns the kind for a gRPC code; codes without a kind of their own map to the
    /// nearest one (deadline exceeded and cancelled to `Unavailable`, already exists to
    /// `Conflict`, unknown and the rest to `Internal`).
    pub fn from_grpc(code: Code) -> ErrorKind {
        match code {
            Code::InvalidArgument | Code::OutOfRange => ErrorKind::InvalidArgument,
            Code::Unauthenticated => ErrorKind::Unauthenticated,
            Code::PermissionDenied => ErrorKind::PermissionDenied,
            Code::NotFound => ErrorKind::NotFound,
            Code::Aborted | Code::AlreadyExists => ErrorKind::Conflict,
            Code::FailedPrecondition => ErrorKind::RuleRefused,
            Code::ResourceExhausted => ErrorKind::RateLimited,
            Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled => ErrorKind::Unavailable,
            Code::Ok | Code::Unknown | Code::Unimplemented | Code::Internal | Code::DataLoss => {
                ErrorKind::Internal
            }
        }
    }

    /// Returns the snake_case name of this kind, used as the default problem code.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::InvalidArgument => "invalid_argument",
            ErrorKind::Unauthenticated => "unauthenticated",
            ErrorKind::PermissionDenied => "permission_denied",
            ErrorKind::NotFound => "not_found",
            ErrorKind::Conflict => "conflict",
            ErrorKind::RuleRefused => "rule_refused",
            ErrorKind::RateLimited => "rate_limited",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Internal => "internal",
        }
    }
}

/// One invalid field of a request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Violation {
    /// The field path, e.g. `guarantor_national_id`.
    pub field: String,
    /// A stable snake_case code, e.g. `national_id_invalid`.
    pub code: String,
    /// The message in English.
    pub message_en: String,
    /// The message in Persian.
    pub message_fa: String,
}

impl Violation {
    /// Creates a violation.
    pub fn new(
        field: impl Into<String>,
        code: impl Into<String>,
        message_en: impl Into<String>,
        message_fa: impl Into<String>,
    ) -> Violation {
        Violation {
            field: field.into(),
            code: code.into(),
            message_en: message_en.into(),
            message_fa: message_fa.into(),
        }
    }
}

/// The JSON written into a field violation's description.
#[derive(Serialize, Deserialize)]
struct ViolationDescription {
    code: String,
    message_en: String,
    message_fa: String,
}

/// A failure as the caller sees it: a kind, a stable code, messages in English and
/// Persian, field violations and extra values (such as `available_monthly`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Problem {
    /// The class of the failure.
    pub kind: ErrorKind,
    /// A stable snake_case code, e.g. `guarantor_region_mismatch`.
    pub code: String,
    /// The message in English.
    pub message_en: String,
    /// The message in Persian.
    pub message_fa: String,
    /// The invalid fields, if any.
    pub violations: Vec<Violation>,
    /// Extra values a client may show, e.g. `available_monthly`.
    pub extra: Map<String, Value>,
}

impl Problem {
    /// Creates a problem without violations or extra values.
    pub fn new(
        kind: ErrorKind,
        code: impl Into<String>,
        message_en: impl Into<String>,
        message_fa: impl Into<String>,
    ) -> Problem {
        Problem {
            kind,
            code: code.into(),
            message_en: message_en.into(),
            message_fa: message_fa.into(),
            violations: Vec::new(),
            extra: Map::new(),
        }
    }

    /// Adds field violations.
    pub fn with_violations(mut self, violations: impl IntoIterator<Item = Violation>) -> Problem {
        self.violations.extend(violations);
        self
    }

    /// Adds one field violation.
    pub fn with_violation(mut self, violation: Violation) -> Problem {
        self.violations.push(violation);
        self
    }

    /// Adds an extra value.
    pub fn with_extra(mut self, key: impl Into<String>, value: impl Into<Value>) -> Problem {
        self.extra.insert(key.into(), value.into());
        self
    }

    /// Creates an internal error: the cause is logged, the message reveals nothing of it.
    pub fn internal(cause: impl fmt::Display) -> Problem {
        tracing::error!(error = %cause, "internal error");
        Problem::new(
            ErrorKind::Internal,
            codes::INTERNAL,
            "An internal error occurred; please try again later.",
            "خطای داخلی رخ داد؛ لطفاً بعداً دوباره تلاش کنید.",
        )
    }

    /// Creates an `InvalidArgument` problem with the given violations.
    pub fn invalid(violations: impl IntoIterator<Item = Violation>) -> Problem {
        Problem::new(
            ErrorKind::InvalidArgument,
            codes::INVALID_ARGUMENT,
            "The request has invalid fields.",
            "درخواست فیلدهای نامعتبر دارد.",
        )
        .with_violations(violations)
    }

    /// Creates an `Unauthenticated` problem.
    pub fn unauthenticated() -> Problem {
        Problem::new(
            ErrorKind::Unauthenticated,
            codes::UNAUTHENTICATED,
            "Authentication is required.",
            "ابتدا وارد شوید.",
        )
    }

    /// Creates a `PermissionDenied` problem.
    pub fn permission_denied() -> Problem {
        Problem::new(
            ErrorKind::PermissionDenied,
            codes::PERMISSION_DENIED,
            "You are not allowed to do this.",
            "اجازهٔ این کار را ندارید.",
        )
    }

    /// Creates the `page_token_invalid` problem of a token the service did not make,
    /// with its violation on `page_token`.
    pub fn page_token_invalid() -> Problem {
        Problem::new(
            ErrorKind::InvalidArgument,
            codes::PAGE_TOKEN_INVALID,
            "The page token is invalid.",
            "نشانهٔ صفحه نامعتبر است.",
        )
        .with_violation(Violation::new(
            "page_token",
            codes::PAGE_TOKEN_INVALID,
            "Use the next_page_token of a previous answer.",
            "از next_page_token پاسخ قبلی استفاده کنید.",
        ))
    }

    /// Creates a `NotFound` problem with the given code.
    pub fn not_found(code: impl Into<String>) -> Problem {
        Problem::new(
            ErrorKind::NotFound,
            code,
            "The requested item was not found.",
            "مورد درخواستی یافت نشد.",
        )
    }

    /// Creates an `Unavailable` problem, logging the cause.
    pub fn unavailable(cause: impl fmt::Display) -> Problem {
        tracing::warn!(error = %cause, "dependency unavailable");
        Problem::new(
            ErrorKind::Unavailable,
            codes::UNAVAILABLE,
            "The service is temporarily unavailable; please try again.",
            "سرویس موقتاً در دسترس نیست؛ لطفاً دوباره تلاش کنید.",
        )
    }

    /// Recovers a problem from a status made by `From<Problem> for Status`; a status
    /// without details gets a code derived from its gRPC code (e.g. `unavailable`).
    pub fn from_status(status: &Status) -> Problem {
        let kind = ErrorKind::from_grpc(status.code());
        let details = status.get_error_details();
        let mut problem = match details.error_info() {
            Some(info) => {
                let message_en = info
                    .metadata
                    .get(META_MESSAGE_EN)
                    .cloned()
                    .unwrap_or_else(|| status.message().to_owned());
                let message_fa = info
                    .metadata
                    .get(META_MESSAGE_FA)
                    .cloned()
                    .unwrap_or_else(|| message_en.clone());
                let extra = info
                    .metadata
                    .get(META_EXTRA)
                    .and_then(|json| serde_json::from_str::<Map<String, Value>>(json).ok())
                    .unwrap_or_default();
                let mut problem = Problem::new(kind, info.reason.clone(), message_en, message_fa);
                problem.extra = extra;
                problem
            }
            None => {
                let message = status.message().to_owned();
                Problem::new(
                    kind,
                    grpc_code_name(status.code()),
                    message.clone(),
                    message,
                )
            }
        };
        if let Some(bad_request) = details.bad_request() {
            problem.violations = bad_request
                .field_violations
                .iter()
                .map(violation_from_field)
                .collect();
        }
        problem
    }
}

fn violation_from_field(field: &FieldViolation) -> Violation {
    match serde_json::from_str::<ViolationDescription>(&field.description) {
        Ok(description) => Violation {
            field: field.field.clone(),
            code: description.code,
            message_en: description.message_en,
            message_fa: description.message_fa,
        },
        Err(_) => Violation {
            field: field.field.clone(),
            code: if field.reason.is_empty() {
                "invalid".to_owned()
            } else {
                field.reason.clone()
            },
            message_en: field.description.clone(),
            message_fa: field
                .localized_message
                .as_ref()
                .map(|m| m.message.clone())
                .unwrap_or_else(|| field.description.clone()),
        },
    }
}

/// Returns the snake_case name of a gRPC code.
fn grpc_code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "ok",
        Code::Cancelled => "cancelled",
        Code::Unknown => "unknown",
        Code::InvalidArgument => "invalid_argument",
        Code::DeadlineExceeded => "deadline_exceeded",
        Code::NotFound => "not_found",
        Code::AlreadyExists => "already_exists",
        Code::PermissionDenied => "permission_denied",
        Code::ResourceExhausted => "resource_exhausted",
        Code::FailedPrecondition => "failed_precondition",
        Code::Aborted => "aborted",
        Code::OutOfRange => "out_of_range",
        Code::Unimplemented => "unimplemented",
        Code::Internal => "internal",
        Code::Unavailable => "unavailable",
        Code::DataLoss => "data_loss",
        Code::Unauthenticated => "unauthenticated",
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message_en)
    }
}

impl std::error::Error for Problem {}

impl From<Problem> for Status {
    fn from(problem: Problem) -> Status {
        let mut metadata = HashMap::new();
        metadata.insert(META_MESSAGE_EN.to_owned(), problem.message_en.clone());
        metadata.insert(META_MESSAGE_FA.to_owned(), problem.message_fa.clone());
        if !problem.extra.is_empty() {
            metadata.insert(
                META_EXTRA.to_owned(),
                Value::Object(problem.extra.clone()).to_string(),
            );
        }
        let mut details =
            ErrorDetails::with_error_info(problem.code.clone(), ERROR_DOMAIN, metadata);
        if !problem.violations.is_empty() {
            let violations: Vec<FieldViolation> = problem
                .violations
                .iter()
                .map(|violation| {
                    let description = serde_json::to_string(&ViolationDescription {
                        code: violation.code.clone(),
                        message_en: violation.message_en.clone(),
                        message_fa: violation.message_fa.clone(),
                    })
                    .unwrap_or_else(|_| violation.message_en.clone());
                    let mut field = FieldViolation::new(violation.field.clone(), description);
                    field.reason = violation.code.clone();
                    field
                })
                .collect();
            details.set_bad_request(violations);
        }
        Status::with_error_details(problem.kind.grpc_code(), problem.message_en, details)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const ALL_KINDS: [ErrorKind; 9] = [
        ErrorKind::InvalidArgument,
        ErrorKind::Unauthenticated,
        ErrorKind::PermissionDenied,
        ErrorKind::NotFound,
        ErrorKind::Conflict,
        ErrorKind::RuleRefused,
        ErrorKind::RateLimited,
        ErrorKind::Unavailable,
        ErrorKind::Internal,
    ];

    #[test]
    fn every_kind_round_trips_through_its_grpc_code() {
        for kind in ALL_KINDS {
            assert_eq!(ErrorKind::from_grpc(kind.grpc_code()), kind);
        }
    }

    #[test]
    fn kinds_map_to_the_documented_codes_and_statuses() {
        assert_eq!(ErrorKind::Conflict.grpc_code(), Code::Aborted);
        assert_eq!(ErrorKind::RuleRefused.grpc_code(), Code::FailedPrecondition);
        assert_eq!(ErrorKind::RateLimited.grpc_code(), Code::ResourceExhausted);
        let statuses: Vec<u16> = ALL_KINDS.iter().map(|k| k.http_status()).collect();
        assert_eq!(statuses, [400, 401, 403, 404, 409, 422, 429, 503, 500]);
    }

    #[test]
    fn problem_round_trips_through_a_status() {
        let problem = Problem::new(
            ErrorKind::RuleRefused,
            "monthly_limit_exceeded",
            "The purchase exceeds the monthly credit.",
            "مبلغ خرید از اعتبار ماهانه بیشتر است.",
        )
        .with_extra("available_monthly", 1_250_000)
        .with_extra("period", "1405-09")
        .with_violations([
            Violation::new("amount", "amount_too_large", "Too large", "بیش از حد"),
            Violation::new("card", "card_blocked", "Blocked", "مسدود"),
        ]);

        let status = Status::from(problem.clone());

        assert_eq!(status.code(), Code::FailedPrecondition);
        assert_eq!(status.message(), "The purchase exceeds the monthly credit.");
        assert_eq!(Problem::from_status(&status), problem);
        assert_eq!(
            Problem::from_status(&status).extra.get("available_monthly"),
            Some(&json!(1_250_000))
        );
    }

    #[test]
    fn problem_survives_the_wire_encoding() {
        let problem = Problem::new(
            ErrorKind::NotFound,
            "merchant_not_found",
            "No merchant",
            "فروشگاه یافت نشد",
        );
        let status = Status::from(problem.clone());

        // Simulates the trip across the network: status -> HTTP headers -> status.
        let mut headers = http::HeaderMap::new();
        status.add_header(&mut headers).unwrap();
        let received = Status::from_header_map(&headers).unwrap();

        assert_eq!(Problem::from_status(&received), problem);
    }

    #[test]
    fn plain_status_gets_a_code_from_its_grpc_code() {
        let problem = Problem::from_status(&Status::unavailable("connection refused"));
        assert_eq!(problem.kind, ErrorKind::Unavailable);
        assert_eq!(problem.code, "unavailable");
        assert_eq!(problem.message_en, "connection refused");

        let problem = Problem::from_status(&Status::internal("boom"));
        assert_eq!(
            (problem.kind, problem.code.as_str()),
            (ErrorKind::Internal, "internal")
        );
        let problem = Problem::from_status(&Status::deadline_exceeded("late"));
        assert_eq!(problem.code, "deadline_exceeded");
    }

    #[test]
    fn internal_problem_reveals_nothing_of_its_cause() {
        let problem = Problem::internal("database password is hunter2");
        assert_eq!(problem.kind, ErrorKind::Internal);
        assert!(!problem.message_en.contains("hunter2"));
        let status = Status::from(problem);
        assert!(!status.message().contains("hunter2"));
    }
}
