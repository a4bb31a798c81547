//! The guarantee service's binary: `tavana-guarantee [migrate]`.

use serde::{Deserialize, Serialize};
use tavana_kit::config::{RedisSettings, TelemetrySettings};

/// The sections this binary reads (`TAVANA_GUARANTEE__DATABASE__URL=…`).
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default)]
struct BinarySettings {
    guarantee: tavana_guarantee::Settings,
    redis: RedisSettings,
    telemetry: TelemetrySettings,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings: BinarySettings = tavana_kit::config::load(None)?;
    tavana_kit::telemetry::init("guarantee", &settings.telemetry);
    let settings_redis = settings.redis;
    let settings = settings.guarantee;
    if std::env::args().nth(1).as_deref() == Some("migrate") {
        return tavana_guarantee::migrate(&settings).await;
    }
    tavana_guarantee::migrate(&settings).await?;
    let listener = tokio::net::TcpListener::bind(&settings.grpc.listen).await?;
    let shared = tavana_kit::Shared {
        clock: tavana_kit::clock::SystemClock::shared(),
        store: tavana_kit::store::connect_store(settings_redis.url.as_deref(), "tavana:").await?,
    };
    let result = tavana_guarantee::serve(settings, shared, listener, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await;
    tavana_kit::telemetry::shutdown();
    result
}
