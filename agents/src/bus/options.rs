//! Where and how a session connects: broker URLs, options, presence, TLS trust.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use rumqttc::{LastWill, MqttOptions, QoS, TlsConfiguration, Transport};
use tokio_rustls::rustls::crypto::ring;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::CertificateDer;
use tokio_rustls::rustls::{ClientConfig, RootCertStore};

use super::BusError;
use crate::config::{self, ConfigError};
use crate::messages::{encode, AgentStatus, Presence as PresenceState};
use crate::topics::Topics;

/// Where the broker is: `mqtt://host:port` or `mqtts://host:port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerUrl {
    /// Host name or IP address.
    pub host: String,
    /// TCP port (default 1883, or 8883 with TLS).
    pub port: u16,
    /// Whether to speak TLS.
    pub tls: bool,
}

impl FromStr for BrokerUrl {
    type Err = BusError;

    fn from_str(url: &str) -> Result<Self, Self::Err> {
        let fail = |reason: &str| BusError::Url {
            url: url.to_string(),
            reason: reason.to_string(),
        };
        let (tls, rest) = if let Some(rest) = url.strip_prefix("mqtts://") {
            (true, rest)
        } else if let Some(rest) = url.strip_prefix("mqtt://") {
            (false, rest)
        } else if let Some(rest) = url.strip_prefix("tcp://") {
            (false, rest)
        } else if url.contains("://") {
            return Err(fail("unsupported scheme"));
        } else {
            (false, url)
        };
        let rest = rest.trim_end_matches('/');
        if rest.contains('/') {
            return Err(fail("a path is not allowed"));
        }
        let default_port = if tls { 8883 } else { 1883 };
        let (host, port) = if let Some(bracketed) = rest.strip_prefix('[') {
            // [IPv6]:port
            let (host, after) = bracketed
                .split_once(']')
                .ok_or_else(|| fail("unclosed '['"))?;
            let port = match after.strip_prefix(':') {
                Some(p) => p.parse().map_err(|_| fail("bad port"))?,
                None if after.is_empty() => default_port,
                None => return Err(fail("garbage after ']'")),
            };
            (host.to_string(), port)
        } else {
            match rest.rsplit_once(':') {
                Some((h, p)) => (h.to_string(), p.parse().map_err(|_| fail("bad port"))?),
                None => (rest.to_string(), default_port),
            }
        };
        if host.is_empty() {
            return Err(fail("missing host"));
        }
        if !is_host(&host) {
            return Err(fail(
                "not a host name or IP address (letters, digits, '-', '_' and '.' only)",
            ));
        }
        Ok(BrokerUrl { host, port, tls })
    }
}

/// An IP address, or a DNS name: dot-separated labels of letters, digits, '-' (and '_', which
/// container runtimes use in service names), each 1 to 63 long, 253 in all. Anything else
/// (spaces, `@`, a stray scheme) would only be retried forever as an unresolvable name.
fn is_host(host: &str) -> bool {
    if host.parse::<std::net::IpAddr>().is_ok() {
        return true;
    }
    host.len() <= 253
        && host.trim_end_matches('.').split('.').all(|label| {
            (1..=63).contains(&label.len())
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

impl fmt::Display for BrokerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.tls { "mqtts" } else { "mqtt" };
        if self.host.contains(':') {
            write!(f, "{scheme}://[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{scheme}://{}:{}", self.host, self.port)
        }
    }
}

/// What an agent announces, retained, while it is connected, and what its last will says.
#[derive(Debug, Clone)]
pub enum Presence {
    /// The standard `agent/{id}/status` ([`AgentStatus`]), online/offline.
    Agent,
    /// Another retained topic with explicit online and offline (last will) payloads.
    Custom {
        /// Topic of the retained status.
        topic: String,
        /// Published (retained) after every connection.
        online: Vec<u8>,
        /// The last will. A clean close publishes it too, unless the agent published its own
        /// retained payload on `topic` ([`Outlet::publish_retained`](super::Outlet)): then that
        /// last word stays (a cabinet's final status says more than its will can).
        offline: Vec<u8>,
    },
}

/// Everything needed to open a session.
#[derive(Clone)]
pub struct BusOptions {
    /// Broker location.
    pub broker: BrokerUrl,
    /// Agent id: the MQTT client id and the `{id}` of its status topic.
    pub id: String,
    /// Agent role (`cabinet`, `averager`, `publisher`, ...).
    pub role: String,
    /// Topic namespace.
    pub topics: Topics,
    /// Optional username.
    pub username: Option<String>,
    /// Optional password (never logged).
    pub password: Option<String>,
    /// CA certificate (PEM) to trust for `mqtts://`.
    pub ca_file: Option<PathBuf>,
    /// MQTT keep-alive.
    pub keep_alive: Duration,
    /// Largest packet sent or received; aligned with the broker's limit.
    pub max_packet_size: usize,
    /// First reconnect delay.
    pub backoff_min: Duration,
    /// Longest reconnect delay.
    pub backoff_max: Duration,
    /// Capacity of the outgoing and incoming queues, in messages.
    pub queue: usize,
    /// What the agent announces and its last will.
    pub presence: Presence,
    /// A message (topic, exact payload) on which the session publishes its retained state
    /// again, as it does after every connection: Home Assistant's birth message
    /// (`homeassistant/status` = `online`). Nothing on that topic is handed to the agent.
    pub republish_on: Option<(String, Vec<u8>)>,
}

impl fmt::Debug for BusOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BusOptions")
            .field("broker", &self.broker.to_string())
            .field("id", &self.id)
            .field("role", &self.role)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("ca_file", &self.ca_file)
            .field("keep_alive", &self.keep_alive)
            .field("max_packet_size", &self.max_packet_size)
            .field("queue", &self.queue)
            .field("republish_on", &self.republish_on.as_ref().map(|(t, _)| t))
            .finish()
    }
}

impl BusOptions {
    /// Options with wattchain's defaults for one agent.
    pub fn new(broker: BrokerUrl, id: &str, role: &str) -> Self {
        BusOptions {
            broker,
            id: id.to_string(),
            role: role.to_string(),
            topics: Topics::default(),
            username: None,
            password: None,
            ca_file: None,
            keep_alive: Duration::from_secs(10),
            max_packet_size: wattchain_broker::DEFAULT_MAX_PACKET_SIZE,
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_secs(10),
            queue: 4096,
            presence: Presence::Agent,
            republish_on: None,
        }
    }

    /// Checks what rumqttc and tokio would otherwise panic on (a keep-alive under a second, an
    /// empty queue) or silently truncate (a keep-alive over MQTT's 16-bit seconds).
    pub fn validate(&self) -> Result<(), ConfigError> {
        let keep_alive = self.keep_alive.as_secs() as usize;
        config::within(
            "keep-alive",
            keep_alive,
            1..=u16::MAX as usize,
            ": MQTT counts it in whole seconds, 16 bits",
        )?;
        config::within("queue", self.queue, 1..=1 << 20, "")?;
        config::within("max-packet-size", self.max_packet_size, 64..=256 << 20, "")?;
        config::positive("backoff-min", self.backoff_min)?;
        config::positive("backoff-max", self.backoff_max)?;
        if self.backoff_min > self.backoff_max {
            return Err(ConfigError::Inconsistent {
                key: "backoff-min",
                reason: format!(
                    "{:?} is longer than the longest reconnect delay {:?}",
                    self.backoff_min, self.backoff_max
                ),
            });
        }
        Ok(())
    }

    pub(super) fn presence_topic_and_payloads(&self) -> (String, Vec<u8>, Vec<u8>) {
        match &self.presence {
            Presence::Agent => (
                self.topics.agent_status(&self.id),
                encode(&AgentStatus::new(
                    PresenceState::Online,
                    &self.id,
                    &self.role,
                )),
                encode(&AgentStatus::new(
                    PresenceState::Offline,
                    &self.id,
                    &self.role,
                )),
            ),
            Presence::Custom {
                topic,
                online,
                offline,
            } => (topic.clone(), online.clone(), offline.clone()),
        }
    }

    pub(super) fn mqtt_options(
        &self,
        offline_topic: &str,
        offline: &[u8],
    ) -> Result<MqttOptions, BusError> {
        let mut o = MqttOptions::new(&self.id, &self.broker.host, self.broker.port);
        o.set_keep_alive(self.keep_alive)
            .set_clean_session(true)
            .set_max_packet_size(self.max_packet_size, self.max_packet_size)
            .set_request_channel_capacity(self.queue)
            .set_last_will(LastWill::new(
                offline_topic,
                offline.to_vec(),
                QoS::AtLeastOnce,
                true,
            ));
        if let (Some(u), p) = (&self.username, &self.password) {
            o.set_credentials(u, p.clone().unwrap_or_default());
        }
        if self.broker.tls {
            let Some(path) = &self.ca_file else {
                return Err(BusError::Tls(
                    "no CA file: pass --ca-file with the broker's CA certificate".into(),
                ));
            };
            let ca = std::fs::read(path).map_err(|source| BusError::CaFile {
                path: path.clone(),
                source,
            })?;
            o.set_transport(Transport::Tls(TlsConfiguration::Rustls(tls_client_config(
                &ca,
            )?)));
        }
        Ok(o)
    }
}

/// A rustls client configuration trusting the PEM certificates in `ca`.
///
/// The crypto provider is named explicitly: with both ring (the broker's) and aws-lc-rs
/// (rumqttc's) compiled in, rustls cannot pick a process default and rumqttc's own
/// `TlsConfiguration::Simple` panics in the session task.
fn tls_client_config(ca: &[u8]) -> Result<Arc<ClientConfig>, BusError> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca) {
        let cert = cert.map_err(|err| BusError::Tls(format!("CA file: {err}")))?;
        roots
            .add(cert)
            .map_err(|err| BusError::Tls(format!("CA file: {err}")))?;
    }
    if roots.is_empty() {
        return Err(BusError::Tls("the CA file holds no PEM certificate".into()));
    }
    let config = ClientConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|err| BusError::Tls(err.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_urls_parse_with_default_ports_and_reject_nonsense() {
        let u: BrokerUrl = "mqtt://10.0.0.5:1884".parse().unwrap();
        assert_eq!((u.host.as_str(), u.port, u.tls), ("10.0.0.5", 1884, false));
        let u: BrokerUrl = "mqtts://broker.example".parse().unwrap();
        assert_eq!((u.port, u.tls), (8883, true));
        let u: BrokerUrl = "localhost".parse().unwrap();
        assert_eq!((u.host.as_str(), u.port), ("localhost", 1883));
        let u: BrokerUrl = "mqtt://[::1]:1999".parse().unwrap();
        assert_eq!((u.host.as_str(), u.port), ("::1", 1999));
        assert_eq!(u.to_string(), "mqtt://[::1]:1999");
        let u: BrokerUrl = "mqtt://broker_1.site-a.example.:1883".parse().unwrap();
        assert_eq!(u.host, "broker_1.site-a.example.");
        for bad in [
            "http://x:1",
            "mqtt://:1883",
            "mqtt://h:port",
            "mqtt://h:1/path",
            "not a url",
            "mqtt://user@host:1883",
            "mqtt://a..b",
            "[::1",
        ] {
            assert!(bad.parse::<BrokerUrl>().is_err(), "{bad}");
        }
    }

    #[test]
    fn options_that_would_panic_in_rumqttc_or_tokio_are_refused() {
        let base = BusOptions::new("localhost".parse().unwrap(), "a1", "averager");
        assert!(base.validate().is_ok());
        let mut o = base.clone();
        o.keep_alive = Duration::from_millis(500);
        assert!(o
            .validate()
            .unwrap_err()
            .to_string()
            .contains("--keep-alive"));
        let mut o = base.clone();
        o.queue = 0;
        assert!(o.validate().unwrap_err().to_string().contains("--queue"));
        let mut o = base;
        o.backoff_min = Duration::from_secs(20);
        assert!(o.validate().is_err());
    }

    #[test]
    fn options_debug_hides_the_password() {
        let mut o = BusOptions::new("localhost".parse().unwrap(), "a1", "averager");
        o.password = Some("hunter2".into());
        assert!(!format!("{o:?}").contains("hunter2"));
    }
}
