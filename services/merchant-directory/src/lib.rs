//! The merchant-directory service: merchants, proposals by regional welfare managers,
//! contracts, merchant API keys and search (R25-R27).
//!
//! `serve` connects to its own database and serves `MerchantDirectoryService` over gRPC;
//! listing pages are cached in the shared key-value store (Redis or in-process).

pub mod cache;
pub mod convert;
pub mod domain;
pub mod error;
pub mod rpc;
pub mod service;
pub mod store;

use std::future::Future;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tavana_kit::Shared;
use tavana_kit::config::{DatabaseSettings, GrpcSettings};
use tavana_merchant_directory_migration::Migrator;
use tavana_proto::merchant_directory::v1::merchant_directory_service_server::MerchantDirectoryServiceServer;

use crate::cache::ListingCache;
use crate::rpc::MerchantDirectoryRpc;
use crate::service::MerchantDirectory;

/// The gRPC service name, for health checks.
pub const GRPC_SERVICE_NAME: &str = "tavana.merchant_directory.v1.MerchantDirectoryService";

/// Which principals may call each method (default deny; user and merchant callers come
/// only from the gateway, see `docs/security.md`).
pub static POLICY: tavana_kit::trust::Policy = {
    use tavana_kit::trust::*;
    Policy {
        service: GRPC_SERVICE_NAME,
        audience: MERCHANT_DIRECTORY,
        methods: &[
            ("ProposeMerchant", &[GATEWAY]),
            ("ListProposals", &[GATEWAY]),
            ("GetProposal", &[GATEWAY]),
            ("DecideProposal", &[GATEWAY]),
            ("SuspendMerchant", &[GATEWAY]),
            ("RotateMerchantKey", &[GATEWAY]),
            ("ListMerchants", &[GATEWAY]),
            ("GetMerchant", &[GATEWAY, CREDIT]),
            ("AuthenticateMerchant", &[GATEWAY]),
        ],
        reads: &[
            "ListProposals",
            "GetProposal",
            "ListMerchants",
            "GetMerchant",
        ],
    }
};

/// How long a cached listing page lives when nothing else is configured.
pub const DEFAULT_CACHE_TTL_SECONDS: u64 = 30;

/// How often the search's name index is merged back into one segment when nothing else is
/// configured: soon after a bulk of approvals, searches run at full speed again; a tick
/// with nothing to merge writes nothing.
pub const DEFAULT_NAME_INDEX_UPKEEP_SECONDS: u64 = 10;

/// Settings of the merchant-directory service (section `merchant_directory`).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// Its own database; empty means `./data/merchant-directory.sqlite`.
    pub database: DatabaseSettings,
    /// Its gRPC server.
    pub grpc: GrpcSettings,
    /// How long a cached listing page lives; it bounds how long a suspended merchant can
    /// still show if an invalidation is lost. 0 turns the cache off.
    pub cache_ttl_seconds: u64,
    /// How often, in seconds, SQLite's name index is merged back into one segment (see
    /// [`store::compact_name_index`]); 0 turns the upkeep off.
    pub name_index_upkeep_seconds: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            database: DatabaseSettings::default(),
            grpc: GrpcSettings::default(),
            cache_ttl_seconds: DEFAULT_CACHE_TTL_SECONDS,
            name_index_upkeep_seconds: DEFAULT_NAME_INDEX_UPKEEP_SECONDS,
        }
    }
}

impl Settings {
    /// Returns the database URL: the configured one, or `./data/merchant-directory.sqlite`.
    pub fn database_url(&self) -> String {
        self.database.url_or_default("merchant-directory")
    }

    /// Returns the listing cache's TTL.
    pub fn cache_ttl(&self) -> Duration {
        Duration::from_secs(self.cache_ttl_seconds)
    }
}

/// Applies the pending migrations.
pub async fn migrate(settings: &Settings) -> anyhow::Result<()> {
    tavana_kit::db::migrate::<Migrator>(&settings.database_url(), settings.database.max_connections)
        .await
}

/// Serves the merchant directory on `listener` until `shutdown` completes.
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
    tavana_kit::metrics::watch_pool("merchant_directory", db.clone());
    let cache = ListingCache::new(shared.store.clone(), settings.cache_ttl());
    let audit = tavana_kit::audit::server(db.clone());
    let upkeep = (settings.name_index_upkeep_seconds > 0).then(|| {
        spawn_name_index_upkeep(
            db.clone(),
            Duration::from_secs(settings.name_index_upkeep_seconds),
        )
    });
    let service =
        MerchantDirectoryRpc::new(MerchantDirectory::new(db, shared.clock.clone(), cache));
    let routes = tonic::service::Routes::new(MerchantDirectoryServiceServer::new(service))
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
    if let Some(upkeep) = upkeep {
        upkeep.abort();
    }
    served
}

/// Keeps the name index that serves merchant search compact, now and every `interval`
/// (see [`store::compact_name_index`]).
fn spawn_name_index_upkeep(
    db: sea_orm::DatabaseConnection,
    interval: Duration,
) -> tokio::task::JoinHandle<()> {
    tavana_kit::upkeep::spawn_every("name index", interval, move || {
        let db = db.clone();
        async move { store::compact_name_index(&db).await.map(|()| 0) }
    })
}
