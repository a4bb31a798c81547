//! gRPC server bootstrap (health, reflection, tracing, timeouts) and client channels.

use std::future::Future;
use std::time::Duration;

use anyhow::Context;
use opentelemetry::propagation::{Extractor, Injector};
use tonic::metadata::{MetadataKey, MetadataMap, MetadataValue};
use tonic::service::Routes;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Channel, Endpoint, Server};
use tonic_health::ServingStatus;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// How long a client waits for a TCP connection to a service.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

struct HeaderExtractor<'a>(&'a http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|value| value.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|key| key.as_str()).collect()
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
    let span = tracing::info_span!(
        "grpc.request",
        otel.name = %path,
        otel.kind = "server",
        rpc.system = "grpc",
        rpc.method = %path,
    );
    let parent = opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.extract(&HeaderExtractor(request.headers()))
    });
    // Without a remote parent (or without telemetry) the span stays a root span.
    let _ = span.set_parent(parent);
    span
}

/// Writes the current span's W3C trace context into outgoing request metadata.
pub fn inject_trace_context(metadata: &mut MetadataMap) {
    let context = tracing::Span::current().context();
    opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.inject_context(&context, &mut MetadataInjector(metadata));
    });
}

/// Serves `routes` on `listener` until `shutdown` completes.
///
/// Adds grpc.health.v1 (each of `service_names` and `""` SERVING), reflection v1 and
/// v1alpha from `descriptor_set`, one span per RPC, a per-request timeout and TCP_NODELAY.
pub async fn serve_grpc(
    listener: tokio::net::TcpListener,
    routes: Routes,
    descriptor_set: &'static [u8],
    service_names: &[&str],
    request_timeout: Duration,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    health_reporter
        .set_service_status("", ServingStatus::Serving)
        .await;
    for name in service_names {
        health_reporter
            .set_service_status(*name, ServingStatus::Serving)
            .await;
    }
    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(descriptor_set)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .context("invalid file descriptor set for reflection")?;
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(descriptor_set)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()
        .context("invalid file descriptor set for reflection")?;

    let local_addr = listener.local_addr().ok();
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    tracing::info!(addr = ?local_addr, services = ?service_names, "grpc server listening");

    Server::builder()
        .timeout(request_timeout)
        .trace_fn(rpc_span)
        .add_routes(routes)
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
        .context("grpc server failed")?;
    tracing::info!(addr = ?local_addr, "grpc server stopped");
    Ok(())
}

/// Returns a lazily connecting channel to `url` (`http://host:port`; a bare `host:port`
/// gets `http://`), with a connect timeout, a per-request `timeout` and TCP_NODELAY.
/// A comma-separated list of URLs balances over those replicas.
pub fn channel(url: &str, timeout: Duration) -> anyhow::Result<Channel> {
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
        _ => Ok(Channel::balance_list(endpoints.into_iter())),
    }
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

    use super::*;

    #[tokio::test]
    async fn server_reports_health_and_stops_on_shutdown() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve_grpc(
            listener,
            Routes::default(),
            tonic_health::pb::FILE_DESCRIPTOR_SET,
            &["tavana.test.v1.TestService"],
            Duration::from_secs(5),
            async move {
                let _ = stopped.await;
            },
        ));

        let mut client =
            HealthClient::new(channel(&addr.to_string(), Duration::from_secs(5)).unwrap());
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
}
