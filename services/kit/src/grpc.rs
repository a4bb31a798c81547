//! gRPC server bootstrap (health, reflection, tracing, metrics, timeouts) and client
//! channels (trace context on every call, per-request balancing over replicas).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::future::Future;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use anyhow::Context;
use futures::FutureExt as _;
use opentelemetry::propagation::{Extractor, Injector};
use prost::Message;
use prost_types::FileDescriptorSet;
use tonic::Status;
use tonic::body::Body;
use tonic::metadata::{MetadataKey, MetadataMap, MetadataValue};
use tonic::service::Routes;
use tonic::transport::channel::Change;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Endpoint, Server};
use tonic_health::ServingStatus;
use tower::{Layer as _, ServiceExt as _};
use tracing::Instrument as _;
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
fn rpc_span<B>(request: &http::Request<B>) -> tracing::Span {
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
/// and the W3C trace context of the span they are made in ([`TraceContextLayer`]), made
/// by a [`Dialer`].
pub type Channel = Signed<TraceContext<Transport>>;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A server's whole stack (span, metrics, gate, request id, timeout, routes) as one
/// service, called without a socket by clients in its own process.
type LocalService =
    tower::util::BoxCloneSyncService<http::Request<Body>, http::Response<Body>, BoxError>;

/// A server registered for in-process calls: its stack, and the paths of its methods
/// that only read ([`crate::trust::Policy::reads`]).
#[derive(Clone)]
struct Local {
    service: LocalService,
    reads: Arc<HashSet<String>>,
}

/// Where a server registers its stack while it serves, and its clients look for it.
type Slot = Arc<RwLock<Option<Local>>>;

/// The servers of one process (`tavana up`) that its own clients reach in process:
/// a call to a registered address skips loopback TCP and HTTP/2 but not the server's
/// stack, so it is signed, gated, traced, counted and timed out as over the network.
/// The default registers nothing: every call goes over TCP (one service per process).
#[derive(Clone, Default)]
pub struct InProcess(Option<Arc<Mutex<HashMap<SocketAddr, Slot>>>>);

impl InProcess {
    /// A registry for the servers of this process.
    pub fn enabled() -> InProcess {
        InProcess(Some(Arc::default()))
    }

    /// The slot of the server at `url` (`http://ip:port` or `ip:port`), created empty
    /// if that server has not started yet; `None` when disabled or `url` is not one
    /// address.
    fn slot(&self, url: &str) -> Option<Slot> {
        let address = url
            .trim()
            .trim_start_matches("http://")
            .trim_end_matches('/');
        self.slot_at(address.parse().ok()?)
    }

    /// The slot of the server at `address`; `None` when disabled.
    fn slot_at(&self, address: SocketAddr) -> Option<Slot> {
        let servers = self.0.as_ref()?;
        let mut servers = servers.lock().unwrap_or_else(PoisonError::into_inner);
        Some(servers.entry(address).or_default().clone())
    }
}

/// Keeps a server registered in its [`InProcess`] slot while it lives; dropped, the
/// server is gone for in-process callers as a closed port is for the others.
struct Registered(Option<Slot>);

impl Registered {
    fn new(slot: Option<Slot>, local: Local) -> Registered {
        if let Some(slot) = &slot {
            *slot.write().unwrap_or_else(PoisonError::into_inner) = Some(local);
        }
        Registered(slot)
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        if let Some(slot) = &self.0 {
            *slot.write().unwrap_or_else(PoisonError::into_inner) = None;
        }
    }
}

/// How a caller reaches its peers: the signer of its calls, their deadline, and the
/// servers of its own process it reaches in process ([`InProcess`]).
#[derive(Clone)]
pub struct Dialer {
    signer: Signer,
    timeout: Duration,
    in_process: InProcess,
}

impl Dialer {
    /// Calls signed by `signer`, each given `timeout`, all over TCP.
    pub fn new(signer: Signer, timeout: Duration) -> Dialer {
        Dialer {
            signer,
            timeout,
            in_process: InProcess::default(),
        }
    }

    /// The same calls, to the servers of `in_process` without a socket.
    pub fn with_in_process(mut self, in_process: InProcess) -> Dialer {
        self.in_process = in_process;
        self
    }

    /// Returns a lazily connecting channel to `url`, with a connect timeout, the
    /// per-request timeout, TCP_NODELAY, the trace context on every call, and calls
    /// that the signer signs.
    ///
    /// - `http://host:port` (a bare `host:port` gets `http://`): one connection, or
    ///   none when that address is a server of this process ([`InProcess`]).
    /// - A comma-separated list of URLs: calls balanced over those replicas.
    /// - `dns://host:port`: calls balanced over every address the name resolves
    ///   to, resolved again every [`DNS_REFRESH`] (a Kubernetes headless
    ///   Service: one address per ready pod). Needs a Tokio runtime.
    pub fn channel(&self, url: &str) -> anyhow::Result<Channel> {
        let transport = Transport {
            tcp: unsigned_channel(url, self.timeout)?,
            local: self.in_process.slot(url),
            chosen: None,
            timeout: self.timeout,
        };
        Ok(Signed::new(
            TraceContextLayer.layer(transport),
            self.signer.clone(),
        ))
    }
}

/// The transport of a [`Channel`]: the server's stack in this process when it is
/// registered there ([`InProcess`]), TCP otherwise.
#[derive(Clone)]
pub struct Transport {
    tcp: tonic::transport::Channel,
    local: Option<Slot>,
    /// The in-process server `poll_ready` found, for the next `call`.
    chosen: Option<Local>,
    timeout: Duration,
}

impl tower::Service<http::Request<Body>> for Transport {
    type Response = http::Response<Body>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<http::Response<Body>, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), BoxError>> {
        self.chosen = self
            .local
            .as_ref()
            .and_then(|slot| slot.read().unwrap_or_else(PoisonError::into_inner).clone());
        if self.chosen.is_some() {
            return Poll::Ready(Ok(()));
        }
        self.tcp.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let Some(server) = self.chosen.take() else {
            let call = self.tcp.call(request);
            return Box::pin(async move { call.await.map_err(Into::into) });
        };
        let timeout = self.timeout;
        // A panic in a handler fails the call, not the caller, either way.
        if server.reads.contains(request.uri().path()) {
            // A read runs in its caller's task: nothing is lost when the caller stops
            // awaiting it, and it saves a task and the wake-up that hands its answer back.
            let served = AssertUnwindSafe(server.service.oneshot(request)).catch_unwind();
            return Box::pin(answer_within(timeout, async move {
                served.await.map_err(|_| "a handler panicked".to_owned())
            }));
        }
        // Any other call gets the server's own task, as a connection's stream would: it
        // runs to its end (or the server's timeout) even if the caller gives up.
        let served = tokio::spawn(server.service.oneshot(request));
        Box::pin(answer_within(timeout, async move {
            served.await.map_err(|failed| failed.to_string())
        }))
    }
}

/// The answer of an in-process call `served` within the caller's `timeout`; a call that
/// failed (`Err`, it panicked) is an `INTERNAL` answer.
async fn answer_within(
    timeout: Duration,
    served: impl Future<Output = Result<Result<http::Response<Body>, BoxError>, String>>,
) -> Result<http::Response<Body>, BoxError> {
    match tokio::time::timeout(timeout, served).await {
        Ok(Ok(answer)) => answer,
        Ok(Err(failed)) => Ok(Status::internal(format!("the call failed: {failed}")).into_http()),
        Err(_) => Ok(timed_out()),
    }
}

/// The answer to a call past its deadline, as tonic gives it over TCP.
fn timed_out() -> http::Response<Body> {
    Status::cancelled("Timeout expired").into_http()
}

/// The stack `serve_grpc` puts before `routes`, as one service for [`InProcess`] calls,
/// with the reads of `gate`'s policies.
fn local_service(routes: Routes, gate: Gate, timeout: Duration) -> Local {
    let reads = Arc::new(gate.read_paths());
    let routes = tower::service_fn(move |request: http::Request<Body>| {
        let call = routes.clone().oneshot(request);
        async move {
            match tokio::time::timeout(timeout, call).await {
                Ok(answer) => answer.map_err(BoxError::from),
                Err(_) => Ok(timed_out()),
            }
        }
    });
    let stack = tower::ServiceBuilder::new()
        .layer(crate::metrics::GrpcMetricsLayer)
        .layer(GateLayer::new(gate))
        .layer(RequestIdLayer)
        .service(routes);
    let service = tower::util::BoxCloneSyncService::new(tower::service_fn(
        move |request: http::Request<Body>| {
            let span = rpc_span(&request);
            stack.clone().oneshot(request).instrument(span)
        },
    ));
    Local { service, reads }
}

/// Serves `routes` on `listener` until `shutdown` completes.
///
/// Every `tavana.*` call passes `gate` first (a signed assertion for this service and the
/// method's allow-list). Adds grpc.health.v1 (each guarded service and `""` SERVING, open
/// to all), reflection v1 and v1alpha listing only the guarded services (unless
/// `grpc.reflection` is off), one span per RPC, request metrics
/// ([`crate::metrics::GrpcMetricsLayer`], refusals included), the request timeout and
/// TCP_NODELAY. While it serves, callers of this process reach the same stack through
/// `in_process` without a socket.
pub async fn serve_grpc(
    listener: tokio::net::TcpListener,
    routes: Routes,
    descriptor_set: &'static [u8],
    gate: Gate,
    grpc: GrpcSettings,
    in_process: InProcess,
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
    let _registered = Registered::new(
        local_addr.and_then(|address| in_process.slot_at(address)),
        local_service(routes.clone(), gate.clone(), grpc.request_timeout()),
    );
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
        .trace_fn(rpc_span::<()>)
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

/// A channel over TCP that adds no credential (nor trace context), to the same
/// targets as [`Dialer::channel`]: for health checks and tests of the refusals.
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
    use tonic_health::pb::health_check_response::ServingStatus as HealthStatus;
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
            reads: &[],
        };
        let gate = Gate::new(crate::testing::test_keyring(), &POLICY);
        let server = tokio::spawn(serve_grpc(
            listener,
            Routes::default(),
            tonic_health::pb::FILE_DESCRIPTOR_SET,
            gate,
            settings,
            InProcess::default(),
            async move {
                let _ = stopped.await;
            },
        ));
        (addr, stop, server)
    }

    /// Lets the gateway call credit's `Check` (a method with no route), `Read`, `Panic`
    /// and `Stall`; `Read` and `Panic` only read.
    const IN_PROCESS_POLICY: crate::trust::Policy = crate::trust::Policy {
        service: "tavana.credit.v1.CreditService",
        audience: crate::trust::CREDIT,
        methods: &[
            ("Check", &[crate::trust::GATEWAY]),
            ("Read", &[crate::trust::GATEWAY]),
            ("Panic", &[crate::trust::GATEWAY]),
            ("Stall", &[crate::trust::GATEWAY]),
        ],
        reads: &["Read", "Panic"],
    };

    /// An address where nothing listens.
    async fn closed_port() -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        listener.local_addr().unwrap()
    }

    /// Calls `/tavana.credit.v1.CreditService/Check` on `channel`.
    async fn call_guarded(channel: Channel) -> tonic::Code {
        call_method(channel, "Check").await
    }

    /// Calls `method` of `tavana.credit.v1.CreditService` on `channel`.
    async fn call_method(channel: Channel, method: &str) -> tonic::Code {
        let mut grpc = tonic::client::Grpc::new(channel);
        grpc.ready().await.unwrap();
        let path = format!("/tavana.credit.v1.CreditService/{method}");
        let answer: Result<tonic::Response<tonic_health::pb::HealthCheckResponse>, Status> = grpc
            .unary(
                tonic::Request::new(HealthCheckRequest::default()),
                http::uri::PathAndQuery::try_from(path).unwrap(),
                tonic_prost::ProstCodec::default(),
            )
            .await;
        answer.map_or_else(|status| status.code(), |_| tonic::Code::Ok)
    }

    /// A credit service that never answers `Stall`, panics on `Panic`, and records any
    /// other call's path and the task serving it, answering `UNIMPLEMENTED`.
    #[derive(Clone, Default)]
    struct Fake(Arc<Mutex<Vec<Served>>>);

    /// A call's path and the task that served it.
    type Served = (String, Option<tokio::task::Id>);

    type Answer = Result<http::Response<Body>, std::convert::Infallible>;

    impl tonic::server::NamedService for Fake {
        const NAME: &'static str = "tavana.credit.v1.CreditService";
    }

    impl tower::Service<http::Request<Body>> for Fake {
        type Response = http::Response<Body>;
        type Error = std::convert::Infallible;
        type Future = futures::future::Either<
            futures::future::Ready<Answer>,
            futures::future::Pending<Answer>,
        >;

        fn poll_ready(&mut self, _: &mut TaskContext<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, request: http::Request<Body>) -> Self::Future {
            let path = request.uri().path().to_owned();
            if path.ends_with("/Stall") {
                return futures::future::Either::Right(futures::future::pending());
            }
            assert!(!path.ends_with("/Panic"), "a handler's bug");
            self.0.lock().unwrap().push((path, tokio::task::try_id()));
            futures::future::Either::Left(futures::future::ready(Ok(Status::unimplemented(
                "recorded",
            )
            .into_http())))
        }
    }

    /// The code of a call to [`Fake`]'s `Stall` in process, with the server's `request_timeout`
    /// and the caller's `deadline`.
    async fn call_stalled(request_timeout: Duration, deadline: Duration) -> tonic::Code {
        let address = closed_port().await;
        let in_process = InProcess::enabled();
        let gate = Gate::new(crate::testing::test_keyring(), &IN_PROCESS_POLICY);
        let _registered = Registered::new(
            in_process.slot_at(address),
            local_service(Routes::new(Fake::default()), gate, request_timeout),
        );
        let dialer =
            Dialer::new(crate::testing::test_signer(), deadline).with_in_process(in_process);
        call_method(dialer.channel(&address.to_string()).unwrap(), "Stall").await
    }

    #[test]
    fn a_server_is_found_in_process_by_its_address_alone() {
        let in_process = InProcess::enabled();
        let slot = in_process.slot("http://127.0.0.1:5005/").unwrap();
        let same = in_process.slot(" 127.0.0.1:5005").unwrap();
        let by_address = in_process
            .slot_at("127.0.0.1:5005".parse().unwrap())
            .unwrap();
        assert!(Arc::ptr_eq(&slot, &same) && Arc::ptr_eq(&slot, &by_address));
        assert!(
            !Arc::ptr_eq(&slot, &in_process.slot("127.0.0.1:5006").unwrap()),
            "another port is another server"
        );
        // Replicas, names to resolve and a process of one service stay on TCP.
        for url in [
            "http://127.0.0.1:5005,http://127.0.0.1:5006",
            "dns://credit:50053",
            "http://credit:50053",
        ] {
            assert!(in_process.slot(url).is_none(), "{url}");
        }
        assert!(InProcess::default().slot("127.0.0.1:5005").is_none());
    }

    #[tokio::test]
    async fn a_call_to_a_server_of_this_process_passes_its_stack_without_a_socket() {
        // Arrange: a server registered in process at an address where nothing listens.
        let address = closed_port().await;
        let url = format!("http://{address}");
        let in_process = InProcess::enabled();
        let (_reporter, health) = tonic_health::server::health_reporter();
        let gate = Gate::new(crate::testing::test_keyring(), &IN_PROCESS_POLICY);
        let registered = Registered::new(
            in_process.slot_at(address),
            local_service(Routes::new(health), gate, Duration::from_secs(5)),
        );
        let timeout = Duration::from_secs(5);
        let gateway =
            Dialer::new(crate::testing::test_signer(), timeout).with_in_process(in_process.clone());
        let stranger = crate::trust::Keyring::ephemeral(&crate::trust::PRINCIPALS)
            .unwrap()
            .suite_signer(crate::trust::GATEWAY)
            .unwrap();
        let stranger = Dialer::new(stranger, timeout).with_in_process(in_process.clone());

        // Act and assert: the server answers with no socket to reach it.
        let mut health = HealthClient::new(gateway.channel(&url).unwrap());
        let answer = health.check(HealthCheckRequest::default()).await.unwrap();
        assert_eq!(answer.into_inner().status, HealthStatus::Serving as i32);
        // The gate verifies in-process calls: the gateway's passes it (to a method
        // with no route), a stranger's does not.
        assert_eq!(
            call_guarded(gateway.channel(&url).unwrap()).await,
            tonic::Code::Unimplemented
        );
        assert_eq!(
            call_guarded(stranger.channel(&url).unwrap()).await,
            tonic::Code::Unauthenticated
        );

        // Once the server is gone, its callers find the closed port.
        drop(registered);
        let gone = health
            .check(HealthCheckRequest::default())
            .await
            .unwrap_err();
        assert_eq!(gone.code(), tonic::Code::Unavailable, "{gone:?}");
    }

    #[tokio::test]
    async fn a_read_in_process_runs_in_its_callers_task_and_any_other_call_in_its_own() {
        // Arrange: a recording server in process whose `Read` and `Panic` only read.
        let address = closed_port().await;
        let in_process = InProcess::enabled();
        let recorder = Fake::default();
        let gate = Gate::new(crate::testing::test_keyring(), &IN_PROCESS_POLICY);
        let _registered = Registered::new(
            in_process.slot_at(address),
            local_service(Routes::new(recorder.clone()), gate, Duration::from_secs(5)),
        );
        let dialer = Dialer::new(crate::testing::test_signer(), Duration::from_secs(5))
            .with_in_process(in_process);
        let channel = dialer.channel(&address.to_string()).unwrap();

        for method in ["Read", "Check"] {
            // Act: a call from a task of its own.
            let call = call_method(channel.clone(), method);
            let (caller, code) = tokio::spawn(async move { (tokio::task::id(), call.await) })
                .await
                .unwrap();

            // Assert: served, in the caller's task only when it reads.
            assert_eq!(code, tonic::Code::Unimplemented, "{method}");
            let (path, served_in) = recorder.0.lock().unwrap().pop().unwrap();
            assert_eq!(path, format!("/tavana.credit.v1.CreditService/{method}"));
            assert!(served_in.is_some(), "{method} was served outside a task");
            assert_eq!(served_in == Some(caller), method == "Read", "{method}");
        }
        // A read whose handler panics fails its call, not its caller.
        assert_eq!(call_method(channel, "Panic").await, tonic::Code::Internal);
    }

    // The clock is paused: it jumps to the first timer once nothing else can run.
    #[tokio::test(start_paused = true)]
    async fn an_in_process_call_past_a_deadline_is_cancelled_as_over_tcp() {
        let hour = Duration::from_secs(3600);
        // The server's request timeout, then the caller's deadline.
        assert_eq!(
            call_stalled(Duration::from_secs(5), hour).await,
            tonic::Code::Cancelled
        );
        assert_eq!(
            call_stalled(hour, Duration::from_secs(5)).await,
            tonic::Code::Cancelled
        );
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
            assert_eq!(response.into_inner().status, HealthStatus::Serving as i32);
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
