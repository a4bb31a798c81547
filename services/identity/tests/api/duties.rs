//! R32: nobody grants or revokes their own roles, and every staff action of identity
//! leaves exactly one audit entry with its actor, subject and request id.

use std::collections::BTreeMap;

use tavana_kit::audit::{AuditEntry, AuditQuery, list};
use tavana_kit::caller::{Caller, Role, RoleGrant};
use tavana_kit::error::ErrorKind;
use tavana_proto::identity::v1 as pb;

use crate::helpers::*;

fn with_request_id<T>(message: T, caller: &Caller, request_id: &str) -> tonic::Request<T> {
    let mut request = as_caller(message, caller);
    request
        .metadata_mut()
        .insert("x-request-id", request_id.parse().unwrap());
    request
}

/// Every entry made by users (leaving out the admin command line that set the test up).
async fn staff_entries(service: &TestService) -> Vec<AuditEntry> {
    let (entries, _) = list(
        &service.db.db,
        &AuditQuery {
            page_size: 100,
            ..AuditQuery::default()
        },
    )
    .await
    .unwrap();
    entries
        .into_iter()
        .filter(|entry| !entry.actor.national_id.is_empty())
        .collect()
}

async fn roles_of(service: &TestService, national_id: &str) -> Vec<pb::RoleGrant> {
    service
        .client
        .clone()
        .get_employee(as_caller(
            pb::GetEmployeeRequest {
                key: Some(pb::get_employee_request::Key::NationalId(
                    national_id.into(),
                )),
            },
            &Caller::service("guarantee"),
        ))
        .await
        .unwrap()
        .into_inner()
        .employee
        .unwrap()
        .roles
}

#[tokio::test]
async fn r32_support_granting_itself_a_role_is_refused_and_nothing_changes() {
    let service = spawn_service().await;
    // support() acts with national_id(999).
    service.add_employee(999, "R01").await;
    let before = roles_of(&service, &national_id(999)).await;

    let granted = service
        .client
        .clone()
        .grant_role(as_caller(
            pb::GrantRoleRequest {
                national_id: national_id(999),
                role: pb::Role::Contracts as i32,
                region_code: None,
            },
            &support(),
        ))
        .await
        .unwrap_err();
    let revoked = service
        .client
        .clone()
        .revoke_role(as_caller(
            pb::RevokeRoleRequest {
                national_id: national_id(999),
                role: pb::Role::Support as i32,
                region_code: None,
            },
            &support(),
        ))
        .await
        .unwrap_err();

    for refused in [granted, revoked] {
        let problem = problem(refused);
        assert_eq!(problem.kind, ErrorKind::PermissionDenied);
        assert_eq!(problem.code, "own_role");
    }
    assert_eq!(roles_of(&service, &national_id(999)).await, before);
    assert!(staff_entries(&service).await.is_empty());
}

#[tokio::test]
async fn r32_every_staff_action_of_identity_leaves_one_audit_entry() {
    let service = spawn_service().await;
    service.add_employee(1, "R01").await;
    service.add_employee(2, "R01").await;
    let contracts = staff("contracts-1", vec![RoleGrant::global(Role::Contracts)]);
    let admin = region_admin("R01");
    let client = service.client.clone();

    client
        .clone()
        .grant_role(with_request_id(
            pb::GrantRoleRequest {
                national_id: national_id(1),
                role: pb::Role::RegionFinance as i32,
                region_code: Some("R01".into()),
            },
            &support(),
            "req-grant",
        ))
        .await
        .unwrap();
    client
        .clone()
        .revoke_role(with_request_id(
            pb::RevokeRoleRequest {
                national_id: national_id(1),
                role: pb::Role::RegionFinance as i32,
                region_code: Some("R01".into()),
            },
            &support(),
            "req-revoke",
        ))
        .await
        .unwrap();
    client
        .clone()
        .change_mobile(with_request_id(
            pb::ChangeMobileRequest {
                national_id: national_id(2),
                new_mobile: mobile(500),
                requested_by_unit: "واحد رفاه منطقه ۱".into(),
                reference: "REF-1".into(),
            },
            &support(),
            "req-mobile",
        ))
        .await
        .unwrap();
    let mut edited = raw_employee(3, "R01");
    edited.net_salary = "1".into();
    client
        .clone()
        .upsert_employee(with_request_id(
            pb::UpsertEmployeeRequest {
                data: Some(pb::EmployeeData {
                    national_id: national_id(3),
                    full_name: edited.full_name,
                    mobile: mobile(3),
                    organization_id: ORG.into(),
                    region_code: "R01".into(),
                    net_salary: 1,
                    service_start_date: "2012-09-23".into(),
                }),
            },
            &admin,
            "req-edit",
        ))
        .await
        .unwrap();
    let csv = format!(
        "national_id,full_name,mobile,organization_id,region_code,net_salary,service_start_date\n{},x,{},{ORG},R01,100,2012-09-23\n",
        national_id(4),
        mobile(4)
    );
    client
        .clone()
        .import_employees(with_request_id(
            pb::ImportEmployeesRequest {
                csv: csv.into_bytes(),
            },
            &admin,
            "req-import",
        ))
        .await
        .unwrap();
    client
        .clone()
        .set_organization_contract(with_request_id(
            pb::SetOrganizationContractRequest {
                organization_id: ORG.into(),
                in_force: false,
            },
            &contracts,
            "req-contract",
        ))
        .await
        .unwrap();

    let entries = staff_entries(&service).await;
    let by_action: BTreeMap<&str, Vec<&AuditEntry>> =
        entries.iter().fold(BTreeMap::new(), |mut map, entry| {
            map.entry(entry.action.as_str()).or_default().push(entry);
            map
        });
    let expected = [
        ("role.grant", national_id(1), "req-grant"),
        ("role.revoke", national_id(1), "req-revoke"),
        ("employee.mobile_change", national_id(2), "req-mobile"),
        ("employee.upsert", national_id(3), "req-edit"),
        ("employee.import", "employees".to_owned(), "req-import"),
        ("organization.contract", ORG.to_owned(), "req-contract"),
    ];
    assert_eq!(entries.len(), expected.len(), "{entries:#?}");
    for (action, subject, request_id) in expected {
        let found = &by_action[action];
        assert_eq!(found.len(), 1, "{action}");
        assert_eq!(found[0].subject, subject, "{action}");
        assert_eq!(found[0].request_id, request_id, "{action}");
        assert_eq!(found[0].actor.national_id, national_id(999), "{action}");
    }
    assert_eq!(
        by_action["role.grant"][0].actor.roles,
        ["employee", "support"]
    );
    assert_eq!(by_action["role.grant"][0].details["role"], "region_finance");
    assert_eq!(by_action["employee.import"][0].details["created"], 1);
}
