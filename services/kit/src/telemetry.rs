//! Logs and traces: `tracing` with pretty or JSON logs, and OTLP export when configured.

use std::sync::{Mutex, OnceLock};

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry};

use crate::config::TelemetrySettings;

/// Set once by the first [`init`]; holds the tracer provider to flush at [`shutdown`].
static STATE: OnceLock<Mutex<Option<SdkTracerProvider>>> = OnceLock::new();

type BoxedLayer = Box<dyn Layer<Registry> + Send + Sync>;

/// Installs the global subscriber: an `EnvFilter` (`RUST_LOG` overrides `settings.filter`),
/// pretty or JSON logs, and an OTLP trace exporter only when `settings.otlp_endpoint` is set.
///
/// Calls after the first do nothing. With OTLP it must run inside a Tokio runtime.
pub fn init(service_name: &str, settings: &TelemetrySettings) {
    let mut first = false;
    let state = STATE.get_or_init(|| {
        first = true;
        Mutex::new(None)
    });
    if !first {
        return;
    }

    // The W3C propagator is cheap, and without it no trace context crosses a hop.
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());

    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&settings.filter))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let logs: BoxedLayer = if settings.log_json {
        tracing_subscriber::fmt::layer()
            .json()
            .with_current_span(true)
            .boxed()
    } else {
        tracing_subscriber::fmt::layer().boxed()
    };

    let mut layers: Vec<BoxedLayer> = vec![logs];
    let mut export_error = None;
    if let Some(endpoint) = settings
        .otlp_endpoint
        .as_deref()
        .filter(|e| !e.trim().is_empty())
    {
        match otlp_provider(service_name, endpoint) {
            Ok(provider) => {
                let tracer = provider.tracer(service_name.to_owned());
                layers.push(tracing_opentelemetry::layer().with_tracer(tracer).boxed());
                opentelemetry::global::set_tracer_provider(provider.clone());
                if let Ok(mut slot) = state.lock() {
                    *slot = Some(provider);
                }
            }
            Err(error) => export_error = Some(error),
        }
    }

    let installed = tracing_subscriber::registry()
        .with(layers)
        .with(filter)
        .try_init();
    if installed.is_err() {
        // Another subscriber (a test harness, say) is already in place; keep it.
        return;
    }
    if let Some(error) = export_error {
        tracing::error!(error = %error, "otlp exporter not started, traces are not exported");
    }
}

fn otlp_provider(service_name: &str, endpoint: &str) -> anyhow::Result<SdkTracerProvider> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint)
        .build()?;
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(
            Resource::builder()
                .with_service_name(service_name.to_owned())
                .build(),
        )
        .build())
}

/// Flushes and stops the trace exporter, if one was started.
pub fn shutdown() {
    let Some(state) = STATE.get() else {
        return;
    };
    let provider = match state.lock() {
        Ok(mut slot) => slot.take(),
        Err(_) => None,
    };
    if let Some(provider) = provider
        && let Err(error) = provider.shutdown()
    {
        eprintln!("otlp exporter shutdown failed: {error}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_twice_is_harmless() {
        let settings = TelemetrySettings::default();
        init("test", &settings);
        init("test", &settings);
        tracing::info!("logged once the subscriber is in place");
        shutdown();
    }
}
