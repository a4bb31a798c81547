//! The deduction list (R22), streamed in batches of whole employees.

use chrono::Utc;
use tavana_kit::caller::Role;
use tavana_kit::ids::NationalId;
use tavana_kit::jalali::JalaliPeriod;
use tavana_kit::money::Rial;
use tavana_proto::settlement::v1::stream_deduction_list_response::Item;
use tavana_settlement::domain::instalment::ScheduledInstalment;
use tavana_settlement::rpc::{DEDUCTION_BATCH_ROWS, DEDUCTION_MESSAGE_ROWS};
use tavana_settlement::store::NewSchedule;
use tonic::Code;

use crate::{
    MONTHLY_CREDIT, ORG, PERIOD, REGION, employee, national_id, schedule, spawn_service, staff,
};

pub fn bulk_schedule(purchase_id: String, n: u32, amounts: &[(&str, i64)]) -> NewSchedule {
    NewSchedule {
        purchase_id,
        employee_id: format!("E{n}"),
        national_id: NationalId::parse(&national_id(n)).unwrap(),
        full_name: format!("Employee {n}"),
        organization_id: ORG.into(),
        merchant_id: "M1".into(),
        merchant_name: "Digikala".into(),
        instalments: amounts
            .iter()
            .enumerate()
            .map(|(index, (period, amount))| ScheduledInstalment {
                seq: u32::try_from(index).unwrap() + 1,
                period: JalaliPeriod::parse(period).unwrap(),
                amount: Rial(*amount),
            })
            .collect(),
        version: 1,
        monthly_credit: Rial(MONTHLY_CREDIT),
        guarantor_employee_id: String::new(),
        region_code: REGION.into(),
    }
}

#[tokio::test]
async fn r22_the_list_has_one_row_per_employee_in_national_id_order_across_batches() {
    let app = spawn_service().await;
    let employees = u32::try_from(DEDUCTION_BATCH_ROWS).unwrap() * 2 + 500;
    let mut schedules = Vec::new();
    for n in 0..employees {
        schedules.push(bulk_schedule(
            format!("A{n}"),
            n,
            &[(PERIOD, 100 + i64::from(n % 7))],
        ));
        if n % 3 == 0 {
            schedules.push(bulk_schedule(
                format!("B{n}"),
                n,
                &[("1405-08", 5), (PERIOD, 7)],
            ));
        }
    }
    app.store
        .record_schedules(&schedules, Utc::now())
        .await
        .unwrap();
    // A settled instalment stays on the list; another period's does not.
    app.remit("BR-1", PERIOD, &[(national_id(0), 100 + 5 + 7)])
        .await
        .unwrap();

    let (rows, totals) = app.deductions(&staff(Role::Support), PERIOD).await.unwrap();

    assert_eq!(u32::try_from(rows.len()).unwrap(), employees);
    assert!(rows.windows(2).all(|w| w[0].national_id < w[1].national_id));
    let expected: i64 = (0..employees)
        .map(|n| 100 + i64::from(n % 7) + if n % 3 == 0 { 7 } else { 0 })
        .sum();
    assert_eq!(totals.total, expected);
    assert_eq!(rows.iter().map(|r| r.total).sum::<i64>(), expected);
    assert_eq!(u32::try_from(totals.employees).unwrap(), employees);
    assert_eq!(
        totals.instalments,
        u64::from(employees + employees.div_ceil(3))
    );
    let first = rows
        .iter()
        .find(|r| r.national_id == national_id(0))
        .unwrap();
    assert_eq!(first.instalments.len(), 2);
    assert_eq!(first.total, 107);
    assert_eq!(first.full_name, "Employee 0");
    // Rows come a batch per message (at most DEDUCTION_MESSAGE_ROWS), never an empty one.
    let messages = app
        .deduction_messages(&staff(Role::Support), PERIOD)
        .await
        .unwrap();
    let sizes: Vec<usize> = messages
        .iter()
        .filter_map(|message| match message {
            Item::Rows(batch) => Some(batch.rows.len()),
            Item::Totals(_) => None,
        })
        .collect();
    assert!(
        sizes
            .iter()
            .all(|size| (1..=DEDUCTION_MESSAGE_ROWS).contains(size)),
        "{sizes:?}"
    );
    assert!(sizes.len() < employees as usize / 500, "{sizes:?}");
    assert_eq!(sizes.iter().sum::<usize>(), employees as usize);
}

#[tokio::test]
async fn r22_support_and_contracts_read_the_list_and_nobody_else() {
    let app = spawn_service().await;
    app.record(schedule("P1", 1, PERIOD, &[40])).await;

    for role in [Role::Support, Role::Contracts] {
        let (rows, totals) = app.deductions(&staff(role), PERIOD).await.unwrap();
        assert_eq!((rows.len(), totals.total), (1, 40));
    }
    for caller in [employee("E1"), staff(Role::RegionFinance)] {
        let error = app.deductions(&caller, PERIOD).await.unwrap_err();
        assert_eq!(error.code(), Code::PermissionDenied);
    }
    let error = app
        .deductions(&staff(Role::Support), "1405-9")
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::InvalidArgument);
    let (rows, totals) = app
        .deductions(&staff(Role::Support), "1405-11")
        .await
        .unwrap();
    assert!(rows.is_empty());
    assert_eq!(totals.total, 0);
}

#[tokio::test]
async fn r22_a_batch_holds_whole_employees_and_one_larger_than_a_batch_comes_alone() {
    let app = spawn_service().await;
    // Employee 2 owes five instalments this period, more than a batch of three holds.
    let mut schedules = vec![bulk_schedule("P1".into(), 1, &[(PERIOD, 10)])];
    for purchase in 0..5 {
        schedules.push(bulk_schedule(format!("P2-{purchase}"), 2, &[(PERIOD, 20)]));
    }
    schedules.push(bulk_schedule("P3".into(), 3, &[(PERIOD, 30)]));
    app.store
        .record_schedules(&schedules, Utc::now())
        .await
        .unwrap();
    let period = JalaliPeriod::parse(PERIOD).unwrap();

    let mut batches: Vec<Vec<String>> = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let batch = app
            .store
            .deduction_batch(ORG, period, after.as_deref(), 3)
            .await
            .unwrap();
        let Some(last) = batch.last() else {
            break;
        };
        after = Some(last.national_id.clone());
        batches.push(batch.into_iter().map(|entry| entry.national_id).collect());
    }

    assert_eq!(
        batches,
        [
            vec![national_id(1)],
            vec![national_id(2); 5],
            vec![national_id(3)],
        ]
    );
}
