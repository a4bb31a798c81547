//! `/v1/dev/*`: only under `tavana up --dev`, never in production.

use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::error::ApiError;
use crate::extract::ApiJson;

/// Returns the dev routes of the gateway itself.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(get_clock, move_clock))
}

/// The dev clock's reading.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ClockView {
    /// What every service reads as now.
    pub now: DateTime<Utc>,
}

/// Ten years, in seconds: the most one move of the dev clock goes either way.
const MAX_ADVANCE_SECONDS: u64 = 315_360_000;

/// A move of the dev clock: forward by seconds, or to an instant; exactly one of the two
/// (`oneOf`, no other member).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum MoveClock {
    /// `{"advance_seconds": 3600}`.
    Advance(AdvanceClock),
    /// `{"set": "2026-01-01T00:00:00Z"}`.
    Set(SetClock),
}

/// Moves the dev clock by a number of seconds.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AdvanceClock {
    /// Seconds to move forward (negative moves back), at most ten years either way.
    #[schema(minimum = -315_360_000, maximum = 315_360_000)]
    pub advance_seconds: i64,
}

/// Sets the dev clock to an instant.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetClock {
    /// An RFC 3339 instant to set the clock to.
    pub set: DateTime<Utc>,
}

fn dev_clock(state: &AppState) -> Result<&tavana_kit::clock::AdjustableClock, ApiError> {
    state.dev_clock.as_deref().ok_or_else(ApiError::not_found)
}

/// Reads the one clock every service reads.
#[utoipa::path(get, path = "/v1/dev/clock", tag = "dev",
    responses((status = 200, body = ClockView), (status = 404, description = "not in dev mode")))]
async fn get_clock(State(state): State<AppState>) -> Result<axum::Json<ClockView>, ApiError> {
    use tavana_kit::clock::Clock;
    let clock = dev_clock(&state)?;
    Ok(axum::Json(ClockView { now: clock.now() }))
}

/// Moves the one clock every service reads, like a payment provider's test clock.
#[utoipa::path(post, path = "/v1/dev/clock", tag = "dev", request_body = MoveClock,
    responses((status = 200, body = ClockView), (status = 400), (status = 404, description = "not in dev mode")))]
async fn move_clock(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<MoveClock>,
) -> Result<axum::Json<ClockView>, ApiError> {
    use tavana_kit::clock::Clock;
    let clock = dev_clock(&state)?;
    // A body with both, or neither, matches no variant: a 400 `malformed_body`.
    match body {
        MoveClock::Advance(AdvanceClock { advance_seconds }) => {
            let within = advance_seconds.unsigned_abs() <= MAX_ADVANCE_SECONDS;
            let Some(by) = chrono::Duration::try_seconds(advance_seconds).filter(|_| within) else {
                return Err(ApiError::bad_request(
                    "clock_move_invalid",
                    "advance_seconds is beyond ten years either way.",
                    "advance_seconds بیش از ده سال است.",
                ));
            };
            clock.advance(by);
        }
        MoveClock::Set(SetClock { set }) => clock.set(set),
    }
    // Services in other processes (split mode) follow the published offset;
    // answer once they have had time to read it, so a client's next call
    // already sees the new time.
    tavana_kit::clock::publish_dev_clock(clock, state.store.as_ref())
        .await
        .map_err(ApiError::internal)?;
    if std::env::var("TAVANA_DEV_CLOCK").as_deref() == Ok("shared") {
        tokio::time::sleep(tavana_kit::clock::DEV_CLOCK_POLL * 5).await;
    }
    Ok(axum::Json(ClockView { now: clock.now() }))
}
