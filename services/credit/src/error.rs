//! The one error enum of the credit service, with stable codes.

use tavana_kit::caller::Refusal;
use tavana_kit::error::{ErrorKind, Problem, Violation, codes};
use tavana_kit::money::Rial;

use crate::domain::facility::FacilityStatus;

/// Everything the credit service refuses or fails with.
#[derive(Debug, thiserror::Error)]
pub enum CreditError {
    /// The caller is not authenticated.
    #[error("unauthenticated")]
    Unauthenticated,
    /// The caller may not call this method.
    #[error("permission denied")]
    PermissionDenied,
    /// A field of the request is malformed.
    #[error("invalid field {field}: {code}")]
    InvalidField {
        /// The field path.
        field: &'static str,
        /// The stable code (also the problem's code).
        code: &'static str,
        /// The message in English.
        message_en: &'static str,
        /// The message in Persian.
        message_fa: &'static str,
    },
    /// The page token is not one this service made.
    #[error("page token invalid")]
    PageTokenInvalid,
    /// The employee has no facility (R12).
    #[error("no facility")]
    NoFacility,
    /// The facility is not usable now (R14).
    #[error("facility is {0:?}")]
    FacilityNotActive(FacilityStatus),
    /// An instalment of the employee is overdue: no purchase until it is settled (R29).
    #[error("facility overdue")]
    FacilityOverdue,
    /// The employee already has an open facility (R12).
    #[error("facility already open")]
    FacilityAlreadyOpen,
    /// The facility is closed: it cannot be suspended or resumed (R30).
    #[error("facility closed")]
    FacilityClosed,
    /// The facility still has purchases that are owed (R13).
    #[error("facility has debt")]
    FacilityHasDebt,
    /// The merchant is not contracted (R14).
    #[error("merchant not contracted")]
    MerchantNotContracted,
    /// The merchant does not support the purchase kind (R14).
    #[error("merchant does not support the kind")]
    MerchantKindNotSupported,
    /// The employee's organization contract is not in force (R14, S22).
    #[error("organization contract not in force")]
    OrganizationContractNotInForce,
    /// The instalment count is outside 1..=N (R15).
    #[error("instalment months out of range 1..={max}")]
    InstalmentMonthsOutOfRange {
        /// The facility's N.
        max: u32,
    },
    /// An instalment purchase of fewer rial than months would make a zero-rial
    /// instalment (R15).
    #[error("amount below {months} months")]
    AmountBelowMonths {
        /// The months asked for.
        months: u32,
    },
    /// A budget of R16 does not fit the purchase.
    #[error("insufficient credit")]
    InsufficientCredit {
        /// Room left in the monthly credit M.
        available_monthly: Rial,
        /// Room left in the purchasing power P.
        available_total: Rial,
    },
    /// The idempotency key was used before with another body (R19).
    #[error("idempotency key reused")]
    IdempotencyKeyReused,
    /// The purchase does not exist or is not the caller's.
    #[error("purchase not found")]
    PurchaseNotFound,
    /// The refund window of R20 has closed.
    #[error("refund window closed")]
    RefundWindowClosed,
    /// No card with that customer number (R21).
    #[error("card not found")]
    CardNotFound,
    /// The card is locked after 5 wrong PINs (R21).
    #[error("card locked")]
    CardLocked,
    /// The PIN is wrong (R21).
    #[error("pin invalid, {attempts_left} attempts left")]
    PinInvalid {
        /// Wrong PINs left before the card locks.
        attempts_left: u32,
    },
    /// A merchant's card purchase with an unknown card, a wrong PIN or a locked card:
    /// one answer for all three, so that a merchant key cannot learn which card numbers
    /// exist or how many guesses are left (R21).
    #[error("card rejected")]
    CardRejected,
    /// The PIN is still the national ID (R21, S12).
    #[error("pin must change")]
    PinMustChange,
    /// A peer service is unavailable.
    #[error("peer unavailable: {0}")]
    Unavailable(String),
    /// An unexpected failure.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<sea_orm::DbErr> for CreditError {
    fn from(error: sea_orm::DbErr) -> CreditError {
        CreditError::Internal(anyhow::Error::new(error))
    }
}

impl From<Refusal> for CreditError {
    fn from(refusal: Refusal) -> CreditError {
        match refusal {
            Refusal::Unauthenticated => CreditError::Unauthenticated,
            Refusal::PermissionDenied => CreditError::PermissionDenied,
        }
    }
}

impl CreditError {
    /// Returns the stable snake_case code of the error.
    pub fn code(&self) -> &'static str {
        match self {
            CreditError::Unauthenticated => codes::UNAUTHENTICATED,
            CreditError::PermissionDenied => codes::PERMISSION_DENIED,
            CreditError::InvalidField { code, .. } => code,
            CreditError::PageTokenInvalid => codes::PAGE_TOKEN_INVALID,
            CreditError::NoFacility => "no_facility",
            // R30: a suspended or closed facility says so; one not yet active is R12's.
            CreditError::FacilityNotActive(FacilityStatus::Suspended) => "facility_suspended",
            CreditError::FacilityNotActive(FacilityStatus::Closed) => "facility_closed",
            CreditError::FacilityNotActive(_) => "facility_not_active",
            CreditError::FacilityOverdue => "facility_overdue",
            CreditError::FacilityAlreadyOpen => "facility_already_open",
            CreditError::FacilityClosed => "facility_closed",
            CreditError::FacilityHasDebt => "facility_has_debt",
            CreditError::MerchantNotContracted => "merchant_not_contracted",
            CreditError::MerchantKindNotSupported => "merchant_kind_not_supported",
            CreditError::OrganizationContractNotInForce => "organization_contract_not_in_force",
            CreditError::InstalmentMonthsOutOfRange { .. } => "instalment_months_out_of_range",
            CreditError::AmountBelowMonths { .. } => "amount_below_months",
            CreditError::InsufficientCredit { .. } => "insufficient_credit",
            CreditError::IdempotencyKeyReused => "idempotency_key_reused",
            CreditError::PurchaseNotFound => "purchase_not_found",
            CreditError::RefundWindowClosed => "refund_window_closed",
            CreditError::CardNotFound => "card_not_found",
            CreditError::CardLocked => "card_locked",
            CreditError::PinInvalid { .. } => "pin_invalid",
            CreditError::CardRejected => "card_rejected",
            CreditError::PinMustChange => "pin_must_change",
            CreditError::Unavailable(_) => codes::UNAVAILABLE,
            CreditError::Internal(_) => codes::INTERNAL,
        }
    }

    /// Creates an internal error that says what was wrong (a stored value out of range, a
    /// count that does not fit): never a silent clamp.
    pub fn internal(context: &str) -> CreditError {
        CreditError::Internal(anyhow::anyhow!(context.to_owned()))
    }

    /// Creates an invalid-field error.
    pub fn invalid(
        field: &'static str,
        code: &'static str,
        message_en: &'static str,
        message_fa: &'static str,
    ) -> CreditError {
        CreditError::InvalidField {
            field,
            code,
            message_en,
            message_fa,
        }
    }

    /// Returns the problem a client sees.
    pub fn to_problem(&self) -> Problem {
        let refused =
            |en: &str, fa: &str| Problem::new(ErrorKind::RuleRefused, self.code(), en, fa);
        match self {
            CreditError::Unauthenticated => Problem::unauthenticated(),
            CreditError::PermissionDenied => Problem::permission_denied(),
            CreditError::InvalidField {
                field,
                code,
                message_en,
                message_fa,
            } => Problem::new(ErrorKind::InvalidArgument, *code, *message_en, *message_fa)
                .with_violation(Violation::new(*field, *code, *message_en, *message_fa)),
            CreditError::PageTokenInvalid => Problem::page_token_invalid(),
            CreditError::NoFacility => Problem::new(
                ErrorKind::NotFound,
                self.code(),
                "You have no credit facility yet.",
                "هنوز اعتباری برای شما فعال نشده است.",
            ),
            CreditError::FacilityNotActive(status) => refused(
                "Your credit facility is not active.",
                "اعتبار شما فعال نیست.",
            )
            .with_extra("status", status.as_str()),
            CreditError::FacilityOverdue => refused(
                "An instalment is overdue; the facility takes no purchase until it is settled.",
                "قسطی از شما معوق است؛ تا تسویهٔ آن خرید با این اعتبار ممکن نیست.",
            ),
            CreditError::FacilityAlreadyOpen => Problem::new(
                ErrorKind::Conflict,
                self.code(),
                "The employee already has an open credit facility.",
                "این کارمند هم‌اکنون یک اعتبار باز دارد.",
            ),
            CreditError::FacilityClosed => Problem::new(
                ErrorKind::Conflict,
                self.code(),
                "The facility is closed.",
                "این اعتبار بسته شده است.",
            ),
            CreditError::FacilityHasDebt => Problem::new(
                ErrorKind::Conflict,
                self.code(),
                "The facility still has unsettled purchases or held credit.",
                "این اعتبار هنوز خرید تسویه‌نشده یا اعتبار رزروشده دارد.",
            ),
            CreditError::MerchantNotContracted => refused(
                "This merchant has no contract with Tavana.",
                "این فروشگاه با توانا قرارداد ندارد.",
            ),
            CreditError::MerchantKindNotSupported => refused(
                "This merchant does not offer this kind of purchase.",
                "این فروشگاه این نوع خرید را ارائه نمی‌دهد.",
            ),
            CreditError::OrganizationContractNotInForce => refused(
                "Your organization's contract with Tavana is not in force.",
                "قرارداد سازمان شما با توانا برقرار نیست.",
            ),
            CreditError::InstalmentMonthsOutOfRange { max } => refused(
                "The number of instalments is outside the allowed range.",
                "تعداد اقساط خارج از محدودهٔ مجاز است.",
            )
            .with_extra("max_instalments", *max),
            CreditError::AmountBelowMonths { months } => refused(
                "An instalment purchase needs at least one rial a month.",
                "خرید اقساطی دست‌کم یک ریال در هر ماه لازم دارد.",
            )
            .with_extra("months", *months),
            CreditError::InsufficientCredit {
                available_monthly,
                available_total,
            } => refused(
                "Your available credit does not cover this purchase.",
                "اعتبار در دسترس شما برای این خرید کافی نیست.",
            )
            .with_extra("available_monthly", available_monthly.as_i64())
            .with_extra("available_total", available_total.as_i64()),
            CreditError::IdempotencyKeyReused => refused(
                "This idempotency key was already used with another request.",
                "این کلید یکتایی پیش‌تر با درخواست دیگری به کار رفته است.",
            ),
            CreditError::PurchaseNotFound => Problem::new(
                ErrorKind::NotFound,
                self.code(),
                "The purchase was not found.",
                "خرید یافت نشد.",
            ),
            CreditError::RefundWindowClosed => refused(
                "The refund period of this purchase has ended.",
                "مهلت بازگشت وجه این خرید به پایان رسیده است.",
            ),
            CreditError::CardNotFound => Problem::new(
                ErrorKind::NotFound,
                self.code(),
                "The card was not found.",
                "کارت یافت نشد.",
            ),
            CreditError::CardLocked => refused(
                "The card is locked after too many wrong PINs; contact support.",
                "کارت به دلیل ورود رمز اشتباه مسدود شده است؛ با پشتیبانی تماس بگیرید.",
            )
            .with_extra("attempts_left", 0),
            CreditError::PinInvalid { attempts_left } => {
                refused("The PIN is wrong.", "رمز دوم اشتباه است.")
                    .with_extra("attempts_left", *attempts_left)
            }
            CreditError::CardRejected => refused(
                "The card or its PIN was not accepted.",
                "کارت یا رمز دوم آن پذیرفته نشد.",
            ),
            CreditError::PinMustChange => refused(
                "Change the card's second PIN before the first card purchase.",
                "پیش از نخستین خرید با کارت، رمز دوم را تغییر دهید.",
            ),
            CreditError::Unavailable(cause) => Problem::unavailable(cause),
            CreditError::Internal(cause) => Problem::internal(format!("{cause:#}")),
        }
    }
}

impl From<CreditError> for tonic::Status {
    fn from(error: CreditError) -> tonic::Status {
        error.to_problem().into()
    }
}
