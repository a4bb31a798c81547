//! The merchant-directory binary: `tavana-merchant-directory [migrate]`.

use serde::{Deserialize, Serialize};
use tavana_kit::config::{RedisSettings, TelemetrySettings};

/// The sections this binary reads (`TAVANA_MERCHANT_DIRECTORY__DATABASE__URL=…`).
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default)]
struct BinarySettings {
    merchant_directory: tavana_merchant_directory::Settings,
    redis: RedisSettings,
    telemetry: TelemetrySettings,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings: BinarySettings = tavana_kit::config::load(None)?;
    tavana_kit::telemetry::init("merchant-directory", &settings.telemetry);
    let redis = settings.redis;
    let settings = settings.merchant_directory;
    tavana_merchant_directory::migrate(&settings).await?;
    if std::env::args().nth(1).as_deref() == Some("migrate") {
        return Ok(());
    }
    let listener = tokio::net::TcpListener::bind(&settings.grpc.listen).await?;
    let shared = tavana_kit::Shared {
        clock: tavana_kit::clock::SystemClock::shared(),
        store: tavana_kit::store::connect_store(redis.url.as_deref(), "tavana:").await?,
    };
    let result = tavana_merchant_directory::serve(
        settings,
        shared,
        listener,
        tavana_kit::signal::shutdown_signal(),
    )
    .await;
    tavana_kit::telemetry::shutdown();
    result
}
