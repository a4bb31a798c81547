//! R29: while settlement counts an instalment of the employee overdue, the facility takes
//! no purchase (`facility_overdue`) and the balance says so; once nothing is overdue it
//! takes purchases again. Settlement's counts apply only over an older version.

use tavana_kit::caller::attach;
use tavana_proto::credit::v1 as pb;
use tavana_proto::credit::v1::PurchaseKind;

use crate::helpers::*;

impl TestApp {
    async fn set_arrears(&self, employee_id: &str, amount: i64, version: i64) {
        self.client
            .clone()
            .set_arrears(attach(
                pb::SetArrearsRequest {
                    items: vec![pb::EmployeeArrears {
                        employee_id: employee_id.to_owned(),
                        overdue_amount: amount,
                        version,
                        ..Default::default()
                    }],
                },
                &tavana_kit::Caller::service("settlement"),
            ))
            .await
            .expect("set arrears");
    }
}

fn status(balance: &pb::GetBalanceResponse) -> pb::FacilityStatus {
    balance.facility.as_ref().unwrap().status()
}

#[tokio::test]
async fn r29_one_overdue_rial_refuses_purchases_until_settlement_counts_nothing_overdue() {
    // Arrange
    let app = spawn_service().await;
    app.open_facility("E1", 1_000, 3).await;
    app.set_arrears("E1", 1, 1).await;

    // Act
    let refused = app.buy("E1", SHOP, PurchaseKind::Credit, 10, 0, "k1").await;
    let blocked = app.balance("E1").await.unwrap();
    app.set_arrears("E1", 0, 2).await;
    let accepted = app.buy("E1", SHOP, PurchaseKind::Credit, 10, 0, "k2").await;
    let cleared = app.balance("E1").await.unwrap();

    // Assert
    let problem = problem(refused);
    assert_eq!(problem.code, "facility_overdue");
    assert_eq!(problem.kind, tavana_kit::error::ErrorKind::RuleRefused);
    assert_eq!(status(&blocked), pb::FacilityStatus::Overdue);
    assert_eq!(blocked.overdue_amount, 1);
    assert!(accepted.is_ok(), "{accepted:?}");
    assert_eq!(status(&cleared), pb::FacilityStatus::Active);
    assert_eq!(cleared.overdue_amount, 0);
}

#[tokio::test]
async fn r16_r29_paid_arrears_moved_to_a_period_not_due_yet_keep_their_room_until_its_8th() {
    // Arrange: settlement moved 400 of arrears into 1405-03 and an early remittance of
    // 1405-03 paid them (nothing overdue): a purchase made now is deducted in 1405-03 too.
    let app = spawn_service().await;
    app.open_facility("E1", 1_000, 3).await;
    app.client
        .clone()
        .set_arrears(attach(
            pb::SetArrearsRequest {
                items: vec![pb::EmployeeArrears {
                    employee_id: "E1".into(),
                    overdue_amount: 0,
                    version: 1,
                    held_monthly: 400,
                    held_until_period: "1405-03".into(),
                }],
            },
            &tavana_kit::Caller::service("settlement"),
        ))
        .await
        .unwrap();

    // Act
    let over = app
        .buy("E1", SHOP, PurchaseKind::Credit, 601, 0, "k1")
        .await;
    let held = app.room("E1").await;
    let next_release = app.balance("E1").await.unwrap().next_release_at;
    app.set_clock(release_of("1405-03"));
    let released = app.room("E1").await;

    // Assert
    assert_eq!(problem(over).code, "insufficient_credit");
    assert_eq!(held, (600, 3_000));
    assert_eq!(
        next_release.map(|at| at.seconds),
        Some(release_of("1405-03").timestamp())
    );
    assert_eq!(released, (1_000, 3_000));
}

#[tokio::test]
async fn r29_an_older_count_arriving_late_changes_nothing() {
    let app = spawn_service().await;
    app.open_facility("E1", 1_000, 3).await;

    app.set_arrears("E1", 0, 2).await;
    app.set_arrears("E1", 500, 1).await;
    app.set_arrears("E1", 500, 2).await;

    let balance = app.balance("E1").await.unwrap();
    assert_eq!(balance.overdue_amount, 0);
    assert_eq!(status(&balance), pb::FacilityStatus::Active);
}

#[tokio::test]
async fn r29_only_a_service_sets_arrears() {
    let app = spawn_service().await;

    let refused = app
        .client
        .clone()
        .set_arrears(attach(
            pb::SetArrearsRequest { items: vec![] },
            &employee("E1"),
        ))
        .await;

    assert_eq!(refused.unwrap_err().code(), tonic::Code::PermissionDenied);
}

#[tokio::test]
async fn r29_a_schedule_carries_m_the_guarantor_and_the_region_to_settlement() {
    let app = spawn_service().await;
    app.open_facility("E1", 1_000, 3).await;

    app.buy("E1", SHOP, PurchaseKind::Instalment, 300, 3, "k")
        .await
        .unwrap();

    app.wait_for_peers(|state| !state.schedules.is_empty())
        .await;
    let state = app.peers.0.lock().unwrap();
    let schedule = &state.schedules[0];
    assert_eq!(schedule.monthly_credit, 1_000);
    assert_eq!(schedule.guarantor_employee_id, GUARANTOR);
    assert_eq!(schedule.region_code, "TEH-19");
}
