//! R29: closing an organization's period; overdue instalments and their re-aging.
//!
//! When support closes a period, every instalment of it still unsettled becomes overdue and
//! moves to the first later period of the organization that is neither closed nor already
//! remitted, in which the employee's deductions plus the instalment stay within the monthly
//! credit `M`: no period's deductions ever exceed `M` (R16), arrears included.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use tavana_kit::jalali::{JalaliPeriod, release_instant};
use tavana_kit::money::Rial;

use super::remittance::AmountOverflow;

/// How far ahead re-aging looks for a period with room. Every instalment fits an empty
/// period (an instalment never exceeds `M`, R15-R16) and schedules end within the policy's
/// 36 months, so a period with room always comes far sooner.
pub const REAGE_HORIZON_MONTHS: u32 = 600;

/// A period refused for `period_not_started`: closing it would make instalments overdue
/// before they were ever due. A period's deductions are due from 00:00 Tehran on its 8th,
/// when credit stops refunding the purchases first deducted in it (R20) and releases the
/// credit purchases deducted in it (R17); before then a refund may still replace them, so
/// none of them can be overdue.
pub fn ensure_started(period: JalaliPeriod, now: DateTime<Utc>) -> Result<(), PeriodNotStarted> {
    if now < release_instant(period) {
        return Err(PeriodNotStarted);
    }
    Ok(())
}

/// The period to close has not begun yet.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("the period has not started")]
pub struct PeriodNotStarted;

/// One employee's arrears book for re-aging: their monthly credit and what each later
/// period already deducts from them.
#[derive(Clone, Debug, Default)]
pub struct EmployeeLoad {
    /// `M`, when known; an unknown `M` (a schedule recorded before R29) bounds nothing.
    pub monthly_credit: Option<Rial>,
    /// The employee's deductions per period after the closed one (every instalment not
    /// cancelled, arrears included).
    pub per_period: BTreeMap<JalaliPeriod, Rial>,
}

/// The periods a close may move an overdue instalment to (R29): the
/// [`REAGE_HORIZON_MONTHS`] periods after the closed one, less the `blocked` ones (closed or
/// remitted periods of the organization). They depend only on the close, so a close builds
/// them once for all its employees.
#[derive(Clone, Debug)]
pub struct Candidates {
    /// The candidates, in order.
    periods: Vec<JalaliPeriod>,
    /// The last period of the horizon: where an instalment stays when every period of the
    /// horizon is blocked.
    horizon_end: JalaliPeriod,
}

impl Candidates {
    /// Returns the candidates after closing `closed`.
    pub fn new(closed: JalaliPeriod, blocked: &BTreeSet<JalaliPeriod>) -> Self {
        Self {
            periods: (1..=REAGE_HORIZON_MONTHS)
                .map(|months| closed.add_months(months))
                .filter(|period| !blocked.contains(period))
                .collect(),
            horizon_end: closed.add_months(REAGE_HORIZON_MONTHS),
        }
    }
}

/// Returns the period each overdue instalment (amounts, in the order they are re-aged) of
/// one employee moves to, and records it in `load` (R29).
///
/// The first of the `candidates` where the employee's deductions plus the instalment stay
/// within `M` is taken; without one, the first candidate is taken.
pub fn reage(
    candidates: &Candidates,
    amounts: &[Rial],
    load: &mut EmployeeLoad,
) -> Result<Vec<JalaliPeriod>, AmountOverflow> {
    let mut targets = Vec::with_capacity(amounts.len());
    for amount in amounts {
        let fits = |period: &JalaliPeriod| -> Result<bool, AmountOverflow> {
            let Some(limit) = load.monthly_credit else {
                return Ok(true);
            };
            let deducted = load.per_period.get(period).copied().unwrap_or(Rial::ZERO);
            let total = deducted.checked_add(*amount).ok_or(AmountOverflow)?;
            Ok(total <= limit)
        };
        let mut target = None;
        for period in &candidates.periods {
            if fits(period)? {
                target = Some(*period);
                break;
            }
        }
        let Some(period) = target.or_else(|| candidates.periods.first().copied()) else {
            // Every period of the horizon is blocked: it stays where the horizon ends.
            targets.push(candidates.horizon_end);
            continue;
        };
        let entry = load.per_period.entry(period).or_insert(Rial::ZERO);
        *entry = entry.checked_add(*amount).ok_or(AmountOverflow)?;
        targets.push(period);
    }
    Ok(targets)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn period(text: &str) -> JalaliPeriod {
        JalaliPeriod::parse(text).unwrap()
    }

    fn load(m: i64, per_period: &[(&str, i64)]) -> EmployeeLoad {
        EmployeeLoad {
            monthly_credit: Some(Rial(m)),
            per_period: per_period
                .iter()
                .map(|(at, amount)| (period(at), Rial(*amount)))
                .collect(),
        }
    }

    #[test]
    fn r29_an_overdue_instalment_moves_to_the_next_period_with_room_within_m() {
        // M = 100; 1405-11 already deducts 80 and 1405-12 deducts 60.
        let mut book = load(100, &[("1405-11", 80), ("1405-12", 60)]);

        let targets = reage(
            &Candidates::new(period("1405-10"), &BTreeSet::new()),
            &[Rial(30), Rial(40)],
            &mut book,
        )
        .unwrap();

        // 30 skips 1405-11 (110 > M) for 1405-12 (90); 40 then fits neither, so 1406-01.
        assert_eq!(targets, [period("1405-12"), period("1406-01")]);
        assert_eq!(book.per_period[&period("1405-12")], Rial(90));
        assert_eq!(book.per_period[&period("1406-01")], Rial(40));
    }

    #[test]
    fn r29_closed_and_remitted_periods_are_skipped() {
        let blocked: BTreeSet<JalaliPeriod> = [period("1405-11"), period("1405-12")].into();
        let mut book = load(100, &[]);

        let targets = reage(
            &Candidates::new(period("1405-10"), &blocked),
            &[Rial(1)],
            &mut book,
        )
        .unwrap();

        assert_eq!(targets, [period("1406-01")]);
    }

    #[test]
    fn r29_one_rial_over_m_goes_further_and_exactly_m_stays() {
        let mut over = load(100, &[("1405-11", 71)]);
        let mut exact = load(100, &[("1405-11", 70)]);

        let moved = reage(
            &Candidates::new(period("1405-10"), &BTreeSet::new()),
            &[Rial(30)],
            &mut over,
        )
        .unwrap();
        let kept = reage(
            &Candidates::new(period("1405-10"), &BTreeSet::new()),
            &[Rial(30)],
            &mut exact,
        )
        .unwrap();

        assert_eq!(moved, [period("1405-12")]);
        assert_eq!(kept, [period("1405-11")]);
    }

    #[test]
    fn r29_an_unknown_m_takes_the_first_open_period() {
        let mut book = EmployeeLoad {
            monthly_credit: None,
            per_period: [(period("1405-11"), Rial(1_000_000))].into(),
        };

        let targets = reage(
            &Candidates::new(period("1405-10"), &BTreeSet::new()),
            &[Rial(5)],
            &mut book,
        )
        .unwrap();

        assert_eq!(targets, [period("1405-11")]);
    }

    #[test]
    fn r20_r29_a_period_is_closed_from_its_8th_when_its_deductions_are_due() {
        let due = release_instant(period("1405-10"));
        let second = chrono::Duration::seconds(1);

        assert!(ensure_started(period("1405-10"), due).is_ok());
        assert!(ensure_started(period("1405-09"), due).is_ok());
        assert_eq!(
            ensure_started(period("1405-10"), due - second),
            Err(PeriodNotStarted),
            "R20: refunds still replace its instalments until the 8th"
        );
        assert_eq!(
            ensure_started(period("1405-11"), due),
            Err(PeriodNotStarted)
        );
    }

    proptest::proptest! {
        /// R16 with R29: whatever the load, re-aged arrears never push a period past `M`.
        #[test]
        fn r29_reaging_never_pushes_a_period_past_m(
            m in 1i64..200,
            existing in proptest::collection::vec(0i64..200, 0..12),
            overdue in proptest::collection::vec(1i64..200, 0..8),
            blocked_months in proptest::collection::btree_set(1u32..14, 0..6),
        ) {
            let closed = period("1405-06");
            let mut book = EmployeeLoad { monthly_credit: Some(Rial(m)), per_period: BTreeMap::new() };
            for (offset, amount) in existing.iter().enumerate() {
                let amount = (*amount).min(m);
                book.per_period.insert(closed.add_months(u32::try_from(offset).expect("a few periods") + 1), Rial(amount));
            }
            let blocked: BTreeSet<JalaliPeriod> =
                blocked_months.iter().map(|months| closed.add_months(*months)).collect();
            let amounts: Vec<Rial> = overdue.iter().map(|amount| Rial((*amount).min(m))).collect();

            let targets = reage(&Candidates::new(closed, &blocked), &amounts, &mut book).unwrap();

            proptest::prop_assert_eq!(targets.len(), amounts.len());
            for target in &targets {
                proptest::prop_assert!(*target > closed);
                proptest::prop_assert!(!blocked.contains(target));
            }
            for total in book.per_period.values() {
                proptest::prop_assert!(*total <= Rial(m));
            }
        }
    }
}
