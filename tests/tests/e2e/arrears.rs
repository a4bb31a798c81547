//! End-to-end tests of arrears through the gateway: a missed month no longer blocks an
//! employee for good (R23), closing a period makes what it left unsettled overdue, re-aged
//! to a later period within M, and blocks the facility until it is paid (R29); support
//! works the unmatched-lines queue (R23).

use serde_json::{Value, json};
use tavana_e2e::world::{self, ORGANIZATION, Person, REGION};
use tavana_e2e::{TestApp, national_id, spawn_app};

const M: i64 = 50_000_000;
const N: u32 = 12;

/// Buys `amount` over `months` and returns the schedule's periods; settlement lists the
/// instalments as soon as the purchase answers (read your writes).
async fn buy(
    app: &TestApp,
    buyer: &Person,
    merchant_id: &str,
    key: &str,
    amount: i64,
    months: u32,
) -> Vec<String> {
    let purchase = app
        .post_idempotent(
            "/v1/me/purchases",
            buyer.auth(),
            key,
            json!({ "merchant_id": merchant_id, "kind": "instalment", "amount": amount, "months": months }),
        )
        .await;
    assert_eq!(purchase.status, 201, "{purchase:?}");
    // Credit delivered the schedule to settlement before answering (read your writes).
    let page = app
        .get("/v1/me/instalments?state=unsettled", buyer.auth())
        .await;
    assert!(
        page.body["items"].as_array().map(Vec::len) >= Some(months as usize),
        "{page:?}"
    );
    purchase.body["instalments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["period"].as_str().unwrap().to_owned())
        .collect()
}

async fn remit(
    app: &TestApp,
    support: &Person,
    period: &str,
    reference: &str,
    lines: Value,
) -> Value {
    let answer = app
        .post(
            "/v1/remittances",
            support.auth(),
            json!({
                "organization_id": ORGANIZATION,
                "period": period,
                "bank_reference": reference,
                "lines": lines,
            }),
        )
        .await;
    assert_eq!(answer.status, 200, "{answer:?}");
    answer.body
}

#[tokio::test]
async fn r23_r29_one_missed_month_blocks_the_employee_only_until_it_is_paid_with_the_clock_a_month_back()
 {
    // Arrange: everyone logs in on the real clock; then the test clock goes a month back
    // (1405-08-10) and the applicant buys 300,000 over three months.
    let app = spawn_app().await;
    let world = world::seed(&app).await;
    let merchant = world::approved_merchant(&app, &world, "Ketab Shop").await;
    let applicant = world.applicant.clone();
    app.set_clock("2026-11-01T08:00:00Z").await;
    world::open_facility(&app, &world, &applicant, &world.guarantor, M, N).await;
    let periods = buy(&app, &applicant, &merchant.id, "arrears-1", 300_000, 3).await;
    assert_eq!(periods, ["1405-09", "1405-10", "1405-11"]);
    // The organization deducts nothing in 1405-09; 1405-10 is remitted exactly.
    let line = json!([{ "national_id": applicant.national_id, "amount": 100_000 }]);

    // Act: R23, the exact line of 1405-10 settles although 1405-09 was missed.
    let october = remit(&app, &world.support, "1405-10", "BR-10", line.clone()).await;

    // Assert
    assert_eq!(october["settled_instalments"], 1, "{october}");
    assert_eq!(october["unmatched"], json!([]));

    // Act: R29, support closes 1405-09 once its deductions are due, from its 8th (the
    // clock is on 1405-09-08 now; R20: before, a refund could still replace them).
    app.set_clock("2026-11-29T08:00:00Z").await;
    let close_path = format!("/v1/organizations/{ORGANIZATION}/periods/1405-09/close");
    let not_support = app.post(&close_path, world.finance.auth(), json!({})).await;
    let closed = app.post(&close_path, world.support.auth(), json!({})).await;
    let again = app.post(&close_path, world.support.auth(), json!({})).await;

    // Assert: one overdue instalment, re-aged past the remitted 1405-10 into 1405-11.
    assert_eq!(not_support.status, 403);
    assert_eq!(closed.status, 200, "{closed:?}");
    assert_eq!(closed.body["overdue_instalments"], 1);
    assert_eq!(closed.body["overdue_amount"], 100_000);
    assert_eq!(again.status, 200);
    assert_eq!(again.body["overdue_amount"], closed.body["overdue_amount"]);
    assert_eq!(again.body["closed_at"], closed.body["closed_at"]);
    let overdue = app
        .get("/v1/me/instalments?state=overdue", applicant.auth())
        .await;
    assert_eq!(overdue.body["items"][0]["period"], "1405-11", "{overdue:?}");
    assert_eq!(overdue.body["items"][0]["due_period"], "1405-09");
    let list = app
        .get(
            &format!("/v1/organizations/{ORGANIZATION}/deductions/1405-11"),
            world.support.auth(),
        )
        .await;
    assert_eq!(list.body["total"], 200_000);
    let for_support = app.get("/v1/overdue", world.support.auth()).await;
    assert_eq!(for_support.status, 200);
    assert_eq!(
        for_support.body["items"][0]["employee"]["national_id"],
        applicant.national_id.as_str()
    );
    assert_eq!(for_support.body["items"][0]["due_period"], "1405-09");
    let for_finance = app.get("/v1/overdue", world.finance.auth()).await;
    assert_eq!(for_finance.body["items"].as_array().unwrap().len(), 1);
    let other_region = app.get("/v1/overdue", world.other_finance.auth()).await;
    assert_eq!(other_region.body["items"], json!([]));
    assert_eq!(
        app.get(
            &format!("/v1/overdue?region_code={}", REGION.to_lowercase()),
            world.finance.auth()
        )
        .await
        .status,
        200
    );

    // The facility is blocked at once: settlement told credit before the close answered
    // (read your writes).
    let balance = app.get("/v1/me/balance", applicant.auth()).await.body;
    assert_eq!(balance["status"], "overdue", "{balance}");
    assert_eq!(balance["overdue_amount"], 100_000);
    let refused = app
        .post_idempotent(
            "/v1/me/purchases",
            applicant.auth(),
            "arrears-2",
            json!({ "merchant_id": merchant.id, "kind": "credit", "amount": 1_000 }),
        )
        .await;
    assert_eq!(refused.status, 422, "{refused:?}");
    assert_eq!(refused.body["code"], "facility_overdue");
    // The employee and the guarantor are told by SMS (R29). An SMS is sent by a provider
    // adapter from the outbox, with retry (R28): the contract makes it eventual, so this
    // waits for the dev provider's inbox.
    for person in [&applicant, &world.guarantor] {
        app.eventually(|| async {
            let inbox = app
                .get(&format!("/v1/dev/sms/{}", person.mobile), None)
                .await;
            inbox.body["items"]
                .as_array()?
                .iter()
                .any(|sms| {
                    sms["template"]
                        .as_str()
                        .is_some_and(|t| t.starts_with("overdue"))
                })
                .then_some(())
        })
        .await;
    }

    // Act: 1405-11's remittance pays what its list asks, arrears included.
    let november = remit(
        &app,
        &world.support,
        "1405-11",
        "BR-11",
        json!([{ "national_id": applicant.national_id, "amount": 200_000 }]),
    )
    .await;

    // Assert: nothing is overdue and the facility takes purchases again.
    assert_eq!(november["settled_instalments"], 2, "{november}");
    // Settlement told credit before the remittance answered (read your writes).
    let balance = app.get("/v1/me/balance", applicant.auth()).await.body;
    assert_eq!(balance["status"], "active", "{balance}");
    assert_eq!(balance["overdue_amount"], 0);
    let accepted = app
        .post_idempotent(
            "/v1/me/purchases",
            applicant.auth(),
            "arrears-3",
            json!({ "merchant_id": merchant.id, "kind": "credit", "amount": 1_000 }),
        )
        .await;
    assert_eq!(accepted.status, 201, "{accepted:?}");
}

#[tokio::test]
async fn r23_support_assigns_a_kept_line_to_the_employee_it_was_meant_for() {
    // Arrange: a line with a stranger's national ID instead of the applicant's.
    let app = spawn_app().await;
    let world = world::seed(&app).await;
    let merchant = world::approved_merchant(&app, &world, "Ketab Shop").await;
    let applicant = world.applicant.clone();
    world::open_facility(&app, &world, &applicant, &world.guarantor, M, N).await;
    let periods = buy(&app, &applicant, &merchant.id, "queue-1", 90_001, 2).await;
    let first = periods[0].clone();
    let remitted = remit(
        &app,
        &world.support,
        &first,
        "BR-Q",
        json!([
            { "national_id": national_id(999), "amount": 45_001 },
            { "national_id": national_id(998), "amount": 5 },
        ]),
    )
    .await;
    assert_eq!(remitted["settled_instalments"], 0);

    // Act
    let open = app
        .get(
            &format!("/v1/unmatched-lines?organization_id={ORGANIZATION}&status=open"),
            world.support.auth(),
        )
        .await;
    let forbidden = app.get("/v1/unmatched-lines", world.contracts.auth()).await;
    let ids: Vec<String> = open.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|line| line["id"].as_str().unwrap().to_owned())
        .collect();
    let assigned = app
        .post(
            &format!("/v1/unmatched-lines/{}/resolve", ids[0]),
            world.support.auth(),
            json!({ "national_id": applicant.national_id, "note": "bank typo" }),
        )
        .await;
    let short = app
        .post(
            &format!("/v1/unmatched-lines/{}/resolve", ids[1]),
            world.support.auth(),
            json!({ "national_id": applicant.national_id, "period": periods[1], "note": "?" }),
        )
        .await;
    let returned = app
        .post(
            &format!("/v1/unmatched-lines/{}/resolve", ids[1]),
            world.support.auth(),
            json!({ "returned_to_organization": true, "note": "sent back" }),
        )
        .await;
    let twice = app
        .post(
            &format!("/v1/unmatched-lines/{}/resolve", ids[1]),
            world.support.auth(),
            json!({ "returned_to_organization": true, "note": "again" }),
        )
        .await;

    // Assert
    assert_eq!(open.status, 200, "{open:?}");
    assert_eq!(ids.len(), 2);
    assert_eq!(forbidden.status, 403);
    assert_eq!(assigned.status, 200, "{assigned:?}");
    assert_eq!(assigned.body["status"], "resolved");
    assert_eq!(assigned.body["settled_amount"], 45_001);
    assert_eq!(short.status, 422);
    assert_eq!(short.body["code"], "amount_short");
    assert_eq!(returned.body["resolution"], "returned");
    assert_eq!(twice.status, 409);
    let settled = app
        .get("/v1/me/instalments?state=settled", applicant.auth())
        .await;
    assert_eq!(settled.body["items"][0]["period"], first.as_str());
    let resolved = app
        .get("/v1/unmatched-lines?status=resolved", world.support.auth())
        .await;
    assert_eq!(resolved.body["items"].as_array().unwrap().len(), 2);
}
