//! The employee's view of their instalments (R24).

use tavana_kit::caller::attach;
use tavana_proto::settlement::v1 as pb;
use tonic::Code;

use crate::{PERIOD, national_id, schedule, service, spawn_service};

#[tokio::test]
async fn r24_an_employee_sees_their_own_instalments_by_state_page_by_page() {
    let app = spawn_service().await;
    app.record(schedule("P1", 1, PERIOD, &[30])).await;
    app.record(schedule("P2", 1, PERIOD, &[20, 20, 20])).await;
    app.record(schedule("P3", 2, PERIOD, &[99])).await;
    app.remit("BR-1", PERIOD, &[(national_id(1), 50)])
        .await
        .unwrap();

    let all = app
        .my_instalments("E1", pb::InstalmentState::Unspecified)
        .await;
    let unsettled = app
        .my_instalments("E1", pb::InstalmentState::Unsettled)
        .await;
    let settled = app.my_instalments("E1", pb::InstalmentState::Settled).await;
    let finished = app
        .my_instalments("E1", pb::InstalmentState::Finished)
        .await;

    assert_eq!(all.len(), 4);
    assert!(all.iter().all(|i| i.purchase_id != "P3"));
    let periods: Vec<&str> = all.iter().map(|i| i.period.as_str()).collect();
    let mut sorted = periods.clone();
    sorted.sort();
    assert_eq!(periods, sorted);
    assert_eq!(unsettled.len(), 2);
    assert!(unsettled.iter().all(|i| i.settled_at.is_none()));
    assert_eq!(settled.len(), 2);
    assert!(
        settled
            .iter()
            .all(|i| i.settled_at.is_some() && i.state == pb::InstalmentState::Settled as i32)
    );
    assert_eq!(finished.len(), 1);
    assert_eq!(finished[0].purchase_id, "P1");
    assert_eq!(finished[0].merchant_name, "Digikala");
}

#[tokio::test]
async fn r24_only_an_employee_lists_instalments_and_bad_tokens_are_refused() {
    let app = spawn_service().await;
    let error = app
        .client
        .clone()
        .list_my_instalments(attach(pb::ListMyInstalmentsRequest::default(), &service()))
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::PermissionDenied);

    let error = app
        .client
        .clone()
        .list_my_instalments(attach(
            pb::ListMyInstalmentsRequest {
                page_token: "not-a-token!".into(),
                ..Default::default()
            },
            &crate::employee("E1"),
        ))
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::InvalidArgument);
}
