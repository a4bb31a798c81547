//! Runs the split topology by hand: each service as its own process on its own
//! PostgreSQL database, the real Redis, two replicas of credit and settlement, and the
//! gateway on `--port` (8080). Dev endpoints stay on, with one clock shared through
//! Redis. Ctrl-C stops everything. PostgreSQL and Redis come from
//! `TAVANA_TEST_PG_URL` and `TAVANA_TEST_REDIS_URL` (defaults: the local ones).

use anyhow::Context;
use tavana_e2e::split::{Layout, OutboxTiming, start_with};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let port = match (args.next().as_deref(), args.next()) {
        (None, _) => 8080,
        (Some("--port"), Some(port)) => port.parse().context("--port takes a number")?,
        _ => anyhow::bail!("usage: split-up [--port N]"),
    };
    let topology = start_with(Layout {
        id: "up".to_owned(),
        database_prefix: "tavana_split_",
        gateway_port: Some(port),
        redis_url: tavana_kit::testing::test_redis_url()
            .unwrap_or_else(|| "redis://127.0.0.1:6379".to_owned()),
        otlp_endpoint: std::env::var("TAVANA_TELEMETRY__OTLP_ENDPOINT").ok(),
        outbox: OutboxTiming::Tests,
    })
    .await?;
    println!("split topology ready: gateway {}", topology.gateway_url);
    for (process, url) in &topology.metrics_urls {
        println!("metrics of {process}: {url}");
    }
    let mut services: Vec<_> = topology.service_urls.iter().collect();
    services.sort();
    for (service, urls) in services {
        println!("  {service:<20} {urls}");
    }
    println!("logs in target/<profile>/e2e-logs; Ctrl-C stops it");
    tavana_kit::signal::shutdown_signal().await;
    Ok(())
}
