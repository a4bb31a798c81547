//! HR data: upsert and CSV import (R1, R2), region scope (R6), mobile rule (R5).

use tavana_kit::caller::Caller;
use tavana_kit::error::ErrorKind;
use tavana_proto::identity::v1 as pb;

use crate::helpers::*;

fn data(n: u32, region: &str) -> pb::EmployeeData {
    pb::EmployeeData {
        national_id: national_id(n),
        full_name: format!("کارمند {n}"),
        mobile: mobile(n),
        organization_id: ORG.into(),
        region_code: region.into(),
        net_salary: 200_000_000,
        service_start_date: "2012-09-23".into(),
    }
}

async fn upsert(
    service: &TestService,
    data: pb::EmployeeData,
    caller: &Caller,
) -> Result<pb::UpsertEmployeeResponse, tonic::Status> {
    service
        .client
        .clone()
        .upsert_employee(as_caller(
            pb::UpsertEmployeeRequest { data: Some(data) },
            caller,
        ))
        .await
        .map(|r| r.into_inner())
}

#[tokio::test]
async fn r1_region_admin_creates_and_updates_employees_of_their_region() {
    let service = spawn_service().await;
    let admin = region_admin("R01");

    let created = upsert(&service, data(1, "R01"), &admin).await.unwrap();
    let mut raise = data(1, "R01");
    raise.net_salary = 250_000_000;
    let updated = upsert(&service, raise, &admin).await.unwrap();

    assert!(created.created);
    assert!(!updated.created);
    let employee = updated.employee.unwrap();
    assert_eq!(employee.employee_id, created.employee.unwrap().employee_id);
    assert_eq!(employee.net_salary, 250_000_000);
    assert_eq!(employee.service_start_date, "2012-09-23");
}

#[tokio::test]
async fn r6_region_admin_of_another_region_is_refused() {
    let service = spawn_service().await;
    service.add_employee(1, "R02").await;
    let admin = region_admin("R01");

    let other_region = upsert(&service, data(2, "R02"), &admin).await.unwrap_err();
    let pull_into_mine = upsert(&service, data(1, "R01"), &admin).await.unwrap_err();
    let push_out_of_mine = {
        service.add_employee(3, "R01").await;
        upsert(&service, data(3, "R02"), &admin).await.unwrap_err()
    };

    for refused in [other_region, pull_into_mine, push_out_of_mine] {
        assert_eq!(problem(refused).kind, ErrorKind::PermissionDenied);
    }
    // Support and services write any region.
    upsert(&service, data(1, "R01"), &support()).await.unwrap();
    upsert(&service, data(2, "R02"), &Caller::service("cli"))
        .await
        .unwrap();
}

#[tokio::test]
async fn r1_employees_cannot_write_hr_data() {
    let service = spawn_service().await;
    service.add_employee(1, "R01").await;
    let tokens = service.login(1).await;
    let employee = caller_of(&service, &tokens.access_token).await;
    let refused = upsert(&service, data(1, "R01"), &employee)
        .await
        .unwrap_err();
    assert_eq!(problem(refused).kind, ErrorKind::PermissionDenied);
    let anonymous = service
        .client
        .clone()
        .upsert_employee(pb::UpsertEmployeeRequest {
            data: Some(data(1, "R01")),
        })
        .await
        .unwrap_err();
    assert_eq!(problem(anonymous).kind, ErrorKind::Unauthenticated);
}

#[tokio::test]
async fn r2_upsert_reports_every_invalid_field() {
    let service = spawn_service().await;
    let mut bad = data(1, "R01");
    bad.national_id = "0012345678".into();
    bad.mobile = "0912".into();
    bad.net_salary = 0;
    let refused = problem(upsert(&service, bad, &support()).await.unwrap_err());
    assert_eq!(refused.kind, ErrorKind::InvalidArgument);
    let codes: Vec<&str> = refused.violations.iter().map(|v| v.code.as_str()).collect();
    assert_eq!(
        codes,
        [
            "national_id_invalid",
            "mobile_invalid",
            "net_salary_invalid"
        ]
    );
}

#[tokio::test]
async fn r1_unknown_organization_is_refused() {
    let service = spawn_service().await;
    let mut unknown = data(1, "R01");
    unknown.organization_id = "ORG-99".into();
    let refused = problem(upsert(&service, unknown, &support()).await.unwrap_err());
    assert_eq!(
        (refused.kind, refused.code.as_str()),
        (ErrorKind::RuleRefused, "organization_unknown")
    );
}

#[tokio::test]
async fn r5_upsert_cannot_change_the_mobile_of_an_account_holder() {
    let service = spawn_service().await;
    service.add_employee(1, "R01").await;
    service.add_employee(2, "R01").await;
    service.login(1).await;
    let admin = region_admin("R01");

    let mut moved = data(1, "R01");
    moved.mobile = mobile(77);
    let refused = problem(upsert(&service, moved, &admin).await.unwrap_err());
    assert_eq!(
        (refused.kind, refused.code.as_str()),
        (ErrorKind::RuleRefused, "mobile_change_requires_support")
    );

    // Without an account the HR office may still correct the mobile.
    let mut corrected = data(2, "R01");
    corrected.mobile = mobile(78);
    let employee = upsert(&service, corrected, &admin)
        .await
        .unwrap()
        .employee
        .unwrap();
    assert_eq!(employee.mobile, mobile(78));
    // The same mobile in any form is no change.
    let mut same = data(1, "R01");
    same.mobile = "+989120000001".into();
    same.full_name = "نام تازه".into();
    upsert(&service, same, &admin).await.unwrap();
}

/// Imports an HR CSV as R01's region admin.
async fn import_in_r01(service: &TestService, csv: String) -> pb::ImportEmployeesResponse {
    service
        .client
        .clone()
        .import_employees(as_caller(
            pb::ImportEmployeesRequest {
                csv: csv.into_bytes(),
            },
            &region_admin("R01"),
        ))
        .await
        .unwrap()
        .into_inner()
}

/// The rejected lines of an import, as (line, code).
fn rejected_lines(report: &pb::ImportEmployeesResponse) -> Vec<(u32, &str)> {
    report
        .rejected
        .iter()
        .map(|line| (line.line, line.code.as_str()))
        .collect()
}

#[tokio::test]
async fn r1_csv_import_rejects_only_the_bad_lines() {
    let service = spawn_service().await;
    service.add_employee(5, "R01").await;
    service.login(5).await;
    let csv = format!(
        "national_id,full_name,mobile,organization_id,region_code,net_salary,service_start_date\n\
         {},علی رضایی,{},ORG-01,R01,200000000,2012-09-23\n\
         0012345678,بد,{},ORG-01,R01,200000000,2012-09-23\n\
         {},مریم احمدی,{},ORG-99,R01,240000000,2005-09-23\n\
         {},حسن کریمی,{},ORG-01,R01,260000000,1380-07-01\n\
         {},کوتاه,{}\n\
         {},زهرا موسوی,۰۹۱۲۰۰۰۰۰۰۶,ORG-01,R01,250000000,2003-09-23\n\
         {},تغییر شماره,{},ORG-01,R01,200000000,2012-09-23\n\
         {},دیگر منطقه,{},ORG-01,R02,200000000,2012-09-23\n",
        national_id(1),
        mobile(1),
        mobile(2),
        national_id(3),
        mobile(3),
        national_id(4),
        mobile(4),
        national_id(7),
        mobile(7),
        national_id(6),
        national_id(5),
        mobile(55),
        national_id(8),
        mobile(8),
    );

    let report = import_in_r01(&service, csv).await;

    assert_eq!(report.created, 2);
    assert_eq!(report.updated, 0);
    let rejected = rejected_lines(&report);
    assert_eq!(
        rejected,
        [
            (3, "national_id_invalid"),
            (4, "organization_unknown"),
            (5, "service_start_date_invalid"),
            (6, "csv_columns_invalid"),
            (8, "mobile_change_requires_support"),
            (9, "permission_denied"),
        ]
    );
    assert!(
        report
            .rejected
            .iter()
            .all(|line| !line.message_en.is_empty() && !line.message_fa.is_empty())
    );
    let six = service
        .client
        .clone()
        .get_employee(as_caller(
            pb::GetEmployeeRequest {
                key: Some(pb::get_employee_request::Key::NationalId(national_id(6))),
            },
            &Caller::service("credit"),
        ))
        .await
        .unwrap()
        .into_inner()
        .employee
        .unwrap();
    assert_eq!(six.mobile, mobile(6));
}

#[tokio::test]
async fn r1_a_nul_in_a_csv_line_rejects_only_that_line() {
    let service = spawn_service().await;
    let csv = format!(
        "national_id,full_name,mobile,organization_id,region_code,net_salary,service_start_date\n\
         {},علی\u{0}رضایی,{},ORG-01,R01,200000000,2012-09-23\n\
         {},مریم احمدی,{},ORG-01,R01,240000000,2005-09-23\n",
        national_id(1),
        mobile(1),
        national_id(2),
        mobile(2),
    );

    let report = import_in_r01(&service, csv).await;

    assert_eq!(report.created, 1);
    let rejected = rejected_lines(&report);
    assert_eq!(rejected, [(2, "full_name_invalid")]);
}

#[tokio::test]
async fn r1_csv_with_a_wrong_header_is_refused_whole() {
    let service = spawn_service().await;
    let refused = service
        .client
        .clone()
        .import_employees(as_caller(
            pb::ImportEmployeesRequest {
                csv: b"id,name\n1,2\n".to_vec(),
            },
            &support(),
        ))
        .await
        .unwrap_err();
    let refused = problem(refused);
    assert_eq!(refused.kind, ErrorKind::InvalidArgument);
    assert_eq!(refused.violations[0].code, "csv_header_invalid");
}

#[tokio::test]
async fn admin_import_reports_like_the_rpc() {
    let service = spawn_service().await;
    let csv = format!(
        "national_id,full_name,mobile,organization_id,region_code,net_salary,service_start_date\n\
         {},علی,{},ORG-01,R01,1000,2012-09-23\n\
         {},علی,{},ORG-01,R01,1000,2012-09-23\n",
        national_id(1),
        mobile(1),
        national_id(1),
        mobile(1)
    );
    let report = tavana_identity::admin::import_employees(
        &service.db.db,
        csv.as_bytes(),
        &service.shared_clock(),
    )
    .await
    .unwrap();
    assert_eq!(
        (report.created, report.updated, report.rejected.len()),
        (1, 1, 0)
    );
}

#[tokio::test]
async fn r6_employee_reads_are_scoped() {
    let service = spawn_service().await;
    service.add_employee(1, "R01").await;
    service.add_employee(2, "R02").await;
    let tokens = service.login(1).await;
    let me = caller_of(&service, &tokens.access_token).await;
    let finance = staff(
        "f-1",
        vec![tavana_kit::caller::RoleGrant::regional(
            tavana_kit::caller::Role::RegionFinance,
            "R01",
        )],
    );
    let get = |n: u32, caller: Caller| {
        let mut client = service.client.clone();
        async move {
            client
                .get_employee(as_caller(
                    pb::GetEmployeeRequest {
                        key: Some(pb::get_employee_request::Key::NationalId(national_id(n))),
                    },
                    &caller,
                ))
                .await
        }
    };

    get(1, me.clone()).await.unwrap();
    get(1, finance.clone()).await.unwrap();
    assert_eq!(
        problem(get(2, me).await.unwrap_err()).code,
        "employee_not_found"
    );
    assert_eq!(
        problem(get(2, finance).await.unwrap_err()).code,
        "employee_not_found"
    );
    get(2, support()).await.unwrap();
}
