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
    /// Address serving MQTT 3.1, 3.1.1 and 5 (port 0 picks a free port).
    pub listen: SocketAddr,
    /// Largest packet, in bytes, a client may send or be sent; a larger one closes that
    /// connection (MQTT 5: DISCONNECT 0x95 first).
    pub max_packet_size: usize,
    /// Sessions the broker holds, connected and offline (persistent) ones together; every
    /// connection holds one, so this also bounds connections. More are refused with a CONNACK.
    pub max_connections: usize,
    /// Time a new socket has for each step of its handshake: TLS or WebSocket upgrade, the
    /// first bytes of CONNECT, the whole CONNECT.
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
    /// Optional TLS listener.
    pub tls: Option<TlsConfig>,
    /// Optional MQTT-over-WebSocket listener.
    pub ws: Option<WsConfig>,
    /// Per-session and broker-wide limits of the embedded engine (rmqtt); they bound memory.
    pub limits: Limits,
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
            limits: Limits::default(),
        }
    }
}

/// What one session, and the broker as a whole, may hold. Each is passed to rmqtt; the
/// comments in `config/default.toml` give the memory each one bounds.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// QoS 1/2 messages sent to one client and not yet acknowledged (also the receive
    /// maximum announced to MQTT 5 clients).
    pub max_inflight: u16,
    /// Messages queued for one session behind its in-flight window (offline sessions too).
    /// Past this, new messages for that session are dropped, counted and logged.
    pub max_queued_messages: usize,
    /// Subscriptions one client may hold; more are refused in the SUBACK.
    pub max_subscriptions: usize,
    /// Topic aliases an MQTT 5 client may use towards the broker.
    pub max_topic_aliases: u16,
    /// Longest client id accepted (longer: CONNACK "identifier rejected").
    pub max_client_id_len: usize,
    /// Retained messages held; past this, retained messages on new topics are not stored.
    pub max_retained_messages: usize,
    /// Largest retained payload stored, in bytes; a larger one is delivered but not retained.
    pub max_retained_payload: usize,
    /// Session expiry of MQTT 3.1.1 clients that connect with clean session off.
    #[serde(with = "humantime_serde")]
    pub session_expiry: Duration,
    /// Cap on the session expiry an MQTT 5 client may ask for.
    #[serde(with = "humantime_serde")]
    pub max_session_expiry: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        // Measured with `wattchain bench pipeline` (README "Performance"): rmqtt's defaults
        // (16 in flight, 1000 queued) halve the pipeline's throughput and make its averagers
        // miss windows; 100 in flight and 100 000 queued keep 100k quadruplets/s lossless.
        Limits {
            max_inflight: 100,
            max_queued_messages: 100_000,
            max_subscriptions: 1000,
            max_topic_aliases: 100,
            max_client_id_len: 256,
            max_retained_messages: 100_000,
            max_retained_payload: 64 * 1024,
            session_expiry: Duration::from_secs(2 * 3600),
            max_session_expiry: Duration::from_secs(24 * 3600),
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

    fn tls_listen(&self) -> Option<SocketAddr> {
        self.tls.as_ref().map(|tls| tls.listen)
    }

    fn ws_listen(&self) -> Option<SocketAddr> {
        self.ws.as_ref().map(|ws| ws.listen)
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
        // MQTT's remaining length caps a packet at 256 MiB.
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
        let limits = &self.limits;
        if limits.max_inflight == 0 {
            return invalid("limits.max_inflight must be at least 1".into());
        }
        if limits.max_queued_messages == 0 || limits.max_subscriptions == 0 {
            return invalid(
                "limits.max_queued_messages and limits.max_subscriptions must be at least 1".into(),
            );
        }
        // A client id up to 23 characters is what MQTT 3.1.1 requires servers to accept.
        if limits.max_client_id_len < 23 {
            return invalid(format!(
                "limits.max_client_id_len = {} is below MQTT's 23",
                limits.max_client_id_len
            ));
        }
        if limits.max_retained_messages == 0 || limits.max_retained_payload == 0 {
            return invalid(
                "limits.max_retained_messages and limits.max_retained_payload must be positive \
                 (the agents' status and head topics are retained)"
                    .into(),
            );
        }
        if limits.max_session_expiry.is_zero() {
            return invalid("limits.max_session_expiry must be positive".into());
        }
        if limits.session_expiry > limits.max_session_expiry {
            return invalid(format!(
                "limits.session_expiry ({}) exceeds limits.max_session_expiry ({})",
                humantime::format_duration(limits.session_expiry),
                humantime::format_duration(limits.max_session_expiry)
            ));
        }
        // rmqtt panics on two listeners with one key; distinct addresses keep keys distinct.
        let mut addrs: Vec<SocketAddr> = [Some(self.listen), self.tls_listen(), self.ws_listen()]
            .into_iter()
            .flatten()
            .filter(|addr| addr.port() != 0)
            .collect();
        addrs.sort_unstable();
        if let Some(pair) = addrs.windows(2).find(|pair| pair[0] == pair[1]) {
            return invalid(format!("{} is configured for two listeners", pair[0]));
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
    fn validate_rejects_a_session_expiry_above_its_cap() {
        let mut config = BrokerConfig::default();
        config.limits.session_expiry = config.limits.max_session_expiry + Duration::from_secs(1);
        assert!(matches!(config.validate(), Err(ConfigError::Invalid(_))));
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let err = toml::from_str::<BrokerConfig>("lisen = \"127.0.0.1:1\"");
        assert!(err.is_err());
    }
}
