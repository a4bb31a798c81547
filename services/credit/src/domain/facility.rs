//! Facilities (R12): terms, status.

use chrono::{DateTime, Utc};
use tavana_kit::money::Rial;

use crate::error::CreditError;

/// A facility's status as the employee sees it (R12, R14).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FacilityStatus {
    /// Approved, usable from `activates_at` (approval + 72 h, S2).
    PendingActivation,
    /// Usable.
    Active,
    /// Suspended by Tavana; not usable.
    Suspended,
    /// Closed; not usable.
    Closed,
    /// An instalment is overdue: no purchase until it is settled (R29).
    Overdue,
}

impl FacilityStatus {
    /// Returns the snake_case name used by the HTTP API.
    pub fn as_str(self) -> &'static str {
        match self {
            FacilityStatus::PendingActivation => "pending_activation",
            FacilityStatus::Active => "active",
            FacilityStatus::Suspended => "suspended",
            FacilityStatus::Closed => "closed",
            FacilityStatus::Overdue => "overdue",
        }
    }

    /// Computes the status at `now`: pending activation is a matter of the clock, no job
    /// flips it.
    pub fn at(
        now: DateTime<Utc>,
        activates_at: DateTime<Utc>,
        suspended: bool,
        closed: bool,
    ) -> FacilityStatus {
        if closed {
            FacilityStatus::Closed
        } else if suspended {
            FacilityStatus::Suspended
        } else if now < activates_at {
            FacilityStatus::PendingActivation
        } else {
            FacilityStatus::Active
        }
    }

    /// Returns the status with the employee's arrears (R29): a facility that would take
    /// purchases (or will, once active) is overdue while anything is; suspended and closed
    /// facilities stay so.
    pub fn with_arrears(self, overdue_amount: Rial) -> FacilityStatus {
        match self {
            FacilityStatus::Active | FacilityStatus::PendingActivation
                if overdue_amount > Rial::ZERO =>
            {
                FacilityStatus::Overdue
            }
            other => other,
        }
    }

    /// Refuses a purchase unless the facility is active (R14).
    pub fn ensure_active(self) -> Result<(), CreditError> {
        match self {
            FacilityStatus::Active => Ok(()),
            FacilityStatus::Overdue => Err(CreditError::FacilityOverdue),
            other => Err(CreditError::FacilityNotActive(other)),
        }
    }
}

/// The terms of a facility: monthly credit `M`, instalment ceiling `N` and purchasing
/// power `P = M x N` (R12, S11, S19).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FacilityTerms {
    monthly_credit: Rial,
    max_instalments: u32,
    purchasing_power: Rial,
}

impl FacilityTerms {
    /// Parses the terms: `M > 0`, `1 <= N <= policy_max`, and `M x N` without overflow.
    pub fn parse(
        monthly_credit: i64,
        max_instalments: u32,
        policy_max: u32,
    ) -> Result<FacilityTerms, CreditError> {
        if monthly_credit <= 0 {
            return Err(CreditError::invalid(
                "monthly_credit",
                "monthly_credit_not_positive",
                "The monthly credit must be above zero.",
                "اعتبار ماهانه باید بیشتر از صفر باشد.",
            ));
        }
        if max_instalments == 0 || max_instalments > policy_max {
            return Err(CreditError::invalid(
                "max_instalments",
                "max_instalments_out_of_range",
                "The instalment ceiling is outside the allowed range.",
                "سقف تعداد اقساط خارج از محدودهٔ مجاز است.",
            ));
        }
        let purchasing_power = Rial(monthly_credit)
            .checked_mul(i64::from(max_instalments))
            .ok_or(CreditError::invalid(
                "monthly_credit",
                "purchasing_power_overflow",
                "The purchasing power is too large.",
                "سقف قدرت خرید بیش از حد بزرگ است.",
            ))?;
        Ok(FacilityTerms {
            monthly_credit: Rial(monthly_credit),
            max_instalments,
            purchasing_power,
        })
    }

    /// Rebuilds stored terms (already checked when the facility was opened).
    pub fn from_stored(monthly_credit: Rial, max_instalments: u32, purchasing_power: Rial) -> Self {
        FacilityTerms {
            monthly_credit,
            max_instalments,
            purchasing_power,
        }
    }

    /// Returns `M`.
    pub fn monthly_credit(self) -> Rial {
        self.monthly_credit
    }

    /// Returns `N`.
    pub fn max_instalments(self) -> u32 {
        self.max_instalments
    }

    /// Returns `P = M x N`.
    pub fn purchasing_power(self) -> Rial {
        self.purchasing_power
    }
}

#[cfg(test)]
mod tests {
    use chrono::Duration;

    use super::*;

    #[test]
    fn r12_purchasing_power_is_m_times_n() {
        let terms = FacilityTerms::parse(5_000_000, 12, 36).unwrap();
        assert_eq!(terms.purchasing_power(), Rial(60_000_000));
    }

    #[test]
    fn r12_terms_out_of_range_are_refused() {
        assert!(FacilityTerms::parse(0, 12, 36).is_err());
        assert!(FacilityTerms::parse(1, 0, 36).is_err());
        assert!(FacilityTerms::parse(1, 37, 36).is_err());
        assert!(FacilityTerms::parse(i64::MAX, 2, 36).is_err());
    }

    #[test]
    fn r29_arrears_make_a_usable_facility_overdue_and_one_rial_is_enough() {
        let at = Utc::now();
        let active = FacilityStatus::at(at, at, false, false);

        assert_eq!(active.with_arrears(Rial(1)), FacilityStatus::Overdue);
        assert_eq!(active.with_arrears(Rial::ZERO), FacilityStatus::Active);
        assert_eq!(
            FacilityStatus::Suspended.with_arrears(Rial(1)),
            FacilityStatus::Suspended
        );
        assert!(matches!(
            active.with_arrears(Rial(1)).ensure_active(),
            Err(CreditError::FacilityOverdue)
        ));
    }

    #[test]
    fn r12_status_is_pending_until_activation_instant() {
        let at = Utc::now();
        assert_eq!(
            FacilityStatus::at(at - Duration::seconds(1), at, false, false),
            FacilityStatus::PendingActivation
        );
        assert_eq!(
            FacilityStatus::at(at, at, false, false),
            FacilityStatus::Active
        );
        assert_eq!(
            FacilityStatus::at(at, at, true, false),
            FacilityStatus::Suspended
        );
        assert_eq!(
            FacilityStatus::at(at, at, true, true),
            FacilityStatus::Closed
        );
    }
}
