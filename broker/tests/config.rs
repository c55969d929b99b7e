//! The configuration file format: defaults, the embedded default TOML, and errors.

use std::io::Write;

use wattchain_broker::{default_config_toml, BrokerConfig, ConfigError, DEFAULT_MAX_PACKET_SIZE};

#[test]
fn default_config_toml_parses_to_the_default_config() {
    let parsed: BrokerConfig = toml::from_str(default_config_toml()).expect("default TOML parses");
    assert_eq!(parsed, BrokerConfig::default());
    assert_eq!(parsed.max_packet_size, DEFAULT_MAX_PACKET_SIZE);
    parsed.validate().expect("default config is valid");
}

#[test]
fn from_file_reads_inline_hashed_users_and_durations() {
    let hash = wattchain_broker::hash_password("p").expect("hash");
    let mut file = tempfile::NamedTempFile::new().expect("temp file");
    writeln!(
        file,
        "listen = \"0.0.0.0:1884\"\nconnect_timeout = \"3s\"\n[[users]]\nusername = \"u\"\npassword_hash = {hash:?}\npublish = [\"a/#\"]"
    )
    .expect("write");
    let config = BrokerConfig::from_file(file.path()).expect("valid file");
    assert_eq!(config.listen.port(), 1884);
    assert_eq!(config.connect_timeout, std::time::Duration::from_secs(3));
    assert_eq!(config.users.len(), 1);
    assert!(config.users[0].permissions().may_publish("a/b"));
    assert!(
        !format!("{config:?}").contains(&hash),
        "Debug hides the hash"
    );
}

#[test]
fn a_plaintext_password_in_the_config_is_rejected_with_the_path() {
    let mut file = tempfile::NamedTempFile::new().expect("temp file");
    writeln!(file, "[[users]]\nusername = \"u\"\npassword = \"p\"").expect("write");
    let err = BrokerConfig::from_file(file.path()).expect_err("plaintext rejected");
    assert!(matches!(err, ConfigError::Parse { .. }), "{err}");
}

#[test]
fn from_file_reports_unknown_keys_with_the_path() {
    let mut file = tempfile::NamedTempFile::new().expect("temp file");
    writeln!(file, "max_conections = 5").expect("write");
    let err = BrokerConfig::from_file(file.path()).expect_err("typo rejected");
    assert!(matches!(err, ConfigError::Parse { .. }));
    assert!(err.to_string().contains(&file.path().display().to_string()));
}

#[test]
fn validate_rejects_zero_connections() {
    let config = BrokerConfig {
        max_connections: 0,
        ..BrokerConfig::default()
    };
    assert!(matches!(config.validate(), Err(ConfigError::Invalid(_))));
}
