//! Gateway routes of the credit service.

use utoipa_axum::router::OpenApiRouter;

use crate::AppState;

/// Returns the routes of the credit service.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
}
