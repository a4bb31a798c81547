//! Gateway routes of the guarantee service.

use utoipa_axum::router::OpenApiRouter;

use crate::AppState;

/// Returns the routes of the guarantee service.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
}
