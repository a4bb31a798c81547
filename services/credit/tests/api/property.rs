//! R16 against the store: a smaller property run of random purchases, refunds,
//! settlements and clock moves across month ends through the gRPC API. After every step,
//! no budget is negative, no salary period's scheduled deductions (of what is not
//! refunded) exceed `M`, and the balance (from holds summed in SQL) is the one computed
//! from the purchases one by one.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};

use chrono::Duration;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use tavana_kit::caller::attach;
use tavana_kit::jalali::{JalaliPeriod, period_of, start_of_day};
use tavana_proto::credit::v1 as pb;

use crate::helpers::*;

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
        4 => (any::<bool>(), 1i64..700, 1u32..4).prop_map(|(instalment, amount, months)| Op::Buy { instalment, amount, months }),
        2 => (0usize..16, 1i64..=1_000).prop_map(|(index, per_mille)| Op::Refund { index, per_mille }),
        2 => (0usize..16).prop_map(|index| Op::Settle { index }),
        3 => (1i64..(25 * 24 * 60)).prop_map(|minutes| Op::Advance { minutes }),
    ]
}

const MONTHLY: i64 = 1_000;

async fn run_case(app: &TestApp, employee_id: &str, ops: Vec<Op>) -> Result<(), TestCaseError> {
    // Each case starts in 1403-12 (leap Esfand) at a random-ish hour, on a new employee.
    app.set_clock(
        start_of_day(JalaliPeriod::parse("1403-12").unwrap().day(20).unwrap()) + Duration::hours(7),
    );
    app.open_facility(employee_id, MONTHLY, 3).await;
    let mut purchases: Vec<pb::Purchase> = Vec::new();
    for (step, op) in ops.into_iter().enumerate() {
        match op {
            Op::Buy {
                instalment,
                amount,
                months,
            } => {
                let (kind, months) = if instalment {
                    (pb::PurchaseKind::Instalment, months)
                } else {
                    (pb::PurchaseKind::Credit, 0)
                };
                match app
                    .buy(employee_id, SHOP, kind, amount, months, &format!("k{step}"))
                    .await
                {
                    Ok(answer) => purchases.push(answer.purchase.unwrap()),
                    Err(status) => {
                        // R15: an instalment purchase of fewer rials than months would
                        // schedule a zero-rial instalment; anything else is R16's refusal.
                        let expected = if instalment && amount < i64::from(months) {
                            "amount_below_months"
                        } else {
                            "insufficient_credit"
                        };
                        prop_assert_eq!(
                            tavana_kit::error::Problem::from_status(&status).code,
                            expected
                        );
                    }
                }
            }
            Op::Refund { index, per_mille } => {
                if let Some(purchase) = purchases.get(index) {
                    let current = app
                        .store
                        .purchase(&purchase.purchase_id)
                        .await
                        .unwrap()
                        .unwrap();
                    let remaining = current.amount - current.refunded_amount;
                    if remaining > 0 {
                        let amount = (remaining * per_mille / 1_000).max(1);
                        let _ = app.refund(SHOP, &purchase.purchase_id, amount).await;
                    }
                }
            }
            Op::Settle { index } => {
                if let Some(purchase) = purchases.get(index) {
                    let last = purchase.instalments.last().unwrap().period.clone();
                    // Settlement follows the last deduction: never before that month.
                    if period_of(app.clock_now()).to_string() >= last {
                        app.settle(&purchase.purchase_id).await.unwrap();
                    }
                }
            }
            Op::Advance { minutes } => app.advance(Duration::minutes(minutes)),
        }
        let balance = app.balance(employee_id).await.unwrap();
        let (monthly, total) = (balance.available_monthly, balance.available_total);
        prop_assert!(
            monthly >= 0 && total >= 0,
            "negative room {monthly} {total}"
        );
        // The service sums the holds in SQL; folding the purchases one by one agrees.
        prop_assert_eq!(
            (monthly, total, balance.next_release_at.map(|at| at.seconds)),
            app.room_one_by_one(employee_id).await
        );
        let listed = app
            .client
            .clone()
            .list_purchases(attach(
                pb::ListPurchasesRequest {
                    page_size: 100,
                    page_token: String::new(),
                },
                &employee(employee_id),
            ))
            .await
            .unwrap()
            .into_inner();
        let mut per_period: BTreeMap<String, i64> = BTreeMap::new();
        for purchase in &listed.items {
            for instalment in &purchase.instalments {
                *per_period.entry(instalment.period.clone()).or_default() += instalment.amount;
            }
        }
        for (period, deducted) in per_period {
            prop_assert!(
                deducted <= MONTHLY,
                "period {} deducts {} > M",
                period,
                deducted
            );
        }
    }
    Ok(())
}

#[test]
fn r16_property_on_the_store_no_period_over_m_no_negative_budget() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let app = runtime.block_on(spawn_service());
    let cases = AtomicUsize::new(0);
    let mut runner = TestRunner::new(Config {
        cases: 12,
        failure_persistence: None,
        ..Config::default()
    });
    let result = runner.run(&proptest::collection::vec(op(), 1..25), |ops| {
        let employee_id = format!("P{}", cases.fetch_add(1, Ordering::SeqCst));
        runtime.block_on(run_case(&app, &employee_id, ops))
    });
    runtime.block_on(async { drop(app) });
    result.unwrap();
}
