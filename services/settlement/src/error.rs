//! The one error type of the settlement service, and its mapping to gRPC.

use sea_orm::DbErr;
use tavana_kit::error::{ErrorKind, Problem, Violation};
use tonic::Status;

use crate::domain::remittance::AmountOverflow;

/// Everything that can go wrong in the settlement service.
#[derive(Debug, thiserror::Error)]
pub enum SettlementError {
    /// No caller identity was given.
    #[error("the caller is not authenticated")]
    Unauthenticated,
    /// The caller's role does not allow this.
    #[error("the caller may not do this")]
    PermissionDenied,
    /// Fields of the request are invalid.
    #[error("the request has invalid fields")]
    Invalid(Vec<Violation>),
    /// No schedule was recorded for the purchase.
    #[error("no schedule was recorded for the purchase")]
    PurchaseNotFound,
    /// No such remittance.
    #[error("no such remittance")]
    RemittanceNotFound,
    /// A refund would cancel an instalment that is already settled (R20).
    #[error("an instalment of the purchase is already settled")]
    InstalmentAlreadySettled,
    /// Another transaction changed the same instalments; the caller may retry.
    #[error("the instalments changed concurrently")]
    ConcurrentChange,
    /// A sum of rials overflowed.
    #[error("amounts overflow")]
    Overflow(#[from] AmountOverflow),
    /// The database failed.
    #[error("database error: {0}")]
    Database(#[from] DbErr),
}

impl SettlementError {
    /// Returns the stable snake_case code of the error.
    pub fn code(&self) -> &'static str {
        match self {
            SettlementError::Unauthenticated => "unauthenticated",
            SettlementError::PermissionDenied => "permission_denied",
            SettlementError::Invalid(_) => "invalid_argument",
            SettlementError::PurchaseNotFound => "purchase_not_found",
            SettlementError::RemittanceNotFound => "remittance_not_found",
            SettlementError::InstalmentAlreadySettled => "instalment_already_settled",
            SettlementError::ConcurrentChange => "concurrent_change",
            SettlementError::Overflow(_) | SettlementError::Database(_) => "internal",
        }
    }

    /// Returns an `Invalid` error with one violation.
    pub fn invalid(
        field: impl Into<String>,
        code: impl Into<String>,
        message_en: impl Into<String>,
        message_fa: impl Into<String>,
    ) -> SettlementError {
        SettlementError::Invalid(vec![Violation::new(field, code, message_en, message_fa)])
    }

    /// Returns the problem a client sees.
    pub fn to_problem(&self) -> Problem {
        match self {
            SettlementError::Unauthenticated => Problem::unauthenticated(),
            SettlementError::PermissionDenied => Problem::permission_denied(),
            SettlementError::Invalid(violations) => Problem::invalid(violations.clone()),
            SettlementError::PurchaseNotFound => Problem::new(
                ErrorKind::NotFound,
                self.code(),
                "No instalment schedule was recorded for this purchase.",
                "برای این خرید برنامهٔ اقساطی ثبت نشده است.",
            ),
            SettlementError::RemittanceNotFound => Problem::new(
                ErrorKind::NotFound,
                self.code(),
                "The remittance was not found.",
                "واریزی مورد نظر یافت نشد.",
            ),
            SettlementError::InstalmentAlreadySettled => Problem::new(
                ErrorKind::RuleRefused,
                self.code(),
                "An instalment of this purchase is already settled; it can no longer be refunded.",
                "قسطی از این خرید تسویه شده است و دیگر نمی‌توان آن را بازپرداخت کرد.",
            ),
            SettlementError::ConcurrentChange => Problem::new(
                ErrorKind::Conflict,
                self.code(),
                "The instalments were changed at the same time; please try again.",
                "اقساط هم‌زمان تغییر کردند؛ لطفاً دوباره تلاش کنید.",
            ),
            SettlementError::Overflow(cause) => Problem::internal(cause),
            SettlementError::Database(cause) => Problem::internal(cause),
        }
    }
}

impl From<SettlementError> for Status {
    fn from(error: SettlementError) -> Status {
        error.to_problem().into()
    }
}
