//! The one error type of the guarantee service and its mapping to gRPC.

use tavana_kit::error::{ErrorKind, Problem, Violation, codes};
use tonic::Status;

use crate::domain::{RequestStatus, RuleFailure};

/// Everything that can go wrong in the guarantee service.
#[derive(Debug, thiserror::Error)]
pub enum GuaranteeError {
    /// No caller identity came with the call.
    #[error("the caller is not authenticated")]
    Unauthenticated,
    /// The caller knows of the request but may not do this (R6, R10).
    #[error("the caller may not do this")]
    PermissionDenied,
    /// The caller filed or guarantees the request they try to decide as finance (R32).
    #[error("the caller is a party to this credit request")]
    ConflictOfInterest,
    /// The caller had too many filings refused lately (R32: no probing of colleagues).
    #[error("too many refused filings; retry after {retry_after_seconds} s")]
    TooManyRefusedFilings {
        /// When the caller may file again.
        retry_after_seconds: u64,
    },
    /// The request does not exist or the caller may not know of it.
    #[error("credit request not found")]
    RequestNotFound,
    /// The calling employee has no HR record in identity.
    #[error("the calling employee has no HR record")]
    ApplicantNotFound,
    /// A field is malformed.
    #[error("invalid request: {0:?}")]
    Invalid(Vec<Violation>),
    /// The applicant already has a pending or active request (R9).
    #[error("the applicant already has an open credit request")]
    OpenRequestExists,
    /// One or more rules of R7 and R8 refuse the request; all of them are listed.
    #[error("credit request refused: {0:?}")]
    Refused(Vec<RuleFailure>),
    /// The request is not in a state that allows this decision (R9).
    #[error("credit request is {0}, not pending")]
    NotPending(RequestStatus),
    /// A guarantee can be released only for an approved request (R13).
    #[error("credit request is {0}, not approved")]
    NotApproved(RequestStatus),
    /// The page token is not one this service made.
    #[error("invalid page token")]
    PageTokenInvalid,
    /// A peer service could not be reached.
    #[error("peer unavailable: {0}")]
    Unavailable(String),
    /// A bug or an infrastructure failure; the cause chain goes to the log.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl GuaranteeError {
    /// Returns the stable snake_case code of the error.
    pub fn code(&self) -> &'static str {
        match self {
            GuaranteeError::Unauthenticated => codes::UNAUTHENTICATED,
            GuaranteeError::PermissionDenied => codes::PERMISSION_DENIED,
            GuaranteeError::ConflictOfInterest => "conflict_of_interest",
            GuaranteeError::TooManyRefusedFilings { .. } => "too_many_refused_filings",
            GuaranteeError::RequestNotFound => "credit_request_not_found",
            GuaranteeError::ApplicantNotFound => "employee_not_found",
            GuaranteeError::Invalid(_) => codes::INVALID_ARGUMENT,
            GuaranteeError::OpenRequestExists => "open_request_exists",
            GuaranteeError::Refused(failures) => failures
                .first()
                .map(RuleFailure::code)
                .unwrap_or("credit_request_refused"),
            GuaranteeError::NotPending(_) => "request_not_pending",
            GuaranteeError::NotApproved(_) => "request_not_approved",
            GuaranteeError::PageTokenInvalid => codes::PAGE_TOKEN_INVALID,
            GuaranteeError::Unavailable(_) => codes::UNAVAILABLE,
            GuaranteeError::Internal(_) => codes::INTERNAL,
        }
    }
}

impl From<sea_orm::DbErr> for GuaranteeError {
    fn from(error: sea_orm::DbErr) -> GuaranteeError {
        GuaranteeError::Internal(error.into())
    }
}

impl GuaranteeError {
    /// Returns the problem a client sees.
    pub fn to_problem(&self) -> Problem {
        let code = self.code();
        match self {
            GuaranteeError::Unauthenticated => Problem::unauthenticated(),
            GuaranteeError::PermissionDenied => Problem::new(
                ErrorKind::PermissionDenied,
                code,
                "You are not allowed to do this with this credit request.",
                "شما اجازهٔ انجام این کار را روی این درخواست اعتبار ندارید.",
            ),
            GuaranteeError::ConflictOfInterest => Problem::new(
                ErrorKind::PermissionDenied,
                code,
                "You cannot decide a credit request that you filed or guarantee.",
                "شما نمی‌توانید دربارهٔ درخواستی که خودتان ثبت کرده یا ضامن آن هستید تصمیم بگیرید.",
            ),
            GuaranteeError::TooManyRefusedFilings {
                retry_after_seconds,
            } => Problem::new(
                ErrorKind::RateLimited,
                code,
                "Too many of your credit requests were refused today; please try again later.",
                "تعداد زیادی از درخواست‌های اعتبار شما امروز رد شده است؛ لطفاً بعداً دوباره تلاش کنید.",
            )
            .with_extra("retry_after_seconds", *retry_after_seconds),
            GuaranteeError::RequestNotFound => Problem::new(
                ErrorKind::NotFound,
                code,
                "The credit request was not found.",
                "درخواست اعتبار یافت نشد.",
            ),
            GuaranteeError::ApplicantNotFound => Problem::new(
                ErrorKind::NotFound,
                code,
                "Your employment record was not found; please ask your region's administrative office to register it.",
                "اطلاعات استخدامی شما یافت نشد؛ لطفاً از امور اداری منطقهٔ خود بخواهید آن را ثبت کند.",
            ),
            GuaranteeError::Invalid(violations) => Problem::invalid(violations.iter().cloned()),
            GuaranteeError::OpenRequestExists => Problem::new(
                ErrorKind::Conflict,
                code,
                "You already have an open credit request; a new one can be filed after it is rejected or cancelled.",
                "شما یک درخواست اعتبار باز دارید؛ پس از رد یا لغو آن می‌توانید درخواست تازه‌ای ثبت کنید.",
            ),
            GuaranteeError::Refused(failures) => {
                let violations = failures.iter().map(|failure| {
                    Violation::new(
                        failure.field(),
                        failure.code(),
                        failure.message_en(),
                        failure.message_fa(),
                    )
                });
                Problem::new(
                    ErrorKind::RuleRefused,
                    code,
                    "The credit request does not meet the rules; every failed rule is listed.",
                    "درخواست اعتبار با ضوابط مطابقت ندارد؛ همهٔ موارد در فهرست آمده است.",
                )
                .with_violations(violations)
            }
            GuaranteeError::NotPending(status) => Problem::new(
                ErrorKind::Conflict,
                code,
                format!("The credit request is {status} and can no longer be decided or cancelled."),
                "این درخواست اعتبار دیگر در انتظار بررسی نیست و امکان تصمیم‌گیری یا لغو آن وجود ندارد.",
            )
            .with_extra("status", status.as_str()),
            GuaranteeError::NotApproved(status) => Problem::new(
                ErrorKind::Conflict,
                code,
                format!("The credit request is {status}; only an approved request holds a guarantee to release."),
                "این درخواست اعتبار تأیید نشده است و ضمانتی برای آزادسازی ندارد.",
            )
            .with_extra("status", status.as_str()),
            GuaranteeError::PageTokenInvalid => Problem::page_token_invalid(),
            GuaranteeError::Unavailable(cause) => Problem::unavailable(cause),
            GuaranteeError::Internal(cause) => Problem::internal(format!("{cause:#}")),
        }
    }
}

impl From<GuaranteeError> for Status {
    fn from(error: GuaranteeError) -> Status {
        error.to_problem().into()
    }
}
