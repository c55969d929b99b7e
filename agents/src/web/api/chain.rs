//! `/api/v1/chain/…` and `/api/v1/records/…`: blocks as stored, pages, verification, and the
//! proof that a window is on the chain.

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use serde_json::value::RawValue;

use super::schema::{
    BadBlockView, BlockHead, BlockJson, BlockPage, BlockRef, ChainHead, PageQuery, RecordKey,
    RecordProof, StoredRecords, VerifyReport,
};

use super::json_bytes;
use crate::ledger::Hash32;
use crate::topics::is_valid_id;
use crate::web::chain::ChainError;
use crate::web::problem::Problem;
use crate::web::WebState;

/// Runs a chain read on the blocking pool.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ChainError> + Send + 'static,
) -> Result<T, Problem> {
    match tokio::task::spawn_blocking(f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(Problem::internal(e.to_string())),
        Err(e) => Err(Problem::internal(format!("chain read failed: {e}"))),
    }
}

fn path_problem(e: PathRejection) -> Problem {
    Problem::bad_request("bad_path", e.body_text())
}

/// The latest block.
#[utoipa::path(
    get,
    path = "/api/v1/chain/head",
    tag = "chain",
    responses(
        (status = 200, body = ChainHead),
        (status = 404, description = "The chain has no block yet", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn head(State(state): State<WebState>) -> Response {
    let summary = state.chain.summary();
    let Some(block) = summary.head.clone() else {
        return Problem::not_found("empty_chain", "the chain has no block yet").into_response();
    };
    let body = summary.head_body.get_or_init(|| {
        let head = ChainHead {
            length: summary.length,
            block: BlockJson(block),
        };
        Bytes::from(serde_json::to_vec(&head).unwrap_or_default())
    });
    json_bytes(body.clone())
}

/// A page of blocks: `?from=&limit=`, with a link to the next page.
#[utoipa::path(
    get,
    path = "/api/v1/chain/blocks",
    tag = "chain",
    params(PageQuery),
    responses(
        (status = 200, body = BlockPage),
        (status = 400, description = "`limit` out of 1..=100 or not a number", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn blocks(
    State(state): State<WebState>,
    query: Result<Query<PageQuery>, QueryRejection>,
) -> Result<Json<BlockPage>, Problem> {
    let Query(q) = query.map_err(|e| Problem::bad_request("bad_query", e.body_text()))?;
    let max = state.config.max_page as u64;
    let limit = q.limit.unwrap_or(20.min(max));
    if limit == 0 || limit > max {
        return Err(Problem::bad_request(
            "limit_too_large",
            format!("limit must be 1..={max}, not {limit}"),
        ));
    }
    let length = state.chain.summary().length;
    let from = q.from.unwrap_or(length.saturating_sub(limit));
    let chain = state.chain.clone();
    let page = blocking(move || chain.page(from, limit as usize)).await?;
    let end = from.saturating_add(page.len() as u64);
    let next = (!page.is_empty() && end < length)
        .then(|| format!("/api/v1/chain/blocks?from={end}&limit={limit}"));
    Ok(Json(BlockPage {
        length,
        from,
        blocks: page.into_iter().map(BlockJson).collect(),
        next,
    }))
}

/// One block by index.
#[utoipa::path(
    get,
    path = "/api/v1/chain/blocks/{index}",
    tag = "chain",
    params(("index" = u64, Path, description = "Block index, 0 for genesis")),
    responses(
        (status = 200, body = BlockJson),
        (status = 400, description = "Not a block index", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No block at that index", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn block(
    State(state): State<WebState>,
    index: Result<Path<String>, PathRejection>,
) -> Result<Json<BlockJson>, Problem> {
    let Path(text) = index.map_err(path_problem)?;
    let index: u64 = text.parse().map_err(|_| {
        Problem::bad_request(
            "bad_index",
            format!("{text:?} is not a block index (0, 1, 2, …)"),
        )
    })?;
    let chain = state.chain.clone();
    match blocking(move || chain.block(index)).await? {
        Some(b) => Ok(Json(BlockJson(b))),
        None => Err(Problem::not_found(
            "unknown_block",
            format!(
                "no block {index}: the chain has {} blocks",
                state.chain.summary().length
            ),
        )),
    }
}

/// One block by hash.
#[utoipa::path(
    get,
    path = "/api/v1/chain/blocks/by-hash/{hash}",
    tag = "chain",
    params(("hash" = String, Path, description = "64 hex digits")),
    responses(
        (status = 200, body = BlockJson),
        (status = 400, description = "Not 64 hex digits", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No block with that hash", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn block_by_hash(
    State(state): State<WebState>,
    hash: Result<Path<String>, PathRejection>,
) -> Result<Json<BlockJson>, Problem> {
    let Path(text) = hash.map_err(path_problem)?;
    let hash = Hash32::from_hex(&text.to_ascii_lowercase()).map_err(|_| {
        Problem::bad_request(
            "bad_hash",
            format!("{text:?} is not a block hash (64 hex digits)"),
        )
    })?;
    let chain = state.chain.clone();
    match blocking(move || chain.block_by_hash(&hash)).await? {
        Some(b) => Ok(Json(BlockJson(b))),
        None => Err(Problem::not_found(
            "unknown_block",
            format!("no block has hash {hash}"),
        )),
    }
}

/// Whether the local chain verifies, and the first block that does not.
#[utoipa::path(
    get,
    path = "/api/v1/chain/verify",
    tag = "chain",
    responses((status = 200, body = VerifyReport))
)]
pub async fn verify(State(state): State<WebState>) -> Json<VerifyReport> {
    let s = state.chain.summary();
    Json(VerifyReport {
        valid: s.verification.first_bad.is_none(),
        length: s.length,
        records: s.records,
        head: s.head.as_ref().map(|b| b.hash.to_hex()),
        first_bad: s.verification.first_bad.as_ref().map(|b| BadBlockView {
            index: b.index,
            line: b.line,
            reason: b.reason.clone(),
        }),
        source: s.source.clone(),
    })
}

/// The block holding a window, the record and its position: the window's proof.
#[utoipa::path(
    get,
    path = "/api/v1/records/{cabinet}/{window}",
    tag = "chain",
    params(
        ("cabinet" = String, Path, description = "Cabinet id"),
        ("window" = u64, Path, description = "Window id"),
    ),
    responses(
        (status = 200, body = RecordProof),
        (status = 400, description = "Bad cabinet id or window id", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "The window is not on the chain (yet)", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn record(
    State(state): State<WebState>,
    params: Result<Path<(String, String)>, PathRejection>,
) -> Result<Json<RecordProof>, Problem> {
    let Path((cabinet, window_text)) = params.map_err(path_problem)?;
    if !is_valid_id(&cabinet) {
        return Err(Problem::bad_request(
            "bad_cabinet",
            format!("{cabinet:?} is not a cabinet id (1 to 64 of A-Z a-z 0-9 - _)"),
        ));
    }
    let window: u64 = window_text.parse().map_err(|_| {
        Problem::bad_request(
            "bad_window",
            format!("{window_text:?} is not a window id (0, 1, 2, …)"),
        )
    })?;
    let missing = || {
        Problem::not_found(
            "unknown_record",
            format!("window {window} of cabinet {cabinet} is not on the chain (yet)"),
        )
    };
    let index = state.chain.locate(&cabinet, window).ok_or_else(missing)?;
    let chain = state.chain.clone();
    let block = blocking(move || chain.block(index))
        .await?
        .ok_or_else(missing)?;
    let stored: StoredRecords<'_> = serde_json::from_str(block.raw.get())
        .map_err(|e| Problem::internal(format!("block {index} has no records list: {e}")))?;
    let (position, record) = stored
        .data
        .records
        .iter()
        .enumerate()
        .find(|(_, r)| {
            serde_json::from_str::<RecordKey>(r.get())
                .is_ok_and(|k| k.cabinet == cabinet && k.window == window)
        })
        .ok_or_else(missing)?;
    let record: Box<RawValue> = (*record).to_owned();
    let head: BlockHead = serde_json::from_str(block.raw.get()).unwrap_or_default();
    let summary = state.chain.summary();
    let head_index = summary.head.as_ref().map_or(index, |h| h.index);
    let confirmations = head_index.saturating_sub(index);
    let is_final = crate::ledger::Block::from_json(block.raw.get())
        .is_ok_and(|b| state.chain.is_final(&b.header(), confirmations));
    Ok(Json(RecordProof {
        block: BlockRef {
            index,
            hash: block.hash.to_hex(),
            timestamp: head.timestamp,
            producer: head.producer,
        },
        position,
        record,
        confirmations,
        is_final,
        chain_valid: summary.verification.first_bad.is_none(),
        cabinet,
        window,
    }))
}
