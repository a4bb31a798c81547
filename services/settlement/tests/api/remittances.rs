//! Remittances (R23): matching, unmatched codes, replayed bank references.

use sea_orm::ConnectionTrait;
use tavana_kit::caller::{Role, attach};
use tavana_proto::settlement::v1 as pb;
use tonic::Code;

use crate::{
    ORG, PERIOD, codes, employee, national_id, schedule, spawn_service, spawn_service_with, staff,
};

fn result(response: &pb::RecordRemittanceResponse) -> &pb::RemittanceResult {
    response.result.as_ref().unwrap()
}

#[tokio::test]
async fn r23_every_unmatched_code_is_reported_and_settles_nothing() {
    let app = spawn_service().await;
    app.record(schedule("P1", 1, PERIOD, &[40])).await;
    app.record(schedule("P2", 2, PERIOD, &[50])).await;
    // Employee 3 owes only from a later period.
    app.record(schedule("P3", 3, "1405-10", &[60])).await;

    let response = app
        .remit(
            "BR-1",
            PERIOD,
            &[
                ("0012345678".into(), 40), // bad check digit
                (national_id(1), 0),
                (national_id(1), -40),
                (national_id(99), 40), // never bought in this organization
                (national_id(3), 60),  // nothing due up to 1405-09
                (national_id(1), 39),
                (national_id(2), 51),
            ],
        )
        .await
        .unwrap();

    assert_eq!(
        codes(&response),
        [
            (1, "national_id_invalid".to_owned()),
            (2, "amount_not_positive".to_owned()),
            (3, "amount_not_positive".to_owned()),
            (4, "unknown_employee".to_owned()),
            (5, "nothing_due".to_owned()),
            (6, "amount_short".to_owned()),
            (7, "amount_over".to_owned()),
        ]
    );
    assert_eq!(result(&response).settled_instalments, 0);
    assert_eq!(result(&response).settled_amount, 0);
    assert_eq!(
        app.my_instalments("E1", pb::InstalmentState::Settled)
            .await
            .len(),
        0
    );

    // Support reads the same lines back.
    let stored = app
        .client
        .clone()
        .get_remittance(attach(
            pb::GetRemittanceRequest {
                remittance_id: result(&response).remittance_id.clone(),
            },
            &staff(Role::Support),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        stored.result.unwrap().unmatched,
        result(&response).unmatched
    );
}

#[tokio::test]
async fn r23_a_bad_period_rejects_the_whole_remittance() {
    let app = spawn_service().await;
    let error = app
        .remit("BR-1", "1405-13", &[(national_id(1), 40)])
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::InvalidArgument);
}

fn csv_request(bank_reference: &str, csv: &str) -> pb::RecordRemittanceRequest {
    pb::RecordRemittanceRequest {
        organization_id: ORG.into(),
        period: PERIOD.into(),
        bank_reference: bank_reference.into(),
        csv: csv.as_bytes().to_vec(),
        ..Default::default()
    }
}

#[tokio::test]
async fn r23_the_banks_csv_settles_to_the_rial_and_keeps_every_unreadable_line() {
    let app = spawn_service().await;
    // Edge amounts: one rial, and a remainder that only the second line pays.
    app.record(schedule("P1", 1, PERIOD, &[1])).await;
    app.record(schedule("P2", 2, PERIOD, &[1_000_001])).await;
    let csv = format!(
        "\u{FEFF}amount,national_id\r\n1,{one}\n\n1_000_001,{two}\nabc,{two}\n7\n\"x,{one}\n",
        one = national_id(1),
        two = national_id(2),
    );

    let response = app
        .send_remittance(csv_request("BR-CSV", &csv))
        .await
        .unwrap();

    assert_eq!(result(&response).settled_instalments, 2);
    assert_eq!(result(&response).settled_amount, 1_000_002);
    // Lines keep their number in the file (the header is 1, the blank line 3 counts).
    assert_eq!(
        codes(&response),
        [
            (5, "amount_invalid".to_owned()),
            (6, "line_malformed".to_owned()),
            (7, "line_malformed".to_owned()),
        ]
    );
    assert_eq!(
        app.my_instalments("E1", pb::InstalmentState::Settled)
            .await
            .len(),
        1
    );
}

#[tokio::test]
async fn r23_a_nul_in_a_banks_line_is_kept_for_review_and_the_rest_settles() {
    let app = spawn_service().await;
    app.record(schedule("P1", 1, PERIOD, &[40])).await;
    let csv = format!(
        "national_id,amount\n00123\u{0}45679,40\n{},40\n",
        national_id(1)
    );

    let response = app
        .send_remittance(csv_request("BR-NUL", &csv))
        .await
        .unwrap();

    assert_eq!(result(&response).settled_amount, 40);
    let kept = &result(&response).unmatched;
    assert_eq!(kept.len(), 1);
    assert_eq!(kept[0].line, 2);
    assert_eq!(kept[0].code, "national_id_invalid");
    assert_eq!(kept[0].national_id, "00123\u{FFFD}45679");
}

#[tokio::test]
async fn r23_a_csv_without_its_header_or_beside_lines_is_refused_and_records_nothing() {
    let app = spawn_service().await;
    app.record(schedule("P1", 1, PERIOD, &[40])).await;
    let violation = |status: tonic::Status| {
        assert_eq!(status.code(), Code::InvalidArgument);
        let problem = tavana_kit::error::Problem::from_status(&status);
        let violation = &problem.violations[0];
        (violation.field.clone(), violation.code.clone())
    };

    let headless = format!("{},40\n", national_id(1));
    let refused = app
        .send_remittance(csv_request("BR-1", &headless))
        .await
        .unwrap_err();
    assert_eq!(
        violation(refused),
        ("csv".to_owned(), "csv_header_invalid".to_owned())
    );

    let mut both = csv_request("BR-1", &format!("national_id,amount\n{headless}"));
    both.lines.push(pb::RemittanceLine {
        national_id: national_id(1),
        amount: 40,
        ..Default::default()
    });
    let refused = app.send_remittance(both).await.unwrap_err();
    assert_eq!(
        violation(refused),
        ("csv".to_owned(), "csv_with_lines".to_owned())
    );

    // Neither was recorded: the bank reference is still free and the instalment still due.
    let response = app
        .remit("BR-1", PERIOD, &[(national_id(1), 40)])
        .await
        .unwrap();
    assert!(!response.replayed);
    assert_eq!(result(&response).settled_amount, 40);
}

#[tokio::test]
async fn r23_only_support_records_and_reads_remittances() {
    let app = spawn_service().await;
    let request = pb::RecordRemittanceRequest {
        organization_id: ORG.into(),
        period: PERIOD.into(),
        bank_reference: "BR-1".into(),
        ..Default::default()
    };
    for caller in [staff(Role::Contracts), employee("E1")] {
        let error = app
            .client
            .clone()
            .record_remittance(attach(request.clone(), &caller))
            .await
            .unwrap_err();
        assert_eq!(error.code(), Code::PermissionDenied);
    }
    let error = app
        .client
        .clone()
        .get_remittance(attach(
            pb::GetRemittanceRequest {
                remittance_id: "x".into(),
            },
            &staff(Role::Support),
        ))
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::NotFound);
}

#[tokio::test]
async fn r23_one_line_pays_what_its_period_asks_of_two_purchases_of_one_employee() {
    let app = spawn_service().await;
    app.record(schedule("P1", 1, "1405-08", &[30, 30])).await; // 1405-08, 1405-09
    app.record(schedule("P2", 1, PERIOD, &[25, 25])).await; // 1405-09, 1405-10
    app.remit("BR-0", "1405-08", &[(national_id(1), 30)])
        .await
        .unwrap();

    // 30 (P1) + 25 (P2) are what 1405-09's list asks.
    let response = app
        .remit("BR-1", PERIOD, &[(national_id(1), 55)])
        .await
        .unwrap();

    assert!(codes(&response).is_empty());
    assert_eq!(result(&response).settled_instalments, 2);
    assert_eq!(result(&response).settled_amount, 55);
    let unsettled = app
        .my_instalments("E1", pb::InstalmentState::Unsettled)
        .await;
    assert_eq!(unsettled.len(), 1);
    assert_eq!(
        (
            unsettled[0].purchase_id.as_str(),
            unsettled[0].period.as_str()
        ),
        ("P2", "1405-10")
    );
    // P1 is finished; P2 is not.
    let finished = app
        .my_instalments("E1", pb::InstalmentState::Finished)
        .await;
    assert_eq!(finished.len(), 2);
    assert!(
        finished
            .iter()
            .all(|i| i.purchase_id == "P1" && i.settled_at.is_some())
    );
    app.wait_for(|d| d.settled_purchases() == ["P1"]).await;
}

#[tokio::test]
async fn r23_a_second_line_for_one_employee_sees_what_the_first_settled() {
    let app = spawn_service().await;
    app.record(schedule("P1", 1, PERIOD, &[30])).await;

    let response = app
        .remit(
            "BR-1",
            PERIOD,
            &[(national_id(1), 30), (national_id(1), 30)],
        )
        .await
        .unwrap();

    assert_eq!(codes(&response), [(2, "nothing_due".to_owned())]);
    assert_eq!(result(&response).settled_amount, 30);
}

#[tokio::test]
async fn r23_the_same_bank_reference_again_returns_the_first_result_and_settles_nothing() {
    let app = spawn_service().await;
    app.record(schedule("P1", 1, PERIOD, &[30, 30])).await;
    let first = app
        .remit("BR-1", PERIOD, &[(national_id(1), 30)])
        .await
        .unwrap();
    assert!(!first.replayed);

    // Next month's remittance under the same reference would pay the second instalment.
    let again = app
        .remit("BR-1", "1405-10", &[(national_id(1), 30)])
        .await
        .unwrap();

    assert!(again.replayed);
    assert_eq!(again.result, first.result);
    assert_eq!(
        app.my_instalments("E1", pb::InstalmentState::Unsettled)
            .await
            .len(),
        1
    );
}

#[tokio::test]
async fn r23_concurrent_remittances_with_one_bank_reference_settle_once() {
    let app = spawn_service().await;
    for n in 1..=20 {
        app.record(schedule(&format!("P{n}"), n, PERIOD, &[30, 30]))
            .await;
    }
    let lines: Vec<(String, i64)> = (1..=20).map(|n| (national_id(n), 30)).collect();

    let attempts = (0..4).map(|_| app.remit("BR-1", PERIOD, &lines));
    let responses = futures::future::join_all(attempts).await;

    let responses: Vec<_> = responses.into_iter().map(Result::unwrap).collect();
    assert_eq!(responses.iter().filter(|r| !r.replayed).count(), 1);
    let id = &result(&responses[0]).remittance_id;
    assert!(responses.iter().all(|r| &result(r).remittance_id == id));
    let (_, totals) = app
        .deductions(&staff(Role::Support), "1405-10")
        .await
        .unwrap();
    assert_eq!(totals.total, 600);
    let settled = app.my_instalments("E1", pb::InstalmentState::Settled).await;
    assert_eq!(settled.len(), 1);
}

#[tokio::test]
async fn r23_partial_settlement_when_configured_pays_whole_instalments_oldest_first() {
    let app = spawn_service_with(true).await;
    app.record(schedule("P1", 1, PERIOD, &[30])).await;
    app.record(schedule("P2", 1, PERIOD, &[30])).await;

    let response = app
        .remit("BR-1", PERIOD, &[(national_id(1), 45)])
        .await
        .unwrap();

    assert_eq!(result(&response).settled_amount, 30);
    let unmatched = &result(&response).unmatched;
    assert_eq!(
        (unmatched[0].code.as_str(), unmatched[0].amount),
        ("amount_short", 15)
    );
    let settled = app.my_instalments("E1", pb::InstalmentState::Settled).await;
    assert_eq!(settled.len(), 1);
    assert_eq!(settled[0].purchase_id, "P1");
}

#[tokio::test]
async fn r23_an_instalment_changed_under_the_remittance_aborts_it_and_settles_nothing() {
    let app = spawn_service().await;
    app.record(schedule("P1", 1, PERIOD, &[30])).await;
    app.record(schedule("P2", 2, PERIOD, &[40])).await;
    // Stands in for a writer that changes P2's instalment between the remittance's read and
    // its update: the update leaves that row alone.
    let skip_p2 = if app.db.is_postgres() {
        vec![
            "CREATE FUNCTION skip_p2() RETURNS trigger AS $$ BEGIN \
             IF OLD.purchase_id = 'P2' THEN RETURN NULL; END IF; RETURN NEW; END $$ \
             LANGUAGE plpgsql",
            "CREATE TRIGGER skip_p2 BEFORE UPDATE ON instalment \
             FOR EACH ROW EXECUTE FUNCTION skip_p2()",
        ]
    } else {
        vec![
            "CREATE TRIGGER skip_p2 BEFORE UPDATE ON instalment \
             WHEN OLD.purchase_id = 'P2' BEGIN SELECT RAISE(IGNORE); END",
        ]
    };
    for statement in skip_p2 {
        app.db.db.execute_unprepared(statement).await.unwrap();
    }
    let lines = [(national_id(1), 30), (national_id(2), 40)];

    let refused = app.remit("BR-1", PERIOD, &lines).await.unwrap_err();

    assert_eq!(refused.code(), Code::Aborted);
    assert!(
        app.my_instalments("E1", pb::InstalmentState::Settled)
            .await
            .is_empty()
    );
    // Nothing was kept: once the change is over, the same bank reference settles both.
    let drop = if app.db.is_postgres() {
        "DROP TRIGGER skip_p2 ON instalment"
    } else {
        "DROP TRIGGER skip_p2"
    };
    app.db.db.execute_unprepared(drop).await.unwrap();
    let response = app.remit("BR-1", PERIOD, &lines).await.unwrap();
    assert!(!response.replayed);
    assert_eq!(result(&response).settled_amount, 70);
}

#[tokio::test]
async fn r32_a_remittance_leaves_one_audit_entry_and_its_replay_none() {
    let app = spawn_service().await;

    let first = app.remit("BR-AUDIT", PERIOD, &[]).await.unwrap();
    app.remit("BR-AUDIT", PERIOD, &[]).await.unwrap();

    let (entries, _) = tavana_kit::audit::list(
        &app.db.db,
        &tavana_kit::audit::AuditQuery {
            page_size: 10,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].action, "remittance.record");
    assert_eq!(entries[0].subject, ORG);
    assert_eq!(
        entries[0].details["remittance_id"],
        result(&first).remittance_id
    );
    assert_eq!(entries[0].details["bank_reference"], "BR-AUDIT");
    assert_eq!(entries[0].actor.roles, ["support"]);
}
