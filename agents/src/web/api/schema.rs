//! The response shapes of the chain endpoints, and the OpenAPI schema of a stored block.

use std::borrow::Cow;
use std::sync::Arc;

use serde::{Deserialize, Serialize, Serializer};
use serde_json::value::RawValue;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::openapi::RefOr;
use utoipa::{IntoParams, PartialSchema, ToSchema};

use crate::web::chain::StoredBlock;

/// A block exactly as stored; fields added by later ledger versions pass through.
#[derive(Debug, Clone)]
pub struct BlockJson(pub Arc<StoredBlock>);

impl Serialize for BlockJson {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.raw.serialize(s)
    }
}

fn hex64() -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some("^[0-9a-f]{64}$"))
}

impl PartialSchema for BlockJson {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::Object)
            .description(Some(
                "A block exactly as stored and published (see topics.md, \"Ledger encoding\"). \
                 Fields beyond those listed (e.g. `producer`, `signature` on signed chains) \
                 are passed through.",
            ))
            .property(
                "index",
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .minimum(Some(0)),
            )
            .property("hash", hex64())
            .property("previous_hash", hex64())
            .property("timestamp", ObjectBuilder::new().schema_type(Type::String))
            .property(
                "producer",
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .description(Some(
                        "Who made the block, on chains whose blocks are signed",
                    )),
            )
            .property(
                "data",
                ObjectBuilder::new().schema_type(Type::Object).property(
                    "records",
                    utoipa::openapi::schema::ArrayBuilder::new()
                        .items(ObjectBuilder::new().schema_type(Type::Object)),
                ),
            )
            .required("index")
            .required("hash")
            .required("previous_hash")
            .required("timestamp")
            .required("data")
            .into()
    }
}

impl ToSchema for BlockJson {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("Block")
    }
}

/// The head of the chain and its length.
#[derive(Serialize, ToSchema)]
pub struct ChainHead {
    /// Blocks in the chain, genesis included.
    pub length: u64,
    /// The last block.
    pub block: BlockJson,
}

/// One page of blocks, in index order.
#[derive(Serialize, ToSchema)]
pub struct BlockPage {
    /// Blocks in the chain.
    pub length: u64,
    /// Index of the first block of the page.
    pub from: u64,
    /// The blocks.
    pub blocks: Vec<BlockJson>,
    /// The next page, `null` on the last one.
    pub next: Option<String>,
}

/// Which blocks to list.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// First index; default: the latest `limit` blocks.
    pub from: Option<u64>,
    /// Blocks per page, 1..=100 (default 20).
    pub limit: Option<u64>,
}

/// The first block that fails verification.
#[derive(Serialize, ToSchema)]
pub struct BadBlockView {
    /// Its index.
    pub index: u64,
    /// Its 1-based line in the chain file.
    pub line: u64,
    /// The rule it breaks.
    pub reason: String,
}

/// The verification status of the local chain (every rule of `wattchain chain verify`).
#[derive(Serialize, ToSchema)]
pub struct VerifyReport {
    /// Every block verifies.
    pub valid: bool,
    /// Valid blocks (served); nothing after the first bad block is.
    pub length: u64,
    /// Records (committed windows) in the valid blocks.
    pub records: u64,
    /// Hash of the last valid block.
    pub head: Option<String>,
    /// The first bad block, if any.
    pub first_bad: Option<BadBlockView>,
    /// Where the chain is read from.
    pub source: String,
}

/// The block a record is in.
#[derive(Serialize, ToSchema)]
pub struct BlockRef {
    /// Its index.
    pub index: u64,
    /// Its hash.
    pub hash: String,
    /// Its timestamp.
    pub timestamp: Option<String>,
    /// Who made it, on chains whose blocks are signed.
    pub producer: Option<String>,
}

/// What someone holding a window's raw readings needs to prove them: the record (digests of
/// each quantity's samples), the block that holds it and how deep that block is.
#[derive(Serialize, ToSchema)]
pub struct RecordProof {
    /// Cabinet id.
    pub cabinet: String,
    /// Window id.
    pub window: u64,
    /// The block holding the record.
    pub block: BlockRef,
    /// The record's position in the block's records (the data hash covers them in order).
    pub position: usize,
    /// The record exactly as stored: `from`, `to`, `n`, `averages`, `digests`.
    #[schema(value_type = Object)]
    pub record: Box<RawValue>,
    /// Blocks on top of it.
    pub confirmations: u64,
    /// Whether the block is final by the genesis's consensus mode (under pow: k blocks of
    /// work on top), the point at which the cabinet releases the window from its outbox.
    #[serde(rename = "final")]
    pub is_final: bool,
    /// The chain verifies up to its head.
    pub chain_valid: bool,
}

/// A block's records, each kept as its stored text.
#[derive(Deserialize)]
pub(super) struct StoredRecords<'a> {
    #[serde(borrow)]
    pub(super) data: StoredData<'a>,
}

#[derive(Deserialize)]
pub(super) struct StoredData<'a> {
    #[serde(borrow)]
    pub(super) records: Vec<&'a RawValue>,
}

/// What identifies a record.
#[derive(Deserialize)]
pub(super) struct RecordKey {
    pub(super) cabinet: String,
    pub(super) window: u64,
}

/// The block fields a proof names, when the block has them.
#[derive(Deserialize, Default)]
pub(super) struct BlockHead {
    pub(super) timestamp: Option<String>,
    pub(super) producer: Option<String>,
}
