//! End-to-end tests of the identity service through the gateway: SMS login with the dev
//! provider, refresh rotation and reuse, HR data, mobile changes, roles (R1-R6, R28).

use serde_json::json;
use tavana_e2e::{TestApp, mobile, national_id, spawn_app};

const HEADER: &str =
    "national_id,full_name,mobile,organization_id,region_code,net_salary,service_start_date\n";

async fn app_with_employees(count: u32) -> TestApp {
    let app = spawn_app().await;
    app.add_organization("ORG-01", "اداره آموزش و پرورش منطقه ۱", true)
        .await;
    for n in 1..=count {
        app.upsert_employee(
            &national_id(n),
            &format!("کارمند {n}"),
            &mobile(n),
            "ORG-01",
            "R01",
            200_000_000,
            "2012-09-23",
        )
        .await;
    }
    app
}

#[tokio::test]
async fn r3_login_by_sms_code_then_me() {
    let app = app_with_employees(1).await;

    let started = app
        .post(
            "/v1/auth/login-code",
            None,
            json!({ "national_id": national_id(1), "mobile": "+989120000001" }),
        )
        .await;
    assert_eq!(started.status, 202, "{started:?}");
    assert_eq!(started.body["expires_in"], 120);
    // The code goes out as an SMS from the outbox through a provider adapter, with retry
    // (R28): the contract makes it eventual, so this waits for the dev provider's inbox.
    let code = app
        .eventually(|| async { app.last_sms_code(&mobile(1)).await })
        .await;
    let tokens = app
        .post(
            "/v1/auth/token",
            None,
            json!({ "challenge_id": started.body["challenge_id"], "code": code }),
        )
        .await;
    assert_eq!(tokens.status, 200, "{tokens:?}");
    assert_eq!(tokens.body["expires_in"], 900);
    assert_eq!(tokens.body["roles"], json!(["employee"]));
    let token = tokens.body["access_token"].as_str().unwrap();

    let me = app.get("/v1/me", Some(token)).await;

    assert_eq!(me.status, 200, "{me:?}");
    assert_eq!(me.body["national_id"], national_id(1));
    assert_eq!(me.body["mobile"], mobile(1));
    assert_eq!(me.body["net_salary"], 200_000_000);
    assert_eq!(me.body["service_start_date"], "2012-09-23");
    assert_eq!(me.body["roles"], json!(["employee"]));
}

#[tokio::test]
async fn r3_mismatch_answers_202_and_a_wrong_code_401_invalid_code() {
    let app = app_with_employees(1).await;

    let mismatch = app
        .post(
            "/v1/auth/login-code",
            None,
            json!({ "national_id": national_id(1), "mobile": mobile(2) }),
        )
        .await;
    let wrong = app
        .post(
            "/v1/auth/token",
            None,
            json!({ "challenge_id": mismatch.body["challenge_id"], "code": "123456" }),
        )
        .await;

    assert_eq!(mismatch.status, 202);
    assert_eq!(wrong.status, 401);
    assert_eq!(wrong.code(), "invalid_code");
    assert_eq!(wrong.headers["content-type"], "application/problem+json");
    let inbox = app.get(&format!("/v1/dev/sms/{}", mobile(2)), None).await;
    assert_eq!(inbox.body["items"], json!([]));
}

#[tokio::test]
async fn r3_second_code_within_a_minute_is_429_with_retry_after() {
    let app = app_with_employees(1).await;
    let body = json!({ "national_id": national_id(1), "mobile": mobile(1) });
    assert_eq!(
        app.post("/v1/auth/login-code", None, body.clone())
            .await
            .status,
        202
    );

    let refused = app.post("/v1/auth/login-code", None, body).await;

    assert_eq!(refused.status, 429);
    assert_eq!(refused.code(), "too_many_codes");
    let retry_after: u64 = refused.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry_after));
}

#[tokio::test]
async fn refresh_rotates_and_a_reused_token_revokes_the_session() {
    let app = app_with_employees(1).await;
    let first = app.login_tokens(&national_id(1), &mobile(1)).await.unwrap();
    let first_refresh = first["refresh_token"].as_str().unwrap();

    let second = app
        .post(
            "/v1/auth/refresh",
            None,
            json!({ "refresh_token": first_refresh }),
        )
        .await;
    assert_eq!(second.status, 200, "{second:?}");
    let reused = app
        .post(
            "/v1/auth/refresh",
            None,
            json!({ "refresh_token": first_refresh }),
        )
        .await;
    let after = app
        .post(
            "/v1/auth/refresh",
            None,
            json!({ "refresh_token": second.body["refresh_token"] }),
        )
        .await;

    assert_eq!(reused.status, 401);
    assert_eq!(reused.code(), "refresh_token_reused");
    assert_eq!(after.status, 401);
}

#[tokio::test]
async fn logout_ends_the_session() {
    let app = app_with_employees(1).await;
    let tokens = app.login_tokens(&national_id(1), &mobile(1)).await.unwrap();
    let access = tokens["access_token"].as_str().unwrap();
    // Used once, the token is verified and its session remembered as active.
    let before = app.get("/v1/me", Some(access)).await;

    let answer = app.post("/v1/auth/logout", Some(access), json!({})).await;
    let after = app.get("/v1/me", Some(access)).await;
    let refresh = app
        .post(
            "/v1/auth/refresh",
            None,
            json!({ "refresh_token": tokens["refresh_token"] }),
        )
        .await;

    assert_eq!(before.status, 200, "{before:?}");
    assert_eq!(answer.status, 204, "{answer:?}");
    // R5: the access token stops working at once, though the gateway verified it lately.
    assert_eq!(after.status, 401, "{after:?}");
    assert_eq!(refresh.status, 401);
}

#[tokio::test]
async fn r4_welcome_sms_with_the_download_link_is_sent_once() {
    let app = app_with_employees(1).await;
    // A second login within the minute is rate limited on the real clock (R3); identity's
    // own tests, which move security time, log in again.
    app.login(&national_id(1), &mobile(1)).await;

    let inbox = app.get(&format!("/v1/dev/sms/{}", mobile(1)), None).await;

    let welcomes: Vec<_> = inbox.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["template"] == "welcome")
        .collect();
    assert_eq!(welcomes.len(), 1);
    assert!(welcomes[0]["text"].as_str().unwrap().contains("http"));
}

/// Security time runs on the real clock: the test clock, set a month in the past or in
/// the future, neither expires a fresh token nor makes one outlive its 15 minutes (API.md,
/// "Local runs and tests").
#[tokio::test]
async fn security_time_is_real_login_and_me_work_with_the_test_clock_a_month_in_the_past() {
    // Arrange
    let app = app_with_employees(1).await;
    app.set_clock(&(chrono::Utc::now() - chrono::Duration::days(30)).to_rfc3339())
        .await;

    // Act
    let tokens = app.login_tokens(&national_id(1), &mobile(1)).await.unwrap();
    let access = tokens["access_token"].as_str().unwrap();
    let me = app.get("/v1/me", Some(access)).await;
    let refreshed = app
        .post(
            "/v1/auth/refresh",
            None,
            json!({ "refresh_token": tokens["refresh_token"] }),
        )
        .await;

    // Assert
    assert_eq!(me.status, 200, "{me:?}");
    assert_eq!(refreshed.status, 200, "{refreshed:?}");
    let again = app
        .get("/v1/me", refreshed.body["access_token"].as_str())
        .await;
    assert_eq!(again.status, 200, "{again:?}");
}

#[tokio::test]
async fn security_time_is_real_login_and_me_work_with_the_test_clock_a_month_ahead() {
    // Arrange
    let app = app_with_employees(1).await;
    app.set_clock(&(chrono::Utc::now() + chrono::Duration::days(30)).to_rfc3339())
        .await;

    // Act
    let token = app.login(&national_id(1), &mobile(1)).await;
    let me = app.get("/v1/me", Some(&token)).await;

    // Assert
    assert_eq!(me.status, 200, "{me:?}");
}

#[tokio::test]
async fn security_time_is_real_the_test_clock_does_not_reopen_the_code_rate_window() {
    // Arrange: one code sent; R3 allows one SMS a minute per mobile.
    let app = app_with_employees(1).await;
    app.login(&national_id(1), &mobile(1)).await;
    app.advance_clock(61).await;

    // Act
    let again = app
        .post(
            "/v1/auth/login-code",
            None,
            json!({ "national_id": national_id(1), "mobile": mobile(1) }),
        )
        .await;

    // Assert: the window runs on the real clock, whatever the test clock says.
    assert_eq!(again.status, 429, "{again:?}");
    assert_eq!(again.body["code"], "too_many_codes");
}

#[tokio::test]
async fn r1_r6_region_admin_writes_only_their_region() {
    let app = app_with_employees(2).await;
    app.grant_role(&national_id(2), "region_admin", Some("R01"))
        .await;
    let admin = app.login(&national_id(2), &mobile(2)).await;
    let employee = |region: &str| {
        json!({
            "full_name": "کارمند تازه",
            "mobile": mobile(30),
            "organization_id": "ORG-01",
            "region_code": region,
            "net_salary": 180_000_000,
            "service_start_date": "2015-09-23",
        })
    };

    let mine = app
        .put(
            &format!("/v1/employees/{}", national_id(30)),
            Some(&admin),
            employee("R01"),
        )
        .await;
    let other = app
        .put(
            &format!("/v1/employees/{}", national_id(31)),
            Some(&admin),
            employee("R02"),
        )
        .await;
    let by_employee = {
        let plain = app.login(&national_id(1), &mobile(1)).await;
        app.put(
            &format!("/v1/employees/{}", national_id(32)),
            Some(&plain),
            employee("R01"),
        )
        .await
    };

    assert_eq!(mine.status, 200, "{mine:?}");
    assert_eq!(mine.body["created"], true);
    assert_eq!(other.status, 403);
    assert_eq!(by_employee.status, 403);
}

#[tokio::test]
async fn r1_csv_import_over_http_rejects_only_bad_lines() {
    let app = app_with_employees(1).await;
    app.grant_role(&national_id(1), "region_admin", Some("R01"))
        .await;
    let admin = app.login(&national_id(1), &mobile(1)).await;
    let csv = format!(
        "{HEADER}{},علی رضایی,{},ORG-01,R01,200000000,2012-09-23\n0012345678,بد,{},ORG-01,R01,1,2012-09-23\n",
        national_id(40),
        mobile(40),
        mobile(41)
    );

    let answer = app
        .send(
            app.client
                .post(app.url("/v1/employees/import"))
                .bearer_auth(&admin)
                .header("content-type", "text/csv")
                .body(csv),
        )
        .await;

    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.body["created"], 1);
    assert_eq!(answer.body["updated"], 0);
    assert_eq!(answer.body["rejected"][0]["line"], 3);
    assert_eq!(answer.body["rejected"][0]["code"], "national_id_invalid");
    assert!(answer.body["rejected"][0]["message_en"].as_str().is_some());
}

#[tokio::test]
async fn r5_support_changes_a_mobile_and_old_sessions_end() {
    let app = app_with_employees(2).await;
    app.grant_role(&national_id(2), "support", None).await;
    let support = app.login(&national_id(2), &mobile(2)).await;
    let employee = app.login_tokens(&national_id(1), &mobile(1)).await.unwrap();

    let changed = app
        .post(
            "/v1/support/mobile-changes",
            Some(&support),
            json!({
                "national_id": national_id(1),
                "new_mobile": mobile(60),
                "requested_by_unit": "واحد رفاه منطقه ۱",
                "reference": "1404/123",
            }),
        )
        .await;
    let refresh = app
        .post(
            "/v1/auth/refresh",
            None,
            json!({ "refresh_token": employee["refresh_token"] }),
        )
        .await;
    let by_employee = app
        .post(
            "/v1/support/mobile-changes",
            employee["access_token"].as_str(),
            json!({
                "national_id": national_id(1),
                "new_mobile": mobile(61),
                "requested_by_unit": "x",
                "reference": "y",
            }),
        )
        .await;

    assert_eq!(changed.status, 200, "{changed:?}");
    assert_eq!(changed.body["mobile"], mobile(60));
    assert_eq!(refresh.status, 401);
    // R5: the old access token stops working at once, not when it expires.
    assert_eq!(by_employee.status, 401, "{by_employee:?}");
    // The new number logs in; an employee still cannot change mobiles (R6).
    let fresh = app.login(&national_id(1), &mobile(60)).await;
    let me = app.get("/v1/me", Some(&fresh)).await;
    assert_eq!(me.status, 200);
    let forbidden = app
        .post(
            "/v1/support/mobile-changes",
            Some(&fresh),
            json!({
                "national_id": national_id(1),
                "new_mobile": mobile(61),
                "requested_by_unit": "x",
                "reference": "y",
            }),
        )
        .await;
    assert_eq!(forbidden.status, 403);
}

#[tokio::test]
async fn contracts_set_the_organization_contract_and_support_grants_roles() {
    let app = app_with_employees(2).await;
    app.grant_role(&national_id(1), "contracts", None).await;
    app.grant_role(&national_id(2), "support", None).await;
    let contracts = app.login(&national_id(1), &mobile(1)).await;
    let support = app.login(&national_id(2), &mobile(2)).await;

    let contract = app
        .put(
            "/v1/organizations/ORG-01/contract",
            Some(&contracts),
            json!({ "in_force": false }),
        )
        .await;
    let by_support = app
        .put(
            "/v1/organizations/ORG-01/contract",
            Some(&support),
            json!({ "in_force": true }),
        )
        .await;
    let granted = app
        .post(
            "/v1/admin/roles",
            Some(&support),
            json!({ "national_id": national_id(1), "role": "region_finance", "region_code": "R01" }),
        )
        .await;
    let revoked = app
        .delete(
            "/v1/admin/roles",
            Some(&support),
            json!({ "national_id": national_id(1), "role": "region_finance", "region_code": "R01" }),
        )
        .await;

    assert_eq!(contract.status, 200, "{contract:?}");
    assert_eq!(contract.body["contract_in_force"], false);
    assert_eq!(by_support.status, 403);
    assert_eq!(granted.status, 200, "{granted:?}");
    assert_eq!(
        granted.body["roles"],
        json!(["contracts", "region_finance@R01"])
    );
    assert_eq!(revoked.body["roles"], json!(["contracts"]));
}

#[tokio::test]
async fn r32_a_role_grant_is_in_the_audit_trail_at_once_and_no_one_grants_themselves() {
    let app = app_with_employees(3).await;
    app.grant_role(&national_id(2), "support", None).await;
    let support = app.login(&national_id(2), &mobile(2)).await;
    let employee = app.login(&national_id(3), &mobile(3)).await;

    let granted = app
        .post(
            "/v1/admin/roles",
            Some(&support),
            json!({ "national_id": national_id(1), "role": "contracts" }),
        )
        .await;
    let trail = app
        .get(
            &format!("/v1/admin/audit?subject={}", national_id(1)),
            Some(&support),
        )
        .await;
    let own = app
        .post(
            "/v1/admin/roles",
            Some(&support),
            json!({ "national_id": national_id(2), "role": "contracts" }),
        )
        .await;
    let by_employee = app.get("/v1/admin/audit", Some(&employee)).await;

    assert_eq!(granted.status, 200, "{granted:?}");
    assert_eq!(trail.status, 200, "{trail:?}");
    let items = trail.body["items"].as_array().unwrap();
    let grants: Vec<_> = items
        .iter()
        .filter(|item| item["action"] == "role.grant")
        .collect();
    assert_eq!(grants.len(), 1, "{items:#?}");
    assert_eq!(grants[0]["subject"], national_id(1));
    assert_eq!(grants[0]["actor"]["national_id"], national_id(2));
    assert_eq!(grants[0]["details"]["role"], "contracts");
    let request_id = granted.headers["x-request-id"].to_str().unwrap();
    assert_eq!(grants[0]["request_id"], request_id);
    assert_eq!(own.status, 403, "{own:?}");
    assert_eq!(own.body["code"], "own_role");
    assert_eq!(by_employee.status, 403);
}
