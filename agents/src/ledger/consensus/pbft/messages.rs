//! PBFT messages: their JSON bodies (topics.md, "PBFT"), parsed strictly, and their sign-bytes.
//!
//! Every body is an object with a `type`, the `view` and the `height` it is about. The node
//! engine wraps a body in the envelope `{"chain","from","body","sig"}` and signs
//! `"WPB1" || chain id || canonical_json(body)`; votes inside certificates are the same
//! signatures, so a certificate is checked with [`sign_bytes`] of the vote's body alone.

use serde_json::{Map, Value};

use crate::ledger::block::Block;
use crate::ledger::consensus::message_sign_bytes;
use crate::ledger::encoding::{Hash32, PublicKey, SignatureBytes};
use crate::ledger::keys::verify;

/// The 4-byte domain tag of every PBFT signature.
pub const TAG: [u8; 4] = *b"WPB1";

/// The sign-bytes of a message body: `"WPB1" || chain id (32 bytes) || canonical_json(body)`.
pub fn sign_bytes(chain: &Hash32, body: &Map<String, Value>) -> Vec<u8> {
    message_sign_bytes(TAG, chain, body)
}

/// One validator's signature inside a certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vote {
    /// The signer.
    pub key: PublicKey,
    /// Its signature over the vote body's sign-bytes.
    pub sig: SignatureBytes,
}

impl Vote {
    /// `{"key":…,"sig":…}`.
    pub fn to_value(&self) -> Value {
        let mut m = Map::new();
        m.insert("key".into(), self.key.to_hex().into());
        m.insert("sig".into(), self.sig.to_hex().into());
        Value::Object(m)
    }

    /// Reads `{"key":…,"sig":…}` (nothing else).
    pub fn parse(value: &Value) -> Result<Vote, String> {
        let obj = object(value, "vote")?;
        only(obj, &["key", "sig"], "vote")?;
        Ok(Vote {
            key: PublicKey::from_hex(string(obj, "key")?).map_err(|e| format!("key: {e}"))?,
            sig: SignatureBytes::from_hex(string(obj, "sig")?).map_err(|e| format!("sig: {e}"))?,
        })
    }
}

/// Reads a list of votes (at most `max`).
pub fn parse_votes(value: &Value, max: usize) -> Result<Vec<Vote>, String> {
    let list = value.as_array().ok_or("votes are not an array")?;
    if list.len() > max {
        return Err(format!("{} votes, at most {max}", list.len()));
    }
    list.iter().map(Vote::parse).collect()
}

/// A message as the engine delivered it: signer (verified), body, signature.
#[derive(Debug, Clone, PartialEq)]
pub struct Signed {
    /// The signer.
    pub from: PublicKey,
    /// The body it signed.
    pub body: Map<String, Value>,
    /// The signature.
    pub sig: SignatureBytes,
}

impl Signed {
    /// Whether `sig` verifies for `from` over the body under `chain`.
    pub fn verifies(&self, chain: &Hash32) -> bool {
        verify(&self.from, &sign_bytes(chain, &self.body), &self.sig)
    }

    /// `{"from":…,"body":…,"sig":…}` (inside a NEW-VIEW).
    pub fn to_value(&self) -> Value {
        let mut m = Map::new();
        m.insert("from".into(), self.from.to_hex().into());
        m.insert("body".into(), Value::Object(self.body.clone()));
        m.insert("sig".into(), self.sig.to_hex().into());
        Value::Object(m)
    }

    /// Reads `{"from":…,"body":…,"sig":…}`.
    pub fn parse(value: &Value) -> Result<Signed, String> {
        let obj = object(value, "signed message")?;
        only(obj, &["from", "body", "sig"], "signed message")?;
        Ok(Signed {
            from: PublicKey::from_hex(string(obj, "from")?).map_err(|e| format!("from: {e}"))?,
            body: object(obj.get("body").unwrap_or(&Value::Null), "body")?.clone(),
            sig: SignatureBytes::from_hex(string(obj, "sig")?).map_err(|e| format!("sig: {e}"))?,
        })
    }
}

/// Which vote.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Phase {
    /// PREPARE: "I accept this proposal in this view".
    Prepare,
    /// COMMIT: "2f+1 prepared it; I commit it".
    Commit,
}

impl Phase {
    /// The `type` of its body.
    pub fn name(self) -> &'static str {
        match self {
            Phase::Prepare => "prepare",
            Phase::Commit => "commit",
        }
    }
}

/// The body of a PREPARE or COMMIT: `{"type","view","height","hash"}`.
pub fn vote_body(phase: Phase, view: u64, height: u64, hash: &Hash32) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("type".into(), phase.name().into());
    m.insert("view".into(), view.into());
    m.insert("height".into(), height.into());
    m.insert("hash".into(), hash.to_hex().into());
    m
}

/// A prepared certificate: the block and 2f+1 PREPARE signatures for it in `view`.
#[derive(Debug, Clone, PartialEq)]
pub struct Prepared {
    /// The view the prepares are for.
    pub view: u64,
    /// The prepared block (its hash is what was prepared).
    pub block: Block,
    /// Distinct validators' PREPARE signatures.
    pub prepares: Vec<Vote>,
}

impl Prepared {
    fn to_value(&self) -> Value {
        let mut m = Map::new();
        m.insert("view".into(), self.view.into());
        m.insert("block".into(), block_value(&self.block));
        m.insert(
            "prepares".into(),
            Value::Array(self.prepares.iter().map(Vote::to_value).collect()),
        );
        Value::Object(m)
    }

    fn parse(value: &Value, max_votes: usize) -> Result<Prepared, String> {
        let obj = object(value, "prepared")?;
        only(obj, &["view", "block", "prepares"], "prepared")?;
        Ok(Prepared {
            view: int(obj, "view")?,
            block: parse_block(obj.get("block"))?,
            prepares: parse_votes(obj.get("prepares").unwrap_or(&Value::Null), max_votes)?,
        })
    }
}

/// A PBFT message.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// The primary of `view` proposes `block` for `height`.
    PrePrepare {
        /// The view.
        view: u64,
        /// The height (= block index).
        height: u64,
        /// The proposal.
        block: Box<Block>,
    },
    /// A PREPARE or COMMIT for `hash`.
    Vote {
        /// Which.
        phase: Phase,
        /// The view.
        view: u64,
        /// The height.
        height: u64,
        /// The block hash voted for.
        hash: Hash32,
    },
    /// "I give up on the views before `view` at `height`", with the highest prepared
    /// certificate the sender holds for that height.
    ViewChange {
        /// The view it moves to.
        view: u64,
        /// The height.
        height: u64,
        /// Its highest prepared certificate at this height, if any.
        prepared: Option<Box<Prepared>>,
    },
    /// The primary of `view` starts it: 2f+1 VIEW-CHANGE messages and the block they force
    /// (the highest prepared one), or none when none was prepared.
    NewView {
        /// The new view.
        view: u64,
        /// The height.
        height: u64,
        /// The signed VIEW-CHANGE messages for (`view`, `height`).
        changes: Vec<Signed>,
        /// The highest prepared block among them, re-proposed (absent if none).
        block: Option<Box<Block>>,
    },
}

/// Most votes or VIEW-CHANGE messages one message may carry (far above any N).
pub const MAX_ITEMS: usize = 256;

impl Message {
    /// The view the message is about.
    pub fn view(&self) -> u64 {
        match self {
            Message::PrePrepare { view, .. }
            | Message::Vote { view, .. }
            | Message::ViewChange { view, .. }
            | Message::NewView { view, .. } => *view,
        }
    }

    /// The height the message is about.
    pub fn height(&self) -> u64 {
        match self {
            Message::PrePrepare { height, .. }
            | Message::Vote { height, .. }
            | Message::ViewChange { height, .. }
            | Message::NewView { height, .. } => *height,
        }
    }

    /// The body to sign and send.
    pub fn body(&self) -> Map<String, Value> {
        match self {
            Message::Vote {
                phase,
                view,
                height,
                hash,
            } => vote_body(*phase, *view, *height, hash),
            Message::PrePrepare {
                view,
                height,
                block,
            } => {
                let mut m = head("pre-prepare", *view, *height);
                m.insert("block".into(), block_value(block));
                m
            }
            Message::ViewChange {
                view,
                height,
                prepared,
            } => {
                let mut m = head("view-change", *view, *height);
                m.insert(
                    "prepared".into(),
                    prepared.as_ref().map_or(Value::Null, |p| p.to_value()),
                );
                m
            }
            Message::NewView {
                view,
                height,
                changes,
                block,
            } => {
                let mut m = head("new-view", *view, *height);
                m.insert(
                    "changes".into(),
                    Value::Array(changes.iter().map(Signed::to_value).collect()),
                );
                m.insert(
                    "block".into(),
                    block.as_ref().map_or(Value::Null, |b| block_value(b)),
                );
                m
            }
        }
    }

    /// Reads a body strictly: known `type`, exactly its keys, integers, lowercase hex.
    pub fn parse(body: &Map<String, Value>) -> Result<Message, String> {
        let kind = string(body, "type")?;
        let keys: &[&str] = match kind {
            "pre-prepare" => &["type", "view", "height", "block"],
            "prepare" | "commit" => &["type", "view", "height", "hash"],
            "view-change" => &["type", "view", "height", "prepared"],
            "new-view" => &["type", "view", "height", "changes", "block"],
            other => return Err(format!("unknown message type {other:?}")),
        };
        only(body, keys, kind)?;
        let (view, height) = (int(body, "view")?, int(body, "height")?);
        Ok(match kind {
            "pre-prepare" => Message::PrePrepare {
                view,
                height,
                block: Box::new(parse_block(body.get("block"))?),
            },
            "prepare" | "commit" => Message::Vote {
                phase: if kind == "prepare" {
                    Phase::Prepare
                } else {
                    Phase::Commit
                },
                view,
                height,
                hash: Hash32::from_hex(string(body, "hash")?).map_err(|e| format!("hash: {e}"))?,
            },
            "view-change" => Message::ViewChange {
                view,
                height,
                prepared: match body.get("prepared") {
                    Some(Value::Null) => None,
                    Some(v) => Some(Box::new(Prepared::parse(v, MAX_ITEMS)?)),
                    None => return Err("prepared is missing".into()),
                },
            },
            _ => Message::NewView {
                view,
                height,
                changes: body
                    .get("changes")
                    .and_then(Value::as_array)
                    .filter(|l| l.len() <= MAX_ITEMS)
                    .ok_or("changes is not an array of at most 256")?
                    .iter()
                    .map(Signed::parse)
                    .collect::<Result<_, _>>()?,
                block: match body.get("block") {
                    Some(Value::Null) => None,
                    other => Some(Box::new(parse_block(other)?)),
                },
            },
        })
    }
}

fn head(kind: &str, view: u64, height: u64) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("type".into(), kind.into());
    m.insert("view".into(), view.into());
    m.insert("height".into(), height.into());
    m
}

/// A block as a JSON value (its chain-file form).
pub fn block_value(block: &Block) -> Value {
    serde_json::to_value(block).unwrap_or(Value::Null)
}

fn parse_block(value: Option<&Value>) -> Result<Block, String> {
    let value = value.ok_or("block is missing")?;
    serde_json::from_value(value.clone()).map_err(|e| format!("block: {e}"))
}

fn object<'a>(value: &'a Value, what: &str) -> Result<&'a Map<String, Value>, String> {
    value
        .as_object()
        .ok_or_else(|| format!("{what} is not an object"))
}

fn only(obj: &Map<String, Value>, keys: &[&str], what: &str) -> Result<(), String> {
    if let Some(k) = obj.keys().find(|k| !keys.contains(&k.as_str())) {
        return Err(format!("{k} is not a key of {what}"));
    }
    match keys.iter().find(|k| !obj.contains_key(**k)) {
        Some(k) => Err(format!("{what}: {k} is missing")),
        None => Ok(()),
    }
}

fn string<'a>(obj: &'a Map<String, Value>, key: &str) -> Result<&'a str, String> {
    obj.get(key)
        .and_then(Value::as_str)
        .ok_or_else(|| format!("{key} is not a string"))
}

fn int(obj: &Map<String, Value>, key: &str) -> Result<u64, String> {
    obj.get(key)
        .filter(|v| !v.is_f64())
        .and_then(Value::as_u64)
        .ok_or_else(|| format!("{key} is not a non-negative integer"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vote_bodies_round_trip_and_sign_bytes_are_canonical() {
        let hash = Hash32([7; 32]);
        let msg = Message::Vote {
            phase: Phase::Commit,
            view: 3,
            height: 9,
            hash,
        };
        let body = msg.body();
        assert_eq!(Message::parse(&body).expect("parses"), msg);
        let bytes = sign_bytes(&Hash32([1; 32]), &body);
        assert_eq!(&bytes[..4], b"WPB1");
        assert_eq!(&bytes[4..36], &[1; 32]);
        let json = format!(
            r#"{{"hash":"{}","height":9,"type":"commit","view":3}}"#,
            hash.to_hex()
        );
        assert_eq!(&bytes[36..], json.as_bytes());
    }

    #[test]
    fn bodies_with_extra_or_missing_keys_or_floats_are_refused() {
        let mut body = vote_body(Phase::Prepare, 1, 2, &Hash32::ZERO);
        body.insert("extra".into(), 1.into());
        assert!(Message::parse(&body).is_err());
        let mut body = vote_body(Phase::Prepare, 1, 2, &Hash32::ZERO);
        body.remove("hash");
        assert!(Message::parse(&body).is_err());
        let mut body = vote_body(Phase::Prepare, 1, 2, &Hash32::ZERO);
        body.insert("view".into(), serde_json::json!(1.0));
        assert!(Message::parse(&body).is_err());
        let mut body = vote_body(Phase::Prepare, 1, 2, &Hash32::ZERO);
        body.insert("type".into(), "vote".into());
        assert!(Message::parse(&body)
            .unwrap_err()
            .contains("unknown message type"));
    }
}
