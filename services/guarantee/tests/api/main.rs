//! Integration tests of the guarantee service over gRPC, against fake identity and
//! credit servers, on SQLite or PostgreSQL (`TAVANA_TEST_DB`).

// The workspace lints hold outside tests (STYLE.md): test code may leave helpers
// undocumented and convert small counts with `as`.
#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::cast_possible_wrap
)]

mod access;
mod counting;
mod duties;
mod fakes;
mod filing;
mod flow;
mod outbox;
mod races;
mod trust;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use tavana_guarantee::Settings;
use tavana_guarantee_migration::Migrator;
use tavana_kit::caller::{Caller, Role, RoleGrant, attach};
use tavana_kit::clock::AdjustableClock;
use tavana_kit::error::Problem;
use tavana_kit::grpc::Channel;
use tavana_kit::jalali::{JalaliDate, start_of_day};
use tavana_kit::testing::{RunningService, TestDb, test_db, test_shared, wait_until};
use tavana_proto::guarantee::v1 as pb;
use tavana_proto::guarantee::v1::guarantee_service_client::GuaranteeServiceClient;
use tavana_proto::identity::v1::Employee;

use crate::fakes::{FakeCredit, FakeIdentity, serve_credit, serve_identity};

/// A URL where nothing listens: credit "killed".
const DEAD_CREDIT_URL: &str = "http://127.0.0.1:1";

/// One running guarantee service with its fakes.
pub struct TestApp {
    pub client: GuaranteeServiceClient<Channel>,
    /// The service's gRPC URL.
    pub url: String,
    pub identity: FakeIdentity,
    pub credit: FakeCredit,
    pub clock: Arc<AdjustableClock>,
    pub db: TestDb,
    service: Option<RunningService>,
    identity_fake: RunningService,
    credit_fake: Option<RunningService>,
    next_person: AtomicU32,
}

/// An employee known to the fake identity.
#[derive(Clone, Debug)]
pub struct Person {
    pub employee_id: String,
    pub national_id: String,
    pub region: String,
    pub grants: Vec<RoleGrant>,
}

impl Person {
    pub fn caller(&self) -> Caller {
        Caller::User {
            employee_id: self.employee_id.clone(),
            national_id: self.national_id.clone(),
            grants: self.grants.clone(),
        }
    }
}

/// Returns a valid national ID (R2) made from `seed`.
pub fn national_id(seed: u32) -> String {
    let body = format!("{:09}", 100_000_000 + seed * 7);
    let digits: Vec<u32> = body.bytes().map(|b| u32::from(b - b'0')).collect();
    let sum: u32 = digits.iter().zip((2..=10).rev()).map(|(d, w)| d * w).sum();
    let r = sum % 11;
    let check = if r < 2 { r } else { 11 - r };
    format!("{body}{check}")
}

/// Returns the Gregorian date of a Jalali date.
pub fn jalali(year: i32, month: u32, day: u32) -> NaiveDate {
    JalaliDate::new(year, month, day).unwrap().to_gregorian()
}

/// The instant the tests file at: 1405-09-15 10:00 Tehran.
pub fn filing_instant() -> DateTime<Utc> {
    start_of_day(JalaliDate::new(1405, 9, 15).unwrap()) + chrono::Duration::hours(10)
}

/// Returns the problem carried by a status.
pub fn problem(status: &tonic::Status) -> Problem {
    Problem::from_status(status)
}

/// Returns the codes of a refusal's violations.
pub fn violation_codes(status: &tonic::Status) -> Vec<String> {
    problem(status)
        .violations
        .into_iter()
        .map(|violation| violation.code)
        .collect()
}

async fn start_service(
    db_url: &str,
    identity_url: &str,
    credit_url: &str,
    clock: &Arc<AdjustableClock>,
) -> RunningService {
    let mut settings = Settings::default();
    settings.database.url = db_url.to_owned();
    settings.database.max_connections = 5;
    settings.identity_url = identity_url.to_owned();
    settings.credit_url = credit_url.to_owned();
    let shared = test_shared(clock).await;
    tavana_kit::testing::spawn_app(|listener, shutdown| {
        tavana_guarantee::serve(settings, shared, listener, shutdown)
    })
    .await
}

/// Starts the service with fake identity and credit on a fresh database.
pub async fn spawn_app() -> TestApp {
    spawn_app_with_credit(true).await
}

/// Starts the service; with `credit_up` false, credit cannot be reached.
pub async fn spawn_app_with_credit(credit_up: bool) -> TestApp {
    let db = test_db::<Migrator>().await;
    let identity = FakeIdentity::default();
    let credit = FakeCredit::default();
    let identity_fake = serve_identity(identity.clone()).await;
    let credit_fake = if credit_up {
        Some(serve_credit(credit.clone()).await)
    } else {
        None
    };
    let credit_url = credit_fake
        .as_ref()
        .map_or(DEAD_CREDIT_URL, |fake| fake.url.as_str());
    let clock = AdjustableClock::frozen(filing_instant());
    let service = start_service(&db.url, &identity_fake.url, credit_url, &clock).await;
    TestApp {
        client: GuaranteeServiceClient::new(service.channel(Duration::from_secs(30))),
        url: service.url.clone(),
        identity,
        credit,
        clock,
        db,
        service: Some(service),
        identity_fake,
        credit_fake,
        next_person: AtomicU32::new(1),
    }
}

impl TestApp {
    /// Stops the service (its relay with it) and starts it again on the same database,
    /// with credit served by the fake.
    pub async fn restart_with_credit_up(&mut self) {
        if let Some(service) = self.service.take() {
            service.stop().await;
        }
        let credit_fake = serve_credit(self.credit.clone()).await;
        let service = start_service(
            &self.db.url,
            &self.identity_fake.url,
            &credit_fake.url,
            &self.clock,
        )
        .await;
        self.client = GuaranteeServiceClient::new(service.channel(Duration::from_secs(30)));
        self.url = service.url.clone();
        self.service = Some(service);
        self.credit_fake = Some(credit_fake);
    }

    /// Adds an employee of `region` with `salary` and a service start date.
    pub fn employee_with(&self, region: &str, salary: i64, service_start: NaiveDate) -> Person {
        let n = self.next_person.fetch_add(1, Ordering::SeqCst);
        let person = Person {
            employee_id: format!("E{n}"),
            national_id: national_id(n),
            region: region.to_owned(),
            grants: vec![RoleGrant::global(Role::Employee)],
        };
        self.identity.upsert(Employee {
            employee_id: person.employee_id.clone(),
            national_id: person.national_id.clone(),
            full_name: format!("کارمند {n}"),
            mobile: format!("0912{:07}", n),
            organization_id: "ORG1".to_owned(),
            region_code: region.to_owned(),
            net_salary: salary,
            service_start_date: service_start.format("%Y-%m-%d").to_string(),
            has_account: true,
            roles: vec![],
        });
        person
    }

    /// Adds an employee of region R01 with a salary of 100,000,000 rial and 10 years of service.
    pub fn employee(&self) -> Person {
        self.employee_with("R01", 100_000_000, jalali(1395, 1, 1))
    }

    /// Adds a region_finance user of `region`.
    pub fn finance(&self, region: &str) -> Person {
        let mut person = self.employee_with(region, 100_000_000, jalali(1395, 1, 1));
        person
            .grants
            .push(RoleGrant::regional(Role::RegionFinance, region));
        person
    }

    pub async fn file(
        &self,
        applicant: &Person,
        guarantor_national_id: &str,
        monthly_credit: i64,
        instalment_months: u32,
    ) -> Result<pb::CreditRequest, tonic::Status> {
        let message = pb::FileCreditRequestRequest {
            guarantor_national_id: guarantor_national_id.to_owned(),
            monthly_credit,
            instalment_months,
        };
        let response = self
            .client
            .clone()
            .file_credit_request(attach(message, &applicant.caller()))
            .await?;
        Ok(response.into_inner().request.unwrap())
    }

    pub async fn get(&self, caller: &Caller, id: &str) -> Result<pb::CreditRequest, tonic::Status> {
        let message = pb::GetCreditRequestRequest {
            request_id: id.to_owned(),
        };
        let response = self
            .client
            .clone()
            .get_credit_request(attach(message, caller))
            .await?;
        Ok(response.into_inner().request.unwrap())
    }

    pub async fn guarantor_decides(
        &self,
        caller: &Caller,
        id: &str,
        approve: bool,
    ) -> Result<pb::CreditRequest, tonic::Status> {
        let message = pb::DecideAsGuarantorRequest {
            request_id: id.to_owned(),
            approve,
            reason: (!approve).then(|| "not this time".to_owned()),
        };
        let response = self
            .client
            .clone()
            .decide_as_guarantor(attach(message, caller))
            .await?;
        Ok(response.into_inner().request.unwrap())
    }

    pub async fn finance_decides(
        &self,
        caller: &Caller,
        id: &str,
        approve: bool,
    ) -> Result<pb::CreditRequest, tonic::Status> {
        let message = pb::DecideAsFinanceRequest {
            request_id: id.to_owned(),
            approve,
            reason: None,
        };
        let response = self
            .client
            .clone()
            .decide_as_finance(attach(message, caller))
            .await?;
        Ok(response.into_inner().request.unwrap())
    }

    pub async fn cancel(
        &self,
        caller: &Caller,
        id: &str,
    ) -> Result<pb::CreditRequest, tonic::Status> {
        let message = pb::CancelCreditRequestRequest {
            request_id: id.to_owned(),
        };
        let response = self
            .client
            .clone()
            .cancel_credit_request(attach(message, caller))
            .await?;
        Ok(response.into_inner().request.unwrap())
    }

    pub async fn release(&self, caller: &Caller, id: &str) -> Result<(), tonic::Status> {
        let message = pb::ReleaseGuaranteeRequest {
            credit_request_id: id.to_owned(),
        };
        self.client
            .clone()
            .release_guarantee(attach(message, caller))
            .await?;
        Ok(())
    }

    /// Files, has the guarantor approve and finance of R01 approve: an active guarantee.
    pub async fn approved_request(
        &self,
        applicant: &Person,
        guarantor: &Person,
    ) -> pb::CreditRequest {
        let request = self
            .file(applicant, &guarantor.national_id, 1_000_000, 12)
            .await
            .unwrap();
        self.guarantor_decides(&guarantor.caller(), &request.request_id, true)
            .await
            .unwrap();
        let finance = self.finance(&applicant.region);
        self.finance_decides(&finance.caller(), &request.request_id, true)
            .await
            .unwrap()
    }

    /// Returns how many outbox messages are not yet delivered.
    pub async fn outbox_pending(&self) -> u64 {
        tavana_kit::outbox::pending_count(&self.db.db)
            .await
            .unwrap()
    }

    /// Waits (at most 15 s) until `done` holds.
    pub async fn wait_until(&self, done: impl AsyncFnMut() -> bool) {
        wait_until("the condition", Duration::from_secs(15), done).await;
    }
}
