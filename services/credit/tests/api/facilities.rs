//! R12, R13: facilities.

use tavana_kit::caller::attach;
use tavana_kit::ledger_digest::LedgerDigest;
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
                activates_at: Some(tavana_proto::timestamp(app.clock_now())),
                full_name: "x".into(),
                ..Default::default()
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
        activates_at: Some(tavana_proto::timestamp(app.clock_now())),
        full_name: "x".into(),
        ..Default::default()
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
                .close_facility(attach(
                    pb::CloseFacilityRequest {
                        facility_id,
                        ..Default::default()
                    },
                    &support(),
                ))
                .await
        }
    };

    let refused = close().await;
    // Settled on time, after the 8th of its last deduction period: nothing held (R16, R18).
    app.set_clock(after_three_months());
    app.settle(&bought.purchase.unwrap().purchase_id)
        .await
        .unwrap();
    let closed = close().await.unwrap().into_inner().facility.unwrap();
    let purchase_after = app
        .buy("E1", SHOP, pb::PurchaseKind::Credit, 1, 0, "k2")
        .await;

    assert_eq!(problem(refused).code, "facility_has_debt");
    assert_eq!(closed.status, pb::FacilityStatus::Closed as i32);
    assert_eq!(problem(purchase_after).code, "facility_closed");
    app.wait_for_peers(|state| {
        state
            .releases
            .iter()
            .any(|r| r.credit_request_id == "req-E1")
    })
    .await;
}

fn close_request(national_id: &str) -> pb::CloseFacilityRequest {
    pb::CloseFacilityRequest {
        national_id: national_id.to_owned(),
        reason: "employment ended".to_owned(),
        ..Default::default()
    }
}

#[tokio::test]
async fn r30_an_employee_closes_their_own_facility_when_nothing_is_owed_or_held() {
    let app = spawn_service().await;
    app.open_facility("E1", 1_000, 3).await;
    let bought = app
        .buy("E1", SHOP, pb::PurchaseKind::Instalment, 300, 3, "k")
        .await
        .unwrap();
    let id = bought.purchase.unwrap().purchase_id;
    let close = || {
        let mut client = app.client.clone();
        async move {
            client
                .close_facility(attach(pb::CloseFacilityRequest::default(), &employee("E1")))
                .await
        }
    };

    let owed = close().await;
    app.refund(SHOP, &id, 300).await.unwrap();
    let closed = close().await.unwrap().into_inner().facility.unwrap();
    let balance = app.balance("E1").await.unwrap();

    let owed = problem(owed);
    assert_eq!(owed.code, "facility_has_debt");
    assert_eq!(owed.kind, tavana_kit::error::ErrorKind::Conflict);
    assert_eq!(closed.status, pb::FacilityStatus::Closed as i32);
    assert_eq!(
        balance.facility.unwrap().status,
        pb::FacilityStatus::Closed as i32
    );
}

#[tokio::test]
async fn r30_a_settled_credit_purchase_still_holds_room_until_the_8th_so_no_close() {
    let app = spawn_service().await;
    app.open_facility("E1", 1_000, 3).await;
    let bought = app
        .buy("E1", SHOP, pb::PurchaseKind::Credit, 100, 0, "k")
        .await
        .unwrap();
    app.settle(&bought.purchase.unwrap().purchase_id)
        .await
        .unwrap();

    let held = app
        .client
        .clone()
        .close_facility(attach(close_request(NATIONAL_ID), &support()))
        .await;

    assert_eq!(problem(held).code, "facility_has_debt");
}

#[tokio::test]
async fn r30_support_suspends_and_resumes_by_national_id() {
    let app = spawn_service().await;
    app.open_facility("E1", 1_000, 3).await;
    let suspend = pb::SuspendFacilityRequest {
        national_id: NATIONAL_ID.to_owned(),
        reason: "investigation".to_owned(),
    };

    let by_employee = app
        .client
        .clone()
        .suspend_facility(attach(suspend.clone(), &employee("E1")))
        .await;
    let suspended = app
        .client
        .clone()
        .suspend_facility(attach(suspend, &support()))
        .await
        .unwrap()
        .into_inner();
    let refused = app
        .buy("E1", SHOP, pb::PurchaseKind::Credit, 10, 0, "k1")
        .await;
    let resumed = app
        .client
        .clone()
        .resume_facility(attach(
            pb::ResumeFacilityRequest {
                national_id: NATIONAL_ID.to_owned(),
                reason: "cleared".to_owned(),
            },
            &support(),
        ))
        .await
        .unwrap()
        .into_inner();

    assert_eq!(problem(by_employee).code, "permission_denied");
    assert_eq!(
        suspended.facility.unwrap().status,
        pb::FacilityStatus::Suspended as i32
    );
    assert_eq!(problem(refused).code, "facility_suspended");
    assert_eq!(
        resumed.facility.unwrap().status,
        pb::FacilityStatus::Active as i32
    );
    assert!(
        app.buy("E1", SHOP, pb::PurchaseKind::Credit, 10, 0, "k2")
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn r30_a_new_approval_opens_a_facility_beside_an_older_closed_one() {
    let app = spawn_service().await;
    app.open_facility("E1", 1_000, 3).await;
    app.client
        .clone()
        .close_facility(attach(close_request(NATIONAL_ID), &support()))
        .await
        .unwrap();

    let reopened = app
        .client
        .clone()
        .open_facility(attach(
            pb::OpenFacilityRequest {
                credit_request_id: "req-E1-second".into(),
                employee_id: "E1".into(),
                national_id: NATIONAL_ID.into(),
                organization_id: ORG.into(),
                monthly_credit: 2_000,
                max_instalments: 3,
                activates_at: Some(tavana_proto::timestamp(app.clock_now())),
                full_name: "Test Employee".into(),
                ..Default::default()
            },
            &service(),
        ))
        .await
        .unwrap()
        .into_inner()
        .facility
        .unwrap();
    let balance = app.balance("E1").await.unwrap();
    app.buy(
        "E1",
        SHOP,
        pb::PurchaseKind::Credit,
        500,
        0,
        "after-reopening",
    )
    .await
    .unwrap();

    assert_eq!(reopened.status, pb::FacilityStatus::Active as i32);
    assert_eq!(balance.facility.unwrap().monthly_credit, 2_000);
    // The balance reads the new facility's holds, not the closed one's (R16).
    assert_eq!(app.room("E1").await, (1_500, 5_500));
}

#[tokio::test]
async fn r31_the_ledger_pages_every_purchase_in_id_order_with_its_schedule() {
    let app = spawn_service().await;
    app.open_facility("E1", 1_000, 3).await;
    for key in ["k1", "k2", "k3"] {
        app.buy("E1", SHOP, pb::PurchaseKind::Instalment, 10, 3, key)
            .await
            .unwrap();
    }
    // The ledger credit serves to settlement (the only principal allowed to read it).
    let store = &app.store;
    let page = |after: String| async move {
        let (items, last_page) = tavana_credit::service::purchase_ledger(store, &after, 2)
            .await
            .unwrap();
        pb::ListPurchaseLedgerResponse { items, last_page }
    };
    let first = page(String::new()).await;
    let second = page(first.items[1].purchase_id.clone()).await;

    assert_eq!(first.items.len(), 2);
    assert!(!first.last_page);
    assert_eq!(second.items.len(), 1);
    assert!(second.last_page);
    assert!(first.items[0].purchase_id < first.items[1].purchase_id);
    assert!(first.items[1].purchase_id < second.items[0].purchase_id);
    let entry = &second.items[0];
    assert_eq!(entry.national_id, NATIONAL_ID);
    assert_eq!(entry.version, 1);
    assert_eq!(
        entry.schedule.iter().map(|i| i.amount).collect::<Vec<_>>(),
        [4, 3, 3]
    );
}

/// A service where employee E1 bought each (amount, months) in instalments, in order.
async fn instalment_buyer(purchases: &[(i64, u32)]) -> TestApp {
    let app = spawn_service().await;
    app.open_facility("E1", 1_000, 3).await;
    for (n, (amount, months)) in purchases.iter().enumerate() {
        let key = format!("k{n}");
        app.buy(
            "E1",
            SHOP,
            pb::PurchaseKind::Instalment,
            *amount,
            *months,
            &key,
        )
        .await
        .unwrap();
    }
    app
}

#[tokio::test]
async fn r31_the_ledger_digest_covers_the_pages_credit_serves_range_by_range() {
    // A 1-rial purchase, a remainder split (4 + 3 + 3) and one refunded in part (R20).
    let app = instalment_buyer(&[(1, 1), (10, 3), (7, 2)]).await;
    let store = &app.store;
    let (all, _) = tavana_credit::service::purchase_ledger(store, "", 100)
        .await
        .unwrap();
    app.refund(SHOP, &all[2].purchase_id, 3).await.unwrap();
    let (all, _) = tavana_credit::service::purchase_ledger(store, "", 100)
        .await
        .unwrap();

    let first = tavana_credit::service::purchase_ledger_digest(store, "", 2)
        .await
        .unwrap();
    let second = tavana_credit::service::purchase_ledger_digest(store, &first.last_purchase_id, 2)
        .await
        .unwrap();

    // Two ranges: the first two purchases, then the last, running to the end.
    assert_eq!((first.purchases, first.unbalanced), (2, 0));
    assert_eq!(first.last_purchase_id, all[1].purchase_id);
    assert_eq!((second.purchases, second.unbalanced), (1, 0));
    assert_eq!(second.last_purchase_id, "");
    // Each digest is the one settlement computes from the same entries.
    let digest_of = |entries: &[pb::PurchaseLedgerEntry]| {
        let mut digest = LedgerDigest::default();
        for entry in entries {
            for instalment in &entry.schedule {
                digest.add(&entry.purchase_id, &instalment.period, instalment.amount);
            }
        }
        digest.to_bytes()
    };
    assert_eq!(first.digest, digest_of(&all[..2]));
    assert_eq!(second.digest, digest_of(&all[2..]));
    assert_eq!(all[2].refunded_amount, 3);
    // A range exactly as long as what is left runs to the end.
    let whole = tavana_credit::service::purchase_ledger_digest(store, "", 3)
        .await
        .unwrap();
    assert_eq!((whole.purchases, whole.last_purchase_id.as_str()), (3, ""));
    assert_eq!(whole.digest, digest_of(&all));
    // Past the last purchase: an empty range, to the end.
    let past = tavana_credit::service::purchase_ledger_digest(store, &all[2].purchase_id, 3)
        .await
        .unwrap();
    assert_eq!((past.purchases, past.last_purchase_id.as_str()), (0, ""));
    assert_eq!(past.digest, LedgerDigest::default().to_bytes());
}

/// R31: a purchase older than its stored term (the migration leaves it empty) is digested
/// from its row, to the same digest; and a stored schedule that does not add up is counted
/// whatever the term says, since such a schedule is stored without one.
#[tokio::test]
async fn r31_a_purchase_without_a_stored_term_is_digested_from_its_row_alike() {
    use sea_orm::sea_query::Expr;
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
    use tavana_credit::store::purchase;
    let app = instalment_buyer(&[(1, 1), (10, 3)]).await;
    let store = &app.store;
    let digest = async || {
        tavana_credit::service::purchase_ledger_digest(store, "", 10)
            .await
            .unwrap()
    };
    let stored = digest().await;

    app.migrate_down_to_before("m20261207_000001_add_purchase_ledger_term")
        .await;
    app.migrate_up().await;
    let terms: Vec<Option<i64>> = purchase::Entity::find()
        .all(app.db())
        .await
        .unwrap()
        .into_iter()
        .map(|row| row.ledger_term)
        .collect();
    let from_rows = digest().await;
    // The 10 rials' schedule (4 + 3 + 3) changed to 4 + 3: it no longer adds up to 10.
    let (ledger, _) = tavana_credit::service::purchase_ledger(store, "", 10)
        .await
        .unwrap();
    let split = ledger.iter().find(|entry| entry.amount == 10).unwrap();
    let stored_schedule = store
        .purchase(&split.purchase_id)
        .await
        .unwrap()
        .unwrap()
        .schedule;
    let mut schedule: Vec<serde_json::Value> = serde_json::from_str(&stored_schedule).unwrap();
    schedule.pop();
    purchase::Entity::update_many()
        .col_expr(
            purchase::Column::Schedule,
            Expr::value(serde_json::to_string(&schedule).unwrap()),
        )
        .filter(purchase::Column::Id.eq(split.purchase_id.as_str()))
        .exec(app.db())
        .await
        .unwrap();
    let short = digest().await;

    assert_eq!((stored.purchases, stored.unbalanced), (2, 0));
    assert_eq!(terms, [None, None], "the migration leaves the terms empty");
    assert_eq!(from_rows, stored, "the same answer from the rows");
    assert_eq!((short.purchases, short.unbalanced), (2, 1));
    assert_ne!(short.digest, stored.digest);
}

/// R31: a purchase carries its facility's national ID, which the ledger reads from the
/// purchase row alone. The migration that added the column copies each purchase's from its
/// own facility for purchases made before it, and rolls back.
#[tokio::test]
async fn r31_a_purchase_carries_its_facility_national_id_and_the_migration_copies_it() {
    use sea_orm::sea_query::Expr;
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
    use tavana_credit::store::facility;
    use tavana_credit_migration::SchemaManager;
    const OTHER_NATIONAL_ID: &str = "0098765432";
    let app = spawn_service().await;
    let mut bought = Vec::new();
    for employee_id in ["E1", "E2"] {
        app.open_facility(employee_id, 1_000, 3).await;
        let purchase = app
            .buy(
                employee_id,
                SHOP,
                pb::PurchaseKind::Instalment,
                10,
                3,
                employee_id,
            )
            .await
            .unwrap();
        bought.push(purchase.purchase.unwrap().purchase_id);
    }
    let national_ids = async || {
        let mut ids = Vec::new();
        for id in &bought {
            ids.push(app.store.purchase(id).await.unwrap().unwrap().national_id);
        }
        ids
    };
    let written = national_ids().await;

    // Before the column: E2's facility names another national ID, which the copy must take.
    app.migrate_down_to_before("m20261206_000001_add_purchase_national_id")
        .await;
    let had_column = SchemaManager::new(app.db())
        .has_column("purchase", "national_id")
        .await
        .unwrap();
    facility::Entity::update_many()
        .col_expr(facility::Column::NationalId, Expr::value(OTHER_NATIONAL_ID))
        .filter(facility::Column::EmployeeId.eq("E2"))
        .exec(app.db())
        .await
        .unwrap();
    app.migrate_up().await;
    let copied = national_ids().await;
    let (ledger, _) = tavana_credit::service::purchase_ledger(&app.store, "", 10)
        .await
        .unwrap();

    assert_eq!(written, [NATIONAL_ID, NATIONAL_ID]);
    assert!(!had_column, "rolled back, the purchase has no national ID");
    assert_eq!(
        copied,
        [NATIONAL_ID, OTHER_NATIONAL_ID],
        "each copied from its own facility"
    );
    let served: std::collections::BTreeMap<&str, &str> = ledger
        .iter()
        .map(|entry| (entry.purchase_id.as_str(), entry.national_id.as_str()))
        .collect();
    let expected: std::collections::BTreeMap<&str, &str> = [
        (bought[0].as_str(), NATIONAL_ID),
        (bought[1].as_str(), OTHER_NATIONAL_ID),
    ]
    .into();
    assert_eq!(served, expected, "the ledger serves the purchase row's");
}

/// Returns the audit trail of the credit service, newest first.
async fn audit_trail(app: &TestApp) -> Vec<tavana_kit::audit::AuditEntry> {
    tavana_kit::audit::list(
        app.store.db(),
        &tavana_kit::audit::AuditQuery {
            page_size: 10,
            ..Default::default()
        },
    )
    .await
    .unwrap()
    .0
}

/// Attaches `caller` and a gateway request id.
fn with_request_id<T>(
    message: T,
    caller: &tavana_kit::caller::Caller,
    id: &str,
) -> tonic::Request<T> {
    let mut request = attach(message, caller);
    request
        .metadata_mut()
        .insert("x-request-id", id.parse().unwrap());
    request
}

#[tokio::test]
async fn r32_support_suspend_resume_and_close_each_leave_an_audit_entry() {
    let app = spawn_service().await;
    app.open_facility("E1", 1_000, 3).await;
    let mut client = app.client.clone();

    client
        .suspend_facility(with_request_id(
            pb::SuspendFacilityRequest {
                national_id: NATIONAL_ID.to_owned(),
                reason: "investigation".to_owned(),
            },
            &support(),
            "req-suspend",
        ))
        .await
        .unwrap();
    client
        .resume_facility(with_request_id(
            pb::ResumeFacilityRequest {
                national_id: NATIONAL_ID.to_owned(),
                reason: "cleared".to_owned(),
            },
            &support(),
            "req-resume",
        ))
        .await
        .unwrap();
    client
        .close_facility(with_request_id(
            close_request(NATIONAL_ID),
            &support(),
            "req-close",
        ))
        .await
        .unwrap();
    // Closing a closed facility changes nothing and records nothing.
    client
        .close_facility(attach(close_request(NATIONAL_ID), &support()))
        .await
        .unwrap();

    let trail = audit_trail(&app).await;
    let seen: Vec<(&str, &str, &str)> = trail
        .iter()
        .rev()
        .map(|entry| {
            (
                entry.action.as_str(),
                entry.subject.as_str(),
                entry.request_id.as_str(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("facility.suspend", NATIONAL_ID, "req-suspend"),
            ("facility.resume", NATIONAL_ID, "req-resume"),
            ("facility.close", NATIONAL_ID, "req-close"),
        ]
    );
    for entry in &trail {
        assert_eq!(entry.actor.national_id, "0000000000");
        assert_eq!(entry.actor.roles, ["support"]);
    }
    assert_eq!(trail[0].details["reason"], "employment ended");
}

#[tokio::test]
async fn r32_a_refused_close_leaves_no_audit_entry() {
    let app = spawn_service().await;
    app.open_facility("E1", 1_000, 3).await;
    app.buy("E1", SHOP, pb::PurchaseKind::Credit, 100, 0, "k")
        .await
        .unwrap();

    let refused = app
        .client
        .clone()
        .close_facility(attach(close_request(NATIONAL_ID), &support()))
        .await;

    assert_eq!(problem(refused).code, "facility_has_debt");
    assert!(audit_trail(&app).await.is_empty());
}
