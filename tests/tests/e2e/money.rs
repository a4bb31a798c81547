//! End-to-end tests of the money lifecycle through the gateway (issue 15): no zero-rial
//! instalment (R15), refunds with an Idempotency-Key and versioned schedules (R19, R20),
//! closing and suspending facilities (R30), and reconciliation over HTTP and with
//! `tavana admin reconcile` (R31).

use serde_json::{Value, json};
use tavana_e2e::world::{self, Merchant, Person, World};
use tavana_e2e::{TestApp, spawn_app};

const M: i64 = 50_000_000;
const N: u32 = 12;

async fn buy(app: &TestApp, who: &Person, merchant: &Merchant, key: &str, body: Value) -> Value {
    let mut body = body;
    body["merchant_id"] = json!(merchant.id);
    let bought = app
        .post_idempotent("/v1/me/purchases", who.auth(), key, body)
        .await;
    assert_eq!(bought.status, 201, "{bought:?}");
    bought.body
}

/// Asserts that settlement shows the employee's unsettled instalments with these amounts
/// (in any order): credit delivered its schedule messages before its purchases and refunds
/// answered (read your writes).
async fn assert_unsettled(app: &TestApp, who: &Person, expected: &[i64]) {
    let mut expected = expected.to_vec();
    expected.sort_unstable();
    let page = app
        .get(
            "/v1/me/instalments?state=unsettled&page_size=100",
            who.auth(),
        )
        .await;
    let mut amounts: Vec<i64> = page.body["items"]
        .as_array()
        .unwrap_or_else(|| panic!("{page:?}"))
        .iter()
        .map(|item| item["amount"].as_i64().unwrap_or_default())
        .collect();
    amounts.sort_unstable();
    assert_eq!(amounts, expected, "{page:?}");
}

/// Asserts that R31's reconciliation, over HTTP and from the command line, finds nothing.
async fn assert_reconciled(app: &TestApp, world: &World, purchases: u64) {
    // Credit delivered every schedule message before its calls answered (read your writes).
    let report = app
        .get("/v1/admin/reconciliation", world.support.auth())
        .await;
    assert_eq!(report.status, 200, "{report:?}");
    assert_eq!(report.body["checked_purchases"], purchases, "{report:?}");
    assert_eq!(report.body["mismatches"], json!([]), "{report:?}");
    let cli = app.reconcile().await;
    assert_eq!(cli.checked_purchases, purchases);
    assert!(cli.mismatches.is_empty(), "{cli:?}");
    // Both sides' digests agreed, so no range was read entry by entry.
    assert_eq!(cli.ranges_read, 0, "{cli:?}");
}

#[tokio::test]
async fn r15_two_rial_over_three_months_is_refused_with_amount_below_months() {
    let app = spawn_app().await;
    let world = world::seed(&app).await;
    let merchant = world::approved_merchant(&app, &world, "Ketab Shop").await;
    let applicant = world.applicant.clone();
    world::open_facility(&app, &world, &applicant, &world.guarantor, M, N).await;

    let refused = app
        .post_idempotent(
            "/v1/me/purchases",
            applicant.auth(),
            "tiny-1",
            json!({ "merchant_id": merchant.id, "kind": "instalment", "amount": 2, "months": 3 }),
        )
        .await;

    assert_eq!(refused.status, 422, "{refused:?}");
    assert_eq!(refused.code(), "amount_below_months");
    let balance = app.get("/v1/me/balance", applicant.auth()).await;
    assert_eq!(balance.body["available_monthly"], M);
}

#[tokio::test]
async fn r15_r20_r31_refunds_leave_valid_schedules_applied_once_and_reconciled() {
    let app = spawn_app().await;
    let world = world::seed(&app).await;
    let merchant = world::approved_merchant(&app, &world, "Ketab Shop").await;
    let applicant = world.applicant.clone();
    world::open_facility(&app, &world, &applicant, &world.guarantor, M, N).await;
    let million = buy(
        &app,
        &applicant,
        &merchant,
        "million",
        json!({ "kind": "instalment", "amount": 1_000_000, "months": 12 }),
    )
    .await;
    let million_id = million["id"].as_str().unwrap().to_owned();
    let hundred = buy(
        &app,
        &applicant,
        &merchant,
        "hundred",
        json!({ "kind": "instalment", "amount": 100, "months": 3 }),
    )
    .await;
    let hundred_id = hundred["id"].as_str().unwrap().to_owned();
    let refund = |id: &str, key: Option<&str>, amount: i64| {
        let path = format!("/v1/merchant/purchases/{id}/refund");
        let app = &app;
        let api_key = merchant.api_key.clone();
        let key = key.map(str::to_owned);
        async move {
            let body = json!({ "amount": amount });
            match key {
                Some(key) => app.post_idempotent(&path, Some(&api_key), &key, body).await,
                None => app.post(&path, Some(&api_key), body).await,
            }
        }
    };

    // R20: a refund without an Idempotency-Key is refused; with one it is applied once.
    let missing = refund(&million_id, None, 999_995).await;
    let refunded = refund(&million_id, Some("r-1"), 999_995).await;
    let retried = refund(&million_id, Some("r-1"), 999_995).await;
    let reused = refund(&million_id, Some("r-1"), 1).await;
    // Two partial refunds of the other purchase: settlement ends on the latest schedule.
    let first = refund(&hundred_id, Some("h-1"), 10).await;
    let second = refund(&hundred_id, Some("h-2"), 20).await;

    assert_eq!(missing.status, 400, "{missing:?}");
    assert_eq!(missing.code(), "idempotency_key_missing");
    assert_eq!(refunded.status, 200, "{refunded:?}");
    // R15: 5 rial left of 1,000,000 over 12 months are five instalments of 1, none of 0.
    let amounts: Vec<i64> = refunded.body["instalments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["amount"].as_i64().unwrap())
        .collect();
    assert_eq!(amounts, [1; 5]);
    assert_eq!(retried.status, 200);
    assert_eq!(retried.body, refunded.body);
    assert_eq!(reused.status, 422, "{reused:?}");
    assert_eq!(reused.code(), "idempotency_key_reused");
    assert_eq!(first.status, 200, "{first:?}");
    assert_eq!(second.status, 200, "{second:?}");
    assert_eq!(second.body["refunded_amount"], 30);
    // Settlement agrees: 5 x 1 and 70 over 3 months (24, 23, 23).
    assert_unsettled(&app, &applicant, &[1, 1, 1, 1, 1, 24, 23, 23]).await;
    assert_reconciled(&app, &world, 2).await;
}

#[tokio::test]
async fn r30_close_with_debt_is_409_without_closes_and_the_guarantee_is_released() {
    let app = spawn_app().await;
    let world = world::seed(&app).await;
    let merchant = world::approved_merchant(&app, &world, "Ketab Shop").await;
    let applicant = world.applicant.clone();
    world::open_facility(&app, &world, &applicant, &world.guarantor, M, N).await;
    let bought = buy(
        &app,
        &applicant,
        &merchant,
        "owed",
        json!({ "kind": "instalment", "amount": 300, "months": 3 }),
    )
    .await;
    let id = bought["id"].as_str().unwrap().to_owned();

    let with_debt = app
        .post("/v1/me/facility/close", applicant.auth(), json!({}))
        .await;
    let by_support = app
        .post(
            &format!("/v1/support/facilities/{}/close", applicant.national_id),
            world.support.auth(),
            json!({ "reason": "employment ended" }),
        )
        .await;
    let refunded = app
        .post_idempotent(
            &format!("/v1/merchant/purchases/{id}/refund"),
            Some(&merchant.api_key),
            "whole",
            json!({ "amount": 300 }),
        )
        .await;
    let closed = app
        .post("/v1/me/facility/close", applicant.auth(), json!({}))
        .await;
    let balance = app.get("/v1/me/balance", applicant.auth()).await;
    let purchase_after = app
        .post_idempotent(
            "/v1/me/purchases",
            applicant.auth(),
            "after-close",
            json!({ "merchant_id": merchant.id, "kind": "credit", "amount": 10 }),
        )
        .await;

    assert_eq!(with_debt.status, 409, "{with_debt:?}");
    assert_eq!(with_debt.code(), "facility_has_debt");
    assert_eq!(by_support.status, 409, "{by_support:?}");
    assert_eq!(refunded.status, 200, "{refunded:?}");
    assert_eq!(closed.status, 200, "{closed:?}");
    assert_eq!(closed.body["status"], "closed");
    assert_eq!(balance.body["status"], "closed");
    assert_eq!(purchase_after.status, 422, "{purchase_after:?}");
    assert_eq!(purchase_after.code(), "facility_closed");
    // R13, R9: the guarantee is released, so the same guarantor guarantees a new request
    // of the same applicant, which finance approves into a new facility.
    // Credit delivered the release before the close answered (read your writes, R30).
    let approved = app
        .post(
            "/v1/me/credit-requests",
            applicant.auth(),
            json!({
                "guarantor_national_id": world.guarantor.national_id,
                "monthly_credit": M,
                "instalment_months": N,
            }),
        )
        .await;
    assert_eq!(approved.status, 201, "{approved:?}");
    assert_eq!(approved.body["status"], "pending_guarantor");
    assert_reconciled(&app, &world, 1).await;
}

#[tokio::test]
async fn r30_support_suspends_purchases_stop_and_resume_brings_them_back() {
    let app = spawn_app().await;
    let world = world::seed(&app).await;
    let merchant = world::approved_merchant(&app, &world, "Ketab Shop").await;
    let applicant = world.applicant.clone();
    world::open_facility(&app, &world, &applicant, &world.guarantor, M, N).await;
    let path = |action: &str| format!("/v1/support/facilities/{}/{action}", applicant.national_id);

    let by_employee = app
        .post(&path("suspend"), applicant.auth(), json!({ "reason": "x" }))
        .await;
    let suspended = app
        .post(
            &path("suspend"),
            world.support.auth(),
            json!({ "reason": "audit" }),
        )
        .await;
    let balance = app.get("/v1/me/balance", applicant.auth()).await;
    let refused = app
        .post_idempotent(
            "/v1/me/purchases",
            applicant.auth(),
            "while-suspended",
            json!({ "merchant_id": merchant.id, "kind": "credit", "amount": 10 }),
        )
        .await;
    let resumed = app
        .post(
            &path("resume"),
            world.support.auth(),
            json!({ "reason": "cleared" }),
        )
        .await;

    assert_eq!(by_employee.status, 403, "{by_employee:?}");
    assert_eq!(suspended.status, 200, "{suspended:?}");
    assert_eq!(suspended.body["status"], "suspended");
    assert_eq!(balance.body["status"], "suspended");
    assert_eq!(refused.status, 422, "{refused:?}");
    assert_eq!(refused.code(), "facility_suspended");
    assert_eq!(resumed.body["status"], "active");
    buy(
        &app,
        &applicant,
        &merchant,
        "after-resume",
        json!({ "kind": "credit", "amount": 10 }),
    )
    .await;
}
