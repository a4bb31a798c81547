//! The credit service: facilities, holds, purchases, refunds and cards (R12, R14-R21).
//!
//! `serve` connects to its database, starts the outbox relay (schedules and refunds to
//! settlement, guarantee releases, receipt SMS through identity) and serves
//! `CreditService` over gRPC.

pub mod convert;
pub mod delivery;
pub mod domain;
pub mod error;
pub mod peers;
pub mod rpc;
pub mod service;
pub mod store;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use serde::{Deserialize, Serialize};
use tavana_credit_migration::Migrator;
use tavana_kit::Shared;
use tavana_kit::config::{DatabaseSettings, GrpcSettings};
use tavana_kit::outbox::OutboxRelay;
use tavana_proto::credit::v1::credit_service_server::CreditServiceServer;

use crate::delivery::CreditDelivery;
use crate::peers::Peers;
use crate::rpc::CreditRpc;
use crate::service::CreditFlows;
use crate::store::Store;

/// The gRPC service name, for health checks.
pub const GRPC_SERVICE_NAME: &str = "tavana.credit.v1.CreditService";

/// Which principals may call each method (default deny; user and merchant callers come
/// only from the gateway, see `docs/security.md`).
pub static POLICY: tavana_kit::trust::Policy = {
    use tavana_kit::trust::*;
    Policy {
        service: GRPC_SERVICE_NAME,
        audience: CREDIT,
        methods: &[
            ("OpenFacility", &[GUARANTEE]),
            ("CloseFacility", &[GATEWAY, CLI]),
            ("SuspendFacility", &[GATEWAY, CLI]),
            ("ResumeFacility", &[GATEWAY, CLI]),
            ("ListPurchaseLedger", &[SETTLEMENT]),
            ("DigestPurchaseLedger", &[SETTLEMENT]),
            ("GetBalance", &[GATEWAY]),
            ("CreatePurchase", &[GATEWAY]),
            ("CreateMerchantPurchase", &[GATEWAY]),
            ("ListPurchases", &[GATEWAY]),
            ("RefundPurchase", &[GATEWAY]),
            ("MarkPurchasesSettled", &[SETTLEMENT]),
            ("GetCard", &[GATEWAY]),
            ("ChangePin", &[GATEWAY]),
            ("UnlockCard", &[GATEWAY]),
            ("SetArrears", &[SETTLEMENT]),
        ],
        reads: &[
            "GetBalance",
            "ListPurchases",
            "GetCard",
            "ListPurchaseLedger",
            "DigestPurchaseLedger",
        ],
    }
};

/// The policy maximum of the instalment ceiling `N` when none is configured (R7, R12).
pub const DEFAULT_MAX_INSTALMENTS: u32 = 36;

/// Settings of the credit service (section `credit`).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// Its own database.
    pub database: DatabaseSettings,
    /// Its gRPC server.
    pub grpc: GrpcSettings,
    /// Its outbox: how long an answer waits to deliver what it wrote.
    pub outbox: tavana_kit::config::OutboxSettings,
    /// Merchant-directory's gRPC URL, for merchants.
    pub merchant_directory_url: String,
    /// Identity's gRPC URL, for organization contracts and SMS.
    pub identity_url: String,
    /// Settlement's gRPC URL, for schedules and cancellations.
    pub settlement_url: String,
    /// Guarantee's gRPC URL, for releasing guarantees.
    pub guarantee_url: String,
    /// The policy maximum of the instalment ceiling `N`.
    pub max_instalments: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            database: DatabaseSettings::default(),
            grpc: GrpcSettings::default(),
            outbox: tavana_kit::config::OutboxSettings::default(),
            merchant_directory_url: "http://127.0.0.1:50055".to_owned(),
            identity_url: "http://127.0.0.1:50051".to_owned(),
            settlement_url: "http://127.0.0.1:50054".to_owned(),
            guarantee_url: "http://127.0.0.1:50052".to_owned(),
            max_instalments: DEFAULT_MAX_INSTALMENTS,
        }
    }
}

impl Settings {
    /// Returns the database URL: the configured one, or `./data/credit.db`.
    pub fn database_url(&self) -> String {
        self.database.url_or_default("credit")
    }
}

/// Connects to credit's database as it is (tooling such as `tavana admin reconcile`, which
/// runs beside the service): a schema newer than this build knows is refused.
pub async fn connect(settings: &Settings) -> anyhow::Result<sea_orm::DatabaseConnection> {
    tavana_kit::db::connect_checked::<Migrator>(
        &settings.database_url(),
        settings.database.max_connections,
    )
    .await
}

/// Applies the pending migrations.
pub async fn migrate(settings: &Settings) -> anyhow::Result<()> {
    tavana_kit::db::migrate::<Migrator>(&settings.database_url(), settings.database.max_connections)
        .await
}

/// Serves the credit service on `listener` until `shutdown` completes.
pub async fn serve(
    settings: Settings,
    shared: Shared,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let db = tavana_kit::db::connect_checked::<Migrator>(
        &settings.database_url(),
        settings.database.max_connections,
    )
    .await?;
    tavana_kit::metrics::watch_database("credit", db.clone());

    let dialer = shared.dialer(tavana_kit::trust::CREDIT, settings.grpc.request_timeout())?;
    let delivery = CreditDelivery::connect(
        &settings.settlement_url,
        &settings.guarantee_url,
        &settings.identity_url,
        &dialer,
    )
    .context("invalid peer url")?;
    let peers = Peers::connect(
        &settings.merchant_directory_url,
        &settings.identity_url,
        &dialer,
    )
    .context("invalid peer url")?;

    let (outbox, relay) = OutboxRelay::start(db.clone(), Arc::new(delivery), &settings.outbox);

    let audit = tavana_kit::audit::server(db.clone());
    let store = Store::new(db, Some(outbox));
    let upkeep = spawn_idempotency_purge(store.clone(), shared.clock.clone());
    let flows = CreditFlows::new(store, peers, shared.clock.clone(), settings.max_instalments);
    let routes = tonic::service::Routes::new(CreditServiceServer::new(CreditRpc::new(flows)))
        .add_service(audit);
    let served = tavana_kit::grpc::serve_grpc(
        listener,
        routes,
        tavana_proto::FILE_DESCRIPTOR_SET,
        tavana_kit::trust::Gate::new(shared.keyring.clone(), &POLICY)
            .and(&tavana_kit::audit::POLICY),
        settings.grpc.clone(),
        shared.in_process.clone(),
        shutdown,
    )
    .await;
    upkeep.abort();
    relay.stop().await;
    served
}

/// How often idempotency records past their retention are purged.
const IDEMPOTENCY_PURGE_INTERVAL: Duration = Duration::from_secs(3600);

/// Purges the idempotency records past their retention (R19) now and every
/// [`IDEMPOTENCY_PURGE_INTERVAL`], on the service's clock, which stamped them.
fn spawn_idempotency_purge(
    store: Store,
    clock: tavana_kit::SharedClock,
) -> tokio::task::JoinHandle<()> {
    tavana_kit::upkeep::spawn_every("idempotency purge", IDEMPOTENCY_PURGE_INTERVAL, move || {
        let store = store.clone();
        let now = clock.now();
        async move { store.purge_idempotency_records(now).await }
    })
}
