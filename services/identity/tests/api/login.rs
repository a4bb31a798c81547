//! Login by national ID + mobile + SMS code (R3) and the first login's account (R4).

use tavana_kit::error::ErrorKind;
use tavana_proto::identity::v1 as pb;

use crate::helpers::*;

#[tokio::test]
async fn r3_login_flow_issues_a_token_pair_for_the_employee() {
    let service = spawn_service().await;
    service.add_employee(1, "R01").await;

    let challenge = service
        .start_login(&national_id(1), "+989120000001")
        .await
        .unwrap();
    assert_eq!(challenge.expires_in, 120);
    let code = service.code_for(&mobile(1)).await;
    assert_eq!(code.len(), 6);
    let tokens = service
        .verify(&challenge.challenge_id, &code)
        .await
        .unwrap();

    assert_eq!(tokens.expires_in, 900);
    assert!(!tokens.refresh_token.is_empty());
    let claims = claims(&service, &tokens.access_token).await;
    assert_eq!(claims.nid, national_id(1));
    assert_eq!(claims.roles, ["employee"]);
    assert_eq!(claims.exp - claims.iat, 900);
    assert_eq!(
        tokens.roles,
        [pb::RoleGrant {
            role: pb::Role::Employee as i32,
            region_code: None
        }]
    );
    let caller = caller_of(&service, &tokens.access_token).await;
    let me = service
        .client
        .clone()
        .get_me(as_caller(pb::GetMeRequest {}, &caller))
        .await
        .unwrap()
        .into_inner()
        .employee
        .unwrap();
    assert_eq!(me.national_id, national_id(1));
    assert!(me.has_account);
    assert_eq!(me.employee_id, claims.sub);
    assert!(
        uuid::Uuid::parse_str(&me.employee_id)
            .unwrap()
            .get_version_num()
            == 7
    );
}

#[tokio::test]
async fn r3_staff_roles_are_in_the_token() {
    let service = spawn_service().await;
    service.add_employee(1, "R01").await;
    tavana_identity::admin::grant_role(
        &service.db.db,
        &national_id(1),
        tavana_kit::caller::Role::RegionFinance,
        Some("R01"),
    )
    .await
    .unwrap();
    let tokens = service.login(1).await;
    let claims = claims(&service, &tokens.access_token).await;
    assert_eq!(claims.roles, ["employee", "region_finance@R01"]);
}

#[tokio::test]
async fn r3_a_mismatch_gets_the_same_answer_and_no_sms() {
    let service = spawn_service().await;
    service.add_employee(1, "R01").await;

    let wrong_mobile = service
        .start_login(&national_id(1), &mobile(2))
        .await
        .unwrap();
    let unknown_person = service
        .start_login(&national_id(3), &mobile(3))
        .await
        .unwrap();

    assert_eq!(wrong_mobile.expires_in, 120);
    assert_eq!(unknown_person.expires_in, 120);
    assert!(uuid::Uuid::parse_str(&wrong_mobile.challenge_id).is_ok());
    assert_eq!(
        tavana_kit::outbox::pending_count(&service.db.db)
            .await
            .unwrap(),
        0,
        "nothing is queued on a mismatch"
    );
    assert!(service.sms_to(&mobile(1)).await.is_empty());
    assert!(service.sms_to(&mobile(2)).await.is_empty());
    let answer = problem(
        service
            .verify(&wrong_mobile.challenge_id, "123456")
            .await
            .unwrap_err(),
    );
    assert_eq!(
        (answer.kind, answer.code.as_str()),
        (ErrorKind::Unauthenticated, "invalid_code")
    );
}

#[tokio::test]
async fn r3_wrong_unknown_and_expired_codes_get_one_answer() {
    let service = spawn_service().await;
    service.add_employee(1, "R01").await;
    let challenge = service
        .start_login(&national_id(1), &mobile(1))
        .await
        .unwrap();
    let code = service.code_for(&mobile(1)).await;
    let wrong = if code == "000000" { "000001" } else { "000000" };

    let wrong_code = problem(
        service
            .verify(&challenge.challenge_id, wrong)
            .await
            .unwrap_err(),
    );
    let unknown = problem(
        service
            .verify(&uuid::Uuid::new_v4().to_string(), &code)
            .await
            .unwrap_err(),
    );
    let garbage = problem(service.verify("not-a-challenge", &code).await.unwrap_err());

    for answer in [&wrong_code, &unknown, &garbage] {
        assert_eq!(answer.kind, ErrorKind::Unauthenticated);
        assert_eq!(answer.code, "invalid_code");
        assert_eq!(answer.message_en, wrong_code.message_en);
        assert!(!answer.message_fa.is_empty());
    }
    // A wrong try does not burn the challenge before the fifth.
    service
        .verify(&challenge.challenge_id, &code)
        .await
        .unwrap();
}

#[tokio::test]
async fn r3_five_wrong_codes_burn_the_challenge() {
    let service = spawn_service().await;
    service.add_employee(1, "R01").await;
    let challenge = service
        .start_login(&national_id(1), &mobile(1))
        .await
        .unwrap();
    let code = service.code_for(&mobile(1)).await;
    let wrong = if code == "999999" { "999998" } else { "999999" };

    for _ in 0..5 {
        let answer = problem(
            service
                .verify(&challenge.challenge_id, wrong)
                .await
                .unwrap_err(),
        );
        assert_eq!(answer.code, "invalid_code");
    }

    let answer = problem(
        service
            .verify(&challenge.challenge_id, &code)
            .await
            .unwrap_err(),
    );
    assert_eq!(answer.code, "invalid_code");
}

#[tokio::test]
async fn r3_four_wrong_codes_still_allow_the_right_one() {
    let service = spawn_service().await;
    service.add_employee(1, "R01").await;
    let challenge = service
        .start_login(&national_id(1), &mobile(1))
        .await
        .unwrap();
    let code = service.code_for(&mobile(1)).await;
    let wrong = if code == "999999" { "999998" } else { "999999" };
    for _ in 0..4 {
        service
            .verify(&challenge.challenge_id, wrong)
            .await
            .unwrap_err();
    }
    service
        .verify(&challenge.challenge_id, &code)
        .await
        .unwrap();
    // A code logs in once.
    let again = problem(
        service
            .verify(&challenge.challenge_id, &code)
            .await
            .unwrap_err(),
    );
    assert_eq!(again.code, "invalid_code");
}

#[tokio::test]
async fn r3_code_expires_after_two_minutes() {
    let service = spawn_service().await;
    service.add_employee(1, "R01").await;
    service.add_employee(2, "R01").await;
    let first = service
        .start_login(&national_id(1), &mobile(1))
        .await
        .unwrap();
    let first_code = service.code_for(&mobile(1)).await;
    let second = service
        .start_login(&national_id(2), &mobile(2))
        .await
        .unwrap();
    let second_code = service.code_for(&mobile(2)).await;

    service.advance(119);
    service
        .verify(&first.challenge_id, &first_code)
        .await
        .unwrap();
    service.advance(1);
    let answer = problem(
        service
            .verify(&second.challenge_id, &second_code)
            .await
            .unwrap_err(),
    );

    assert_eq!(answer.code, "invalid_code");
}

#[tokio::test]
async fn r3_one_code_a_minute_per_mobile() {
    let service = spawn_service().await;
    service.add_employee(1, "R01").await;
    service
        .start_login(&national_id(1), &mobile(1))
        .await
        .unwrap();

    let refused = problem(
        service
            .start_login(&national_id(1), &mobile(1))
            .await
            .unwrap_err(),
    );
    assert_eq!(
        (refused.kind, refused.code.as_str()),
        (ErrorKind::RateLimited, "too_many_codes")
    );
    assert_eq!(refused.extra["retry_after_seconds"], 60);
    // The same limit holds for a mismatch, so that it reveals nothing (R3).
    let other = problem(
        service
            .start_login(&national_id(5), &mobile(1))
            .await
            .unwrap_err(),
    );
    assert_eq!(other.code, "too_many_codes");
    // Another mobile is not limited.
    service
        .start_login(&national_id(2), &mobile(2))
        .await
        .unwrap();

    service.advance(60);
    service
        .start_login(&national_id(1), &mobile(1))
        .await
        .unwrap();
}

#[tokio::test]
async fn r3_five_codes_an_hour_per_mobile() {
    let service = spawn_service().await;
    service.add_employee(1, "R01").await;
    for _ in 0..5 {
        service
            .start_login(&national_id(1), &mobile(1))
            .await
            .unwrap();
        service.advance(60);
    }

    let refused = problem(
        service
            .start_login(&national_id(1), &mobile(1))
            .await
            .unwrap_err(),
    );

    assert_eq!(refused.code, "too_many_codes");
    // Five minutes into the hour: 55 minutes to wait.
    assert_eq!(refused.extra["retry_after_seconds"], 55 * 60);
    service.advance(55 * 60);
    service
        .start_login(&national_id(1), &mobile(1))
        .await
        .unwrap();
    service.outbox_drained().await;
    let codes = service.sms_to(&mobile(1)).await;
    assert_eq!(codes.len(), 6);
}

#[tokio::test]
async fn r2_invalid_identifiers_are_field_violations() {
    let service = spawn_service().await;
    let refused = problem(
        service
            .start_login("1111111111", "02112345678")
            .await
            .unwrap_err(),
    );
    assert_eq!(refused.kind, ErrorKind::InvalidArgument);
    let fields: Vec<&str> = refused.violations.iter().map(|v| v.code.as_str()).collect();
    assert_eq!(fields, ["national_id_invalid", "mobile_invalid"]);
}

#[tokio::test]
async fn r2_persian_digits_log_in() {
    let service = spawn_service().await;
    service.add_employee(1, "R01").await;
    let persian = |text: &str| tavana_identity::domain::sms::persian_digits(text);
    let challenge = service
        .start_login(&persian(&national_id(1)), &persian(&mobile(1)))
        .await
        .unwrap();
    let code = service.code_for(&persian(&mobile(1))).await;
    service
        .verify(&challenge.challenge_id, &persian(&code))
        .await
        .unwrap();
}

#[tokio::test]
async fn r4_first_login_creates_the_account_and_sends_the_welcome_sms_once() {
    let service = spawn_service().await;
    service.add_employee(1, "R01").await;
    let before = service
        .client
        .clone()
        .get_employee(as_caller(
            pb::GetEmployeeRequest {
                key: Some(pb::get_employee_request::Key::NationalId(national_id(1))),
            },
            &tavana_kit::caller::Caller::service("guarantee"),
        ))
        .await
        .unwrap()
        .into_inner()
        .employee
        .unwrap();
    assert!(!before.has_account);

    service.login(1).await;
    service.advance(60);
    service.login(1).await;
    service.outbox_drained().await;

    let messages = service.sms_to(&mobile(1)).await;
    let welcomes: Vec<_> = messages
        .iter()
        .filter(|m| m.template == "welcome")
        .collect();
    assert_eq!(welcomes.len(), 1);
    assert!(welcomes[0].text.contains("https://app.tavana.test/get"));
    assert_eq!(
        messages
            .iter()
            .filter(|m| m.template == "login_code")
            .count(),
        2
    );
    let after = tavana_identity::store::has_account(&service.db.db, &before.employee_id)
        .await
        .unwrap();
    assert!(after);
}

#[tokio::test]
async fn r4_concurrent_first_logins_send_one_welcome() {
    let service = spawn_service().await;
    service.add_employee(1, "R01").await;
    // Two challenges for the same employee (a minute apart), answered at once.
    let first = service
        .start_login(&national_id(1), &mobile(1))
        .await
        .unwrap();
    let first_code = service.code_for(&mobile(1)).await;
    service.advance(60);
    let second = service
        .start_login(&national_id(1), &mobile(1))
        .await
        .unwrap();
    let second_code = service.code_for(&mobile(1)).await;

    let (a, b) = tokio::join!(
        service.verify(&first.challenge_id, &first_code),
        service.verify(&second.challenge_id, &second_code)
    );
    a.unwrap();
    b.unwrap();
    service.outbox_drained().await;

    let welcomes = service
        .sms_to(&mobile(1))
        .await
        .into_iter()
        .filter(|m| m.template == "welcome")
        .count();
    assert_eq!(welcomes, 1);
}

async fn outbox_payloads(service: &TestService) -> Vec<String> {
    use sea_orm::{ConnectionTrait, Statement};
    let db = &service.db.db;
    let rows = db
        .query_all_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT payload FROM outbox",
        ))
        .await
        .unwrap();
    rows.iter()
        .map(|row| String::from_utf8(row.try_get::<Vec<u8>>("", "payload").unwrap()).unwrap())
        .collect()
}

#[tokio::test]
async fn r3_the_login_code_is_never_stored_in_the_sms_outbox() {
    let service = spawn_service().await;
    service.add_employee(1, "R01").await;

    service
        .start_login(&national_id(1), &mobile(1))
        .await
        .unwrap();
    let code = service.code_for(&mobile(1)).await;

    let payloads = outbox_payloads(&service).await;
    assert_eq!(payloads.len(), 1);
    assert!(!payloads[0].contains(&code), "{}", payloads[0]);
    let sms = service.sms_to(&mobile(1)).await;
    assert!(sms[0].text.contains(&code), "the SMS as sent carries it");
}

#[tokio::test]
async fn delivered_sms_are_purged_after_their_retention() {
    let service = spawn_service().await;
    service.add_employee(1, "R01").await;
    service
        .start_login(&national_id(1), &mobile(1))
        .await
        .unwrap();
    service.outbox_drained().await;
    let retention = chrono::Duration::days(30);
    let now = chrono::Utc::now();

    let within = tavana_identity::store::purge_delivered_sms(&service.db.db, retention, now)
        .await
        .unwrap();
    let after = tavana_identity::store::purge_delivered_sms(
        &service.db.db,
        retention,
        now + retention + chrono::Duration::minutes(1),
    )
    .await
    .unwrap();

    assert_eq!(within, 0, "kept for 30 days");
    assert_eq!(after, 1);
    assert!(outbox_payloads(&service).await.is_empty());
}
