//! PBFT: N = 3f+1 validators from the genesis; the primary of view v (validators[v mod N],
//! sorted by key) proposes a block, replicas exchange signed PREPARE and COMMIT for its hash,
//! and a block joins the chain only with a **commit certificate**: 2f+1 COMMIT signatures of
//! distinct validators, carried beside the block in its `certificate` key, so any verifier
//! checks finality offline. One certified block per height: fork choice is trivial (the chain
//! only grows by certified blocks; two at one height would need 2f+1 + 2f+1 > N + f signers,
//! i.e. more than f faulty validators), and a certified block is final at once.
//!
//! The protocol state machine is [`replica`], messages and their sign-bytes [`messages`],
//! quorums and certificates [`certificate`].

pub mod certificate;
pub mod messages;
pub mod replica;

use serde_json::{Map, Value};

use self::certificate::Committee;
use self::messages::{Signed, TAG};
use self::replica::{proposed_view, Ctx, Out};
use super::validators::ValidatorSet;
use super::{
    Consensus, ModeAction, ModeEvent, ModeOptions, ModeState, ModeViolation, ParamsError, View,
    Work,
};
use crate::ledger::block::Header;
use crate::ledger::encoding::Hash32;

/// The mode's name in genesis.json.
pub const MODE: &str = "pbft";

/// The view timeout a new genesis gets unless told otherwise (ms).
pub const DEFAULT_VIEW_TIMEOUT_MS: u64 = 2_000;

/// Bounds of `view_timeout` (ms): below 50 ms a broker hop alone triggers view changes; above
/// 10 minutes a crashed primary stalls the chain for good.
pub const VIEW_TIMEOUT_MS: std::ops::RangeInclusive<u64> = 50..=600_000;

/// Largest f a genesis may ask for (N = 3f+1 = 64 validators).
pub const MAX_F: u64 = 21;

/// The genesis `consensus` object `genesis new` and `up` write: the validators, `f` from
/// the settings or (when absent) the largest f with 3f+1 = N, and `view_timeout` (ms).
pub fn new_params(options: &ModeOptions) -> Result<Map<String, Value>, ParamsError> {
    let set = ValidatorSet::new(options.validators.clone(), false)?;
    let n = set.len() as u64;
    if options.settings.get("f").is_none() && (n < 4 || !(n - 1).is_multiple_of(3)) {
        return Err(ParamsError::BadValue {
            key: "validators",
            reason: format!(
                "{n} validators: PBFT needs exactly 3f+1 of them (4, 7, 10, …) to tolerate f faulty"
            ),
        });
    }
    let mut m = Map::new();
    m.insert("mode".into(), MODE.into());
    m.insert("validators".into(), set.to_value(false));
    m.insert("f".into(), (n.saturating_sub(1) / 3).into());
    m.insert("view_timeout".into(), DEFAULT_VIEW_TIMEOUT_MS.into());
    for (k, v) in &options.settings {
        if !["f", "view_timeout"].contains(&k.as_str()) {
            return Err(ParamsError::UnknownKey(k.clone()));
        }
        m.insert(k.clone(), v.clone());
    }
    // The same checks a loader makes (3f+1 validators exactly), before anything is written.
    Pbft::from_params(&m, &Hash32::ZERO)?;
    Ok(m)
}

/// PBFT rules of one chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pbft {
    /// Validators and f.
    pub committee: Committee,
    /// The first view timeout, ms (doubles with each view change at one height).
    pub view_timeout_ms: u64,
    /// The chain id, to which every vote is bound.
    pub chain: Hash32,
}

impl Pbft {
    /// Reads `{"mode":"pbft","validators":[{name,key}…],"f":f,"view_timeout":ms}`; unknown
    /// keys are refused; the validator count must be exactly 3f+1.
    pub fn from_params(params: &Map<String, Value>, chain: &Hash32) -> Result<Pbft, ParamsError> {
        if let Some(key) = params
            .keys()
            .find(|k| !["mode", "validators", "f", "view_timeout"].contains(&k.as_str()))
        {
            return Err(ParamsError::UnknownKey(key.clone()));
        }
        let validators = ValidatorSet::from_params(params, false)?;
        let f = params.get("f").ok_or(ParamsError::Missing("f"))?;
        let f = f
            .as_u64()
            .filter(|v| !f.is_f64() && (1..=MAX_F).contains(v))
            .ok_or_else(|| ParamsError::BadValue {
                key: "f",
                reason: format!("{f} is not an integer 1..={MAX_F}"),
            })?;
        let n = validators.len() as u64;
        if n != 3 * f + 1 {
            return Err(ParamsError::BadValue {
                key: "validators",
                reason: format!(
                    "{n} validators, but f = {f} needs exactly 3f+1 = {} (PBFT tolerates f faulty of 3f+1)",
                    3 * f + 1
                ),
            });
        }
        let timeout = params
            .get("view_timeout")
            .ok_or(ParamsError::Missing("view_timeout"))?;
        let view_timeout_ms = timeout
            .as_u64()
            .filter(|v| !timeout.is_f64() && VIEW_TIMEOUT_MS.contains(v))
            .ok_or_else(|| ParamsError::BadValue {
                key: "view_timeout",
                reason: format!(
                    "{timeout} is not an integer number of milliseconds {}..={}",
                    VIEW_TIMEOUT_MS.start(),
                    VIEW_TIMEOUT_MS.end()
                ),
            })?;
        Ok(Pbft {
            committee: Committee {
                validators,
                f: f as usize,
            },
            view_timeout_ms,
            chain: *chain,
        })
    }

    /// The genesis `consensus` object.
    pub fn params(&self) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("mode".into(), MODE.into());
        m.insert(
            "validators".into(),
            self.committee.validators.to_value(false),
        );
        m.insert("f".into(), (self.committee.f as u64).into());
        m.insert("view_timeout".into(), self.view_timeout_ms.into());
        m
    }

    /// Seal bytes of `{"view": v}`: v as 8 bytes big-endian.
    pub fn seal(consensus: Option<&Map<String, Value>>) -> Result<Vec<u8>, ModeViolation> {
        let view = proposed_view(consensus).map_err(ModeViolation::Rule)?;
        Ok(view.to_be_bytes().to_vec())
    }

    /// Step 9: the producer is the primary of the block's view, and the certificate holds
    /// 2f+1 valid COMMIT signatures of distinct validators for (index, hash) in a view at
    /// least the block's. Returns (certificate view, signatures).
    pub fn check_certified(&self, header: &Header) -> Result<(u64, usize), ModeViolation> {
        let rule = ModeViolation::Rule;
        let view = proposed_view(header.consensus.as_ref()).map_err(rule)?;
        let primary = self.committee.primary(view);
        if header.producer != primary {
            return Err(rule(format!(
                "producer {} is not the primary of view {view} ({})",
                header.producer.short(),
                primary.short()
            )));
        }
        let certificate = header
            .certificate
            .as_ref()
            .ok_or_else(|| rule("no commit certificate".into()))?;
        let (cert_view, count) = self
            .committee
            .check_certificate(&self.chain, header.index, &header.hash, certificate)
            .map_err(|e| rule(format!("certificate: {e}")))?;
        if cert_view < view {
            return Err(rule(format!(
                "certificate view {cert_view} before the block's view {view}"
            )));
        }
        Ok((cert_view, count))
    }

    /// Each block after genesis weighs 1: the chain is one certified block per height.
    pub fn weight(header: &Header) -> Work {
        Work::from(header.index > 0)
    }
}

impl Consensus for Pbft {
    fn mode(&self) -> &'static str {
        MODE
    }

    fn params(&self) -> Map<String, Value> {
        Pbft::params(self)
    }

    fn message_tag(&self) -> [u8; 4] {
        TAG
    }

    fn block_keys(&self) -> &'static [&'static str] {
        &["consensus", "certificate"]
    }

    fn difficulty(&self, _index: u64) -> u32 {
        0
    }

    fn seal(&self, consensus: Option<&Map<String, Value>>) -> Result<Vec<u8>, ModeViolation> {
        Pbft::seal(consensus)
    }

    fn check_producer(&self, header: &Header, _parent: &Header) -> Result<(), ModeViolation> {
        self.check_certified(header).map(|_| ())
    }

    fn weight(&self, header: &Header) -> Work {
        Pbft::weight(header)
    }

    fn is_final(&self, header: &Header, _confirmations: u64) -> bool {
        // A block in the tree passed `check_producer`: its certificate is 2f+1 commits.
        header.index > 0 && header.certificate.is_some()
    }

    fn proposes(&self) -> bool {
        true
    }

    fn journals(&self) -> bool {
        true
    }

    fn on_event(
        &self,
        state: &mut ModeState,
        view: &View<'_>,
        event: &ModeEvent<'_>,
    ) -> Vec<ModeAction> {
        if !matches!(state, ModeState::Pbft(_)) {
            *state = ModeState::Pbft(Box::default());
        }
        let ModeState::Pbft(replica) = state else {
            return Vec::new();
        };
        let ctx = Ctx {
            chain: self.chain,
            me: *view.me,
            head: view.head,
            now_ms: view.now_ms,
            pending: view.pending,
            check: view.check.0,
        };
        let (c, base) = (&self.committee, self.view_timeout_ms);
        let outs = match event {
            ModeEvent::Head | ModeEvent::Ready | ModeEvent::Block { .. } => {
                replica.on_tick(c, &ctx, base)
            }
            ModeEvent::Timer => replica.on_timer(c, &ctx, base),
            ModeEvent::Message { from, payload, sig } => {
                let mut out = Vec::new();
                let signed = Signed {
                    from: **from,
                    body: (*payload).clone(),
                    sig: **sig,
                };
                replica.on_message(c, &ctx, base, signed, &mut out);
                out
            }
            ModeEvent::Produced { block } => replica.on_produced(c, &ctx, base, (*block).clone()),
        };
        let mut actions: Vec<ModeAction> = outs
            .into_iter()
            .map(|o| match o {
                Out::Send(msg) => ModeAction::Broadcast(msg.body()),
                Out::Produce { view } => {
                    let mut consensus = Map::new();
                    consensus.insert("view".into(), view.into());
                    ModeAction::Produce {
                        parent: ctx.head.hash,
                        consensus: Some(consensus),
                    }
                }
                Out::Append(block) => ModeAction::Append(block),
                Out::Timer(at_ms) => ModeAction::SetTimer { at_ms },
            })
            .collect();
        // The engine keeps only its earliest timer: ask again for ours after every event.
        if let Some(at_ms) = replica.deadline() {
            actions.push(ModeAction::SetTimer { at_ms });
        }
        actions
    }
}
