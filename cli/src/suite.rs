//! Everything in one process: each service serves gRPC on its own loopback
//! port, the gateway serves HTTP, all share one clock and one store.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use serde::{Deserialize, Serialize};
use tavana_gateway::{AppState, GatewaySettings};
use tavana_kit::Shared;
use tavana_kit::clock::{AdjustableClock, SharedClock, SystemClock};
use tavana_kit::config::{DatabaseSettings, RedisSettings, TelemetrySettings};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

/// Settings of the whole suite: one section per service, as each service's
/// own binary reads them (`TAVANA_CREDIT__DATABASE__URL=…`).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct SuiteSettings {
    pub identity: tavana_identity::Settings,
    pub guarantee: tavana_guarantee::Settings,
    pub credit: tavana_credit::Settings,
    pub settlement: tavana_settlement::Settings,
    pub merchant_directory: tavana_merchant_directory::Settings,
    pub gateway: GatewaySettings,
    pub redis: RedisSettings,
    pub telemetry: TelemetrySettings,
}

/// How `tavana up` was asked to run.
#[derive(Clone, Debug)]
pub struct UpOptions {
    /// Where the SQLite files live (unless a database URL is configured).
    pub data_dir: PathBuf,
    /// The gateway's address; port 0 picks a free one.
    pub listen: String,
    /// Dev mode: dev SMS provider, dev clock, `/v1/dev/*`.
    pub dev: bool,
    /// The settings, from defaults, an optional file and the environment.
    pub settings: SuiteSettings,
}

/// A running suite.
pub struct Suite {
    /// Where the gateway listens.
    pub gateway: SocketAddr,
    /// Where each service serves gRPC.
    pub services: Vec<(&'static str, SocketAddr)>,
    /// The dev clock, in dev mode.
    pub dev_clock: Option<Arc<AdjustableClock>>,
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

/// Points a service left on its default database at a SQLite file in the
/// data directory.
fn default_sqlite(
    database: &mut DatabaseSettings,
    service_default: &DatabaseSettings,
    options: &UpOptions,
    service: &str,
) {
    if database.url.is_empty() || database.url == service_default.url {
        database.url = tavana_kit::db::sqlite_url(&options.data_dir, service);
    }
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
    let shared = Shared { clock, store };

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
        &options,
        "identity",
    );
    default_sqlite(
        &mut settings.guarantee.database,
        &tavana_guarantee::Settings::default().database,
        &options,
        "guarantee",
    );
    default_sqlite(
        &mut settings.credit.database,
        &tavana_credit::Settings::default().database,
        &options,
        "credit",
    );
    default_sqlite(
        &mut settings.settlement.database,
        &tavana_settlement::Settings::default().database,
        &options,
        "settlement",
    );
    default_sqlite(
        &mut settings.merchant_directory.database,
        &tavana_merchant_directory::Settings::default().database,
        &options,
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

    let (stop, stop_receiver) = watch::channel(false);
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
    {
        let state = AppState::new(settings.gateway, shared.store.clone(), dev_clock.clone())?;
        // The portal calls the gateway's own HTTP API, on loopback when the
        // gateway listens on every address.
        let mut own_address = gateway;
        if own_address.ip().is_unspecified() {
            own_address.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
        }
        let mut portal = tavana_portal::PortalSettings::new(format!("http://{own_address}"));
        portal.secure_cookie = !options.dev;
        let app = tavana_gateway::app(state).merge(tavana_portal::router(portal));
        let stop = stop_receiver.clone();
        tasks.spawn(async move {
            let result = tavana_gateway::serve(app, gateway_listener, stopped(stop)).await;
            ("gateway", result)
        });
    }

    Ok(Suite {
        gateway,
        services,
        dev_clock,
        stop,
        tasks,
    })
}
