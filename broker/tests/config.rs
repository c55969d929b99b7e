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

#[test]
fn limits_are_read_with_human_durations_and_bad_ones_refused_naming_the_key() {
    let parse = |limits: &str| -> Result<BrokerConfig, ConfigError> {
        let mut file = tempfile::NamedTempFile::new().expect("temp file");
        writeln!(file, "[limits]\n{limits}").expect("write");
        BrokerConfig::from_file(file.path())
    };
    let config = parse("max_inflight = 20\nmax_queued_messages = 5000\nsession_expiry = \"5m\"")
        .expect("valid limits");
    assert_eq!(config.limits.max_inflight, 20);
    assert_eq!(config.limits.max_queued_messages, 5000);
    assert_eq!(
        config.limits.session_expiry,
        std::time::Duration::from_secs(300)
    );
    assert_eq!(
        config.limits.max_subscriptions,
        wattchain_broker::Limits::default().max_subscriptions,
        "keys not given keep their defaults"
    );
    for (bad, why) in [
        ("max_inflight = 0", "max_inflight"),
        ("max_queued_messages = 0", "max_queued_messages"),
        ("max_client_id_len = 10", "max_client_id_len"),
        ("max_retained_messages = 0", "max_retained_messages"),
        (
            "session_expiry = \"2d\"\nmax_session_expiry = \"1d\"",
            "max_session_expiry",
        ),
        ("max_inflight = 70000", "max_inflight"),
        ("max_inflgiht = 10", "max_inflgiht"),
    ] {
        let err = parse(bad).expect_err(bad);
        assert!(err.to_string().contains(why), "{bad}: {err}");
    }
}
