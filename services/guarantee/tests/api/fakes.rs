//! Small tonic servers standing in for identity and credit.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tavana_kit::testing::RunningService;
use tavana_proto::credit::v1 as credit;
use tavana_proto::credit::v1::credit_service_server::{CreditService, CreditServiceServer};
use tavana_proto::identity::v1 as identity;
use tavana_proto::identity::v1::get_employee_request::Key;
use tavana_proto::identity::v1::identity_service_server::{IdentityService, IdentityServiceServer};
use tokio_stream::wrappers::TcpListenerStream;
use tonic::{Request, Response, Status};

/// The HR data and the SMS requests of the fake identity.
#[derive(Clone, Default)]
pub struct FakeIdentity {
    pub employees: Arc<Mutex<HashMap<String, identity::Employee>>>,
    pub notifications: Arc<Mutex<Vec<identity::NotifyEmployeeRequest>>>,
}

impl FakeIdentity {
    pub fn upsert(&self, employee: identity::Employee) {
        self.employees
            .lock()
            .unwrap()
            .insert(employee.employee_id.clone(), employee);
    }

    pub fn update(&self, employee_id: &str, change: impl FnOnce(&mut identity::Employee)) {
        let mut employees = self.employees.lock().unwrap();
        change(employees.get_mut(employee_id).expect("no such employee"));
    }

    pub fn notifications_to(&self, employee_id: &str) -> Vec<identity::NotifyEmployeeRequest> {
        self.notifications
            .lock()
            .unwrap()
            .iter()
            .filter(|n| n.employee_id == employee_id)
            .cloned()
            .collect()
    }
}

#[tonic::async_trait]
impl IdentityService for FakeIdentity {
    async fn get_employee(
        &self,
        request: Request<identity::GetEmployeeRequest>,
    ) -> Result<Response<identity::GetEmployeeResponse>, Status> {
        let caller = tavana_kit::testing::signed_caller(&request, tavana_kit::trust::IDENTITY);
        if caller.service_name() != Some("guarantee") {
            return Err(Status::permission_denied("services only"));
        }
        let employees = self.employees.lock().unwrap();
        let found = match request.into_inner().key {
            Some(Key::EmployeeId(id)) => employees.get(&id).cloned(),
            Some(Key::NationalId(national_id)) => employees
                .values()
                .find(|e| e.national_id == national_id)
                .cloned(),
            None => None,
        };
        match found {
            Some(employee) => Ok(Response::new(identity::GetEmployeeResponse {
                employee: Some(employee),
            })),
            None => Err(Status::not_found("employee_not_found")),
        }
    }

    async fn notify_employee(
        &self,
        request: Request<identity::NotifyEmployeeRequest>,
    ) -> Result<Response<identity::NotifyEmployeeResponse>, Status> {
        let message = request.into_inner();
        let mut notifications = self.notifications.lock().unwrap();
        if !notifications
            .iter()
            .any(|n| n.dedup_key == message.dedup_key)
        {
            notifications.push(message);
        }
        Ok(Response::new(identity::NotifyEmployeeResponse {}))
    }

    async fn notify_employees(
        &self,
        _request: Request<identity::NotifyEmployeesRequest>,
    ) -> Result<Response<identity::NotifyEmployeesResponse>, Status> {
        // Guarantee sends its SMS one by one.
        Err(Status::unimplemented("notify_employees"))
    }

    async fn start_login(
        &self,
        _request: Request<identity::StartLoginRequest>,
    ) -> Result<Response<identity::StartLoginResponse>, Status> {
        Err(Status::unimplemented("start_login"))
    }

    async fn verify_login(
        &self,
        _request: Request<identity::VerifyLoginRequest>,
    ) -> Result<Response<identity::VerifyLoginResponse>, Status> {
        Err(Status::unimplemented("verify_login"))
    }

    async fn refresh_session(
        &self,
        _request: Request<identity::RefreshSessionRequest>,
    ) -> Result<Response<identity::RefreshSessionResponse>, Status> {
        Err(Status::unimplemented("refresh_session"))
    }

    async fn logout(
        &self,
        _request: Request<identity::LogoutRequest>,
    ) -> Result<Response<identity::LogoutResponse>, Status> {
        Err(Status::unimplemented("logout"))
    }

    async fn check_session(
        &self,
        _request: Request<identity::CheckSessionRequest>,
    ) -> Result<Response<identity::CheckSessionResponse>, Status> {
        Err(Status::unimplemented("check_session"))
    }

    async fn get_signing_keys(
        &self,
        _request: Request<identity::GetSigningKeysRequest>,
    ) -> Result<Response<identity::GetSigningKeysResponse>, Status> {
        Err(Status::unimplemented("get_signing_keys"))
    }

    async fn get_me(
        &self,
        _request: Request<identity::GetMeRequest>,
    ) -> Result<Response<identity::GetMeResponse>, Status> {
        Err(Status::unimplemented("get_me"))
    }

    async fn upsert_employee(
        &self,
        _request: Request<identity::UpsertEmployeeRequest>,
    ) -> Result<Response<identity::UpsertEmployeeResponse>, Status> {
        Err(Status::unimplemented("upsert_employee"))
    }

    async fn import_employees(
        &self,
        _request: Request<identity::ImportEmployeesRequest>,
    ) -> Result<Response<identity::ImportEmployeesResponse>, Status> {
        Err(Status::unimplemented("import_employees"))
    }

    async fn change_mobile(
        &self,
        _request: Request<identity::ChangeMobileRequest>,
    ) -> Result<Response<identity::ChangeMobileResponse>, Status> {
        Err(Status::unimplemented("change_mobile"))
    }

    async fn add_organization(
        &self,
        _request: Request<identity::AddOrganizationRequest>,
    ) -> Result<Response<identity::AddOrganizationResponse>, Status> {
        Err(Status::unimplemented("add_organization"))
    }

    async fn get_organization(
        &self,
        _request: Request<identity::GetOrganizationRequest>,
    ) -> Result<Response<identity::GetOrganizationResponse>, Status> {
        Err(Status::unimplemented("get_organization"))
    }

    async fn set_organization_contract(
        &self,
        _request: Request<identity::SetOrganizationContractRequest>,
    ) -> Result<Response<identity::SetOrganizationContractResponse>, Status> {
        Err(Status::unimplemented("set_organization_contract"))
    }

    async fn grant_role(
        &self,
        _request: Request<identity::GrantRoleRequest>,
    ) -> Result<Response<identity::GrantRoleResponse>, Status> {
        Err(Status::unimplemented("grant_role"))
    }

    async fn revoke_role(
        &self,
        _request: Request<identity::RevokeRoleRequest>,
    ) -> Result<Response<identity::RevokeRoleResponse>, Status> {
        Err(Status::unimplemented("revoke_role"))
    }

    async fn list_dev_sms(
        &self,
        _request: Request<identity::ListDevSmsRequest>,
    ) -> Result<Response<identity::ListDevSmsResponse>, Status> {
        Err(Status::unimplemented("list_dev_sms"))
    }
}

/// Counts `OpenFacility` calls and facilities by request id; idempotent like credit.
#[derive(Clone, Default)]
pub struct FakeCredit {
    pub calls: Arc<Mutex<HashMap<String, u32>>>,
    pub facilities: Arc<Mutex<HashMap<String, credit::OpenFacilityRequest>>>,
}

impl FakeCredit {
    pub fn calls_for(&self, request_id: &str) -> u32 {
        self.calls
            .lock()
            .unwrap()
            .get(request_id)
            .copied()
            .unwrap_or(0)
    }

    pub fn facility(&self, request_id: &str) -> Option<credit::OpenFacilityRequest> {
        self.facilities.lock().unwrap().get(request_id).cloned()
    }

    pub fn facility_count(&self) -> usize {
        self.facilities.lock().unwrap().len()
    }
}

#[tonic::async_trait]
impl CreditService for FakeCredit {
    async fn open_facility(
        &self,
        request: Request<credit::OpenFacilityRequest>,
    ) -> Result<Response<credit::OpenFacilityResponse>, Status> {
        let caller = tavana_kit::testing::signed_caller(&request, tavana_kit::trust::CREDIT);
        if caller.service_name() != Some("guarantee") {
            return Err(Status::permission_denied("services only"));
        }
        let message = request.into_inner();
        *self
            .calls
            .lock()
            .unwrap()
            .entry(message.credit_request_id.clone())
            .or_default() += 1;
        self.facilities
            .lock()
            .unwrap()
            .entry(message.credit_request_id.clone())
            .or_insert(message);
        Ok(Response::new(credit::OpenFacilityResponse {
            facility: None,
        }))
    }

    async fn close_facility(
        &self,
        _request: Request<credit::CloseFacilityRequest>,
    ) -> Result<Response<credit::CloseFacilityResponse>, Status> {
        Err(Status::unimplemented("close_facility"))
    }

    async fn suspend_facility(
        &self,
        _request: Request<credit::SuspendFacilityRequest>,
    ) -> Result<Response<credit::SuspendFacilityResponse>, Status> {
        Err(Status::unimplemented("suspend_facility"))
    }

    async fn resume_facility(
        &self,
        _request: Request<credit::ResumeFacilityRequest>,
    ) -> Result<Response<credit::ResumeFacilityResponse>, Status> {
        Err(Status::unimplemented("resume_facility"))
    }

    async fn list_purchase_ledger(
        &self,
        _request: Request<credit::ListPurchaseLedgerRequest>,
    ) -> Result<Response<credit::ListPurchaseLedgerResponse>, Status> {
        Err(Status::unimplemented("list_purchase_ledger"))
    }

    async fn digest_purchase_ledger(
        &self,
        _request: Request<credit::DigestPurchaseLedgerRequest>,
    ) -> Result<Response<credit::DigestPurchaseLedgerResponse>, Status> {
        Err(Status::unimplemented("digest_purchase_ledger"))
    }

    async fn get_balance(
        &self,
        _request: Request<credit::GetBalanceRequest>,
    ) -> Result<Response<credit::GetBalanceResponse>, Status> {
        Err(Status::unimplemented("get_balance"))
    }

    async fn create_purchase(
        &self,
        _request: Request<credit::CreatePurchaseRequest>,
    ) -> Result<Response<credit::CreatePurchaseResponse>, Status> {
        Err(Status::unimplemented("create_purchase"))
    }

    async fn create_merchant_purchase(
        &self,
        _request: Request<credit::CreateMerchantPurchaseRequest>,
    ) -> Result<Response<credit::CreateMerchantPurchaseResponse>, Status> {
        Err(Status::unimplemented("create_merchant_purchase"))
    }

    async fn list_purchases(
        &self,
        _request: Request<credit::ListPurchasesRequest>,
    ) -> Result<Response<credit::ListPurchasesResponse>, Status> {
        Err(Status::unimplemented("list_purchases"))
    }

    async fn refund_purchase(
        &self,
        _request: Request<credit::RefundPurchaseRequest>,
    ) -> Result<Response<credit::RefundPurchaseResponse>, Status> {
        Err(Status::unimplemented("refund_purchase"))
    }

    async fn mark_purchases_settled(
        &self,
        _request: Request<credit::MarkPurchasesSettledRequest>,
    ) -> Result<Response<credit::MarkPurchasesSettledResponse>, Status> {
        Err(Status::unimplemented("mark_purchases_settled"))
    }

    async fn get_card(
        &self,
        _request: Request<credit::GetCardRequest>,
    ) -> Result<Response<credit::GetCardResponse>, Status> {
        Err(Status::unimplemented("get_card"))
    }

    async fn change_pin(
        &self,
        _request: Request<credit::ChangePinRequest>,
    ) -> Result<Response<credit::ChangePinResponse>, Status> {
        Err(Status::unimplemented("change_pin"))
    }

    async fn unlock_card(
        &self,
        _request: Request<credit::UnlockCardRequest>,
    ) -> Result<Response<credit::UnlockCardResponse>, Status> {
        Err(Status::unimplemented("unlock_card"))
    }

    async fn set_arrears(
        &self,
        _request: Request<credit::SetArrearsRequest>,
    ) -> Result<Response<credit::SetArrearsResponse>, Status> {
        Err(Status::unimplemented("set_arrears"))
    }
}

/// Serves a fake on a free loopback port; returns its URL.
pub async fn serve_identity(fake: FakeIdentity) -> RunningService {
    tavana_kit::testing::spawn_app(|listener, shutdown| async move {
        tonic::transport::Server::builder()
            .add_service(IdentityServiceServer::new(fake))
            .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown)
            .await?;
        Ok(())
    })
    .await
}

/// Serves a fake credit on a free loopback port.
pub async fn serve_credit(fake: FakeCredit) -> RunningService {
    tavana_kit::testing::spawn_app(|listener, shutdown| async move {
        tonic::transport::Server::builder()
            .add_service(CreditServiceServer::new(fake))
            .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown)
            .await?;
        Ok(())
    })
    .await
}
