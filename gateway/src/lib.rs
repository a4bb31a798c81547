//! The HTTP/JSON gateway: what mobile apps, the web portal and merchant
//! backends see (`docs/API.md`). It authenticates callers, applies rate
//! limits, and calls the five services over gRPC with the caller in the
//! metadata; it has no database.

pub mod auth;
pub mod edge;
pub mod error;
pub mod extract;
pub mod routes;
pub mod schema;
mod state;

use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderName, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::Response;
use tower::ServiceBuilder;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

use crate::error::ApiError;
pub use crate::state::{AppState, GatewaySettings, MAX_GRPC_MESSAGE};

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Tavana gateway API",
        version = "1",
        description = "HTTP/JSON API of the Tavana welfare credit card (docs/API.md)."
    ),
    modifiers(&BearerAuth)
)]
struct ApiDoc;

/// Declares on every operation the answers the layers in front of every handler can
/// give (API.md, Conventions): 400 for a malformed request, 401 and 403 for a missing or
/// insufficient credential, 413 for a body over the route's limit, 429 for a rate limit.
struct EdgeResponses;

impl utoipa::Modify for EdgeResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::ResponseBuilder;
        let common = [
            (
                "400",
                "malformed request (problem+json, `code`, `violations`)",
            ),
            ("401", "no or invalid access token or merchant key"),
            ("403", "wrong role or region"),
            ("429", "rate limited, with Retry-After"),
        ];
        for item in openapi.paths.paths.values_mut() {
            let operations = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ];
            for operation in operations.into_iter().flatten() {
                let has_body = operation.request_body.is_some();
                let responses = &mut operation.responses.responses;
                let body_limit = has_body.then_some(("413", "body over the route's limit"));
                for (status, description) in common.into_iter().chain(body_limit) {
                    responses.entry(status.to_owned()).or_insert_with(|| {
                        ResponseBuilder::new()
                            .description(description)
                            .build()
                            .into()
                    });
                }
            }
        }
    }
}

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

/// Returns every route with its OpenAPI document.
pub fn api() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    let (routes, mut openapi) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(routes::system::router())
        .merge(routes::identity::router())
        .merge(routes::guarantee::router())
        .merge(routes::credit::router())
        .merge(routes::settlement::router())
        .merge(routes::merchants::router())
        .merge(routes::dev::router())
        .merge(routes::audit::router())
        .split_for_parts();
    // The routes join the document only here, after `ApiDoc`'s own modifiers ran.
    utoipa::Modify::modify(&EdgeResponses, &mut openapi);
    (routes, openapi)
}

/// Returns the OpenAPI document, as `/openapi.json` serves it.
pub fn openapi() -> utoipa::openapi::OpenApi {
    api().1
}

/// Builds the whole application: routes, `/openapi.json`, and the layers.
pub fn app(state: AppState) -> Router {
    app_with(state, Router::new())
}

/// Builds the application with more routes (the portal) merged in before the
/// layers, so that they pass the same client-IP, rate and body limits.
pub fn app_with(state: AppState, more: Router) -> Router {
    tavana_kit::metrics::install();
    let (routes, openapi) = api();
    let openapi_json = openapi.to_json().unwrap_or_else(|_| "{}".to_owned());
    let cors = cors(&state.settings.cors_origins);
    routes
        .route(
            "/openapi.json",
            axum::routing::get(move || async move {
                ([("content-type", "application/json")], openapi_json.clone())
            }),
        )
        .fallback(|| async { ApiError::not_found() })
        .with_state(state.clone())
        .merge(more)
        // `Router::layer` wraps each route after routing, so the layers below see the
        // matched route template. Innermost first: axum's own 2 MiB extractor limit is
        // replaced by the per-route limit, checked before the body is read; the rate
        // limit counts by the client IP resolved just outside it.
        .layer(axum::extract::DefaultBodyLimit::disable())
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            edge::limit_body,
        ))
        .layer(axum::middleware::from_fn(edge::refuse_nul_in_url))
        .layer(axum::middleware::from_fn(record_metrics))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            edge::rate_limit_per_ip,
        ))
        .layer(axum::middleware::from_fn_with_state(state, edge::client_ip))
        // Outermost first: the request id exists before anything logs, the
        // trace span carries it and the route (never the raw path, which holds
        // national IDs and card numbers), the response carries it back; CORS
        // answers preflights before the limits see them.
        .layer(
            ServiceBuilder::new()
                .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
                .layer(
                    TraceLayer::new_for_http().make_span_with(|request: &Request| {
                        let request_id = request
                            .headers()
                            .get(REQUEST_ID)
                            .and_then(|value| value.to_str().ok())
                            .unwrap_or_default();
                        let span = tracing::info_span!(
                            "http",
                            method = %request.method(),
                            route = %edge::route_of(request),
                            request_id,
                            tavana.service = "gateway",
                        );
                        // The client's `traceparent` makes this span (and every service
                        // call under it) part of the client's trace.
                        tavana_kit::grpc::continue_trace(&span, request.headers());
                        span
                    }),
                )
                .layer(PropagateRequestIdLayer::new(REQUEST_ID))
                .layer(cors),
        )
}

/// Counts every request and its latency by method, route template and
/// status (`tavana_http_requests_total`, `tavana_http_request_duration_seconds`).
async fn record_metrics(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |path| path.as_str().to_owned());
    let method = request.method().to_string();
    let started = Instant::now();
    let response = next.run(request).await;
    tavana_kit::metrics::record_http(
        &method,
        &route,
        response.status().as_u16(),
        started.elapsed(),
    );
    response
}

fn cors(origins: &[String]) -> CorsLayer {
    let origins: Vec<HeaderValue> = origins
        .iter()
        .filter_map(|origin| HeaderValue::from_str(origin).ok())
        .collect();
    CorsLayer::new()
        .allow_origin(AllowOrigin::list(origins))
        .allow_methods([
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::DELETE,
            Method::OPTIONS,
        ])
        .allow_headers([
            axum::http::header::AUTHORIZATION,
            axum::http::header::CONTENT_TYPE,
            axum::http::header::ACCEPT,
            HeaderName::from_static("idempotency-key"),
            HeaderName::from_static("traceparent"),
            REQUEST_ID,
        ])
        .expose_headers([REQUEST_ID, axum::http::header::RETRY_AFTER])
        .max_age(Duration::from_secs(600))
}

/// Serves an application built by [`app`] (possibly with more routes merged,
/// such as the portal) on `listener` until `shutdown` resolves.
pub async fn serve(
    app: Router,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    // axum's serve leaves Nagle on; small JSON answers then wait ~40 ms.
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await?;
    Ok(())
}
