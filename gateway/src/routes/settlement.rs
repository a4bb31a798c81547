//! Gateway routes of the settlement service.

use utoipa_axum::router::OpenApiRouter;

use crate::AppState;

/// Returns the routes of the settlement service.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
}
