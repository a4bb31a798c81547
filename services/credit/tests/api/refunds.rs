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

#[tokio::test]
async fn r20_a_merchant_refund_needs_an_idempotency_key() {
    let app = spawn_service().await;
    app.open_facility("E1", 1_000, 3).await;
    let bought = app
        .buy("E1", SHOP, PurchaseKind::Credit, 300, 0, "k")
        .await
        .unwrap();
    let id = bought.purchase.unwrap().purchase_id;

    let missing = app.refund_with_key(SHOP, &id, 1, "  ").await;

    let missing = problem(missing);
    assert_eq!(missing.code, "idempotency_key_missing");
    assert_eq!(missing.kind, tavana_kit::error::ErrorKind::InvalidArgument);
}

#[tokio::test]
async fn r19_r20_a_retried_refund_answers_the_first_answer_and_refunds_once() {
    let app = spawn_service().await;
    app.open_facility("E1", 1_000, 3).await;
    let bought = app
        .buy("E1", SHOP, PurchaseKind::Instalment, 300, 3, "k")
        .await
        .unwrap();
    let id = bought.purchase.unwrap().purchase_id;

    let first = app
        .refund_with_key(SHOP, &id, 100, "refund-1")
        .await
        .unwrap();
    let retried = app
        .refund_with_key(SHOP, &id, 100, "refund-1")
        .await
        .unwrap();
    let other_body = app.refund_with_key(SHOP, &id, 50, "refund-1").await;
    let second = app
        .refund_with_key(SHOP, &id, 50, "refund-2")
        .await
        .unwrap();

    assert_eq!(first, retried);
    assert_eq!(first.refunded_amount, 100);
    assert_eq!(problem(other_body).code, "idempotency_key_reused");
    assert_eq!(second.refunded_amount, 150);
}

#[tokio::test]
async fn r20_every_schedule_message_carries_the_purchase_schedule_version() {
    let app = spawn_service().await;
    app.open_facility("E1", 1_000, 3).await;
    let bought = app
        .buy("E1", SHOP, PurchaseKind::Instalment, 300, 3, "k")
        .await
        .unwrap();
    let id = bought.purchase.unwrap().purchase_id;

    app.refund(SHOP, &id, 100).await.unwrap();
    app.refund(SHOP, &id, 50).await.unwrap();

    app.wait_for_peers(|state| {
        let recorded = state
            .schedules
            .iter()
            .any(|s| s.purchase_id == id && s.version == 1);
        let mut versions: Vec<(u32, i64)> = state
            .cancellations
            .iter()
            .filter(|c| c.purchase_id == id)
            .map(|c| (c.version, c.remaining.iter().map(|i| i.amount).sum()))
            .collect();
        versions.sort_unstable();
        recorded && versions == [(2, 200), (3, 150)]
    })
    .await;
}

#[tokio::test]
async fn r15_r20_a_refund_leaving_fewer_rial_than_months_spreads_them_one_a_month() {
    let app = spawn_service().await;
    app.open_facility("E1", 1_000_000, 12).await;
    let bought = app
        .buy("E1", SHOP, PurchaseKind::Instalment, 1_000_000, 12, "k")
        .await
        .unwrap();
    let id = bought.purchase.unwrap().purchase_id;

    let refunded = app.refund(SHOP, &id, 999_995).await.unwrap();

    let amounts: Vec<i64> = refunded.instalments.iter().map(|i| i.amount).collect();
    assert_eq!(amounts, [1; 5]);
    assert_eq!(app.room("E1").await, (1_000_000 - 1, 12_000_000 - 5));
}

#[tokio::test]
async fn r20_once_a_remittance_settled_an_instalment_the_purchase_is_refunded_no_more() {
    let app = spawn_service().await;
    app.open_facility("E1", 1_000, 3).await;
    let bought = app
        .buy("E1", SHOP, PurchaseKind::Instalment, 300, 3, "k")
        .await
        .unwrap();
    let id = bought.purchase.unwrap().purchase_id;
    let before = app.refund(SHOP, &id, 3).await;

    app.settle_partly(&[&id]).await.unwrap();
    let after = app.refund(SHOP, &id, 3).await;

    assert_eq!(before.unwrap().refunded_amount, 3);
    assert_eq!(problem(after).code, "refund_window_closed");
}
