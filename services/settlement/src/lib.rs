//! The settlement service: instalment schedules, deduction lists, remittances and their
//! reconciliation (R22-R24).

pub mod convert;
pub mod delivery;
pub mod domain;
pub mod error;
pub mod reconcile;
pub mod rpc;
pub mod service;
pub mod store;

use std::future::Future;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tavana_kit::Shared;
use tavana_kit::config::{DatabaseSettings, GrpcSettings};
use tavana_kit::grpc::Dialer;
use tavana_kit::outbox::{Deliver, OutboxRelay};
use tavana_proto::settlement::v1::settlement_service_server::SettlementServiceServer;
use tavana_settlement_migration::Migrator;
use tonic::service::Routes;

use crate::delivery::PeerDelivery;
use crate::domain::remittance::PartialSettlement;
use crate::rpc::SettlementRpc;
use crate::service::SettlementFlows;
use crate::store::Store;

pub use crate::error::SettlementError;

/// The largest request or response the settlement server accepts: remittances of a whole
/// organization arrive in one message.
pub const MAX_MESSAGE_SIZE: usize = 256 * 1024 * 1024;

/// The name of the settlement service for health checks.
pub const SERVICE_NAME: &str = "tavana.settlement.v1.SettlementService";

/// Which principals may call each method (default deny; user and merchant callers come
/// only from the gateway, see `docs/security.md`).
pub static POLICY: tavana_kit::trust::Policy = {
    use tavana_kit::trust::*;
    Policy {
        service: SERVICE_NAME,
        audience: SETTLEMENT,
        methods: &[
            ("RecordSchedule", &[CREDIT]),
            ("CancelInstalments", &[CREDIT]),
            ("ListMyInstalments", &[GATEWAY]),
            ("StreamDeductionList", &[GATEWAY]),
            ("RecordRemittance", &[GATEWAY]),
            ("GetRemittance", &[GATEWAY]),
            ("Reconcile", &[GATEWAY]),
            ("ClosePeriod", &[GATEWAY]),
            ("ListOverdue", &[GATEWAY]),
            ("ListUnmatchedLines", &[GATEWAY]),
            ("ResolveUnmatchedLine", &[GATEWAY]),
        ],
        reads: &["ListMyInstalments"],
    }
};

/// Settings of the settlement service (section `settlement`).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// Its database; empty means `data/settlement.db` (SQLite).
    pub database: DatabaseSettings,
    /// Its gRPC server.
    pub grpc: GrpcSettings,
    /// Its outbox: how long an answer waits to deliver what it wrote.
    pub outbox: tavana_kit::config::OutboxSettings,
    /// Base URL of the credit service, told when a purchase is fully settled.
    pub credit_url: String,
    /// Base URL of the identity service, which sends the settlement SMS.
    pub identity_url: String,
    /// When true, a remittance line that does not match exactly settles whole instalments
    /// oldest first while its amount covers them (R23); by default it settles nothing.
    pub allow_partial_settlement: bool,
}

impl Settings {
    fn database_url(&self) -> String {
        self.database.url_or_default("settlement")
    }

    fn partial_settlement(&self) -> PartialSettlement {
        if self.allow_partial_settlement {
            PartialSettlement::Allowed
        } else {
            PartialSettlement::Refused
        }
    }
}

/// Connects to settlement's database as it is (tooling such as `tavana admin reconcile`,
/// which runs beside the service): a schema newer than this build knows is refused.
pub async fn connect(settings: &Settings) -> anyhow::Result<sea_orm::DatabaseConnection> {
    tavana_kit::db::connect_checked::<Migrator>(
        &settings.database_url(),
        settings.database.max_connections,
    )
    .await
}

/// Applies the migrations to the configured database.
pub async fn migrate(settings: &Settings) -> anyhow::Result<()> {
    tavana_kit::db::migrate::<Migrator>(&settings.database_url(), settings.database.max_connections)
        .await
}

/// Serves the settlement service on `listener` until `shutdown` completes, with its outbox
/// relay to credit and identity.
pub async fn serve(
    settings: Settings,
    shared: Shared,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let dialer = dialer(&settings, &shared)?;
    let delivery = PeerDelivery::new(&settings.credit_url, &settings.identity_url, &dialer)?;
    serve_on(
        settings,
        shared,
        &dialer,
        listener,
        Arc::new(delivery),
        shutdown,
    )
    .await
}

/// Serves like [`serve`], delivering the outbox through `delivery` (tests record it).
pub async fn serve_with_delivery(
    settings: Settings,
    shared: Shared,
    listener: tokio::net::TcpListener,
    delivery: Arc<dyn Deliver>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let dialer = dialer(&settings, &shared)?;
    serve_on(settings, shared, &dialer, listener, delivery, shutdown).await
}

/// How settlement calls its peers: as itself, within its request timeout.
fn dialer(settings: &Settings, shared: &Shared) -> anyhow::Result<Dialer> {
    shared.dialer(
        tavana_kit::trust::SETTLEMENT,
        settings.grpc.request_timeout(),
    )
}

/// Serves on `listener`, calling credit through `dialer` and delivering the outbox
/// through `delivery`.
async fn serve_on(
    settings: Settings,
    shared: Shared,
    dialer: &Dialer,
    listener: tokio::net::TcpListener,
    delivery: Arc<dyn Deliver>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let db = tavana_kit::db::connect_checked::<Migrator>(
        &settings.database_url(),
        settings.database.max_connections,
    )
    .await?;
    tavana_kit::metrics::watch_database("settlement", db.clone());

    let (outbox, relay) = OutboxRelay::start(db.clone(), delivery, &settings.outbox);

    let ledger: Option<Arc<dyn reconcile::Ledger>> = if settings.credit_url.is_empty() {
        None
    } else {
        Some(Arc::new(reconcile::CreditLedger::new(
            &settings.credit_url,
            dialer,
        )?))
    };
    let audit = tavana_kit::audit::server(db.clone());
    let service = SettlementRpc::new(SettlementFlows::new(
        Store::new(db),
        shared.clock.clone(),
        outbox,
        settings.partial_settlement(),
        ledger,
    ));
    let server = SettlementServiceServer::new(service)
        .max_decoding_message_size(MAX_MESSAGE_SIZE)
        .max_encoding_message_size(MAX_MESSAGE_SIZE);
    let served = tavana_kit::grpc::serve_grpc(
        listener,
        Routes::new(server).add_service(audit),
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
