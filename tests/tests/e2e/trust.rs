//! Split mode only (ARCHITECTURE.md "Trust between services"): a process that reaches the
//! services' ports without the suite's keys can neither open a facility on credit nor grant
//! a role on identity, whatever metadata it sends; reflection lists only the port's own
//! service.

use std::time::Duration;

use tavana_e2e::{spawn_app, split_mode};
use tavana_kit::caller::{Caller, Role, RoleGrant, attach};
use tavana_kit::trust::{self, Keyring};
use tavana_proto::credit::v1::OpenFacilityRequest;
use tavana_proto::credit::v1::credit_service_client::CreditServiceClient;
use tavana_proto::identity::v1::GrantRoleRequest;
use tavana_proto::identity::v1::identity_service_client::IdentityServiceClient;
use tonic::Code;
use tonic_reflection::pb::v1::ServerReflectionRequest;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

const TIMEOUT: Duration = Duration::from_secs(10);

fn support_user() -> Caller {
    Caller::User {
        employee_id: "E-ATTACKER".into(),
        national_id: "0010000062".into(),
        grants: vec![RoleGrant::global(Role::Support)],
    }
}

/// The first replica of a service.
fn replica(urls: &str) -> String {
    urls.split(',').next().unwrap_or(urls).to_owned()
}

#[tokio::test]
async fn a_process_without_the_suites_keys_cannot_open_a_facility_nor_grant_a_role() {
    if !split_mode() {
        return;
    }
    // Arrange: plain clients, and clients signing with keys the suite does not know.
    let app = spawn_app().await;
    let credit_url = replica(&app.service_url("credit").expect("credit runs"));
    let identity_url = replica(&app.service_url("identity").expect("identity runs"));
    let plain = |url: &str| tavana_kit::grpc::unsigned_channel(url, TIMEOUT).unwrap();
    let stranger = Keyring::ephemeral(&trust::PRINCIPALS)
        .unwrap()
        .suite_signer(trust::GATEWAY)
        .unwrap();
    let stranger = tavana_kit::grpc::Dialer::new(stranger, TIMEOUT);
    let signed = |url: &str| stranger.channel(url).unwrap();
    let facility = || OpenFacilityRequest {
        credit_request_id: "CR-FORGED".into(),
        employee_id: "E-ATTACKER".into(),
        monthly_credit: 1_000_000_000_000,
        ..Default::default()
    };
    let grant = || GrantRoleRequest {
        national_id: "0010000011".into(),
        role: tavana_proto::identity::v1::Role::Support as i32,
        ..Default::default()
    };

    // Act: forged plain metadata, then an assertion under an unknown key.
    let forged_open = CreditServiceClient::new(plain(&credit_url))
        .open_facility(attach(facility(), &Caller::service("guarantee")))
        .await
        .unwrap_err();
    let stranger_open = CreditServiceClient::new(signed(&credit_url))
        .open_facility(attach(facility(), &Caller::service("guarantee")))
        .await
        .unwrap_err();
    let forged_grant = IdentityServiceClient::new(plain(&identity_url))
        .grant_role(attach(grant(), &support_user()))
        .await
        .unwrap_err();
    let stranger_grant = IdentityServiceClient::new(signed(&identity_url))
        .grant_role(attach(grant(), &support_user()))
        .await
        .unwrap_err();

    // Assert
    for status in [forged_open, stranger_open, forged_grant, stranger_grant] {
        assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    }
}

/// Lists the services a port's reflection (v1) advertises.
async fn reflected_services(url: &str) -> Vec<String> {
    let mut client =
        ServerReflectionClient::new(tavana_kit::grpc::unsigned_channel(url, TIMEOUT).unwrap());
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = client
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    let response = responses.message().await.unwrap().expect("one answer");
    match response.message_response {
        Some(MessageResponse::ListServicesResponse(list)) => {
            let mut names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
            names.sort();
            names
        }
        other => panic!("unexpected reflection answer {other:?}"),
    }
}

#[tokio::test]
async fn reflection_on_a_port_lists_only_its_own_service() {
    if !split_mode() {
        return;
    }
    // Arrange
    let app = spawn_app().await;
    let credit_url = replica(&app.service_url("credit").expect("credit runs"));
    let identity_url = replica(&app.service_url("identity").expect("identity runs"));

    // Act
    let on_credit = reflected_services(&credit_url).await;
    let on_identity = reflected_services(&identity_url).await;

    // Assert: the port's service and its audit trail (R32, served on every port), health and
    // reflection itself; never another service.
    for (services, own) in [
        (on_credit, "tavana.credit.v1.CreditService"),
        (on_identity, "tavana.identity.v1.IdentityService"),
    ] {
        let mut tavana: Vec<&str> = services
            .iter()
            .map(String::as_str)
            .filter(|name| name.starts_with("tavana."))
            .collect();
        tavana.sort_unstable();
        assert_eq!(
            tavana,
            ["tavana.audit.v1.AuditService", own],
            "{services:?}"
        );
        assert!(services.iter().any(|name| name == "grpc.health.v1.Health"));
    }
}
