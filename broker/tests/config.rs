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
fn filter_segments_are_read_and_bad_ones_refused_with_the_pattern() {
    let parse = |extra: &str| -> Result<BrokerConfig, ConfigError> {
        let mut file = tempfile::NamedTempFile::new().expect("temp file");
        writeln!(file, "[rumqttd]\n{extra}").expect("write");
        BrokerConfig::from_file(file.path())
    };
    let config = parse(
        "[[rumqttd.filter_segments]]\nfilter = \"site/+/commit\"\nmax_segment_size = 2048\nmax_segment_count = 2",
    )
    .expect("a small log for one pattern is valid");
    let only = &config.rumqttd.filter_segments;
    assert_eq!(only.len(), 1, "the file's list replaces the default one");
    assert_eq!(
        (
            only[0].filter.as_str(),
            only[0].max_segment_size,
            only[0].max_segment_count
        ),
        ("site/+/commit", 2048, 2)
    );
    for (bad, why) in [
        (
            "filter = \"a/#/b\"\nmax_segment_size = 2048\nmax_segment_count = 2",
            "a/#/b",
        ),
        (
            "filter = \"a/b+\"\nmax_segment_size = 2048\nmax_segment_count = 2",
            "a/b+",
        ),
        (
            "filter = \"a/+\"\nmax_segment_size = 512\nmax_segment_count = 2",
            "1024",
        ),
        (
            "filter = \"a/+\"\nmax_segment_size = 2048\nmax_segment_count = 0",
            "at least 1",
        ),
    ] {
        let err = parse(&format!("[[rumqttd.filter_segments]]\n{bad}")).expect_err(bad);
        assert!(err.to_string().contains(why), "{bad}: {err}");
    }
}
