//! Synthetic data: staff and buyers with open facilities through the real HTTP flows
//! (login by dev SMS, credit request, guarantor and finance approvals, dev clock +72 h),
//! and the bulk sets (merchants, instalments) through the services' gRPC, as the gateway
//! or a peer service would call them.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::{Value, json};
use tavana_e2e::{mobile, national_id};
use tavana_kit::caller::{Caller, Role, RoleGrant};
use tavana_proto::merchant_directory::v1 as md;
use tavana_proto::settlement::v1 as settlement;

use crate::system::System;

/// The organization of the buyers.
pub const ORGANIZATION: &str = "ORG-BENCH";
/// The organization of the bulk instalments (deduction list, remittance).
pub const BULK_ORGANIZATION: &str = "ORG-BULK";
/// The organization whose instalments stay unpaid until its period is closed (R29).
pub const CLOSE_ORGANIZATION: &str = "ORG-CLOSE";
/// The salary period of the bulk instalments.
pub const PERIOD: &str = "1405-01";
const REGION: &str = "R01";
const BUYER_SALARY: i64 = 4_000_000_000;
const GRPC_TIMEOUT: Duration = Duration::from_secs(60);

/// A small HTTP client of the gateway.
#[derive(Clone)]
pub struct Http {
    pub base_url: String,
    pub client: reqwest::Client,
}

impl Http {
    /// Creates a client with a connection pool large enough for the load clients.
    pub fn new(base_url: &str) -> anyhow::Result<Http> {
        let client = tavana_kit::http::client_builder()
            .pool_max_idle_per_host(64)
            .tcp_nodelay(true)
            .timeout(Duration::from_secs(3600))
            .build()?;
        Ok(Http {
            base_url: base_url.to_owned(),
            client,
        })
    }

    /// Returns the absolute URL of a path.
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base_url, path)
    }

    async fn answer(request: reqwest::RequestBuilder) -> anyhow::Result<(u16, Value)> {
        let response = request.send().await?;
        let status = response.status().as_u16();
        let text = response.text().await?;
        Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
    }

    /// `GET path` with an optional bearer token.
    pub async fn get(&self, path: &str, token: Option<&str>) -> anyhow::Result<(u16, Value)> {
        let mut request = self.client.get(self.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        Self::answer(request).await
    }

    /// `POST path` with a JSON body and an optional bearer token.
    pub async fn post(
        &self,
        path: &str,
        token: Option<&str>,
        body: Value,
    ) -> anyhow::Result<(u16, Value)> {
        let mut request = self.client.post(self.url(path)).json(&body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        Self::answer(request).await
    }

    /// `POST path`, expecting `status`; returns the body.
    async fn expect(
        &self,
        status: u16,
        path: &str,
        token: Option<&str>,
        body: Value,
    ) -> anyhow::Result<Value> {
        let (got, answer) = self.post(path, token, body).await?;
        anyhow::ensure!(got == status, "POST {path}: {got} {answer}");
        Ok(answer)
    }
}

/// The people and the merchant the load scenarios use.
pub struct Actors {
    /// Access tokens of the buyers, each with an active facility.
    pub buyers: Vec<String>,
    /// Employees from [`LOGIN_POOL_BASE`] on who have not logged in yet.
    pub login_pool: u32,
    /// Access token of a `support` user.
    pub support: String,
    /// A contracted merchant that sells on credit.
    pub merchant_id: String,
}

struct Staff {
    n: u32,
    role: &'static str,
    region: Option<&'static str>,
}

const STAFF: [Staff; 4] = [
    Staff {
        n: 900_001,
        role: "region_finance",
        region: Some(REGION),
    },
    Staff {
        n: 900_002,
        role: "region_welfare_manager",
        region: Some(REGION),
    },
    Staff {
        n: 900_003,
        role: "support",
        region: None,
    },
    Staff {
        n: 900_004,
        role: "contracts",
        region: None,
    },
];

/// The first of the employees the salary-day load logs in, each once (R3 allows one
/// code a minute per mobile).
pub const LOGIN_POOL_BASE: u32 = 500_000;

/// Logs in by SMS code through the gateway and the dev SMS endpoint.
pub async fn login(http: &Http, n: u32) -> anyhow::Result<String> {
    let (national_id, mobile) = (national_id(n), mobile(n));
    let started = http
        .expect(
            202,
            "/v1/auth/login-code",
            None,
            json!({ "national_id": national_id, "mobile": mobile }),
        )
        .await?;
    let challenge_id = started["challenge_id"]
        .as_str()
        .context("no challenge_id")?
        .to_owned();
    let deadline = Instant::now() + Duration::from_secs(30);
    let code = loop {
        let (_, messages) = http.get(&format!("/v1/dev/sms/{mobile}"), None).await?;
        let code = messages["items"].as_array().and_then(|items| {
            items
                .iter()
                .find_map(|message| message["code"].as_str().map(str::to_owned))
        });
        if let Some(code) = code {
            break code;
        }
        anyhow::ensure!(Instant::now() < deadline, "no login code for {mobile}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let token = http
        .expect(
            200,
            "/v1/auth/token",
            None,
            json!({ "challenge_id": challenge_id, "code": code }),
        )
        .await?;
    Ok(token["access_token"]
        .as_str()
        .context("no access_token")?
        .to_owned())
}

/// Creates the organization, staff and `buyers` employees (an even number), opens a
/// facility for each buyer through the real approval flow (buyers guarantee each other in
/// pairs), moves the dev clock past the 72 hours, and approves one merchant.
pub async fn actors(
    system: &System,
    http: &Http,
    buyers: u32,
    login_pool: u32,
) -> anyhow::Result<Actors> {
    anyhow::ensure!(
        buyers >= 2 && buyers.is_multiple_of(2),
        "buyers come in pairs"
    );
    system
        .admin
        .add_organization(ORGANIZATION, "اداره آموزش و پرورش (بنچمارک)", true)
        .await?;
    let mut csv = String::from(
        "national_id,full_name,mobile,organization_id,region_code,net_salary,service_start_date\n",
    );
    let people = (1..=buyers)
        .map(|n| (n, BUYER_SALARY))
        .chain(STAFF.iter().map(|s| (s.n, 250_000_000)))
        .chain((0..login_pool).map(|i| (LOGIN_POOL_BASE + i, 150_000_000)));
    for (n, salary) in people {
        csv.push_str(&format!(
            "{},کارمند {n},{},{ORGANIZATION},{REGION},{salary},2010-09-23\n",
            national_id(n),
            mobile(n)
        ));
    }
    let report = system.admin.import_employees(csv.as_bytes()).await?;
    let report = serde_json::to_value(report)?;
    anyhow::ensure!(
        report["rejected"].as_array().is_some_and(Vec::is_empty),
        "employees rejected: {report}"
    );
    for staff in &STAFF {
        system
            .admin
            .grant_role(&national_id(staff.n), staff.role, staff.region)
            .await?;
    }
    let finance = login(http, STAFF[0].n).await?;
    let welfare = login(http, STAFF[1].n).await?;
    let support = login(http, STAFF[2].n).await?;
    let contracts = login(http, STAFF[3].n).await?;
    let mut tokens = Vec::new();
    for n in 1..=buyers {
        tokens.push(login(http, n).await?);
    }

    for index in 0..tokens.len() {
        let partner = index ^ 1;
        let filed = http
            .expect(
                201,
                "/v1/me/credit-requests",
                Some(&tokens[index]),
                json!({
                    "guarantor_national_id": national_id(partner as u32 + 1),
                    "monthly_credit": BUYER_SALARY / 4,
                    "instalment_months": 12,
                }),
            )
            .await?;
        let id = filed["id"].as_str().context("no request id")?;
        http.expect(
            200,
            &format!("/v1/credit-requests/{id}/guarantor-decision"),
            Some(&tokens[partner]),
            json!({ "approve": true }),
        )
        .await?;
        http.expect(
            200,
            &format!("/v1/credit-requests/{id}/finance-decision"),
            Some(&finance),
            json!({ "approve": true }),
        )
        .await?;
    }
    // Facilities are opened through guarantee's outbox.
    wait_for_balances(http, &tokens, |_| true).await?;
    http.expect(
        200,
        "/v1/dev/clock",
        None,
        json!({ "advance_seconds": 72 * 3600 + 60 }),
    )
    .await?;
    wait_for_balances(http, &tokens, |balance| balance["status"] == "active").await?;

    let proposal = http
        .expect(
            201,
            "/v1/merchant-proposals",
            Some(&welfare),
            json!({
                "name": "کتاب‌فروشی بنچمارک",
                "kind": "online",
                "website": "https://bench-books.example",
                "categories": ["کتاب"],
                "supports_credit": true,
                "supports_instalment": true,
                "contact_phone": "02188000000",
            }),
        )
        .await?;
    let proposal_id = proposal["id"].as_str().context("no proposal id")?;
    let decision = http
        .expect(
            200,
            &format!("/v1/merchant-proposals/{proposal_id}/decision"),
            Some(&contracts),
            json!({ "approve": true }),
        )
        .await?;
    Ok(Actors {
        buyers: tokens,
        login_pool,
        support,
        merchant_id: decision["merchant_id"]
            .as_str()
            .context("no merchant_id")?
            .to_owned(),
    })
}

async fn wait_for_balances(
    http: &Http,
    tokens: &[String],
    ready: impl Fn(&Value) -> bool,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    for token in tokens {
        loop {
            let (status, balance) = http.get("/v1/me/balance", Some(token)).await?;
            if status == 200 && ready(&balance) {
                break;
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "a facility did not become ready within 60 s: {status} {balance}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    Ok(())
}

/// How a bulk load went.
#[derive(Clone, Copy, Debug)]
pub struct BulkRate {
    pub per_second: f64,
    /// Calls answered with an internal error (e.g. SQLite's "database is locked") and
    /// sent again.
    pub retries: u64,
}

/// Runs `count` calls `call(i)` over `concurrency` workers, sending a call again when the
/// service answers with an internal error (nothing was written then).
async fn bulk<F, Fut>(count: u64, concurrency: usize, call: F) -> anyhow::Result<BulkRate>
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), tonic::Status>> + Send,
{
    const ATTEMPTS: u32 = 100;
    let call = Arc::new(call);
    let next = Arc::new(AtomicU64::new(0));
    let retries = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let (call, next, retries) = (call.clone(), next.clone(), retries.clone());
        workers.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count {
                    return anyhow::Ok(());
                }
                let mut attempt = 0;
                loop {
                    match call(i).await {
                        Ok(()) => break,
                        Err(status)
                            if status.code() == tonic::Code::Internal && attempt < ATTEMPTS =>
                        {
                            attempt += 1;
                            retries.fetch_add(1, Ordering::Relaxed);
                            tokio::time::sleep(Duration::from_millis(u64::from(attempt))).await;
                        }
                        Err(status) => anyhow::bail!("call {i}: {status}"),
                    }
                }
            }
        }));
    }
    for worker in workers {
        worker.await??;
    }
    Ok(BulkRate {
        per_second: count as f64 / started.elapsed().as_secs_f64().max(1e-9),
        retries: retries.load(Ordering::Relaxed),
    })
}

fn with_caller<T>(message: T, caller: &Caller) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    caller.write_metadata(request.metadata_mut());
    request
}

/// The national ID of the `i`th employee of the bulk organization.
pub fn bulk_national_id(i: u64) -> String {
    national_id(1_000_000 + u32::try_from(i).unwrap_or(u32::MAX - 1_000_000))
}

/// The amount of the `i`th bulk instalment.
pub fn bulk_amount(i: u64) -> i64 {
    100_000 + (i % 1000) as i64 * 10
}

/// Records `count` purchases of `organization`, one instalment each in [`PERIOD`],
/// through settlement's `RecordSchedule` as credit's outbox would.
pub async fn instalments(
    system: &System,
    organization: &'static str,
    count: u64,
    concurrency: usize,
) -> anyhow::Result<BulkRate> {
    let channel = tavana_kit::grpc::Dialer::new(
        system.keyring.suite_signer(tavana_kit::trust::GATEWAY)?,
        GRPC_TIMEOUT,
    )
    .channel(&system.settlement_url)?;
    let client = settlement::settlement_service_client::SettlementServiceClient::new(channel);
    let caller = Caller::service("credit");
    bulk(count, concurrency, move |i| {
        let (mut client, caller) = (client.clone(), caller.clone());
        async move {
            let message = settlement::RecordScheduleRequest {
                purchase_id: format!("bench-{organization}-{i:08}"),
                employee_id: format!("bench-{organization}-employee-{i:08}"),
                national_id: bulk_national_id(i),
                full_name: format!("کارمند {i}"),
                organization_id: organization.to_owned(),
                merchant_id: "bench-merchant".to_owned(),
                merchant_name: "فروشگاه بنچمارک".to_owned(),
                instalments: vec![settlement::ScheduledInstalment {
                    seq: 1,
                    period: PERIOD.to_owned(),
                    amount: bulk_amount(i),
                }],
                version: 1,
                monthly_credit: 1_000_000_000,
                ..Default::default()
            };
            client
                .record_schedule(with_caller(message, &caller))
                .await
                .map(|_| ())
        }
    })
    .await
}

/// Words of the synthetic merchants' names and the merchant search queries.
pub const NAME_WORDS: [&str; 8] = [
    "کتاب",
    "پوشاک",
    "لوازم خانگی",
    "دیجیتال",
    "ورزشی",
    "لوازم التحریر",
    "اسباب بازی",
    "عطر",
];

/// The name of the `i`th synthetic merchant.
pub fn merchant_name(i: u64) -> String {
    format!(
        "فروشگاه {} {i}",
        NAME_WORDS[(i % NAME_WORDS.len() as u64) as usize]
    )
}

/// Proposes and approves `count` merchants through merchant-directory's gRPC, as the
/// gateway does for a welfare manager and for contracts.
pub async fn merchants(system: &System, count: u64) -> anyhow::Result<BulkRate> {
    let channel = tavana_kit::grpc::Dialer::new(
        system.keyring.suite_signer(tavana_kit::trust::GATEWAY)?,
        GRPC_TIMEOUT,
    )
    .channel(&system.merchants_url)?;
    let client =
        md::merchant_directory_service_client::MerchantDirectoryServiceClient::new(channel);
    let welfare = Caller::User {
        employee_id: "bench-welfare".into(),
        national_id: national_id(STAFF[1].n),
        grants: vec![RoleGrant::regional(Role::RegionWelfareManager, REGION)],
    };
    let contracts = Caller::User {
        employee_id: "bench-contracts".into(),
        national_id: national_id(STAFF[3].n),
        grants: vec![RoleGrant::global(Role::Contracts)],
    };
    bulk(count, 16, move |i| {
        let (mut client, welfare, contracts) = (client.clone(), welfare.clone(), contracts.clone());
        async move {
            let online = i % 2 == 0;
            let data = md::MerchantData {
                name: merchant_name(i),
                kind: if online {
                    md::MerchantKind::Online as i32
                } else {
                    md::MerchantKind::InPerson as i32
                },
                website: online.then(|| format!("https://shop-{i}.example")),
                city: (!online).then(|| "تهران".to_owned()),
                province: (!online).then(|| "تهران".to_owned()),
                address: (!online).then(|| format!("خیابان {i}")),
                categories: vec![NAME_WORDS[(i % NAME_WORDS.len() as u64) as usize].to_owned()],
                supports_credit: true,
                supports_instalment: i % 3 != 0,
                contact_phone: "02188000000".to_owned(),
            };
            let proposal = client
                .propose_merchant(with_caller(
                    md::ProposeMerchantRequest {
                        data: Some(data),
                        ..Default::default()
                    },
                    &welfare,
                ))
                .await?
                .into_inner()
                .proposal
                .ok_or_else(|| tonic::Status::internal("no proposal"))?;
            client
                .decide_proposal(with_caller(
                    md::DecideProposalRequest {
                        proposal_id: proposal.proposal_id,
                        approve: true,
                        reason: None,
                    },
                    &contracts,
                ))
                .await
                .map(|_| ())
        }
    })
    .await
}

/// Waits until the outbox of the database at `url` has no message of `topic` left to
/// deliver (at most ten minutes). Only one topic: settlement also tells identity about the
/// bulk employees, whom identity does not know, so those messages wait for good (see
/// [`set_aside_unknown_sms`]).
pub async fn outbox_drained(url: &str, topic: &str) -> anyhow::Result<()> {
    let db = tavana_kit::db::connect(url, 1).await?;
    let started = Instant::now();
    loop {
        let pending = tavana_kit::outbox::pending_count_of(&db, topic).await?;
        if pending == 0 {
            break;
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(600),
            "{pending} {topic} messages still undelivered after ten minutes"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    db.close().await?;
    Ok(())
}

/// Sets aside, as failed for good, the SMS requests settlement still holds for identity
/// (`identity.notify_employees`) and returns how many. Those of the bench are about the
/// bulk employees, whom identity does not know (a million SMS is not what a scenario
/// measures): left pending, each would be retried with backoff, thousands of employee
/// reads a time, through every later scenario. A remittance or a period close has sent
/// them by its answer; the relay never claims a failed message again.
pub async fn set_aside_unknown_sms(url: &str) -> anyhow::Result<u64> {
    use sea_orm::sea_query::{Expr, ExprTrait as _, Query};
    use tavana_kit::outbox::Outbox;
    let db = tavana_kit::db::connect(url, 1).await?;
    let update = Query::update()
        .table(Outbox::Table)
        .value(Outbox::FailedAt, chrono::Utc::now())
        .value(
            Outbox::LeaseUntil,
            Option::<chrono::DateTime<chrono::Utc>>::None,
        )
        .value(
            Outbox::LastError,
            "set aside by the bench: the bulk employees are unknown to identity",
        )
        .and_where(Expr::col(Outbox::Topic).eq("identity.notify_employees"))
        .and_where(Expr::col(Outbox::DeliveredAt).is_null())
        .and_where(Expr::col(Outbox::FailedAt).is_null())
        .to_owned();
    let set_aside = tavana_kit::db::execute_write(&db, &update)
        .await?
        .rows_affected();
    db.close().await?;
    Ok(set_aside)
}

/// Writes credit's side of the bulk purchases of `organization` (those [`instalments`]
/// recorded in settlement) straight into credit's database, one `INSERT ... SELECT` over a
/// generated series for the facilities and one over the purchases' R31 terms (computed
/// here, as credit computes them) for the purchases: a million purchases
/// through the purchase path would take hours, and the reconciliation scenario (R31) reads
/// credit's ledger, not how it was written. Each purchase has a closed facility of its own,
/// as each bulk instalment has an employee of its own: the facilities' statistics are then
/// those of a deployment, where no facility holds a large share of the purchases (with one
/// facility holding them all, PostgreSQL planned the buyers' hold sums anew on every call
/// rather than once). The facilities are closed and the holds released, so no buyer's
/// balance sees them.
pub async fn ledger(system: &System, organization: &str, count: u64) -> anyhow::Result<()> {
    use sea_orm::{ConnectionTrait, Statement, Value};
    use tavana_credit::domain::purchase::Deduction;
    use tavana_kit::jalali::JalaliPeriod;
    use tavana_kit::ledger_digest::LedgerDigest;
    use tavana_kit::money::Rial;

    let db = tavana_kit::db::connect(&system.credit_database_url, 2).await?;
    let now = chrono::Utc::now();
    let backend = db.get_database_backend();
    let postgres = backend == sea_orm::DbBackend::Postgres;
    let (series, padded) = if postgres {
        (
            "generate_series(0, $1 - 1) AS n(i)",
            "lpad(i::text, 8, '0')",
        )
    } else {
        ("n", "printf('%08d', i)")
    };
    let with = if postgres {
        ""
    } else {
        "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i + 1 < $1) "
    };
    // SQLite numbers its parameters `?N`.
    let numbered = |sql: String| if postgres { sql } else { sql.replace('$', "?") };
    let facility_prefix = format!("bench-{organization}-facility-");
    let employee_prefix = format!("bench-{organization}-employee-");
    let facilities = format!(
        "{with}INSERT INTO facility (id, credit_request_id, employee_id, open_employee_id, \
           national_id, full_name, organization_id, monthly_credit, max_instalments, \
           purchasing_power, activates_at, suspended, closed_at, created_at, version, \
           guarantor_employee_id, region_code) \
         SELECT $2 || {padded}, $2 || {padded}, $3 || {padded}, NULL, $4, $5, $6, \
           1000000000, 12, 12000000000, $7, $8, $7, $7, 0, '', $9 \
         FROM {series}"
    );
    let values: Vec<Value> = vec![
        i64::try_from(count)?.into(),
        facility_prefix.clone().into(),
        employee_prefix.clone().into(),
        bulk_national_id(0).into(),
        "کارمند انبوه".into(),
        organization.into(),
        now.into(),
        false.into(),
        REGION.into(),
    ];
    db.execute_raw(Statement::from_sql_and_values(
        backend,
        numbered(facilities),
        values,
    ))
    .await
    .context("bulk insert of credit's facilities")?;

    // Credit's schedule text for one deduction of PERIOD, split around the amount, which
    // the statement writes per row as `bulk_amount` does.
    const SENTINEL: i64 = 987_654_321_012;
    let template = serde_json::to_string(&[Deduction {
        seq: 1,
        period: JalaliPeriod::parse(PERIOD)?,
        amount: Rial(SENTINEL),
    }])?;
    let (schedule_head, schedule_tail) = template
        .split_once(&SENTINEL.to_string())
        .context("the schedule text does not show its amount")?;
    let amount = "(100000 + (i % 1000) * 10)";
    // R31's term of each purchase, as credit stores it with the purchase (computed here:
    // no database hashes it), bound as one list the statement reads its rows from.
    let terms: Vec<i64> = (0..count)
        .map(|i| {
            let amount = bulk_amount(i);
            let id = format!("bench-{organization}-{i:08}");
            LedgerDigest::purchase_term(&id, amount, [(PERIOD, amount)]).0
        })
        .collect();
    let (rows, terms) = if postgres {
        (
            "(SELECT ordinal - 1 AS i, term FROM unnest(CAST($12 AS bigint[])) \
               WITH ORDINALITY AS u(term, ordinal)) AS n",
            Value::Array(
                sea_orm::sea_query::ArrayType::BigInt,
                Some(Box::new(terms.into_iter().map(Value::from).collect())),
            ),
        )
    } else {
        (
            "(SELECT CAST(key AS INTEGER) AS i, value AS term FROM json_each($12)) AS n",
            serde_json::to_string(&terms)?.into(),
        )
    };
    let sql = format!(
        "INSERT INTO purchase (id, facility_id, employee_id, merchant_id, merchant_name, \
           kind, amount, refunded_amount, months, purchase_period, schedule, created_at, \
           created_micros, settled_at, hold_monthly, hold_total, hold_release_at, \
           hold_waits_for_contract, hold_released_at, schedule_version, partly_settled_at, \
           national_id, ledger_term) \
         SELECT $1 || {padded}, $2 || {padded}, $3 || {padded}, 'bench-merchant', $4, 'instalment', \
           {amount}, 0, 1, $5, $6 || CAST({amount} AS TEXT) || $7, $8, $9, NULL, 0, 0, NULL, \
           $10, $8, 1, NULL, $11, term \
         FROM {rows}"
    );
    let values: Vec<Value> = vec![
        format!("bench-{organization}-").into(),
        facility_prefix.into(),
        employee_prefix.into(),
        "فروشگاه بنچمارک".into(),
        PERIOD.into(),
        schedule_head.into(),
        schedule_tail.into(),
        now.into(),
        now.timestamp_micros().into(),
        false.into(),
        bulk_national_id(0).into(),
        terms,
    ];
    db.execute_raw(Statement::from_sql_and_values(
        backend,
        numbered(sql),
        values,
    ))
    .await
    .context("bulk insert of credit's purchases")?;
    db.close().await?;
    Ok(())
}
