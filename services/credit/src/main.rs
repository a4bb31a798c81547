//! The credit service's binary: `tavana-credit [migrate]`.

use serde::{Deserialize, Serialize};
use tavana_kit::config::{RedisSettings, TelemetrySettings};

/// The sections this binary reads (`TAVANA_CREDIT__DATABASE__URL=…`).
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default)]
struct BinarySettings {
    credit: tavana_credit::Settings,
    redis: RedisSettings,
    telemetry: TelemetrySettings,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings: BinarySettings = tavana_kit::config::load(None)?;
    tavana_kit::telemetry::init("credit", &settings.telemetry);
    let settings_redis = settings.redis;
    let settings = settings.credit;
    if std::env::args().nth(1).as_deref() == Some("migrate") {
        return tavana_credit::migrate(&settings).await;
    }
    tavana_credit::migrate(&settings).await?;
    let listener = tokio::net::TcpListener::bind(&settings.grpc.listen).await?;
    let shared = tavana_kit::Shared {
        clock: tavana_kit::clock::SystemClock::shared(),
        store: tavana_kit::store::connect_store(settings_redis.url.as_deref(), "tavana:").await?,
    };
    let result = tavana_credit::serve(settings, shared, listener, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await;
    tavana_kit::telemetry::shutdown();
    result
}
