//! The independent verifier and chain files, shared by the ledger tests (`ledger_chain`,
//! `pos_chain`, `pbft_chain`): each includes this file alone with `#[path]`, without the rest
//! of the support harness.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use wattchain::ledger::{verify_file, Block, Genesis, VerifyFileError};

/// Runs `scripts/verify_chain.py` on `path`: its exit code and everything it printed.
pub fn python_verify(path: &Path) -> (i32, String) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/verify_chain.py");
    let out = Command::new("python3")
        .arg(script)
        .arg(path)
        .output()
        .expect("python3 runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

/// Writes `g` as `dir/genesis.json` (replacing one there) and `blocks` as `dir/chain.jsonl`,
/// one block per line; returns the chain file's path.
pub fn write_chain(dir: &Path, g: &Genesis, blocks: &[Block]) -> PathBuf {
    let _ = std::fs::remove_file(dir.join("genesis.json"));
    g.write_new(&dir.join("genesis.json")).unwrap();
    let path = dir.join("chain.jsonl");
    let text: String = blocks.iter().map(|b| b.to_json() + "\n").collect();
    std::fs::write(&path, text).unwrap();
    path
}

/// Both verifiers refuse the chain at `path` at block `height` for its consensus proof: the
/// Rust verifier's error contains `rust`, and `verify_chain.py` exits 1 with a line for that
/// block whose text contains `python`. `what` names the case in a failure.
pub fn assert_both_refuse(
    g: &Genesis,
    path: &Path,
    height: u64,
    what: &str,
    rust: &str,
    python: &str,
) {
    match verify_file(g, path) {
        Err(VerifyFileError::Invalid(e)) => {
            let text = e.to_string();
            assert!(
                text.contains(&format!("block {height}")) && text.contains(rust),
                "{what}: {text}"
            );
        }
        other => panic!("{what}: rust accepted or failed otherwise: {other:?}"),
    }
    let (code, text) = python_verify(path);
    assert_eq!(code, 1, "{what}: python: {text}");
    let line = height + 1;
    assert!(
        text.starts_with(&format!("block {height} (line {line}): consensus: "))
            && text.contains(python),
        "{what}: {text}"
    );
}
