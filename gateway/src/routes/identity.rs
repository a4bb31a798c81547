//! Gateway routes of the identity service.

use utoipa_axum::router::OpenApiRouter;

use crate::AppState;

/// Returns the routes of the identity service.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
}
