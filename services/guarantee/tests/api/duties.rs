//! R32: separation of duties, the audit trail of finance decisions, and filings that
//! reveal nothing about the guarantor they name.

use sea_orm::ConnectionTrait;
use tavana_kit::audit::{AuditQuery, list};
use tavana_kit::caller::attach;
use tavana_proto::guarantee::v1 as pb;
use tonic::Code;

use crate::{TestApp, jalali, problem, spawn_app, violation_codes};

const SALARY: i64 = 100_000_000;

/// Files as `applicant` naming `guarantor`, who approves: the request waits for finance.
async fn pending_finance(
    app: &TestApp,
    applicant: &crate::Person,
    guarantor: &crate::Person,
) -> String {
    let request = app
        .file(applicant, &guarantor.national_id, 1_000_000, 12)
        .await
        .unwrap();
    app.guarantor_decides(&guarantor.caller(), &request.request_id, true)
        .await
        .unwrap();
    request.request_id
}

#[tokio::test]
async fn r32_finance_officer_who_guarantees_the_request_gets_conflict_of_interest() {
    let app = spawn_app().await;
    let applicant = app.employee();
    let guarantor_in_finance = app.finance("R01");
    let id = pending_finance(&app, &applicant, &guarantor_in_finance).await;

    let status = app
        .finance_decides(&guarantor_in_finance.caller(), &id, true)
        .await
        .unwrap_err();

    assert_eq!(status.code(), Code::PermissionDenied);
    assert_eq!(problem(&status).code, "conflict_of_interest");
    let unchanged = app.get(&applicant.caller(), &id).await.unwrap();
    assert_eq!(unchanged.status(), pb::RequestStatus::PendingFinance);
}

#[tokio::test]
async fn r32_finance_officer_who_filed_the_request_gets_conflict_of_interest() {
    let app = spawn_app().await;
    let applicant_in_finance = app.finance("R01");
    let guarantor = app.employee();
    let id = pending_finance(&app, &applicant_in_finance, &guarantor).await;

    for approve in [true, false] {
        let status = app
            .finance_decides(&applicant_in_finance.caller(), &id, approve)
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::PermissionDenied);
        assert_eq!(problem(&status).code, "conflict_of_interest");
    }
    let other_finance = app.finance("R01");
    let approved = app
        .finance_decides(&other_finance.caller(), &id, true)
        .await
        .unwrap();
    assert_eq!(approved.status(), pb::RequestStatus::Approved);
}

#[tokio::test]
async fn r32_finance_decision_leaves_one_audit_row_with_actor_subject_and_request_id() {
    let app = spawn_app().await;
    let applicant = app.employee();
    let guarantor = app.employee();
    let finance = app.finance("R01");
    let id = pending_finance(&app, &applicant, &guarantor).await;
    let mut request = attach(
        pb::DecideAsFinanceRequest {
            request_id: id.clone(),
            approve: false,
            reason: Some("documents missing".to_owned()),
        },
        &finance.caller(),
    );
    request
        .metadata_mut()
        .insert("x-request-id", "req-finance-1".parse().unwrap());

    app.client.clone().decide_as_finance(request).await.unwrap();

    let (entries, _) = list(
        &app.db.db,
        &AuditQuery {
            page_size: 100,
            ..AuditQuery::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(entries.len(), 1);
    let entry = &entries[0];
    assert_eq!(entry.action, "credit_request.finance_decision");
    assert_eq!(entry.subject, id);
    assert_eq!(entry.actor.national_id, finance.national_id);
    assert!(entry.actor.roles.contains(&"region_finance@R01".to_owned()));
    assert_eq!(entry.request_id, "req-finance-1");
    assert_eq!(entry.details["approve"], false);
    assert_eq!(
        entry.details["applicant_national_id"],
        applicant.national_id
    );
}

#[tokio::test]
async fn r32_the_audit_table_refuses_update_and_delete() {
    let app = spawn_app().await;
    let applicant = app.employee();
    let guarantor = app.employee();
    let finance = app.finance("R01");
    let id = pending_finance(&app, &applicant, &guarantor).await;
    app.finance_decides(&finance.caller(), &id, true)
        .await
        .unwrap();

    let update = app
        .db
        .db
        .execute_unprepared("UPDATE audit_event SET actor_national_id = 'nobody'")
        .await;
    let delete = app
        .db
        .db
        .execute_unprepared("DELETE FROM audit_event")
        .await;

    assert!(
        update.is_err(),
        "UPDATE must fail ({})",
        if app.db.is_postgres() {
            "postgres"
        } else {
            "sqlite"
        }
    );
    assert!(delete.is_err());
}

#[tokio::test]
async fn r11_r32_history_records_who_acted() {
    let app = spawn_app().await;
    let applicant = app.employee();
    let guarantor = app.employee();
    let finance = app.finance("R01");
    let id = pending_finance(&app, &applicant, &guarantor).await;

    let approved = app
        .finance_decides(&finance.caller(), &id, true)
        .await
        .unwrap();

    let actors: Vec<(&str, &str, &str)> = approved
        .history
        .iter()
        .map(|change| {
            (
                change.by_role.as_str(),
                change.by_employee_id.as_str(),
                change.by_national_id.as_str(),
            )
        })
        .collect();
    assert_eq!(
        actors,
        [
            (
                "applicant",
                applicant.employee_id.as_str(),
                applicant.national_id.as_str()
            ),
            (
                "guarantor",
                guarantor.employee_id.as_str(),
                guarantor.national_id.as_str()
            ),
            (
                "region_finance",
                finance.employee_id.as_str(),
                finance.national_id.as_str()
            ),
        ]
    );
}

#[tokio::test]
async fn r32_filing_with_invalid_monthly_credit_reports_no_guarantor_rule() {
    let app = spawn_app().await;
    let applicant = app.employee_with("R01", SALARY, jalali(1395, 1, 1));
    // Fails every guarantor rule it can: other region, long service, lower salary.
    let colleague = app.employee_with("R02", SALARY - 1, jalali(1370, 1, 1));

    for monthly_credit in [0, SALARY / 4 + 1] {
        let status = app
            .file(&applicant, &colleague.national_id, monthly_credit, 12)
            .await
            .unwrap_err();

        let codes = violation_codes(&status);
        assert_eq!(codes.len(), 1, "{codes:?}");
        assert!(codes[0].starts_with("monthly_credit_"), "{codes:?}");
    }
    // An unknown national ID is not told apart from a known one either.
    let status = app
        .file(&applicant, &crate::national_id(9_999), 0, 12)
        .await
        .unwrap_err();
    assert_eq!(violation_codes(&status), ["monthly_credit_not_positive"]);
}

#[tokio::test]
async fn r32_no_refusal_carries_a_figure_of_the_guarantor() {
    let app = spawn_app().await;
    let applicant = app.employee_with("R01", SALARY, jalali(1395, 1, 1));
    // 35 years of service and a salary of 99,999,999.
    let colleague = app.employee_with("R01", SALARY - 1, jalali(1370, 1, 1));
    let status = app
        .file(&applicant, &colleague.national_id, 1_000, 12)
        .await
        .unwrap_err();

    let refusal = problem(&status);
    let mut texts = vec![refusal.message_en.clone(), refusal.message_fa.clone()];
    for violation in &refusal.violations {
        texts.push(violation.message_en.clone());
        texts.push(violation.message_fa.clone());
    }
    texts.push(serde_json::Value::Object(refusal.extra.clone()).to_string());
    for text in &texts {
        for figure in ["35", "۳۵", "99999999", "99,999,999", "۹۹۹۹۹۹۹۹"] {
            assert!(!text.contains(figure), "{text}");
        }
    }
    assert_eq!(
        violation_codes(&status),
        ["guarantor_service_too_long", "guarantor_salary_too_low"]
    );
}

#[tokio::test]
async fn r32_refused_filings_beyond_ten_a_day_answer_rate_limited() {
    let app = spawn_app().await;
    let applicant = app.employee();
    let guarantor = app.employee();

    for _ in 0..10 {
        let status = app
            .file(&applicant, &crate::national_id(9_000), 1_000, 12)
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::FailedPrecondition);
    }
    // Even a valid filing waits now: the limit is on the employee, not the colleague.
    let status = app
        .file(&applicant, &guarantor.national_id, 1_000, 12)
        .await
        .unwrap_err();

    assert_eq!(status.code(), Code::ResourceExhausted);
    let limited = problem(&status);
    assert_eq!(limited.code, "too_many_refused_filings");
    let retry_after = limited.extra["retry_after_seconds"].as_u64().unwrap();
    assert!((1..=24 * 60 * 60).contains(&retry_after), "{retry_after}");
    // Another employee is not limited.
    let other = app.employee();
    app.file(&other, &guarantor.national_id, 1_000, 12)
        .await
        .unwrap();
}
