//! `wattchain generate-config`: the whole `wattchain.toml` with every default, commented.
//!
//! The values are not written here: they are serialized from [`WattchainConfig::default()`],
//! the one place they live; this file holds only what each key means. The `[broker]` section
//! is the broker crate's own commented default, its tables moved under `broker.`.

use super::file::{WattchainConfig, SECTIONS};

/// One key: its name, what it means, and an example for a key unset by default.
type KeyDoc = (&'static str, &'static str, &'static str);

/// What each section is for, and its keys in the order printed.
const DOCS: &[(&str, &str, &[KeyDoc])] = &[
    (
        "bus",
        "How every agent reaches the broker, and the topic namespace (`wattchain up` uses root, \
         quad_qos and the credentials with its embedded broker).",
        &[
            ("broker", "Broker URL: mqtt://HOST:PORT, or mqtts://HOST:PORT for TLS.", ""),
            ("username", "MQTT username.", "\"cabinet-c1\""),
            (
                "password",
                "MQTT password (keep this file private, or use WATTCHAIN_PASSWORD).",
                "\"secret\"",
            ),
            ("ca_file", "CA certificate (PEM) to trust for mqtts://.", "\"ca.pem\""),
            ("root", "Root of every topic.", ""),
            ("quad_qos", "QoS of the cabinets' quadruplets (0 or 1).", ""),
        ],
    ),
    (
        "ha",
        "Home Assistant MQTT discovery, announced by cabinets and nodes.",
        &[
            (
                "discovery",
                "true publishes retained discovery configs (a device per cabinet, its sensors, \
                 the ledger); false removes them from Home Assistant.",
                "",
            ),
            ("prefix", "Home Assistant's discovery prefix (as set in its MQTT options).", ""),
        ],
    ),
    (
        "cabinet",
        "`wattchain cabinet`; `wattchain up`'s cabinet reads the timings too.",
        &[
            ("id", "Cabinet id (letters, digits, '-', '_'); required.", "\"c1\""),
            (
                "modbus",
                "The PLC (or simulator) Modbus TCP address; required.",
                "\"192.168.1.10:502\"",
            ),
            ("period", "Poll period.", ""),
            ("window", "Samples per window (1..=10000).", ""),
            (
                "data_dir",
                "Directory of the outbox journal (default: data/cabinet/ID).",
                "\"/var/lib/wattchain/cabinet/c1\"",
            ),
            ("commit_deadline", "A window not committed by then is published again.", ""),
            (
                "outbox_capacity",
                "Most uncommitted windows kept before the oldest is dead-lettered.",
                "",
            ),
            ("modbus_timeout", "Bound on each Modbus request.", ""),
            (
                "map",
                "Register map (TOML, see agents/maps/); default: the simulator's map.",
                "\"agents/maps/pfc200-example.toml\"",
            ),
            (
                "genesis",
                "The chain's genesis.json (required): windows leave the outbox only when final \
                 under its rules.",
                "\"genesis.json\"",
            ),
            (
                "energy_every",
                "How often the energy total is saved (DATA_DIR/energy.json) and published.",
                "",
            ),
        ],
    ),
    (
        "simulator",
        "`wattchain sim`, the cabinet simulator (a Modbus TCP server).",
        &[
            ("listen", "Modbus TCP address to serve (port 0 picks a free one).", ""),
            ("map", "Register map (TOML); default: the built-in map.", "\"map.toml\""),
            (
                "churn",
                "Toggle a random load every period (\"2s\"), or a random period in a range \
                 (\"1s..5s\"); \"off\" for none.",
                "",
            ),
            ("seed", "Seed for noise, drift and churn.", "7"),
            ("no_noise", "No noise and drift: readings equal the ideal physics.", ""),
        ],
    ),
    (
        "averager",
        "`wattchain averager`; `wattchain up`'s averagers read it too.",
        &[
            ("id", "Agent id (default: averager-HOST-PID).", "\"averager-1\""),
            ("quantities", "Quantities to serve.", ""),
            ("delay", "Delay each task (fault drills: a slow averager).", ""),
        ],
    ),
    (
        "node",
        "`wattchain node` and `wattchain publisher`; `wattchain up`'s nodes read the limits.",
        &[
            (
                "id",
                "Node id: its MQTT client id, unique on the broker (default: node, or publisher).",
                "\"node-a\"",
            ),
            ("data_dir", "Directory of genesis.json, node.key and chain.jsonl.", ""),
            (
                "genesis",
                "The genesis to follow, copied into the data directory on first start.",
                "\"genesis.json\"",
            ),
            (
                "max_records_per_block",
                "Most records per block this node builds (at most the genesis's).",
                "",
            ),
            (
                "max_pending",
                "Most windows in progress before the oldest partial one is dropped.",
                "",
            ),
            ("threads", "Mining threads (0: every core).", ""),
            (
                "http",
                "Also serve the HTTP API, dashboard and /metrics on this address (\"off\": no).",
                "",
            ),
        ],
    ),
    (
        "publisher",
        "`wattchain publisher`: one node that creates its own genesis (it reads [node] too).",
        &[(
            "difficulty",
            "Difficulty of the genesis created when the data directory has none and no genesis \
             is given: leading zero bits of every block hash.",
            "",
        )],
    ),
    (
        "web",
        "`wattchain web`; http_token and http_cors protect every process's HTTP API.",
        &[
            (
                "chain",
                "The chain file `wattchain web` serves (a node's DATA_DIR/chain.jsonl).",
                "\"data/chain.jsonl\"",
            ),
            ("id", "Agent id of `wattchain web`'s MQTT session.", ""),
            ("http", "Address of `wattchain web` (port 0 picks a free one).", ""),
            (
                "http_token",
                "Bearer token every API request must carry (Authorization: Bearer TOKEN). Without \
                 it, serving beyond loopback exposes the data to anyone who can reach the port.",
                "\"a-long-random-string\"",
            ),
            (
                "http_cors",
                "Origins allowed cross-origin API requests (\"*\" for any); empty: off.",
                "",
            ),
        ],
    ),
    (
        "up",
        "`wattchain up`: what only it has. Its broker, cabinet, averagers, nodes and simulator \
         also read [broker] (its listen address is up's), [cabinet], [averager], [node] and \
         [simulator] (no_noise).",
        &[
            ("cabinet", "Cabinet id.", ""),
            (
                "nodes",
                "Ledger nodes, each with its own key and data directory (DATA_DIR/node-N).",
                "",
            ),
            (
                "averagers",
                "Averaging agents (0 leaves the work to averagers started elsewhere).",
                "",
            ),
            (
                "data_dir",
                "Where the genesis, the nodes' chains and the cabinet's outbox are written.",
                "",
            ),
            (
                "difficulty",
                "Proof of work of a genesis created on first start: leading zero bits of each \
                 block hash.",
                "",
            ),
            (
                "churn",
                "Simulator load churn: a period (\"2s\") or a range (\"1s..5s\"); \"off\" for none.",
                "",
            ),
            ("seed", "Seed for the simulator (noise and churn), for reproducible runs.", "7"),
            (
                "http",
                "HTTP API, dashboard and /metrics address (\"off\": none; port 0 picks a free one).",
                "",
            ),
        ],
    ),
];

const HEADER: &str = "\
# wattchain configuration: every key, with its default. Every section and key is optional.
# Each subcommand reads this file with `--config FILE` (or WATTCHAIN_CONFIG); a flag given on
# the command line overrides the file, and the file overrides these defaults. Keys are named as
# the flags (`--commit-deadline` is `commit_deadline`); durations are humane (\"500ms\", \"1m\").
# Unknown keys are refused.
";

/// The commented default file.
pub fn default_toml() -> String {
    let defaults = toml::Table::try_from(WattchainConfig::default())
        .expect("the default configuration serializes");
    let mut out = String::from(HEADER);
    for &section in SECTIONS {
        out.push('\n');
        if section == "broker" {
            out.push_str(
                "# The broker: `wattchain broker`, and the one `wattchain up` embeds (its\n\
                 # listen address is up's --listen).\n[broker]\n",
            );
            out.push_str(&nest_tables(
                "broker",
                wattchain_broker::default_config_toml(),
            ));
            continue;
        }
        let (_, intro, keys) = DOCS
            .iter()
            .find(|(name, _, _)| *name == section)
            .expect("every section is documented");
        comment(&mut out, intro);
        out.push_str(&format!("[{section}]\n"));
        let values = defaults.get(section).and_then(|v| v.as_table());
        for (key, doc, example) in keys.iter() {
            out.push('\n');
            comment(&mut out, doc);
            match values.and_then(|t| t.get(*key)) {
                Some(value) => out.push_str(&format!("{key} = {value}\n")),
                None => out.push_str(&format!("# {key} = {example}\n")),
            }
        }
    }
    out
}

/// `text` as `#` lines of at most ~92 columns.
fn comment(out: &mut String, text: &str) {
    let mut line = String::from("#");
    for word in text.split_whitespace() {
        if line.len() + 1 + word.len() > 92 && line.len() > 1 {
            out.push_str(&line);
            out.push('\n');
            line = String::from("#");
        }
        line.push(' ');
        line.push_str(word);
    }
    out.push_str(&line);
    out.push('\n');
}

/// A TOML document's tables moved under `prefix`: `[tls]` becomes `[broker.tls]`, also in
/// commented-out examples (`# [[users]]`), so the document can follow a `[broker]` header.
fn nest_tables(prefix: &str, text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 64);
    for line in text.lines() {
        let (lead, rest) = match line.strip_prefix("# ") {
            Some(rest) => ("# ", rest),
            None => ("", line),
        };
        let header = rest.trim_end();
        let nested =
            if let Some(name) = header.strip_prefix("[[").and_then(|h| h.strip_suffix("]]")) {
                is_table_name(name).then(|| format!("{lead}[[{prefix}.{name}]]"))
            } else if let Some(name) = header.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
                is_table_name(name).then(|| format!("{lead}[{prefix}.{name}]"))
            } else {
                None
            };
        out.push_str(nested.as_deref().unwrap_or(line));
        out.push('\n');
    }
    out
}

fn is_table_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

/// The documented keys of `section` (for the command line's help).
pub fn documented_keys<'a>(section: &'a str) -> impl Iterator<Item = &'static str> + 'a {
    DOCS.iter()
        .filter(move |(name, _, _)| *name == section)
        .flat_map(|(_, _, keys)| keys.iter().map(|(key, _, _)| *key))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::file::*;

    #[test]
    fn the_generated_file_parses_back_to_exactly_the_defaults() {
        let text = default_toml();
        let parsed = WattchainConfig::from_toml(&text, Path::new("generated.toml"))
            .unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(parsed, WattchainConfig::default());
        assert!(text.contains("[broker]\n"), "{text}");
        assert!(text.contains("\n[cabinet]\n"), "{text}");
    }

    #[test]
    fn every_key_of_every_section_is_documented_and_every_example_is_a_valid_value() {
        let fields: &[(&str, &[&str])] = &[
            ("bus", fields_of::<BusSection>()),
            ("ha", fields_of::<HaSection>()),
            ("cabinet", fields_of::<CabinetSection>()),
            ("simulator", fields_of::<SimulatorSection>()),
            ("averager", fields_of::<AveragerSection>()),
            ("node", fields_of::<NodeSection>()),
            ("publisher", fields_of::<PublisherSection>()),
            ("web", fields_of::<WebSection>()),
            ("up", fields_of::<UpSection>()),
        ];
        for (section, keys) in fields {
            let documented: Vec<&str> = documented_keys(section).collect();
            assert_eq!(
                &documented, keys,
                "[{section}]: documented keys, in field order"
            );
        }
        // A key unset by default is shown as a commented example: uncommented, it must parse.
        let text = default_toml();
        let mut current = String::new();
        for line in text.lines() {
            if let Some(section) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                current = section.to_string();
            }
            let Some(example) = line.strip_prefix("# ") else {
                continue;
            };
            let Some((key, value)) = example.split_once(" = ") else {
                continue;
            };
            if current.starts_with("broker") || key.contains(' ') {
                continue;
            }
            assert!(!value.is_empty(), "[{current}] {key} has no example");
            let one = format!("[{current}]\n{key} = {value}\n");
            WattchainConfig::from_toml(&one, Path::new("example.toml"))
                .unwrap_or_else(|e| panic!("{one}: {e}"));
        }
    }

    #[test]
    fn broker_tables_are_moved_under_the_broker_section() {
        let nested = nest_tables(
            "broker",
            "a = 1\n# [tls]\n[rumqttd]\n[[x.y]]\n# see [[users]] below\n",
        );
        assert_eq!(
            nested,
            "a = 1\n# [broker.tls]\n[broker.rumqttd]\n[[broker.x.y]]\n# see [[users]] below\n"
        );
    }

    /// The field names of a struct, as serde knows them (the names a file may use).
    fn fields_of<'de, T: serde::Deserialize<'de>>() -> &'static [&'static str] {
        struct Fields(Option<&'static [&'static str]>);
        #[derive(Debug)]
        struct Stop;
        impl std::fmt::Display for Stop {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("stop")
            }
        }
        impl std::error::Error for Stop {}
        impl serde::de::Error for Stop {
            fn custom<M: std::fmt::Display>(_: M) -> Self {
                Stop
            }
        }
        impl<'de> serde::Deserializer<'de> for &mut Fields {
            type Error = Stop;
            fn deserialize_any<V: serde::de::Visitor<'de>>(self, _: V) -> Result<V::Value, Stop> {
                Err(Stop)
            }
            fn deserialize_struct<V: serde::de::Visitor<'de>>(
                self,
                _: &'static str,
                fields: &'static [&'static str],
                _: V,
            ) -> Result<V::Value, Stop> {
                self.0 = Some(fields);
                Err(Stop)
            }
            serde::forward_to_deserialize_any! {
                bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes
                byte_buf option unit unit_struct newtype_struct seq tuple tuple_struct map enum
                identifier ignored_any
            }
        }
        let mut fields = Fields(None);
        let _ = T::deserialize(&mut fields);
        fields.0.expect("a struct")
    }
}
