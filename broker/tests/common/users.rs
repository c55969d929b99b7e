//! Users files written the way an operator would: hashed passwords and role permissions.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use wattchain_broker::BrokerConfig;

use super::test_config;

/// One user to write into a users file.
pub struct TestUser<'a> {
    /// Username.
    pub name: &'a str,
    /// Plain password (only its hash is written).
    pub password: &'a str,
    /// Publish filters.
    pub publish: &'a [&'a str],
    /// Subscribe filters; `None` leaves the key out.
    pub subscribe: Option<&'a [&'a str]>,
}

/// The roles of a wattchain deployment, with password = "{name}-secret".
pub const ROLES: &[TestUser<'static>] = &[
    TestUser {
        name: "cabinet-c1",
        password: "cabinet-c1-secret",
        publish: &["wattchain/cabinet/c1/#", "wattchain/agent/%u/status"],
        subscribe: Some(&["wattchain/ledger/block"]),
    },
    TestUser {
        name: "averager",
        password: "averager-secret",
        publish: &["wattchain/cabinet/+/average/+"],
        subscribe: Some(&["wattchain/cabinet/+/window/+"]),
    },
    TestUser {
        name: "publisher",
        password: "publisher-secret",
        publish: &["wattchain/ledger/#", "wattchain/agent/%u/status"],
        subscribe: None,
    },
    TestUser {
        name: "watcher",
        password: "watcher-secret",
        publish: &[],
        subscribe: None,
    },
];

fn list(filters: &[&str]) -> String {
    let quoted: Vec<String> = filters.iter().map(|f| format!("{f:?}")).collect();
    format!("[{}]", quoted.join(", "))
}

/// Writes `dir/users.toml` with argon2 hashes of the passwords and returns its path.
pub fn write_users_file(dir: &Path, users: &[TestUser<'_>]) -> PathBuf {
    let mut text = String::new();
    for user in users {
        let hash = wattchain_broker::hash_password(user.password).expect("hash");
        let _ = writeln!(text, "[[users]]\nusername = {:?}", user.name);
        let _ = writeln!(text, "password_hash = {hash:?}");
        let _ = writeln!(text, "publish = {}", list(user.publish));
        if let Some(subscribe) = user.subscribe {
            let _ = writeln!(text, "subscribe = {}", list(subscribe));
        }
    }
    let path = dir.join("users.toml");
    std::fs::write(&path, text).expect("write users file");
    path
}

/// A test config reading the wattchain roles from a users file in `dir`.
pub fn config_with_roles(dir: &Path) -> BrokerConfig {
    BrokerConfig {
        users_file: Some(write_users_file(dir, ROLES)),
        ..test_config()
    }
}
