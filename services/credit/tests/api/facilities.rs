//! R12, R13: facilities.

use tavana_kit::caller::attach;
use tavana_proto::credit::v1 as pb;

use crate::helpers::*;

#[tokio::test]
async fn r12_open_facility_computes_p_and_is_idempotent_by_request() {
    let app = spawn_service().await;

    let first = app.open_facility("E1", 2_000_000, 12).await;
    let again = app.open_facility("E1", 2_000_000, 12).await;

    assert_eq!(first.purchasing_power, 24_000_000);
    assert_eq!(first.status, pb::FacilityStatus::Active as i32);
    assert_eq!(first.facility_id, again.facility_id);
}

#[tokio::test]
async fn r12_second_open_facility_of_an_employee_is_a_conflict() {
    let app = spawn_service().await;
    app.open_facility("E1", 1_000, 3).await;

    let result = app
        .client
        .clone()
        .open_facility(attach(
            pb::OpenFacilityRequest {
                credit_request_id: "another-request".into(),
                employee_id: "E1".into(),
                national_id: NATIONAL_ID.into(),
                organization_id: ORG.into(),
                monthly_credit: 1_000,
                max_instalments: 3,
                activates_at: Some(tavana_credit::convert::timestamp(app.clock_now())),
                full_name: "x".into(),
            },
            &service(),
        ))
        .await;

    let problem = problem(result);
    assert_eq!(problem.code, "facility_already_open");
    assert_eq!(problem.kind, tavana_kit::error::ErrorKind::Conflict);
}

#[tokio::test]
async fn r12_only_a_service_opens_facilities_and_terms_are_checked() {
    let app = spawn_service().await;
    let request = |monthly: i64, months: u32| pb::OpenFacilityRequest {
        credit_request_id: "r".into(),
        employee_id: "E1".into(),
        national_id: NATIONAL_ID.into(),
        organization_id: ORG.into(),
        monthly_credit: monthly,
        max_instalments: months,
        activates_at: Some(tavana_credit::convert::timestamp(app.clock_now())),
        full_name: "x".into(),
    };

    let as_employee = app
        .client
        .clone()
        .open_facility(attach(request(1, 1), &employee("E1")))
        .await;
    let zero = app
        .client
        .clone()
        .open_facility(attach(request(0, 1), &service()))
        .await;
    let too_long = app
        .client
        .clone()
        .open_facility(attach(request(1, 37), &service()))
        .await;

    assert_eq!(problem(as_employee).code, "permission_denied");
    assert_eq!(problem(zero).code, "monthly_credit_not_positive");
    assert_eq!(problem(too_long).code, "max_instalments_out_of_range");
}

#[tokio::test]
async fn r12_facility_is_pending_until_activation_then_active() {
    let app = spawn_service().await;
    let activates_at = app.clock_now() + chrono::Duration::hours(72);
    app.open_facility_activating("E1", 1_000, 3, activates_at)
        .await;

    let pending = app.balance("E1").await.unwrap();
    let refused = app
        .buy("E1", SHOP, pb::PurchaseKind::Credit, 10, 0, "k1")
        .await;
    app.set_clock(activates_at);
    let active = app.balance("E1").await.unwrap();

    let status = |b: &pb::GetBalanceResponse| b.facility.as_ref().unwrap().status;
    assert_eq!(
        status(&pending),
        pb::FacilityStatus::PendingActivation as i32
    );
    assert_eq!(problem(refused).code, "facility_not_active");
    assert_eq!(status(&active), pb::FacilityStatus::Active as i32);
    assert!(
        app.buy("E1", SHOP, pb::PurchaseKind::Credit, 10, 0, "k1")
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn r12_balance_before_any_facility_is_no_facility() {
    let app = spawn_service().await;

    let problem = problem(app.balance("nobody").await);

    assert_eq!(problem.code, "no_facility");
    assert_eq!(problem.kind, tavana_kit::error::ErrorKind::NotFound);
}

#[tokio::test]
async fn r13_close_refused_while_owed_then_releases_the_guarantee() {
    let app = spawn_service().await;
    let facility = app.open_facility("E1", 1_000, 3).await;
    let bought = app
        .buy("E1", SHOP, pb::PurchaseKind::Instalment, 300, 3, "k")
        .await
        .unwrap();
    let close = || {
        let mut client = app.client.clone();
        let facility_id = facility.facility_id.clone();
        async move {
            client
                .close_facility(attach(pb::CloseFacilityRequest { facility_id }, &support()))
                .await
        }
    };

    let refused = close().await;
    app.settle(&bought.purchase.unwrap().purchase_id)
        .await
        .unwrap();
    let closed = close().await.unwrap().into_inner().facility.unwrap();
    let purchase_after = app
        .buy("E1", SHOP, pb::PurchaseKind::Credit, 1, 0, "k2")
        .await;

    assert_eq!(problem(refused).code, "facility_has_debt");
    assert_eq!(closed.status, pb::FacilityStatus::Closed as i32);
    assert_eq!(problem(purchase_after).code, "facility_not_active");
    app.wait_for_peers(|state| {
        state
            .releases
            .iter()
            .any(|r| r.credit_request_id == "req-E1")
    })
    .await;
}
