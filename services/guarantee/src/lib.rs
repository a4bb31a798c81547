//! The guarantee service: credit requests, guarantees and their approvals (R7-R13).
//!
//! `serve` connects to its database, starts the outbox relay (which opens facilities at
//! credit and sends SMS through identity) and serves `GuaranteeService` over gRPC.

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

use anyhow::Context;
use serde::{Deserialize, Serialize};
use tavana_guarantee_migration::Migrator;
use tavana_kit::Shared;
use tavana_kit::config::{DatabaseSettings, GrpcSettings};
use tavana_kit::outbox::OutboxRelay;
use tavana_proto::guarantee::v1::guarantee_service_server::GuaranteeServiceServer;

use crate::delivery::PeerDelivery;
use crate::peers::Identity;
use crate::rpc::GuaranteeRpc;
use crate::service::GuaranteeFlows;
use crate::store::Store;

/// The gRPC service name, for health checks.
pub const GRPC_SERVICE_NAME: &str = "tavana.guarantee.v1.GuaranteeService";

/// Which principals may call each method (default deny; user and merchant callers come
/// only from the gateway, see `docs/security.md`).
pub static POLICY: tavana_kit::trust::Policy = {
    use tavana_kit::trust::*;
    Policy {
        service: GRPC_SERVICE_NAME,
        audience: GUARANTEE,
        methods: &[
            ("FileCreditRequest", &[GATEWAY]),
            ("GetMyCreditLimits", &[GATEWAY]),
            ("GetCreditRequest", &[GATEWAY]),
            ("ListMyCreditRequests", &[GATEWAY]),
            ("ListGuaranteeRequests", &[GATEWAY]),
            ("ListRegionCreditRequests", &[GATEWAY]),
            ("CancelCreditRequest", &[GATEWAY]),
            ("DecideAsGuarantor", &[GATEWAY]),
            ("DecideAsFinance", &[GATEWAY]),
            ("ReleaseGuarantee", &[CREDIT]),
        ],
        reads: &[
            "GetMyCreditLimits",
            "GetCreditRequest",
            "ListMyCreditRequests",
            "ListGuaranteeRequests",
            "ListRegionCreditRequests",
        ],
    }
};

/// The policy maximum of the instalment ceiling `N` when none is configured (R7).
pub const DEFAULT_MAX_INSTALMENTS: u32 = 36;

/// How many refused filings one employee may have in 24 hours when nothing is configured
/// (R32).
pub const DEFAULT_REFUSED_FILINGS_PER_DAY: u64 = 10;

/// Settings of the guarantee service (section `guarantee`).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// Its own database.
    pub database: DatabaseSettings,
    /// Its gRPC server.
    pub grpc: GrpcSettings,
    /// Its outbox: how long an answer waits to deliver what it wrote.
    pub outbox: tavana_kit::config::OutboxSettings,
    /// Identity's gRPC URL, for HR data and SMS.
    pub identity_url: String,
    /// Credit's gRPC URL, for opening facilities.
    pub credit_url: String,
    /// The policy maximum of the instalment ceiling `N` (R7).
    pub max_instalments: u32,
    /// How many refused filings one employee may have in 24 hours (R32).
    pub refused_filings_per_day: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            database: DatabaseSettings::default(),
            grpc: GrpcSettings::default(),
            outbox: tavana_kit::config::OutboxSettings::default(),
            identity_url: "http://127.0.0.1:50051".to_owned(),
            credit_url: "http://127.0.0.1:50053".to_owned(),
            max_instalments: DEFAULT_MAX_INSTALMENTS,
            refused_filings_per_day: DEFAULT_REFUSED_FILINGS_PER_DAY,
        }
    }
}

impl Settings {
    /// Returns the database URL: the configured one, or `./data/guarantee.db`.
    pub fn database_url(&self) -> String {
        self.database.url_or_default("guarantee")
    }
}

/// Applies the pending migrations.
pub async fn migrate(settings: &Settings) -> anyhow::Result<()> {
    tavana_kit::db::migrate::<Migrator>(&settings.database_url(), settings.database.max_connections)
        .await
}

/// Serves the guarantee service on `listener` until `shutdown` completes.
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
    tavana_kit::metrics::watch_database("guarantee", db.clone());

    let dialer = shared.dialer(
        tavana_kit::trust::GUARANTEE,
        settings.grpc.request_timeout(),
    )?;
    let identity_channel = dialer
        .channel(&settings.identity_url)
        .context("invalid identity_url")?;
    let credit_channel = dialer
        .channel(&settings.credit_url)
        .context("invalid credit_url")?;

    let (outbox, relay) = OutboxRelay::start(
        db.clone(),
        Arc::new(PeerDelivery::new(identity_channel.clone(), credit_channel)),
        &settings.outbox,
    );

    let audit = tavana_kit::audit::server(db.clone());
    let flows = GuaranteeFlows::new(
        Store::new(db),
        shared.clock.clone(),
        Identity::new(identity_channel),
        settings.max_instalments,
        outbox,
        shared.store.clone(),
        settings.refused_filings_per_day,
    );
    let routes = tonic::service::Routes::new(GuaranteeServiceServer::new(GuaranteeRpc::new(flows)))
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
    relay.stop().await;
    served
}
