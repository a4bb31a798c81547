//! Integration tests of the settlement service over gRPC, on SQLite (default) or PostgreSQL
//! (`TAVANA_TEST_DB=postgres`).
// A test binary: a panic is how a helper reports a failed arrangement.
// A test binary: a panic is how a helper reports a failed arrangement, and its helpers
// are no public API to document.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod arrears;
mod batches;
mod big_remittance;
mod deductions;
mod instalments;
mod money_property;
mod outbox;
mod reconciliation;
mod remittances;
mod schedules;
mod schema;
mod trust;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{TimeZone, Utc};
use prost::Message;
use tavana_kit::caller::{Caller, Role, RoleGrant, attach};
use tavana_kit::clock::AdjustableClock;
use tavana_kit::grpc::Channel;
use tavana_kit::outbox::{Deliver, DeliveryError};
use tavana_kit::testing::{RunningService, TestDb, test_db, test_shared, wait_until};
use tavana_proto::credit::v1::MarkPurchasesSettledRequest;
use tavana_proto::identity::v1::{NotifyEmployeeRequest, NotifyEmployeesRequest};
use tavana_proto::settlement::v1 as pb;
use tavana_proto::settlement::v1::settlement_service_client::SettlementServiceClient;
use tavana_settlement::delivery::{MARK_PURCHASES_SETTLED, NOTIFY_EMPLOYEES};
use tavana_settlement::store::Store;
use tavana_settlement::{MAX_MESSAGE_SIZE, Settings};
use tavana_settlement_migration::Migrator;

pub const ORG: &str = "ORG-1";
pub const PERIOD: &str = "1405-09";
/// The monthly credit `M` every test schedule carries unless a test says otherwise (R29).
pub const MONTHLY_CREDIT: i64 = 1_000_000;
/// The buyers' region as HR writes it; settlement compares it in any case (R29).
pub const REGION: &str = "teh-19";

/// Records what the relay delivers; can be told to fail.
#[derive(Default)]
pub struct RecordingDelivery {
    pub delivered: Mutex<Vec<(String, Vec<u8>)>>,
    pub failing: AtomicBool,
}

impl RecordingDelivery {
    /// The purchases of every delivered batch to credit, in delivery order.
    pub fn settled_purchases(&self) -> Vec<String> {
        self.payloads(MARK_PURCHASES_SETTLED)
            .iter()
            .flat_map(|payload| {
                MarkPurchasesSettledRequest::decode(payload.as_slice())
                    .unwrap()
                    .purchase_ids
            })
            .collect()
    }

    /// The notifications of every delivered batch to identity, in delivery order.
    pub fn notifications(&self) -> Vec<NotifyEmployeeRequest> {
        self.payloads(NOTIFY_EMPLOYEES)
            .iter()
            .flat_map(|payload| {
                NotifyEmployeesRequest::decode(payload.as_slice())
                    .unwrap()
                    .notifications
            })
            .collect()
    }

    /// The payloads delivered under `topic`.
    pub fn payloads(&self, topic: &str) -> Vec<Vec<u8>> {
        self.delivered
            .lock()
            .unwrap()
            .iter()
            .filter(|(t, _)| t == topic)
            .map(|(_, payload)| payload.clone())
            .collect()
    }

    pub fn count(&self, topic: &str) -> usize {
        self.delivered
            .lock()
            .unwrap()
            .iter()
            .filter(|(t, _)| t == topic)
            .count()
    }
}

#[async_trait]
impl Deliver for RecordingDelivery {
    async fn deliver(&self, topic: &str, payload: &[u8]) -> Result<(), DeliveryError> {
        if self.failing.load(Ordering::SeqCst) {
            return Err(DeliveryError::Retry("peer down".into()));
        }
        self.delivered
            .lock()
            .unwrap()
            .push((topic.to_owned(), payload.to_vec()));
        Ok(())
    }
}

pub struct TestApp {
    pub client: SettlementServiceClient<Channel>,
    /// The service's gRPC URL.
    pub url: String,
    pub store: Store,
    pub delivery: Arc<RecordingDelivery>,
    pub db: TestDb,
    _running: RunningService,
}

pub async fn spawn_service() -> TestApp {
    spawn_service_with(false).await
}

pub async fn spawn_service_with(allow_partial_settlement: bool) -> TestApp {
    let db = test_db::<Migrator>().await;
    let mut settings = Settings::default();
    settings.database.url = db.url.clone();
    settings.database.max_connections = 5;
    settings.grpc.request_timeout_ms = 600_000;
    settings.allow_partial_settlement = allow_partial_settlement;
    let clock = AdjustableClock::frozen(Utc.with_ymd_and_hms(2026, 12, 1, 8, 0, 0).unwrap());
    let shared = test_shared(&clock).await;
    let delivery = Arc::new(RecordingDelivery::default());
    let relay_delivery = delivery.clone();
    let running = tavana_kit::testing::spawn_app(|listener, shutdown| {
        tavana_settlement::serve_with_delivery(settings, shared, listener, relay_delivery, shutdown)
    })
    .await;
    let client = SettlementServiceClient::new(running.channel(Duration::from_secs(600)))
        .max_decoding_message_size(MAX_MESSAGE_SIZE)
        .max_encoding_message_size(MAX_MESSAGE_SIZE);
    TestApp {
        client,
        url: running.url.clone(),
        store: Store::new(db.db.clone()),
        delivery,
        db,
        _running: running,
    }
}

pub fn service() -> Caller {
    Caller::service("credit")
}

pub fn staff(role: Role) -> Caller {
    Caller::User {
        employee_id: format!("staff-{}", role.as_str()),
        national_id: "0012345679".into(),
        grants: vec![RoleGrant::global(role)],
    }
}

pub fn employee(employee_id: &str) -> Caller {
    Caller::User {
        employee_id: employee_id.into(),
        national_id: String::new(),
        grants: vec![RoleGrant::global(Role::Employee)],
    }
}

/// Returns the `n`th valid national ID (R2 check digit).
pub fn national_id(n: u32) -> String {
    let body = format!("{:09}", 100_000 + n);
    let sum: u32 = body
        .bytes()
        .zip((2..=10).rev())
        .map(|(digit, weight)| u32::from(digit - b'0') * weight)
        .sum();
    let remainder = sum % 11;
    let check = if remainder < 2 {
        remainder
    } else {
        11 - remainder
    };
    format!("{body}{check}")
}

/// A schedule of `amounts` for consecutive periods starting at `first_period`.
pub fn schedule(
    purchase_id: &str,
    employee_n: u32,
    first_period: &str,
    amounts: &[i64],
) -> pb::RecordScheduleRequest {
    let first = tavana_kit::jalali::JalaliPeriod::parse(first_period).unwrap();
    pb::RecordScheduleRequest {
        purchase_id: purchase_id.into(),
        employee_id: format!("E{employee_n}"),
        national_id: national_id(employee_n),
        full_name: format!("Employee {employee_n}"),
        organization_id: ORG.into(),
        merchant_id: "M1".into(),
        merchant_name: "Digikala".into(),
        instalments: amounts
            .iter()
            .enumerate()
            .map(|(index, amount)| pb::ScheduledInstalment {
                seq: u32::try_from(index).unwrap() + 1,
                period: first.add_months(u32::try_from(index).unwrap()).to_string(),
                amount: *amount,
            })
            .collect(),
        version: 1,
        monthly_credit: MONTHLY_CREDIT,
        guarantor_employee_id: format!("G{employee_n}"),
        region_code: REGION.into(),
    }
}

impl TestApp {
    pub async fn record(&self, request: pb::RecordScheduleRequest) {
        self.client
            .clone()
            .record_schedule(attach(request, &service()))
            .await
            .unwrap();
    }

    pub async fn remit(
        &self,
        bank_reference: &str,
        period: &str,
        lines: &[(String, i64)],
    ) -> Result<pb::RecordRemittanceResponse, tonic::Status> {
        let request = pb::RecordRemittanceRequest {
            organization_id: ORG.into(),
            period: period.into(),
            bank_reference: bank_reference.into(),
            lines: lines
                .iter()
                .map(|(national_id, amount)| pb::RemittanceLine {
                    national_id: national_id.clone(),
                    amount: *amount,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        };
        self.send_remittance(request).await
    }

    /// Records a remittance as support.
    pub async fn send_remittance(
        &self,
        request: pb::RecordRemittanceRequest,
    ) -> Result<pb::RecordRemittanceResponse, tonic::Status> {
        self.client
            .clone()
            .record_remittance(attach(request, &staff(Role::Support)))
            .await
            .map(tonic::Response::into_inner)
    }

    pub async fn my_instalments(
        &self,
        employee_id: &str,
        state: pb::InstalmentState,
    ) -> Vec<pb::Instalment> {
        let mut items = Vec::new();
        let mut page_token = String::new();
        loop {
            let response = self
                .client
                .clone()
                .list_my_instalments(attach(
                    pb::ListMyInstalmentsRequest {
                        state: state as i32,
                        page_size: 2,
                        page_token: page_token.clone(),
                    },
                    &employee(employee_id),
                ))
                .await
                .unwrap()
                .into_inner();
            items.extend(response.items);
            if response.next_page_token.is_empty() {
                return items;
            }
            page_token = response.next_page_token;
        }
    }

    /// The messages of a deduction list, in order.
    pub async fn deduction_messages(
        &self,
        caller: &Caller,
        period: &str,
    ) -> Result<Vec<pb::stream_deduction_list_response::Item>, tonic::Status> {
        let mut stream = self
            .client
            .clone()
            .stream_deduction_list(attach(
                pb::StreamDeductionListRequest {
                    organization_id: ORG.into(),
                    period: period.into(),
                },
                caller,
            ))
            .await?
            .into_inner();
        let mut messages = Vec::new();
        while let Some(message) = stream.message().await? {
            messages.push(message.item.unwrap());
        }
        Ok(messages)
    }

    /// The rows and totals of a deduction list; the totals close it.
    pub async fn deductions(
        &self,
        caller: &Caller,
        period: &str,
    ) -> Result<(Vec<pb::DeductionRow>, pb::DeductionTotals), tonic::Status> {
        let mut rows = Vec::new();
        let mut messages = self.deduction_messages(caller, period).await?.into_iter();
        while let Some(message) = messages.next() {
            match message {
                pb::stream_deduction_list_response::Item::Rows(batch) => rows.extend(batch.rows),
                pb::stream_deduction_list_response::Item::Totals(totals) => {
                    assert!(messages.next().is_none(), "a message after the totals");
                    return Ok((rows, totals));
                }
            }
        }
        panic!("the deduction list ended without totals")
    }

    /// Returns the outbox rows of `topic` as (dedup key, payload), in the order written.
    pub async fn outbox(&self, topic: &str) -> Vec<(String, Vec<u8>)> {
        use sea_orm::{ConnectionTrait, Statement};
        let backend = self.db.db.get_database_backend();
        let rows = self
            .db
            .db
            .query_all_raw(Statement::from_sql_and_values(
                backend,
                match backend {
                    sea_orm::DbBackend::Postgres => {
                        "SELECT dedup_key, payload FROM outbox WHERE topic = $1 ORDER BY id"
                    }
                    _ => "SELECT dedup_key, payload FROM outbox WHERE topic = ? ORDER BY id",
                },
                [topic.into()],
            ))
            .await
            .unwrap();
        rows.iter()
            .map(|row| {
                (
                    row.try_get("", "dedup_key").unwrap(),
                    row.try_get("", "payload").unwrap(),
                )
            })
            .collect()
    }

    /// Returns how many messages to credit in the outbox name `purchase_id` (R18).
    pub async fn settled_messages_naming(&self, purchase_id: &str) -> usize {
        self.outbox(MARK_PURCHASES_SETTLED)
            .await
            .iter()
            .filter(|(_, payload)| {
                MarkPurchasesSettledRequest::decode(payload.as_slice())
                    .unwrap()
                    .purchase_ids
                    .iter()
                    .any(|id| id == purchase_id)
            })
            .count()
    }

    /// Waits until the relay has delivered what `done` looks for.
    pub async fn wait_for(&self, done: impl Fn(&RecordingDelivery) -> bool) {
        wait_until(
            "the relay delivers the outbox",
            Duration::from_secs(20),
            async || done(&self.delivery),
        )
        .await;
    }
}

pub fn codes(response: &pb::RecordRemittanceResponse) -> Vec<(u32, String)> {
    response
        .result
        .as_ref()
        .unwrap()
        .unmatched
        .iter()
        .map(|line| (line.line, line.code.clone()))
        .collect()
}
