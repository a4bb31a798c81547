//! `spawn_service()`: the credit service on 127.0.0.1:0 with fake merchant-directory,
//! identity, settlement and guarantee servers, and a frozen clock.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tavana_credit::Settings;
use tavana_credit_migration::Migrator;
use tavana_kit::caller::{Caller, Role, RoleGrant, attach};
use tavana_kit::clock::AdjustableClock;
use tavana_kit::error::Problem;
use tavana_kit::grpc::Channel;
use tavana_kit::testing::{RunningService, TestDb, test_db, test_shared, wait_until};
use tavana_proto::credit::v1 as pb;
use tavana_proto::credit::v1::credit_service_client::CreditServiceClient;
use tavana_proto::guarantee::v1 as guarantee;
use tavana_proto::guarantee::v1::guarantee_service_server::{
    GuaranteeService, GuaranteeServiceServer,
};
use tavana_proto::identity::v1 as identity;
use tavana_proto::identity::v1::identity_service_server::{IdentityService, IdentityServiceServer};
use tavana_proto::merchant_directory::v1 as md;
use tavana_proto::merchant_directory::v1::merchant_directory_service_server::{
    MerchantDirectoryService, MerchantDirectoryServiceServer,
};
use tavana_proto::settlement::v1 as settlement;
use tavana_proto::settlement::v1::settlement_service_server::{
    SettlementService, SettlementServiceServer,
};
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status};

/// The organization of the test employees.
pub const ORG: &str = "ORG-1";
/// A contracted merchant supporting both kinds.
pub const SHOP: &str = "M-both";
/// A contracted merchant supporting credit only.
pub const CREDIT_SHOP: &str = "M-credit";
/// A suspended merchant.
pub const SUSPENDED_SHOP: &str = "M-suspended";
/// A valid national ID (check digit 9).
pub const NATIONAL_ID: &str = "0012345679";
/// The guarantor of the test facility (R29: carried to settlement).
pub const GUARANTOR: &str = "G1";

macro_rules! fake_impl {
    ($trait:path, $ty:ty, { $($custom:item)* }, { $($name:ident($req:ty) -> $resp:ty;)* }) => {
        #[tonic::async_trait]
        impl $trait for $ty {
            $($custom)*
            $(
                async fn $name(&self, _request: Request<$req>) -> Result<Response<$resp>, Status> {
                    Err(Status::unimplemented(stringify!($name)))
                }
            )*
        }
    };
}

/// What the fake peers know and received.
#[derive(Default)]
pub struct PeerState {
    pub merchants: HashMap<String, md::Merchant>,
    pub organizations: HashMap<String, bool>,
    pub schedules: Vec<settlement::RecordScheduleRequest>,
    pub cancellations: Vec<settlement::CancelInstalmentsRequest>,
    pub releases: Vec<guarantee::ReleaseGuaranteeRequest>,
    pub notifications: Vec<identity::NotifyEmployeeRequest>,
    pub callers: Vec<Caller>,
}

#[derive(Clone)]
pub struct Fake(pub Arc<Mutex<PeerState>>);

fn merchant(id: &str, credit: bool, instalment: bool, status: md::MerchantStatus) -> md::Merchant {
    md::Merchant {
        merchant_id: id.to_owned(),
        data: Some(md::MerchantData {
            name: format!("shop {id}"),
            supports_credit: credit,
            supports_instalment: instalment,
            ..Default::default()
        }),
        status: status as i32,
        ..Default::default()
    }
}

fake_impl!(MerchantDirectoryService, Fake, {
    async fn get_merchant(
        &self,
        request: Request<md::GetMerchantRequest>,
    ) -> Result<Response<md::GetMerchantResponse>, Status> {
        let caller = tavana_kit::testing::signed_caller(&request, tavana_kit::trust::MERCHANT_DIRECTORY);
        let mut state = self.0.lock().unwrap();
        state.callers.push(caller);
        match state.merchants.get(&request.get_ref().merchant_id) {
            Some(merchant) => Ok(Response::new(md::GetMerchantResponse {
                merchant: Some(merchant.clone()),
            })),
            None => Err(Status::not_found("no merchant")),
        }
    }
}, {
    propose_merchant(md::ProposeMerchantRequest) -> md::ProposeMerchantResponse;
    list_proposals(md::ListProposalsRequest) -> md::ListProposalsResponse;
    get_proposal(md::GetProposalRequest) -> md::GetProposalResponse;
    decide_proposal(md::DecideProposalRequest) -> md::DecideProposalResponse;
    suspend_merchant(md::SuspendMerchantRequest) -> md::SuspendMerchantResponse;
    rotate_merchant_key(md::RotateMerchantKeyRequest) -> md::RotateMerchantKeyResponse;
    list_merchants(md::ListMerchantsRequest) -> md::ListMerchantsResponse;
    authenticate_merchant(md::AuthenticateMerchantRequest) -> md::AuthenticateMerchantResponse;
});

fake_impl!(IdentityService, Fake, {
    async fn get_organization(
        &self,
        request: Request<identity::GetOrganizationRequest>,
    ) -> Result<Response<identity::GetOrganizationResponse>, Status> {
        let state = self.0.lock().unwrap();
        let id = &request.get_ref().organization_id;
        match state.organizations.get(id) {
            Some(in_force) => Ok(Response::new(identity::GetOrganizationResponse {
                organization: Some(identity::Organization {
                    organization_id: id.clone(),
                    name: "org".into(),
                    contract_in_force: *in_force,
                }),
            })),
            None => Err(Status::not_found("no organization")),
        }
    }

    async fn notify_employee(
        &self,
        request: Request<identity::NotifyEmployeeRequest>,
    ) -> Result<Response<identity::NotifyEmployeeResponse>, Status> {
        self.0.lock().unwrap().notifications.push(request.into_inner());
        Ok(Response::new(identity::NotifyEmployeeResponse {}))
    }
}, {
    start_login(identity::StartLoginRequest) -> identity::StartLoginResponse;
    verify_login(identity::VerifyLoginRequest) -> identity::VerifyLoginResponse;
    refresh_session(identity::RefreshSessionRequest) -> identity::RefreshSessionResponse;
    logout(identity::LogoutRequest) -> identity::LogoutResponse;
    check_session(identity::CheckSessionRequest) -> identity::CheckSessionResponse;
    get_signing_keys(identity::GetSigningKeysRequest) -> identity::GetSigningKeysResponse;
    get_me(identity::GetMeRequest) -> identity::GetMeResponse;
    get_employee(identity::GetEmployeeRequest) -> identity::GetEmployeeResponse;
    upsert_employee(identity::UpsertEmployeeRequest) -> identity::UpsertEmployeeResponse;
    import_employees(identity::ImportEmployeesRequest) -> identity::ImportEmployeesResponse;
    change_mobile(identity::ChangeMobileRequest) -> identity::ChangeMobileResponse;
    add_organization(identity::AddOrganizationRequest) -> identity::AddOrganizationResponse;
    set_organization_contract(identity::SetOrganizationContractRequest) -> identity::SetOrganizationContractResponse;
    grant_role(identity::GrantRoleRequest) -> identity::GrantRoleResponse;
    revoke_role(identity::RevokeRoleRequest) -> identity::RevokeRoleResponse;
    list_dev_sms(identity::ListDevSmsRequest) -> identity::ListDevSmsResponse;
    notify_employees(identity::NotifyEmployeesRequest) -> identity::NotifyEmployeesResponse;
});

type DeductionStream = std::pin::Pin<
    Box<dyn futures::Stream<Item = Result<settlement::StreamDeductionListResponse, Status>> + Send>,
>;

fake_impl!(SettlementService, Fake, {
    type StreamDeductionListStream = DeductionStream;

    async fn reconcile(
        &self,
        _request: Request<settlement::ReconcileRequest>,
    ) -> Result<Response<settlement::ReconcileResponse>, Status> {
        Err(Status::unimplemented("reconcile"))
    }

    async fn record_schedule(
        &self,
        request: Request<settlement::RecordScheduleRequest>,
    ) -> Result<Response<settlement::RecordScheduleResponse>, Status> {
        let caller = tavana_kit::testing::signed_caller(&request, tavana_kit::trust::SETTLEMENT);
        let mut state = self.0.lock().unwrap();
        state.callers.push(caller);
        state.schedules.push(request.into_inner());
        Ok(Response::new(settlement::RecordScheduleResponse {}))
    }

    async fn cancel_instalments(
        &self,
        request: Request<settlement::CancelInstalmentsRequest>,
    ) -> Result<Response<settlement::CancelInstalmentsResponse>, Status> {
        self.0.lock().unwrap().cancellations.push(request.into_inner());
        Ok(Response::new(settlement::CancelInstalmentsResponse {}))
    }

    async fn stream_deduction_list(
        &self,
        _request: Request<settlement::StreamDeductionListRequest>,
    ) -> Result<Response<DeductionStream>, Status> {
        Err(Status::unimplemented("stream_deduction_list"))
    }
}, {
    list_my_instalments(settlement::ListMyInstalmentsRequest) -> settlement::ListMyInstalmentsResponse;
    record_remittance(settlement::RecordRemittanceRequest) -> settlement::RecordRemittanceResponse;
    get_remittance(settlement::GetRemittanceRequest) -> settlement::GetRemittanceResponse;
    close_period(settlement::ClosePeriodRequest) -> settlement::ClosePeriodResponse;
    list_overdue(settlement::ListOverdueRequest) -> settlement::ListOverdueResponse;
    list_unmatched_lines(settlement::ListUnmatchedLinesRequest) -> settlement::ListUnmatchedLinesResponse;
    resolve_unmatched_line(settlement::ResolveUnmatchedLineRequest) -> settlement::ResolveUnmatchedLineResponse;
});

fake_impl!(GuaranteeService, Fake, {
    async fn release_guarantee(
        &self,
        request: Request<guarantee::ReleaseGuaranteeRequest>,
    ) -> Result<Response<guarantee::ReleaseGuaranteeResponse>, Status> {
        self.0.lock().unwrap().releases.push(request.into_inner());
        Ok(Response::new(guarantee::ReleaseGuaranteeResponse {}))
    }
}, {
    file_credit_request(guarantee::FileCreditRequestRequest) -> guarantee::FileCreditRequestResponse;
    get_credit_request(guarantee::GetCreditRequestRequest) -> guarantee::GetCreditRequestResponse;
    list_my_credit_requests(guarantee::ListMyCreditRequestsRequest) -> guarantee::ListMyCreditRequestsResponse;
    list_guarantee_requests(guarantee::ListGuaranteeRequestsRequest) -> guarantee::ListGuaranteeRequestsResponse;
    list_region_credit_requests(guarantee::ListRegionCreditRequestsRequest) -> guarantee::ListRegionCreditRequestsResponse;
    cancel_credit_request(guarantee::CancelCreditRequestRequest) -> guarantee::CancelCreditRequestResponse;
    decide_as_guarantor(guarantee::DecideAsGuarantorRequest) -> guarantee::DecideAsGuarantorResponse;
    decide_as_finance(guarantee::DecideAsFinanceRequest) -> guarantee::DecideAsFinanceResponse;
    get_my_credit_limits(guarantee::GetMyCreditLimitsRequest) -> guarantee::GetMyCreditLimitsResponse;
});

/// A running credit service with its fakes.
pub struct TestApp {
    pub client: CreditServiceClient<Channel>,
    /// The service's gRPC URL.
    pub url: String,
    pub clock: Arc<AdjustableClock>,
    pub peers: Fake,
    _database: TestDb,
    pub store: tavana_credit::store::Store,
    _running: [RunningService; 2],
}

async fn spawn_fakes(fake: Fake) -> RunningService {
    tavana_kit::testing::spawn_app(|listener, shutdown| async move {
        Server::builder()
            .add_service(MerchantDirectoryServiceServer::new(fake.clone()))
            .add_service(IdentityServiceServer::new(fake.clone()))
            .add_service(SettlementServiceServer::new(fake.clone()))
            .add_service(GuaranteeServiceServer::new(fake))
            .serve_with_incoming_shutdown(TcpIncoming::from(listener), shutdown)
            .await?;
        Ok(())
    })
    .await
}

/// The Tehran noon of 1405-02-15, a safe mid-month instant.
pub fn mid_month() -> DateTime<Utc> {
    tavana_kit::jalali::start_of_day(
        tavana_kit::jalali::JalaliPeriod::parse("1405-02")
            .unwrap()
            .day(15)
            .unwrap(),
    ) + chrono::Duration::hours(12)
}

/// 00:00 Tehran on the 8th of `period` (`YYYY-MM`): the instant a purchase deducted in it
/// releases its holds (R17), and a settled instalment purchase whose last deduction period
/// it is, at the earliest (R16, R18).
pub fn release_of(period: &str) -> DateTime<Utc> {
    tavana_kit::jalali::release_instant(tavana_kit::jalali::JalaliPeriod::parse(period).unwrap())
}

/// After the last deduction period of a 3-month instalment purchase made at `mid_month()`
/// (1405-03 to 1405-05) has begun: settling it then is on time, not early (R16, R18).
pub fn after_three_months() -> DateTime<Utc> {
    release_of("1405-05") + chrono::Duration::days(2)
}

/// Starts the service at `mid_month()` on a fresh database.
pub async fn spawn_service() -> TestApp {
    spawn_service_at(mid_month()).await
}

/// Starts the service with the clock frozen at `now`.
pub async fn spawn_service_at(now: DateTime<Utc>) -> TestApp {
    let database = test_db::<Migrator>().await;
    let peers = Fake(Arc::new(Mutex::new(PeerState::default())));
    {
        let mut state = peers.0.lock().unwrap();
        state.merchants.insert(
            SHOP.into(),
            merchant(SHOP, true, true, md::MerchantStatus::Contracted),
        );
        state.merchants.insert(
            CREDIT_SHOP.into(),
            merchant(CREDIT_SHOP, true, false, md::MerchantStatus::Contracted),
        );
        state.merchants.insert(
            SUSPENDED_SHOP.into(),
            merchant(SUSPENDED_SHOP, true, true, md::MerchantStatus::Suspended),
        );
        state.organizations.insert(ORG.into(), true);
    }
    let fakes = spawn_fakes(peers.clone()).await;
    let peer_url = fakes.url.clone();
    let settings = Settings {
        database: tavana_kit::config::DatabaseSettings {
            url: database.url.clone(),
            max_connections: 20,
        },
        merchant_directory_url: peer_url.clone(),
        identity_url: peer_url.clone(),
        settlement_url: peer_url.clone(),
        guarantee_url: peer_url,
        ..Settings::default()
    };
    let clock = AdjustableClock::frozen(now);
    let shared = test_shared(&clock).await;
    let service = tavana_kit::testing::spawn_app(|listener, shutdown| {
        tavana_credit::serve(settings, shared, listener, shutdown)
    })
    .await;
    let store = tavana_credit::store::Store::new(database.db.clone(), None);
    TestApp {
        client: CreditServiceClient::new(service.channel(Duration::from_secs(30))),
        url: service.url.clone(),
        clock,
        peers,
        _database: database,
        store,
        _running: [service, fakes],
    }
}

impl TestApp {
    /// The service's database.
    pub fn db(&self) -> &sea_orm::DatabaseConnection {
        &self._database.db
    }

    /// Rolls the migrations back to before the one named `name` (the later ones first).
    pub async fn migrate_down_to_before(&self, name: &str) {
        use tavana_credit_migration::MigratorTrait;
        let migrations = Migrator::migrations();
        let at = migrations
            .iter()
            .position(|migration| migration.name() == name)
            .expect("a migration of that name");
        let steps = u32::try_from(migrations.len() - at).unwrap();
        Migrator::down(self.db(), Some(steps)).await.unwrap();
    }

    /// Runs the migrations not applied yet.
    pub async fn migrate_up(&self) {
        use tavana_credit_migration::MigratorTrait;
        Migrator::up(self.db(), None).await.unwrap();
    }
}

/// The credit service calling as another service.
pub fn service() -> Caller {
    Caller::service("guarantee")
}

/// An employee caller.
pub fn employee(id: &str) -> Caller {
    Caller::User {
        employee_id: id.to_owned(),
        national_id: NATIONAL_ID.to_owned(),
        grants: vec![RoleGrant::global(Role::Employee)],
    }
}

/// A support user.
pub fn support() -> Caller {
    Caller::User {
        employee_id: "support-1".to_owned(),
        national_id: "0000000000".to_owned(),
        grants: vec![RoleGrant::global(Role::Support)],
    }
}

/// A merchant caller.
pub fn merchant_caller(id: &str) -> Caller {
    Caller::Merchant {
        merchant_id: id.to_owned(),
    }
}

/// Returns the problem of a failed call.
pub fn problem<T: std::fmt::Debug>(result: Result<T, Status>) -> Problem {
    Problem::from_status(&result.expect_err("expected a refusal"))
}

impl TestApp {
    /// Opens an active facility for `employee_id` with `M` and `N`.
    pub async fn open_facility(
        &self,
        employee_id: &str,
        monthly: i64,
        months: u32,
    ) -> pb::Facility {
        self.open_facility_activating(
            employee_id,
            monthly,
            months,
            self.clock_now() - chrono::Duration::hours(1),
        )
        .await
    }

    /// Opens a facility activating at `activates_at`.
    pub async fn open_facility_activating(
        &self,
        employee_id: &str,
        monthly: i64,
        months: u32,
        activates_at: DateTime<Utc>,
    ) -> pb::Facility {
        self.client
            .clone()
            .open_facility(attach(
                pb::OpenFacilityRequest {
                    credit_request_id: format!("req-{employee_id}"),
                    employee_id: employee_id.to_owned(),
                    national_id: NATIONAL_ID.to_owned(),
                    organization_id: ORG.to_owned(),
                    monthly_credit: monthly,
                    max_instalments: months,
                    activates_at: Some(tavana_proto::timestamp(activates_at)),
                    full_name: "Test Employee".to_owned(),
                    guarantor_employee_id: GUARANTOR.to_owned(),
                    region_code: "TEH-19".to_owned(),
                },
                &service(),
            ))
            .await
            .expect("open facility")
            .into_inner()
            .facility
            .unwrap()
    }

    /// Returns the clock's now.
    pub fn clock_now(&self) -> DateTime<Utc> {
        use tavana_kit::clock::Clock;
        self.clock.now()
    }

    /// Buys as the employee.
    pub async fn buy(
        &self,
        employee_id: &str,
        merchant_id: &str,
        kind: pb::PurchaseKind,
        amount: i64,
        months: u32,
        key: &str,
    ) -> Result<pb::CreatePurchaseResponse, Status> {
        self.client
            .clone()
            .create_purchase(attach(
                pb::CreatePurchaseRequest {
                    merchant_id: merchant_id.to_owned(),
                    kind: kind as i32,
                    amount,
                    months,
                    idempotency_key: key.to_owned(),
                },
                &employee(employee_id),
            ))
            .await
            .map(Response::into_inner)
    }

    /// Returns the employee's balance.
    pub async fn balance(&self, employee_id: &str) -> Result<pb::GetBalanceResponse, Status> {
        self.client
            .clone()
            .get_balance(attach(pb::GetBalanceRequest {}, &employee(employee_id)))
            .await
            .map(Response::into_inner)
    }

    /// Returns (available_monthly, available_total).
    pub async fn room(&self, employee_id: &str) -> (i64, i64) {
        let balance = self.balance(employee_id).await.expect("balance");
        (balance.available_monthly, balance.available_total)
    }

    /// Returns (available_monthly, available_total, next_release_at in seconds) computed
    /// from every unreleased purchase one by one, not from the sums the service reads.
    pub async fn room_one_by_one(&self, employee_id: &str) -> (i64, i64, Option<i64>) {
        use tavana_credit::domain::budget::{self, Hold};
        use tavana_credit::store::{hold_of, terms_of};

        let facility = self
            .store
            .facility_of_employee(employee_id)
            .await
            .unwrap()
            .expect("a facility");
        let holds: Vec<Hold> = self
            .store
            .unreleased_purchases(&facility.id)
            .await
            .unwrap()
            .iter()
            .filter_map(hold_of)
            .collect();
        let now = self.clock_now();
        let room = budget::available(terms_of(&facility).unwrap(), &holds, now);
        (
            room.monthly.as_i64(),
            room.total.as_i64(),
            budget::next_release_at(&holds, now).map(|at| at.timestamp()),
        )
    }

    /// Sets whether the organization's contract is in force (R14, R18).
    pub fn set_contract_in_force(&self, in_force: bool) {
        self.peers
            .0
            .lock()
            .unwrap()
            .organizations
            .insert(ORG.into(), in_force);
    }

    /// Refunds as a merchant, with a fresh Idempotency-Key.
    pub async fn refund(
        &self,
        merchant_id: &str,
        purchase_id: &str,
        amount: i64,
    ) -> Result<pb::Purchase, Status> {
        let key = uuid::Uuid::now_v7().to_string();
        self.refund_with_key(merchant_id, purchase_id, amount, &key)
            .await
    }

    /// Refunds as a merchant with the Idempotency-Key `key` (R19, R20).
    pub async fn refund_with_key(
        &self,
        merchant_id: &str,
        purchase_id: &str,
        amount: i64,
        key: &str,
    ) -> Result<pb::Purchase, Status> {
        self.client
            .clone()
            .refund_purchase(attach(
                pb::RefundPurchaseRequest {
                    purchase_id: purchase_id.to_owned(),
                    amount,
                    idempotency_key: key.to_owned(),
                },
                &merchant_caller(merchant_id),
            ))
            .await
            .map(|response| response.into_inner().purchase.unwrap())
    }

    /// Marks a purchase settled as settlement does: a batch of one.
    pub async fn settle(&self, purchase_id: &str) -> Result<(), Status> {
        self.settle_all(&[purchase_id]).await
    }

    /// Tells credit that a remittance settled part of these purchases, as settlement does.
    pub async fn settle_partly(&self, purchase_ids: &[&str]) -> Result<(), Status> {
        self.client
            .clone()
            .mark_purchases_settled(attach(
                pb::MarkPurchasesSettledRequest {
                    purchase_ids: vec![],
                    partly_settled_purchase_ids: purchase_ids
                        .iter()
                        .map(|id| (*id).to_owned())
                        .collect(),
                },
                &Caller::service("settlement"),
            ))
            .await
            .map(|_| ())
    }

    /// Marks purchases settled in one batch, as settlement does.
    pub async fn settle_all(&self, purchase_ids: &[&str]) -> Result<(), Status> {
        self.client
            .clone()
            .mark_purchases_settled(attach(
                pb::MarkPurchasesSettledRequest {
                    purchase_ids: purchase_ids.iter().map(|id| (*id).to_owned()).collect(),
                    partly_settled_purchase_ids: vec![],
                },
                &Caller::service("settlement"),
            ))
            .await
            .map(|_| ())
    }

    /// Moves the clock.
    pub fn advance(&self, by: chrono::Duration) {
        self.clock.advance(by);
    }

    /// Sets the clock.
    pub fn set_clock(&self, at: DateTime<Utc>) {
        self.clock.set(at);
    }

    /// Waits (bounded) until `check` holds on the fakes' state.
    pub async fn wait_for_peers(&self, check: impl Fn(&PeerState) -> bool) {
        wait_until(
            "the peers see the expected messages",
            Duration::from_secs(20),
            async || check(&self.peers.0.lock().unwrap()),
        )
        .await;
    }
}
