//! The HTTP/JSON gateway: what mobile apps, the web portal and merchant
//! backends see (`docs/API.md`). It authenticates callers, applies rate
//! limits, and calls the five services over gRPC with the caller in the
//! metadata; it has no database.

pub mod auth;
pub mod error;
pub mod extract;
pub mod routes;
mod state;

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderName, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tavana_kit::error::{ErrorKind, Problem};
use tavana_kit::store::RateLimit;
use tower::ServiceBuilder;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::limit::RequestBodyLimitLayer;
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
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(routes::system::router())
        .merge(routes::identity::router())
        .merge(routes::guarantee::router())
        .merge(routes::credit::router())
        .merge(routes::settlement::router())
        .merge(routes::merchants::router())
        .merge(routes::dev::router())
        .split_for_parts()
}

/// Returns the OpenAPI document, as `/openapi.json` serves it.
pub fn openapi() -> utoipa::openapi::OpenApi {
    api().1
}

/// Builds the whole application: routes, `/openapi.json`, and the layers.
pub fn app(state: AppState) -> Router {
    let (routes, openapi) = api();
    let openapi_json = openapi.to_json().unwrap_or_else(|_| "{}".to_owned());
    let cors = cors(&state.settings.cors_origins);
    let max_body = state.settings.max_body_bytes;
    routes
        .route(
            "/openapi.json",
            axum::routing::get(move || async move {
                ([("content-type", "application/json")], openapi_json.clone())
            }),
        )
        .fallback(|| async { ApiError::not_found() })
        // axum's extractors have their own 2 MiB default; the layer below
        // is the one limit (bank CSVs run to tens of MiB).
        .layer(axum::extract::DefaultBodyLimit::max(max_body))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            rate_limit_per_ip,
        ))
        .with_state(state)
        // Outermost first: the request id exists before anything logs, the
        // trace span carries it, the response carries it back; CORS answers
        // preflights before the body limit and the rate limit see them.
        .layer(
            ServiceBuilder::new()
                .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
                .layer(TraceLayer::new_for_http().make_span_with(|request: &Request| {
                    let request_id = request
                        .headers()
                        .get(REQUEST_ID)
                        .and_then(|value| value.to_str().ok())
                        .unwrap_or_default();
                    tracing::info_span!("http", method = %request.method(), path = %request.uri().path(), request_id)
                }))
                .layer(PropagateRequestIdLayer::new(REQUEST_ID))
                .layer(cors)
                .layer(RequestBodyLimitLayer::new(max_body)),
        )
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

/// Limits requests per client IP per minute (counters in Redis when
/// configured, so the limit holds across gateway replicas).
async fn rate_limit_per_ip(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let forwarded = state
        .settings
        .trust_forwarded_for
        .then(|| {
            let header = request.headers().get("x-forwarded-for")?.to_str().ok()?;
            let client = header.split(',').next()?.trim();
            (!client.is_empty()).then(|| client.to_owned())
        })
        .flatten();
    let ip = forwarded.unwrap_or_else(|| {
        request
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(address)| address.ip().to_string())
            .unwrap_or_else(|| "unknown".to_owned())
    });
    let rule = RateLimit {
        limit: state.settings.rate_limit_per_ip_per_minute,
        window: Duration::from_secs(60),
    };
    let key = format!("gateway:rate:ip:{ip}");
    match tavana_kit::store::check_rate(state.store.as_ref(), &key, rule).await {
        Ok(Ok(())) => next.run(request).await,
        Ok(Err(retry_after)) => ApiError(
            Problem::new(
                ErrorKind::RateLimited,
                "rate_limited",
                "Too many requests; try again later.",
                "درخواست‌ها بیش از حد مجاز است؛ کمی بعد دوباره تلاش کنید.",
            )
            .with_extra("retry_after_seconds", retry_after.as_secs().max(1)),
        )
        .into_response(),
        Err(error) => {
            // The limiter's store failing must not take the API down.
            tracing::warn!(%error, "rate limiter unavailable");
            next.run(request).await
        }
    }
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
