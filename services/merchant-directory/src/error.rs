//! The one error type of the merchant directory, with stable codes, and its mapping to
//! gRPC.

use tavana_kit::error::{ErrorKind, Problem, Violation, codes};
use tonic::Status;

/// Everything the merchant directory refuses or fails at.
#[derive(Debug, thiserror::Error)]
pub enum MerchantError {
    /// Fields of the request are invalid.
    #[error("invalid fields")]
    Invalid(Vec<Violation>),
    /// No or an unknown caller where one is required.
    #[error("unauthenticated")]
    Unauthenticated,
    /// The API key matches no merchant.
    #[error("merchant key invalid")]
    MerchantKeyInvalid,
    /// The caller's role does not allow this.
    #[error("permission denied")]
    PermissionDenied,
    /// A welfare manager named a region that is not theirs (R26).
    #[error("region is not the caller's")]
    RegionNotYours,
    /// A welfare manager of several regions did not say which one.
    #[error("region required")]
    RegionRequired,
    /// No such proposal, or not one the caller may see.
    #[error("proposal not found")]
    ProposalNotFound,
    /// No such merchant, or not one the caller may see.
    #[error("merchant not found")]
    MerchantNotFound,
    /// The store is already a merchant or already proposed (R26).
    #[error("merchant duplicate")]
    Duplicate {
        /// The existing merchant, when it is one.
        existing_merchant_id: Option<String>,
        /// The pending proposal, when it is one.
        existing_proposal_id: Option<String>,
    },
    /// The proposal was approved or rejected already.
    #[error("proposal already decided")]
    ProposalAlreadyDecided {
        /// Its status now.
        status: &'static str,
    },
    /// The page token is not one this service made.
    #[error("invalid page token")]
    PageTokenInvalid,
    /// The database or another dependency failed.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<sea_orm::DbErr> for MerchantError {
    fn from(error: sea_orm::DbErr) -> MerchantError {
        MerchantError::Internal(error.into())
    }
}

impl MerchantError {
    /// Returns the stable snake_case code.
    pub fn code(&self) -> &'static str {
        match self {
            MerchantError::Invalid(_) => codes::INVALID_ARGUMENT,
            MerchantError::Unauthenticated => codes::UNAUTHENTICATED,
            MerchantError::MerchantKeyInvalid => "merchant_key_invalid",
            MerchantError::PermissionDenied => codes::PERMISSION_DENIED,
            MerchantError::RegionNotYours => "region_not_yours",
            MerchantError::RegionRequired => "region_required",
            MerchantError::ProposalNotFound => "proposal_not_found",
            MerchantError::MerchantNotFound => "merchant_not_found",
            MerchantError::Duplicate { .. } => "merchant_duplicate",
            MerchantError::ProposalAlreadyDecided { .. } => "proposal_already_decided",
            MerchantError::PageTokenInvalid => codes::PAGE_TOKEN_INVALID,
            MerchantError::Internal(_) => codes::INTERNAL,
        }
    }

    /// Returns the problem a client sees.
    pub fn to_problem(&self) -> Problem {
        let code = self.code();
        match self {
            MerchantError::Invalid(violations) => Problem::invalid(violations.iter().cloned()),
            MerchantError::Unauthenticated => Problem::unauthenticated(),
            MerchantError::MerchantKeyInvalid => Problem::new(
                ErrorKind::Unauthenticated,
                code,
                "The merchant API key is not valid.",
                "کلید دسترسی فروشگاه معتبر نیست.",
            ),
            MerchantError::PermissionDenied => Problem::permission_denied(),
            MerchantError::RegionNotYours => Problem::new(
                ErrorKind::PermissionDenied,
                code,
                "You may propose merchants only in your own region.",
                "فقط می‌توانید فروشگاه‌های منطقهٔ خودتان را معرفی کنید.",
            ),
            MerchantError::RegionRequired => Problem::new(
                ErrorKind::RuleRefused,
                code,
                "You manage several regions: name the region of this merchant.",
                "شما مدیر رفاه چند منطقه هستید: منطقهٔ این فروشگاه را مشخص کنید.",
            )
            .with_violation(Violation::new(
                "region_code",
                code,
                "Name one of your regions.",
                "یکی از منطقه‌های خود را مشخص کنید.",
            )),
            MerchantError::ProposalNotFound => Problem::new(
                ErrorKind::NotFound,
                code,
                "The merchant proposal was not found.",
                "پیشنهاد فروشگاه یافت نشد.",
            ),
            MerchantError::MerchantNotFound => Problem::new(
                ErrorKind::NotFound,
                code,
                "The merchant was not found.",
                "فروشگاه یافت نشد.",
            ),
            MerchantError::Duplicate {
                existing_merchant_id,
                existing_proposal_id,
            } => {
                let mut problem = Problem::new(
                    ErrorKind::Conflict,
                    code,
                    "This store is already a merchant or already proposed.",
                    "این فروشگاه پیش‌تر ثبت یا معرفی شده است.",
                );
                if let Some(id) = existing_merchant_id {
                    problem = problem.with_extra("existing_merchant_id", id.clone());
                }
                if let Some(id) = existing_proposal_id {
                    problem = problem.with_extra("existing_proposal_id", id.clone());
                }
                problem
            }
            MerchantError::ProposalAlreadyDecided { status } => Problem::new(
                ErrorKind::Conflict,
                code,
                "The proposal has already been decided.",
                "دربارهٔ این پیشنهاد پیش‌تر تصمیم گرفته شده است.",
            )
            .with_extra("status", *status),
            MerchantError::PageTokenInvalid => Problem::page_token_invalid(),
            MerchantError::Internal(cause) => Problem::internal(format!("{cause:#}")),
        }
    }
}

impl From<MerchantError> for Status {
    fn from(error: MerchantError) -> Status {
        error.to_problem().into()
    }
}
