//! Broker configuration: serde structs with per-field defaults, a commented default TOML and
//! validation that returns errors instead of panicking.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::acl::Permissions;
use crate::auth::check_stored_hash;
use crate::DEFAULT_MAX_PACKET_SIZE;

/// The commented default configuration; it parses to [`BrokerConfig::default()`].
pub fn default_config_toml() -> &'static str {
    include_str!("../config/default.toml")
}

/// Why a configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The path given.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML for [`BrokerConfig`].
    #[error("invalid broker config {path}: {source}")]
    Parse {
        /// The path given.
        path: PathBuf,
        /// The TOML error, with line and column.
        source: toml::de::Error,
    },
    /// A value is out of range or inconsistent.
    #[error("invalid broker config: {0}")]
    Invalid(String),
}

/// Everything the broker needs to start.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BrokerConfig {
    /// Public front-door address serving MQTT 3.1.1 and 5 (port 0 picks a free port).
    pub listen: SocketAddr,
    /// Largest packet, in bytes, a client may send; larger ones close that connection.
    pub max_packet_size: usize,
    /// Simultaneous client connections; more are refused with a CONNACK.
    pub max_connections: usize,
    /// Time a new socket has to finish its TLS handshake and send CONNECT.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Users accepted inline (hashed passwords only); with `users_file`, both are accepted.
    /// No users at all means no authentication and no topic permissions.
    pub users: Vec<User>,
    /// TOML file of `[[users]]` with hashed passwords; relative to the config file's directory
    /// when read by [`BrokerConfig::from_file`].
    pub users_file: Option<PathBuf>,
    /// Password verifications (argon2, deliberately slow) running at once; more CONNECTs wait.
    pub max_concurrent_logins: usize,
    /// Optional TLS listener terminated by the front door.
    pub tls: Option<TlsConfig>,
    /// Optional MQTT-over-WebSocket listener.
    pub ws: Option<WsConfig>,
    /// Tuning of the embedded rumqttd.
    pub rumqttd: RumqttdTuning,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 1883)),
            max_packet_size: DEFAULT_MAX_PACKET_SIZE,
            max_connections: 1000,
            connect_timeout: Duration::from_secs(10),
            users: Vec::new(),
            users_file: None,
            max_concurrent_logins: 4,
            tls: None,
            ws: None,
            rumqttd: RumqttdTuning::default(),
        }
    }
}

/// One user: name, argon2 PHC password hash and topic permissions; `Debug` hides the hash.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct User {
    /// The username a client sends in CONNECT.
    pub username: String,
    /// The password as an argon2 PHC string (`wattchain broker hash-password` makes one).
    pub password_hash: String,
    /// Filters of the topics this user may publish on; none given means none allowed.
    #[serde(default)]
    pub publish: Vec<String>,
    /// Filters this user may subscribe to; none given means every topic.
    #[serde(default)]
    pub subscribe: Option<Vec<String>>,
}

impl User {
    /// This user's permissions, `%u` not yet substituted.
    pub fn permissions(&self) -> Permissions {
        Permissions {
            publish: self.publish.clone(),
            subscribe: self.subscribe.clone(),
        }
    }
}

impl fmt::Debug for User {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("User")
            .field("username", &self.username)
            .field("password_hash", &"<hidden>")
            .field("publish", &self.publish)
            .field("subscribe", &self.subscribe)
            .finish()
    }
}

/// The users file: a list of `[[users]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UsersFile {
    #[serde(default)]
    users: Vec<User>,
}

/// TLS listener settings: certificate chain and private key as PEM files.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// Address of the TLS listener (port 0 picks a free port).
    pub listen: SocketAddr,
    /// PEM file with the certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM file with the private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// The MQTT-over-WebSocket listener (plain `ws://`; put a TLS proxy in front for `wss://`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WsConfig {
    /// Address of the WebSocket listener (port 0 picks a free port).
    pub listen: SocketAddr,
}

/// Settings passed to the embedded rumqttd; they bound its memory.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RumqttdTuning {
    /// Bytes per commit-log segment of one filter.
    pub max_segment_size: usize,
    /// Segments kept per filter; memory per filter is at most size × count.
    pub max_segment_count: usize,
    /// Packets buffered per outgoing connection before the router stops reading for it.
    pub max_outgoing_packet_count: u64,
    /// Packets rumqttd reads from one connection per batch (despite its name: rumqttd's QoS 1
    /// in-flight window is a fixed 100 messages).
    pub max_inflight_count: usize,
    /// Time rumqttd allows for its readiness probe to succeed on each internal port.
    #[serde(with = "humantime_serde")]
    pub readiness_timeout: Duration,
    /// Smaller logs for the filters matching these patterns: filters that are many and carry
    /// little, such as one commit topic per cabinet. Patterns should not overlap (rumqttd
    /// gives a filter matching several any one of them).
    pub filter_segments: Vec<FilterSegments>,
}

/// Log size for the filters matching one pattern; see [`RumqttdTuning::filter_segments`].
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilterSegments {
    /// An MQTT filter (`+`, `#`) that subscribed filters are matched against as if topics.
    pub filter: String,
    /// Bytes per segment (at least 1024); a larger message is stored whole.
    pub max_segment_size: usize,
    /// Segments kept (at least 1).
    pub max_segment_count: usize,
}

/// The commit topic of every cabinet under the default root: one filter per cabinet, a few
/// blocks a second each. A cabinet that falls further behind than its log re-issues its
/// windows after the commit deadline and is answered again, so small logs lose nothing.
pub const DEFAULT_COMMIT_FILTER: &str = "wattchain/cabinet/+/commit";

impl Default for RumqttdTuning {
    fn default() -> Self {
        // rumqttd keeps a full log for every filter ever subscribed, so its size is paid per
        // filter (bench::bound). It is also the only buffer for a subscriber that lags: past
        // (count - 1) × size bytes behind, rumqttd skips it ahead, even at QoS 1. 4 MiB × 4
        // lets an averager lag ~5 s behind 100k quadruplets/s of windows; at 1 MiB × 4, the
        // pipeline bench lost a third of its windows to skips at that rate. The filters that
        // are many (one commit topic per cabinet) get small logs in `filter_segments`.
        // 100 outgoing packets matches rumqttd's fixed QoS 1 in-flight window.
        RumqttdTuning {
            max_segment_size: 4 * DEFAULT_MAX_PACKET_SIZE,
            max_segment_count: 4,
            max_outgoing_packet_count: 100,
            max_inflight_count: 100,
            readiness_timeout: Duration::from_secs(5),
            filter_segments: vec![FilterSegments {
                filter: DEFAULT_COMMIT_FILTER.to_string(),
                max_segment_size: 64 * 1024,
                max_segment_count: 4,
            }],
        }
    }
}

impl BrokerConfig {
    /// Reads and validates a TOML config file.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let mut config: BrokerConfig =
            toml::from_str(&text).map_err(|source| ConfigError::Parse {
                path: path.to_owned(),
                source,
            })?;
        if let Some(users_file) = &config.users_file {
            if users_file.is_relative() {
                let dir = path.parent().unwrap_or(Path::new("."));
                config.users_file = Some(dir.join(users_file));
            }
        }
        config.validate()?;
        Ok(config)
    }

    /// Every user: the inline `[[users]]` followed by those of `users_file`, validated
    /// (unique names, PHC hashes). Empty means authentication is off.
    pub fn load_users(&self) -> Result<Vec<User>, ConfigError> {
        let mut users = self.users.clone();
        if let Some(path) = &self.users_file {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.clone(),
                source,
            })?;
            let file: UsersFile = toml::from_str(&text).map_err(|source| ConfigError::Parse {
                path: path.clone(),
                source,
            })?;
            if file.users.is_empty() {
                // An empty file would silently turn authentication off.
                return Err(ConfigError::Invalid(format!(
                    "users file {} lists no [[users]]",
                    path.display()
                )));
            }
            users.extend(file.users);
        }
        validate_users(&users)?;
        Ok(users)
    }

    /// Checks ranges and consistency; [`crate::start`] calls it too.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |msg: String| Err(ConfigError::Invalid(msg));
        // Below this a CONNECT with a modest client id and credentials no longer fits.
        if self.max_packet_size < 1024 {
            return invalid(format!(
                "max_packet_size = {} is below the minimum of 1024 bytes",
                self.max_packet_size
            ));
        }
        // rumqttd keeps the remaining length in a u32-sized field; MQTT itself caps at 256 MiB.
        if self.max_packet_size > 256 * 1024 * 1024 {
            return invalid(format!(
                "max_packet_size = {} exceeds MQTT's 256 MiB",
                self.max_packet_size
            ));
        }
        if self.max_connections == 0 {
            return invalid("max_connections must be at least 1".into());
        }
        if self.connect_timeout.is_zero() {
            return invalid("connect_timeout must be positive".into());
        }
        validate_users(&self.users)?;
        if self.max_concurrent_logins == 0 {
            return invalid("max_concurrent_logins must be at least 1".into());
        }
        let tuning = &self.rumqttd;
        if tuning.max_segment_size < self.max_packet_size {
            return invalid(format!(
                "rumqttd.max_segment_size = {} must hold one max_packet_size ({})",
                tuning.max_segment_size, self.max_packet_size
            ));
        }
        if tuning.max_segment_count == 0
            || tuning.max_outgoing_packet_count == 0
            || tuning.max_inflight_count == 0
        {
            return invalid(
                "rumqttd segment, outgoing and inflight counts must be positive".into(),
            );
        }
        if tuning.max_inflight_count > usize::from(u16::MAX) {
            return invalid("rumqttd.max_inflight_count must fit MQTT's 16-bit packet ids".into());
        }
        if tuning.readiness_timeout.is_zero() {
            return invalid("rumqttd.readiness_timeout must be positive".into());
        }
        for f in &tuning.filter_segments {
            if !crate::acl::is_filter(&f.filter) {
                return invalid(format!(
                    "rumqttd.filter_segments: {:?} is not an MQTT filter",
                    f.filter
                ));
            }
            // Below 1 KiB rumqttd panics; a larger message is stored whole, so no upper tie
            // to max_packet_size here.
            if f.max_segment_size < 1024 || f.max_segment_count == 0 {
                return invalid(format!(
                    "rumqttd.filter_segments {:?}: max_segment_size must be at least 1024 and \
                     max_segment_count at least 1",
                    f.filter
                ));
            }
        }
        Ok(())
    }
}

/// Unique, non-empty usernames without wildcards (they would widen `%u` filters) and usable
/// password hashes.
fn validate_users(users: &[User]) -> Result<(), ConfigError> {
    let invalid = |msg: String| Err(ConfigError::Invalid(msg));
    let mut names: Vec<&str> = users.iter().map(|u| u.username.as_str()).collect();
    names.sort_unstable();
    if let Some(pair) = names.windows(2).find(|pair| pair[0] == pair[1]) {
        return invalid(format!("user {:?} is listed twice", pair[0]));
    }
    if names.iter().any(|name| name.is_empty()) {
        return invalid("a [[users]] entry has an empty username".into());
    }
    if let Some(name) = names.iter().find(|name| name.contains(['+', '#'])) {
        return invalid(format!("username {name:?} contains an MQTT wildcard"));
    }
    for user in users {
        check_stored_hash(&user.username, &user.password_hash)
            .map_err(|err| ConfigError::Invalid(err.to_string()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_debug_hides_the_password_hash() {
        let user = User {
            username: "alice".into(),
            password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaA".into(),
            publish: vec![],
            subscribe: None,
        };
        let shown = format!("{user:?}");
        assert!(shown.contains("alice"));
        assert!(!shown.contains("argon2id"));
    }

    #[test]
    fn a_plaintext_password_is_refused() {
        let plain = "[[users]]\nusername = \"alice\"\npassword = \"wonderland\"\n";
        assert!(toml::from_str::<BrokerConfig>(plain).is_err());
        let not_a_hash = BrokerConfig {
            users: vec![User {
                username: "alice".into(),
                password_hash: "wonderland".into(),
                publish: vec![],
                subscribe: None,
            }],
            ..BrokerConfig::default()
        };
        assert!(matches!(
            not_a_hash.validate(),
            Err(ConfigError::Invalid(_))
        ));
    }

    #[test]
    fn validate_rejects_a_segment_smaller_than_a_packet() {
        let mut config = BrokerConfig::default();
        config.rumqttd.max_segment_size = config.max_packet_size - 1;
        assert!(matches!(config.validate(), Err(ConfigError::Invalid(_))));
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let err = toml::from_str::<BrokerConfig>("lisen = \"127.0.0.1:1\"");
        assert!(err.is_err());
    }
}
