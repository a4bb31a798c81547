//! Large remittances, matched chunk by chunk, checked to the rial (R23).

use chrono::Utc;
use sea_orm::{ConnectionTrait, Statement};
use tavana_kit::caller::{Role, attach};
use tavana_proto::settlement::v1 as pb;
use tavana_settlement::delivery::NOTIFY_EMPLOYEES;
use tavana_settlement::store::REMITTANCE_CHUNK_LINES;

use crate::deductions::bulk_schedule;
use crate::{ORG, PERIOD, national_id, spawn_service, spawn_service_with, staff};

const LINES: u32 = 100_000;

fn due(n: u32) -> i64 {
    1_000_000 + i64::from(n % 977) * 1_003
}

#[tokio::test]
async fn r23_a_100_000_line_remittance_csv_settles_to_the_rial() {
    let app = spawn_service().await;
    let schedules: Vec<_> = (0..LINES)
        .map(|n| bulk_schedule(format!("P{n}"), n, &[(PERIOD, due(n)), ("1405-10", due(n))]))
        .collect();
    app.store
        .record_schedules(&schedules, Utc::now())
        .await
        .unwrap();
    if app.db.is_postgres() {
        // A bulk load straight into the table: give the planner the statistics that
        // autovacuum would gather after schedules arrive one by one.
        app.db.db.execute_unprepared("ANALYZE").await.unwrap();
    }

    // Every 1000th line pays one rial short; every 1000th (another) has a bad national ID.
    let mut csv_text = String::from("national_id,amount\n");
    let (mut expected_settled, mut expected_count) = (0i64, 0u64);
    let (mut short, mut invalid) = (0u32, 0u32);
    for n in 0..LINES {
        let (id, amount) = match n % 1000 {
            7 => {
                short += 1;
                (national_id(n), due(n) - 1)
            }
            13 => {
                invalid += 1;
                ("0012345678".to_owned(), due(n))
            }
            _ => {
                expected_settled += due(n);
                expected_count += 1;
                (national_id(n), due(n))
            }
        };
        csv_text.push_str(&format!("{id},{amount}\n"));
    }
    let response = app
        .client
        .clone()
        .record_remittance(attach(
            pb::RecordRemittanceRequest {
                organization_id: ORG.into(),
                period: PERIOD.into(),
                bank_reference: "BR-BIG".into(),
                // The file as the gateway forwards it: settlement reads it line by line.
                csv: csv_text.into_bytes(),
                ..Default::default()
            },
            &staff(Role::Support),
        ))
        .await
        .unwrap()
        .into_inner();

    let result = response.result.unwrap();
    assert_eq!(result.settled_amount, expected_settled);
    assert_eq!(u64::from(result.settled_instalments), expected_count);
    let count = |code: &str| {
        u32::try_from(result.unmatched.iter().filter(|u| u.code == code).count()).unwrap()
    };
    assert_eq!(count("amount_short"), short);
    assert_eq!(count("national_id_invalid"), invalid);
    assert_eq!(
        u32::try_from(result.unmatched.len()).unwrap(),
        short + invalid
    );
    // The books agree with the answer, to the rial.
    let backend = app.db.db.get_database_backend();
    let row = app
        .db
        .db
        .query_one_raw(Statement::from_string(
            backend,
            "SELECT COUNT(*) AS n, CAST(SUM(amount) AS BIGINT) AS total \
             FROM instalment WHERE state = 'settled'",
        ))
        .await
        .unwrap()
        .unwrap();
    let settled_rows: i64 = row.try_get("", "n").unwrap();
    assert_eq!(u64::try_from(settled_rows).unwrap(), expected_count);
    let settled_total: i64 = row.try_get("", "total").unwrap();
    assert_eq!(settled_total, expected_settled);
}

/// Reads the settlement SMS of one employee and remittance from the outbox's batches:
/// (instalments, amount). It must be there exactly once (R28).
async fn settlement_sms(
    app: &crate::TestApp,
    remittance_id: &str,
    employee_id: &str,
) -> (String, String) {
    use prost::Message;
    use tavana_proto::identity::v1::NotifyEmployeesRequest;

    let dedup_key = format!("settlement:{remittance_id}:{employee_id}");
    let found: Vec<_> = app
        .outbox(NOTIFY_EMPLOYEES)
        .await
        .iter()
        .flat_map(|(_, payload)| {
            NotifyEmployeesRequest::decode(payload.as_slice())
                .unwrap()
                .notifications
        })
        .filter(|notification| notification.dedup_key == dedup_key)
        .collect();
    let [request] = found.as_slice() else {
        panic!(
            "{} settlement SMS for {employee_id} in the outbox",
            found.len()
        );
    };
    (
        request.params["instalments"].clone(),
        request.params["amount"].clone(),
    )
}

#[tokio::test]
async fn r23_an_employee_whose_lines_straddle_a_chunk_boundary_is_matched_whole() {
    let app = spawn_service_with(true).await;
    // National IDs follow n. Employee `split` has the last line of the first chunk and the
    // first line of the next one, unless the chunk grows to keep the employee whole. The
    // first chunk reads a range of national IDs, the second looks its few employees up.
    let split = u32::try_from(REMITTANCE_CHUNK_LINES).unwrap() - 1;
    let never_bought = 5_000; // in the first chunk's range, but without instalments
    let later_only = 7_000; // owes only from a later period
    // The same in the second chunk, whose instalments are read and filed while the first
    // chunk settles, and whose known employees are looked up after.
    let later_only_next = split + 20;
    let last = split + 50;
    let schedules: Vec<_> = (0..=last)
        .filter(|n| *n != never_bought)
        .map(|n| {
            let amounts: &[(&str, i64)] = if n == split {
                &[(PERIOD, 30), (PERIOD, 30)]
            } else if n == later_only || n == later_only_next {
                &[("1405-10", due(n))]
            } else {
                &[(PERIOD, due(n))]
            };
            bulk_schedule(format!("P{n}"), n, amounts)
        })
        .collect();
    app.store
        .record_schedules(&schedules, Utc::now())
        .await
        .unwrap();

    // The split employee pays 30 first and 30 last in the document: with partial
    // settlement, the first line settles the first instalment and the second the other.
    let mut lines = vec![(national_id(split), 30)];
    let mut expected_unmatched = Vec::new();
    let mut expected_settled = 60i64;
    for n in (0..=last).filter(|n| *n != split) {
        lines.push((national_id(n), due(n)));
        let line = u32::try_from(lines.len()).unwrap();
        match n {
            _ if n == never_bought => expected_unmatched.push((line, "unknown_employee")),
            _ if n == later_only || n == later_only_next => {
                expected_unmatched.push((line, "nothing_due"))
            }
            _ => expected_settled += due(n),
        }
    }
    lines.push((national_id(last + 1_000), 10)); // never bought here, in the second chunk
    expected_unmatched.push((u32::try_from(lines.len()).unwrap(), "unknown_employee"));
    lines.push((national_id(split), 30));
    let response = app.remit("BR-SPLIT", PERIOD, &lines).await.unwrap();

    let result = response.result.unwrap();
    assert_eq!(result.settled_amount, expected_settled);
    // Every employee but three settles one instalment; the split one settles two.
    assert_eq!(result.settled_instalments, last - 1);
    let codes: Vec<(u32, &str)> = result
        .unmatched
        .iter()
        .map(|u| (u.line, u.code.as_str()))
        .collect();
    assert_eq!(codes, expected_unmatched);
    // One SMS counts both instalments the split employee's two lines settled.
    let sms = settlement_sms(&app, &result.remittance_id, &format!("E{split}")).await;
    assert_eq!(sms, ("2".to_owned(), "60".to_owned()));
    assert_eq!(app.settled_messages_naming(&format!("P{split}")).await, 1);
}

#[tokio::test]
async fn r23_an_instalment_changed_under_the_last_chunk_undoes_every_chunk_before_it() {
    let app = spawn_service().await;
    // Two chunks: the first settles and writes its messages, and the second is read and
    // matched meanwhile; then the second's update finds one row changed under it.
    let employees = u32::try_from(REMITTANCE_CHUNK_LINES).unwrap() + 10;
    let changed = employees - 1;
    let schedules: Vec<_> = (0..employees)
        .map(|n| bulk_schedule(format!("P{n}"), n, &[(PERIOD, due(n))]))
        .collect();
    app.store
        .record_schedules(&schedules, Utc::now())
        .await
        .unwrap();
    let skip = if app.db.is_postgres() {
        vec![
            format!(
                "CREATE FUNCTION skip_changed() RETURNS trigger AS $$ BEGIN \
                 IF OLD.purchase_id = 'P{changed}' THEN RETURN NULL; END IF; RETURN NEW; END $$ \
                 LANGUAGE plpgsql"
            ),
            "CREATE TRIGGER skip_changed BEFORE UPDATE ON instalment \
             FOR EACH ROW EXECUTE FUNCTION skip_changed()"
                .to_owned(),
        ]
    } else {
        vec![format!(
            "CREATE TRIGGER skip_changed BEFORE UPDATE ON instalment \
             WHEN OLD.purchase_id = 'P{changed}' BEGIN SELECT RAISE(IGNORE); END"
        )]
    };
    for statement in skip {
        app.db.db.execute_unprepared(&statement).await.unwrap();
    }
    let lines: Vec<(String, i64)> = (0..employees).map(|n| (national_id(n), due(n))).collect();

    let refused = app.remit("BR-TWO", PERIOD, &lines).await.unwrap_err();

    assert_eq!(refused.code(), tonic::Code::Aborted);
    let db = &app.db.db;
    let count = |sql: &'static str| async move {
        db.query_one_raw(Statement::from_string(db.get_database_backend(), sql))
            .await
            .unwrap()
            .unwrap()
            .try_get::<i64>("", "n")
            .unwrap()
    };
    let settled = count("SELECT COUNT(*) AS n FROM instalment WHERE state <> 'unsettled'").await;
    assert_eq!(settled, 0, "the first chunk's settle was kept");
    let outbox = count("SELECT COUNT(*) AS n FROM outbox").await;
    assert_eq!(outbox, 0, "the first chunk's messages were kept");
}
