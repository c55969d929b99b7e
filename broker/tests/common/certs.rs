//! A test CA and a server certificate it signed for 127.0.0.1, made with the openssl command.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The files a TLS deployment has: the CA certificate clients trust, the server's chain and key.
pub struct TestPki {
    /// CA certificate (PEM), for `--cafile` / `--ca-file`.
    pub ca: PathBuf,
    /// Server certificate (PEM) signed by the CA, valid for IP 127.0.0.1.
    pub cert: PathBuf,
    /// Server private key (PEM).
    pub key: PathBuf,
}

fn openssl(args: &[&str], dir: &Path) {
    let status = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("openssl must be installed for the TLS tests");
    assert!(status.success(), "openssl {args:?} succeeded");
}

/// Writes a CA and a server certificate signed by it into `dir` (fails the test on error).
pub fn ca_and_server_cert(dir: &Path) -> TestPki {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let mut ca = vec![
        "req",
        "-x509",
        "-days",
        "1",
        "-subj",
        "/CN=wattchain test CA",
    ];
    ca.extend(ec);
    ca.extend(["-keyout", "ca.key", "-out", "ca.pem"]);
    openssl(&ca, dir);
    let mut csr = vec!["req", "-new", "-subj", "/CN=127.0.0.1"];
    csr.extend(ec);
    csr.extend(["-keyout", "server.key", "-out", "server.csr"]);
    openssl(&csr, dir);
    std::fs::write(dir.join("server.ext"), "subjectAltName=IP:127.0.0.1\n").expect("ext file");
    openssl(
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "1",
            "-extfile",
            "server.ext",
            "-out",
            "server.pem",
        ],
        dir,
    );
    TestPki {
        ca: dir.join("ca.pem"),
        cert: dir.join("server.pem"),
        key: dir.join("server.key"),
    }
}
