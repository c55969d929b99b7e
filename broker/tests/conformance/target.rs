//! The two brokers every case runs against: ours in-process and mosquitto as its own process,
//! each on a free port with the configuration the case needs.

use std::net::SocketAddr;

use tokio::sync::{RwLock, RwLockReadGuard};
use wattchain_broker::{Broker, BrokerConfig, TlsConfig, WsConfig};

use crate::common::*;

/// Held for reading by every broker of ours alive in this test process, and for writing by
/// the port census, which must see no other test's broker among this process's sockets.
pub static OURS_ALIVE: RwLock<()> = RwLock::const_new(());

/// Which broker a case runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `wattchain_broker`, in this process.
    Ours,
    /// mosquitto, the reference.
    Mosquitto,
}

/// What a case needs from the broker's configuration.
#[derive(Clone, Default)]
pub struct Setup {
    /// The wattchain roles of `common::ROLES` as users: anonymous clients are refused.
    pub users: bool,
    /// Ours also listens for TLS and WebSocket (mosquitto: its one listener).
    pub all_listeners: bool,
    /// Extra mosquitto.conf lines.
    pub mosquitto: &'static str,
    /// Changes to our config.
    pub ours: Option<fn(&mut BrokerConfig)>,
    /// Hold [`OURS_ALIVE`] for writing instead of reading.
    pub exclusive: bool,
}

/// A running broker of either kind.
pub struct Target {
    /// Which broker this is.
    pub kind: Kind,
    addr: SocketAddr,
    ours: Option<Broker>,
    mosquitto: Option<MosquittoBroker>,
    ca: Option<std::path::PathBuf>,
    _dir: tempfile::TempDir,
    _alive: Option<Guard>,
}

#[allow(dead_code)]
enum Guard {
    Shared(RwLockReadGuard<'static, ()>),
    Exclusive(tokio::sync::RwLockWriteGuard<'static, ()>),
}

impl Target {
    /// Starts `kind` configured as `setup` says.
    pub async fn start(kind: Kind, setup: &Setup) -> Target {
        match kind {
            Kind::Ours => Target::start_ours(setup).await,
            Kind::Mosquitto => Target::start_mosquitto(setup).await,
        }
    }

    async fn start_ours(setup: &Setup) -> Target {
        let alive = if setup.exclusive {
            Guard::Exclusive(OURS_ALIVE.write().await)
        } else {
            Guard::Shared(OURS_ALIVE.read().await)
        };
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = if setup.users {
            config_with_roles(dir.path())
        } else {
            test_config()
        };
        let mut ca = None;
        if setup.all_listeners {
            let pki = ca_and_server_cert(dir.path());
            ca = Some(pki.ca);
            config.tls = Some(TlsConfig {
                listen: SocketAddr::from(([127, 0, 0, 1], 0)),
                cert: pki.cert,
                key: pki.key,
            });
            config.ws = Some(WsConfig {
                listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            });
        }
        if let Some(change) = setup.ours {
            change(&mut config);
        }
        let broker = start(config).await;
        Target {
            kind: Kind::Ours,
            addr: broker.local_addr(),
            ours: Some(broker),
            mosquitto: None,
            ca,
            _dir: dir,
            _alive: Some(alive),
        }
    }

    async fn start_mosquitto(setup: &Setup) -> Target {
        let mut files = Vec::new();
        let mut conf = String::new();
        if setup.users {
            let users: Vec<(&str, &str)> = ROLES.iter().map(|u| (u.name, u.password)).collect();
            files.push(("passwd", mosquitto_password_file(&users).await));
            conf.push_str("allow_anonymous false\npassword_file {dir}/passwd\n");
        }
        conf.push_str(setup.mosquitto);
        let broker = MosquittoBroker::start(&conf, &files).await;
        Target {
            kind: Kind::Mosquitto,
            addr: broker.addr(),
            ours: None,
            mosquitto: Some(broker),
            ca: None,
            _dir: tempfile::tempdir().expect("tempdir"),
            _alive: None,
        }
    }

    /// The MQTT (3.1.1 and 5) listener.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// True for the reference broker.
    pub fn is_mosquitto(&self) -> bool {
        self.kind == Kind::Mosquitto
    }

    /// Our broker (`None` for mosquitto).
    pub fn ours(&self) -> Option<&Broker> {
        self.ours.as_ref()
    }

    /// The CA certificate that signed our TLS listener's certificate.
    pub fn ca(&self) -> Option<&std::path::Path> {
        self.ca.as_deref()
    }

    /// Every TCP port the broker's process listens on.
    pub fn listening_sockets(&self) -> Vec<SocketAddr> {
        match &self.mosquitto {
            Some(m) => listening_sockets(Some(m.pid())),
            None => listening_sockets(None),
        }
    }

    /// Stops the broker.
    pub async fn stop(mut self) {
        if let Some(broker) = self.ours.take() {
            broker.shutdown().await;
        }
        if let Some(broker) = self.mosquitto.take() {
            broker.stop().await;
        }
    }
}

/// Declares a case's two tests, `<case>::ours` and `<case>::mosquitto`: the same `async fn
/// <case>(&Target)` against each broker, started with the optional `Setup` expression.
macro_rules! both {
    ($case:ident) => {
        both!($case, $crate::conformance::target::Setup::default());
    };
    ($case:ident, $setup:expr) => {
        both!(@ [] $case, $setup);
    };
    // The full counts: `--ignored`.
    (ignored $case:ident) => {
        both!(ignored $case, $crate::conformance::target::Setup::default());
    };
    (ignored $case:ident, $setup:expr) => {
        both!(@ [#[ignore = "full count of issue 11; CI runs a smaller one"]] $case, $setup);
    };
    (@ [$(#[$attr:meta])*] $case:ident, $setup:expr) => {
        mod $case {
            #[allow(unused_imports)]
            use super::*;
            use $crate::conformance::target::{Kind, Target};

            async fn run(kind: Kind) {
                let target = Target::start(kind, &$setup).await;
                super::$case(&target).await;
                target.stop().await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            $(#[$attr])*
            async fn ours() {
                run(Kind::Ours).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            $(#[$attr])*
            async fn mosquitto() {
                run(Kind::Mosquitto).await;
            }
        }
    };
}
pub(crate) use both;
