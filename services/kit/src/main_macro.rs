//! The `main` of every service binary, written once.

/// Expands to the `main` of a service binary: `tavana-<service> [serve|migrate]`.
///
/// Settings come from defaults, the file in `TAVANA_CONFIG`, and the
/// environment (`TAVANA_<SECTION>__…`, `TAVANA_REDIS__URL`,
/// `TAVANA_TELEMETRY__…`, `TAVANA_METRICS__LISTEN` for `/metrics`,
/// `TAVANA_TRUST__KEYS_DIR`: this service's private key and the public keys it
/// trusts). `migrate` applies the service's migrations and
/// exits (a Kubernetes Job runs it before a rollout); `serve` (the default)
/// serves gRPC until SIGINT or SIGTERM. The service crate must export
/// `Settings` (with `grpc.listen`), `migrate(&Settings)` and
/// `serve(Settings, Shared, TcpListener, shutdown)`.
#[macro_export]
macro_rules! service_main {
    ($section:ident, $service:ident) => {
        /// The sections this binary reads.
        #[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
        #[serde(default)]
        struct BinarySettings {
            $section: $service::Settings,
            redis: $crate::config::RedisSettings,
            telemetry: $crate::config::TelemetrySettings,
            metrics: $crate::metrics::MetricsSettings,
            trust: $crate::config::TrustSettings,
        }

        #[tokio::main]
        async fn main() -> anyhow::Result<()> {
            let config = std::env::var_os("TAVANA_CONFIG").map(std::path::PathBuf::from);
            let settings: BinarySettings = $crate::config::load(config.as_deref())?;
            $crate::telemetry::init(stringify!($section), &settings.telemetry);
            let command = std::env::args().nth(1).unwrap_or_else(|| "serve".to_owned());
            let result = match command.as_str() {
                "migrate" => $service::migrate(&settings.$section).await,
                "serve" => {
                    let store = settings.redis.connect().await?;
                    let principal = stringify!($section).replace('_', "-");
                    let shared = $crate::Shared {
                        clock: $crate::clock::process_clock(store.clone()),
                        store,
                        keyring: settings.trust.keyring(&[principal.as_str()])?,
                        in_process: $crate::grpc::InProcess::default(),
                    };
                    $crate::metrics::spawn(&settings.metrics, std::future::pending())
                        .await?;
                    let listener =
                        tokio::net::TcpListener::bind(&settings.$section.grpc.listen).await?;
                    tracing::info!(address = %listener.local_addr()?, "serving gRPC");
                    $service::serve(
                        settings.$section,
                        shared,
                        listener,
                        $crate::signal::shutdown_signal(),
                    )
                    .await
                }
                other => Err(anyhow::anyhow!(
                    "unknown command {other}: use `serve` or `migrate`"
                )),
            };
            $crate::telemetry::shutdown();
            result
        }
    };
}
