//! `--help` shows each flag's default, taken from the one place defaults live
//! ([`WattchainConfig::default()`]): the flags themselves carry none, so that a flag not given
//! leaves the configuration file's value in place.

use clap::{Arg, ArgAction, Command};
use toml::{Table, Value};
use wattchain::config::{render, WattchainConfig};

/// The sections a subcommand's flags are read from, first match wins (a flag `--x-y` is the
/// key `x_y`; in `[ha]`, `--ha-prefix` is `prefix`). `broker` holds only its `listen`.
const FLAG_SECTIONS: &[(&str, &[&str])] = &[
    (
        "up",
        &[
            "broker", "up", "cabinet", "averager", "node", "bus", "ha", "web",
        ],
    ),
    ("broker", &["broker"]),
    ("cabinet", &["cabinet", "bus", "ha"]),
    ("sim", &["simulator"]),
    ("averager", &["averager", "bus"]),
    ("node", &["node", "bus", "ha", "web"]),
    ("publisher", &["publisher", "node", "bus", "ha", "web"]),
    ("web", &["web", "bus"]),
];

/// `command` with `[default: …]` appended to the help of every flag that has one.
pub(crate) fn with_defaults(mut command: Command) -> Command {
    let mut defaults =
        Table::try_from(WattchainConfig::default()).expect("the default configuration serializes");
    let mut broker = Table::new();
    broker.insert(
        "listen".into(),
        Value::String(wattchain_broker::BrokerConfig::default().listen.to_string()),
    );
    defaults.insert("broker".into(), Value::Table(broker));
    for (name, sections) in FLAG_SECTIONS {
        command = command.mut_subcommand(name, |sub| annotate(sub, sections, &defaults));
    }
    command
}

fn annotate(command: Command, sections: &[&str], defaults: &Table) -> Command {
    let command = command.mut_args(|arg| match default_of(&arg, sections, defaults) {
        Some(default) => with_default(arg, &default),
        None => arg,
    });
    // Nested subcommands (`cabinet churn`, `cabinet forget`) read the same sections.
    let names: Vec<String> = command
        .get_subcommands()
        .map(|c| c.get_name().to_string())
        .collect();
    names.iter().fold(command, |c, name| {
        c.mut_subcommand(name, |sub| annotate(sub, sections, defaults))
    })
}

/// The default of `arg` as a user types it, from the first section that has its key.
fn default_of(arg: &Arg, sections: &[&str], defaults: &Table) -> Option<String> {
    let long = arg.get_long()?;
    if !arg.get_default_values().is_empty() || arg.is_global_set() {
        return None;
    }
    for section in sections {
        let key = match *section {
            "ha" => long.strip_prefix("ha-")?.replace('-', "_"),
            _ => long.replace('-', "_"),
        };
        let table = defaults.get(*section).and_then(Value::as_table);
        let known = match *section {
            "broker" => table.is_some_and(|t| t.contains_key(&key)),
            _ => render::documented_keys(section).any(|k| k == key),
        };
        if known {
            // A key unset by default (`None`) is not in the table: nothing to show.
            return shown(table?.get(&key)?, arg);
        }
    }
    None
}

fn shown(value: &Value, arg: &Arg) -> Option<String> {
    Some(match value {
        Value::String(s) => s.clone(),
        // An on/off switch; a presence flag (`--no-noise`) has no default worth showing.
        Value::Boolean(_) if matches!(arg.get_action(), ArgAction::SetTrue) => return None,
        Value::Boolean(b) => if *b { "on" } else { "off" }.to_string(),
        Value::Array(items) => items
            .iter()
            .map(|v| shown(v, arg))
            .collect::<Option<Vec<_>>>()?
            .join(","),
        Value::Table(_) | Value::Datetime(_) => return None,
        other => other.to_string(),
    })
}

fn with_default(arg: Arg, default: &str) -> Arg {
    let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
    let long = arg.get_long_help().map(|h| h.to_string());
    let arg = arg.help(format!("{help} [default: {default}]"));
    match long {
        Some(long) => arg.long_help(format!("{long}\n\n[default: {default}]")),
        None => arg,
    }
}
