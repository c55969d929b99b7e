//! The genesis document: the rules a chain follows, its id (the SHA-256 of its canonical JSON)
//! and the genesis block derived from it. Nodes, cabinets and verifiers all load it; nothing in
//! a block overrides it.

use std::fmt::{self, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::block::{Block, BlockData, BlockTemplate, Header};
use super::consensus::{self, Consensus, ParamsError};
use super::encoding::{Hash32, PublicKey, SignatureBytes};
use super::timestamp::Timestamp;
use super::MAX_RECORDS_PER_BLOCK;

/// File name of the genesis document in a data directory.
pub const GENESIS_FILE: &str = "genesis.json";

/// The only `format` this code understands.
pub const FORMAT: u64 = 1;

/// Largest `finality_depth` a genesis may set.
pub const MAX_FINALITY_DEPTH: u64 = 1000;

/// Why a genesis document is refused.
#[derive(Debug, thiserror::Error)]
pub enum GenesisError {
    /// The file could not be read or written.
    #[error("genesis file {}: {cause}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error (in the message, not a separate source: it is shown once).
        cause: std::io::Error,
    },
    /// `genesis new` never overwrites a chain's rules.
    #[error("genesis file {} already exists; refusing to overwrite it", path.display())]
    Exists {
        /// The file.
        path: PathBuf,
    },
    /// The text is not one JSON object.
    #[error("not a JSON object: {0}")]
    Json(String),
    /// A number that is not an integer (floats are refused everywhere in a genesis).
    #[error("{0}: only integers are allowed, not floats")]
    Float(String),
    /// A top-level key this code does not know: a node must not follow rules it cannot check.
    #[error("unknown key {0:?}: this wattchain does not know that rule")]
    UnknownKey(String),
    /// A required key is absent.
    #[error("{0} is missing")]
    Missing(&'static str),
    /// A value outside its rule.
    #[error("{key}: {reason}")]
    BadValue {
        /// The key.
        key: &'static str,
        /// What is wrong, with the allowed range.
        reason: String,
    },
    /// The `consensus` object is refused by its mode.
    #[error(transparent)]
    Consensus(#[from] ParamsError),
    /// Loaded from a file: which one, and why.
    #[error("genesis file {}: {error}", path.display())]
    InFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with its content.
        error: Box<GenesisError>,
    },
}

/// The parameters `wattchain genesis new` takes.
#[derive(Debug, Clone)]
pub struct GenesisSpec {
    /// Display name (hashed into the id).
    pub name: String,
    /// The genesis block's timestamp.
    pub created: Timestamp,
    /// The mode's `consensus` object, e.g. `{"mode":"pow","difficulty":16}`.
    pub consensus: Map<String, Value>,
    /// Blocks on top that make a block final.
    pub finality_depth: u64,
    /// Most records in one block.
    pub max_records_per_block: usize,
}

impl GenesisSpec {
    /// A proof-of-work chain at `difficulty` with the other defaults (name `wattchain`,
    /// created now, k = [`DEFAULT_FINALITY_DEPTH`], 256 records per block).
    pub fn pow(difficulty: u32) -> GenesisSpec {
        let mut consensus = Map::new();
        consensus.insert("mode".into(), "pow".into());
        consensus.insert("difficulty".into(), difficulty.into());
        GenesisSpec {
            name: "wattchain".into(),
            created: Timestamp::now(),
            consensus,
            finality_depth: DEFAULT_FINALITY_DEPTH,
            max_records_per_block: MAX_RECORDS_PER_BLOCK,
        }
    }
}

/// Blocks on top that make a block final unless the genesis says otherwise.
pub const DEFAULT_FINALITY_DEPTH: u64 = 6;

/// A validated genesis document.
#[derive(Clone)]
pub struct Genesis {
    /// Display name.
    pub name: String,
    /// The genesis block's timestamp.
    pub created: Timestamp,
    /// The consensus mode and its parameters.
    pub consensus: Arc<dyn Consensus>,
    /// Blocks on top that make a block final (pow, pos).
    pub finality_depth: u64,
    /// Most records in one block.
    pub max_records_per_block: usize,
    id: Hash32,
    value: Value,
}

impl fmt::Debug for Genesis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Genesis({} {})",
            self.id.short(),
            canonical_json(&self.value)
        )
    }
}

fn int(
    value: &Value,
    key: &'static str,
    range: std::ops::RangeInclusive<u64>,
) -> Result<u64, GenesisError> {
    value
        .as_u64()
        .filter(|v| range.contains(v))
        .ok_or_else(|| GenesisError::BadValue {
            key,
            reason: format!(
                "{value} is not an integer {}..={}",
                range.start(),
                range.end()
            ),
        })
}

/// Refuses floats anywhere in the document, naming where.
fn refuse_floats(value: &Value, at: &str) -> Result<(), GenesisError> {
    match value {
        Value::Number(n) if n.is_f64() => Err(GenesisError::Float(at.to_owned())),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .try_for_each(|(i, v)| refuse_floats(v, &format!("{at}[{i}]"))),
        Value::Object(map) => map.iter().try_for_each(|(k, v)| {
            let path = if at.is_empty() {
                k.clone()
            } else {
                format!("{at}.{k}")
            };
            refuse_floats(v, &path)
        }),
        _ => Ok(()),
    }
}

impl Genesis {
    /// Validates a parsed document.
    pub fn from_value(value: Value) -> Result<Genesis, GenesisError> {
        refuse_floats(&value, "")?;
        let Value::Object(map) = &value else {
            return Err(GenesisError::Json("the document is not an object".into()));
        };
        const KEYS: [&str; 6] = [
            "format",
            "name",
            "created",
            "consensus",
            "finality_depth",
            "max_records_per_block",
        ];
        if let Some(key) = map.keys().find(|k| !KEYS.contains(&k.as_str())) {
            return Err(GenesisError::UnknownKey(key.clone()));
        }
        let get = |key: &'static str| map.get(key).ok_or(GenesisError::Missing(key));
        int(get("format")?, "format", FORMAT..=FORMAT)?;
        let name = match get("name")? {
            Value::String(s) if is_valid_name(s) => s.clone(),
            other => {
                return Err(GenesisError::BadValue {
                    key: "name",
                    reason: format!("{other} is not 1..=64 characters of A-Z a-z 0-9 . _ -"),
                })
            }
        };
        let created = match get("created")? {
            Value::String(s) => Timestamp::parse(s).map_err(|e| GenesisError::BadValue {
                key: "created",
                reason: e.to_string(),
            })?,
            other => {
                return Err(GenesisError::BadValue {
                    key: "created",
                    reason: format!("{other} is not a timestamp string"),
                })
            }
        };
        let finality_depth = int(
            get("finality_depth")?,
            "finality_depth",
            1..=MAX_FINALITY_DEPTH,
        )?;
        let max_records = int(
            get("max_records_per_block")?,
            "max_records_per_block",
            1..=MAX_RECORDS_PER_BLOCK as u64,
        )?;
        let Value::Object(params) = get("consensus")? else {
            return Err(GenesisError::BadValue {
                key: "consensus",
                reason: "not an object".into(),
            });
        };
        let id = Hash32(Sha256::digest(canonical_json(&value).as_bytes()).into());
        let consensus = consensus::from_params(params, finality_depth, id)?;
        Ok(Genesis {
            name,
            created,
            consensus,
            finality_depth,
            max_records_per_block: max_records as usize,
            id,
            value,
        })
    }

    /// Parses and validates genesis JSON text.
    pub fn parse(text: &str) -> Result<Genesis, GenesisError> {
        let value: Value =
            serde_json::from_str(text).map_err(|e| GenesisError::Json(e.to_string()))?;
        Genesis::from_value(value)
    }

    /// A genesis from its parameters (what `genesis new` writes).
    pub fn new(spec: GenesisSpec) -> Result<Genesis, GenesisError> {
        let mut map = Map::new();
        map.insert("format".into(), FORMAT.into());
        map.insert("name".into(), spec.name.into());
        map.insert("created".into(), spec.created.to_string().into());
        map.insert("consensus".into(), Value::Object(spec.consensus));
        map.insert("finality_depth".into(), spec.finality_depth.into());
        map.insert(
            "max_records_per_block".into(),
            (spec.max_records_per_block as u64).into(),
        );
        Genesis::from_value(Value::Object(map))
    }

    /// Reads and validates `path`.
    pub fn load(path: &Path) -> Result<Genesis, GenesisError> {
        let text = std::fs::read_to_string(path).map_err(|source| GenesisError::Io {
            path: path.to_path_buf(),
            cause: source,
        })?;
        Genesis::parse(&text).map_err(|error| GenesisError::InFile {
            path: path.to_path_buf(),
            error: Box::new(error),
        })
    }

    /// Writes the document to a new file (never overwrites), durably.
    pub fn write_new(&self, path: &Path) -> Result<(), GenesisError> {
        use std::io::Write;
        let io = |source| GenesisError::Io {
            path: path.to_path_buf(),
            cause: source,
        };
        if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
            .map_err(|source| match source.kind() {
                std::io::ErrorKind::AlreadyExists => GenesisError::Exists {
                    path: path.to_path_buf(),
                },
                _ => io(source),
            })?;
        file.write_all(self.to_pretty_json().as_bytes())
            .map_err(io)?;
        file.sync_all().map_err(io)
    }

    /// The chain id: SHA-256 of the canonical JSON.
    pub fn id(&self) -> Hash32 {
        self.id
    }

    /// The canonical JSON the id is the hash of.
    pub fn canonical(&self) -> String {
        canonical_json(&self.value)
    }

    /// The document as written to genesis.json (indented; the id does not depend on layout).
    pub fn to_pretty_json(&self) -> String {
        let mut text = serde_json::to_string_pretty(&self.value).unwrap_or_default();
        text.push('\n');
        text
    }

    /// The genesis block (index 0), derived from the document alone, so every node has the same.
    pub fn block(&self) -> Block {
        let mut block = Block {
            index: 0,
            timestamp: self.created,
            previous_hash: self.id,
            data: BlockData::default(),
            difficulty: 0,
            nonce: 0,
            consensus: None,
            producer: PublicKey::NONE,
            signature: SignatureBytes::NONE,
            hash: Hash32::ZERO,
            certificate: None,
        };
        block.hash = block.header().computed_hash(&[]);
        block
    }

    /// The genesis block's header.
    pub fn header(&self) -> Header {
        self.block().header()
    }

    /// The template of the block after `parent` under these rules (difficulty from the
    /// rules; a timestamp before the parent's is raised to it: block times never go back).
    pub fn template(
        &self,
        parent: &Header,
        records: Vec<super::record::Record>,
        timestamp: Timestamp,
        producer: PublicKey,
    ) -> BlockTemplate {
        BlockTemplate {
            index: parent.index + 1,
            previous_hash: parent.hash,
            timestamp: timestamp.max(parent.timestamp),
            difficulty: self.consensus.difficulty(parent.index + 1),
            records,
            producer,
            consensus: None,
            seal: Vec::new(),
        }
    }
}

/// `name`: 1..=64 characters of `A-Z a-z 0-9 . _ -`.
pub fn is_valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Canonical JSON: keys sorted by code point, no whitespace, only `"` `\` and control characters
/// escaped, non-ASCII raw, integers in decimal (Python's `json.dumps(sort_keys=True,
/// separators=(",", ":"), ensure_ascii=False)`).
pub fn canonical_json(value: &Value) -> String {
    let mut out = String::new();
    write_canonical(&mut out, value);
    out
}

fn write_canonical(out: &mut String, value: &Value) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => {
            let _ = write!(out, "{n}");
        }
        Value::String(s) => write_string(out, s),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(out, item);
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            // Code point order; keys are ASCII, where byte order is the same.
            keys.sort_by(|a, b| a.chars().cmp(b.chars()));
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_string(out, key);
                out.push(':');
                write_canonical(out, &map[key]);
            }
            out.push('}');
        }
    }
}

fn write_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{8}' => out.push_str("\\b"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\u{c}' => out.push_str("\\f"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(extra: &str) -> String {
        format!(
            r#"{{"format":1,"name":"wattchain","created":"2026-12-01T21:40:00.000Z",
            "consensus":{{"mode":"pow","difficulty":16}},"finality_depth":6,
            "max_records_per_block":256{extra}}}"#
        )
    }

    #[test]
    fn the_id_does_not_depend_on_layout_or_key_order() {
        let a = Genesis::parse(&text("")).unwrap();
        let b = Genesis::parse(
            r#"{"max_records_per_block":256,"finality_depth":6,"consensus":{"difficulty":16,
            "mode":"pow"},"created":"2026-12-01T21:40:00.000Z","name":"wattchain","format":1}"#,
        )
        .unwrap();
        assert_eq!(a.id(), b.id());
        assert_eq!(
            a.canonical(),
            r#"{"consensus":{"difficulty":16,"mode":"pow"},"created":"2026-12-01T21:40:00.000Z","finality_depth":6,"format":1,"max_records_per_block":256,"name":"wattchain"}"#
        );
        assert_eq!(Genesis::parse(&a.to_pretty_json()).unwrap().id(), a.id());
        let block = a.block();
        assert_eq!(block.previous_hash, a.id());
        assert_eq!(block.header().computed_hash(&[]), block.hash);
    }

    #[test]
    fn unknown_keys_floats_and_out_of_range_values_are_refused() {
        for (doc, needle) in [
            (text(r#","extra":1"#), "unknown key \"extra\""),
            (
                text("").replace("\"difficulty\":16", "\"difficulty\":16.0"),
                "consensus.difficulty: only integers",
            ),
            (
                text("").replace("\"difficulty\":16", "\"difficulty\":41"),
                "at most 40",
            ),
            (
                text("").replace("\"difficulty\":16", "\"difficulty\":16,\"x\":1"),
                "consensus.x is not a key",
            ),
            (
                text("").replace("\"finality_depth\":6", "\"finality_depth\":0"),
                "finality_depth",
            ),
            (text("").replace("256", "257"), "max_records_per_block"),
            (
                text("").replace("\"pow\"", "\"nope\""),
                "not one of: pow, pos",
            ),
            (text("").replace("wattchain", "a b"), "name"),
            (text("").replace(".000Z", "Z"), "created"),
            (text("").replace("\"format\":1", "\"format\":2"), "format"),
        ] {
            let err = Genesis::parse(&doc).expect_err(&doc).to_string();
            assert!(err.contains(needle), "{err} (wanted {needle})");
        }
    }

    #[test]
    fn canonical_strings_escape_like_python() {
        let v: Value = serde_json::from_str(r#"{"b":"é\u0001\n\"\\/","a":[1,true,null]}"#).unwrap();
        assert_eq!(
            canonical_json(&v),
            "{\"a\":[1,true,null],\"b\":\"é\\u0001\\n\\\"\\\\/\"}"
        );
    }
}
