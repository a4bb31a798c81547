//! Health and readiness of the gateway.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;

/// Returns `/healthz` and `/readyz`.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(healthz))
        .routes(routes!(readyz))
}

/// Health of the gateway or its services.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// `ok`, or `unavailable`.
    pub status: String,
    /// Services that did not answer SERVING.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unavailable: Vec<String>,
}

/// Answers while the gateway process runs.
#[utoipa::path(get, path = "/healthz", tag = "system", responses((status = 200, body = Health)))]
async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok".into(),
        unavailable: Vec::new(),
    })
}

/// Answers 200 when every service answers its gRPC health check.
#[utoipa::path(get, path = "/readyz", tag = "system",
    responses((status = 200, body = Health), (status = 503, body = Health)))]
async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Health>) {
    let settings = &state.settings;
    let services = [
        ("identity", &settings.identity_url),
        ("guarantee", &settings.guarantee_url),
        ("credit", &settings.credit_url),
        ("settlement", &settings.settlement_url),
        ("merchant-directory", &settings.merchant_directory_url),
    ];
    let checks = services.iter().map(|(name, url)| async move {
        let serving = check(url).await;
        (*name, serving)
    });
    let unavailable: Vec<String> = futures::future::join_all(checks)
        .await
        .into_iter()
        .filter(|(_, serving)| !serving)
        .map(|(name, _)| name.to_owned())
        .collect();
    if unavailable.is_empty() {
        let health = Health {
            status: "ok".into(),
            unavailable,
        };
        (StatusCode::OK, Json(health))
    } else {
        let health = Health {
            status: "unavailable".into(),
            unavailable,
        };
        (StatusCode::SERVICE_UNAVAILABLE, Json(health))
    }
}

async fn check(url: &str) -> bool {
    let Ok(channel) = tavana_kit::grpc::unsigned_channel(url, Duration::from_secs(2)) else {
        return false;
    };
    let request = HealthCheckRequest {
        service: String::new(),
    };
    matches!(
        HealthClient::new(channel).check(request).await,
        Ok(response) if response.get_ref().status == 1
    )
}
