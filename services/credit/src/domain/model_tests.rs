//! Property test of R16 on an in-memory model built from the domain functions only:
//! random purchases (both kinds), refunds, settlements and clock moves across Jalali
//! month ends (including a leap Esfand) never let a salary period's deductions exceed `M`
//! nor a budget go negative.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use proptest::prelude::*;
use tavana_kit::jalali::{JalaliPeriod, period_of, start_of_day};
use tavana_kit::money::Rial;

use super::budget::{self, Hold};
use super::facility::FacilityTerms;
use super::purchase::{
    PurchaseKind, PurchaseTerms, apply_refund, first_deduction_period, split_schedule,
};

#[derive(Clone, Debug)]
enum Op {
    Buy {
        instalment: bool,
        amount: i64,
        months: u32,
    },
    Refund {
        index: usize,
        per_mille: i64,
    },
    Settle {
        index: usize,
    },
    Advance {
        minutes: i64,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (any::<bool>(), 1i64..1_500, 0u32..8).prop_map(|(instalment, amount, months)| Op::Buy { instalment, amount, months }),
        2 => (0usize..64, 1i64..=1_000).prop_map(|(index, per_mille)| Op::Refund { index, per_mille }),
        2 => (0usize..64).prop_map(|index| Op::Settle { index }),
        3 => (1i64..(40 * 24 * 60)).prop_map(|minutes| Op::Advance { minutes }),
    ]
}

struct Bought {
    kind: PurchaseKind,
    amount: Rial,
    refunded: Rial,
    months: u32,
    period: JalaliPeriod,
    settled: bool,
    released: bool,
}

impl Bought {
    fn remaining(&self) -> Rial {
        Rial(self.amount.as_i64() - self.refunded.as_i64())
    }

    fn last_period(&self) -> JalaliPeriod {
        first_deduction_period(self.period).add_months(self.months - 1)
    }
}

struct Model {
    terms: FacilityTerms,
    now: DateTime<Utc>,
    purchases: Vec<Bought>,
}

impl Model {
    fn holds(&self) -> Vec<Hold> {
        self.purchases
            .iter()
            .filter(|p| !p.released)
            .map(|p| Hold::for_purchase(p.kind, p.remaining(), p.months, p.period))
            .collect()
    }

    fn apply(&mut self, op: &Op) {
        match *op {
            Op::Buy {
                instalment,
                amount,
                months,
            } => {
                let kind = if instalment {
                    PurchaseKind::Instalment
                } else {
                    PurchaseKind::Credit
                };
                let Ok(terms) = PurchaseTerms::parse(
                    Some(kind),
                    amount,
                    if instalment { months } else { 0 },
                    self.terms.max_instalments(),
                ) else {
                    return;
                };
                let period = period_of(self.now);
                let room = budget::available(self.terms, &self.holds(), self.now);
                let hold = Hold::for_purchase(kind, terms.amount(), terms.months(), period);
                if budget::ensure_fits(room, &hold).is_ok() {
                    self.purchases.push(Bought {
                        kind,
                        amount: terms.amount(),
                        refunded: Rial::ZERO,
                        months: terms.months(),
                        period,
                        settled: false,
                        released: false,
                    });
                }
            }
            Op::Refund { index, per_mille } => {
                let now = self.now;
                let Some(p) = self.purchases.get_mut(index) else {
                    return;
                };
                if p.settled {
                    return;
                }
                let refund = (p.remaining().as_i64() * per_mille / 1_000).max(1);
                if let Ok(outcome) =
                    apply_refund(p.amount, p.months, p.period, p.refunded, refund, now)
                {
                    p.refunded = outcome.refunded_total;
                    if !outcome.remaining_amount.is_positive() {
                        p.released = true;
                    }
                }
            }
            Op::Settle { index } => {
                let current = period_of(self.now);
                let Some(p) = self.purchases.get_mut(index) else {
                    return;
                };
                // Settlement follows the last deduction: it cannot come before that month.
                if p.settled || current < p.last_period() || !p.remaining().is_positive() {
                    return;
                }
                p.settled = true;
                if p.kind == PurchaseKind::Instalment {
                    p.released = true;
                }
            }
            Op::Advance { minutes } => self.now += Duration::minutes(minutes),
        }
    }

    fn check(&self) -> Result<(), TestCaseError> {
        let room = budget::available(self.terms, &self.holds(), self.now);
        prop_assert!(
            room.monthly.as_i64() >= 0,
            "monthly budget negative: {room:?}"
        );
        prop_assert!(room.total.as_i64() >= 0, "total budget negative: {room:?}");
        let mut per_period: BTreeMap<JalaliPeriod, i64> = BTreeMap::new();
        for p in self
            .purchases
            .iter()
            .filter(|p| p.remaining().is_positive())
        {
            for deduction in
                split_schedule(p.remaining(), p.months, first_deduction_period(p.period))
            {
                prop_assert!(
                    deduction.amount
                        <= Hold::for_purchase(p.kind, p.remaining(), p.months, p.period).monthly
                );
                *per_period.entry(deduction.period).or_default() += deduction.amount.as_i64();
            }
        }
        for (period, total) in per_period {
            prop_assert!(
                total <= self.terms.monthly_credit().as_i64(),
                "period {period} deducts {total} > M"
            );
        }
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn r16_no_period_deducts_more_than_m_and_no_budget_goes_negative(
        monthly in 100i64..2_000,
        max_instalments in 1u32..7,
        start_day in 0i64..120,
        start_minute in 0i64..(24 * 60),
        ops in proptest::collection::vec(op(), 1..60),
    ) {
        // From 1403-11-01 on: the runs cross the leap Esfand of 1403 and Nowruz.
        let start = start_of_day(JalaliPeriod::parse("1403-11").unwrap().first_day())
            + Duration::days(start_day)
            + Duration::minutes(start_minute);
        let mut model = Model {
            terms: FacilityTerms::parse(monthly, max_instalments, 36).unwrap(),
            now: start,
            purchases: Vec::new(),
        };
        for op in &ops {
            model.apply(op);
            model.check()?;
        }
    }
}
