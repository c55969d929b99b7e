//! `/api/v1/status`, `/cabinets`, `/agents`, `/nodes` and `/events`: what the bus says now.

use std::collections::BTreeMap;

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use crate::bus::Link;
use crate::messages::AgentStatus;
use crate::web::events;
use crate::web::live::CabinetView;
use crate::web::problem::Problem;
use crate::web::WebState;

/// The local chain in brief.
#[derive(Serialize, ToSchema)]
pub struct ChainBrief {
    /// Valid blocks, genesis included.
    pub length: u64,
    /// Every block verifies.
    pub valid: bool,
    /// Hash of the head.
    pub head: Option<String>,
    /// Where it is read from.
    pub source: String,
}

/// The service itself: version, bus connection, chain, event clients.
#[derive(Serialize, ToSchema)]
pub struct ServiceStatus {
    /// wattchain version.
    pub version: String,
    /// Seconds since the service started.
    pub uptime_seconds: f64,
    /// The broker the live view reads.
    pub broker: String,
    /// Connected to the broker with every subscription acknowledged.
    pub mqtt_connected: bool,
    /// The local chain.
    pub chain: ChainBrief,
    /// Event-stream clients connected now.
    pub event_clients: usize,
    /// The most event-stream clients served at once.
    pub event_capacity: usize,
    /// Dead letters seen on the bus, by rejecting role.
    pub deadletters: BTreeMap<String, u64>,
}

/// One ledger node's retained head, as the node published it.
#[derive(Serialize, ToSchema)]
pub struct NodeHead {
    /// Node id.
    pub node: String,
    /// Its head and state (shape defined by the node; shown as it is).
    #[schema(value_type = Object)]
    pub head: serde_json::Value,
}

/// The ledger nodes and heads seen on the bus.
#[derive(Serialize, ToSchema)]
pub struct Nodes {
    /// Each node's retained head (`ledger/node/{id}/head`).
    pub nodes: Vec<NodeHead>,
    /// The best head announced on `ledger/head`.
    #[schema(value_type = Option<Object>)]
    pub best_head: Option<serde_json::Value>,
    /// The local chain this service reads.
    pub local: ChainBrief,
}

fn brief(state: &WebState) -> ChainBrief {
    let s = state.chain.summary();
    ChainBrief {
        length: s.length,
        valid: s.verification.first_bad.is_none(),
        head: s.head.as_ref().map(|b| b.hash.to_hex()),
        source: s.source.clone(),
    }
}

/// Version, bus connection, chain length and validity, event clients.
#[utoipa::path(get, path = "/api/v1/status", tag = "service", responses((status = 200, body = ServiceStatus)))]
pub async fn status(State(state): State<WebState>) -> Json<ServiceStatus> {
    let connected = matches!(*state.link.borrow(), Link::Up { ready: true, .. });
    let capacity = state.config.max_sse_clients;
    Json(ServiceStatus {
        version: env!("CARGO_PKG_VERSION").to_string(),
        uptime_seconds: state.started.elapsed().as_secs_f64(),
        broker: state.broker.clone(),
        mqtt_connected: connected,
        chain: brief(&state),
        event_clients: capacity - state.sse_slots.available_permits(),
        event_capacity: capacity,
        deadletters: state.live.deadletters(),
    })
}

/// Puts the committing block's index on each window already on the chain.
fn with_commits(state: &WebState, mut view: CabinetView) -> CabinetView {
    for w in &mut view.windows {
        w.committed_in = state.chain.locate(&w.cabinet, w.window);
    }
    view
}

/// Every cabinet seen: status (loads, source, outbox depth), latest quadruplet and averages,
/// recent windows.
#[utoipa::path(get, path = "/api/v1/cabinets", tag = "measurements", responses((status = 200, body = Vec<CabinetView>)))]
pub async fn cabinets(State(state): State<WebState>) -> Json<Vec<CabinetView>> {
    let views = state.live.cabinets();
    Json(views.into_iter().map(|v| with_commits(&state, v)).collect())
}

/// One cabinet, with its recent quadruplets (for plots).
#[utoipa::path(
    get,
    path = "/api/v1/cabinets/{cabinet}",
    tag = "measurements",
    params(("cabinet" = String, Path, description = "Cabinet id")),
    responses(
        (status = 200, body = CabinetView),
        (status = 404, description = "No such cabinet seen on the bus", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn cabinet(
    State(state): State<WebState>,
    cabinet: Result<Path<String>, PathRejection>,
) -> Result<Json<CabinetView>, Problem> {
    let Path(id) = cabinet.map_err(|e| Problem::bad_request("bad_path", e.body_text()))?;
    match state.live.cabinet(&id) {
        Some(v) => Ok(Json(with_commits(&state, v))),
        None => Err(Problem::not_found(
            "unknown_cabinet",
            format!("no cabinet {id:?} has been seen on the bus"),
        )),
    }
}

/// Every agent's retained status (online or offline, role, version).
#[utoipa::path(get, path = "/api/v1/agents", tag = "network", responses((status = 200, body = Vec<AgentStatus>)))]
pub async fn agents(State(state): State<WebState>) -> Json<Vec<AgentStatus>> {
    Json(state.live.agents())
}

/// The ledger nodes: each node's head and state, the best head, the local chain.
#[utoipa::path(get, path = "/api/v1/nodes", tag = "network", responses((status = 200, body = Nodes)))]
pub async fn nodes(State(state): State<WebState>) -> Json<Nodes> {
    let (nodes, best_head) = state.live.nodes();
    Json(Nodes {
        nodes: nodes
            .into_iter()
            .map(|(node, head)| NodeHead { node, head })
            .collect(),
        best_head,
        local: brief(&state),
    })
}

/// Server-sent events: `quad`, `average`, `window`, `cabinet`, `agent`, `node`, `head`, `block`,
/// `deadletter`, each `data:` one JSON object (the bus payload, or the block as stored).
///
/// On connect, the latest event of every kind and key is replayed; a client sending
/// `Last-Event-ID` gets exactly the events it missed instead, while the server still holds
/// them. A client too slow to keep up is disconnected (its browser reconnects and resumes).
#[utoipa::path(
    get,
    path = "/api/v1/events",
    tag = "measurements",
    params(("Last-Event-ID" = Option<String>, Header, description = "The id of the last event received")),
    responses(
        (status = 200, description = "text/event-stream", content_type = "text/event-stream", body = String),
        (status = 503, description = "Too many event streams open", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn events(State(state): State<WebState>, headers: HeaderMap) -> Response {
    events::respond(&state, events::last_event_id(&headers))
}
