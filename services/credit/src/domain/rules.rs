//! The rules that decide inside a money transaction, as pure functions named by R-code.
//!
//! The store gathers the facts under the facility's lock and hands them to a closure the
//! service layer builds from these functions (see `service.rs`), so every rule runs once,
//! here, and sees every hold committed before.

use chrono::{DateTime, Utc};
use tavana_kit::jalali::JalaliPeriod;
use tavana_kit::money::Rial;

use super::budget::{self, Hold};
use super::facility::{FacilityStatus, FacilityTerms};
use super::purchase::{PurchaseKind, PurchaseTerms, RefundOutcome, apply_refund};
use crate::error::CreditError;

/// What a new purchase is decided on, read under the facility's lock.
#[derive(Clone, Debug)]
pub struct PurchaseFacts<'a> {
    /// The facility's status by the clock, before arrears.
    pub status: FacilityStatus,
    /// What is overdue for the employee (R29).
    pub overdue: Rial,
    /// The facility's terms.
    pub terms: FacilityTerms,
    /// The holds not released yet.
    pub holds: &'a [Hold],
    /// The purchase's instant.
    pub now: DateTime<Utc>,
    /// The purchase's Jalali period.
    pub period: JalaliPeriod,
}

/// R14, R16, R29: a purchase needs an active facility without arrears, and its hold must
/// fit both budgets; returns the hold to record.
pub fn r14_r16_admit_purchase(
    facts: &PurchaseFacts<'_>,
    purchase: PurchaseTerms,
) -> Result<Hold, CreditError> {
    facts.status.with_arrears(facts.overdue).ensure_active()?;
    let room = budget::available(facts.terms, facts.holds, facts.now);
    let hold = Hold::for_purchase(
        purchase.kind(),
        purchase.amount(),
        purchase.months(),
        facts.period,
    );
    budget::ensure_fits(room, &hold)?;
    Ok(hold)
}

/// What a refund is decided on: the purchase as stored, read under the facility's lock.
#[derive(Clone, Copy, Debug)]
pub struct RefundFacts {
    /// The purchase's kind.
    pub kind: PurchaseKind,
    /// The purchase's amount.
    pub amount: Rial,
    /// Its number of instalments.
    pub months: u32,
    /// The period it was made in.
    pub period: JalaliPeriod,
    /// What was refunded before.
    pub refunded: Rial,
    /// Whether settlement said all or part of it is settled.
    pub settled: bool,
}

/// A refund decided: the new amounts and schedule, and the hold that stays (none once
/// nothing remains: a whole refund returns the room at once).
#[derive(Clone, Debug)]
pub struct Refunded {
    /// The new refunded total, remaining amount and schedule.
    pub outcome: RefundOutcome,
    /// The hold of what remains, or `None` when the purchase is wholly refunded.
    pub hold: Option<Hold>,
}

/// R20: a purchase is refunded only before the refund deadline and while nothing of it is
/// settled; what remains is split again (R15) and holds its room (R16).
///
/// Decided for refunds after an early remittance: once settlement has told us that a
/// remittance settled one of its instalments (or all of them), the purchase's first
/// deduction has been collected and it is refunded no more. So every refund credit
/// commits re-spreads a schedule of which nothing is settled, and settlement can always
/// apply it (a refund that crosses such a remittance in flight is applied there to the
/// unsettled instalments, and R31's reconciliation shows it).
pub fn r20_refund(
    facts: RefundFacts,
    refund: i64,
    now: DateTime<Utc>,
) -> Result<Refunded, CreditError> {
    if facts.settled {
        return Err(CreditError::RefundWindowClosed);
    }
    let outcome = apply_refund(
        facts.amount,
        facts.months,
        facts.period,
        facts.refunded,
        refund,
        now,
    )?;
    let hold = outcome.remaining_amount.is_positive().then(|| {
        Hold::for_purchase(
            facts.kind,
            outcome.remaining_amount,
            facts.months,
            facts.period,
        )
    });
    Ok(Refunded { outcome, hold })
}

/// R13, R30: a facility closes only when it owes nothing and holds nothing (a settled
/// credit purchase holds its room until the 8th, R17; a settled instalment purchase may
/// wait for the contract, R18).
pub fn r30_ensure_closable(
    owes: bool,
    holds: &[Hold],
    now: DateTime<Utc>,
) -> Result<(), CreditError> {
    let holding = holds.iter().any(|hold| {
        hold.is_in_effect(now) && (hold.monthly.is_positive() || hold.total.is_positive())
    });
    if owes || holding {
        return Err(CreditError::FacilityHasDebt);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use chrono::{Duration, TimeZone};

    use super::*;
    use crate::domain::budget::HoldRelease;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 5, 1, 12, 0, 0)
            .single()
            .expect("valid instant")
    }

    fn terms() -> FacilityTerms {
        FacilityTerms::from_stored(Rial(1_000), 10, Rial(10_000))
    }

    fn facts(status: FacilityStatus, overdue: Rial, holds: &[Hold]) -> PurchaseFacts<'_> {
        PurchaseFacts {
            status,
            overdue,
            terms: terms(),
            holds,
            now: now(),
            period: tavana_kit::jalali::period_of(now()),
        }
    }

    fn credit(amount: i64) -> PurchaseTerms {
        PurchaseTerms::parse(Some(PurchaseKind::Credit), amount, 0, 10).expect("valid terms")
    }

    #[test]
    fn r14_purchase_needs_an_active_facility() {
        let refused = r14_r16_admit_purchase(
            &facts(FacilityStatus::Suspended, Rial::ZERO, &[]),
            credit(100),
        );

        assert!(matches!(
            refused,
            Err(CreditError::FacilityNotActive(FacilityStatus::Suspended))
        ));
    }

    #[test]
    fn r29_one_overdue_rial_refuses_a_purchase() {
        let refused =
            r14_r16_admit_purchase(&facts(FacilityStatus::Active, Rial(1), &[]), credit(100));

        assert!(matches!(refused, Err(CreditError::FacilityOverdue)));
    }

    #[test]
    fn r16_a_hold_that_fits_is_returned_and_one_that_does_not_is_refused() {
        let held = [Hold {
            monthly: Rial(900),
            total: Rial(900),
            release: HoldRelease::UntilSettled,
        }];

        let fits = r14_r16_admit_purchase(
            &facts(FacilityStatus::Active, Rial::ZERO, &held),
            credit(100),
        );
        let too_much = r14_r16_admit_purchase(
            &facts(FacilityStatus::Active, Rial::ZERO, &held),
            credit(101),
        );

        assert_eq!(fits.expect("fits").total, Rial(100));
        assert!(matches!(
            too_much,
            Err(CreditError::InsufficientCredit {
                available_monthly: Rial(100),
                ..
            })
        ));
    }

    fn refund_facts(settled: bool) -> RefundFacts {
        RefundFacts {
            kind: PurchaseKind::Instalment,
            amount: Rial(1_000),
            months: 4,
            period: tavana_kit::jalali::period_of(now()),
            refunded: Rial::ZERO,
            settled,
        }
    }

    #[test]
    fn r20_a_settled_purchase_is_refunded_no_more() {
        let refused = r20_refund(refund_facts(true), 100, now());

        assert!(matches!(refused, Err(CreditError::RefundWindowClosed)));
    }

    #[test]
    fn r20_a_part_refund_keeps_a_hold_and_a_whole_one_releases_it() {
        let part = r20_refund(refund_facts(false), 400, now()).expect("part refund");
        let whole = r20_refund(refund_facts(false), 1_000, now()).expect("whole refund");

        assert_eq!(part.outcome.remaining_amount, Rial(600));
        assert_eq!(part.hold.map(|hold| hold.total), Some(Rial(600)));
        assert!(whole.hold.is_none());
    }

    #[test]
    fn r30_a_facility_closes_only_owing_and_holding_nothing() {
        let later = Hold {
            monthly: Rial(10),
            total: Rial(10),
            release: HoldRelease::At(now() + Duration::days(1)),
        };
        let past = Hold {
            release: HoldRelease::At(now() - Duration::days(1)),
            ..later
        };

        assert!(r30_ensure_closable(false, &[past], now()).is_ok());
        assert!(matches!(
            r30_ensure_closable(true, &[], now()),
            Err(CreditError::FacilityHasDebt)
        ));
        assert!(matches!(
            r30_ensure_closable(false, &[later], now()),
            Err(CreditError::FacilityHasDebt)
        ));
    }
}
