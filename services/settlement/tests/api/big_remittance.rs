//! A 100,000-line remittance CSV, checked to the rial (R23).

use chrono::Utc;
use sea_orm::{ConnectionTrait, Statement};
use tavana_kit::caller::{Role, attach};
use tavana_proto::settlement::v1 as pb;

use crate::deductions::bulk_schedule;
use crate::{ORG, PERIOD, national_id, spawn_service, staff};

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
    let mut reader = csv::Reader::from_reader(csv_text.as_bytes());
    let lines: Vec<pb::RemittanceLine> = reader
        .records()
        .enumerate()
        .map(|(index, record)| {
            let record = record.unwrap();
            pb::RemittanceLine {
                national_id: record[0].to_owned(),
                amount: record[1].parse().unwrap(),
                line: index as u32 + 2,
                malformed_code: String::new(),
            }
        })
        .collect();
    assert_eq!(lines.len() as u32, LINES);

    let response = app
        .client
        .clone()
        .record_remittance(attach(
            pb::RecordRemittanceRequest {
                organization_id: ORG.into(),
                period: PERIOD.into(),
                bank_reference: "BR-BIG".into(),
                lines,
            },
            &staff(Role::Support),
        ))
        .await
        .unwrap()
        .into_inner();

    let result = response.result.unwrap();
    assert_eq!(result.settled_amount, expected_settled);
    assert_eq!(u64::from(result.settled_instalments), expected_count);
    let count = |code: &str| result.unmatched.iter().filter(|u| u.code == code).count() as u32;
    assert_eq!(count("amount_short"), short);
    assert_eq!(count("national_id_invalid"), invalid);
    assert_eq!(result.unmatched.len() as u32, short + invalid);
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
    assert_eq!(settled_rows as u64, expected_count);
    let settled_total: i64 = row.try_get("", "total").unwrap();
    assert_eq!(settled_total, expected_settled);
}
