//! A remittance tells credit (R18) and identity (R28) in batches: per chunk of lines one
//! message to each, not one per purchase and employee, and the relay delivers them with the
//! batch RPCs.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use prost::Message;
use tavana_kit::outbox::Deliver;
use tavana_kit::testing::RunningService;
use tavana_proto::credit::v1 as credit;
use tavana_proto::credit::v1::credit_service_server::{CreditService, CreditServiceServer};
use tavana_proto::identity::v1 as identity;
use tavana_proto::identity::v1::identity_service_server::{IdentityService, IdentityServiceServer};
use tavana_settlement::delivery::{
    MARK_PURCHASE_SETTLED, MARK_PURCHASES_SETTLED, MESSAGE_ITEMS, NOTIFY_EMPLOYEE,
    NOTIFY_EMPLOYEES, PeerDelivery,
};
use tavana_settlement::store::REMITTANCE_CHUNK_LINES;
use tonic::{Request, Response, Status};

use crate::deductions::bulk_schedule;
use crate::{PERIOD, national_id, schedule, spawn_service, spawn_service_with};

/// Instalments each employee pays in the remittance, one line each: all of the
/// remittance's period, which is all a line pays (R23).
const LINES_PER_EMPLOYEE: u32 = 5;
const PAID_PERIODS: [&str; LINES_PER_EMPLOYEE as usize] = [PERIOD; LINES_PER_EMPLOYEE as usize];

fn instalment(n: u32) -> i64 {
    30 + i64::from(n % 7)
}

#[tokio::test]
async fn r18_r28_a_remittance_of_several_chunks_writes_one_credit_batch_and_one_sms_batch_per_chunk()
 {
    // Five lines per employee (partial settlement pays one instalment per line): a chunk of
    // 20,000 lines holds 4,000 employees, fewer than a message carries. Two full chunks and
    // a short third one.
    let app = spawn_service_with(true).await;
    let per_chunk = u32::try_from(REMITTANCE_CHUNK_LINES).unwrap() / LINES_PER_EMPLOYEE;
    assert!(per_chunk as usize <= MESSAGE_ITEMS);
    let employees = per_chunk * 2 + 1_000;
    let schedules: Vec<_> = (0..employees)
        .map(|n| {
            let mut amounts: Vec<(&str, i64)> =
                PAID_PERIODS.iter().map(|p| (*p, instalment(n))).collect();
            if n % 3 == 0 {
                // Still owes a later instalment: the purchase does not complete.
                amounts.push(("1405-10", instalment(n)));
            }
            bulk_schedule(format!("P{n}"), n, &amounts)
        })
        .collect();
    app.store
        .record_schedules(&schedules, Utc::now())
        .await
        .unwrap();
    let lines: Vec<(String, i64)> = (0..employees)
        .flat_map(|n| (0..LINES_PER_EMPLOYEE).map(move |_| (national_id(n), instalment(n))))
        .collect();

    let response = app.remit("BR-CHUNKS", PERIOD, &lines).await.unwrap();

    let result = response.result.unwrap();
    let remittance_id = result.remittance_id;
    assert_eq!(result.settled_instalments, employees * LINES_PER_EMPLOYEE);
    let chunk_of = |n: u32| (n / per_chunk) as usize;
    let chunks = chunk_of(employees - 1) + 1;
    assert_eq!(chunks, 3);

    // R18: one message to credit per chunk, with the chunk's completed purchases in id order.
    let credit_rows = app.outbox(MARK_PURCHASES_SETTLED).await;
    let keys: Vec<&str> = credit_rows.iter().map(|(key, _)| key.as_str()).collect();
    let expected_keys: Vec<String> = (0..chunks)
        .map(|chunk| format!("settled:{remittance_id}:{chunk}:0"))
        .collect();
    assert_eq!(keys, expected_keys);
    for (chunk, (_, payload)) in credit_rows.iter().enumerate() {
        let mut expected: Vec<String> = (0..employees)
            .filter(|n| chunk_of(*n) == chunk && n % 3 != 0)
            .map(|n| format!("P{n}"))
            .collect();
        expected.sort_unstable();
        let mut partly: Vec<String> = (0..employees)
            .filter(|n| chunk_of(*n) == chunk && n % 3 == 0)
            .map(|n| format!("P{n}"))
            .collect();
        partly.sort_unstable();
        let batch = credit::MarkPurchasesSettledRequest::decode(payload.as_slice()).unwrap();
        assert_eq!(batch.purchase_ids, expected, "chunk {chunk}");
        // R20: the purchases that still owe are told to credit in the same batch.
        assert_eq!(batch.partly_settled_purchase_ids, partly, "chunk {chunk}");
    }

    // R28: one message to identity per chunk, one SMS per employee with their total.
    let sms_rows = app.outbox(NOTIFY_EMPLOYEES).await;
    let keys: Vec<&str> = sms_rows.iter().map(|(key, _)| key.as_str()).collect();
    let expected_keys: Vec<String> = (0..chunks)
        .map(|chunk| format!("sms:{remittance_id}:{chunk}:0"))
        .collect();
    assert_eq!(keys, expected_keys);
    for (chunk, (_, payload)) in sms_rows.iter().enumerate() {
        let batch = identity::NotifyEmployeesRequest::decode(payload.as_slice()).unwrap();
        let got: BTreeMap<String, (String, String, String, i32)> = batch
            .notifications
            .into_iter()
            .map(|sms| {
                (
                    sms.employee_id.clone(),
                    (
                        sms.dedup_key,
                        sms.params["instalments"].clone(),
                        sms.params["amount"].clone(),
                        sms.template,
                    ),
                )
            })
            .collect();
        let expected: BTreeMap<String, (String, String, String, i32)> = (0..employees)
            .filter(|n| chunk_of(*n) == chunk)
            .map(|n| {
                (
                    format!("E{n}"),
                    (
                        format!("settlement:{remittance_id}:E{n}"),
                        LINES_PER_EMPLOYEE.to_string(),
                        (instalment(n) * i64::from(LINES_PER_EMPLOYEE)).to_string(),
                        identity::SmsTemplate::Settlement as i32,
                    ),
                )
            })
            .collect();
        assert_eq!(got, expected, "chunk {chunk}");
    }
    // Nothing under the former one-by-one topics.
    assert!(app.outbox(MARK_PURCHASE_SETTLED).await.is_empty());
    assert!(app.outbox(NOTIFY_EMPLOYEE).await.is_empty());
}

#[tokio::test]
async fn r18_r28_a_remittance_that_settles_nothing_writes_no_message() {
    let app = spawn_service().await;
    app.record(schedule("P1", 1, PERIOD, &[30])).await;

    let response = app
        .remit(
            "BR-1",
            PERIOD,
            &[(national_id(1), 29), (national_id(2), 30)],
        )
        .await
        .unwrap();

    assert_eq!(response.result.unwrap().settled_instalments, 0);
    assert!(app.outbox(MARK_PURCHASES_SETTLED).await.is_empty());
    assert!(app.outbox(NOTIFY_EMPLOYEES).await.is_empty());
}

/// What the fake credit and identity were asked.
#[derive(Clone, Default)]
struct Peers {
    settled: Arc<Mutex<Vec<credit::MarkPurchasesSettledRequest>>>,
    batches: Arc<Mutex<Vec<identity::NotifyEmployeesRequest>>>,
    singles: Arc<Mutex<Vec<identity::NotifyEmployeeRequest>>>,
}

/// Implements `$trait` for `$ty` with the `$custom` methods, and every other one unimplemented
/// (`async_trait` must see all the methods at once).
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

fake_impl!(CreditService, Peers, {
    async fn mark_purchases_settled(
        &self,
        request: Request<credit::MarkPurchasesSettledRequest>,
    ) -> Result<Response<credit::MarkPurchasesSettledResponse>, Status> {
        self.settled.lock().unwrap().push(request.into_inner());
        Ok(Response::new(credit::MarkPurchasesSettledResponse {}))
    }
}, {
        open_facility(credit::OpenFacilityRequest) -> credit::OpenFacilityResponse;
        close_facility(credit::CloseFacilityRequest) -> credit::CloseFacilityResponse;
        suspend_facility(credit::SuspendFacilityRequest) -> credit::SuspendFacilityResponse;
        resume_facility(credit::ResumeFacilityRequest) -> credit::ResumeFacilityResponse;
        list_purchase_ledger(credit::ListPurchaseLedgerRequest) -> credit::ListPurchaseLedgerResponse;
        digest_purchase_ledger(credit::DigestPurchaseLedgerRequest) -> credit::DigestPurchaseLedgerResponse;
        get_balance(credit::GetBalanceRequest) -> credit::GetBalanceResponse;
        create_purchase(credit::CreatePurchaseRequest) -> credit::CreatePurchaseResponse;
        create_merchant_purchase(credit::CreateMerchantPurchaseRequest) -> credit::CreateMerchantPurchaseResponse;
        list_purchases(credit::ListPurchasesRequest) -> credit::ListPurchasesResponse;
        refund_purchase(credit::RefundPurchaseRequest) -> credit::RefundPurchaseResponse;
        get_card(credit::GetCardRequest) -> credit::GetCardResponse;
        change_pin(credit::ChangePinRequest) -> credit::ChangePinResponse;
        unlock_card(credit::UnlockCardRequest) -> credit::UnlockCardResponse;
        set_arrears(credit::SetArrearsRequest) -> credit::SetArrearsResponse;
});

fake_impl!(IdentityService, Peers, {
    async fn notify_employees(
        &self,
        request: Request<identity::NotifyEmployeesRequest>,
    ) -> Result<Response<identity::NotifyEmployeesResponse>, Status> {
        self.batches.lock().unwrap().push(request.into_inner());
        Ok(Response::new(identity::NotifyEmployeesResponse {}))
    }

    async fn notify_employee(
        &self,
        request: Request<identity::NotifyEmployeeRequest>,
    ) -> Result<Response<identity::NotifyEmployeeResponse>, Status> {
        self.singles.lock().unwrap().push(request.into_inner());
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
        get_organization(identity::GetOrganizationRequest) -> identity::GetOrganizationResponse;
        set_organization_contract(identity::SetOrganizationContractRequest) -> identity::SetOrganizationContractResponse;
        grant_role(identity::GrantRoleRequest) -> identity::GrantRoleResponse;
        revoke_role(identity::RevokeRoleRequest) -> identity::RevokeRoleResponse;
        list_dev_sms(identity::ListDevSmsRequest) -> identity::ListDevSmsResponse;
});

/// Serves the fake credit and identity; returns their URL.
async fn spawn_peers(peers: Peers) -> RunningService {
    tavana_kit::testing::spawn_app(|listener, shutdown| async move {
        tonic::transport::Server::builder()
            .add_service(CreditServiceServer::new(peers.clone()))
            .add_service(IdentityServiceServer::new(peers))
            .serve_with_incoming_shutdown(
                tonic::transport::server::TcpIncoming::from(listener),
                shutdown,
            )
            .await?;
        Ok(())
    })
    .await
}

#[tokio::test]
async fn r18_r28_delivery_calls_the_batch_rpcs_and_still_delivers_former_single_messages() {
    let app = spawn_service().await;
    app.record(schedule("P1", 1, PERIOD, &[30])).await;
    app.record(schedule("P2", 2, PERIOD, &[40, 40])).await;
    app.remit(
        "BR-1",
        PERIOD,
        &[(national_id(1), 30), (national_id(2), 40)],
    )
    .await
    .unwrap();
    let mut rows = app.outbox(MARK_PURCHASES_SETTLED).await;
    rows.extend(app.outbox(NOTIFY_EMPLOYEES).await);
    let peers = Peers::default();
    let fakes = spawn_peers(peers.clone()).await;
    let delivery = PeerDelivery::new(
        &fakes.url,
        &fakes.url,
        &tavana_kit::grpc::Dialer::new(
            tavana_kit::testing::test_keyring()
                .signer(tavana_kit::trust::SETTLEMENT)
                .unwrap(),
            Duration::from_secs(10),
        ),
    )
    .unwrap();
    // Rows of the former topics, as an earlier release wrote them: field 1 of the former
    // MarkPurchaseSettledRequest was `string purchase_id`.
    let former_settled = {
        let mut payload = vec![0x0a, 2];
        payload.extend_from_slice(b"P9");
        payload
    };
    let former_sms = identity::NotifyEmployeeRequest {
        employee_id: "E9".into(),
        template: identity::SmsTemplate::Settlement as i32,
        params: Default::default(),
        dedup_key: "settlement:R0:E9".into(),
    }
    .encode_to_vec();

    delivery
        .deliver(MARK_PURCHASES_SETTLED, &rows[0].1)
        .await
        .unwrap();
    delivery
        .deliver(NOTIFY_EMPLOYEES, &rows[1].1)
        .await
        .unwrap();
    delivery
        .deliver(MARK_PURCHASE_SETTLED, &former_settled)
        .await
        .unwrap();
    delivery
        .deliver(NOTIFY_EMPLOYEE, &former_sms)
        .await
        .unwrap();

    assert_eq!(rows.len(), 2);
    let settled: Vec<Vec<String>> = peers
        .settled
        .lock()
        .unwrap()
        .iter()
        .map(|batch| batch.purchase_ids.clone())
        .collect();
    assert_eq!(settled, [vec!["P1".to_owned()], vec!["P9".to_owned()]]);
    let batches = peers.batches.lock().unwrap().clone();
    assert_eq!(batches.len(), 1);
    let employees: Vec<&str> = batches[0]
        .notifications
        .iter()
        .map(|sms| sms.employee_id.as_str())
        .collect();
    assert_eq!(employees, ["E1", "E2"]);
    let singles = peers.singles.lock().unwrap().clone();
    assert_eq!(singles.len(), 1);
    assert_eq!(singles[0].dedup_key, "settlement:R0:E9");
}
