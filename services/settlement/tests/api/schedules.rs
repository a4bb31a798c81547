//! RecordSchedule and CancelInstalments (R15, R20).

use tavana_kit::caller::{Role, attach};
use tavana_proto::settlement::v1 as pb;
use tonic::Code;

use crate::{PERIOD, national_id, schedule, service, spawn_service, staff};

#[tokio::test]
async fn recording_a_schedule_twice_changes_nothing() {
    let app = spawn_service().await;
    app.record(schedule("P1", 1, PERIOD, &[40, 39])).await;

    app.record(schedule("P1", 1, PERIOD, &[999, 999, 999]))
        .await;

    let items = app
        .my_instalments("E1", pb::InstalmentState::Unspecified)
        .await;
    let amounts: Vec<i64> = items.iter().map(|i| i.amount).collect();
    assert_eq!(amounts, [40, 39]);
    assert_eq!(items[0].merchant_name, "Digikala");
}

#[tokio::test]
async fn only_services_record_schedules_and_bad_ones_are_refused() {
    let app = spawn_service().await;
    let refused = app
        .client
        .clone()
        .record_schedule(attach(
            schedule("P1", 1, PERIOD, &[40]),
            &staff(Role::Support),
        ))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);

    let mut bad = schedule("P1", 1, PERIOD, &[40, 0]);
    bad.national_id = "0012345678".into();
    let invalid = app
        .client
        .clone()
        .record_schedule(attach(bad, &service()))
        .await
        .unwrap_err();
    assert_eq!(invalid.code(), Code::InvalidArgument);
}

#[tokio::test]
async fn r20_a_partial_refund_cancels_the_unsettled_and_records_what_remains() {
    let app = spawn_service().await;
    app.record(schedule("P1", 1, PERIOD, &[40, 40])).await;
    let cancel = pb::CancelInstalmentsRequest {
        purchase_id: "P1".into(),
        refund_id: "R1".into(),
        remaining: vec![pb::ScheduledInstalment {
            seq: 1,
            period: PERIOD.into(),
            amount: 25,
        }],
        version: 2,
    };

    app.client
        .clone()
        .cancel_instalments(attach(cancel.clone(), &service()))
        .await
        .unwrap();
    // The same refund again changes nothing.
    app.client
        .clone()
        .cancel_instalments(attach(cancel, &service()))
        .await
        .unwrap();

    let due = app
        .my_instalments("E1", pb::InstalmentState::Unsettled)
        .await;
    assert_eq!(due.iter().map(|i| i.amount).collect::<Vec<_>>(), [25]);
    let cancelled = app
        .my_instalments("E1", pb::InstalmentState::Cancelled)
        .await;
    assert_eq!(cancelled.len(), 2);
    // The deduction list shows only what remains.
    let (rows, totals) = app
        .deductions(&staff(Role::Contracts), PERIOD)
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(totals.total, 25);
}

#[tokio::test]
async fn r20_a_whole_refund_leaves_nothing_due() {
    let app = spawn_service().await;
    app.record(schedule("P1", 1, PERIOD, &[40, 40])).await;

    app.client
        .clone()
        .cancel_instalments(attach(
            pb::CancelInstalmentsRequest {
                purchase_id: "P1".into(),
                refund_id: "R1".into(),
                remaining: vec![],
                version: 2,
            },
            &service(),
        ))
        .await
        .unwrap();

    assert!(
        app.my_instalments("E1", pb::InstalmentState::Unspecified)
            .await
            .is_empty()
    );
    let remitted = app
        .remit("BR-1", PERIOD, &[(national_id(1), 40)])
        .await
        .unwrap();
    assert_eq!(crate::codes(&remitted), [(1, "nothing_due".to_owned())]);
}

#[tokio::test]
async fn r20_a_refund_crossing_a_remittance_is_applied_to_the_unsettled_never_refused() {
    let app = spawn_service().await;
    app.record(schedule("P1", 1, PERIOD, &[40, 40])).await;
    app.remit("BR-1", PERIOD, &[(national_id(1), 40)])
        .await
        .unwrap();

    app.client
        .clone()
        .cancel_instalments(attach(
            pb::CancelInstalmentsRequest {
                purchase_id: "P1".into(),
                refund_id: "R1".into(),
                remaining: vec![
                    pb::ScheduledInstalment {
                        seq: 1,
                        period: PERIOD.into(),
                        amount: 30,
                    },
                    pb::ScheduledInstalment {
                        seq: 2,
                        period: "1405-10".into(),
                        amount: 30,
                    },
                ],
                version: 2,
            },
            &service(),
        ))
        .await
        .unwrap();

    // The settled instalment stays as it was; the new schedule replaces the other.
    let settled = app.my_instalments("E1", pb::InstalmentState::Settled).await;
    assert_eq!(settled.iter().map(|i| i.amount).collect::<Vec<_>>(), [40]);
    let due = app
        .my_instalments("E1", pb::InstalmentState::Unsettled)
        .await;
    assert_eq!(
        due.iter().map(|i| (i.seq, i.amount)).collect::<Vec<_>>(),
        [(2, 30)]
    );
}

fn instalment(seq: u32, period: &str, amount: i64) -> pb::ScheduledInstalment {
    pb::ScheduledInstalment {
        seq,
        period: period.into(),
        amount,
    }
}

fn refund(
    refund_id: &str,
    version: u32,
    remaining: Vec<pb::ScheduledInstalment>,
) -> pb::CancelInstalmentsRequest {
    pb::CancelInstalmentsRequest {
        purchase_id: "P1".into(),
        refund_id: refund_id.into(),
        remaining,
        version,
    }
}

#[tokio::test]
async fn r20_refunds_delivered_out_of_order_end_on_the_latest_schedule() {
    let app = spawn_service().await;
    app.record(schedule("P1", 1, PERIOD, &[50, 50])).await;
    // Credit refunded 20 (version 2, 40 + 40 left), then 30 more (version 3, 25 + 25).
    let second = refund(
        "R2",
        3,
        vec![instalment(1, PERIOD, 25), instalment(2, "1405-10", 25)],
    );
    let first = refund(
        "R1",
        2,
        vec![instalment(1, PERIOD, 40), instalment(2, "1405-10", 40)],
    );

    for message in [second, first.clone(), first] {
        app.client
            .clone()
            .cancel_instalments(attach(message, &service()))
            .await
            .unwrap();
    }

    let due = app
        .my_instalments("E1", pb::InstalmentState::Unsettled)
        .await;
    assert_eq!(due.iter().map(|i| i.amount).collect::<Vec<_>>(), [25, 25]);
}

#[tokio::test]
async fn r20_a_refund_before_its_purchase_arrived_is_retried_then_applied() {
    let app = spawn_service().await;
    let early = refund("R1", 2, vec![instalment(1, PERIOD, 1)]);

    let missing = app
        .client
        .clone()
        .cancel_instalments(attach(early.clone(), &service()))
        .await
        .unwrap_err();
    app.record(schedule("P1", 1, PERIOD, &[3, 2])).await;
    app.client
        .clone()
        .cancel_instalments(attach(early, &service()))
        .await
        .unwrap();

    // Not found is retried by the sender's outbox; nothing was refused for good.
    assert_eq!(missing.code(), Code::NotFound);
    let due = app
        .my_instalments("E1", pb::InstalmentState::Unsettled)
        .await;
    assert_eq!(due.iter().map(|i| i.amount).collect::<Vec<_>>(), [1]);
}

#[tokio::test]
async fn r15_r20_five_rial_left_of_a_million_over_twelve_months_are_five_instalments_of_one() {
    let app = spawn_service().await;
    let amounts: Vec<i64> = tavana_kit::money::spread(tavana_kit::money::Rial(1_000_000), 12)
        .iter()
        .map(|amount| amount.as_i64())
        .collect();
    app.record(schedule("P1", 1, PERIOD, &amounts)).await;
    let first = tavana_kit::jalali::JalaliPeriod::parse(PERIOD).unwrap();
    let remaining: Vec<pb::ScheduledInstalment> = (1..=5)
        .map(|seq| instalment(seq, &first.add_months(seq - 1).to_string(), 1))
        .collect();

    app.client
        .clone()
        .cancel_instalments(attach(refund("R1", 2, remaining), &service()))
        .await
        .unwrap();

    let due = app
        .my_instalments("E1", pb::InstalmentState::Unsettled)
        .await;
    assert_eq!(due.iter().map(|i| i.amount).collect::<Vec<_>>(), [1; 5]);
}

#[tokio::test]
async fn cancelling_an_unknown_purchase_is_not_found() {
    let app = spawn_service().await;
    let missing = app
        .client
        .clone()
        .cancel_instalments(attach(
            pb::CancelInstalmentsRequest {
                purchase_id: "nope".into(),
                refund_id: "R1".into(),
                remaining: vec![],
                version: 2,
            },
            &service(),
        ))
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
}

/// Pages recording a schedule writes on SQLite (R15): the schedule's row and its
/// instalments with their indexes. A budget, so that a change that makes every purchase's
/// schedule write more pages is seen; the same schedule recorded again writes none.
#[tokio::test]
async fn r15_recording_a_schedule_writes_a_budget_of_pages_and_again_none() {
    const SCHEDULES: u64 = 20;
    const PAGES_PER_SCHEDULE: u64 = 8;
    let app = spawn_service().await;
    app.record(schedule("P000", 1, PERIOD, &[334, 334, 333]))
        .await;
    let Some(pages) = tavana_kit::testing::PagesWritten::start(&app.db.db).await else {
        return; // PostgreSQL: its WAL is the server's, shared with other tests.
    };

    for n in 1..=SCHEDULES {
        app.record(schedule(&format!("P{n:03}"), 1, PERIOD, &[334, 334, 333]))
            .await;
    }
    let written = pages.count();
    println!("{written} pages for {SCHEDULES} schedules");
    assert!(
        written <= SCHEDULES * PAGES_PER_SCHEDULE,
        "{written} pages for {SCHEDULES} schedules, over {PAGES_PER_SCHEDULE} each"
    );

    app.record(schedule("P001", 1, PERIOD, &[334, 334, 333]))
        .await;
    assert_eq!(
        pages.count(),
        written,
        "the same schedule again wrote a page"
    );
}
