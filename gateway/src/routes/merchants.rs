//! Gateway routes of the merchants service.

use utoipa_axum::router::OpenApiRouter;

use crate::AppState;

/// Returns the routes of the merchants service.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
}
