//! The broker's error type: what `start` can fail with.

use std::net::SocketAddr;

use crate::auth::AuthError;
use crate::config::ConfigError;

/// Why the broker could not start.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// A public listener could not bind its address.
    #[error(
        "cannot listen on {addr} (port {port}): {source}; is another broker running there? \
         choose another address with --listen",
        port = addr.port()
    )]
    Bind {
        /// The address that could not be bound.
        addr: SocketAddr,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// The embedded engine (rmqtt) refused its setup: a plugin or a listener.
    #[error("embedded MQTT engine setup failed: {0}")]
    Engine(String),
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The users' password verifier could not be set up.
    #[error("authentication setup failed: {0}")]
    Auth(#[from] AuthError),
    /// The engine's own runtime (its threads) could not be started.
    #[error("cannot start the broker's threads: {0}")]
    Runtime(std::io::Error),
    /// The TLS certificate or key cannot be used.
    #[error("TLS setup failed: {0}")]
    Tls(String),
}
