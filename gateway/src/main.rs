//! `tavana-gateway`: the gateway as its own process (Kubernetes).

use serde::{Deserialize, Serialize};
use tavana_gateway::{AppState, GatewaySettings};
use tavana_kit::config::{RedisSettings, TelemetrySettings, TrustSettings};

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default)]
struct Settings {
    gateway: GatewaySettings,
    redis: RedisSettings,
    telemetry: TelemetrySettings,
    metrics: tavana_kit::metrics::MetricsSettings,
    trust: TrustSettings,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = std::env::var_os("TAVANA_CONFIG").map(std::path::PathBuf::from);
    let settings: Settings = tavana_kit::config::load(config.as_deref())?;
    tavana_kit::telemetry::init("gateway", &settings.telemetry);
    let store = settings.redis.connect().await?;
    tavana_kit::metrics::spawn(&settings.metrics, std::future::pending()).await?;
    let listener = tokio::net::TcpListener::bind(&settings.gateway.listen).await?;
    tracing::info!(address = %listener.local_addr()?, "gateway listening");
    // The dev clock exists only with `dev` on (never in the Kubernetes overlays).
    let dev_clock = settings
        .gateway
        .dev
        .then(tavana_kit::clock::AdjustableClock::new);
    let dialer = tavana_kit::grpc::Dialer::new(
        settings
            .trust
            .keyring(&[tavana_kit::trust::GATEWAY])?
            .signer(tavana_kit::trust::GATEWAY)?,
        settings.gateway.service_timeout(),
    );
    // The portal beside the API; its sessions in the shared store, so any
    // replica serves any user.
    let portal = tavana_portal::PortalSettings::beside_gateway(
        listener.local_addr()?,
        !settings.gateway.dev,
    );
    let state = AppState::new(settings.gateway, store.clone(), dev_clock, &dialer)?;
    let app = tavana_gateway::app(state).merge(tavana_portal::router(portal, store));
    let shutdown = tavana_kit::signal::shutdown_signal();
    tavana_gateway::serve(app, listener, shutdown).await?;
    tavana_kit::telemetry::shutdown();
    Ok(())
}
