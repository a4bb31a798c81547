//! End-to-end tests of the merchant directory through the gateway: a store proposed by
//! a regional welfare manager, approved by contracts, found by a query typed with Arabic
//! letters, authenticated by its key, then suspended (R25-R27).

use serde_json::{Value, json};
use tavana_e2e::world::{self, REGION};
use tavana_e2e::{Answer, TestApp, spawn_app};

fn bookshop() -> Value {
    json!({
        "name": "کتاب‌فروشی ققنوس",
        "kind": "in_person",
        "city": "تهران",
        "province": "تهران",
        "address": "خیابان انقلاب، پلاک ۱۲",
        "categories": ["کتاب", "لوازم التحریر"],
        "supports_credit": true,
        "supports_instalment": true,
        "contact_phone": "۰۲۱۶۶۴۰۰۰۰۰",
    })
}

async fn search(app: &TestApp, query: &[(&str, &str)]) -> Answer {
    app.send(app.client.get(app.url("/v1/merchants")).query(query))
        .await
}

fn ids(answer: &Answer) -> Vec<String> {
    answer.body["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|item| item["id"].as_str().unwrap().to_owned())
        .collect()
}

/// Calls a merchant-only route with `api_key`; `None` while the credit routes that
/// use the gateway's merchant extractor are not mounted yet.
async fn as_merchant(app: &TestApp, api_key: &str) -> Option<Answer> {
    let request = app
        .client
        .post(app.url("/v1/merchant/purchases"))
        .bearer_auth(api_key)
        .header("idempotency-key", uuid::Uuid::new_v4().to_string())
        .json(&json!({
            "customer_number": "0000000000000000",
            "pin": "0000000000",
            "kind": "credit",
            "amount": 10_000,
        }));
    let answer = app.send(request).await;
    (answer.status != 404 || !answer.code().is_empty()).then_some(answer)
}

#[tokio::test]
async fn r25_r27_proposed_approved_found_in_arabic_letters_authenticated_then_suspended() {
    let app = spawn_app().await;
    let world = world::seed(&app).await;

    // R26: a welfare manager proposes; the region is theirs.
    let proposed = app
        .post(
            "/v1/merchant-proposals",
            world.welfare_manager.auth(),
            bookshop(),
        )
        .await;
    assert_eq!(proposed.status, 201, "proposal: {proposed:?}");
    assert_eq!(proposed.body["status"], "pending");
    assert_eq!(proposed.body["region_code"], REGION);
    assert_eq!(proposed.body["kind"], "in_person");
    assert_eq!(proposed.body["contact_phone"], "02166400000");
    let proposal_id = proposed.body["id"].as_str().unwrap().to_owned();

    // Not yet listed: only contracted merchants are (R26).
    let before = search(&app, &[("q", "ققنوس")]).await;
    assert_eq!(before.status, 200, "{before:?}");
    assert!(ids(&before).is_empty());

    // A welfare manager cannot approve.
    let by_manager = app
        .post(
            &format!("/v1/merchant-proposals/{proposal_id}/decision"),
            world.welfare_manager.auth(),
            json!({ "approve": true }),
        )
        .await;
    assert_eq!(by_manager.status, 403, "{by_manager:?}");

    // Contracts approves: the merchant and its key, shown once.
    let decided = app
        .post(
            &format!("/v1/merchant-proposals/{proposal_id}/decision"),
            world.contracts.auth(),
            json!({ "approve": true, "reason": "قرارداد امضا شد" }),
        )
        .await;
    assert_eq!(decided.status, 200, "decision: {decided:?}");
    assert_eq!(decided.body["status"], "approved");
    assert_eq!(decided.body["id"], proposal_id.as_str());
    let merchant_id = decided.body["merchant_id"].as_str().unwrap().to_owned();
    let api_key = decided.body["api_key"].as_str().unwrap().to_owned();
    assert!(api_key.starts_with("tvk_"), "{api_key}");

    let again = app
        .post(
            &format!("/v1/merchant-proposals/{proposal_id}/decision"),
            world.contracts.auth(),
            json!({ "approve": true }),
        )
        .await;
    assert_eq!(again.status, 409, "{again:?}");
    assert_eq!(again.code(), "proposal_already_decided");
    assert!(again.body.get("api_key").is_none());

    // R27: found anonymously by a query typed with Arabic kaf and yeh.
    for query in ["كتاب", "كتاب فروشي", "کتاب‌فروشی"] {
        let found = search(&app, &[("q", query)]).await;
        assert_eq!(found.status, 200, "{found:?}");
        assert_eq!(
            ids(&found),
            std::slice::from_ref(&merchant_id),
            "query {query:?}"
        );
    }
    let filtered = search(
        &app,
        &[
            ("kind", "in_person"),
            ("city", "تهران"),
            ("category", "كتاب"),
            ("purchase_kind", "instalment"),
        ],
    )
    .await;
    assert_eq!(
        ids(&filtered),
        std::slice::from_ref(&merchant_id),
        "{filtered:?}"
    );
    let online_only = search(&app, &[("kind", "online")]).await;
    assert!(ids(&online_only).is_empty());
    assert!(online_only.body.get("next_page_token").is_none());

    let shown = app.get(&format!("/v1/merchants/{merchant_id}"), None).await;
    assert_eq!(shown.status, 200, "{shown:?}");
    assert_eq!(shown.body["name"], "کتاب‌فروشی ققنوس");
    assert_eq!(shown.body["kind"], "in_person");
    assert_eq!(shown.body["city"], "تهران");
    assert_eq!(shown.body["supports_credit"], true);
    assert_eq!(shown.body["supports_instalment"], true);
    assert!(shown.body.get("website").is_none());
    assert_eq!(shown.body["categories"].as_array().unwrap().len(), 2);

    // R26: the same store spelled with Arabic letters is a duplicate of the merchant.
    let mut duplicate = bookshop();
    duplicate["name"] = json!("كتاب فروشي ققنوس");
    let refused = app
        .post(
            "/v1/merchant-proposals",
            world.welfare_manager.auth(),
            duplicate,
        )
        .await;
    assert_eq!(refused.status, 409, "{refused:?}");
    assert_eq!(refused.code(), "merchant_duplicate");
    assert_eq!(refused.body["existing_merchant_id"], merchant_id.as_str());

    // The merchant's backend authenticates with its key (the gateway's merchant
    // extractor calls AuthenticateMerchant); a wrong key is 401.
    if let Some(wrong) = as_merchant(&app, "tvk_not-a-real-key").await {
        assert_eq!(wrong.status, 401, "{wrong:?}");
        let right = as_merchant(&app, &api_key).await.unwrap();
        assert!(
            right.status != 401 && right.status != 403,
            "the key authenticates: {right:?}"
        );
    } else {
        eprintln!("merchant routes are not mounted yet: key authentication not driven here");
    }

    // Suspension: only contracts; the merchant leaves the directory at once.
    let by_manager = app
        .post(
            &format!("/v1/merchants/{merchant_id}/suspend"),
            world.welfare_manager.auth(),
            json!({}),
        )
        .await;
    assert_eq!(by_manager.status, 403, "{by_manager:?}");
    let suspended = app
        .post(
            &format!("/v1/merchants/{merchant_id}/suspend"),
            world.contracts.auth(),
            json!({ "reason": "تخلف از قرارداد" }),
        )
        .await;
    assert_eq!(suspended.status, 200, "{suspended:?}");
    assert_eq!(suspended.body["status"], "suspended");
    assert_eq!(suspended.body["id"], merchant_id.as_str());

    let after = search(&app, &[("q", "كتاب")]).await;
    assert_eq!(after.status, 200);
    assert!(ids(&after).is_empty(), "{after:?}");
    let hidden = app.get(&format!("/v1/merchants/{merchant_id}"), None).await;
    assert_eq!(hidden.status, 404, "{hidden:?}");
    if let Some(refused) = as_merchant(&app, &api_key).await {
        assert_eq!(refused.status, 403, "{refused:?}");
        assert_eq!(refused.code(), "merchant_suspended");
    }
}

#[tokio::test]
async fn r26_proposals_are_listed_by_region_and_role() {
    let app = spawn_app().await;
    let world = world::seed(&app).await;
    let proposed = app
        .post(
            "/v1/merchant-proposals",
            world.welfare_manager.auth(),
            bookshop(),
        )
        .await;
    assert_eq!(proposed.status, 201, "{proposed:?}");
    let proposal_id = proposed.body["id"].as_str().unwrap();

    for person in [&world.welfare_manager, &world.contracts] {
        let listed = app
            .get("/v1/merchant-proposals?status=pending", person.auth())
            .await;
        assert_eq!(listed.status, 200, "{listed:?}");
        assert_eq!(listed.body["items"][0]["id"], proposal_id);
    }
    let approved = app
        .get(
            "/v1/merchant-proposals?status=approved",
            world.contracts.auth(),
        )
        .await;
    assert_eq!(approved.body["items"].as_array().unwrap().len(), 0);

    let by_employee = app
        .get("/v1/merchant-proposals", world.applicant.auth())
        .await;
    assert_eq!(by_employee.status, 403, "{by_employee:?}");
    let anonymous = app.get("/v1/merchant-proposals", None).await;
    assert_eq!(anonymous.status, 401, "{anonymous:?}");
    let bad_status = app
        .get(
            "/v1/merchant-proposals?status=maybe",
            world.contracts.auth(),
        )
        .await;
    assert_eq!(bad_status.status, 400, "{bad_status:?}");

    // Contracts does not propose (it is not a welfare manager), nor does an employee.
    for person in [&world.contracts, &world.applicant] {
        let refused = app
            .post("/v1/merchant-proposals", person.auth(), bookshop())
            .await;
        assert_eq!(refused.status, 403, "{refused:?}");
    }
}

#[tokio::test]
async fn r25_invalid_proposal_lists_every_invalid_field() {
    let app = spawn_app().await;
    let world = world::seed(&app).await;

    let refused = app
        .post(
            "/v1/merchant-proposals",
            world.welfare_manager.auth(),
            json!({ "name": "DigiKala", "kind": "online", "categories": ["کالای دیجیتال"] }),
        )
        .await;

    assert_eq!(refused.status, 400, "{refused:?}");
    let codes: Vec<&str> = refused.body["violations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|violation| violation["code"].as_str().unwrap())
        .collect();
    assert_eq!(
        codes,
        [
            "website_required",
            "purchase_kind_required",
            "contact_phone_required"
        ]
    );
    assert!(refused.body["message_fa"].as_str().is_some());

    let rejected_without_reason = {
        let proposed = app
            .post(
                "/v1/merchant-proposals",
                world.welfare_manager.auth(),
                bookshop(),
            )
            .await;
        let id = proposed.body["id"].as_str().unwrap().to_owned();
        app.post(
            &format!("/v1/merchant-proposals/{id}/decision"),
            world.contracts.auth(),
            json!({ "approve": false }),
        )
        .await
    };
    assert_eq!(rejected_without_reason.status, 400);

    let bad_kind = search(&app, &[("kind", "drive_through")]).await;
    assert_eq!(bad_kind.status, 400, "{bad_kind:?}");
    let unknown = app.get("/v1/merchants/no-such-merchant", None).await;
    assert_eq!(unknown.status, 404, "{unknown:?}");
}
