//! The ledger messages nodes (and cabinets' light clients) exchange besides blocks: heads,
//! headers and sync. Every one carries the chain id; a message for another genesis is refused.
//! Field names are the contract in `topics.md` ("Ledger messages").

use serde::{Deserialize, Serialize};

use crate::ledger::{Block, Hash32, Header, Work};
use crate::messages::{MessageError, Validate};

/// Most headers one sync reply may carry.
pub const MAX_HEADERS_PER_REPLY: u32 = 512;
/// Most blocks one sync request may ask for.
pub const MAX_BLOCKS_PER_REQUEST: usize = 64;
/// Most hashes a locator may hold.
pub const MAX_LOCATOR: usize = 64;

/// Cumulative work as a decimal string (it does not fit every JSON reader's numbers).
pub mod work_text {
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::ledger::Work;

    /// Writes the work in decimal.
    pub fn serialize<S: Serializer>(work: &Work, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(work)
    }

    /// Reads decimal digits only.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Work, D::Error> {
        let text = String::deserialize(d)?;
        if text.is_empty() || text.len() > 39 || !text.bytes().all(|b| b.is_ascii_digit()) {
            return Err(serde::de::Error::custom("work must be decimal digits"));
        }
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// A node's head: on `ledger/head` (retained, the best by the rules) and on
/// `ledger/node/{id}/head` (retained, each node's own, with its state and peers).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeadMessage {
    /// Chain id (genesis hash).
    pub chain: Hash32,
    /// Id of the node that published it.
    pub node: String,
    /// The head block's header.
    pub header: Header,
    /// Cumulative work of the chain up to it, decimal.
    #[serde(with = "work_text")]
    pub work: Work,
    /// `synced`, `syncing` or `mining` (node heads only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// Ids of the nodes it heard recently (node heads only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub peers: Vec<String>,
    /// A random number drawn by the node process at start (node heads only): two processes
    /// with one id tell each other apart by it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<u64>,
    /// When it was published.
    pub ts: String,
}

impl Validate for HeadMessage {
    fn validate(&self) -> Result<(), MessageError> {
        if !crate::topics::is_valid_id(&self.node) {
            return Err(MessageError::Invalid {
                field: "node",
                reason: "not an agent id".into(),
            });
        }
        if self.peers.len() > 256 {
            return Err(MessageError::Invalid {
                field: "peers",
                reason: "more than 256".into(),
            });
        }
        Ok(())
    }
}

/// One block's header on `ledger/header`, the stream light clients follow.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderMessage {
    /// Chain id.
    pub chain: Hash32,
    /// The header.
    pub header: Header,
}

impl Validate for HeaderMessage {
    fn validate(&self) -> Result<(), MessageError> {
        Ok(())
    }
}

/// What a sync request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SyncKind {
    /// Main-chain headers after the highest locator hash the responder has.
    Headers,
    /// The blocks with these hashes.
    Blocks,
}

/// A request on `ledger/sync/request`; the node `to` answers on `ledger/sync/reply/{from}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncRequest {
    /// Chain id.
    pub chain: Hash32,
    /// Who asks (its replies topic).
    pub from: String,
    /// Who should answer (any node may serve; one is asked at a time).
    pub to: String,
    /// Request number, echoed in the reply.
    pub id: u64,
    /// Headers or blocks.
    pub kind: SyncKind,
    /// Headers: hashes of the asker's main chain, best first, genesis last.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub locator: Vec<Hash32>,
    /// Headers: most wanted (at most 512).
    #[serde(default)]
    pub max: u32,
    /// Blocks: which ones (at most 64).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hashes: Vec<Hash32>,
}

impl Validate for SyncRequest {
    fn validate(&self) -> Result<(), MessageError> {
        let bad = |field, reason: &str| {
            Err(MessageError::Invalid {
                field,
                reason: reason.into(),
            })
        };
        if !crate::topics::is_valid_id(&self.from) || !crate::topics::is_valid_id(&self.to) {
            return bad("from", "not an agent id");
        }
        if self.locator.len() > MAX_LOCATOR {
            return bad("locator", "more than 64 hashes");
        }
        if self.hashes.len() > MAX_BLOCKS_PER_REQUEST {
            return bad("hashes", "more than 64 hashes");
        }
        Ok(())
    }
}

/// The answer to a [`SyncRequest`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncReply {
    /// Chain id.
    pub chain: Hash32,
    /// Who answers.
    pub from: String,
    /// The request's number.
    pub id: u64,
    /// The responder's head.
    pub tip: Header,
    /// The responder's cumulative work.
    #[serde(with = "work_text")]
    pub work: Work,
    /// Headers, in chain order (kind `headers`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<Header>,
    /// Blocks, in the order asked (kind `blocks`); unknown ones are left out.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub blocks: Vec<Block>,
    /// Whether more headers follow the last one on the responder's main chain.
    #[serde(default)]
    pub more: bool,
}

impl Validate for SyncReply {
    fn validate(&self) -> Result<(), MessageError> {
        if !crate::topics::is_valid_id(&self.from) {
            return Err(MessageError::Invalid {
                field: "from",
                reason: "not an agent id".into(),
            });
        }
        if self.headers.len() > MAX_HEADERS_PER_REPLY as usize {
            return Err(MessageError::Invalid {
                field: "headers",
                reason: "more than 512".into(),
            });
        }
        if self.blocks.len() > MAX_BLOCKS_PER_REQUEST {
            return Err(MessageError::Invalid {
                field: "blocks",
                reason: "more than 64".into(),
            });
        }
        Ok(())
    }
}

/// A signed consensus message on `{root}/ledger/{mode}`: `sig` is the ed25519 signature by
/// `from` over [`message_sign_bytes`](crate::ledger::consensus::message_sign_bytes) (the
/// mode's tag, the chain id, the canonical JSON of `body`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModeMessage {
    /// Chain id.
    pub chain: Hash32,
    /// The signer's public key.
    pub from: crate::ledger::PublicKey,
    /// The mode's message.
    pub body: serde_json::Map<String, serde_json::Value>,
    /// The signature.
    pub sig: crate::ledger::SignatureBytes,
}

impl ModeMessage {
    /// `body` signed by `key` for `chain` under `tag`.
    pub fn sign(
        key: &crate::ledger::NodeKey,
        tag: [u8; 4],
        chain: Hash32,
        body: serde_json::Map<String, serde_json::Value>,
    ) -> ModeMessage {
        let sig = key.sign(&crate::ledger::consensus::message_sign_bytes(
            tag, &chain, &body,
        ));
        ModeMessage {
            chain,
            from: key.public(),
            body,
            sig,
        }
    }

    /// Whether `sig` is `from`'s strict signature of this body for `chain` under `tag`.
    pub fn verifies(&self, tag: [u8; 4]) -> bool {
        crate::ledger::keys::verify(
            &self.from,
            &crate::ledger::consensus::message_sign_bytes(tag, &self.chain, &self.body),
            &self.sig,
        )
    }
}

impl Validate for ModeMessage {
    fn validate(&self) -> Result<(), MessageError> {
        Ok(())
    }
}
