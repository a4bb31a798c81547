//! The one error type of the identity service, with stable codes.

use tavana_kit::error::{ErrorKind, Problem, Violation, codes};
use tonic::Status;

/// Everything that can go wrong in identity, as a client sees it.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// One or more fields are invalid; every bad field is listed.
    #[error("invalid fields")]
    Invalid(Vec<Violation>),
    /// No caller identity.
    #[error("unauthenticated")]
    Unauthenticated,
    /// The caller may not do this (R6).
    #[error("permission denied")]
    PermissionDenied,
    /// Wrong code, unknown challenge or expired challenge: one answer for all (R3).
    #[error("invalid login code")]
    InvalidCode,
    /// Too many codes sent to this mobile (R3).
    #[error("too many login codes")]
    TooManyCodes {
        /// Seconds until the next code may be sent.
        retry_after_seconds: u64,
    },
    /// The refresh token is unknown, expired or revoked.
    #[error("invalid refresh token")]
    RefreshTokenInvalid,
    /// An already rotated refresh token was presented: the session family is revoked.
    #[error("refresh token reused")]
    RefreshTokenReused,
    /// No such employee (or not visible to the caller).
    #[error("employee not found")]
    EmployeeNotFound,
    /// No such organization.
    #[error("organization not found")]
    OrganizationNotFound,
    /// HR data names an organization that does not exist.
    #[error("unknown organization")]
    OrganizationUnknown,
    /// The session does not exist or is not the caller's.
    #[error("session not found")]
    SessionNotFound,
    /// The employee has an account: only support changes the mobile (R5).
    #[error("mobile change requires support")]
    MobileChangeRequiresSupport,
    /// The dev SMS inbox exists only with the dev provider.
    #[error("dev sms not available")]
    DevSmsUnavailable,
    /// The caller tried to grant or revoke one of their own roles (R32).
    #[error("own role")]
    OwnRole,
    /// A bug or an infrastructure failure; the cause chain goes to the log.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<sea_orm::DbErr> for IdentityError {
    fn from(error: sea_orm::DbErr) -> Self {
        IdentityError::Internal(error.into())
    }
}

impl From<sea_orm::TransactionError<IdentityError>> for IdentityError {
    fn from(error: sea_orm::TransactionError<IdentityError>) -> Self {
        match error {
            sea_orm::TransactionError::Connection(error) => error.into(),
            sea_orm::TransactionError::Transaction(error) => error,
        }
    }
}

impl IdentityError {
    /// Returns the stable snake_case code.
    pub fn code(&self) -> &'static str {
        match self {
            IdentityError::Invalid(_) => codes::INVALID_ARGUMENT,
            IdentityError::Unauthenticated => codes::UNAUTHENTICATED,
            IdentityError::PermissionDenied => codes::PERMISSION_DENIED,
            IdentityError::InvalidCode => "invalid_code",
            IdentityError::TooManyCodes { .. } => "too_many_codes",
            IdentityError::RefreshTokenInvalid => "refresh_token_invalid",
            IdentityError::RefreshTokenReused => "refresh_token_reused",
            IdentityError::EmployeeNotFound => "employee_not_found",
            IdentityError::OrganizationNotFound => "organization_not_found",
            IdentityError::OrganizationUnknown => "organization_unknown",
            IdentityError::SessionNotFound => "session_not_found",
            IdentityError::MobileChangeRequiresSupport => "mobile_change_requires_support",
            IdentityError::DevSmsUnavailable => "not_found",
            IdentityError::OwnRole => "own_role",
            IdentityError::Internal(_) => codes::INTERNAL,
        }
    }

    /// Returns the problem a client sees.
    pub fn to_problem(&self) -> Problem {
        let problem = |kind, en: &str, fa: &str| Problem::new(kind, self.code(), en, fa);
        match self {
            IdentityError::Invalid(violations) => Problem::invalid(violations.clone()),
            IdentityError::Unauthenticated => Problem::unauthenticated(),
            IdentityError::PermissionDenied => Problem::permission_denied(),
            IdentityError::InvalidCode => problem(
                ErrorKind::Unauthenticated,
                "The code is wrong or has expired; request a new one.",
                "کد نادرست است یا منقضی شده است؛ کد تازه‌ای درخواست کنید.",
            ),
            IdentityError::TooManyCodes {
                retry_after_seconds,
            } => problem(
                ErrorKind::RateLimited,
                "Too many codes were requested for this mobile; try again later.",
                "برای این شماره بیش از حد مجاز کد درخواست شده است؛ کمی بعد دوباره تلاش کنید.",
            )
            .with_extra("retry_after_seconds", *retry_after_seconds),
            IdentityError::RefreshTokenInvalid => problem(
                ErrorKind::Unauthenticated,
                "The session has expired; log in again.",
                "نشست شما به پایان رسیده است؛ دوباره وارد شوید.",
            ),
            IdentityError::RefreshTokenReused => problem(
                ErrorKind::Unauthenticated,
                "This refresh token was already used; the session is revoked, log in again.",
                "این توکن پیش‌تر به کار رفته است؛ نشست باطل شد، دوباره وارد شوید.",
            ),
            IdentityError::EmployeeNotFound => problem(
                ErrorKind::NotFound,
                "The employee was not found.",
                "کارمند یافت نشد.",
            ),
            IdentityError::OrganizationNotFound => problem(
                ErrorKind::NotFound,
                "The organization was not found.",
                "سازمان یافت نشد.",
            ),
            IdentityError::OrganizationUnknown => problem(
                ErrorKind::RuleRefused,
                "The organization does not exist; add it first.",
                "سازمان وجود ندارد؛ ابتدا آن را ثبت کنید.",
            ),
            IdentityError::SessionNotFound => problem(
                ErrorKind::NotFound,
                "The session was not found.",
                "نشست یافت نشد.",
            ),
            IdentityError::MobileChangeRequiresSupport => problem(
                ErrorKind::RuleRefused,
                "This employee has an account: only support can change the mobile number, at the welfare unit's request.",
                "این کارمند حساب کاربری دارد: شمارهٔ همراه فقط از راه پشتیبانی و به درخواست واحد رفاه تغییر می‌کند.",
            ),
            IdentityError::DevSmsUnavailable => Problem::not_found("not_found"),
            IdentityError::OwnRole => problem(
                ErrorKind::PermissionDenied,
                "Nobody grants or revokes their own roles; ask another support user.",
                "هیچ‌کس نقش‌های خودش را اعطا یا لغو نمی‌کند؛ از کاربر پشتیبانی دیگری بخواهید.",
            ),
            IdentityError::Internal(error) => Problem::internal(format!("{error:#}")),
        }
    }
}

impl From<IdentityError> for Status {
    fn from(error: IdentityError) -> Status {
        error.to_problem().into()
    }
}
