//! The status flow (R9-R12): decisions, history, re-checks and lists.

use tavana_kit::caller::attach;
use tavana_proto::guarantee::v1 as pb;
use tavana_proto::identity::v1::SmsTemplate;
use tonic::Code;

use crate::{filing_instant, problem, spawn_app, violation_codes};

#[tokio::test]
async fn r9_r12_request_goes_from_filing_to_an_open_facility() {
    let app = spawn_app().await;
    let applicant = app.employee();
    let guarantor = app.employee();
    let finance = app.finance("R01");

    let filed = app
        .file(&applicant, &guarantor.national_id, 25_000_000, 36)
        .await
        .unwrap();
    assert_eq!(filed.status(), pb::RequestStatus::PendingGuarantor);
    assert_eq!(filed.purchasing_power, 25_000_000 * 36);
    assert_eq!(filed.region_code, "R01");
    assert_eq!(filed.guarantor_active_guarantees, 1);
    assert_eq!(filed.history.len(), 1);
    assert_eq!(
        filed.history[0].message_fa,
        "درخواست شما ثبت شد و در انتظار تأیید ضامن است."
    );

    app.clock.advance(chrono::Duration::hours(5));
    let approved_by_guarantor = app
        .guarantor_decides(&guarantor.caller(), &filed.request_id, true)
        .await
        .unwrap();
    assert_eq!(
        approved_by_guarantor.status(),
        pb::RequestStatus::PendingFinance
    );

    app.clock.advance(chrono::Duration::hours(20));
    let approved = app
        .finance_decides(&finance.caller(), &filed.request_id, true)
        .await
        .unwrap();
    assert_eq!(approved.status(), pb::RequestStatus::Approved);
    let approved_at = filing_instant() + chrono::Duration::hours(25);
    let activates_at = approved_at + chrono::Duration::hours(72);
    assert_eq!(
        approved.activates_at.unwrap().seconds,
        activates_at.timestamp()
    );

    // R11: every transition with who and when, shown to the applicant.
    let seen = app
        .get(&applicant.caller(), &filed.request_id)
        .await
        .unwrap();
    let steps: Vec<(pb::RequestStatus, String, i64)> = seen
        .history
        .iter()
        .map(|change| {
            (
                change.status(),
                change.by_role.clone(),
                change.at.unwrap().seconds,
            )
        })
        .collect();
    assert_eq!(
        steps,
        [
            (
                pb::RequestStatus::PendingGuarantor,
                "applicant".to_owned(),
                filing_instant().timestamp()
            ),
            (
                pb::RequestStatus::PendingFinance,
                "guarantor".to_owned(),
                (filing_instant() + chrono::Duration::hours(5)).timestamp()
            ),
            (
                pb::RequestStatus::Approved,
                "region_finance".to_owned(),
                approved_at.timestamp()
            ),
        ]
    );

    // R12: the facility is opened once, with M, N and activation at approval + 72 h.
    let id = filed.request_id.clone();
    app.wait_until(async || app.credit.facility(&id).is_some())
        .await;
    let facility = app.credit.facility(&id).unwrap();
    assert_eq!(facility.employee_id, applicant.employee_id);
    assert_eq!(facility.national_id, applicant.national_id);
    assert_eq!(facility.organization_id, "ORG1");
    assert_eq!(facility.monthly_credit, 25_000_000);
    assert_eq!(facility.max_instalments, 36);
    assert_eq!(
        facility.activates_at.unwrap().seconds,
        activates_at.timestamp()
    );
    assert!(!facility.full_name.is_empty());

    // R28: the guarantor was asked, the applicant told of every change.
    app.wait_until(async || app.identity.notifications_to(&applicant.employee_id).len() == 3)
        .await;
    let to_guarantor = app.identity.notifications_to(&guarantor.employee_id);
    assert_eq!(to_guarantor.len(), 1);
    assert_eq!(to_guarantor[0].template(), SmsTemplate::GuaranteeRequested);
    assert_eq!(app.credit.calls_for(&id), 1);
}

#[tokio::test]
async fn r9_rejections_and_cancellation_end_the_request() {
    let app = spawn_app().await;
    let applicant = app.employee();
    let guarantor = app.employee();
    let finance = app.finance("R01");

    let first = app
        .file(&applicant, &guarantor.national_id, 1_000, 12)
        .await
        .unwrap();
    let rejected = app
        .guarantor_decides(&guarantor.caller(), &first.request_id, false)
        .await
        .unwrap();
    assert_eq!(rejected.status(), pb::RequestStatus::GuarantorRejected);
    assert_eq!(rejected.history[1].reason.as_deref(), Some("not this time"));

    let second = app
        .file(&applicant, &guarantor.national_id, 1_000, 12)
        .await
        .unwrap();
    app.guarantor_decides(&guarantor.caller(), &second.request_id, true)
        .await
        .unwrap();
    let rejected = app
        .finance_decides(&finance.caller(), &second.request_id, false)
        .await
        .unwrap();
    assert_eq!(rejected.status(), pb::RequestStatus::FinanceRejected);
    assert!(rejected.activates_at.is_none());

    let third = app
        .file(&applicant, &guarantor.national_id, 1_000, 12)
        .await
        .unwrap();
    app.guarantor_decides(&guarantor.caller(), &third.request_id, true)
        .await
        .unwrap();
    let cancelled = app
        .cancel(&applicant.caller(), &third.request_id)
        .await
        .unwrap();
    assert_eq!(cancelled.status(), pb::RequestStatus::Cancelled);
    assert_eq!(app.credit.facility_count(), 0);
}

#[tokio::test]
async fn r9_decisions_in_the_wrong_state_are_conflicts() {
    let app = spawn_app().await;
    let applicant = app.employee();
    let guarantor = app.employee();
    let finance = app.finance("R01");
    let request = app
        .file(&applicant, &guarantor.national_id, 1_000, 12)
        .await
        .unwrap();

    let early = app
        .finance_decides(&finance.caller(), &request.request_id, true)
        .await
        .unwrap_err();
    assert_eq!(early.code(), Code::Aborted);
    assert_eq!(problem(&early).code, "request_not_pending");

    app.guarantor_decides(&guarantor.caller(), &request.request_id, true)
        .await
        .unwrap();
    let twice = app
        .guarantor_decides(&guarantor.caller(), &request.request_id, false)
        .await
        .unwrap_err();
    assert_eq!(problem(&twice).code, "request_not_pending");

    app.finance_decides(&finance.caller(), &request.request_id, true)
        .await
        .unwrap();
    let cancel = app
        .cancel(&applicant.caller(), &request.request_id)
        .await
        .unwrap_err();
    assert_eq!(cancel.code(), Code::Aborted);
}

#[tokio::test]
async fn r10_approvals_recheck_r8_on_current_hr_data() {
    let app = spawn_app().await;
    let applicant = app.employee();
    let guarantor = app.employee();
    let finance = app.finance("R01");
    let request = app
        .file(&applicant, &guarantor.national_id, 1_000, 12)
        .await
        .unwrap();

    app.identity
        .update(&guarantor.employee_id, |e| e.net_salary -= 1);
    let refused = app
        .guarantor_decides(&guarantor.caller(), &request.request_id, true)
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert_eq!(violation_codes(&refused), ["guarantor_salary_too_low"]);
    let unchanged = app
        .get(&applicant.caller(), &request.request_id)
        .await
        .unwrap();
    assert_eq!(unchanged.status(), pb::RequestStatus::PendingGuarantor);

    app.identity
        .update(&guarantor.employee_id, |e| e.net_salary += 1);
    app.guarantor_decides(&guarantor.caller(), &request.request_id, true)
        .await
        .unwrap();

    app.identity
        .update(&guarantor.employee_id, |e| e.region_code = "R02".to_owned());
    let refused = app
        .finance_decides(&finance.caller(), &request.request_id, true)
        .await
        .unwrap_err();
    assert_eq!(violation_codes(&refused), ["guarantor_other_region"]);
    let unchanged = app
        .get(&applicant.caller(), &request.request_id)
        .await
        .unwrap();
    assert_eq!(unchanged.status(), pb::RequestStatus::PendingFinance);
    assert_eq!(app.credit.facility_count(), 0);
}

#[tokio::test]
async fn s15_mutual_guarantees_are_allowed() {
    let app = spawn_app().await;
    let first = app.employee();
    let second = app.employee();
    app.file(&first, &second.national_id, 1_000, 12)
        .await
        .unwrap();
    app.file(&second, &first.national_id, 1_000, 12)
        .await
        .unwrap();
}

#[tokio::test]
async fn r13_release_is_idempotent_and_for_services_only() {
    let app = spawn_app().await;
    let applicant = app.employee();
    let guarantor = app.employee();
    let approved = app.approved_request(&applicant, &guarantor).await;
    let credit = tavana_kit::caller::Caller::service("credit");

    let by_user = app
        .release(&applicant.caller(), &approved.request_id)
        .await
        .unwrap_err();
    assert_eq!(by_user.code(), Code::PermissionDenied);

    app.release(&credit, &approved.request_id).await.unwrap();
    app.release(&credit, &approved.request_id).await.unwrap();
    let seen = app
        .get(&applicant.caller(), &approved.request_id)
        .await
        .unwrap();
    assert_eq!(seen.guarantor_active_guarantees, 0);

    let missing = app.release(&credit, "no-such-request").await.unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
    // After release the applicant may file again.
    app.file(&applicant, &guarantor.national_id, 1_000, 12)
        .await
        .unwrap();
}

#[tokio::test]
async fn lists_show_guarantor_and_region_requests_newest_first_in_pages() {
    let app = spawn_app().await;
    let guarantor = app.employee();
    let finance = app.finance("R01");
    let mut ids = Vec::new();
    for _ in 0..3 {
        let applicant = app.employee();
        ids.push(
            app.file(&applicant, &guarantor.national_id, 1_000, 12)
                .await
                .unwrap()
                .request_id,
        );
        app.clock.advance(chrono::Duration::minutes(1));
    }
    app.guarantor_decides(&guarantor.caller(), &ids[0], true)
        .await
        .unwrap();

    let inbox = app
        .client
        .clone()
        .list_guarantee_requests(attach(
            pb::ListGuaranteeRequestsRequest {
                status: pb::RequestStatus::PendingGuarantor as i32,
                page_size: 1,
                page_token: String::new(),
            },
            &guarantor.caller(),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(inbox.items.len(), 1);
    assert_eq!(inbox.items[0].request_id, ids[2]);
    assert!(!inbox.next_page_token.is_empty());
    let rest = app
        .client
        .clone()
        .list_guarantee_requests(attach(
            pb::ListGuaranteeRequestsRequest {
                status: pb::RequestStatus::PendingGuarantor as i32,
                page_size: 1,
                page_token: inbox.next_page_token,
            },
            &guarantor.caller(),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(rest.items[0].request_id, ids[1]);
    assert!(rest.next_page_token.is_empty());

    let region = app
        .client
        .clone()
        .list_region_credit_requests(attach(
            pb::ListRegionCreditRequestsRequest {
                region_code: "R01".to_owned(),
                status: pb::RequestStatus::PendingFinance as i32,
                page_size: 0,
                page_token: String::new(),
            },
            &finance.caller(),
        ))
        .await
        .unwrap()
        .into_inner();
    let region_ids: Vec<_> = region.items.iter().map(|r| r.request_id.clone()).collect();
    assert_eq!(region_ids, [ids[0].clone()]);

    let other = app.finance("R02");
    let denied = app
        .client
        .clone()
        .list_region_credit_requests(attach(
            pb::ListRegionCreditRequestsRequest {
                region_code: "R01".to_owned(),
                status: 0,
                page_size: 0,
                page_token: String::new(),
            },
            &other.caller(),
        ))
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
}
