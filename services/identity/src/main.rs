//! The identity service's binary: `tavana-identity [migrate]`.

use serde::{Deserialize, Serialize};
use tavana_kit::config::{RedisSettings, TelemetrySettings};

/// The sections this binary reads (`TAVANA_IDENTITY__DATABASE__URL=…`).
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default)]
struct BinarySettings {
    identity: tavana_identity::Settings,
    redis: RedisSettings,
    telemetry: TelemetrySettings,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings: BinarySettings = tavana_kit::config::load(None)?;
    tavana_kit::telemetry::init("identity", &settings.telemetry);
    let redis = settings.redis;
    let settings = settings.identity;
    if std::env::args().nth(1).as_deref() == Some("migrate") {
        return tavana_identity::migrate(&settings).await;
    }
    // Refuse a configuration without a signing key before touching anything.
    settings.token_signer()?;
    tavana_identity::migrate(&settings).await?;
    let listener = tokio::net::TcpListener::bind(&settings.grpc.listen).await?;
    let shared = tavana_kit::Shared {
        clock: tavana_kit::clock::SystemClock::shared(),
        store: tavana_kit::store::connect_store(redis.url.as_deref(), "tavana:").await?,
    };
    let result = tavana_identity::serve(settings, shared, listener, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await;
    tavana_kit::telemetry::shutdown();
    result
}
