//! End-to-end tests of the settlement service through the gateway: an instalment purchase
//! appears on the deduction list, remittances settle it month by month, and after the last
//! one the instalment room is back in the balance (R18, R22-R24).

use serde_json::{Value, json};
use tavana_e2e::world::{self, ORGANIZATION};
use tavana_e2e::{national_id, spawn_app};

const M: i64 = 50_000_000;
const N: u32 = 12;

#[tokio::test]
async fn r22_r23_r24_a_purchase_is_deducted_remitted_settled_and_its_room_returns() {
    let app = spawn_app().await;
    let world = world::seed(&app).await;
    let merchant = world::approved_merchant(&app, &world, "Ketab Shop").await;
    let applicant = world.applicant.clone();
    world::open_facility(&app, &world, &applicant, &world.guarantor, M, N).await;

    let purchase = app
        .post_idempotent(
            "/v1/me/purchases",
            applicant.auth(),
            "instalment-1",
            json!({ "merchant_id": merchant.id, "kind": "instalment", "amount": 12_000_001, "months": 3 }),
        )
        .await;
    assert_eq!(purchase.status, 201, "{purchase:?}");
    let schedule: Vec<(String, i64)> = purchase.body["instalments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["period"].as_str().unwrap().to_owned(),
                i["amount"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(schedule.len(), 3);

    // R24: the schedule reached settlement through credit's outbox before the purchase
    // answered (read your writes).
    let page = app
        .get("/v1/me/instalments?state=unsettled", applicant.auth())
        .await;
    assert_eq!(
        page.body["items"].as_array().map(Vec::len),
        Some(3),
        "{page:?}"
    );
    let unsettled = page.body;
    assert_eq!(unsettled["items"][0]["merchant_name"], "Ketab Shop");
    assert_eq!(unsettled["items"][0]["state"], "unsettled");
    let bad_state = app
        .get("/v1/me/instalments?state=paid", applicant.auth())
        .await;
    assert_eq!(bad_state.status, 400);

    // R22: the deduction list of the first period shows the purchase, as JSON and as CSV.
    let (first_period, first_amount) = schedule[0].clone();
    let deductions_path = format!("/v1/organizations/{ORGANIZATION}/deductions/{first_period}");
    let list = app.get(&deductions_path, world.contracts.auth()).await;
    assert_eq!(list.status, 200, "{list:?}");
    assert_eq!(list.body["organization_id"], ORGANIZATION);
    assert_eq!(list.body["period"], first_period.as_str());
    assert_eq!(list.body["total"], first_amount);
    let row = &list.body["items"][0];
    assert_eq!(row["national_id"], applicant.national_id.as_str());
    assert_eq!(row["total"], first_amount);
    assert_eq!(row["instalments"][0]["purchase_id"], purchase.body["id"]);
    let csv = app
        .send(
            app.client
                .get(app.url(&deductions_path))
                .bearer_auth(&world.support.token)
                .header("accept", "text/csv"),
        )
        .await;
    assert_eq!(csv.status, 200);
    assert!(
        csv.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    let csv_lines: Vec<&str> = csv.text.lines().collect();
    assert_eq!(csv_lines[0], "national_id,full_name,total,instalment_ids");
    assert!(csv_lines[1].starts_with(&format!("{},", applicant.national_id)));
    assert_eq!(
        csv_lines.last().unwrap(),
        &format!("total,,{first_amount},1")
    );
    let forbidden = app.get(&deductions_path, applicant.auth()).await;
    assert_eq!(forbidden.status, 403);

    // R23: support records the first month's remittance; a stranger's line is kept.
    let body = json!({
        "organization_id": ORGANIZATION,
        "period": first_period,
        "bank_reference": "BR-1",
        "lines": [
            { "national_id": applicant.national_id, "amount": first_amount },
            { "national_id": national_id(999), "amount": 1_000 },
        ],
    });
    let remitted = app
        .post("/v1/remittances", world.support.auth(), body.clone())
        .await;
    assert_eq!(remitted.status, 200, "{remitted:?}");
    assert_eq!(remitted.body["settled_instalments"], 1);
    assert_eq!(remitted.body["settled_amount"], first_amount);
    assert_eq!(remitted.body["unmatched"][0]["line"], 2);
    assert_eq!(remitted.body["unmatched"][0]["code"], "unknown_employee");
    let replay = app
        .post("/v1/remittances", world.support.auth(), body.clone())
        .await;
    assert_eq!(replay.status, 200);
    assert_eq!(replay.body["remittance_id"], remitted.body["remittance_id"]);
    assert_eq!(replay.body["replayed"], true);
    let not_support = app
        .post("/v1/remittances", world.contracts.auth(), body)
        .await;
    assert_eq!(not_support.status, 403);
    let stored_path = format!(
        "/v1/remittances/{}",
        remitted.body["remittance_id"].as_str().unwrap()
    );
    let stored = app.get(&stored_path, world.support.auth()).await;
    assert_eq!(stored.status, 200);
    assert_eq!(stored.body["unmatched"], remitted.body["unmatched"]);
    assert_eq!(app.get(&stored_path, applicant.auth()).await.status, 403);

    let settled = app
        .get("/v1/me/instalments?state=settled", applicant.auth())
        .await;
    assert_eq!(settled.body["items"].as_array().unwrap().len(), 1);
    assert!(settled.body["items"][0]["settled_at"].is_string());
    let balance = app.get("/v1/me/balance", applicant.auth()).await;
    assert_eq!(
        balance.body["available_total"],
        M * i64::from(N) - 12_000_001
    );

    // The second month as JSON, the last one as a CSV upload.
    let second = app
        .post(
            "/v1/remittances",
            world.support.auth(),
            json!({
                "organization_id": ORGANIZATION,
                "period": schedule[1].0,
                "bank_reference": "BR-2",
                "lines": [{ "national_id": applicant.national_id, "amount": schedule[1].1 }],
            }),
        )
        .await;
    assert_eq!(second.body["settled_instalments"], 1, "{second:?}");
    let upload = app
        .send(
            app.client
                .post(app.url(&format!(
                    "/v1/remittances?organization_id={ORGANIZATION}&period={}&bank_reference=BR-3",
                    schedule[2].0
                )))
                .bearer_auth(&world.support.token)
                .header("content-type", "text/csv")
                .body(format!(
                    "national_id,amount\n{},{}\n{},not-a-number\n",
                    applicant.national_id, schedule[2].1, applicant.national_id
                )),
        )
        .await;
    assert_eq!(upload.status, 200, "{upload:?}");
    assert_eq!(upload.body["settled_instalments"], 1);
    assert_eq!(
        upload.body["unmatched"][0],
        json!({
            "line": 3,
            "national_id": applicant.national_id,
            "amount": 0,
            "code": "amount_invalid",
        })
    );

    // R24: the purchase is finished; R18: its room comes back through the outbox to credit.
    let finished = app
        .get("/v1/me/instalments?state=finished", applicant.auth())
        .await;
    assert_eq!(finished.body["items"].as_array().unwrap().len(), 3);
    let unsettled = app
        .get("/v1/me/instalments?state=unsettled", applicant.auth())
        .await;
    assert_eq!(unsettled.body["items"], json!([]));
    // Settlement told credit before the last remittance answered (read your writes). The
    // last period was remitted early, before it began: the room comes back on its 8th at
    // 00:00 Tehran and not before (R16: a purchase made now would be deducted in that
    // already remitted period on top of this one; R18).
    let early: Value = app.get("/v1/me/balance", applicant.auth()).await.body;
    assert_eq!(early["available_total"], M * i64::from(N) - 12_000_001);
    assert_eq!(early["available_monthly"], M - 4_000_001);
    let last = tavana_kit::jalali::JalaliPeriod::parse(&schedule[2].0).unwrap();
    let release = tavana_kit::jalali::release_instant(last);
    assert_eq!(
        early["next_release_at"]
            .as_str()
            .map(|at| at.parse::<chrono::DateTime<chrono::Utc>>().unwrap()),
        Some(release),
        "{early}"
    );
    app.set_clock(&release.to_rfc3339()).await;
    let balance: Value = app.get("/v1/me/balance", applicant.auth()).await.body;
    assert_eq!(balance["available_total"], M * i64::from(N));
    assert_eq!(balance["available_monthly"], M);
}

/// One employee's money lifecycle with the test clock moved by `offset` from the real one
/// (business time, API.md): a 1-rial credit purchase, 70 over 3 months (24, 23, 23) and 100
/// over 3 months refunded 30 (R15, R20), every period remitted early and exactly (R22-R24),
/// the room back on the 8th of the last period (R16-R18), and nothing to reconcile (R31).
/// Every effect is asserted as soon as the call that causes it answers (read your writes).
async fn lifecycle_with_the_test_clock_moved_by(offset: chrono::Duration) {
    // Arrange
    let app = spawn_app().await;
    app.set_clock(&(chrono::Utc::now() + offset).to_rfc3339())
        .await;
    let world = world::seed(&app).await;
    let merchant = world::approved_merchant(&app, &world, "Ketab Shop").await;
    let applicant = world.applicant.clone();
    world::open_facility(&app, &world, &applicant, &world.guarantor, M, N).await;
    let buy = |key: &'static str, body: Value| {
        let app = &app;
        let applicant = &applicant;
        let merchant_id = merchant.id.clone();
        async move {
            let mut body = body;
            body["merchant_id"] = json!(merchant_id);
            let bought = app
                .post_idempotent("/v1/me/purchases", applicant.auth(), key, body)
                .await;
            assert_eq!(bought.status, 201, "{bought:?}");
            bought.body
        }
    };

    // Act: buy, refund, remit every period.
    let one = buy("one-rial", json!({ "kind": "credit", "amount": 1 })).await;
    let seventy = buy(
        "seventy",
        json!({ "kind": "instalment", "amount": 70, "months": 3 }),
    )
    .await;
    let hundred = buy(
        "hundred",
        json!({ "kind": "instalment", "amount": 100, "months": 3 }),
    )
    .await;
    let refunded = app
        .post_idempotent(
            &format!(
                "/v1/merchant/purchases/{}/refund",
                hundred["id"].as_str().unwrap()
            ),
            Some(&merchant.api_key),
            "hundred-30",
            json!({ "amount": 30 }),
        )
        .await;
    let periods: Vec<String> = seventy["instalments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["period"].as_str().unwrap().to_owned())
        .collect();
    let unsettled = app
        .get(
            "/v1/me/instalments?state=unsettled&page_size=100",
            applicant.auth(),
        )
        .await;
    let mut remitted = Vec::new();
    for (n, (period, amount)) in periods.iter().zip([49, 46, 46]).enumerate() {
        let answer = app
            .post(
                "/v1/remittances",
                world.support.auth(),
                json!({
                    "organization_id": ORGANIZATION,
                    "period": period,
                    "bank_reference": format!("BR-LIFE-{n}"),
                    "lines": [{ "national_id": applicant.national_id, "amount": amount }],
                }),
            )
            .await;
        assert_eq!(answer.status, 200, "{answer:?}");
        remitted.push(answer.body["settled_instalments"].as_i64());
    }
    let finished = app
        .get(
            "/v1/me/instalments?state=finished&page_size=100",
            applicant.auth(),
        )
        .await;
    let early: Value = app.get("/v1/me/balance", applicant.auth()).await.body;
    let last = tavana_kit::jalali::JalaliPeriod::parse(&periods[2]).unwrap();
    let release = tavana_kit::jalali::release_instant(last);
    app.set_clock(&release.to_rfc3339()).await;
    let after: Value = app.get("/v1/me/balance", applicant.auth()).await.body;
    let report = app
        .get("/v1/admin/reconciliation", world.support.auth())
        .await;

    // Assert
    assert_eq!(one["instalments"][0]["amount"], 1, "{one}");
    assert_eq!(one["instalments"][0]["period"], periods[0].as_str());
    let amounts = |purchase: &Value| -> Vec<i64> {
        purchase["instalments"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["amount"].as_i64().unwrap())
            .collect()
    };
    assert_eq!(amounts(&seventy), [24, 23, 23]);
    assert_eq!(amounts(&hundred), [34, 33, 33]);
    assert_eq!(refunded.status, 200, "{refunded:?}");
    assert_eq!(amounts(&refunded.body), [24, 23, 23]);
    let mut listed: Vec<i64> = unsettled.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["amount"].as_i64().unwrap())
        .collect();
    listed.sort_unstable();
    assert_eq!(listed, [1, 23, 23, 23, 23, 24, 24], "{unsettled:?}");
    assert_eq!(remitted, [Some(3), Some(2), Some(2)]);
    assert_eq!(
        finished.body["items"].as_array().map(Vec::len),
        Some(7),
        "{finished:?}"
    );
    // Remitted before the last period began: held until its 8th (R16, R18).
    assert_eq!(early["available_monthly"], M - 1 - 24 - 24, "{early}");
    assert_eq!(after["available_monthly"], M, "{after}");
    assert_eq!(after["available_total"], M * i64::from(N), "{after}");
    assert_eq!(report.status, 200, "{report:?}");
    assert_eq!(report.body["checked_purchases"], 3, "{report:?}");
    assert_eq!(report.body["mismatches"], json!([]), "{report:?}");
}

#[tokio::test]
async fn r15_r24_r31_lifecycle_with_the_test_clock_a_month_in_the_past() {
    lifecycle_with_the_test_clock_moved_by(-chrono::Duration::days(31)).await;
}

#[tokio::test]
async fn r15_r24_r31_lifecycle_with_the_test_clock_a_month_in_the_future() {
    lifecycle_with_the_test_clock_moved_by(chrono::Duration::days(31)).await;
}
