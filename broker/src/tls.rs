//! TLS termination for the front door's optional TLS listener (rustls with the ring provider).

use std::fs::File;
use std::io::BufReader;
use std::path::Path;
use std::sync::Arc;

use tokio_rustls::rustls::crypto::ring;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::TlsAcceptor;

use crate::config::TlsConfig;
use crate::error::BrokerError;

/// Builds an acceptor from the PEM certificate chain and key named in the config.
pub(crate) fn acceptor(config: &TlsConfig) -> Result<TlsAcceptor, BrokerError> {
    let certs = load_certs(&config.cert)?;
    let key = load_key(&config.key)?;
    // An explicit provider: the process default is ambiguous when another dependency enables
    // aws-lc-rs as well.
    let server = ServerConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|err| BrokerError::Tls(err.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|err| BrokerError::Tls(format!("{}: {err}", config.cert.display())))?;
    Ok(TlsAcceptor::from(Arc::new(server)))
}

fn open(path: &Path) -> Result<BufReader<File>, BrokerError> {
    File::open(path)
        .map(BufReader::new)
        .map_err(|err| BrokerError::Tls(format!("cannot open {}: {err}", path.display())))
}

fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, BrokerError> {
    let certs = rustls_pemfile::certs(&mut open(path)?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| BrokerError::Tls(format!("{}: {err}", path.display())))?;
    if certs.is_empty() {
        return Err(BrokerError::Tls(format!(
            "{} holds no PEM certificate",
            path.display()
        )));
    }
    Ok(certs)
}

fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, BrokerError> {
    rustls_pemfile::private_key(&mut open(path)?)
        .map_err(|err| BrokerError::Tls(format!("{}: {err}", path.display())))?
        .ok_or_else(|| BrokerError::Tls(format!("{} holds no PEM private key", path.display())))
}
