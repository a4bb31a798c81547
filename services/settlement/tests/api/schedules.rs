//! RecordSchedule and CancelInstalments (R15, R20).

use tavana_kit::caller::{Role, attach};
use tavana_proto::settlement::v1 as pb;
use tonic::Code;

use crate::{PERIOD, national_id, schedule, service, spawn_service, staff};

#[tokio::test]
async fn recording_a_schedule_twice_changes_nothing() {
    let app = spawn_service().await;
    app.record(schedule("P1", 1, PERIOD, &[40, 30])).await;

    app.record(schedule("P1", 1, PERIOD, &[999, 999, 999]))
        .await;

    let items = app
        .my_instalments("E1", pb::InstalmentState::Unspecified)
        .await;
    let amounts: Vec<i64> = items.iter().map(|i| i.amount).collect();
    assert_eq!(amounts, [40, 30]);
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
async fn r20_a_refund_after_a_settlement_is_refused() {
    let app = spawn_service().await;
    app.record(schedule("P1", 1, PERIOD, &[40, 40])).await;
    app.remit("BR-1", PERIOD, &[(national_id(1), 40)])
        .await
        .unwrap();

    let refused = app
        .client
        .clone()
        .cancel_instalments(attach(
            pb::CancelInstalmentsRequest {
                purchase_id: "P1".into(),
                refund_id: "R1".into(),
                remaining: vec![],
            },
            &service(),
        ))
        .await
        .unwrap_err();

    assert_eq!(refused.code(), Code::FailedPrecondition);
    let problem = tavana_kit::error::Problem::from_status(&refused);
    assert_eq!(problem.code, "instalment_already_settled");
    assert_eq!(
        app.my_instalments("E1", pb::InstalmentState::Unsettled)
            .await
            .len(),
        1
    );
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
            },
            &service(),
        ))
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
}
