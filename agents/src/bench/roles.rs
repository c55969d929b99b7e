//! The roles a bench starts in its own process, each on its own MQTT session as in
//! `wattchain up`: sessions that are ready before the role runs, averagers, and cabinet agents
//! whose only replaced part is the Modbus read (a synthetic source).

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use crate::averager::AveragerConfig;
use crate::bus::{BrokerUrl, Bus, BusError, BusOptions, QoS};
use crate::cabinet::{self, CabinetConfig, SourceConfig, SyntheticConfig};
use crate::ledger::Genesis;
use crate::topics::Topics;

/// The embedded broker with its default config on a free loopback port.
pub(crate) async fn loopback_broker(
) -> Result<wattchain_broker::Broker, wattchain_broker::BrokerError> {
    wattchain_broker::start(wattchain_broker::BrokerConfig {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        ..Default::default()
    })
    .await
}

/// How long a bench session has to connect with its subscriptions acknowledged.
pub(crate) const READY: Duration = Duration::from_secs(10);

/// A session on `options`' broker, connected and subscribed before it is returned.
pub(crate) async fn session(
    options: BusOptions,
    subscriptions: Vec<(String, QoS)>,
) -> Result<Bus, BusError> {
    let bus = Bus::connect(options, subscriptions)?;
    bus.wait_ready(READY).await?;
    Ok(bus)
}

/// An averager `id`'s configuration and its ready session.
pub(crate) async fn averager(
    url: &BrokerUrl,
    id: &str,
    topics: &Topics,
) -> Result<(AveragerConfig, Bus), BusError> {
    let config = AveragerConfig::new(id, topics.clone());
    let options = BusOptions::new(url.clone(), &config.id, crate::averager::ROLE);
    let bus = session(options, config.subscriptions()).await?;
    Ok((config, bus))
}

/// What a synthetic cabinet produces.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Load {
    /// Readings per second.
    pub rate: f64,
    /// Samples per window.
    pub window: usize,
    /// The cabinet's tick.
    pub tick: Duration,
    /// Most readings in all (none: until stopped).
    pub limit: Option<u64>,
}

/// A cabinet agent with a synthetic source, ready to [`cabinet::run`].
pub(crate) struct SyntheticCabinet {
    /// Its configuration.
    pub config: CabinetConfig,
    /// Its main session.
    pub bus: Bus,
    /// Its status session.
    pub status_bus: Bus,
}

impl SyntheticCabinet {
    /// Cabinet `id` under `genesis`, its outbox in `dir/cabinet/{id}`, both sessions ready.
    pub(crate) async fn connect(
        url: &BrokerUrl,
        id: &str,
        dir: &Path,
        genesis: &Genesis,
        load: Load,
    ) -> Result<SyntheticCabinet, BusError> {
        let mut config = CabinetConfig::new(
            id,
            SocketAddr::from(([127, 0, 0, 1], 0)),
            dir.join("cabinet").join(id),
        );
        config.period = load.tick;
        config.window = load.window;
        config.genesis = Some(genesis.clone());
        config.source = SourceConfig::Synthetic(SyntheticConfig::new(load.rate, load.limit));
        let options = BusOptions::new(url.clone(), &config.agent_id(), cabinet::ROLE);
        let status_bus = Bus::connect(config.status_bus_options(&options), vec![])?;
        let bus = Bus::connect(options, config.subscriptions())?;
        status_bus.wait_ready(READY).await?;
        bus.wait_ready(READY).await?;
        Ok(SyntheticCabinet {
            config,
            bus,
            status_bus,
        })
    }
}
