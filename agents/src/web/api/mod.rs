//! The HTTP routes: `/api/v1` (chain, records, measurements, agents, nodes, events), the
//! OpenAPI document generated from the handlers' annotations, `/metrics`, the dashboard; and
//! the middleware every request passes (counting, problem details, CORS, token, load
//! shedding, time limit, body limit).

pub mod chain;
pub mod live;
pub mod schema;

use std::sync::OnceLock;
use std::time::Duration;

use axum::error_handling::HandleErrorLayer;
use axum::extract::Request;
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::{from_fn, from_fn_with_state, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use metrics::counter;
use tower::ServiceBuilder;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::limit::RequestBodyLimitLayer;
use utoipa::OpenApi;

use super::problem::{self, Problem};
use super::{assets, auth, WebError, WebState};
use crate::metrics as m;

/// Where the OpenAPI document is served.
pub const OPENAPI_PATH: &str = "/api/openapi.json";

/// The OpenAPI document: every route below, generated from the handlers.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "wattchain",
        description = "The chain, its records and the live measurements of a wattchain node. \
                       Errors are RFC 9457 problem details (application/problem+json). \
                       When the server was started with --http-token, every path but the \
                       dashboard's and this document's needs `Authorization: Bearer TOKEN`.",
        license(name = "MIT OR Apache-2.0")
    ),
    paths(
        live::status,
        chain::head,
        chain::blocks,
        chain::block,
        chain::block_by_hash,
        chain::verify,
        chain::record,
        live::cabinets,
        live::cabinet,
        live::agents,
        live::nodes,
        live::events,
        metrics,
    ),
    components(schemas(Problem)),
    modifiers(&BearerAuth),
    security(("bearer" = []))
)]
pub struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The OpenAPI document as JSON (built once).
pub fn openapi_json() -> Bytes {
    static DOC: OnceLock<Bytes> = OnceLock::new();
    DOC.get_or_init(|| ApiDoc::openapi().to_json().unwrap_or_default().into())
        .clone()
}

async fn openapi() -> Response {
    json_bytes(openapi_json())
}

/// A JSON body already serialised.
pub fn json_bytes(body: Bytes) -> Response {
    let mut r = body.into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// The metrics of this process in Prometheus text format.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "metrics",
    responses(
        (status = 200, description = "Prometheus text exposition format 0.0.4", content_type = "text/plain", body = String),
        (status = 401, description = "A token is required", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn metrics() -> Response {
    let text = crate::metrics::render().unwrap_or_default();
    let mut r = text.into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    r
}

async fn not_found(request: Request) -> Problem {
    Problem::not_found(
        "no_such_route",
        format!("no route {}", request.uri().path()),
    )
}

async fn method_not_allowed(request: Request) -> Problem {
    Problem::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!(
            "{} is not allowed here; the API is read-only (GET)",
            request.method()
        ),
    )
}

/// Refusals of the load-shedding and time-limit layers, as problems.
async fn refused(err: tower::BoxError) -> Problem {
    if err.is::<tower::timeout::error::Elapsed>() {
        counter!(m::WEB_REFUSED, "reason" => "timeout").increment(1);
        Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "timeout",
            "the request took too long",
        )
    } else if err.is::<tower::load_shed::error::Overloaded>() {
        counter!(m::WEB_REFUSED, "reason" => "overloaded").increment(1);
        Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "overloaded",
            "too many requests at once; retry",
        )
    } else {
        Problem::internal(err.to_string())
    }
}

async fn count(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let class = match response.status().as_u16() {
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    };
    counter!(m::WEB_REQUESTS, "class" => class).increment(1);
    response
}

fn cors(origins: &[String]) -> Result<Option<CorsLayer>, WebError> {
    if origins.is_empty() {
        return Ok(None);
    }
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        let list = origins
            .iter()
            .map(|o| HeaderValue::from_str(o).map_err(|_| WebError::Cors(o.clone())))
            .collect::<Result<Vec<_>, _>>()?;
        AllowOrigin::list(list)
    };
    Ok(Some(
        CorsLayer::new()
            .allow_origin(allow)
            .allow_methods([Method::GET])
            .allow_headers([
                header::AUTHORIZATION,
                header::HeaderName::from_static("last-event-id"),
            ])
            .max_age(Duration::from_secs(600)),
    ))
}

/// Every route with its middleware.
pub fn router(state: WebState) -> Result<Router, WebError> {
    let config = &state.config;
    let middleware = ServiceBuilder::new()
        .layer(from_fn(count))
        .layer(from_fn(problem::problems_everywhere))
        .option_layer(cors(&config.cors)?)
        .layer(from_fn_with_state(state.clone(), auth::require_token))
        .layer(HandleErrorLayer::new(refused))
        .load_shed()
        .concurrency_limit(config.max_concurrent.max(1))
        .timeout(config.handler_timeout)
        .layer(RequestBodyLimitLayer::new(config.max_body));
    Ok(Router::new()
        .route("/api/v1/status", get(live::status))
        .route("/api/v1/chain/head", get(chain::head))
        .route("/api/v1/chain/blocks", get(chain::blocks))
        .route("/api/v1/chain/blocks/{index}", get(chain::block))
        .route(
            "/api/v1/chain/blocks/by-hash/{hash}",
            get(chain::block_by_hash),
        )
        .route("/api/v1/chain/verify", get(chain::verify))
        .route("/api/v1/records/{cabinet}/{window}", get(chain::record))
        .route("/api/v1/cabinets", get(live::cabinets))
        .route("/api/v1/cabinets/{cabinet}", get(live::cabinet))
        .route("/api/v1/agents", get(live::agents))
        .route("/api/v1/nodes", get(live::nodes))
        .route("/api/v1/events", get(live::events))
        .route(OPENAPI_PATH, get(openapi))
        .route("/metrics", get(metrics))
        .merge(assets::routes())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware)
        .with_state(state))
}
