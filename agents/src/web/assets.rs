//! The dashboard: static files compiled into the binary, served with a content security
//! policy that allows nothing but this origin (no CDN, works without internet).
//!
//! The plots are drawn by `plot.js`, a small canvas plotter of our own: four rolling line
//! series per cabinet need ~150 lines, which is less to review and keep than a vendored chart
//! library with its licence and checksum.

use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use super::WebState;

/// Every file: (path, content type, content).
const FILES: &[(&str, &str, &str)] = &[
    (
        "/",
        "text/html; charset=utf-8",
        include_str!("dashboard/index.html"),
    ),
    (
        "/app.js",
        "text/javascript; charset=utf-8",
        include_str!("dashboard/app.js"),
    ),
    (
        "/plot.js",
        "text/javascript; charset=utf-8",
        include_str!("dashboard/plot.js"),
    ),
    (
        "/style.css",
        "text/css; charset=utf-8",
        include_str!("dashboard/style.css"),
    ),
    (
        "/favicon.svg",
        "image/svg+xml",
        include_str!("dashboard/favicon.svg"),
    ),
];

/// Only this origin, for scripts, styles, images and connections (fetch, EventSource).
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// True for the dashboard's paths.
pub fn is_asset(path: &str) -> bool {
    FILES.iter().any(|(p, _, _)| *p == path)
}

fn file(kind: &'static str, body: &'static str) -> Response {
    let mut r = body.into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    r
}

/// The dashboard's routes.
pub fn routes() -> Router<WebState> {
    FILES
        .iter()
        .fold(Router::new(), |router, &(path, kind, body)| {
            router.route(path, get(move || async move { file(kind, body) }))
        })
}
