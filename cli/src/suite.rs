//! Everything in one process: each service serves gRPC on its own loopback
//! port, the gateway serves HTTP, all share one clock and one store. Calls
//! between them stay in process ([`InProcess`]): the same signed, gated
//! stack, without the socket.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use serde::{Deserialize, Serialize};
use tavana_gateway::{AppState, GatewaySettings};
use tavana_kit::Shared;
use tavana_kit::clock::{AdjustableClock, SharedClock, SystemClock};
use tavana_kit::config::{DatabaseSettings, RedisSettings, TelemetrySettings, TrustSettings};
use tavana_kit::grpc::InProcess;
use tavana_kit::trust::{self, Keyring};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

/// Settings of the whole suite: one section per service, as each service's
/// own binary reads them (`TAVANA_CREDIT__DATABASE__URL=…`).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct SuiteSettings {
    /// The identity service.
    pub identity: tavana_identity::Settings,
    /// The guarantee service.
    pub guarantee: tavana_guarantee::Settings,
    /// The credit service.
    pub credit: tavana_credit::Settings,
    /// The settlement service.
    pub settlement: tavana_settlement::Settings,
    /// The merchant directory.
    pub merchant_directory: tavana_merchant_directory::Settings,
    /// The HTTP gateway.
    pub gateway: GatewaySettings,
    /// The shared Redis (sessions, rate limits, codes); in process when unset.
    pub redis: RedisSettings,
    /// Logs and OTLP traces.
    pub telemetry: TelemetrySettings,
    /// `/metrics` of the whole process (every series has a `service` label).
    pub metrics: tavana_kit::metrics::MetricsSettings,
    /// The key directory; unset, `up` keeps (and creates) every key in `<data-dir>/keys`.
    pub trust: TrustSettings,
}

/// How `tavana up` was asked to run.
#[derive(Clone, Debug)]
pub struct UpOptions {
    /// Where the SQLite files live (unless a database URL is configured).
    pub data_dir: PathBuf,
    /// The gateway's address; port 0 picks a free one.
    pub listen: String,
    /// More gateway replicas, one on each address: each with its own state and portal,
    /// sharing only the store (and the services), as replicas behind a load balancer do.
    pub gateway_replicas: Vec<String>,
    /// Dev mode: dev SMS provider, dev clock, `/v1/dev/*`.
    pub dev: bool,
    /// The settings, from defaults, an optional file and the environment.
    pub settings: SuiteSettings,
}

/// A running suite.
pub struct Suite {
    /// Where the gateway listens.
    pub gateway: SocketAddr,
    /// Where the further gateway replicas listen ([`UpOptions::gateway_replicas`]).
    pub gateway_replicas: Vec<SocketAddr>,
    /// Where each service serves gRPC.
    pub services: Vec<(&'static str, SocketAddr)>,
    /// The dev clock, in dev mode.
    pub dev_clock: Option<Arc<AdjustableClock>>,
    /// The expiring-key store every service and the gateway share.
    pub store: Arc<dyn tavana_kit::store::KvStore>,
    /// Every principal's key: the services sign and verify with it, and so do the demo
    /// loader and tests speaking as the gateway.
    pub keyring: Keyring,
    stop: watch::Sender<bool>,
    tasks: JoinSet<(&'static str, anyhow::Result<()>)>,
}

impl Suite {
    /// Returns the gateway's base URL.
    pub fn gateway_url(&self) -> String {
        format!("http://{}", self.gateway)
    }

    /// Returns the gRPC URL of a service by name.
    pub fn service_url(&self, name: &str) -> Option<String> {
        self.services
            .iter()
            .find(|(service, _)| *service == name)
            .map(|(_, address)| format!("http://{address}"))
    }

    /// Waits until a task ends (a failure or a stop) and returns its result.
    pub async fn wait(&mut self) -> anyhow::Result<()> {
        match self.tasks.join_next().await {
            Some(Ok((name, result))) => result.with_context(|| format!("{name} stopped")),
            Some(Err(error)) => Err(error).context("a task panicked"),
            None => Ok(()),
        }
    }

    /// Asks every service and the gateway to stop, and waits for them.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        let _ = self.stop.send(true);
        while let Some(joined) = self.tasks.join_next().await {
            if let Ok((name, Err(error))) = joined {
                tracing::warn!(service = name, %error, "stopped with an error");
            }
        }
        Ok(())
    }
}

/// Resolves once the suite is asked to stop.
async fn stopped(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}

async fn bind(address: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(address)
        .await
        .with_context(|| format!("cannot listen on {address}"))
}

/// The pool of a service on a SQLite file in `tavana up`, unless one is configured.
///
/// SQLite runs one writer at a time, and every connection keeps its own page cache (2 MiB
/// by default) and prepared statements, so connections beyond a few add memory, not
/// throughput. Measured on 2 cores (`tavana-bench`, 20,000 instalments): 4 connections
/// per service against the services' default of 10 kept purchases, balance reads,
/// searches and the salary day within their noise (purchases 408 against 385/s), and
/// lowered the process's peak RSS from 254 to 196 MiB over the deduction list and from
/// 401 to 259 MiB over reconciliation.
pub const SQLITE_POOL: u32 = 4;

/// Points a service left on its default database at a SQLite file in the data directory
/// (`tavana up`), with a pool of [`SQLITE_POOL`] unless its size is configured.
pub fn default_sqlite(
    database: &mut DatabaseSettings,
    service_default: &DatabaseSettings,
    data_dir: &std::path::Path,
    service: &str,
) {
    database_or_data_dir(database, service_default, data_dir, service);
    if !tavana_kit::db::is_postgres_url(&database.url)
        && database.max_connections == service_default.max_connections
    {
        database.max_connections = SQLITE_POOL;
    }
}

/// Points a service left on its default database at `<data_dir>/<service>.db`, as
/// `tavana up` does; a configured URL (PostgreSQL) stays.
pub fn database_or_data_dir(
    database: &mut DatabaseSettings,
    service_default: &DatabaseSettings,
    data_dir: &std::path::Path,
    service: &str,
) {
    if database.url.is_empty() || database.url == service_default.url {
        database.url = tavana_kit::db::sqlite_url(data_dir, service);
    }
}

/// Refuses `--dev` on an address other machines can reach unless `allow_remote` says so:
/// dev mode serves everyone's login codes (`/v1/dev/sms`) and moves the clock.
pub fn check_dev_listen(listen: &str, dev: bool, allow_remote: bool) -> anyhow::Result<()> {
    if !dev || allow_remote {
        return Ok(());
    }
    let host = listen
        .rsplit_once(':')
        .map_or(listen, |(host, _)| host)
        .trim_start_matches('[')
        .trim_end_matches(']');
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    anyhow::ensure!(
        loopback,
        "--dev serves every login code and the dev clock: it listens only on loopback \
         (127.0.0.1, ::1, localhost), not on {listen}; pass --allow-remote-dev to override"
    );
    Ok(())
}

/// Starts the five services and the gateway; returns once all listen.
pub async fn start(options: UpOptions) -> anyhow::Result<Suite> {
    let mut settings = options.settings.clone();
    std::fs::create_dir_all(&options.data_dir)
        .with_context(|| format!("cannot create {}", options.data_dir.display()))?;

    let dev_clock = options.dev.then(AdjustableClock::new);
    let clock: SharedClock = match &dev_clock {
        Some(clock) => clock.clone(),
        None => Arc::new(SystemClock),
    };
    let store = settings
        .redis
        .connect()
        .await
        .context("cannot connect to the store")?;
    let keyring = if settings.trust.keys_dir.trim().is_empty() {
        Keyring::generate_dev(&options.data_dir.join("keys"), &trust::PRINCIPALS)?
    } else {
        settings.trust.keyring(&trust::PRINCIPALS)?
    };
    let shared = Shared {
        clock,
        store,
        keyring: keyring.clone(),
        in_process: InProcess::enabled(),
    };

    // Bind every listener first, so that each service knows its peers' ports.
    let grpc_listen = |listen: &str| {
        if listen.is_empty() {
            "127.0.0.1:0".to_owned()
        } else {
            listen.to_owned()
        }
    };
    let identity_listener = bind(&grpc_listen(&settings.identity.grpc.listen)).await?;
    let guarantee_listener = bind(&grpc_listen(&settings.guarantee.grpc.listen)).await?;
    let credit_listener = bind(&grpc_listen(&settings.credit.grpc.listen)).await?;
    let settlement_listener = bind(&grpc_listen(&settings.settlement.grpc.listen)).await?;
    let merchants_listener = bind(&grpc_listen(&settings.merchant_directory.grpc.listen)).await?;
    let gateway_listener = bind(&options.listen).await?;
    let mut replica_listeners = Vec::with_capacity(options.gateway_replicas.len());
    for address in &options.gateway_replicas {
        replica_listeners.push(bind(address).await?);
    }

    let url = |listener: &TcpListener| -> anyhow::Result<String> {
        Ok(format!("http://{}", listener.local_addr()?))
    };
    let identity_url = url(&identity_listener)?;
    let guarantee_url = url(&guarantee_listener)?;
    let credit_url = url(&credit_listener)?;
    let settlement_url = url(&settlement_listener)?;
    let merchants_url = url(&merchants_listener)?;

    default_sqlite(
        &mut settings.identity.database,
        &tavana_identity::Settings::default().database,
        &options.data_dir,
        "identity",
    );
    default_sqlite(
        &mut settings.guarantee.database,
        &tavana_guarantee::Settings::default().database,
        &options.data_dir,
        "guarantee",
    );
    default_sqlite(
        &mut settings.credit.database,
        &tavana_credit::Settings::default().database,
        &options.data_dir,
        "credit",
    );
    default_sqlite(
        &mut settings.settlement.database,
        &tavana_settlement::Settings::default().database,
        &options.data_dir,
        "settlement",
    );
    default_sqlite(
        &mut settings.merchant_directory.database,
        &tavana_merchant_directory::Settings::default().database,
        &options.data_dir,
        "merchant-directory",
    );

    settings.identity.dev = settings.identity.dev || options.dev;
    settings.guarantee.identity_url = identity_url.clone();
    settings.guarantee.credit_url = credit_url.clone();
    settings.credit.identity_url = identity_url.clone();
    settings.credit.merchant_directory_url = merchants_url.clone();
    settings.credit.settlement_url = settlement_url.clone();
    settings.credit.guarantee_url = guarantee_url.clone();
    settings.settlement.credit_url = credit_url.clone();
    settings.settlement.identity_url = identity_url.clone();

    settings.gateway.dev = settings.gateway.dev || options.dev;
    settings.gateway.identity_url = identity_url;
    settings.gateway.guarantee_url = guarantee_url;
    settings.gateway.credit_url = credit_url;
    settings.gateway.settlement_url = settlement_url;
    settings.gateway.merchant_directory_url = merchants_url;
    if options.dev && settings.gateway.cors_origins.is_empty() {
        settings.gateway.cors_origins = vec!["http://localhost:8080".into()];
    }

    // Migrate before serving, so that a failing migration stops `up` at once.
    tavana_identity::migrate(&settings.identity).await?;
    tavana_guarantee::migrate(&settings.guarantee).await?;
    tavana_credit::migrate(&settings.credit).await?;
    tavana_settlement::migrate(&settings.settlement).await?;
    tavana_merchant_directory::migrate(&settings.merchant_directory).await?;

    let services = vec![
        ("identity", identity_listener.local_addr()?),
        ("guarantee", guarantee_listener.local_addr()?),
        ("credit", credit_listener.local_addr()?),
        ("settlement", settlement_listener.local_addr()?),
        ("merchant-directory", merchants_listener.local_addr()?),
    ];
    let gateway = gateway_listener.local_addr()?;
    let gateway_replicas = replica_listeners
        .iter()
        .map(TcpListener::local_addr)
        .collect::<std::io::Result<Vec<_>>>()?;

    let (stop, stop_receiver) = watch::channel(false);
    tavana_kit::metrics::spawn(&settings.metrics, stopped(stop_receiver.clone())).await?;
    let mut tasks = JoinSet::new();
    {
        let (settings, shared, stop) = (settings.identity, shared.clone(), stop_receiver.clone());
        tasks.spawn(async move {
            let result =
                tavana_identity::serve(settings, shared, identity_listener, stopped(stop)).await;
            ("identity", result)
        });
    }
    {
        let (settings, shared, stop) = (settings.guarantee, shared.clone(), stop_receiver.clone());
        tasks.spawn(async move {
            let result =
                tavana_guarantee::serve(settings, shared, guarantee_listener, stopped(stop)).await;
            ("guarantee", result)
        });
    }
    {
        let (settings, shared, stop) = (settings.credit, shared.clone(), stop_receiver.clone());
        tasks.spawn(async move {
            let result =
                tavana_credit::serve(settings, shared, credit_listener, stopped(stop)).await;
            ("credit", result)
        });
    }
    {
        let (settings, shared, stop) = (settings.settlement, shared.clone(), stop_receiver.clone());
        tasks.spawn(async move {
            let result =
                tavana_settlement::serve(settings, shared, settlement_listener, stopped(stop))
                    .await;
            ("settlement", result)
        });
    }
    {
        let (settings, shared, stop) = (
            settings.merchant_directory,
            shared.clone(),
            stop_receiver.clone(),
        );
        tasks.spawn(async move {
            let result = tavana_merchant_directory::serve(
                settings,
                shared,
                merchants_listener,
                stopped(stop),
            )
            .await;
            ("merchant-directory", result)
        });
    }
    for listener in std::iter::once(gateway_listener).chain(replica_listeners) {
        let app = gateway_app(
            settings.gateway.clone(),
            &shared,
            dev_clock.clone(),
            listener.local_addr()?,
            options.dev,
        )?;
        let stop = stop_receiver.clone();
        tasks.spawn(async move {
            let result = tavana_gateway::serve(app, listener, stopped(stop)).await;
            ("gateway", result)
        });
    }

    Ok(Suite {
        gateway,
        gateway_replicas,
        services,
        dev_clock,
        store: shared.store.clone(),
        keyring,
        stop,
        tasks,
    })
}

/// One gateway with the portal beside it, serving at `address`: its own state (rate
/// limits, caches) and portal; what it shares with other replicas is the store.
fn gateway_app(
    settings: GatewaySettings,
    shared: &Shared,
    dev_clock: Option<Arc<AdjustableClock>>,
    address: SocketAddr,
    dev: bool,
) -> anyhow::Result<axum::Router> {
    let dialer = shared.dialer(trust::GATEWAY, settings.service_timeout())?;
    let state = AppState::new(settings, shared.store.clone(), dev_clock, &dialer)?;
    // The portal's calls reach the gateway from loopback; this secret, known only
    // to this process, lets them name the client they are made for.
    let forward_token = tavana_gateway::edge::new_forward_token();
    let state = state.with_forward_token(forward_token.clone().into());
    let mut portal = tavana_portal::PortalSettings::beside_gateway(address, !dev);
    portal.forward_token = Some(forward_token);
    Ok(tavana_gateway::app_with(
        state,
        tavana_portal::router(portal, shared.store.clone()),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_default_database_is_a_sqlite_file_with_a_small_pool_unless_configured() {
        let service_default = tavana_credit::Settings::default().database;
        let data_dir = std::path::Path::new("/data");

        let mut defaulted = service_default.clone();
        default_sqlite(&mut defaulted, &service_default, data_dir, "credit");
        assert_eq!(
            defaulted.url,
            tavana_kit::db::sqlite_url(data_dir, "credit")
        );
        assert_eq!(defaulted.max_connections, SQLITE_POOL);

        let mut sized = service_default.clone();
        sized.max_connections = 12;
        default_sqlite(&mut sized, &service_default, data_dir, "credit");
        assert_eq!(sized.max_connections, 12);

        let mut postgres = service_default.clone();
        postgres.url = "postgres://db/credit".into();
        default_sqlite(&mut postgres, &service_default, data_dir, "credit");
        assert_eq!(postgres.url, "postgres://db/credit");
        assert_eq!(postgres.max_connections, service_default.max_connections);
    }

    #[test]
    fn dev_mode_listens_only_on_loopback_unless_allowed() {
        for address in [
            "127.0.0.1:8080",
            "[::1]:8080",
            "localhost:8080",
            "127.0.0.2:1",
        ] {
            assert!(check_dev_listen(address, true, false).is_ok(), "{address}");
        }
        for address in [
            "0.0.0.0:8080",
            "[::]:8080",
            "192.168.1.5:8080",
            "example.com:80",
        ] {
            assert!(check_dev_listen(address, true, false).is_err(), "{address}");
            assert!(check_dev_listen(address, true, true).is_ok(), "{address}");
            assert!(check_dev_listen(address, false, false).is_ok(), "{address}");
        }
    }
}
