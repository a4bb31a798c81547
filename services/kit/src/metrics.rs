//! Prometheus metrics: one recorder per process (the `metrics` facade and
//! `metrics-exporter-prometheus`), rendered at `GET /metrics` on the
//! process's metrics listener (`metrics.listen`).
//!
//! Counters and histograms are recorded where things happen (the gRPC server
//! layer, the gateway's route layer, a purchase, a login code). Gauges of a
//! service's database (outbox backlog, age of the oldest undelivered message,
//! failed messages, pool use) are sampled at scrape time by the samplers that
//! [`watch_database`] registers, so a scrape always sees the table as it is.
//! Every series carries a `service` label, so that one endpoint can serve the
//! five services of `tavana up`.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement};
use serde::{Deserialize, Serialize};

/// Latency buckets, in seconds: 1 ms to 10 s.
const LATENCY_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 7.5, 10.0,
];

/// How long one sampler may take at scrape time.
const SAMPLE_TIMEOUT: Duration = Duration::from_secs(2);

/// gRPC requests served, by `service`, `method` (the path) and `code`.
pub const GRPC_REQUESTS: &str = "tavana_grpc_server_requests_total";
/// Latency of gRPC requests, seconds, by `service`, `method` and `code`.
pub const GRPC_DURATION: &str = "tavana_grpc_server_request_duration_seconds";
/// HTTP requests answered by the gateway, by `method`, `route` (template) and `status`.
pub const HTTP_REQUESTS: &str = "tavana_http_requests_total";
/// Latency of HTTP requests, seconds, by `method`, `route` and `status`.
pub const HTTP_DURATION: &str = "tavana_http_request_duration_seconds";
/// Outbox messages not delivered yet (nor failed), by `service` and `topic`.
pub const OUTBOX_PENDING: &str = "tavana_outbox_pending_messages";
/// Age of the oldest undelivered outbox message, seconds, by `service` and `topic`.
pub const OUTBOX_OLDEST_AGE: &str = "tavana_outbox_oldest_pending_age_seconds";
/// Outbox messages given up after a permanent failure, by `service` and `topic`.
pub const OUTBOX_FAILED: &str = "tavana_outbox_failed_messages";
/// Database pool connections, by `service` and `state` (`in_use`, `idle`).
pub const DB_POOL_CONNECTIONS: &str = "tavana_db_pool_connections";
/// Login codes asked for, by `outcome` (`sent`, `refused`) and `code` (why refused).
pub const LOGIN_CODES: &str = "tavana_login_codes_total";
/// Purchases asked for, by `outcome` (`accepted`, `refused`) and `code` (why refused).
pub const PURCHASES: &str = "tavana_purchases_total";

/// Where a process serves `/metrics` (section `metrics`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct MetricsSettings {
    /// The address of the metrics listener, e.g. `0.0.0.0:9464`; empty serves none.
    pub listen: String,
}

/// Something that sets gauges just before a scrape renders them.
trait Sampler: Send + Sync + 'static {
    fn sample(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>>;
}

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
static SAMPLERS: OnceLock<Mutex<BTreeMap<String, Arc<dyn Sampler>>>> = OnceLock::new();

/// Installs the process's Prometheus recorder (once; later calls return it).
///
/// When another recorder was installed first (a test harness), metrics go
/// there and this handle renders an empty page.
pub fn install() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new();
        let builder = match builder.set_buckets(&LATENCY_BUCKETS) {
            Ok(builder) => builder,
            Err(error) => {
                tracing::warn!(%error, "metrics buckets refused, histograms become summaries");
                PrometheusBuilder::new()
            }
        };
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("a metrics recorder was already installed; /metrics stays empty");
        }
        handle
    })
}

fn samplers() -> &'static Mutex<BTreeMap<String, Arc<dyn Sampler>>> {
    SAMPLERS.get_or_init(|| Mutex::new(BTreeMap::new()))
}

fn register(name: String, sampler: Arc<dyn Sampler>) {
    let mut samplers = samplers()
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    samplers.insert(name, sampler);
}

/// Samples every registered gauge, then renders the Prometheus text format.
pub async fn render() -> String {
    let handle = install();
    let current: Vec<Arc<dyn Sampler>> = samplers()
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .values()
        .cloned()
        .collect();
    futures::future::join_all(current.iter().map(|sampler| async move {
        if tokio::time::timeout(SAMPLE_TIMEOUT, sampler.sample())
            .await
            .is_err()
        {
            tracing::warn!("a metrics sampler timed out");
        }
    }))
    .await;
    handle.render()
}

/// The `/metrics` route.
pub fn router() -> axum::Router {
    axum::Router::new().route(
        "/metrics",
        axum::routing::get(|| async {
            (
                [(
                    http::header::CONTENT_TYPE,
                    "text/plain; version=0.0.4; charset=utf-8",
                )],
                render().await,
            )
        }),
    )
}

/// Serves `/metrics` on `listener` until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    install();
    tracing::info!(address = ?listener.local_addr().ok(), "metrics listening");
    axum::serve(listener, router())
        .with_graceful_shutdown(shutdown)
        .await?;
    Ok(())
}

/// Binds `settings.listen` (when set) and serves `/metrics` there in a task
/// that ends with `shutdown`; returns the bound address.
pub async fn spawn(
    settings: &MetricsSettings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<Option<std::net::SocketAddr>> {
    install();
    if settings.listen.trim().is_empty() {
        return Ok(None);
    }
    let listener = tokio::net::TcpListener::bind(settings.listen.trim())
        .await
        .map_err(|error| anyhow::anyhow!("cannot listen on {}: {error}", settings.listen))?;
    let address = listener.local_addr()?;
    tokio::spawn(async move {
        if let Err(error) = serve(listener, shutdown).await {
            tracing::error!(%error, "metrics listener stopped");
        }
    });
    Ok(Some(address))
}

/// Samples, at every scrape, the outbox table and the connection pool of a
/// service's database. A later call for the same service replaces the earlier.
pub fn watch_database(service: &'static str, db: DatabaseConnection) {
    watch(service, db, true);
}

/// Samples, at every scrape, the connection pool of a service's database
/// that has no outbox.
pub fn watch_pool(service: &'static str, db: DatabaseConnection) {
    watch(service, db, false);
}

fn watch(service: &'static str, db: DatabaseConnection, outbox: bool) {
    install();
    register(
        format!("db:{service}"),
        Arc::new(DatabaseSampler {
            service,
            db,
            outbox,
            topics: Mutex::new(BTreeSet::new()),
        }),
    );
}

struct DatabaseSampler {
    service: &'static str,
    db: DatabaseConnection,
    outbox: bool,
    /// Topics seen before, set to zero once they drain.
    topics: Mutex<BTreeSet<String>>,
}

/// One topic's undelivered messages.
#[derive(Debug, Default, PartialEq)]
struct TopicBacklog {
    pending: i64,
    failed: i64,
    oldest_pending: Option<DateTime<Utc>>,
}

const OUTBOX_BACKLOG_SQL: &str = "SELECT topic, \
       SUM(CASE WHEN failed_at IS NULL THEN 1 ELSE 0 END) AS pending, \
       SUM(CASE WHEN failed_at IS NULL THEN 0 ELSE 1 END) AS failed, \
       MIN(CASE WHEN failed_at IS NULL THEN created_at END) AS oldest \
     FROM outbox WHERE delivered_at IS NULL GROUP BY topic";

/// Reads the undelivered messages of the `outbox` table, by topic.
async fn outbox_backlog(
    db: &DatabaseConnection,
) -> Result<BTreeMap<String, TopicBacklog>, sea_orm::DbErr> {
    let backend = db.get_database_backend();
    let rows = db
        .query_all_raw(Statement::from_string(backend, OUTBOX_BACKLOG_SQL))
        .await?;
    let mut backlog = BTreeMap::new();
    for row in rows {
        let topic: String = row.try_get("", "topic")?;
        backlog.insert(
            topic,
            TopicBacklog {
                pending: row.try_get::<Option<i64>>("", "pending")?.unwrap_or(0),
                failed: row.try_get::<Option<i64>>("", "failed")?.unwrap_or(0),
                oldest_pending: row.try_get("", "oldest")?,
            },
        );
    }
    Ok(backlog)
}

impl DatabaseSampler {
    async fn sample_outbox(&self) {
        let backlog = match outbox_backlog(&self.db).await {
            Ok(backlog) => backlog,
            Err(error) => {
                tracing::warn!(service = self.service, %error, "outbox metrics not read");
                return;
            }
        };
        let now = Utc::now();
        let mut topics = self
            .topics
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        topics.extend(backlog.keys().cloned());
        for topic in topics.iter() {
            let row = backlog.get(topic);
            let labels = [
                ("service", self.service.to_owned()),
                ("topic", topic.clone()),
            ];
            let pending = row.map_or(0, |row| row.pending);
            let failed = row.map_or(0, |row| row.failed);
            let age = row
                .and_then(|row| row.oldest_pending)
                .map_or(0.0, |oldest| {
                    (now - oldest).num_milliseconds().max(0) as f64 / 1000.0
                });
            metrics::gauge!(OUTBOX_PENDING, &labels).set(pending as f64);
            metrics::gauge!(OUTBOX_FAILED, &labels).set(failed as f64);
            metrics::gauge!(OUTBOX_OLDEST_AGE, &labels).set(age);
        }
    }

    fn sample_pool(&self) {
        let (size, idle) = match self.db.get_database_backend() {
            DbBackend::Postgres => {
                let pool = self.db.get_postgres_connection_pool();
                (pool.size(), pool.num_idle())
            }
            DbBackend::Sqlite => {
                let pool = self.db.get_sqlite_connection_pool();
                (pool.size(), pool.num_idle())
            }
            _ => return,
        };
        let idle = u32::try_from(idle).unwrap_or(u32::MAX).min(size);
        metrics::gauge!(DB_POOL_CONNECTIONS, "service" => self.service, "state" => "in_use")
            .set(f64::from(size - idle));
        metrics::gauge!(DB_POOL_CONNECTIONS, "service" => self.service, "state" => "idle")
            .set(f64::from(idle));
    }
}

impl Sampler for DatabaseSampler {
    fn sample(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(async move {
            self.sample_pool();
            if self.outbox {
                self.sample_outbox().await;
            }
        })
    }
}

/// The short name of the service a gRPC path belongs to:
/// `/tavana.credit.v1.CreditService/Purchase` is `credit`; other paths
/// (health, reflection) are `grpc`.
pub fn service_of_path(path: &str) -> &str {
    path.trim_start_matches('/')
        .strip_prefix("tavana.")
        .and_then(|rest| rest.split('.').next())
        .filter(|name| !name.is_empty())
        .unwrap_or("grpc")
}

/// A tower layer for a gRPC server: counts requests and records their
/// latency by service, method and status code.
#[derive(Clone, Copy, Debug, Default)]
pub struct GrpcMetricsLayer;

impl<S> tower::Layer<S> for GrpcMetricsLayer {
    type Service = GrpcMetrics<S>;

    fn layer(&self, inner: S) -> GrpcMetrics<S> {
        GrpcMetrics { inner }
    }
}

/// The service of [`GrpcMetricsLayer`].
#[derive(Clone, Debug)]
pub struct GrpcMetrics<S> {
    inner: S,
}

impl<S, B, R> tower::Service<http::Request<B>> for GrpcMetrics<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
    S::Error: 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let method = request.uri().path().to_owned();
        let started = Instant::now();
        let future = self.inner.call(request);
        Box::pin(async move {
            let result = future.await;
            let code = match &result {
                // A handler's error is a trailers-only answer: the status is in the headers.
                Ok(response) => response
                    .headers()
                    .get("grpc-status")
                    .map(|value| tonic::Code::from_bytes(value.as_bytes()))
                    .unwrap_or(tonic::Code::Ok),
                Err(_) => tonic::Code::Unavailable,
            };
            record_grpc(&method, code, started.elapsed());
            result
        })
    }
}

fn record_grpc(method: &str, code: tonic::Code, elapsed: Duration) {
    let labels = [
        ("service", service_of_path(method).to_owned()),
        ("method", method.to_owned()),
        ("code", format!("{code:?}")),
    ];
    metrics::counter!(GRPC_REQUESTS, &labels).increment(1);
    metrics::histogram!(GRPC_DURATION, &labels).record(elapsed.as_secs_f64());
}

/// Records one HTTP request answered by the gateway.
pub fn record_http(method: &str, route: &str, status: u16, elapsed: Duration) {
    let labels = [
        ("method", method.to_owned()),
        ("route", route.to_owned()),
        ("status", status.to_string()),
    ];
    metrics::counter!(HTTP_REQUESTS, &labels).increment(1);
    metrics::histogram!(HTTP_DURATION, &labels).record(elapsed.as_secs_f64());
}

/// Counts a login code sent, or refused with `code`.
pub fn record_login_code(refused: Option<&str>) {
    let (outcome, code) = match refused {
        None => ("sent", ""),
        Some(code) => ("refused", code),
    };
    metrics::counter!(LOGIN_CODES, "outcome" => outcome, "code" => code.to_owned()).increment(1);
}

/// Counts a purchase accepted, or refused with `code`.
pub fn record_purchase(refused: Option<&str>) {
    let (outcome, code) = match refused {
        None => ("accepted", ""),
        Some(code) => ("refused", code),
    };
    metrics::counter!(PURCHASES, "outcome" => outcome, "code" => code.to_owned()).increment(1);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_service_of_a_path_is_its_package() {
        assert_eq!(
            service_of_path("/tavana.credit.v1.CreditService/Purchase"),
            "credit"
        );
        assert_eq!(
            service_of_path("/tavana.merchant_directory.v1.MerchantDirectoryService/GetMerchant"),
            "merchant_directory"
        );
        assert_eq!(service_of_path("/grpc.health.v1.Health/Check"), "grpc");
    }

    #[tokio::test]
    async fn counters_and_histograms_are_rendered_in_the_prometheus_format() {
        install();

        record_purchase(Some("insufficient_credit"));
        record_http("POST", "/v1/purchases", 201, Duration::from_millis(3));

        let page = render().await;
        assert!(
            page.contains(
                r#"tavana_purchases_total{outcome="refused",code="insufficient_credit"} 1"#
            ),
            "{page}"
        );
        assert!(
            page.contains(r#"tavana_http_request_duration_seconds_bucket{method="POST",route="/v1/purchases",status="201",le="0.005"} 1"#),
            "{page}"
        );
    }

    struct CreateOutbox;

    impl sea_orm_migration::MigrationName for CreateOutbox {
        fn name(&self) -> &str {
            "m20250101_000000_create_outbox"
        }
    }

    #[async_trait::async_trait]
    impl sea_orm_migration::MigrationTrait for CreateOutbox {
        async fn up(
            &self,
            manager: &sea_orm_migration::SchemaManager,
        ) -> Result<(), sea_orm::DbErr> {
            manager
                .create_table(crate::outbox::create_outbox_table())
                .await?;
            crate::outbox::extend_outbox_table(manager).await?;
            crate::outbox::index_pending_outbox(manager).await?;
            crate::outbox::NarrowOutboxIndexes {
                purges_delivered: false,
            }
            .up(manager)
            .await
        }
    }

    struct OutboxOnly;

    impl sea_orm_migration::MigratorTrait for OutboxOnly {
        fn migrations() -> Vec<Box<dyn sea_orm_migration::MigrationTrait>> {
            vec![Box::new(CreateOutbox)]
        }
    }

    #[tokio::test]
    async fn outbox_backlog_counts_pending_and_failed_messages_per_topic() {
        let test_db = crate::testing::test_db::<OutboxOnly>().await;
        let db = &test_db.db;
        for (topic, key) in [
            ("credit.open_facility", "r1"),
            ("credit.open_facility", "r2"),
            ("identity.notify_employee", "n1"),
            ("identity.notify_employee", "n2"),
        ] {
            crate::outbox::enqueue(db, topic, key, vec![1])
                .await
                .unwrap();
        }
        db.execute_unprepared("UPDATE outbox SET failed_at = created_at WHERE dedup_key = 'n1'")
            .await
            .unwrap();
        db.execute_unprepared("UPDATE outbox SET delivered_at = created_at WHERE dedup_key = 'n2'")
            .await
            .unwrap();

        let backlog = outbox_backlog(db).await.unwrap();

        let open = &backlog["credit.open_facility"];
        assert_eq!((open.pending, open.failed), (2, 0));
        assert!(open.oldest_pending.is_some());
        let notify = &backlog["identity.notify_employee"];
        assert_eq!((notify.pending, notify.failed), (0, 1));
        assert_eq!(notify.oldest_pending, None);
    }

    #[tokio::test]
    async fn a_drained_topic_is_reported_as_zero_at_the_next_scrape() {
        let test_db = crate::testing::test_db::<OutboxOnly>().await;
        crate::outbox::enqueue(&test_db.db, "settlement.drained_topic", "k1", vec![1])
            .await
            .unwrap();
        watch_database("metrics_test", test_db.db.clone());
        let before = render().await;
        test_db
            .db
            .execute_unprepared("UPDATE outbox SET delivered_at = created_at")
            .await
            .unwrap();

        let after = render().await;

        let series = r#"tavana_outbox_pending_messages{service="metrics_test",topic="settlement.drained_topic"}"#;
        assert!(before.contains(&format!("{series} 1")), "{before}");
        assert!(after.contains(&format!("{series} 0")), "{after}");
    }
}
