//! gRPC server bootstrap (health, reflection, tracing, metrics, timeouts) and client
//! channels (trace context on every call, per-request balancing over replicas).

use std::collections::BTreeSet;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use anyhow::Context;
use opentelemetry::propagation::{Extractor, Injector};
use prost::Message;
use prost_types::FileDescriptorSet;
use tonic::metadata::{MetadataKey, MetadataMap, MetadataValue};
use tonic::service::Routes;
use tonic::transport::channel::Change;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Endpoint, Server};
use tonic_health::ServingStatus;
use tower::Layer as _;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::config::GrpcSettings;
use crate::trust::{Gate, GateLayer, Signed, Signer};

/// How long a client waits for a TCP connection to a service.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// How long past the request timeout a stopping server waits for open connections.
const DRAIN_MARGIN: Duration = Duration::from_secs(1);
/// How often a `dns://` channel resolves its name again (pods come and go).
pub const DNS_REFRESH: Duration = Duration::from_secs(10);

struct HeaderExtractor<'a>(&'a http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|value| value.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|key| key.as_str()).collect()
    }
}

struct HeaderInjector<'a>(&'a mut http::HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(key), Ok(value)) = (
            http::HeaderName::from_bytes(key.as_bytes()),
            http::HeaderValue::try_from(value),
        ) {
            self.0.insert(key, value);
        }
    }
}

struct MetadataInjector<'a>(&'a mut MetadataMap);

impl Injector for MetadataInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(key), Ok(value)) = (
            MetadataKey::from_bytes(key.as_bytes()),
            MetadataValue::try_from(value.as_str()),
        ) {
            self.0.insert(key, value);
        }
    }
}

/// Creates the span of one RPC, named by its path, child of the caller's W3C trace context.
fn rpc_span(request: &http::Request<()>) -> tracing::Span {
    let path = request.uri().path();
    // Names the service on its spans, also when one process (`tavana up`)
    // runs them all under one `service.name`.
    let span = tracing::info_span!(
        "grpc.request",
        otel.name = %path,
        otel.kind = "server",
        rpc.system = "grpc",
        rpc.method = %path,
        tavana.service = crate::metrics::service_of_path(path),
    );
    continue_trace(&span, request.headers());
    span
}

/// Makes `span` a child of the W3C trace context in `headers` (`traceparent`);
/// without one (or without telemetry) the span stays a root span.
pub fn continue_trace(span: &tracing::Span, headers: &http::HeaderMap) {
    let parent = opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.extract(&HeaderExtractor(headers))
    });
    let _ = span.set_parent(parent);
}

/// Writes the current span's W3C trace context into outgoing request metadata.
pub fn inject_trace_context(metadata: &mut MetadataMap) {
    let context = tracing::Span::current().context();
    opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.inject_context(&context, &mut MetadataInjector(metadata));
    });
}

/// Runs each call with its `x-request-id` in [`crate::audit::REQUEST_ID`], so that the
/// audit entries written while serving it name the request (R32).
#[derive(Clone, Copy, Debug, Default)]
struct RequestIdLayer;

impl<S> tower::Layer<S> for RequestIdLayer {
    type Service = RequestIdService<S>;

    fn layer(&self, inner: S) -> RequestIdService<S> {
        RequestIdService(inner)
    }
}

#[derive(Clone, Debug)]
struct RequestIdService<S>(S);

impl<S, B> tower::Service<http::Request<B>> for RequestIdService<S>
where
    S: tower::Service<http::Request<B>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future =
        std::pin::Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send + 'static>>;

    fn poll_ready(
        &mut self,
        context: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), S::Error>> {
        self.0.poll_ready(context)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let request_id = request
            .headers()
            .get(crate::audit::REQUEST_ID_KEY)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let call = self.0.call(request);
        Box::pin(crate::audit::REQUEST_ID.scope(request_id, call))
    }
}

/// A client channel whose `tavana.*` calls carry a signed assertion (see [`crate::trust`])
/// and the W3C trace context of the span they are made in ([`TraceContextLayer`]).
pub type Channel = Signed<TraceContext<tonic::transport::Channel>>;

/// Serves `routes` on `listener` until `shutdown` completes.
///
/// Every `tavana.*` call passes `gate` first (a signed assertion for this service and the
/// method's allow-list). Adds grpc.health.v1 (each guarded service and `""` SERVING, open
/// to all), reflection v1 and v1alpha listing only the guarded services (unless
/// `grpc.reflection` is off), one span per RPC, request metrics
/// ([`crate::metrics::GrpcMetricsLayer`], refusals included), the request timeout and
/// TCP_NODELAY.
pub async fn serve_grpc(
    listener: tokio::net::TcpListener,
    routes: Routes,
    descriptor_set: &'static [u8],
    gate: Gate,
    grpc: GrpcSettings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let service_names = gate.service_names();
    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    health_reporter
        .set_service_status("", ServingStatus::Serving)
        .await;
    for name in &service_names {
        health_reporter
            .set_service_status(*name, ServingStatus::Serving)
            .await;
    }
    let mut routes = routes.add_service(health_service);
    if grpc.reflection {
        let own = only_services(descriptor_set, &service_names)?;
        let reflection_v1 = tonic_reflection::server::Builder::configure()
            .register_file_descriptor_set(own.clone())
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .build_v1()
            .context("invalid file descriptor set for reflection")?;
        let reflection_v1alpha = tonic_reflection::server::Builder::configure()
            .register_file_descriptor_set(own)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .build_v1alpha()
            .context("invalid file descriptor set for reflection")?;
        routes = routes
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha);
    }

    let local_addr = listener.local_addr().ok();
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    tracing::info!(addr = ?local_addr, services = ?service_names, "grpc server listening");

    crate::metrics::install();
    // The drain after the signal is bounded: no call outlives the request timeout,
    // and a peer that keeps its connection open past that (hyperium/hyper#4170: the
    // server can wait on such a connection for good) must not keep the process from
    // stopping, flushing its traces, and leaving before Kubernetes kills it.
    let drain = grpc.request_timeout() + DRAIN_MARGIN;
    let (signalled, drain_started) = tokio::sync::oneshot::channel::<()>();
    let shutdown = async move {
        shutdown.await;
        let _ = signalled.send(());
    };
    let server = Server::builder()
        .timeout(grpc.request_timeout())
        .trace_fn(rpc_span)
        .layer(crate::metrics::GrpcMetricsLayer)
        .layer(GateLayer::new(gate))
        .layer(RequestIdLayer)
        .add_routes(routes)
        .serve_with_incoming_shutdown(incoming, shutdown);
    let drained = async move {
        if drain_started.await.is_err() {
            // The server ended without a signal; its own result is what counts.
            return std::future::pending().await;
        }
        tokio::time::sleep(drain).await;
    };
    tokio::select! {
        served = server => served.context("grpc server failed")?,
        () = drained => {
            tracing::warn!(addr = ?local_addr, drain_ms = u64::try_from(drain.as_millis()).unwrap_or(u64::MAX),
                "connections still open after the drain; stopping without them");
        }
    }
    tracing::info!(addr = ?local_addr, "grpc server stopped");
    Ok(())
}

/// The descriptor set with the services of other ports removed (their messages stay, so
/// every type of `names` still resolves).
fn only_services(descriptor_set: &[u8], names: &[&str]) -> anyhow::Result<FileDescriptorSet> {
    let mut set = FileDescriptorSet::decode(descriptor_set).context("invalid descriptor set")?;
    for file in &mut set.file {
        let package = file.package().to_owned();
        file.service
            .retain(|service| names.contains(&format!("{package}.{}", service.name()).as_str()));
    }
    Ok(set)
}

/// A tower layer for clients: writes the current span's trace context
/// (`traceparent`, `tracestate`) into every outgoing request, so that the
/// callee's span joins the caller's trace on every hop without a call site
/// doing anything.
#[derive(Clone, Copy, Debug, Default)]
pub struct TraceContextLayer;

impl<S> tower::Layer<S> for TraceContextLayer {
    type Service = TraceContext<S>;

    fn layer(&self, inner: S) -> TraceContext<S> {
        TraceContext { inner }
    }
}

/// The service of [`TraceContextLayer`].
#[derive(Clone, Debug)]
pub struct TraceContext<S> {
    inner: S,
}

impl<S, B> tower::Service<http::Request<B>> for TraceContext<S>
where
    S: tower::Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        let context = tracing::Span::current().context();
        opentelemetry::global::get_text_map_propagator(|propagator| {
            propagator.inject_context(&context, &mut HeaderInjector(request.headers_mut()));
        });
        self.inner.call(request)
    }
}

/// Returns a lazily connecting channel to `url`, with a connect timeout, a
/// per-request `timeout`, TCP_NODELAY, the trace context on every call, and
/// calls that `signer` signs.
///
/// - `http://host:port` (a bare `host:port` gets `http://`): one connection.
/// - A comma-separated list of URLs: calls balanced over those replicas.
/// - `dns://host:port`: calls balanced over every address the name resolves
///   to, resolved again every [`DNS_REFRESH`] (a Kubernetes headless
///   Service: one address per ready pod). Needs a Tokio runtime.
pub fn channel(url: &str, timeout: Duration, signer: &Signer) -> anyhow::Result<Channel> {
    Ok(Signed::new(
        TraceContextLayer.layer(unsigned_channel(url, timeout)?),
        signer.clone(),
    ))
}

/// A channel that adds no credential (nor trace context), to the same
/// targets as [`channel`]: for health checks and tests of the refusals.
pub fn unsigned_channel(url: &str, timeout: Duration) -> anyhow::Result<tonic::transport::Channel> {
    if let Some(target) = url.trim().strip_prefix("dns://") {
        let target = target.trim_end_matches('/').to_owned();
        return dns_channel(timeout, DNS_REFRESH, move || {
            let target = target.clone();
            async move {
                tokio::net::lookup_host(target.as_str())
                    .await
                    .map(Iterator::collect)
            }
        });
    }
    let endpoints = url
        .split(',')
        .map(str::trim)
        .filter(|url| !url.is_empty())
        .map(|url| endpoint(url, timeout))
        .collect::<anyhow::Result<Vec<Endpoint>>>()?;
    match endpoints.len() {
        0 => anyhow::bail!("no gRPC endpoint given"),
        1 => Ok(endpoints[0].connect_lazy()),
        // Several replicas: spread calls over them (power of two choices).
        _ => Ok(tonic::transport::Channel::balance_list(
            endpoints.into_iter(),
        )),
    }
}

type Resolved = Pin<Box<dyn Future<Output = std::io::Result<Vec<SocketAddr>>> + Send>>;

/// A channel balanced over the addresses `resolve` returns, asked again every
/// `refresh`: new addresses are added, vanished ones removed, and a failed
/// or empty resolution keeps the last known set.
fn dns_channel<R, F>(
    timeout: Duration,
    refresh: Duration,
    resolve: R,
) -> anyhow::Result<tonic::transport::Channel>
where
    R: Fn() -> F + Send + 'static,
    F: Future<Output = std::io::Result<Vec<SocketAddr>>> + Send + 'static,
{
    let runtime = tokio::runtime::Handle::try_current()
        .map_err(|_| anyhow::anyhow!("a dns:// channel needs a Tokio runtime"))?;
    let (channel, changes) = tonic::transport::Channel::balance_channel::<SocketAddr>(64);
    let resolve = move || -> Resolved { Box::pin(resolve()) };
    runtime.spawn(async move {
        let mut known = BTreeSet::new();
        let mut ticks = tokio::time::interval(refresh);
        loop {
            ticks.tick().await;
            let found: BTreeSet<SocketAddr> = match resolve().await {
                Ok(found) if !found.is_empty() => found.into_iter().collect(),
                Ok(_) => continue,
                Err(error) => {
                    tracing::warn!(%error, "gRPC peer name not resolved, keeping the last set");
                    continue;
                }
            };
            for gone in known.difference(&found) {
                if changes.send(Change::Remove(*gone)).await.is_err() {
                    return;
                }
            }
            for new in found.difference(&known) {
                let Ok(endpoint) = endpoint(&format!("http://{new}"), timeout) else {
                    continue;
                };
                if changes.send(Change::Insert(*new, endpoint)).await.is_err() {
                    // The channel is gone: stop resolving.
                    return;
                }
            }
            known = found;
        }
    });
    Ok(channel)
}

fn endpoint(url: &str, timeout: Duration) -> anyhow::Result<Endpoint> {
    let url = if url.contains("://") {
        url.to_owned()
    } else {
        format!("http://{url}")
    };
    Ok(Endpoint::from_shared(url.clone())
        .with_context(|| format!("invalid gRPC endpoint {url}"))?
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(timeout)
        .tcp_nodelay(true))
}

#[cfg(test)]
mod tests {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_check_response::ServingStatus as Status;
    use tonic_health::pb::health_client::HealthClient;
    use tracing::Instrument as _;

    use super::*;

    /// A server of health only, for `tavana.test.v1.TestService`, stopped by the sender.
    async fn test_server(
        settings: GrpcSettings,
    ) -> (
        std::net::SocketAddr,
        tokio::sync::oneshot::Sender<()>,
        tokio::task::JoinHandle<anyhow::Result<()>>,
    ) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        const POLICY: crate::trust::Policy = crate::trust::Policy {
            service: "tavana.test.v1.TestService",
            audience: crate::trust::CREDIT,
            methods: &[],
        };
        let gate = Gate::new(crate::testing::test_keyring(), &POLICY);
        let server = tokio::spawn(serve_grpc(
            listener,
            Routes::default(),
            tonic_health::pb::FILE_DESCRIPTOR_SET,
            gate,
            settings,
            async move {
                let _ = stopped.await;
            },
        ));
        (addr, stop, server)
    }

    #[tokio::test]
    async fn server_reports_health_and_stops_on_shutdown() {
        let (addr, stop, server) = test_server(GrpcSettings::default()).await;

        // Health is open: no credential.
        let mut client =
            HealthClient::new(unsigned_channel(&addr.to_string(), Duration::from_secs(5)).unwrap());
        for service in ["", "tavana.test.v1.TestService"] {
            let response = client
                .check(HealthCheckRequest {
                    service: service.to_owned(),
                })
                .await
                .unwrap();
            assert_eq!(response.into_inner().status, Status::Serving as i32);
        }
        let unknown = client
            .check(HealthCheckRequest {
                service: "nope".to_owned(),
            })
            .await
            .unwrap_err();
        assert_eq!(unknown.code(), tonic::Code::NotFound);

        stop.send(()).unwrap();
        server.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn a_peer_holding_a_silent_connection_does_not_keep_the_server_from_stopping() {
        // Arrange: a server with a short request timeout, and a peer that connects
        // and says nothing (hyperium/hyper#4170).
        let (addr, stop, server) = test_server(GrpcSettings {
            request_timeout_ms: 100,
            ..GrpcSettings::default()
        })
        .await;
        let _silent = tokio::net::TcpStream::connect(addr).await.unwrap();
        // A connection made after it is served, so the silent one has been accepted.
        let mut client =
            HealthClient::new(unsigned_channel(&addr.to_string(), Duration::from_secs(5)).unwrap());
        client
            .check(HealthCheckRequest::default())
            .await
            .expect("the server answers");

        // Act: the stop signal (SIGTERM in a pod).
        stop.send(()).unwrap();

        // Assert: the server stops (a guard of 60 s, not a timing claim) although
        // the silent connection is still open.
        tokio::time::timeout(Duration::from_secs(60), server)
            .await
            .expect("the server stopped")
            .unwrap()
            .unwrap();
    }

    #[test]
    fn trace_context_is_injected_into_metadata_when_a_propagator_is_set() {
        use opentelemetry::trace::TracerProvider as _;
        opentelemetry::global::set_text_map_propagator(
            opentelemetry_sdk::propagation::TraceContextPropagator::new(),
        );
        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
        let subscriber = tracing_subscriber::layer::SubscriberExt::with(
            tracing_subscriber::registry(),
            tracing_opentelemetry::layer().with_tracer(provider.tracer("test")),
        );
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("outgoing");
            let _entered = span.enter();
            let mut metadata = MetadataMap::new();
            inject_trace_context(&mut metadata);
            let traceparent = metadata.get("traceparent").unwrap().to_str().unwrap();
            assert!(traceparent.starts_with("00-"), "{traceparent}");
        });
    }
    /// Serves grpc.health.v1 on a free port; `seen` runs on every request.
    async fn health_server(
        seen: impl Fn(&http::Request<tonic::body::Body>) + Clone + Send + Sync + 'static,
    ) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (_reporter, health) = tonic_health::server::health_reporter();
        let observe =
            tower::util::MapRequestLayer::new(move |request: http::Request<tonic::body::Body>| {
                seen(&request);
                request
            });
        tokio::spawn(
            Server::builder()
                .layer(observe)
                .add_service(health)
                .serve_with_incoming(TcpIncoming::from(listener)),
        );
        addr
    }

    #[tokio::test]
    async fn a_peer_call_carries_the_trace_context_of_the_span_it_is_made_in() {
        use opentelemetry::trace::{TraceContextExt as _, TracerProvider as _};
        opentelemetry::global::set_text_map_propagator(
            opentelemetry_sdk::propagation::TraceContextPropagator::new(),
        );
        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
        let subscriber = tracing_subscriber::layer::SubscriberExt::with(
            tracing_subscriber::registry(),
            tracing_opentelemetry::layer().with_tracer(provider.tracer("test")),
        );
        let _default = tracing::subscriber::set_default(subscriber);
        let received = std::sync::Arc::new(std::sync::Mutex::new(None::<String>));
        let sink = received.clone();
        let addr = health_server(move |request| {
            *sink.lock().unwrap() = request
                .headers()
                .get("traceparent")
                .map(|value| value.to_str().unwrap().to_owned());
        })
        .await;
        let mut client = HealthClient::new(
            TraceContextLayer
                .layer(unsigned_channel(&addr.to_string(), Duration::from_secs(5)).unwrap()),
        );
        let span = tracing::info_span!("caller");

        client
            .check(HealthCheckRequest::default())
            .instrument(span.clone())
            .await
            .unwrap();

        let trace_id = span.context().span().span_context().trace_id().to_string();
        let traceparent = received.lock().unwrap().clone().unwrap();
        assert!(
            traceparent.starts_with(&format!("00-{trace_id}-")),
            "{traceparent} is not in trace {trace_id}"
        );
    }

    #[tokio::test]
    async fn a_dns_channel_balances_calls_over_every_resolved_address() {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicUsize, Ordering};
        let counts = [Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0))];
        let mut addrs = Vec::new();
        for count in &counts {
            let count = count.clone();
            addrs.push(
                health_server(move |_| {
                    count.fetch_add(1, Ordering::Relaxed);
                })
                .await,
            );
        }
        let resolved = addrs.clone();
        let raw = dns_channel(
            Duration::from_secs(5),
            Duration::from_secs(3600),
            move || {
                let resolved = resolved.clone();
                async move { Ok(resolved) }
            },
        )
        .unwrap();
        let mut client = HealthClient::new(TraceContextLayer.layer(raw));

        for _ in 0..40 {
            client.check(HealthCheckRequest::default()).await.unwrap();
        }

        let served: Vec<usize> = counts.iter().map(|c| c.load(Ordering::Relaxed)).collect();
        assert_eq!(served.iter().sum::<usize>(), 40);
        assert!(
            served.iter().all(|&n| n > 0),
            "one replica took no load: {served:?}"
        );
    }
}
