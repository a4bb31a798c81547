//! End-to-end tests of the guarantee service through the gateway: the request flow
//! of R7-R12 and its forbidden paths (R6, R10, R11).

use chrono::{DateTime, Duration, Utc};
use serde_json::{Value, json};
use tavana_e2e::world::{self, Person, World};
use tavana_e2e::{TestApp, mobile, national_id, spawn_app};

async fn file(
    app: &TestApp,
    applicant: &Person,
    guarantor: &Person,
    m: i64,
    n: i64,
) -> tavana_e2e::Answer {
    app.post(
        "/v1/me/credit-requests",
        applicant.auth(),
        json!({
            "guarantor_national_id": guarantor.national_id,
            "monthly_credit": m,
            "instalment_months": n,
        }),
    )
    .await
}

async fn now(app: &TestApp) -> DateTime<Utc> {
    let clock = app.get("/v1/dev/clock", None).await;
    assert_eq!(clock.status, 200, "dev clock: {clock:?}");
    clock.body["now"].as_str().unwrap().parse().unwrap()
}

fn time(value: &Value) -> DateTime<Utc> {
    value.as_str().expect("a time").parse().expect("RFC 3339")
}

async fn filed_and_guaranteed(app: &TestApp, world: &World) -> String {
    let filed = file(app, &world.applicant, &world.guarantor, 50_000_000, 12).await;
    assert_eq!(filed.status, 201, "filed: {filed:?}");
    let id = filed.body["id"].as_str().unwrap().to_owned();
    let guaranteed = app
        .post(
            &format!("/v1/credit-requests/{id}/guarantor-decision"),
            world.guarantor.auth(),
            json!({ "approve": true }),
        )
        .await;
    assert_eq!(guaranteed.status, 200, "guarantor: {guaranteed:?}");
    id
}

#[tokio::test]
async fn r9_r12_request_filed_guaranteed_and_approved_opens_a_facility_72_hours_later() {
    let app = spawn_app().await;
    let world = world::seed(&app).await;

    // R7-R9: filing.
    let filed = file(&app, &world.applicant, &world.guarantor, 50_000_000, 12).await;
    assert_eq!(filed.status, 201, "filed: {filed:?}");
    assert_eq!(filed.body["status"], "pending_guarantor");
    assert_eq!(filed.body["monthly_credit"], 50_000_000);
    assert_eq!(filed.body["instalment_months"], 12);
    assert_eq!(filed.body["purchasing_power"], 600_000_000);
    assert_eq!(
        filed.body["guarantor"]["national_id"],
        world.guarantor.national_id.as_str()
    );
    assert_eq!(filed.body["history"][0]["status"], "pending_guarantor");
    assert!(filed.body.get("activates_at").is_none());
    let id = filed.body["id"].as_str().unwrap().to_owned();

    // S14: the guarantor's inbox.
    let inbox = app
        .get(
            "/v1/me/guarantee-requests?status=pending_guarantor",
            world.guarantor.auth(),
        )
        .await;
    assert_eq!(inbox.status, 200, "inbox: {inbox:?}");
    assert_eq!(inbox.body["items"][0]["id"], id.as_str());

    let guaranteed = app
        .post(
            &format!("/v1/credit-requests/{id}/guarantor-decision"),
            world.guarantor.auth(),
            json!({ "approve": true }),
        )
        .await;
    assert_eq!(guaranteed.status, 200, "guarantor: {guaranteed:?}");
    assert_eq!(guaranteed.body["status"], "pending_finance");

    // S2: the region's finance office sees it and approves.
    let pending = app
        .get(
            &format!(
                "/v1/regions/{}/credit-requests?status=pending_finance",
                world::REGION
            ),
            world.finance.auth(),
        )
        .await;
    assert_eq!(pending.status, 200, "region list: {pending:?}");
    assert_eq!(pending.body["items"][0]["id"], id.as_str());

    let decided_at = now(&app).await;
    let approved = app
        .post(
            &format!("/v1/credit-requests/{id}/finance-decision"),
            world.finance.auth(),
            json!({ "approve": true }),
        )
        .await;
    assert_eq!(approved.status, 200, "finance: {approved:?}");
    assert_eq!(approved.body["status"], "approved");
    let activates_at = time(&approved.body["activates_at"]);
    let after = now(&app).await;
    assert!(activates_at >= decided_at + Duration::hours(72));
    assert!(activates_at <= after + Duration::hours(72));

    // R11: the applicant sees every step.
    let seen = app
        .get(&format!("/v1/credit-requests/{id}"), world.applicant.auth())
        .await;
    assert_eq!(seen.status, 200);
    let steps: Vec<(&str, &str)> = seen.body["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|step| {
            (
                step["status"].as_str().unwrap(),
                step["by_role"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        steps,
        [
            ("pending_guarantor", "applicant"),
            ("pending_finance", "guarantor"),
            ("approved", "region_finance"),
        ]
    );
    assert!(
        seen.body["history"][2]["message_fa"]
            .as_str()
            .unwrap()
            .contains("تأیید")
    );

    // R12: the facility is there once finance has answered (read your writes), usable
    // 72 hours after approval.
    let balance = app.get("/v1/me/balance", world.applicant.auth()).await;
    assert_eq!(balance.status, 200, "{balance:?}");
    assert_eq!(time(&balance.body["activates_at"]), activates_at);
    assert_eq!(balance.body["monthly_credit"], 50_000_000);
    assert_eq!(balance.body["max_instalments"], 12);
    assert_eq!(balance.body["purchasing_power"], 600_000_000);
}

#[tokio::test]
async fn r8_refusal_lists_every_failed_rule_and_r9_allows_one_open_request() {
    let app = spawn_app().await;
    let world = world::seed(&app).await;

    let codes = |answer: &tavana_e2e::Answer| -> Vec<String> {
        answer.body["violations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|violation| violation["code"].as_str().unwrap().to_owned())
            .collect()
    };
    // The API states the limits (R7, S10), so that no client computes them.
    let limits = app
        .get("/v1/me/credit-limits", world.applicant.auth())
        .await;
    assert_eq!(limits.status, 200, "limits: {limits:?}");
    assert_eq!(
        limits.body,
        json!({ "max_monthly_credit": 50_000_000, "max_instalment_months": 36 })
    );
    assert_eq!(app.get("/v1/me/credit-limits", None).await.status, 401);
    // M is above a quarter of 200,000,000 and N above the policy: the applicant's own fields
    // are refused, each with its code, and the guarantor's rules are not run at all (R32:
    // filing reveals nothing about the named colleague while one's own fields are invalid).
    let refused = file(&app, &world.applicant, &world.colleague, 50_000_001, 37).await;
    assert_eq!(refused.status, 422, "refused: {refused:?}");
    assert_eq!(
        codes(&refused),
        [
            "monthly_credit_above_quarter",
            "instalment_months_out_of_range"
        ]
    );
    // With valid fields, the colleague who earns less than the applicant is refused (R8).
    let refused = file(&app, &world.applicant, &world.colleague, 50_000_000, 36).await;
    assert_eq!(refused.status, 422, "refused: {refused:?}");
    assert_eq!(codes(&refused), ["guarantor_salary_too_low"]);

    let filed = file(&app, &world.applicant, &world.guarantor, 50_000_000, 36).await;
    assert_eq!(filed.status, 201, "filed: {filed:?}");
    let again = file(&app, &world.applicant, &world.guarantor, 1_000, 1).await;
    assert_eq!(again.status, 409);
    assert_eq!(again.code(), "open_request_exists");

    let id = filed.body["id"].as_str().unwrap();
    let cancelled = app
        .post(
            &format!("/v1/credit-requests/{id}/cancel"),
            world.applicant.auth(),
            json!({}),
        )
        .await;
    assert_eq!(cancelled.status, 200, "cancel: {cancelled:?}");
    assert_eq!(cancelled.body["status"], "cancelled");
    let mine = app
        .get("/v1/me/credit-requests", world.applicant.auth())
        .await;
    assert_eq!(mine.status, 200);
    assert_eq!(mine.body["items"][0]["status"], "cancelled");
    assert_eq!(
        file(&app, &world.applicant, &world.guarantor, 1_000, 1)
            .await
            .status,
        201
    );
}

#[tokio::test]
async fn r6_r10_forbidden_paths() {
    let app = spawn_app().await;
    let world = world::seed(&app).await;
    let id = filed_and_guaranteed(&app, &world).await;

    // A colleague may not know the request exists.
    let colleague = app
        .get(&format!("/v1/credit-requests/{id}"), world.colleague.auth())
        .await;
    assert_eq!(colleague.status, 404, "colleague: {colleague:?}");

    // An employee without the finance role.
    let employee = app
        .post(
            &format!("/v1/credit-requests/{id}/finance-decision"),
            world.applicant.auth(),
            json!({ "approve": true }),
        )
        .await;
    assert_eq!(employee.status, 403, "employee: {employee:?}");

    // Finance of another region.
    let other = app
        .post(
            &format!("/v1/credit-requests/{id}/finance-decision"),
            world.other_finance.auth(),
            json!({ "approve": true }),
        )
        .await;
    assert_eq!(other.status, 403, "other region: {other:?}");
    let other_list = app
        .get(
            &format!("/v1/regions/{}/credit-requests", world::REGION),
            world.other_finance.auth(),
        )
        .await;
    assert_eq!(other_list.status, 403);

    // Nothing changed; a decision in the wrong state is a conflict.
    let again = app
        .post(
            &format!("/v1/credit-requests/{id}/guarantor-decision"),
            world.guarantor.auth(),
            json!({ "approve": true }),
        )
        .await;
    assert_eq!(again.status, 409, "again: {again:?}");
    let seen = app
        .get(&format!("/v1/credit-requests/{id}"), world.finance.auth())
        .await;
    assert_eq!(seen.body["status"], "pending_finance");

    let unauthenticated = app.get(&format!("/v1/credit-requests/{id}"), None).await;
    assert_eq!(unauthenticated.status, 401);
}

/// API.md, Conventions: codes in paths and bodies are matched as HR stores them, so
/// `teh-19` in the path is region TEH-19 (R10, S2).
#[tokio::test]
async fn r10_region_path_is_matched_as_hr_stores_it() {
    // Arrange: HR wrote the region in lower case; the role was granted as `Teh-19`.
    let app = spawn_app().await;
    world::seed(&app).await;
    let applicant = world::employee(&app, 31, 200_000_000, "teh-19").await;
    let guarantor = world::employee(&app, 32, 240_000_000, "TEH-19").await;
    app.upsert_employee(
        &national_id(33),
        "کارمند ۳۳",
        &mobile(33),
        world::ORGANIZATION,
        "teh-19",
        250_000_000,
        "2010-09-23",
    )
    .await;
    app.grant_role(&national_id(33), "region_finance", Some("Teh-19"))
        .await;
    let finance_token = app.login(&national_id(33), &mobile(33)).await;
    let filed = file(&app, &applicant, &guarantor, 50_000_000, 12).await;
    assert_eq!(filed.status, 201, "filed: {filed:?}");
    let guaranteed = app
        .post(
            &format!(
                "/v1/credit-requests/{}/guarantor-decision",
                filed.body["id"].as_str().unwrap()
            ),
            guarantor.auth(),
            json!({ "approve": true }),
        )
        .await;
    assert_eq!(guaranteed.status, 200, "guarantor: {guaranteed:?}");

    // Act
    let lower = app
        .get("/v1/regions/teh-19/credit-requests", Some(&finance_token))
        .await;
    let upper = app
        .get("/v1/regions/TEH-19/credit-requests", Some(&finance_token))
        .await;
    let malformed = app
        .get("/v1/regions/teh%2019/credit-requests", Some(&finance_token))
        .await;

    // Assert
    assert_eq!(lower.status, 200, "{lower:?}");
    assert_eq!(lower.body["items"][0]["id"], filed.body["id"]);
    assert_eq!(lower.body["items"][0]["region_code"], "TEH-19");
    assert_eq!(upper.body, lower.body);
    assert_eq!(malformed.status, 400, "{malformed:?}");
    assert_eq!(malformed.body["code"], "region_code_invalid");
}

#[tokio::test]
async fn r32_the_applicant_never_sees_the_guarantors_guarantee_count() {
    // Arrange
    let app = spawn_app().await;
    let world = world::seed(&app).await;
    const FIGURE: &str = "guarantor_active_guarantees";

    // Act: the applicant files and reads the request, alone and in their list.
    let filed = file(&app, &world.applicant, &world.guarantor, 50_000_000, 12).await;
    assert_eq!(filed.status, 201, "filed: {filed:?}");
    let id = filed.body["id"].as_str().unwrap().to_owned();
    let read = app
        .get(&format!("/v1/credit-requests/{id}"), world.applicant.auth())
        .await;
    let mine = app
        .get("/v1/me/credit-requests", world.applicant.auth())
        .await;
    // The guarantor's own count, and the finance office deciding, still see it.
    let as_guarantor = app
        .get("/v1/me/guarantee-requests", world.guarantor.auth())
        .await;
    let as_finance = app
        .get(&format!("/v1/credit-requests/{id}"), world.finance.auth())
        .await;

    // Assert
    assert!(filed.body.get(FIGURE).is_none(), "filed: {:?}", filed.body);
    assert_eq!(read.status, 200, "read: {read:?}");
    assert!(read.body.get(FIGURE).is_none(), "read: {:?}", read.body);
    assert_eq!(mine.status, 200);
    assert!(
        mine.body["items"][0].get(FIGURE).is_none(),
        "{:?}",
        mine.body
    );
    assert_eq!(as_guarantor.body["items"][0][FIGURE], 1, "{as_guarantor:?}");
    assert_eq!(as_finance.status, 200, "finance: {as_finance:?}");
    assert_eq!(as_finance.body[FIGURE], 1);
}
