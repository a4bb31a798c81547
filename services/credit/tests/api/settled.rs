//! R18: instalment holds released when settled and the contract is in force.

use std::time::Duration;

use tavana_kit::testing::wait_until;
use tavana_proto::credit::v1::PurchaseKind;

use crate::helpers::*;

#[tokio::test]
async fn r18_settled_instalment_purchase_releases_its_holds_idempotently() {
    let app = spawn_service().await;
    app.open_facility("E1", 1_000, 3).await;
    let bought = app
        .buy("E1", SHOP, PurchaseKind::Instalment, 900, 3, "k")
        .await
        .unwrap();
    let id = bought.purchase.unwrap().purchase_id;
    // Settled in its last deduction period (1405-05), after its 8th (R16, R18).
    app.set_clock(after_three_months());

    app.settle(&id).await.unwrap();
    app.settle(&id).await.unwrap();

    assert_eq!(app.room("E1").await, (1_000, 3_000));
}

#[tokio::test]
async fn r16_r18_an_early_settlement_keeps_the_room_until_the_8th_of_the_last_period() {
    // A remittance recorded before the last deduction period (1405-05) settles the purchase
    // early. Its room comes back on the 8th of 1405-05, not before: a purchase made in
    // 1405-04 is deducted in 1405-05, already remitted, on top of this one (R16's bound).
    let app = spawn_service().await;
    app.open_facility("E1", 1_000, 3).await;
    let bought = app
        .buy("E1", SHOP, PurchaseKind::Instalment, 900, 3, "k")
        .await
        .unwrap();
    let id = bought.purchase.unwrap().purchase_id;

    app.settle(&id).await.unwrap();
    app.set_clock(release_of("1405-05") - chrono::Duration::seconds(1));
    let just_before = app.room("E1").await;
    app.set_clock(release_of("1405-05"));
    let at_the_8th = app.room("E1").await;
    app.settle(&id).await.unwrap();
    let settled_twice = app.room("E1").await;

    assert_eq!(just_before, (700, 2_100));
    assert_eq!(at_the_8th, (1_000, 3_000));
    assert_eq!(settled_twice, (1_000, 3_000));
    let row = stored(&app, &id).await;
    assert_eq!(row.hold_release_at, Some(release_of("1405-05")));
    assert_eq!(row.hold_released_at, None, "the clock releases it");
}

#[tokio::test]
async fn r18_holds_wait_for_the_contract_to_be_in_force_again() {
    let app = spawn_service().await;
    app.open_facility("E1", 1_000, 3).await;
    let bought = app
        .buy("E1", SHOP, PurchaseKind::Instalment, 900, 3, "k")
        .await
        .unwrap();
    let id = bought.purchase.unwrap().purchase_id;
    app.peers
        .0
        .lock()
        .unwrap()
        .organizations
        .insert(ORG.into(), false);
    // Settled on time, after the 8th of its last deduction period (R16).
    app.set_clock(after_three_months());

    app.settle(&id).await.unwrap();
    let while_out_of_force = app.room("E1").await;
    app.peers
        .0
        .lock()
        .unwrap()
        .organizations
        .insert(ORG.into(), true);
    let back_in_force = app.room("E1").await;
    app.peers
        .0
        .lock()
        .unwrap()
        .organizations
        .insert(ORG.into(), false);
    let stays_released = app.room("E1").await;

    assert_eq!(while_out_of_force, (700, 2_100));
    assert_eq!(back_in_force, (1_000, 3_000));
    assert_eq!(stays_released, (1_000, 3_000));
}

#[tokio::test]
async fn r18_only_services_mark_purchases_settled() {
    let app = spawn_service().await;
    app.open_facility("E1", 1_000, 3).await;
    let bought = app
        .buy("E1", SHOP, PurchaseKind::Instalment, 900, 3, "k")
        .await
        .unwrap();

    let result = app
        .client
        .clone()
        .mark_purchases_settled(tavana_kit::caller::attach(
            tavana_proto::credit::v1::MarkPurchasesSettledRequest {
                purchase_ids: vec![bought.purchase.unwrap().purchase_id],
                partly_settled_purchase_ids: vec![],
            },
            &employee("E1"),
        ))
        .await;

    assert_eq!(problem(result).code, "permission_denied");
}

#[tokio::test]
async fn r18_a_purchase_releases_the_holds_that_waited_for_the_contract() {
    let app = spawn_service().await;
    app.open_facility("E1", 1_000, 3).await;
    let bought = app
        .buy("E1", SHOP, PurchaseKind::Instalment, 3_000, 3, "k1")
        .await
        .unwrap();
    app.set_contract_in_force(false);
    // Settled on time, after the 8th of its last deduction period (R16).
    app.set_clock(after_three_months());
    app.settle(&bought.purchase.unwrap().purchase_id)
        .await
        .unwrap();
    app.set_contract_in_force(true);

    // No balance read in between: the purchase itself releases the waiting holds.
    let result = app
        .buy("E1", SHOP, PurchaseKind::Credit, 1_000, 0, "k2")
        .await;

    assert!(result.is_ok(), "{result:?}");
    assert_eq!(app.room("E1").await, (0, 2_000));
}

/// Returns the stored purchase row.
async fn stored(app: &TestApp, purchase_id: &str) -> tavana_credit::store::purchase::Model {
    app.store
        .purchase(purchase_id)
        .await
        .unwrap()
        .expect("a stored purchase")
}

#[tokio::test]
async fn r18_a_batch_settles_each_purchase_and_its_redelivery_changes_nothing() {
    let app = spawn_service().await;
    app.open_facility("E1", 1_000, 3).await;
    app.open_facility("E2", 1_000, 3).await;
    let mut ids = Vec::new();
    for (employee, amount, key) in [("E1", 300, "k1"), ("E1", 600, "k2"), ("E2", 900, "k3")] {
        let bought = app
            .buy(employee, SHOP, PurchaseKind::Instalment, amount, 3, key)
            .await
            .unwrap();
        ids.push(bought.purchase.unwrap().purchase_id);
    }
    let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
    // Settled on time, after the 8th of their last deduction period (R16, R18).
    app.set_clock(after_three_months());

    app.settle_all(&ids).await.unwrap();
    let first: Vec<_> = futures::future::join_all(ids.iter().map(|id| stored(&app, id))).await;
    app.advance(chrono::Duration::hours(1));
    let redelivered = app.settle_all(&ids).await;
    let second: Vec<_> = futures::future::join_all(ids.iter().map(|id| stored(&app, id))).await;

    assert!(redelivered.is_ok(), "{redelivered:?}");
    assert_eq!(app.room("E1").await, (1_000, 3_000));
    assert_eq!(app.room("E2").await, (1_000, 3_000));
    assert!(first.iter().all(|row| row.settled_at.is_some()));
    assert!(
        first
            .iter()
            .all(|row| row.hold_released_at == row.settled_at)
    );
    assert_eq!(first, second, "a redelivered batch changes nothing");
}

#[tokio::test]
async fn r18_a_mixed_batch_treats_each_purchase_as_the_single_call_did() {
    // Already settled, open instalment, credit (R17 clock release), wholly refunded (R20),
    // and a purchase credit does not know.
    let app = spawn_service().await;
    app.open_facility("E1", 1_000, 3).await;
    let buy = async |kind: PurchaseKind, amount: i64, months: u32, key: &str| {
        app.buy("E1", SHOP, kind, amount, months, key)
            .await
            .unwrap()
            .purchase
            .unwrap()
            .purchase_id
    };
    let settled = buy(PurchaseKind::Instalment, 300, 3, "k1").await;
    let open = buy(PurchaseKind::Instalment, 600, 3, "k2").await;
    let credit = buy(PurchaseKind::Credit, 100, 0, "k3").await;
    let refunded = buy(PurchaseKind::Instalment, 300, 3, "k4").await;
    app.refund(SHOP, &refunded, 300).await.unwrap();
    // Settled on time, after the 8th of their last deduction period (R16, R18).
    app.set_clock(after_three_months());
    app.settle(&settled).await.unwrap();
    let settled_before = stored(&app, &settled).await;
    let refunded_before = stored(&app, &refunded).await;
    app.advance(chrono::Duration::hours(1));
    let batch = [
        settled.as_str(),
        "no-such-purchase",
        open.as_str(),
        credit.as_str(),
        refunded.as_str(),
        open.as_str(),
    ];

    let with_unknown = app.settle_all(&batch).await;
    let after_first = [
        stored(&app, &settled).await,
        stored(&app, &open).await,
        stored(&app, &credit).await,
        stored(&app, &refunded).await,
    ];
    let without_unknown = app.settle_all(&[&settled, &open, &credit, &refunded]).await;
    let after_second = [
        stored(&app, &settled).await,
        stored(&app, &open).await,
        stored(&app, &credit).await,
        stored(&app, &refunded).await,
    ];

    // The unknown purchase fails the call (NOT_FOUND, so settlement retries) without
    // holding the others back.
    assert_eq!(problem(with_unknown).code, "purchase_not_found");
    assert!(without_unknown.is_ok(), "{without_unknown:?}");
    let [settled_row, open_row, credit_row, refunded_row] = &after_first;
    let now = app.clock_now();
    assert_eq!(*settled_row, settled_before);
    assert_eq!(open_row.settled_at, Some(now));
    assert_eq!(open_row.hold_released_at, Some(now));
    assert_eq!(credit_row.settled_at, Some(now));
    assert_eq!(
        credit_row.hold_released_at, None,
        "R17: a credit hold keeps its clock"
    );
    assert_eq!(refunded_row.settled_at, Some(now));
    assert_eq!(
        refunded_row.hold_released_at,
        refunded_before.hold_released_at
    );
    assert!(!refunded_row.hold_waits_for_contract);
    assert_eq!(after_first, after_second);
}

#[tokio::test]
async fn r18_a_batch_keeps_instalment_holds_until_the_contract_is_in_force() {
    let app = spawn_service().await;
    app.open_facility("E1", 1_000, 3).await;
    app.open_facility("E2", 1_000, 3).await;
    let mut ids = Vec::new();
    for (employee, key) in [("E1", "k1"), ("E2", "k2")] {
        let bought = app
            .buy(employee, SHOP, PurchaseKind::Instalment, 900, 3, key)
            .await
            .unwrap();
        ids.push(bought.purchase.unwrap().purchase_id);
    }
    app.set_contract_in_force(false);

    app.settle_all(&[&ids[0], &ids[1]]).await.unwrap();

    for id in &ids {
        let row = stored(&app, id).await;
        assert!(row.settled_at.is_some());
        assert!(row.hold_waits_for_contract);
        assert_eq!(row.hold_released_at, None);
    }
    assert_eq!(app.room("E1").await, (700, 2_100));
    assert_eq!(app.room("E2").await, (700, 2_100));
}

/// The one `BIGINT` column `n` of the one row `sql` returns (PostgreSQL).
async fn number(app: &TestApp, sql: &str, values: Vec<sea_orm::Value>) -> i64 {
    use sea_orm::{ConnectionTrait, DbBackend, Statement};

    app.db()
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            sql,
            values,
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get("", "n")
        .unwrap()
}

/// A facility's version, the column its money transactions write to take its lock.
async fn facility_version(app: &TestApp, facility_id: &str) -> i64 {
    let sql = "SELECT CAST(version AS BIGINT) AS n FROM facility WHERE id = $1";
    number(app, sql, vec![facility_id.into()]).await
}

/// On PostgreSQL a batch takes the row lock of each facility it settles without writing
/// the row: it waits for a money transaction holding that facility (R16: a purchase's
/// check never runs beside a release of its holds), then settles as usual.
#[tokio::test]
async fn r18_a_batch_waits_for_a_money_transaction_on_its_facility_without_writing_it() {
    use sea_orm::{ConnectionTrait, DbBackend, Statement, TransactionTrait};

    let app = spawn_service().await;
    if app.db().get_database_backend() != DbBackend::Postgres {
        return;
    }
    let facility = app.open_facility("E1", 1_000, 3).await;
    let bought = app
        .buy("E1", SHOP, PurchaseKind::Instalment, 900, 3, "k1")
        .await
        .unwrap();
    let purchase_id = bought.purchase.unwrap().purchase_id;
    app.set_clock(after_three_months());
    let before = facility_version(&app, &facility.facility_id).await;

    // A money transaction holds the facility, as a purchase's first statement does.
    let money = app.db().begin().await.unwrap();
    money
        .execute_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "UPDATE facility SET version = version + 1 WHERE id = $1",
            [facility.facility_id.as_str().into()],
        ))
        .await
        .unwrap();
    let batch = [purchase_id.as_str()];
    let settle = app.settle_all(&batch);
    tokio::pin!(settle);
    let waits_for_lock = wait_until(
        "the batch waits for the facility's row lock",
        Duration::from_secs(30),
        async || {
            let sql = "SELECT COUNT(*) AS n FROM pg_stat_activity \
                       WHERE datname = current_database() AND wait_event_type = 'Lock'";
            number(&app, sql, Vec::new()).await > 0
        },
    );
    tokio::select! {
        answer = &mut settle => panic!("the batch did not wait for the lock: {answer:?}"),
        () = waits_for_lock => {}
    }
    let while_held = stored(&app, &purchase_id).await;
    money.commit().await.unwrap();
    let answer = settle.await;

    assert!(answer.is_ok(), "{answer:?}");
    assert_eq!(while_held.settled_at, None);
    assert!(stored(&app, &purchase_id).await.settled_at.is_some());
    assert_eq!(app.room("E1").await, (1_000, 3_000));
    assert_eq!(
        facility_version(&app, &facility.facility_id).await,
        before + 1,
        "only the money transaction wrote the facility"
    );
}

/// R18: a batch of purchases marked settled after a remittance may be every purchase of a
/// page. No index of the purchase names a column the marking writes, and on PostgreSQL the
/// purchase's pages are filled to half, so each marked version is written in place with no
/// new index entry. The migration rolls back to full pages and up again.
#[tokio::test]
async fn r18_marking_purchases_settled_writes_no_indexed_column_and_finds_room_on_their_page() {
    use tavana_kit::testing::{table_indexes, table_page_fill};
    const MARKED: [&str; 2] = ["settled_at", "partly_settled_at"];
    let app = spawn_service().await;
    let postgres = tavana_kit::db::is_postgres(app.db());

    let indexes = table_indexes(app.db(), "purchase").await;
    let filled = table_page_fill(app.db(), "purchase").await;
    app.migrate_down_to_before("m20261206_120000_fill_purchase_pages")
        .await;
    let rolled_back = table_page_fill(app.db(), "purchase").await;
    app.migrate_up().await;

    assert!(indexes.len() >= 3, "{indexes:?}");
    for (name, definition) in &indexes {
        for column in MARKED {
            assert!(!definition.contains(column), "{name} names {column}");
        }
    }
    assert_eq!(filled, postgres.then_some(50));
    assert_eq!(rolled_back, postgres.then_some(100));
    assert_eq!(
        table_page_fill(app.db(), "purchase").await,
        postgres.then_some(50)
    );
}
