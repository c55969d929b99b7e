//! Shared helpers for the simulator tests: start a real simulator on 127.0.0.1:0 and stop it.

#![allow(dead_code)] // Each test file uses a different subset.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use wattchain::modbus::ModbusCabinet;
use wattchain::regmap::{RegisterMap, Switches};
use wattchain::sim::{SimConfig, SimError, Simulator};

/// Upper bound on any single wait in these tests.
pub const BOUND: Duration = Duration::from_secs(5);

/// Client request timeout used unless a test is about timeouts.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// A simulator serving on a loopback port.
pub struct Running {
    pub sim: Simulator,
    pub addr: SocketAddr,
    shutdown: CancellationToken,
    task: JoinHandle<Result<(), SimError>>,
}

/// Noise and drift off, so readings equal the hand-computed values.
pub fn exact(initial: Switches) -> SimConfig {
    SimConfig {
        map: RegisterMap::default_sim(),
        seed: Some(1),
        noise: false,
        churn: None,
        initial,
    }
}

/// Switches with loads `on` (numbered 1..=7) connected to `source`.
pub fn with_loads(on: &[usize], source: u8) -> Switches {
    let mut s = Switches {
        source,
        ..Switches::default()
    };
    for &k in on {
        s.loads[k - 1] = true;
    }
    s
}

/// Binds 127.0.0.1:0 and serves `config` there.
pub async fn start(config: SimConfig) -> Running {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let addr = listener.local_addr().expect("local addr");
    let sim = Simulator::new(config);
    let shutdown = CancellationToken::new();
    let task = {
        let sim = sim.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move { sim.serve(listener, shutdown).await })
    };
    Running {
        sim,
        addr,
        shutdown,
        task,
    }
}

impl Running {
    /// A client on the simulator's map.
    pub async fn connect(&self) -> ModbusCabinet {
        self.connect_with(self.sim.map().clone(), REQUEST_TIMEOUT)
            .await
    }

    /// A client with its own map and timeout.
    pub async fn connect_with(&self, map: RegisterMap, timeout: Duration) -> ModbusCabinet {
        ModbusCabinet::connect(self.addr, map, timeout)
            .await
            .expect("connect to simulator")
    }

    /// A bare tokio-modbus client, for requests the cabinet client never sends.
    pub async fn raw(&self) -> tokio_modbus::client::Context {
        tokio::time::timeout(BOUND, tokio_modbus::client::tcp::connect(self.addr))
            .await
            .expect("connect within bound")
            .expect("connect")
    }

    /// Fires shutdown and checks `serve` returns cleanly.
    pub async fn stop(self) {
        self.shutdown.cancel();
        let result = tokio::time::timeout(BOUND, self.task)
            .await
            .expect("serve returns after shutdown")
            .expect("serve task did not panic");
        assert!(result.is_ok(), "serve failed: {result:?}");
    }
}

/// Asserts `actual` is within `tol` of `expected`.
pub fn assert_close(what: &str, actual: f64, expected: f64, tol: f64) {
    assert!(
        (actual - expected).abs() <= tol,
        "{what}: got {actual}, expected {expected} ± {tol}"
    );
}
