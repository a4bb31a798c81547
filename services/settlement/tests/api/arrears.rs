//! Per-period matching and the unmatched-lines queue (R23); closing a period, overdue
//! instalments re-aged within `M`, arrears told to credit and SMS (R29).

use chrono::Utc;
use prost::Message;
use tavana_kit::caller::{Caller, Role, RoleGrant, attach};
use tavana_proto::credit::v1::SetArrearsRequest;
use tavana_proto::identity::v1::{NotifyEmployeesRequest, SmsTemplate};
use tavana_proto::settlement::v1 as pb;
use tavana_settlement::delivery::{NOTIFY_EMPLOYEES, SET_ARREARS};
use tonic::Code;

use crate::deductions::bulk_schedule;
use crate::{ORG, TestApp, codes, national_id, schedule, spawn_service, staff};

impl TestApp {
    pub(crate) async fn close(
        &self,
        period: &str,
    ) -> Result<pb::ClosePeriodResponse, tonic::Status> {
        self.client
            .clone()
            .close_period(attach(
                pb::ClosePeriodRequest {
                    organization_id: ORG.into(),
                    period: period.into(),
                },
                &staff(Role::Support),
            ))
            .await
            .map(tonic::Response::into_inner)
    }

    async fn queue(&self, status: pb::UnmatchedLineStatus) -> Vec<pb::QueuedUnmatchedLine> {
        self.client
            .clone()
            .list_unmatched_lines(attach(
                pb::ListUnmatchedLinesRequest {
                    organization_id: ORG.into(),
                    status: status as i32,
                    ..Default::default()
                },
                &staff(Role::Support),
            ))
            .await
            .unwrap()
            .into_inner()
            .items
    }

    async fn resolve(
        &self,
        request: pb::ResolveUnmatchedLineRequest,
    ) -> Result<pb::QueuedUnmatchedLine, tonic::Status> {
        self.client
            .clone()
            .resolve_unmatched_line(attach(request, &staff(Role::Support)))
            .await
            .map(|response| response.into_inner().line.unwrap())
    }

    async fn overdue(
        &self,
        caller: &Caller,
        region_code: &str,
    ) -> Result<Vec<pb::OverdueInstalment>, tonic::Status> {
        self.client
            .clone()
            .list_overdue(attach(
                pb::ListOverdueRequest {
                    region_code: region_code.into(),
                    ..Default::default()
                },
                caller,
            ))
            .await
            .map(|response| response.into_inner().items)
    }

    /// Every arrears item written for credit, in order.
    async fn arrears_told(&self) -> Vec<(String, i64, i64)> {
        self.outbox(SET_ARREARS)
            .await
            .iter()
            .flat_map(|(_, payload)| SetArrearsRequest::decode(payload.as_slice()).unwrap().items)
            .map(|item| (item.employee_id, item.overdue_amount, item.version))
            .collect()
    }

    /// Every SMS written for identity as (employee, template), in order.
    async fn sms_written(&self) -> Vec<(String, i32)> {
        self.outbox(NOTIFY_EMPLOYEES)
            .await
            .iter()
            .flat_map(|(_, payload)| {
                NotifyEmployeesRequest::decode(payload.as_slice())
                    .unwrap()
                    .notifications
            })
            .map(|n| (n.employee_id, n.template))
            .collect()
    }

    /// The (period, due_period, amount) of an employee's instalments in `state`.
    async fn periods(
        &self,
        employee: &str,
        state: pb::InstalmentState,
    ) -> Vec<(String, String, i64)> {
        let mut items: Vec<(String, String, i64)> = self
            .my_instalments(employee, state)
            .await
            .into_iter()
            .map(|i| (i.period, i.due_period, i.amount))
            .collect();
        items.sort();
        items
    }
}

fn finance(region: &str) -> Caller {
    Caller::User {
        employee_id: format!("finance-{region}"),
        national_id: "0499370899".into(),
        grants: vec![RoleGrant::regional(Role::RegionFinance, region)],
    }
}

fn code_of(status: &tonic::Status) -> String {
    tavana_kit::error::Problem::from_status(status).code
}

fn with_m(
    mut request: pb::RecordScheduleRequest,
    monthly_credit: i64,
) -> pb::RecordScheduleRequest {
    request.monthly_credit = monthly_credit;
    request
}

#[tokio::test]
async fn r23_a_missed_month_does_not_block_the_next_months_exact_line() {
    // Arrange: 100 a month for three months; 1405-09 was never remitted.
    let app = spawn_service().await;
    app.record(schedule("P1", 1, "1405-09", &[100, 100, 100]))
        .await;

    // Act: 1405-10's remittance pays exactly what 1405-10's list asked.
    let october = app
        .remit("B-10", "1405-10", &[(national_id(1), 100)])
        .await
        .unwrap();
    let november = app
        .remit("B-11", "1405-11", &[(national_id(1), 100)])
        .await
        .unwrap();

    // Assert: both settle; 1405-09 is still owed, untouched.
    for response in [&october, &november] {
        assert_eq!(response.result.as_ref().unwrap().settled_instalments, 1);
        assert!(codes(response).is_empty());
    }
    assert_eq!(
        app.periods("E1", pb::InstalmentState::Unsettled).await,
        [("1405-09".into(), "1405-09".into(), 100)]
    );
}

#[tokio::test]
async fn r23_a_line_paying_an_older_month_too_is_over_and_settles_nothing() {
    let app = spawn_service().await;
    app.record(schedule("P1", 1, "1405-09", &[100, 100])).await;

    let response = app
        .remit("B-10", "1405-10", &[(national_id(1), 200)])
        .await
        .unwrap();

    assert_eq!(codes(&response), [(1, "amount_over".to_owned())]);
    assert_eq!(response.result.unwrap().settled_instalments, 0);
}

#[tokio::test]
async fn r23_kept_lines_are_queued_assigned_to_an_employee_or_returned_once() {
    // Arrange: a line with a mistyped national ID and a line nobody owes.
    let app = spawn_service().await;
    app.record(schedule("P1", 1, "1405-09", &[100, 100])).await;
    app.record(schedule("P2", 2, "1405-09", &[40])).await;
    app.remit(
        "B-09",
        "1405-09",
        &[
            (national_id(7), 100),
            (national_id(2), 41),
            (national_id(2), 1),
        ],
    )
    .await
    .unwrap();
    let open = app.queue(pb::UnmatchedLineStatus::Open).await;
    assert_eq!(open.len(), 3);
    let typo = open.iter().find(|line| line.line == 1).unwrap();
    assert_eq!(typo.code, "unknown_employee");
    assert_eq!(typo.period, "1405-09");

    // Act: assigning it elsewhere than what is owed is refused and leaves it open;
    // assigned to employee 1 for 1405-09 it settles that month's instalment.
    let wrong_period = app
        .resolve(pb::ResolveUnmatchedLineRequest {
            id: typo.id.clone(),
            national_id: national_id(2),
            note: "typo".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    let assigned = app
        .resolve(pb::ResolveUnmatchedLineRequest {
            id: typo.id.clone(),
            national_id: national_id(1),
            period: "1405-09".into(),
            note: "typo in the bank file".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let returned = app
        .resolve(pb::ResolveUnmatchedLineRequest {
            id: open[2].id.clone(),
            returned_to_organization: true,
            note: "paid twice".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let again = app
        .resolve(pb::ResolveUnmatchedLineRequest {
            id: typo.id.clone(),
            returned_to_organization: true,
            note: "again".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();

    // Assert
    assert_eq!(wrong_period.code(), Code::FailedPrecondition);
    // Employee 2 owes 40 in 1405-09: 100 is over.
    assert_eq!(code_of(&wrong_period), "amount_over");
    assert_eq!(assigned.resolution, "assigned");
    assert_eq!(assigned.settled_instalments, 1);
    assert_eq!(assigned.settled_amount, 100);
    assert_eq!(returned.resolution, "returned");
    assert_eq!(again.code(), Code::Aborted);
    assert_eq!(code_of(&again), "unmatched_line_resolved");
    assert_eq!(
        app.periods("E1", pb::InstalmentState::Settled).await,
        [("1405-09".into(), "1405-09".into(), 100)]
    );
    assert_eq!(app.queue(pb::UnmatchedLineStatus::Open).await.len(), 1);
    assert_eq!(app.queue(pb::UnmatchedLineStatus::Resolved).await.len(), 2);
}

#[tokio::test]
async fn r29_closing_makes_what_is_unsettled_overdue_and_reages_it_within_m() {
    // Arrange: M = 100. Purchase A deducts 60 in 1405-09..11, purchase B 30 in 1405-09..10;
    // nothing of 1405-09 is remitted.
    let app = spawn_service().await;
    app.record(with_m(schedule("A", 1, "1405-09", &[60, 60, 60]), 100))
        .await;
    app.record(with_m(schedule("B", 1, "1405-09", &[30, 30]), 100))
        .await;

    // Act
    let closed = app.close("1405-09").await.unwrap();

    // Assert: 60 fits no earlier period than 1405-12 (1405-10 holds 90, 1405-11 60); then
    // 30 fits 1405-11 (60 + 30 <= 100), skipping 1405-10 (90 + 30 > 100).
    assert_eq!(closed.overdue_instalments, 2);
    assert_eq!(closed.overdue_amount, 90);
    assert!(!closed.replayed);
    assert_eq!(
        app.periods("E1", pb::InstalmentState::Overdue).await,
        [
            ("1405-11".into(), "1405-09".into(), 30),
            ("1405-12".into(), "1405-09".into(), 60)
        ]
    );
    let (rows, totals) = app
        .deductions(&staff(Role::Support), "1405-12")
        .await
        .unwrap();
    assert_eq!(totals.total, 60);
    assert_eq!(rows[0].instalments[0].due_period, "1405-09");
    let (_, november) = app
        .deductions(&staff(Role::Support), "1405-11")
        .await
        .unwrap();
    assert_eq!(november.total, 90);
}

#[tokio::test]
async fn r29_closed_and_remitted_later_periods_are_skipped() {
    // Arrange: 1405-10 is already remitted (by another employee's line) and 1405-09 closed.
    let app = spawn_service().await;
    app.record(schedule("P1", 1, "1405-08", &[10])).await;
    app.record(schedule("P2", 2, "1405-10", &[10])).await;
    app.remit("B-10", "1405-10", &[(national_id(2), 10)])
        .await
        .unwrap();
    app.close("1405-09").await.unwrap();

    // Act
    app.close("1405-08").await.unwrap();

    // Assert: not 1405-09 (closed), not 1405-10 (remitted).
    assert_eq!(
        app.periods("E1", pb::InstalmentState::Overdue).await,
        [("1405-11".into(), "1405-08".into(), 10)]
    );
}

#[tokio::test]
async fn r29_closing_twice_answers_the_first_result_and_a_future_period_is_refused() {
    let app = spawn_service().await;
    app.record(schedule("P1", 1, "1405-09", &[7, 7])).await;

    let first = app.close("1405-09").await.unwrap();
    let second = app.close("1405-09").await.unwrap();
    // The test clock is in 1405-09: 1405-10 has not started.
    let future = app.close("1405-10").await.unwrap_err();

    assert_eq!(first.overdue_instalments, 1);
    assert!(second.replayed);
    assert_eq!(second.overdue_instalments, first.overdue_instalments);
    assert_eq!(second.overdue_amount, 7);
    assert_eq!(second.closed_at, first.closed_at);
    assert_eq!(code_of(&future), "period_not_started");
    assert_eq!(app.arrears_told().await.len(), 1);
}

#[tokio::test]
async fn r29_the_employee_and_the_guarantor_are_told_and_credit_learns_the_arrears() {
    let app = spawn_service().await;
    app.record(schedule("P1", 1, "1405-09", &[1, 1])).await;
    app.record(schedule("P2", 2, "1405-09", &[5])).await;
    app.remit("B-09", "1405-09", &[(national_id(2), 5)])
        .await
        .unwrap();

    app.close("1405-09").await.unwrap();

    // One rial overdue is enough; employee 2 paid and hears nothing.
    assert_eq!(app.arrears_told().await, [("E1".to_owned(), 1, 1)]);
    let sms = app.sms_written().await;
    assert!(sms.contains(&("E1".to_owned(), SmsTemplate::Overdue as i32)));
    assert!(sms.contains(&("G1".to_owned(), SmsTemplate::OverdueGuarantor as i32)));
    assert!(
        !sms.iter().any(
            |(employee, template)| employee == "E2" && *template == SmsTemplate::Overdue as i32
        )
    );
}

#[tokio::test]
async fn r29_paying_the_reaged_instalment_with_its_new_period_clears_the_arrears() {
    // Arrange: 1405-09's 100 is overdue and re-aged into 1405-10, whose list now asks 200.
    let app = spawn_service().await;
    app.record(schedule("P1", 1, "1405-09", &[100, 100])).await;
    app.close("1405-09").await.unwrap();

    // Act
    let short = app
        .remit("B-10a", "1405-10", &[(national_id(1), 100)])
        .await
        .unwrap();
    let paid = app
        .remit("B-10b", "1405-10", &[(national_id(1), 200)])
        .await
        .unwrap();

    // Assert
    assert_eq!(codes(&short), [(1, "amount_short".to_owned())]);
    assert_eq!(paid.result.unwrap().settled_instalments, 2);
    assert_eq!(
        app.arrears_told().await,
        [("E1".to_owned(), 100, 1), ("E1".to_owned(), 0, 2)]
    );
    assert!(
        app.periods("E1", pb::InstalmentState::Overdue)
            .await
            .is_empty()
    );
    assert_eq!(app.settled_messages_naming("P1").await, 1);
}

#[tokio::test]
async fn r29_a_close_past_a_statements_worth_of_employees_tells_each_their_own_arrears_once() {
    // Arrange: 2,501 employees, two statements' worth and one more (1,000 a statement),
    // employee n owing n + 1 rials in 1405-09 (1 rial for the first) and 7 in 1405-10.
    let app = spawn_service().await;
    let employees = 2_501u32;
    let schedules: Vec<_> = (0..employees)
        .map(|n| {
            bulk_schedule(
                format!("P{n}"),
                n,
                &[("1405-09", i64::from(n) + 1), ("1405-10", 7)],
            )
        })
        .collect();
    app.store
        .record_schedules(&schedules, Utc::now())
        .await
        .unwrap();

    // Act: the close, then 1405-10's remittance paying the last employee's re-aged 2,501
    // and own 7.
    let closed = app.close("1405-09").await.unwrap();
    let told_at_close = app.arrears_told().await;
    let paid = app
        .remit("B-10", "1405-10", &[(national_id(employees - 1), 2_508)])
        .await
        .unwrap();

    // Assert: every employee told once, at version 1, with exactly their own amount.
    assert_eq!(closed.overdue_instalments, employees);
    assert_eq!(
        closed.overdue_amount,
        i64::from(employees) * (i64::from(employees) + 1) / 2
    );
    let mut told_at_close = told_at_close;
    told_at_close.sort();
    let mut expected: Vec<_> = (0..employees)
        .map(|n| (format!("E{n}"), i64::from(n) + 1, 1))
        .collect();
    expected.sort();
    assert_eq!(told_at_close, expected);
    // The last employee, in the last statement's chunk, is told again at version 2: none.
    assert_eq!(paid.result.unwrap().settled_instalments, 2);
    let told = app.arrears_told().await;
    assert_eq!(told.len(), expected.len() + 1);
    assert!(told.contains(&("E2500".to_owned(), 0, 2)));
}

#[tokio::test]
async fn r29_support_lists_every_overdue_instalment_and_finance_only_its_region() {
    let app = spawn_service().await;
    app.record(schedule("P1", 1, "1405-09", &[100])).await;
    app.close("1405-09").await.unwrap();

    let all = app.overdue(&staff(Role::Support), "").await.unwrap();
    let own = app.overdue(&finance("TEH-19"), "").await.unwrap();
    let other = app.overdue(&finance("TEH-20"), "").await.unwrap();
    let asked_other = app.overdue(&finance("TEH-19"), "teh-20").await.unwrap_err();
    let employee = app.overdue(&crate::employee("E1"), "").await.unwrap_err();

    assert_eq!(all.len(), 1);
    assert_eq!(all[0].national_id, national_id(1));
    assert_eq!(all[0].due_period, "1405-09");
    assert_eq!(all[0].period, "1405-10");
    assert_eq!(all[0].region_code, "TEH-19");
    assert_eq!(own.len(), 1);
    assert!(other.is_empty());
    assert_eq!(asked_other.code(), Code::PermissionDenied);
    assert_eq!(all[0].full_name, "Employee 1");
    assert_eq!(employee.code(), Code::PermissionDenied);
}

/// Returns the settlement service's audit trail, oldest first, without the remittances.
async fn staff_actions(app: &TestApp) -> Vec<tavana_kit::audit::AuditEntry> {
    let (mut entries, _) = tavana_kit::audit::list(
        &app.db.db,
        &tavana_kit::audit::AuditQuery {
            page_size: 20,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    entries.retain(|entry| entry.action != "remittance.record");
    entries.reverse();
    entries
}

#[tokio::test]
async fn r32_resolving_a_kept_line_and_closing_a_period_leave_one_audit_entry_each() {
    // Arrange: one line nobody owes is kept; a refused resolution records nothing.
    let app = spawn_service().await;
    app.record(schedule("P1", 1, "1405-09", &[100, 100])).await;
    app.remit("B-09", "1405-09", &[(national_id(7), 100)])
        .await
        .unwrap();
    let kept = app.queue(pb::UnmatchedLineStatus::Open).await.remove(0);
    let refused = app
        .resolve(pb::ResolveUnmatchedLineRequest {
            id: kept.id.clone(),
            national_id: national_id(1),
            period: "1405-08".into(),
            note: "wrong month".into(),
            ..Default::default()
        })
        .await;

    // Act
    let mut request = attach(
        pb::ResolveUnmatchedLineRequest {
            id: kept.id.clone(),
            national_id: national_id(1),
            period: "1405-09".into(),
            note: "typo in the bank file".into(),
            ..Default::default()
        },
        &staff(Role::Support),
    );
    request
        .metadata_mut()
        .insert("x-request-id", "req-resolve".parse().unwrap());
    app.client
        .clone()
        .resolve_unmatched_line(request)
        .await
        .unwrap();
    app.close("1405-09").await.unwrap();
    app.close("1405-09").await.unwrap();

    // Assert: the replayed close is not recorded again.
    assert!(refused.is_err());
    let trail = staff_actions(&app).await;
    let seen: Vec<(&str, &str)> = trail
        .iter()
        .map(|entry| (entry.action.as_str(), entry.subject.as_str()))
        .collect();
    assert_eq!(
        seen,
        [
            ("unmatched_line.resolve", kept.id.as_str()),
            ("period.close", &*format!("{ORG}/1405-09")),
        ]
    );
    assert_eq!(trail[0].request_id, "req-resolve");
    assert_eq!(trail[0].details["resolution"], "assigned");
    assert_eq!(trail[0].details["national_id"], national_id(1));
    assert_eq!(trail[1].details["overdue_instalments"], 0);
    for entry in &trail {
        assert_eq!(entry.actor.national_id, "0012345679");
        assert_eq!(entry.actor.roles, ["support"]);
    }
}
