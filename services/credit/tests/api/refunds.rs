//! R20: refunds by the merchant before the first deduction is due.

use chrono::Duration;
use tavana_kit::jalali::{JalaliPeriod, release_instant};
use tavana_proto::credit::v1::PurchaseKind;

use crate::helpers::*;

#[tokio::test]
async fn r20_partial_refund_resplits_and_recomputes_holds() {
    let app = spawn_service().await;
    app.open_facility("E1", 1_000, 3).await;
    let bought = app
        .buy("E1", SHOP, PurchaseKind::Instalment, 900, 3, "k")
        .await
        .unwrap();
    let id = bought.purchase.unwrap().purchase_id;

    let refunded = app.refund(SHOP, &id, 101).await.unwrap();

    let amounts: Vec<i64> = refunded.instalments.iter().map(|i| i.amount).collect();
    assert_eq!(refunded.refunded_amount, 101);
    assert_eq!(amounts, vec![267, 266, 266]);
    assert_eq!(app.room("E1").await, (1_000 - 267, 3_000 - 799));
    app.wait_for_peers(|state| {
        state.cancellations.iter().any(|c| {
            c.purchase_id == id && c.remaining.iter().map(|i| i.amount).sum::<i64>() == 799
        })
    })
    .await;
}

#[tokio::test]
async fn r20_whole_refund_releases_room_at_once() {
    let app = spawn_service().await;
    app.open_facility("E1", 1_000, 3).await;
    let bought = app
        .buy("E1", SHOP, PurchaseKind::Credit, 500, 0, "k")
        .await
        .unwrap();
    let id = bought.purchase.unwrap().purchase_id;
    app.refund(SHOP, &id, 200).await.unwrap();

    let refunded = app.refund(SHOP, &id, 300).await.unwrap();
    let again = app.refund(SHOP, &id, 1).await;

    assert!(refunded.instalments.is_empty());
    assert_eq!(app.room("E1").await, (1_000, 3_000));
    assert_eq!(problem(again).code, "refund_amount_out_of_range");
    app.wait_for_peers(|state| {
        state
            .cancellations
            .iter()
            .any(|c| c.purchase_id == id && c.remaining.is_empty())
    })
    .await;
}

#[tokio::test]
async fn r20_refund_window_closes_at_8th_of_first_deduction_month() {
    let app = spawn_service().await;
    app.open_facility("E1", 1_000, 3).await;
    let bought = app
        .buy("E1", SHOP, PurchaseKind::Instalment, 300, 3, "k")
        .await
        .unwrap();
    let id = bought.purchase.unwrap().purchase_id;
    let deadline = release_instant(JalaliPeriod::parse("1405-03").unwrap());

    app.set_clock(deadline - Duration::minutes(1));
    let before = app.refund(SHOP, &id, 1).await;
    app.set_clock(deadline);
    let at = app.refund(SHOP, &id, 1).await;

    assert!(before.is_ok());
    assert_eq!(problem(at).code, "refund_window_closed");
}

#[tokio::test]
async fn r20_only_the_purchase_merchant_refunds() {
    let app = spawn_service().await;
    app.open_facility("E1", 1_000, 3).await;
    let bought = app
        .buy("E1", SHOP, PurchaseKind::Credit, 300, 0, "k")
        .await
        .unwrap();
    let id = bought.purchase.unwrap().purchase_id;

    let other = app.refund(CREDIT_SHOP, &id, 1).await;
    let unknown = app.refund(SHOP, "no-such-purchase", 1).await;
    let zero = app.refund(SHOP, &id, 0).await;

    assert_eq!(problem(other).code, "purchase_not_found");
    assert_eq!(problem(unknown).code, "purchase_not_found");
    assert_eq!(problem(zero).code, "refund_amount_out_of_range");
}
