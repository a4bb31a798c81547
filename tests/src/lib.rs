//! End-to-end harness: a fresh suite per test, driven through the gateway's
//! HTTP API as a client would. By default the whole suite runs in this
//! process (dev mode, dev SMS provider, adjustable clock, fresh SQLite files,
//! random ports); with `TAVANA_E2E_TOPOLOGY=split` every service and the
//! gateway run as separate processes on PostgreSQL and Redis ([`split`]).

// Test support: the workspace lints hold outside tests (STYLE.md); this harness
// panics with its reason when a suite cannot be prepared, as a test does.
#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::cast_possible_wrap
)]

use std::path::PathBuf;

use anyhow::Context;
use serde_json::{Value, json};
use tavana::suite::{Suite, SuiteSettings, UpOptions};

pub mod split;
pub mod world;

/// A running suite and an HTTP client for it.
pub struct TestApp {
    /// The gateway's base URL, e.g. `http://127.0.0.1:40123`.
    pub base_url: String,
    /// A plain HTTP client.
    pub client: reqwest::Client,
    topology: Topology,
    admin: tavana::admin::Admin,
    _data_dir: tempfile::TempDir,
}

enum Topology {
    InProcess(Suite),
    Split(Box<split::SplitTopology>),
}

/// Whether this run drives the split topology.
pub fn split_mode() -> bool {
    std::env::var("TAVANA_E2E_TOPOLOGY").as_deref() == Ok("split")
}

/// An HTTP answer: status, headers and the body parsed as JSON (or `Null`).
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
    pub text: String,
}

impl Answer {
    /// Returns the problem code of an error answer.
    pub fn code(&self) -> &str {
        self.body["code"].as_str().unwrap_or_default()
    }
}

/// Starts the whole suite on fresh SQLite files and random ports.
pub async fn spawn_app() -> TestApp {
    try_spawn_app().await.expect("the suite starts")
}

/// Starts the split topology with every process exporting its traces to
/// the OTLP collector at `otlp_endpoint` (split mode only).
pub async fn spawn_traced_app(otlp_endpoint: &str) -> TestApp {
    try_spawn_app_with(Some(otlp_endpoint))
        .await
        .expect("the suite starts")
}

async fn try_spawn_app() -> anyhow::Result<TestApp> {
    try_spawn_app_with(None).await
}

async fn try_spawn_app_with(otlp_endpoint: Option<&str>) -> anyhow::Result<TestApp> {
    let data_dir = tempfile::tempdir()?;
    let mut settings = SuiteSettings::default();
    // A test suite makes many requests from one address.
    settings.gateway.rate_limit_per_ip_per_minute = 1_000_000;
    for outbox in [
        &mut settings.identity.outbox,
        &mut settings.guarantee.outbox,
        &mut settings.credit.outbox,
        &mut settings.settlement.outbox,
    ] {
        outbox.immediate_deadline_ms = split::IMMEDIATE_DEADLINE_MS;
    }
    let topology = if split_mode() {
        let id = uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
        let topology = match otlp_endpoint {
            Some(endpoint) => split::start_traced(&id, endpoint).await?,
            None => split::start(&id).await?,
        };
        settings.identity.database.url = topology.database_urls["identity"].clone();
        Topology::Split(Box::new(topology))
    } else {
        let options = UpOptions {
            data_dir: PathBuf::from(data_dir.path()),
            listen: "127.0.0.1:0".into(),
            gateway_replicas: Vec::new(),
            dev: true,
            settings: settings.clone(),
        };
        Topology::InProcess(tavana::suite::start(options).await?)
    };
    let admin = tavana::admin::Admin::open(&settings, data_dir.path()).await?;
    let base_url = match &topology {
        Topology::InProcess(suite) => suite.gateway_url(),
        Topology::Split(split) => split.gateway_url.clone(),
    };
    Ok(TestApp {
        base_url,
        client: tavana_kit::http::client(),
        topology,
        admin,
        _data_dir: data_dir,
    })
}

impl TestApp {
    /// Returns the absolute URL of a path.
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base_url, path)
    }

    /// Returns the gRPC URL (comma-separated replicas) of a service.
    pub fn service_url(&self, name: &str) -> Option<String> {
        match &self.topology {
            Topology::InProcess(suite) => suite.service_url(name),
            Topology::Split(split) => split.service_urls.get(name).cloned(),
        }
    }

    /// Returns the split topology, when this run drives one.
    pub fn split(&self) -> Option<&split::SplitTopology> {
        match &self.topology {
            Topology::InProcess(_) => None,
            Topology::Split(split) => Some(split),
        }
    }

    /// The store the suite shares (the in-process one, or the split
    /// topology's keys in Redis).
    pub async fn store(&self) -> std::sync::Arc<dyn tavana_kit::store::KvStore> {
        match &self.topology {
            Topology::InProcess(suite) => suite.store.clone(),
            Topology::Split(split) => {
                let url = tavana_kit::testing::test_redis_url().expect("split mode has Redis");
                std::sync::Arc::new(
                    tavana_kit::store::RedisStore::connect(&url, &split.redis_prefix)
                        .await
                        .expect("Redis answers"),
                )
            }
        }
    }

    /// The admin operations of `tavana admin`, on this suite's databases.
    pub fn admin(&self) -> &tavana::admin::Admin {
        &self.admin
    }

    /// Runs `tavana admin reconcile` (R31) on this suite's credit and settlement databases.
    pub async fn reconcile(&self) -> tavana_settlement::domain::reconcile::Report {
        let mut settings = SuiteSettings::default();
        if let Topology::Split(split) = &self.topology {
            settings.credit.database.url = split.database_urls["credit"].clone();
            settings.settlement.database.url = split.database_urls["settlement"].clone();
        }
        tavana::reconcile::run(&settings, self._data_dir.path())
            .await
            .expect("tavana admin reconcile runs")
    }

    /// Creates an organization.
    pub async fn add_organization(&self, id: &str, name: &str, in_force: bool) {
        self.admin
            .add_organization(id, name, in_force)
            .await
            .expect("organization is added");
    }

    /// Imports employees from CSV text (header included) and returns the report.
    pub async fn import_employees(&self, csv: &str) -> Value {
        let report = self
            .admin
            .import_employees(csv.as_bytes())
            .await
            .expect("import runs");
        serde_json::to_value(report).expect("report serializes")
    }

    /// Creates or updates one employee.
    #[allow(clippy::too_many_arguments)]
    pub async fn upsert_employee(
        &self,
        national_id: &str,
        full_name: &str,
        mobile: &str,
        organization_id: &str,
        region_code: &str,
        net_salary: i64,
        service_start_date: &str,
    ) {
        let csv = format!(
            "national_id,full_name,mobile,organization_id,region_code,net_salary,service_start_date\n\
             {national_id},{full_name},{mobile},{organization_id},{region_code},{net_salary},{service_start_date}\n"
        );
        let report = self.import_employees(&csv).await;
        assert_eq!(
            report["rejected"].as_array().map(Vec::len),
            Some(0),
            "employee {national_id} imports: {report}"
        );
    }

    /// Grants a staff role.
    pub async fn grant_role(&self, national_id: &str, role: &str, region: Option<&str>) {
        self.admin
            .grant_role(national_id, role, region)
            .await
            .expect("role is granted");
    }

    /// Logs in by SMS code through the gateway and the dev SMS endpoint;
    /// returns the access token.
    pub async fn login(&self, national_id: &str, mobile: &str) -> String {
        self.login_tokens(national_id, mobile)
            .await
            .expect("login succeeds")["access_token"]
            .as_str()
            .expect("access token")
            .to_owned()
    }

    /// Logs in and returns the whole token answer.
    pub async fn login_tokens(&self, national_id: &str, mobile: &str) -> anyhow::Result<Value> {
        let started = self
            .post(
                "/v1/auth/login-code",
                None,
                json!({ "national_id": national_id, "mobile": mobile }),
            )
            .await;
        anyhow::ensure!(started.status == 202, "login-code: {started:?}");
        let challenge_id = started.body["challenge_id"]
            .as_str()
            .context("challenge_id")?
            .to_owned();
        // An SMS is sent from the outbox by a provider adapter, with retry (R28): eventual
        // by contract, so this waits for the dev provider's inbox.
        let code = self.eventually(|| self.last_sms_code(mobile)).await;
        let token = self
            .post(
                "/v1/auth/token",
                None,
                json!({ "challenge_id": challenge_id, "code": code }),
            )
            .await;
        anyhow::ensure!(token.status == 200, "token: {token:?}");
        Ok(token.body)
    }

    /// Returns the code of the newest SMS sent to a mobile, if any.
    pub async fn last_sms_code(&self, mobile: &str) -> Option<String> {
        let messages = self.get(&format!("/v1/dev/sms/{mobile}"), None).await;
        messages.body["items"]
            .as_array()?
            .iter()
            .find_map(|message| message["code"].as_str().map(str::to_owned))
    }

    /// Moves the dev clock forward.
    pub async fn advance_clock(&self, seconds: i64) {
        let answer = self
            .post("/v1/dev/clock", None, json!({ "advance_seconds": seconds }))
            .await;
        assert_eq!(answer.status, 200, "clock moves: {answer:?}");
    }

    /// Sets the dev clock to an RFC 3339 instant.
    pub async fn set_clock(&self, instant: &str) {
        let answer = self
            .post("/v1/dev/clock", None, json!({ "set": instant }))
            .await;
        assert_eq!(answer.status, 200, "clock is set: {answer:?}");
    }

    /// Sends a request and reads the answer.
    pub async fn send(&self, request: reqwest::RequestBuilder) -> Answer {
        let response = request.send().await.expect("the gateway answers");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.expect("a body");
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Answer {
            status,
            headers,
            body,
            text,
        }
    }

    fn with_token(
        request: reqwest::RequestBuilder,
        token: Option<&str>,
    ) -> reqwest::RequestBuilder {
        match token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    /// `GET path`, with a bearer token if given.
    pub async fn get(&self, path: &str, token: Option<&str>) -> Answer {
        let request = Self::with_token(self.client.get(self.url(path)), token);
        self.send(request).await
    }

    /// `POST path` with a JSON body.
    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> Answer {
        let request = Self::with_token(self.client.post(self.url(path)), token).json(&body);
        self.send(request).await
    }

    /// `POST path` with a JSON body and an `Idempotency-Key`.
    pub async fn post_idempotent(
        &self,
        path: &str,
        token: Option<&str>,
        key: &str,
        body: Value,
    ) -> Answer {
        let request = Self::with_token(self.client.post(self.url(path)), token)
            .header("idempotency-key", key)
            .json(&body);
        self.send(request).await
    }

    /// `PUT path` with a JSON body.
    pub async fn put(&self, path: &str, token: Option<&str>, body: Value) -> Answer {
        let request = Self::with_token(self.client.put(self.url(path)), token).json(&body);
        self.send(request).await
    }

    /// `DELETE path` with a JSON body.
    pub async fn delete(&self, path: &str, token: Option<&str>, body: Value) -> Answer {
        let request = Self::with_token(self.client.delete(self.url(path)), token).json(&body);
        self.send(request).await
    }

    /// Polls `probe` until it returns `Some`; gives up after 20 seconds. Only for effects
    /// the contract makes eventual (an SMS reaching the dev provider, R28; the relay
    /// catching up after an outage): an effect that is visible when its call answers (read
    /// your writes, ARCHITECTURE.md) is asserted at once.
    pub async fn eventually<T, F, Fut>(&self, probe: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Option<T>>,
    {
        self.eventually_within(20, probe).await
    }

    /// Polls `probe` until it returns `Some`; gives up after `seconds`.
    pub async fn eventually_within<T, F, Fut>(&self, seconds: u64, mut probe: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Option<T>>,
    {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(seconds);
        let mut interval = tokio::time::interval(std::time::Duration::from_millis(50));
        loop {
            interval.tick().await;
            if let Some(value) = probe().await {
                return value;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the effect did not happen within {seconds} s"
            );
        }
    }
}

/// Valid national IDs (R2 check digit) for tests: `national_id(1)`, …
pub fn national_id(n: u32) -> String {
    let base = format!("{:09}", 100_000_000 + n);
    let sum: u32 = base
        .chars()
        .zip((2..=10).rev())
        .map(|(digit, weight)| digit.to_digit(10).unwrap_or(0) * weight)
        .sum();
    let remainder = sum % 11;
    let check = if remainder < 2 {
        remainder
    } else {
        11 - remainder
    };
    format!("{base}{check}")
}

/// A distinct valid mobile for tests: `mobile(1)` is `09120000001`.
pub fn mobile(n: u32) -> String {
    format!("0912{n:07}")
}
