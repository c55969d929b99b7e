//! Every MQTT topic string and filter wattchain uses, in one place, mirroring `topics.md`.
//!
//! Topics are built from a configurable root (default `wattchain`) so that two deployments can
//! share a broker. Nothing outside this module formats or parses a topic.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use thiserror::Error;
use utoipa::ToSchema;

/// Default root prefix of every topic.
pub const DEFAULT_ROOT: &str = "wattchain";

/// Default prefix of Home Assistant's MQTT discovery topics (Home Assistant's own default).
pub const DEFAULT_HA_PREFIX: &str = "homeassistant";

/// Longest identifier (cabinet id, agent id, role) accepted in a topic level.
pub const MAX_ID_LEN: usize = 64;

/// One of the four measured quantities.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema,
)]
pub enum Quantity {
    /// RMS voltage, volts.
    U,
    /// RMS current, amperes.
    I,
    /// Active power, watts.
    PA,
    /// Reactive power, var (inductive positive, capacitive negative).
    PR,
}

impl Quantity {
    /// The four quantities in their canonical order.
    pub const ALL: [Quantity; 4] = [Quantity::U, Quantity::I, Quantity::PA, Quantity::PR];

    /// The name used in topics and JSON (`U`, `I`, `PA`, `PR`).
    pub fn as_str(self) -> &'static str {
        match self {
            Quantity::U => "U",
            Quantity::I => "I",
            Quantity::PA => "PA",
            Quantity::PR => "PR",
        }
    }

    /// The unit symbol of the quantity.
    pub fn unit(self) -> &'static str {
        match self {
            Quantity::U => "V",
            Quantity::I => "A",
            Quantity::PA => "W",
            Quantity::PR => "var",
        }
    }

    /// Position in [`Quantity::ALL`] (0..4), for per-quantity arrays.
    pub fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Quantity {
    type Err = TopicError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Quantity::ALL
            .into_iter()
            .find(|q| q.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| TopicError::UnknownQuantity(s.to_string()))
    }
}

/// Why a topic, root or identifier was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TopicError {
    /// The root prefix is empty, has wildcards, starts with `$` or has empty levels.
    #[error(
        "invalid topic root {0:?}: use letters, digits, '-', '_' and '/' between non-empty levels"
    )]
    InvalidRoot(String),
    /// An identifier that would become a topic level is not `[A-Za-z0-9_-]{1,64}`.
    #[error("invalid identifier {0:?}: use 1 to 64 of A-Z a-z 0-9 '-' '_'")]
    InvalidId(String),
    /// Not one of U, I, PA, PR.
    #[error("unknown quantity {0:?}: expected U, I, PA or PR")]
    UnknownQuantity(String),
    /// A Home Assistant discovery prefix breaking the same rules as a root.
    #[error(
        "invalid Home Assistant discovery prefix {0:?}: use letters, digits, '-', '_' and '/' between non-empty levels"
    )]
    InvalidPrefix(String),
}

/// True when `prefix` can begin topics: non-empty levels of `[A-Za-z0-9_-]`, no `$` first.
fn is_valid_prefix(prefix: &str) -> bool {
    !prefix.is_empty()
        && !prefix.starts_with('$')
        && prefix.split('/').all(|level| {
            !level.is_empty()
                && level
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// True when `id` can stand alone as one topic level: `[A-Za-z0-9_-]{1,64}`.
pub fn is_valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Checks an identifier, returning it back when valid.
pub fn check_id(id: &str) -> Result<&str, TopicError> {
    if is_valid_id(id) {
        Ok(id)
    } else {
        Err(TopicError::InvalidId(id.to_string()))
    }
}

/// A topic wattchain knows, recognised from its string by [`Topics::parse`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `{root}/cabinet/{cab}/quad`
    Quad { cabinet: String },
    /// `{root}/cabinet/{cab}/window/{Q}`
    Window { cabinet: String, quantity: Quantity },
    /// `{root}/cabinet/{cab}/average/{Q}`
    Average { cabinet: String, quantity: Quantity },
    /// `{root}/cabinet/{cab}/status`
    CabinetStatus { cabinet: String },
    /// `{root}/cabinet/{cab}/commit`
    Commit { cabinet: String },
    /// `{root}/cabinet/{cab}/energy`
    Energy { cabinet: String },
    /// `{root}/ledger/block`
    Block,
    /// `{root}/ledger/head`
    Head,
    /// `{root}/ledger/header`
    Header,
    /// `{root}/ledger/node/{id}/head`
    NodeHead { node: String },
    /// `{root}/ledger/sync/request`
    SyncRequest,
    /// `{root}/ledger/sync/reply/{id}`
    SyncReply { id: String },
    /// `{root}/ledger/{mode}` for a mode that sends messages (`pos`, `pbft`)
    Mode { mode: String },
    /// `{root}/agent/{id}/status`
    AgentStatus { id: String },
    /// `{root}/deadletter/{role}`
    Deadletter { role: String },
}

/// The topic namespace under one root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topics {
    root: String,
}

impl Default for Topics {
    fn default() -> Self {
        Topics {
            root: DEFAULT_ROOT.to_string(),
        }
    }
}

impl Topics {
    /// A namespace under `root` (e.g. `wattchain` or `site-a/wattchain`).
    pub fn new(root: &str) -> Result<Self, TopicError> {
        if is_valid_prefix(root) {
            Ok(Topics {
                root: root.to_string(),
            })
        } else {
            Err(TopicError::InvalidRoot(root.to_string()))
        }
    }

    /// The root prefix.
    pub fn root(&self) -> &str {
        &self.root
    }

    /// Every quadruplet of one cabinet.
    pub fn quad(&self, cabinet: &str) -> String {
        format!("{}/cabinet/{cabinet}/quad", self.root)
    }

    /// One quantity's window tasks of one cabinet.
    pub fn window(&self, cabinet: &str, quantity: Quantity) -> String {
        format!("{}/cabinet/{cabinet}/window/{quantity}", self.root)
    }

    /// One quantity's averages of one cabinet.
    pub fn average(&self, cabinet: &str, quantity: Quantity) -> String {
        format!("{}/cabinet/{cabinet}/average/{quantity}", self.root)
    }

    /// The retained status of one cabinet.
    pub fn cabinet_status(&self, cabinet: &str) -> String {
        format!("{}/cabinet/{cabinet}/status", self.root)
    }

    /// Every block that commits windows of one cabinet: its own copy of each such block, so
    /// that a cabinet receives the blocks that concern it and no others.
    pub fn commit(&self, cabinet: &str) -> String {
        format!("{}/cabinet/{cabinet}/commit", self.root)
    }

    /// The retained energy total of one cabinet.
    pub fn energy(&self, cabinet: &str) -> String {
        format!("{}/cabinet/{cabinet}/energy", self.root)
    }

    /// Home Assistant `node_id` of a cabinet's device: `wattchain_cabinet_c1` (the root with
    /// '/' as '_', so two deployments on one Home Assistant stay apart).
    pub fn ha_cabinet_node(&self, cabinet: &str) -> String {
        format!("{}_cabinet_{cabinet}", self.root.replace('/', "_"))
    }

    /// Home Assistant `node_id` of the ledger's device: `wattchain_ledger`.
    pub fn ha_ledger_node(&self) -> String {
        format!("{}_ledger", self.root.replace('/', "_"))
    }

    /// Every mined block.
    pub fn block(&self) -> String {
        format!("{}/ledger/block", self.root)
    }

    /// The best head by the rules, retained.
    pub fn head(&self) -> String {
        format!("{}/ledger/head", self.root)
    }

    /// Every block's light header (what cabinets follow).
    pub fn header(&self) -> String {
        format!("{}/ledger/header", self.root)
    }

    /// Filter: every node's head.
    pub fn node_head_filter(&self) -> String {
        format!("{}/ledger/node/+/head", self.root)
    }

    /// Sync requests, which any node may answer.
    pub fn sync_request(&self) -> String {
        format!("{}/ledger/sync/request", self.root)
    }

    /// Sync replies for the node (or cabinet light client) `id`.
    pub fn sync_reply(&self, id: &str) -> String {
        format!("{}/ledger/sync/reply/{id}", self.root)
    }

    /// Signed consensus messages of `mode` (`pos`, `pbft`).
    pub fn mode(&self, mode: &str) -> String {
        format!("{}/ledger/{mode}", self.root)
    }

    /// The retained head and state of one ledger node.
    pub fn node_head(&self, node: &str) -> String {
        format!("{}/ledger/node/{node}/head", self.root)
    }

    /// What a watcher (the web service's live view) subscribes to: quadruplets, averages,
    /// statuses, blocks, heads and dead letters; not the window tasks, the bulk of the traffic.
    pub fn watch_filters(&self) -> Vec<String> {
        let r = &self.root;
        [
            "cabinet/+/quad",
            "cabinet/+/average/+",
            "cabinet/+/status",
            "agent/+/status",
            "ledger/block",
            "ledger/head",
            "ledger/node/+/head",
            "deadletter/+",
        ]
        .iter()
        .map(|f| format!("{r}/{f}"))
        .collect()
    }

    /// The broker-latency probe of `wattchain bench pipeline` (a timestamp, QoS 1).
    pub fn bench_probe(&self) -> String {
        format!("{}/bench/probe", self.root)
    }

    /// The retained status of one agent.
    pub fn agent_status(&self, id: &str) -> String {
        format!("{}/agent/{id}/status", self.root)
    }

    /// Messages an agent of `role` rejected.
    pub fn deadletter(&self, role: &str) -> String {
        format!("{}/deadletter/{role}", self.root)
    }

    /// Filter: one quantity's windows of every cabinet.
    pub fn window_filter(&self, quantity: Quantity) -> String {
        format!("{}/cabinet/+/window/{quantity}", self.root)
    }

    /// Shared-subscription filter the averagers of one quantity join.
    ///
    /// The group name carries the root and the quantity, so that one group name never serves
    /// two filters (some brokers key shared groups by name alone and would lose messages).
    pub fn averager_share(&self, quantity: Quantity) -> String {
        format!(
            "$share/{}-averagers-{quantity}/{}",
            self.root.replace('/', "-"),
            self.window_filter(quantity)
        )
    }

    /// Filter: every average of every cabinet.
    pub fn average_filter(&self) -> String {
        format!("{}/cabinet/+/average/+", self.root)
    }

    /// Filter: everything under the root (for watchers).
    pub fn everything(&self) -> String {
        format!("{}/#", self.root)
    }

    /// Recognises a topic under this root.
    pub fn parse(&self, topic: &str) -> Option<Route> {
        let rest = topic.strip_prefix(&self.root)?.strip_prefix('/')?;
        let levels: Vec<&str> = rest.split('/').collect();
        let id = |s: &str| is_valid_id(s).then(|| s.to_string());
        match levels.as_slice() {
            ["cabinet", cab, "quad"] => Some(Route::Quad { cabinet: id(cab)? }),
            ["cabinet", cab, "window", q] => Some(Route::Window {
                cabinet: id(cab)?,
                quantity: q.parse().ok()?,
            }),
            ["cabinet", cab, "average", q] => Some(Route::Average {
                cabinet: id(cab)?,
                quantity: q.parse().ok()?,
            }),
            ["cabinet", cab, "status"] => Some(Route::CabinetStatus { cabinet: id(cab)? }),
            ["cabinet", cab, "commit"] => Some(Route::Commit { cabinet: id(cab)? }),
            ["cabinet", cab, "energy"] => Some(Route::Energy { cabinet: id(cab)? }),
            ["ledger", "block"] => Some(Route::Block),
            ["ledger", "head"] => Some(Route::Head),
            ["ledger", "header"] => Some(Route::Header),
            ["ledger", "node", node, "head"] => Some(Route::NodeHead { node: id(node)? }),
            ["ledger", "sync", "request"] => Some(Route::SyncRequest),
            ["ledger", "sync", "reply", to] => Some(Route::SyncReply { id: id(to)? }),
            ["ledger", mode] if crate::ledger::consensus::MESSAGE_MODES.contains(mode) => {
                Some(Route::Mode {
                    mode: mode.to_string(),
                })
            }
            ["agent", agent, "status"] => Some(Route::AgentStatus { id: id(agent)? }),
            ["deadletter", role] => Some(Route::Deadletter { role: id(role)? }),
            _ => None,
        }
    }
}

/// Home Assistant's MQTT discovery topics under one prefix (`homeassistant` by default): outside
/// the wattchain root, because Home Assistant listens there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscoveryTopics {
    prefix: String,
}

impl Default for DiscoveryTopics {
    fn default() -> Self {
        DiscoveryTopics {
            prefix: DEFAULT_HA_PREFIX.to_string(),
        }
    }
}

impl DiscoveryTopics {
    /// Discovery under `prefix` (as set in Home Assistant's MQTT options).
    pub fn new(prefix: &str) -> Result<Self, TopicError> {
        if is_valid_prefix(prefix) {
            Ok(DiscoveryTopics {
                prefix: prefix.to_string(),
            })
        } else {
            Err(TopicError::InvalidPrefix(prefix.to_string()))
        }
    }

    /// The prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// `{prefix}/sensor/{node_id}/{object_id}/config`: one sensor's retained discovery config.
    pub fn sensor_config(&self, node_id: &str, object_id: &str) -> String {
        format!("{}/sensor/{node_id}/{object_id}/config", self.prefix)
    }

    /// `{prefix}/status`: where Home Assistant announces itself (`online`, its birth message).
    pub fn status(&self) -> String {
        format!("{}/status", self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_topic_parses_back_to_its_route() {
        let t = Topics::new("site-a/wattchain").unwrap();
        let cases = [
            (
                t.quad("c1"),
                Route::Quad {
                    cabinet: "c1".into(),
                },
            ),
            (
                t.window("c1", Quantity::PA),
                Route::Window {
                    cabinet: "c1".into(),
                    quantity: Quantity::PA,
                },
            ),
            (
                t.average("c_2", Quantity::PR),
                Route::Average {
                    cabinet: "c_2".into(),
                    quantity: Quantity::PR,
                },
            ),
            (
                t.cabinet_status("c1"),
                Route::CabinetStatus {
                    cabinet: "c1".into(),
                },
            ),
            (
                t.commit("c1"),
                Route::Commit {
                    cabinet: "c1".into(),
                },
            ),
            (
                t.energy("c1"),
                Route::Energy {
                    cabinet: "c1".into(),
                },
            ),
            (t.block(), Route::Block),
            (t.head(), Route::Head),
            (t.header(), Route::Header),
            (t.node_head("n-1"), Route::NodeHead { node: "n-1".into() }),
            (t.sync_request(), Route::SyncRequest),
            (t.sync_reply("n2"), Route::SyncReply { id: "n2".into() }),
            (t.mode("pos"), Route::Mode { mode: "pos".into() }),
            (
                t.agent_status("a-1"),
                Route::AgentStatus { id: "a-1".into() },
            ),
            (
                t.deadletter("averager"),
                Route::Deadletter {
                    role: "averager".into(),
                },
            ),
        ];
        for (topic, route) in cases {
            assert_eq!(t.parse(&topic), Some(route), "{topic}");
        }
    }

    #[test]
    fn foreign_and_malformed_topics_are_not_recognised() {
        let t = Topics::default();
        for topic in [
            "other/cabinet/c1/quad",
            "wattchain/cabinet/c1/window/X",
            "wattchain/cabinet/c+1/quad",
            "wattchain/cabinet//quad",
            "wattchain/ledger/block/extra",
            "wattchainx/ledger/block",
        ] {
            assert_eq!(t.parse(topic), None, "{topic}");
        }
    }

    #[test]
    fn shared_groups_are_distinct_per_filter() {
        let t = Topics::default();
        let groups: std::collections::HashSet<String> = Quantity::ALL
            .iter()
            .map(|q| t.averager_share(*q).split('/').nth(1).unwrap().to_string())
            .collect();
        assert_eq!(groups.len(), 4);
        assert_eq!(
            t.averager_share(Quantity::U),
            "$share/wattchain-averagers-U/wattchain/cabinet/+/window/U"
        );
    }

    #[test]
    fn roots_with_wildcards_or_dollar_are_refused() {
        for root in ["", "$SYS", "a/+/b", "a/#", "a//b", "a/"] {
            assert!(Topics::new(root).is_err(), "{root}");
        }
        assert!(Topics::new("plant_1/wattchain").is_ok());
    }

    #[test]
    fn discovery_topics_and_node_ids_follow_home_assistants_pattern() {
        let d = DiscoveryTopics::default();
        let t = Topics::new("site-a/wattchain").unwrap();
        let node = t.ha_cabinet_node("c_1");
        assert_eq!(node, "site-a_wattchain_cabinet_c_1");
        assert!(is_valid_id(&node), "node ids are [a-zA-Z0-9_-]");
        assert_eq!(
            d.sensor_config(&node, "voltage"),
            "homeassistant/sensor/site-a_wattchain_cabinet_c_1/voltage/config"
        );
        assert_eq!(d.status(), "homeassistant/status");
        assert_eq!(Topics::default().ha_ledger_node(), "wattchain_ledger");
        for bad in ["", "ha/+", "#", "$SYS", "a//b"] {
            assert!(DiscoveryTopics::new(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn quantities_parse_case_insensitively_and_reject_others() {
        assert_eq!("pa".parse::<Quantity>().unwrap(), Quantity::PA);
        assert!("Q".parse::<Quantity>().is_err());
    }
}
