//! Effects through the outbox: schedules to settlement, receipts through identity.

use tavana_kit::caller::Caller;
use tavana_proto::credit::v1::PurchaseKind;

use crate::helpers::*;

#[tokio::test]
async fn purchase_schedule_is_delivered_to_settlement_as_the_credit_service() {
    let app = spawn_service().await;
    app.open_facility("E1", 1_000, 3).await;

    let bought = app
        .buy("E1", SHOP, PurchaseKind::Instalment, 10, 3, "k")
        .await
        .unwrap();
    let id = bought.purchase.unwrap().purchase_id;

    app.wait_for_peers(|state| state.schedules.iter().any(|s| s.purchase_id == id))
        .await;
    app.wait_for_peers(|state| {
        state
            .notifications
            .iter()
            .any(|n| n.dedup_key == format!("purchase-receipt:{id}"))
    })
    .await;
    let state = app.peers.0.lock().unwrap();
    let schedule = state
        .schedules
        .iter()
        .find(|s| s.purchase_id == id)
        .unwrap();
    let amounts: Vec<i64> = schedule.instalments.iter().map(|i| i.amount).collect();
    assert_eq!(amounts, vec![4, 3, 3]);
    assert_eq!(schedule.national_id, NATIONAL_ID);
    assert_eq!(schedule.organization_id, ORG);
    assert_eq!(schedule.merchant_name, format!("shop {SHOP}"));
    assert!(state.callers.contains(&Caller::service("credit")));
}

/// The outbox's large payloads (a remittance's or a close's batches) are compressed with
/// LZ4 on PostgreSQL, where the server has it (it does here).
#[tokio::test]
async fn outbox_payloads_compress_with_lz4_on_postgres() {
    let db = tavana_kit::testing::test_db::<tavana_credit_migration::Migrator>().await;
    let compression = tavana_kit::testing::outbox_payload_compression(&db.db).await;
    assert_eq!(compression, db.is_postgres().then_some("lz4"));
}
