//! R18: instalment holds released when settled and the contract is in force.

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

    app.settle(&id).await.unwrap();
    app.settle(&id).await.unwrap();

    assert_eq!(app.room("E1").await, (1_000, 3_000));
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
        .mark_purchase_settled(tavana_kit::caller::attach(
            tavana_proto::credit::v1::MarkPurchaseSettledRequest {
                purchase_id: bought.purchase.unwrap().purchase_id,
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
