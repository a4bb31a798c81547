//! Filing a request: every rule of R7 and R8 at its boundary, over gRPC.

use tavana_kit::caller::attach;
use tavana_proto::guarantee::v1 as pb;
use tonic::Code;

use crate::{jalali, national_id, problem, spawn_app, violation_codes};

const SALARY: i64 = 100_000_000;

/// Files, expects success, and cancels so that the applicant may file again.
async fn accepted(
    app: &crate::TestApp,
    applicant: &crate::Person,
    guarantor_nid: &str,
    m: i64,
    n: u32,
) {
    let request = app
        .file(applicant, guarantor_nid, m, n)
        .await
        .unwrap_or_else(|status| panic!("refused: {:?}", violation_codes(&status)));
    assert_eq!(request.status, 1, "pending_guarantor");
    app.cancel(&applicant.caller(), &request.request_id)
        .await
        .unwrap();
}

async fn refused(
    app: &crate::TestApp,
    applicant: &crate::Person,
    guarantor_nid: &str,
    m: i64,
    n: u32,
) -> Vec<String> {
    let status = app
        .file(applicant, guarantor_nid, m, n)
        .await
        .expect_err("should be refused");
    assert_eq!(status.code(), Code::FailedPrecondition, "422 RuleRefused");
    violation_codes(&status)
}

#[tokio::test]
async fn r8_guarantor_service_of_28y10m29d_is_allowed_and_28y11m0d_refused() {
    let app = spawn_app().await;
    let applicant = app.employee();
    // Filing date 1405-09-15.
    let just_under = app.employee_with("R01", SALARY, jalali(1376, 10, 16));
    let at_limit = app.employee_with("R01", SALARY, jalali(1376, 10, 15));

    accepted(&app, &applicant, &just_under.national_id, 1_000, 12).await;
    assert_eq!(
        refused(&app, &applicant, &at_limit.national_id, 1_000, 12).await,
        ["guarantor_service_too_long"]
    );
}

#[tokio::test]
async fn r8_guarantor_with_equal_salary_is_allowed_and_lower_refused() {
    let app = spawn_app().await;
    let applicant = app.employee_with("R01", SALARY, jalali(1395, 1, 1));
    let equal = app.employee_with("R01", SALARY, jalali(1395, 1, 1));
    let lower = app.employee_with("R01", SALARY - 1, jalali(1395, 1, 1));

    accepted(&app, &applicant, &equal.national_id, 1_000, 12).await;
    assert_eq!(
        refused(&app, &applicant, &lower.national_id, 1_000, 12).await,
        ["guarantor_salary_too_low"]
    );
}

#[tokio::test]
async fn r7_s10_credit_limits_state_the_quarter_that_filing_enforces() {
    let app = spawn_app().await;
    let applicant = app.employee_with("R01", 10_000_003, jalali(1395, 1, 1));
    let guarantor = app.employee();

    let limits = app
        .client
        .clone()
        .get_my_credit_limits(attach(pb::GetMyCreditLimitsRequest {}, &applicant.caller()))
        .await
        .unwrap()
        .into_inner();
    // floor(10,000,003 / 4): the remainder rials are never credit.
    assert_eq!(limits.max_monthly_credit, 2_500_000);
    assert_eq!(
        limits.max_instalment_months,
        tavana_guarantee::DEFAULT_MAX_INSTALMENTS
    );
    // The stated limits are exactly what filing accepts, and one more of each is refused.
    accepted(
        &app,
        &applicant,
        &guarantor.national_id,
        limits.max_monthly_credit,
        limits.max_instalment_months,
    )
    .await;
    assert_eq!(
        refused(
            &app,
            &applicant,
            &guarantor.national_id,
            limits.max_monthly_credit + 1,
            limits.max_instalment_months + 1,
        )
        .await,
        [
            "monthly_credit_above_quarter",
            "instalment_months_out_of_range"
        ]
    );

    // An employee HR does not know has no limits (and no request).
    let stranger = tavana_kit::caller::Caller::User {
        employee_id: "E-unknown".into(),
        national_id: national_id(9_999),
        grants: vec![tavana_kit::caller::RoleGrant::global(
            tavana_kit::caller::Role::Employee,
        )],
    };
    let status = app
        .client
        .clone()
        .get_my_credit_limits(attach(pb::GetMyCreditLimitsRequest {}, &stranger))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    assert_eq!(problem(&status).code, "employee_not_found");
}

#[tokio::test]
async fn r7_monthly_credit_of_a_quarter_is_allowed_and_one_rial_more_refused() {
    let app = spawn_app().await;
    let applicant = app.employee_with("R01", 10_000_003, jalali(1395, 1, 1));
    let guarantor = app.employee();

    accepted(&app, &applicant, &guarantor.national_id, 2_500_000, 12).await;
    assert_eq!(
        refused(&app, &applicant, &guarantor.national_id, 2_500_001, 12).await,
        ["monthly_credit_above_quarter"]
    );
    assert_eq!(
        refused(&app, &applicant, &guarantor.national_id, 0, 12).await,
        ["monthly_credit_not_positive"]
    );
    assert_eq!(
        refused(&app, &applicant, &guarantor.national_id, -1, 12).await,
        ["monthly_credit_not_positive"]
    );
}

#[tokio::test]
async fn r7_instalment_months_from_1_to_36() {
    let app = spawn_app().await;
    let applicant = app.employee();
    let guarantor = app.employee();

    accepted(&app, &applicant, &guarantor.national_id, 1_000, 36).await;
    accepted(&app, &applicant, &guarantor.national_id, 1_000, 1).await;
    assert_eq!(
        refused(&app, &applicant, &guarantor.national_id, 1_000, 37).await,
        ["instalment_months_out_of_range"]
    );
    assert_eq!(
        refused(&app, &applicant, &guarantor.national_id, 1_000, 0).await,
        ["instalment_months_out_of_range"]
    );
}

#[tokio::test]
async fn r8_unknown_self_and_other_region_guarantors_are_refused() {
    let app = spawn_app().await;
    let applicant = app.employee();
    let elsewhere = app.employee_with("R02", SALARY, jalali(1395, 1, 1));

    assert_eq!(
        refused(&app, &applicant, &national_id(9_999), 1_000, 12).await,
        ["guarantor_not_found"]
    );
    assert_eq!(
        refused(&app, &applicant, &applicant.national_id, 1_000, 12).await,
        ["guarantor_is_applicant"]
    );
    assert_eq!(
        refused(&app, &applicant, &elsewhere.national_id, 1_000, 12).await,
        ["guarantor_other_region"]
    );
}

#[tokio::test]
async fn r8_guarantor_with_three_guarantees_is_refused_and_released_ones_do_not_count() {
    let app = spawn_app().await;
    let guarantor = app.employee();
    let first = app.employee();
    let approved = app.approved_request(&first, &guarantor).await;
    for _ in 0..2 {
        let applicant = app.employee();
        app.file(&applicant, &guarantor.national_id, 1_000, 12)
            .await
            .unwrap();
    }
    let fourth = app.employee();
    assert_eq!(
        refused(&app, &fourth, &guarantor.national_id, 1_000, 12).await,
        ["guarantor_limit_reached"]
    );

    // R13: once released, the approved guarantee stops counting.
    let credit = tavana_kit::caller::Caller::service("credit");
    app.release(&credit, &approved.request_id).await.unwrap();
    let request = app
        .file(&fourth, &guarantor.national_id, 1_000, 12)
        .await
        .unwrap();
    assert_eq!(request.guarantor_active_guarantees, 3);
}

#[tokio::test]
async fn r8_every_failed_rule_is_reported_at_once() {
    let app = spawn_app().await;
    let applicant = app.employee_with("R01", SALARY, jalali(1395, 1, 1));
    let guarantor = app.employee_with("R02", SALARY - 1, jalali(1370, 1, 1));

    // R32: the guarantor's rules are checked once the applicant's own fields are valid.
    let status = app
        .file(&applicant, &guarantor.national_id, SALARY / 4, 36)
        .await
        .unwrap_err();

    assert_eq!(
        violation_codes(&status),
        [
            "guarantor_other_region",
            "guarantor_service_too_long",
            "guarantor_salary_too_low",
        ]
    );
    let problem = problem(&status);
    assert!(
        problem
            .violations
            .iter()
            .all(|v| !v.message_fa.is_empty() && !v.message_en.is_empty())
    );
}

#[tokio::test]
async fn r9_second_open_request_is_a_conflict_until_rejected_or_cancelled() {
    let app = spawn_app().await;
    let applicant = app.employee();
    let guarantor = app.employee();
    let first = app
        .file(&applicant, &guarantor.national_id, 1_000, 12)
        .await
        .unwrap();

    let status = app
        .file(&applicant, &guarantor.national_id, 1_000, 12)
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Aborted);
    assert_eq!(problem(&status).code, "open_request_exists");

    // S17: after the guarantor's rejection a new request may be filed.
    app.guarantor_decides(&guarantor.caller(), &first.request_id, false)
        .await
        .unwrap();
    app.file(&applicant, &guarantor.national_id, 1_000, 12)
        .await
        .unwrap();
}

#[tokio::test]
async fn r2_malformed_guarantor_national_id_is_invalid_argument() {
    let app = spawn_app().await;
    let applicant = app.employee();
    let status = app.file(&applicant, "123", 1_000, 12).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
}
