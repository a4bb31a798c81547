//! Organizations and their contract flag, and role grants (R6).

use tavana_kit::caller::{Caller, Role, RoleGrant};
use tavana_kit::error::ErrorKind;
use tavana_proto::identity::v1 as pb;

use crate::helpers::*;

#[tokio::test]
async fn contracts_add_organizations_and_set_their_contract() {
    let service = spawn_service().await;
    let contracts = staff("c-1", vec![RoleGrant::global(Role::Contracts)]);

    let added = service
        .client
        .clone()
        .add_organization(as_caller(
            pb::AddOrganizationRequest {
                organization_id: "ORG-02".into(),
                name: "اداره آموزش و پرورش منطقه ۶".into(),
                contract_in_force: true,
            },
            &contracts,
        ))
        .await
        .unwrap()
        .into_inner()
        .organization
        .unwrap();
    assert!(added.contract_in_force);
    let suspended = service
        .client
        .clone()
        .set_organization_contract(as_caller(
            pb::SetOrganizationContractRequest {
                organization_id: "ORG-02".into(),
                in_force: false,
            },
            &contracts,
        ))
        .await
        .unwrap()
        .into_inner()
        .organization
        .unwrap();
    assert!(!suspended.contract_in_force);

    let read = service
        .client
        .clone()
        .get_organization(as_caller(
            pb::GetOrganizationRequest {
                organization_id: "ORG-02".into(),
            },
            &Caller::service("credit"),
        ))
        .await
        .unwrap()
        .into_inner()
        .organization
        .unwrap();
    assert!(!read.contract_in_force);
    assert_eq!(read.name, "اداره آموزش و پرورش منطقه ۶");
}

#[tokio::test]
async fn others_cannot_change_contracts_and_unknown_organizations_are_not_found() {
    let service = spawn_service().await;
    let refused = service
        .client
        .clone()
        .set_organization_contract(as_caller(
            pb::SetOrganizationContractRequest {
                organization_id: ORG.into(),
                in_force: false,
            },
            &support(),
        ))
        .await
        .unwrap_err();
    assert_eq!(problem(refused).kind, ErrorKind::PermissionDenied);
    let missing = service
        .client
        .clone()
        .get_organization(as_caller(
            pb::GetOrganizationRequest {
                organization_id: "NOPE".into(),
            },
            &Caller::service("credit"),
        ))
        .await
        .unwrap_err();
    assert_eq!(problem(missing).code, "organization_not_found");
}

#[tokio::test]
async fn r6_support_grants_and_revokes_regional_roles() {
    let service = spawn_service().await;
    service.add_employee(1, "R01").await;
    let grant = pb::GrantRoleRequest {
        national_id: national_id(1),
        role: pb::Role::RegionAdmin as i32,
        region_code: Some("r02".into()),
    };

    let granted = service
        .client
        .clone()
        .grant_role(as_caller(grant.clone(), &support()))
        .await
        .unwrap()
        .into_inner()
        .roles;
    // Granting twice changes nothing.
    service
        .client
        .clone()
        .grant_role(as_caller(grant, &Caller::service("cli")))
        .await
        .unwrap();

    assert_eq!(
        granted,
        [pb::RoleGrant {
            role: pb::Role::RegionAdmin as i32,
            region_code: Some("R02".into())
        }]
    );
    let tokens = service.login(1).await;
    assert_eq!(
        claims(&service, &tokens.access_token).await.roles,
        ["employee", "region_admin@R02"]
    );
    let revoked = service
        .client
        .clone()
        .revoke_role(as_caller(
            pb::RevokeRoleRequest {
                national_id: national_id(1),
                role: pb::Role::RegionAdmin as i32,
                region_code: Some("R02".into()),
            },
            &support(),
        ))
        .await
        .unwrap()
        .into_inner()
        .roles;
    assert!(revoked.is_empty());
}

#[tokio::test]
async fn r6_roles_need_support_and_a_region_when_regional() {
    let service = spawn_service().await;
    service.add_employee(1, "R01").await;
    let refused = service
        .client
        .clone()
        .grant_role(as_caller(
            pb::GrantRoleRequest {
                national_id: national_id(1),
                role: pb::Role::Support as i32,
                region_code: None,
            },
            &region_admin("R01"),
        ))
        .await
        .unwrap_err();
    assert_eq!(problem(refused).kind, ErrorKind::PermissionDenied);
    let no_region = service
        .client
        .clone()
        .grant_role(as_caller(
            pb::GrantRoleRequest {
                national_id: national_id(1),
                role: pb::Role::RegionFinance as i32,
                region_code: None,
            },
            &support(),
        ))
        .await
        .unwrap_err();
    assert_eq!(problem(no_region).violations[0].code, "region_required");
}
