//! The one error type of the settlement service, and its mapping to gRPC.

use sea_orm::DbErr;
use tavana_kit::caller::Refusal;
use tavana_kit::error::{ErrorKind, Problem, Violation, codes};
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
    /// Another transaction changed the same instalments; the caller may retry.
    #[error("the instalments changed concurrently")]
    ConcurrentChange,
    /// A peer (credit, for R31's reconciliation) could not be read.
    #[error("peer unavailable: {0}")]
    Unavailable(String),
    /// The period to close has not begun (R29).
    #[error("the period has not started")]
    PeriodNotStarted,
    /// No such line in the unmatched queue (R23).
    #[error("no such unmatched line")]
    UnmatchedLineNotFound,
    /// The line was resolved before (R23).
    #[error("the unmatched line is already resolved")]
    UnmatchedLineResolved,
    /// An assigned line does not pay exactly what that period asked of the employee (R23);
    /// the matching's code.
    #[error("the line does not match: {0}")]
    LineDoesNotMatch(&'static str),
    /// A bug or an infrastructure failure (the database, a sum of rials that overflowed);
    /// the cause chain goes to the log.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<DbErr> for SettlementError {
    fn from(error: DbErr) -> SettlementError {
        SettlementError::Internal(error.into())
    }
}

impl From<AmountOverflow> for SettlementError {
    fn from(error: AmountOverflow) -> SettlementError {
        SettlementError::Internal(error.into())
    }
}

impl SettlementError {
    /// Returns the stable snake_case code of the error.
    pub fn code(&self) -> &'static str {
        match self {
            SettlementError::Unauthenticated => codes::UNAUTHENTICATED,
            SettlementError::PermissionDenied => codes::PERMISSION_DENIED,
            SettlementError::Invalid(_) => codes::INVALID_ARGUMENT,
            SettlementError::PurchaseNotFound => "purchase_not_found",
            SettlementError::RemittanceNotFound => "remittance_not_found",
            SettlementError::ConcurrentChange => "concurrent_change",
            SettlementError::Unavailable(_) => codes::UNAVAILABLE,
            SettlementError::PeriodNotStarted => "period_not_started",
            SettlementError::UnmatchedLineNotFound => "unmatched_line_not_found",
            SettlementError::UnmatchedLineResolved => "unmatched_line_resolved",
            SettlementError::LineDoesNotMatch(code) => code,
            SettlementError::Internal(_) => codes::INTERNAL,
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
            SettlementError::ConcurrentChange => Problem::new(
                ErrorKind::Conflict,
                self.code(),
                "The instalments were changed at the same time; please try again.",
                "اقساط هم‌زمان تغییر کردند؛ لطفاً دوباره تلاش کنید.",
            ),
            SettlementError::Unavailable(cause) => Problem::unavailable(cause),
            SettlementError::PeriodNotStarted => Problem::new(
                ErrorKind::RuleRefused,
                self.code(),
                "The period's deductions are not due yet (from its 8th); it cannot be closed.",
                "کسورات این دوره هنوز سررسید نشده است (از هشتم ماه)؛ نمی‌توان آن را بست.",
            ),
            SettlementError::UnmatchedLineNotFound => Problem::new(
                ErrorKind::NotFound,
                self.code(),
                "The unmatched line was not found.",
                "سطر تطبیق‌نیافتهٔ مورد نظر یافت نشد.",
            ),
            SettlementError::UnmatchedLineResolved => Problem::new(
                ErrorKind::Conflict,
                self.code(),
                "The line has already been resolved.",
                "این سطر پیش‌تر رسیدگی شده است.",
            ),
            SettlementError::LineDoesNotMatch(_) => Problem::new(
                ErrorKind::RuleRefused,
                self.code(),
                "The line does not pay exactly what that period's deduction list asks of the employee.",
                "مبلغ این سطر با کسر همان دوره برای این کارمند برابر نیست.",
            ),
            SettlementError::Internal(cause) => Problem::internal(format!("{cause:#}")),
        }
    }
}

impl From<Refusal> for SettlementError {
    fn from(refusal: Refusal) -> SettlementError {
        match refusal {
            Refusal::Unauthenticated => SettlementError::Unauthenticated,
            Refusal::PermissionDenied => SettlementError::PermissionDenied,
        }
    }
}

impl From<SettlementError> for Status {
    fn from(error: SettlementError) -> Status {
        error.to_problem().into()
    }
}
