//! Static files compiled into the binary: the style sheet, htmx and the
//! Vazirmatn font (OFL-1.1, its license served beside it).

use axum::Router;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// One file: its name under `/portal/assets/`, content type and bytes.
const FILES: &[(&str, &str, &[u8])] = &[
    (
        "portal.css",
        "text/css; charset=utf-8",
        include_bytes!("../assets/portal.css"),
    ),
    (
        "htmx.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../assets/htmx.min.js"),
    ),
    (
        "htmx.LICENSE",
        "text/plain; charset=utf-8",
        include_bytes!("../assets/htmx.LICENSE"),
    ),
    (
        "fonts/Vazirmatn-Regular.woff2",
        "font/woff2",
        include_bytes!("../assets/fonts/Vazirmatn-Regular.woff2"),
    ),
    (
        "fonts/Vazirmatn-Bold.woff2",
        "font/woff2",
        include_bytes!("../assets/fonts/Vazirmatn-Bold.woff2"),
    ),
    (
        "fonts/OFL.txt",
        "text/plain; charset=utf-8",
        include_bytes!("../assets/fonts/OFL.txt"),
    ),
];

/// Returns the route that serves the files.
pub fn routes() -> Router {
    Router::new().route("/portal/assets/{*file}", get(serve))
}

async fn serve(Path(file): Path<String>) -> Response {
    match FILES.iter().find(|(name, _, _)| *name == file) {
        Some((_, content_type, bytes)) => (
            [
                (CONTENT_TYPE, *content_type),
                (CACHE_CONTROL, "public, max-age=86400"),
            ],
            *bytes,
        )
            .into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}
