//! The acquisition loop: one steady tick per period, one Modbus read per tick, windows into the
//! outbox, commits out of it, and the cabinet's retained status.

use std::collections::VecDeque;
use std::time::Duration;

use thiserror::Error;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use super::config::CabinetConfig;
use super::energy::{EnergyError, EnergyMeter};
use super::finality::{BlockRefusal, Finality, Outcome};
use super::outbox::{Outbox, OutboxError};
use super::source::{SourceConfig, Synthetic};
use super::window::WindowCutter;
use crate::bus::{Bus, Outlet, QoS};
use crate::config::ConfigError;
use crate::ha;
use crate::messages::{
    encode, format_ts, now_ts, CabinetStatus, DeadLetter, Presence, Quadruplet, WindowTask,
};
use crate::modbus::{ModbusCabinet, ModbusError};
use crate::regmap::{Measurement, Switches};

/// The role name, used in status and dead-letter topics.
pub const ROLE: &str = "cabinet";

/// Failures that stop the cabinet agent (the PLC or broker being away never does).
#[derive(Debug, Error)]
pub enum CabinetError {
    /// The outbox journal cannot be read or written: continuing would lose windows.
    #[error(transparent)]
    Outbox(#[from] OutboxError),
    /// No genesis: the cabinet could never check that a window is final.
    #[error("cabinet {0}: no genesis given (--genesis FILE): windows can only leave the outbox at finality checked under the chain's rules")]
    NoGenesis(String),
    /// The configuration cannot be used ([`CabinetConfig::validate`]).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The saved energy total cannot be read at start.
    #[error(transparent)]
    Energy(#[from] EnergyError),
}

/// What the agent did, returned when it stops.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CabinetStats {
    /// Successful polls (quadruplets published).
    pub polls: u64,
    /// Windows cut and published.
    pub windows: u64,
    /// Window publications repeated after the deadline or a restart.
    pub republished: u64,
    /// Windows whose commit was seen.
    pub committed: u64,
    /// Modbus errors.
    pub modbus_errors: u64,
    /// Ticks missed because a poll overran.
    pub missed_ticks: u64,
    /// Blocks rejected to the dead-letter topic (malformed, hash or work not verifying, or
    /// committing one of our windows with digests other than the ones we published).
    pub rejected: u64,
}

/// The running agent's state.
struct Agent {
    config: CabinetConfig,
    outlet: Outlet,
    status_outlet: Outlet,
    outbox: Outbox,
    cutter: WindowCutter,
    modbus: Option<ModbusCabinet>,
    synthetic: Option<Synthetic>,
    /// Windows put in the outbox this tick, published once the outbox is synced.
    cut: Vec<Vec<WindowTask>>,
    /// Window tasks durable but refused by a full outgoing queue, oldest first: sent before
    /// anything else at the next tick, so a flood of quadruplets cannot hold windows back
    /// until their commit deadline.
    unsent: VecDeque<WindowTask>,
    /// The quadruplet topic, built once: it is needed for every reading.
    quad_topic: String,
    /// The last reading's timestamp, reused within the same millisecond.
    last_ts: (u128, String),
    next_connect: Instant,
    reconnect_delay: Duration,
    next_switch_read: Instant,
    status: CabinetStatus,
    energy: EnergyMeter,
    next_energy_save: Instant,
    stats: CabinetStats,
    /// The light client deciding when a window is final.
    finality: Finality,
    metrics: crate::metrics::Cabinet,
}

/// Polls, publishes and keeps the outbox until `shutdown`; then closes both sessions.
pub async fn run(
    config: CabinetConfig,
    mut bus: Bus,
    status_bus: Bus,
    shutdown: CancellationToken,
) -> Result<CabinetStats, CabinetError> {
    config.validate()?;
    // Refused before anything is written: a cabinet without a genesis leaves no data dir.
    let Some(genesis) = config.genesis.clone() else {
        bus.close().await;
        status_bus.close().await;
        return Err(CabinetError::NoGenesis(config.id.clone()));
    };
    let energy = EnergyMeter::open(&config.data_dir, config.period)?;
    let (outbox, recovered) = Outbox::open(&config.data_dir, config.outbox_capacity)?;
    info!(
        cabinet = %config.id,
        pending = recovered.pending,
        next_window = recovered.next_window,
        next_seq = recovered.next_seq,
        torn_tail = recovered.torn_tail,
        "outbox opened"
    );
    let now = Instant::now();
    let mut agent = Agent {
        status: config.status(Presence::Online, "connecting"),
        cutter: WindowCutter::new(config.window),
        outlet: bus.outlet(),
        status_outlet: status_bus.outlet(),
        outbox,
        modbus: None,
        synthetic: match &config.source {
            SourceConfig::Modbus => None,
            SourceConfig::Synthetic(s) => Some(Synthetic::new(s.clone())),
        },
        cut: Vec::new(),
        unsent: VecDeque::new(),
        quad_topic: config.topics.quad(&config.id),
        last_ts: (0, String::new()),
        next_connect: now,
        reconnect_delay: config.reconnect.0,
        next_switch_read: now,
        energy,
        next_energy_save: now + config.energy_every,
        stats: CabinetStats::default(),
        finality: Finality::new(&config.id, &config.agent_id(), genesis),
        metrics: crate::metrics::Cabinet::new(&config.id),
        config,
    };
    let entities = ha::cabinet_entities(&agent.config.ha, &agent.config.topics, &agent.config.id);
    ha::announce(&agent.status_outlet, &agent.config.ha, &entities);
    agent.publish_status();
    agent.publish_energy();
    let mut ticker = tokio::time::interval(agent.config.period);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let mut last_tick: Option<Instant> = None;
    let result = loop {
        let due = agent
            .outbox
            .next_due()
            .unwrap_or_else(|| Instant::now() + agent.config.commit_deadline);
        tokio::select! {
            _ = shutdown.cancelled() => break Ok(()),
            tick = ticker.tick() => {
                if let Some(prev) = last_tick {
                    let missed = (tick - prev).as_nanos() / agent.config.period.as_nanos().max(1);
                    if missed > 1 {
                        let missed = (missed - 1) as u64;
                        agent.stats.missed_ticks += missed;
                        warn!(cabinet = %agent.config.id, missed, "poll overran its period: ticks missed");
                    }
                }
                last_tick = Some(tick);
                if let Err(e) = agent.tick().await {
                    break Err(e);
                }
            }
            msg = bus.recv() => match msg {
                Some(msg) => if let Err(e) = agent.on_ledger(&msg.topic, &msg.payload) { break Err(e) },
                None => break Ok(()),
            },
            _ = tokio::time::sleep_until(due) => agent.republish_due(),
        }
    };
    if let Err(e) = &result {
        error!(cabinet = %agent.config.id, cause = %e, "cabinet agent stopping on a storage error");
    }
    agent.save_energy().await;
    agent.status.state = Presence::Offline;
    agent.publish_status();
    let stats = agent.stats;
    info!(cabinet = %agent.config.id, ?stats, "cabinet agent stopped");
    bus.close().await;
    status_bus.close().await;
    result.map(|()| stats)
}

impl Agent {
    /// One tick: read what the source has, then publish the windows it completed.
    async fn tick(&mut self) -> Result<(), CabinetError> {
        self.send_unsent();
        match self.synthetic.as_mut() {
            // A synthetic source is back-pressured by the broker (it reads again once every
            // window is queued), so a benchmark measures what the pipeline sustains.
            Some(_) if !self.unsent.is_empty() => {}
            Some(source) => {
                for m in source.take_due(Instant::now()) {
                    self.on_measurement(m)?;
                }
            }
            None => self.poll().await?,
        }
        self.publish_cut().await?;
        if Instant::now() >= self.next_energy_save {
            self.next_energy_save = Instant::now() + self.config.energy_every;
            self.save_energy().await;
        }
        Ok(())
    }

    /// Saves the energy total, then publishes it: only a saved total is ever published, so
    /// the published value never decreases across a crash. A failed save is retried at the
    /// next interval (the outbox, in the same directory, stops the agent on storage errors).
    async fn save_energy(&mut self) {
        match self.energy.save().await {
            Ok(()) => self.publish_energy(),
            Err(e) => {
                error!(cabinet = %self.config.id, cause = %e, "energy total not saved; retrying at the next interval")
            }
        }
    }

    fn publish_energy(&self) {
        let topic = self.config.topics.energy(&self.config.id);
        let total = self.energy.message(&self.config.id);
        if let Err(e) = self.status_outlet.publish_retained(topic, encode(&total)) {
            debug!(cause = %e, "energy total not published");
        }
    }

    /// Queues held-back window tasks, oldest first, until the queue refuses one.
    fn send_unsent(&mut self) {
        while let Some(t) = self.unsent.front() {
            let topic = self.config.topics.window(&t.cabinet, t.quantity);
            if self
                .outlet
                .try_publish(topic, encode(t), QoS::AtLeastOnce, false)
                .is_err()
            {
                return;
            }
            self.unsent.pop_front();
        }
    }

    /// Durable first, then published: one fsync covers every window cut this tick, and a crash
    /// in between re-publishes them from the journal.
    async fn publish_cut(&mut self) -> Result<(), CabinetError> {
        if self.cut.is_empty() {
            return Ok(());
        }
        self.outbox.sync().await?;
        for tasks in std::mem::take(&mut self.cut) {
            if self.unsent.is_empty() {
                self.publish_window(&tasks);
            } else {
                // Keep window order: behind the ones already waiting.
                self.unsent.extend(tasks.iter().cloned());
            }
            self.stats.windows += 1;
            self.metrics.windows_produced.increment(1);
            debug!(cabinet = %self.config.id, window = tasks[0].window, "window published");
        }
        self.publish_status();
        Ok(())
    }

    /// One Modbus poll: connect if needed, read, maybe cut a window.
    async fn poll(&mut self) -> Result<(), CabinetError> {
        let now = Instant::now();
        if self.modbus.is_none() {
            if now < self.next_connect {
                return Ok(());
            }
            let c = &self.config;
            match ModbusCabinet::connect(c.modbus, c.map.clone(), c.modbus_timeout).await {
                Ok(m) => {
                    info!(cabinet = %c.id, plc = %c.modbus, "Modbus connected");
                    self.modbus = Some(m);
                    self.reconnect_delay = c.reconnect.0;
                    self.next_switch_read = now;
                }
                Err(e) => {
                    self.modbus_failed(e);
                    return Ok(());
                }
            }
        }
        if now >= self.next_switch_read {
            self.next_switch_read = now + self.config.switches_every;
            match self.modbus_mut().read_switches().await {
                Ok(s) => self.set_switches(s),
                Err(e) => {
                    self.modbus_failed(e);
                    return Ok(());
                }
            }
        }
        match self.modbus_mut().read_measurement().await {
            Ok(m) => self.on_measurement(m),
            Err(e) => {
                self.modbus_failed(e);
                Ok(())
            }
        }
    }

    fn modbus_mut(&mut self) -> &mut ModbusCabinet {
        self.modbus.as_mut().expect("poll connects before reading")
    }

    fn on_measurement(&mut self, m: Measurement) -> Result<(), CabinetError> {
        self.stats.polls += 1;
        self.metrics.quadruplets.increment(1);
        self.energy.add(Instant::now(), m.pa);
        let quad = Quadruplet {
            cabinet: self.config.id.clone(),
            seq: self.outbox.next_seq()?,
            ts: self.timestamp(),
            u: m.u,
            i: m.i,
            pa: m.pa,
            pr: m.pr,
        };
        // Quadruplets are a live view: never let a slow broker hold up acquisition, and never
        // let them take the queue from windows that are waiting for room.
        if !self.unsent.is_empty() {
            debug!(cabinet = %self.config.id, "quadruplet not published: windows wait for the queue");
        } else if let Err(e) = self.outlet.try_publish(
            self.quad_topic.clone(),
            encode(&quad),
            self.config.quad_qos,
            false,
        ) {
            debug!(cabinet = %self.config.id, cause = %e, "quadruplet not published");
        }
        if self.status.modbus != "ok" {
            self.status.modbus = "ok".to_string();
            self.publish_status();
        }
        let id = self.outbox.next_window();
        if let Some(tasks) = self.cutter.push(quad, id) {
            let due = Instant::now() + self.config.commit_deadline;
            if let Some((evicted, pending)) = self.outbox.put(tasks.clone(), due)? {
                self.evicted(evicted, &pending.tasks);
            }
            self.cut.push(tasks);
        }
        Ok(())
    }

    fn modbus_failed(&mut self, e: ModbusError) {
        self.stats.modbus_errors += 1;
        let first = self.status.modbus != "error";
        if e.needs_reconnect() {
            self.modbus = None;
            self.next_connect = Instant::now() + self.reconnect_delay;
            warn!(cabinet = %self.config.id, plc = %self.config.modbus, cause = %e, retry_in = ?self.reconnect_delay, "Modbus failed; reconnecting");
            self.reconnect_delay = (self.reconnect_delay * 2).min(self.config.reconnect.1);
        } else {
            warn!(cabinet = %self.config.id, plc = %self.config.modbus, cause = %e, "Modbus request refused");
        }
        let text = e.to_string();
        if first || self.status.last_error.as_deref() != Some(text.as_str()) {
            self.status.modbus = "error".to_string();
            self.status.last_error = Some(text);
            self.publish_status();
        }
    }

    fn set_switches(&mut self, s: Switches) {
        let loads = Some(s.loads.to_vec());
        if self.status.loads != loads || self.status.source != Some(s.source) {
            self.status.loads = loads;
            self.status.source = Some(s.source);
            self.publish_status();
        }
    }

    /// Queues a new window's tasks; what the queue refuses waits in `unsent`.
    fn publish_window(&mut self, tasks: &[WindowTask]) {
        for (k, t) in tasks.iter().enumerate() {
            let topic = self.config.topics.window(&t.cabinet, t.quantity);
            if let Err(e) = self
                .outlet
                .try_publish(topic, encode(t), QoS::AtLeastOnce, false)
            {
                debug!(cabinet = %t.cabinet, window = t.window, cause = %e, "window task held back until the queue has room");
                self.unsent.extend(tasks[k..].iter().cloned());
                return;
            }
        }
    }

    /// Re-queues an uncommitted window; if the queue is full the next deadline retries.
    fn republish_window(&self, tasks: &[WindowTask]) {
        for t in tasks {
            let topic = self.config.topics.window(&t.cabinet, t.quantity);
            if let Err(e) = self
                .outlet
                .try_publish(topic, encode(t), QoS::AtLeastOnce, false)
            {
                warn!(cabinet = %t.cabinet, window = t.window, cause = %e, "window task not queued; the deadline will retry");
            }
        }
    }

    /// Now as a quadruplet timestamp; formatted once per millisecond, since a fast source
    /// reads many times within one.
    fn timestamp(&mut self) -> String {
        let now = std::time::SystemTime::now();
        let ms = now
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        if ms != self.last_ts.0 || self.last_ts.1.is_empty() {
            self.last_ts = (ms, format_ts(now));
        }
        self.last_ts.1.clone()
    }

    fn evicted(&self, window: u64, tasks: &[WindowTask]) {
        error!(cabinet = %self.config.id, window, capacity = self.config.outbox_capacity, "outbox full: oldest uncommitted window evicted to the dead-letter topic");
        let payload = tasks.first().map(encode).unwrap_or_default();
        let letter = DeadLetter::new(
            ROLE,
            &self.config.agent_id(),
            &self
                .config
                .topics
                .window(&self.config.id, tasks[0].quantity),
            &format!("outbox full: window {window} evicted before it was committed"),
            &payload,
        );
        let _ = self.outlet.try_publish(
            self.config.topics.deadletter(ROLE),
            encode(&letter),
            QoS::AtLeastOnce,
            false,
        );
    }

    fn republish_due(&mut self) {
        let due = self
            .outbox
            .take_due(Instant::now(), self.config.commit_deadline);
        for tasks in &due {
            info!(cabinet = %self.config.id, window = tasks[0].window, "re-publishing an uncommitted window");
            self.republish_window(tasks);
            self.stats.republished += 1;
        }
    }

    /// A ledger message (a block for us, a header, the best head, a sync reply): the light
    /// client checks it, then every window now final leaves the outbox.
    fn on_ledger(&mut self, topic: &str, payload: &[u8]) -> Result<(), CabinetError> {
        use crate::messages::decode;
        use crate::node::wire::{HeadMessage, HeaderMessage, SyncReply};
        use crate::topics::Route;
        let now = crate::ledger::Timestamp::now().millis();
        let malformed = |e: String| BlockRefusal::Malformed(e);
        let max = 1 << 20;
        let result: Result<Outcome, BlockRefusal> = match self.config.topics.parse(topic) {
            Some(Route::Commit { .. }) => std::str::from_utf8(payload)
                .map_err(|e| e.to_string())
                .and_then(|t| crate::ledger::Block::from_json(t).map_err(|e| e.to_string()))
                .map_err(malformed)
                .and_then(|b| self.finality.on_block(b, &self.outbox, now)),
            Some(Route::Header) => decode::<HeaderMessage>(payload, max)
                .map_err(|e| malformed(e.to_string()))
                .and_then(|m| self.finality.on_header(m, now)),
            Some(Route::Head | Route::NodeHead { .. }) if payload.is_empty() => {
                Ok(Outcome::default())
            }
            Some(Route::Head | Route::NodeHead { .. }) => decode::<HeadMessage>(payload, max)
                .map_err(|e| malformed(e.to_string()))
                .and_then(|m| self.finality.on_head(m, now)),
            Some(Route::SyncReply { .. }) => decode::<SyncReply>(payload, max)
                .map_err(|e| malformed(e.to_string()))
                .and_then(|m| self.finality.on_sync_reply(m, now)),
            _ => Err(malformed("not a ledger topic a cabinet reads".into())),
        };
        match result {
            Ok(outcome) => {
                if let Some(req) = outcome.request {
                    let _ = self.outlet.try_publish(
                        self.config.topics.sync_request(),
                        encode(&req),
                        QoS::AtLeastOnce,
                        false,
                    );
                }
            }
            Err(refusal) => self.reject(topic, &refusal.to_string(), payload),
        }
        let mut committed = 0;
        for window in self.finality.take_final(&self.outbox) {
            if self.outbox.commit(window)? {
                committed += 1;
            }
        }
        if committed > 0 {
            self.stats.committed += committed;
            self.metrics.windows_committed.increment(committed);
            debug!(cabinet = %self.config.id, committed, "windows final on the chain");
            self.publish_status();
        }
        for tasks in self.finality.take_reissue(now) {
            warn!(cabinet = %self.config.id, window = tasks[0].window,
                "a released window's block left the best branch: publishing it again");
            self.republish_window(&tasks);
            self.stats.republished += 1;
        }
        Ok(())
    }

    /// Dead-letters a refused block (best effort: never blocks acquisition) and counts it.
    fn reject(&mut self, topic: &str, reason: &str, payload: &[u8]) {
        self.stats.rejected += 1;
        warn!(cabinet = %self.config.id, topic, reason, "rejected a block");
        let letter = DeadLetter::new(ROLE, &self.config.agent_id(), topic, reason, payload);
        if let Err(e) = self.outlet.try_publish(
            self.config.topics.deadletter(ROLE),
            encode(&letter),
            QoS::AtMostOnce,
            false,
        ) {
            debug!(cause = %e, "dead letter not published");
        }
    }

    fn publish_status(&mut self) {
        self.status.next_window = self.outbox.next_window();
        self.status.outbox = self.outbox.len();
        self.metrics.outbox.set(self.status.outbox as f64);
        self.status.missed_ticks = self.stats.missed_ticks;
        self.status.ts = now_ts();
        let topic = self.config.topics.cabinet_status(&self.config.id);
        if let Err(e) = self
            .status_outlet
            .publish_retained(topic, encode(&self.status))
        {
            debug!(cause = %e, "status not published");
        }
    }
}
