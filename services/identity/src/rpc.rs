//! The tonic handlers of `IdentityService`: read the caller, convert the message, call
//! the service, convert back.

use tavana_kit::caller::caller;
use tavana_proto::identity::v1 as pb;
use tavana_proto::identity::v1::identity_service_server::IdentityService;
use tonic::{Request, Response, Status};

use crate::convert::{
    dev_sms_to_pb, employee_key_from_pb, employee_to_pb, grants_to_pb, import_report_to_pb,
    login_started_to_pb, mobile_change_from_pb, notification_from_pb, organization_to_pb,
    raw_employee_from_pb, signing_keys_to_pb, tokens_to_pb,
};
use crate::domain::sms::NotificationShape;
use crate::service::Identity;
use tavana_kit::caller::role_from_pb;

/// The identity service's gRPC handlers.
pub struct IdentityRpc {
    service: Identity,
}

impl IdentityRpc {
    /// Serves the given use cases.
    pub fn new(service: Identity) -> IdentityRpc {
        IdentityRpc { service }
    }
}

#[tonic::async_trait]
impl IdentityService for IdentityRpc {
    #[tracing::instrument(skip_all)]
    async fn start_login(
        &self,
        request: Request<pb::StartLoginRequest>,
    ) -> Result<Response<pb::StartLoginResponse>, Status> {
        let message = request.into_inner();
        let started = self
            .service
            .start_login(&message.national_id, &message.mobile)
            .await?;
        Ok(Response::new(login_started_to_pb(started)))
    }

    #[tracing::instrument(skip_all)]
    async fn verify_login(
        &self,
        request: Request<pb::VerifyLoginRequest>,
    ) -> Result<Response<pb::VerifyLoginResponse>, Status> {
        let message = request.into_inner();
        let tokens = self
            .service
            .verify_login(&message.challenge_id, &message.code)
            .await?;
        Ok(Response::new(pb::VerifyLoginResponse {
            tokens: Some(tokens_to_pb(tokens)),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn refresh_session(
        &self,
        request: Request<pb::RefreshSessionRequest>,
    ) -> Result<Response<pb::RefreshSessionResponse>, Status> {
        let refresh_token = request.into_inner().refresh_token;
        let tokens = self.service.refresh_session(&refresh_token).await?;
        Ok(Response::new(pb::RefreshSessionResponse {
            tokens: Some(tokens_to_pb(tokens)),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn logout(
        &self,
        request: Request<pb::LogoutRequest>,
    ) -> Result<Response<pb::LogoutResponse>, Status> {
        let caller = caller(&request);
        let session_id = request.into_inner().session_id;
        self.service.logout(&caller, &session_id).await?;
        Ok(Response::new(pb::LogoutResponse {}))
    }

    #[tracing::instrument(skip_all)]
    async fn check_session(
        &self,
        request: Request<pb::CheckSessionRequest>,
    ) -> Result<Response<pb::CheckSessionResponse>, Status> {
        let caller = caller(&request);
        let session_id = request.into_inner().session_id;
        let active = self.service.check_session(&caller, &session_id).await?;
        Ok(Response::new(pb::CheckSessionResponse { active }))
    }

    async fn get_signing_keys(
        &self,
        _request: Request<pb::GetSigningKeysRequest>,
    ) -> Result<Response<pb::GetSigningKeysResponse>, Status> {
        Ok(Response::new(signing_keys_to_pb(
            self.service.signing_keys(),
        )))
    }

    #[tracing::instrument(skip_all)]
    async fn get_me(
        &self,
        request: Request<pb::GetMeRequest>,
    ) -> Result<Response<pb::GetMeResponse>, Status> {
        let caller = caller(&request);
        let view = self.service.get_me(&caller).await?;
        Ok(Response::new(pb::GetMeResponse {
            employee: Some(employee_to_pb(&view)),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn get_employee(
        &self,
        request: Request<pb::GetEmployeeRequest>,
    ) -> Result<Response<pb::GetEmployeeResponse>, Status> {
        let caller = caller(&request);
        let key = employee_key_from_pb(request.into_inner().key);
        let view = self.service.get_employee(&caller, key).await?;
        Ok(Response::new(pb::GetEmployeeResponse {
            employee: Some(employee_to_pb(&view)),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn upsert_employee(
        &self,
        request: Request<pb::UpsertEmployeeRequest>,
    ) -> Result<Response<pb::UpsertEmployeeResponse>, Status> {
        let caller = caller(&request);
        let raw = raw_employee_from_pb(request.into_inner().data.unwrap_or_default());
        let (view, created) = self.service.upsert_employee(&caller, &raw).await?;
        Ok(Response::new(pb::UpsertEmployeeResponse {
            employee: Some(employee_to_pb(&view)),
            created,
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn import_employees(
        &self,
        request: Request<pb::ImportEmployeesRequest>,
    ) -> Result<Response<pb::ImportEmployeesResponse>, Status> {
        let caller = caller(&request);
        let csv = request.into_inner().csv;
        let report = self.service.import_employees(&caller, &csv).await?;
        Ok(Response::new(import_report_to_pb(report)))
    }

    #[tracing::instrument(skip_all)]
    async fn change_mobile(
        &self,
        request: Request<pb::ChangeMobileRequest>,
    ) -> Result<Response<pb::ChangeMobileResponse>, Status> {
        let caller = caller(&request);
        let input = mobile_change_from_pb(request.into_inner());
        let view = self.service.change_mobile(&caller, &input).await?;
        Ok(Response::new(pb::ChangeMobileResponse {
            employee: Some(employee_to_pb(&view)),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn add_organization(
        &self,
        request: Request<pb::AddOrganizationRequest>,
    ) -> Result<Response<pb::AddOrganizationResponse>, Status> {
        let caller = caller(&request);
        let message = request.into_inner();
        let organization = self
            .service
            .add_organization(
                &caller,
                &message.organization_id,
                &message.name,
                message.contract_in_force,
            )
            .await?;
        Ok(Response::new(pb::AddOrganizationResponse {
            organization: Some(organization_to_pb(&organization)),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn get_organization(
        &self,
        request: Request<pb::GetOrganizationRequest>,
    ) -> Result<Response<pb::GetOrganizationResponse>, Status> {
        let caller = caller(&request);
        let organization_id = request.into_inner().organization_id;
        let organization = self
            .service
            .get_organization(&caller, &organization_id)
            .await?;
        Ok(Response::new(pb::GetOrganizationResponse {
            organization: Some(organization_to_pb(&organization)),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn set_organization_contract(
        &self,
        request: Request<pb::SetOrganizationContractRequest>,
    ) -> Result<Response<pb::SetOrganizationContractResponse>, Status> {
        let caller = caller(&request);
        let message = request.into_inner();
        let organization = self
            .service
            .set_organization_contract(&caller, &message.organization_id, message.in_force)
            .await?;
        Ok(Response::new(pb::SetOrganizationContractResponse {
            organization: Some(organization_to_pb(&organization)),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn grant_role(
        &self,
        request: Request<pb::GrantRoleRequest>,
    ) -> Result<Response<pb::GrantRoleResponse>, Status> {
        let caller = caller(&request);
        let message = request.into_inner();
        let grants = self
            .service
            .grant_role(
                &caller,
                &message.national_id,
                role_from_pb(message.role),
                message.region_code.as_deref(),
            )
            .await?;
        Ok(Response::new(pb::GrantRoleResponse {
            roles: grants_to_pb(&grants),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn revoke_role(
        &self,
        request: Request<pb::RevokeRoleRequest>,
    ) -> Result<Response<pb::RevokeRoleResponse>, Status> {
        let caller = caller(&request);
        let message = request.into_inner();
        let grants = self
            .service
            .revoke_role(
                &caller,
                &message.national_id,
                role_from_pb(message.role),
                message.region_code.as_deref(),
            )
            .await?;
        Ok(Response::new(pb::RevokeRoleResponse {
            roles: grants_to_pb(&grants),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn notify_employee(
        &self,
        request: Request<pb::NotifyEmployeeRequest>,
    ) -> Result<Response<pb::NotifyEmployeeResponse>, Status> {
        let caller = caller(&request);
        let notification = notification_from_pb(request.into_inner());
        self.service
            .notify_employees(&caller, vec![notification], NotificationShape::One)
            .await?;
        Ok(Response::new(pb::NotifyEmployeeResponse {}))
    }

    #[tracing::instrument(skip_all)]
    async fn notify_employees(
        &self,
        request: Request<pb::NotifyEmployeesRequest>,
    ) -> Result<Response<pb::NotifyEmployeesResponse>, Status> {
        let caller = caller(&request);
        let notifications = request
            .into_inner()
            .notifications
            .into_iter()
            .map(notification_from_pb)
            .collect();
        self.service
            .notify_employees(&caller, notifications, NotificationShape::Many)
            .await?;
        Ok(Response::new(pb::NotifyEmployeesResponse {}))
    }

    #[tracing::instrument(skip_all)]
    async fn list_dev_sms(
        &self,
        request: Request<pb::ListDevSmsRequest>,
    ) -> Result<Response<pb::ListDevSmsResponse>, Status> {
        let mobile = request.into_inner().mobile;
        let items = self.service.list_dev_sms(&mobile).await?;
        Ok(Response::new(pb::ListDevSmsResponse {
            items: items.into_iter().map(dev_sms_to_pb).collect(),
        }))
    }
}
