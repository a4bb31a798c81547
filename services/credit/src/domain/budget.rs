//! Holds and the two budgets of R16: monthly credit `M` and purchasing power `P`.
//!
//! Room is never stored: it is computed at `now` from the holds that are still in effect
//! (the store keeps them summed per release), so the room of a credit purchase returns on
//! the 8th of the next month (R17) without any batch job.

use chrono::{DateTime, Utc};
use tavana_kit::jalali::{JalaliPeriod, release_instant};
use tavana_kit::money::Rial;

use super::facility::FacilityTerms;
use super::purchase::{PurchaseKind, first_deduction_period};
use crate::error::CreditError;

/// When a hold ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HoldRelease {
    /// A credit purchase's hold ends at this instant, by the clock (R17).
    At(DateTime<Utc>),
    /// An instalment purchase's hold lasts until its last instalment is settled (R18).
    UntilSettled,
    /// Settled, but the organization's contract was not in force: the hold lasts until
    /// it is again (R18).
    UntilContractInForce,
}

/// Room a purchase holds in the two budgets (R16), while it is not released.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hold {
    /// Held in the monthly credit `M`.
    pub monthly: Rial,
    /// Held in the purchasing power `P`.
    pub total: Rial,
    /// When it ends.
    pub release: HoldRelease,
}

impl Hold {
    /// Returns the hold of a purchase of `amount` over `months` made in `purchase_period`
    /// (R16): a credit purchase holds `A` in both budgets until 00:00 Tehran on the 8th of
    /// the next month (R17); an instalment purchase holds `ceil(A / n)` in `M` and `A` in
    /// `P` until it is settled (R18).
    pub fn for_purchase(
        kind: PurchaseKind,
        amount: Rial,
        months: u32,
        purchase_period: JalaliPeriod,
    ) -> Hold {
        match kind {
            PurchaseKind::Credit => Hold {
                monthly: amount,
                total: amount,
                release: HoldRelease::At(credit_release_instant(purchase_period)),
            },
            PurchaseKind::Instalment => Hold {
                monthly: amount.div_ceil(i64::from(months.max(1))),
                total: amount,
                release: HoldRelease::UntilSettled,
            },
        }
    }

    /// Returns true while the hold takes room at `now`.
    pub fn is_in_effect(&self, now: DateTime<Utc>) -> bool {
        match self.release {
            HoldRelease::At(instant) => now < instant,
            HoldRelease::UntilSettled | HoldRelease::UntilContractInForce => true,
        }
    }
}

/// Returns the instant a credit purchase made in `purchase_period` is released: 00:00
/// Asia/Tehran on the 8th of the next Jalali month (R17, S23).
pub fn credit_release_instant(purchase_period: JalaliPeriod) -> DateTime<Utc> {
    release_instant(first_deduction_period(purchase_period))
}

/// Returns the instant the holds of a settled instalment purchase end (R16, R18): once it
/// is settled, but not before 00:00 Tehran on the 8th of its last deduction period, as a
/// credit purchase deducted that period would be (R17). An early remittance settles the
/// last instalment before its period; releasing the room then would let a new purchase be
/// deducted in that same period on top of it, past `M`.
pub fn settled_instalment_release(
    purchase_period: JalaliPeriod,
    months: u32,
    settled_at: DateTime<Utc>,
) -> DateTime<Utc> {
    let last = first_deduction_period(purchase_period).add_months(months.saturating_sub(1));
    settled_at.max(release_instant(last))
}

/// The room left in each budget.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Available {
    /// Room left in `M`.
    pub monthly: Rial,
    /// Room left in `P`.
    pub total: Rial,
}

/// Returns the room left at `now`: each budget minus the holds in effect (R16).
pub fn available(terms: FacilityTerms, holds: &[Hold], now: DateTime<Utc>) -> Available {
    let (monthly, total) = holds.iter().filter(|hold| hold.is_in_effect(now)).fold(
        (0i128, 0i128),
        |(monthly, total), hold| {
            (
                monthly + i128::from(hold.monthly.as_i64()),
                total + i128::from(hold.total.as_i64()),
            )
        },
    );
    let left = |budget: Rial, held: i128| {
        let value = i128::from(budget.as_i64()) - held;
        // Documented saturation: budgets and holds are i64 rial, so the room is summed in
        // i128 and saturates at the i64 bounds (it can only go below zero, by what is over).
        Rial(i64::try_from(value).unwrap_or(if value < 0 { i64::MIN } else { i64::MAX }))
    };
    Available {
        monthly: left(terms.monthly_credit(), monthly),
        total: left(terms.purchasing_power(), total),
    }
}

/// Returns the earliest instant after `now` at which a hold in effect is released by the
/// clock, if any (the balance's `next_release_at`).
pub fn next_release_at(holds: &[Hold], now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    holds
        .iter()
        .filter_map(|hold| match hold.release {
            HoldRelease::At(instant) if instant > now => Some(instant),
            _ => None,
        })
        .min()
}

/// Returns `holds` summed per release: one hold for each distinct `release`, in the order
/// of first appearance.
///
/// The room left and the next release are the same for the sums as for the holds
/// themselves, because `available` only adds up the holds in effect and whether a hold is
/// in effect depends on its release alone. The store sums the unreleased purchases of a
/// facility the same way in SQL, so a purchase or a balance reads a handful of rows
/// whatever the number of purchases. Sums saturate at `i64::MAX`: more held, never less.
pub fn sum_per_release(holds: &[Hold]) -> Vec<Hold> {
    let mut summed: Vec<Hold> = Vec::new();
    for hold in holds {
        match summed.iter_mut().find(|sum| sum.release == hold.release) {
            Some(sum) => {
                sum.monthly = Rial(sum.monthly.as_i64().saturating_add(hold.monthly.as_i64()));
                sum.total = Rial(sum.total.as_i64().saturating_add(hold.total.as_i64()));
            }
            None => summed.push(*hold),
        }
    }
    summed
}

/// Accepts a new hold only if both budgets still fit it (R16); a refusal says how much
/// would fit.
pub fn ensure_fits(room: Available, hold: &Hold) -> Result<(), CreditError> {
    if hold.monthly > room.monthly || hold.total > room.total {
        return Err(CreditError::InsufficientCredit {
            available_monthly: Rial(room.monthly.as_i64().max(0)),
            available_total: Rial(room.total.as_i64().max(0)),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use chrono::{Duration, TimeZone};
    use proptest::prelude::*;

    use super::*;

    fn period(text: &str) -> JalaliPeriod {
        JalaliPeriod::parse(text).unwrap()
    }

    fn terms() -> FacilityTerms {
        FacilityTerms::parse(1_000, 3, 36).unwrap()
    }

    #[test]
    fn r16_instalment_holds_ceil_in_m_and_amount_in_p() {
        let hold = Hold::for_purchase(PurchaseKind::Instalment, Rial(10), 4, period("1405-01"));
        assert_eq!(hold.monthly, Rial(3));
        assert_eq!(hold.total, Rial(10));
        assert_eq!(hold.release, HoldRelease::UntilSettled);
    }

    #[test]
    fn r16_refusal_says_how_much_would_fit() {
        let now = Utc::now();
        let held = [Hold::for_purchase(
            PurchaseKind::Instalment,
            Rial(900),
            3,
            period("1405-01"),
        )];
        let room = available(terms(), &held, now);
        assert_eq!(
            room,
            Available {
                monthly: Rial(700),
                total: Rial(2_100)
            }
        );
        let new = Hold::for_purchase(PurchaseKind::Credit, Rial(701), 1, period("1405-01"));
        match ensure_fits(room, &new) {
            Err(CreditError::InsufficientCredit {
                available_monthly,
                available_total,
            }) => {
                assert_eq!(available_monthly, Rial(700));
                assert_eq!(available_total, Rial(2_100));
            }
            other => panic!("expected insufficient credit, got {other:?}"),
        }
        let fits = Hold::for_purchase(PurchaseKind::Credit, Rial(700), 1, period("1405-01"));
        assert!(ensure_fits(room, &fits).is_ok());
    }

    /// R17: 1405-01-08 00:00 Tehran is 2026-03-28 00:00 +03:30, i.e. 2026-03-27 20:30 UTC.
    #[test]
    fn r17_credit_released_exactly_at_8th_midnight_tehran() {
        let release = credit_release_instant(period("1404-12"));
        assert_eq!(
            release,
            Utc.with_ymd_and_hms(2026, 3, 27, 20, 30, 0).unwrap()
        );
        let hold = Hold::for_purchase(PurchaseKind::Credit, Rial(500), 1, period("1404-12"));
        assert!(hold.is_in_effect(release - Duration::minutes(1)));
        assert!(!hold.is_in_effect(release + Duration::minutes(1)));
        assert!(!hold.is_in_effect(release));
    }

    /// R17 at the year end with a leap Esfand: 1403 is leap, Esfand 1403 has 30 days, and a
    /// purchase on 1403-12-30 is released on 1404-01-08 (2025-03-28 00:00 Tehran).
    #[test]
    fn r17_leap_esfand_purchase_released_on_8_farvardin() {
        let last_day = period("1403-12").day(30).unwrap();
        let bought = tavana_kit::jalali::start_of_day(last_day) + Duration::hours(23);
        let bought_period = tavana_kit::jalali::period_of(bought);
        assert_eq!(bought_period, period("1403-12"));
        let release = credit_release_instant(bought_period);
        assert_eq!(
            release,
            Utc.with_ymd_and_hms(2025, 3, 27, 20, 30, 0).unwrap()
        );
    }

    #[test]
    fn r17_next_release_is_the_earliest_future_clock_release() {
        let holds = [
            Hold::for_purchase(PurchaseKind::Credit, Rial(1), 1, period("1405-02")),
            Hold::for_purchase(PurchaseKind::Credit, Rial(1), 1, period("1405-01")),
            Hold::for_purchase(PurchaseKind::Instalment, Rial(1), 1, period("1405-01")),
        ];
        let now = release_instant(period("1405-01"));
        assert_eq!(
            next_release_at(&holds, now),
            Some(release_instant(period("1405-02")))
        );
        assert_eq!(
            next_release_at(&holds, release_instant(period("1405-04"))),
            None
        );
    }

    fn release() -> impl Strategy<Value = HoldRelease> {
        // A few distinct instants around a fixed origin, so that holds share releases and
        // `now` falls before, on and after them.
        let origin = Utc.with_ymd_and_hms(2026, 3, 27, 20, 30, 0).unwrap();
        prop_oneof![
            3 => (-3i64..=3).prop_map(move |days| HoldRelease::At(origin + Duration::days(days))),
            1 => Just(HoldRelease::UntilSettled),
            1 => Just(HoldRelease::UntilContractInForce),
        ]
    }

    fn hold() -> impl Strategy<Value = Hold> {
        (0i64..1_000_000_000_000, 0i64..1_000_000_000_000, release()).prop_map(
            |(monthly, total, release)| Hold {
                monthly: Rial(monthly),
                total: Rial(total),
                release,
            },
        )
    }

    proptest! {
        /// R16: what the store does in SQL (keep the holds that may be in effect at `now`,
        /// sum them per release) leaves the same room and the same next release as
        /// folding every purchase's hold.
        #[test]
        fn r16_holds_summed_per_release_leave_the_same_room(
            holds in proptest::collection::vec(hold(), 0..64),
            monthly_credit in 1i64..10_000_000_000_000,
            max_instalments in 1u32..37,
            now_offset_hours in -100i64..100,
        ) {
            let terms = FacilityTerms::parse(monthly_credit, max_instalments, 36).unwrap();
            let now = Utc.with_ymd_and_hms(2026, 3, 27, 20, 30, 0).unwrap()
                + Duration::hours(now_offset_hours * 24 / 25);
            let may_be_in_effect: Vec<Hold> = holds
                .iter()
                .copied()
                .filter(|hold| hold.is_in_effect(now))
                .collect();

            let summed = sum_per_release(&may_be_in_effect);

            prop_assert_eq!(available(terms, &summed, now), available(terms, &holds, now));
            prop_assert_eq!(next_release_at(&summed, now), next_release_at(&holds, now));
            prop_assert_eq!(
                available(terms, &sum_per_release(&holds), now),
                available(terms, &holds, now)
            );
            prop_assert!(summed.len() <= 9);
        }
    }
}
