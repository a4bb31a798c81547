//! End-to-end tests of the credit service through the gateway: a facility opened by an
//! approved request, credit and instalment purchases, the balance after each, the dev
//! clock moved past the 8th (R12, R14-R21).

use chrono::{DateTime, Duration, Utc};
use serde_json::json;
use tavana_e2e::spawn_app;
use tavana_e2e::world::{self};

const M: i64 = 50_000_000;
const N: u32 = 12;

#[tokio::test]
async fn r12_r16_r17_purchases_and_balance_through_the_gateway() {
    let app = spawn_app().await;
    let world = world::seed(&app).await;
    let merchant = world::approved_merchant(&app, &world, "Ketab Shop").await;
    let applicant = world.applicant.clone();

    // Before any approval: 404 no_facility.
    let none = app.get("/v1/me/balance", applicant.auth()).await;
    assert_eq!(none.status, 404, "{none:?}");
    assert_eq!(none.code(), "no_facility");

    world::open_facility(&app, &world, &applicant, &world.guarantor, M, N).await;
    let balance = app.get("/v1/me/balance", applicant.auth()).await;
    assert_eq!(balance.status, 200, "{balance:?}");
    assert_eq!(balance.body["status"], "active");
    assert_eq!(balance.body["monthly_credit"], M);
    assert_eq!(balance.body["max_instalments"], N);
    assert_eq!(balance.body["purchasing_power"], M * i64::from(N));
    assert_eq!(balance.body["available_monthly"], M);
    assert_eq!(balance.body["available_total"], M * i64::from(N));

    // A credit purchase: one deduction, next month.
    let credit = app
        .post_idempotent(
            "/v1/me/purchases",
            applicant.auth(),
            "credit-1",
            json!({ "merchant_id": merchant.id, "kind": "credit", "amount": 10_000_000 }),
        )
        .await;
    assert_eq!(credit.status, 201, "{credit:?}");
    assert_eq!(credit.body["kind"], "credit");
    assert_eq!(credit.body["months"], 1);
    assert_eq!(credit.body["instalments"].as_array().unwrap().len(), 1);
    let balance = app.get("/v1/me/balance", applicant.auth()).await;
    assert_eq!(balance.body["available_monthly"], M - 10_000_000);
    assert_eq!(balance.body["available_total"], M * 12 - 10_000_000);
    let release: DateTime<Utc> = balance.body["next_release_at"]
        .as_str()
        .expect("a credit purchase has a release instant")
        .parse()
        .unwrap();

    // R19: a replay answers the same 201 and body; another body is refused.
    let replay = app
        .post_idempotent(
            "/v1/me/purchases",
            applicant.auth(),
            "credit-1",
            json!({ "merchant_id": merchant.id, "kind": "credit", "amount": 10_000_000 }),
        )
        .await;
    assert_eq!(replay.status, 201);
    assert_eq!(replay.body, credit.body);
    let reused = app
        .post_idempotent(
            "/v1/me/purchases",
            applicant.auth(),
            "credit-1",
            json!({ "merchant_id": merchant.id, "kind": "credit", "amount": 9_000_000 }),
        )
        .await;
    assert_eq!(reused.status, 422);
    assert_eq!(reused.code(), "idempotency_key_reused");
    let missing = app
        .post(
            "/v1/me/purchases",
            applicant.auth(),
            json!({ "merchant_id": merchant.id, "kind": "credit", "amount": 1 }),
        )
        .await;
    assert_eq!(missing.status, 400);
    assert_eq!(missing.code(), "idempotency_key_missing");

    // An instalment purchase: 12_000_001 over 3, the larger first (R15).
    let instalment = app
        .post_idempotent(
            "/v1/me/purchases",
            applicant.auth(),
            "instalment-1",
            json!({ "merchant_id": merchant.id, "kind": "instalment", "amount": 12_000_001, "months": 3 }),
        )
        .await;
    assert_eq!(instalment.status, 201, "{instalment:?}");
    let amounts: Vec<i64> = instalment.body["instalments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["amount"].as_i64().unwrap())
        .collect();
    assert_eq!(amounts, vec![4_000_001, 4_000_000, 4_000_000]);
    let balance = app.get("/v1/me/balance", applicant.auth()).await;
    assert_eq!(
        balance.body["available_monthly"],
        M - 10_000_000 - 4_000_001
    );
    assert_eq!(balance.body["available_total"], M * 12 - 22_000_001);

    // R16: a refusal says what would fit, as top-level problem members.
    let too_much = app
        .post_idempotent(
            "/v1/me/purchases",
            applicant.auth(),
            "too-much",
            json!({ "merchant_id": merchant.id, "kind": "credit", "amount": M }),
        )
        .await;
    assert_eq!(too_much.status, 422, "{too_much:?}");
    assert_eq!(too_much.code(), "insufficient_credit");
    assert_eq!(too_much.body["available_monthly"], M - 14_000_001);
    assert_eq!(too_much.body["available_total"], M * 12 - 22_000_001);

    let listed = app.get("/v1/me/purchases", applicant.auth()).await;
    assert_eq!(listed.status, 200);
    assert_eq!(listed.body["items"].as_array().unwrap().len(), 2);

    // R17: past 00:00 Tehran on the 8th of next month the credit room is back; the
    // instalment purchase still holds until it is settled (R18).
    let now: DateTime<Utc> = app.get("/v1/dev/clock", None).await.body["now"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    app.advance_clock((release - now + Duration::minutes(1)).num_seconds())
        .await;
    let balance = app.get("/v1/me/balance", applicant.auth()).await;
    assert_eq!(balance.body["available_monthly"], M - 4_000_001);
    assert_eq!(balance.body["available_total"], M * 12 - 12_000_001);
    assert!(balance.body.get("next_release_at").is_none());
}

#[tokio::test]
async fn r20_r21_card_purchase_refund_and_unlock_through_the_gateway() {
    let app = spawn_app().await;
    let world = world::seed(&app).await;
    let merchant = world::approved_merchant(&app, &world, "Kafsh Shop").await;
    let applicant = world.applicant.clone();
    world::open_facility(&app, &world, &applicant, &world.guarantor, M, N).await;

    let card = app.get("/v1/me/card", applicant.auth()).await;
    assert_eq!(card.status, 200, "{card:?}");
    assert_eq!(card.body["pin_must_change"], true);
    assert_eq!(card.body["locked"], false);
    let number = card.body["customer_number"].as_str().unwrap().to_owned();
    assert_eq!(number.len(), 16);

    let buy = |pin: String, key: &'static str| {
        let body =
            json!({ "customer_number": number, "pin": pin, "kind": "credit", "amount": 3_000_000 });
        let app = &app;
        let api_key = merchant.api_key.clone();
        async move {
            app.post_idempotent("/v1/merchant/purchases", Some(&api_key), key, body)
                .await
        }
    };
    // R21: the first card purchase needs the PIN changed from the national ID.
    let must_change = buy(applicant.national_id.clone(), "m-1").await;
    assert_eq!(must_change.status, 422, "{must_change:?}");
    assert_eq!(must_change.code(), "pin_must_change");

    let changed = app
        .put(
            "/v1/me/card/pin",
            applicant.auth(),
            json!({ "current_pin": applicant.national_id, "new_pin": "4815162342" }),
        )
        .await;
    assert_eq!(changed.status, 204, "{changed:?}");
    let bought = buy("4815162342".to_owned(), "m-2").await;
    assert_eq!(bought.status, 201, "{bought:?}");
    let id = bought.body["id"].as_str().unwrap().to_owned();

    // R20: a partial refund returns room at once.
    let refunded = app
        .post_idempotent(
            &format!("/v1/merchant/purchases/{id}/refund"),
            Some(&merchant.api_key),
            "refund-1",
            json!({ "amount": 1_000_000 }),
        )
        .await;
    assert_eq!(refunded.status, 200, "{refunded:?}");
    assert_eq!(refunded.body["instalments"][0]["amount"], 2_000_000);
    let balance = app.get("/v1/me/balance", applicant.auth()).await;
    assert_eq!(balance.body["available_monthly"], M - 2_000_000);

    // R21: support unlocks; an employee may not.
    let path = format!("/v1/support/cards/{number}/unlock");
    let forbidden = app.post(&path, applicant.auth(), json!({})).await;
    assert_eq!(forbidden.status, 403, "{forbidden:?}");
    let unlocked = app.post(&path, world.support.auth(), json!({})).await;
    assert_eq!(unlocked.status, 204, "{unlocked:?}");
}

#[tokio::test]
async fn r21_merchants_get_one_answer_for_unknown_cards_and_wrong_pins_and_a_card_limit() {
    let app = spawn_app().await;
    let world = world::seed(&app).await;
    let merchant = world::approved_merchant(&app, &world, "Kif Shop").await;
    let applicant = world.applicant.clone();
    world::open_facility(&app, &world, &applicant, &world.guarantor, M, N).await;
    let card = app.get("/v1/me/card", applicant.auth()).await;
    let number = card.body["customer_number"].as_str().unwrap().to_owned();
    // A valid customer number (Luhn) that no card has.
    let unknown = "6037990000000014".to_owned();
    let buy = |number: String, key: String| {
        let body = json!({ "customer_number": number, "pin": "1111111112", "kind": "credit", "amount": 1_000 });
        let app = &app;
        let api_key = merchant.api_key.clone();
        async move {
            app.post_idempotent("/v1/merchant/purchases", Some(&api_key), &key, body)
                .await
        }
    };

    let wrong_pin = buy(number.clone(), "w-0".into()).await;
    let unknown_card = buy(unknown, "u-0".into()).await;
    let mut answers = Vec::new();
    for n in 1..=10 {
        answers.push(buy(number.clone(), format!("w-{n}")).await);
    }

    assert_eq!(wrong_pin.status, 422, "{wrong_pin:?}");
    assert_eq!(wrong_pin.code(), "card_rejected");
    assert_eq!(unknown_card.status, wrong_pin.status);
    let keys = |answer: &tavana_e2e::Answer| {
        let mut keys: Vec<String> = answer.body.as_object().unwrap().keys().cloned().collect();
        keys.sort();
        keys
    };
    assert_eq!(keys(&unknown_card), keys(&wrong_pin));
    assert_eq!(
        unknown_card.body["message_en"],
        wrong_pin.body["message_en"]
    );
    // 10 a minute per card (the default): the 11th on this card is refused.
    let limited = answers.last().unwrap();
    assert_eq!(limited.status, 429, "{limited:?}");
    assert!(limited.headers.contains_key("retry-after"));
    assert!(
        answers[..9]
            .iter()
            .all(|answer| answer.code() == "card_rejected")
    );
}
