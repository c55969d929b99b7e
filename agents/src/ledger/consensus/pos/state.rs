//! The proof-of-stake protocol of one node (sans-IO): when to produce, which timer to set,
//! what evidence to publish and record.
//!
//! Rounds follow the clock alone. A node that has something to commit (ready records, records
//! not final yet, a tie to break, evidence to record) fixes the start of round 0 on its head at
//! `max(now, head time + block interval)`; round r starts [`Pos::round_offset`] later (round
//! lengths T, 2T, 4T, 8T, then 16T each).
//! The leader of (height, round) produces at its round's start; everyone else sets a timer for
//! the next round's start. Nothing to commit: no block, no timer — an idle chain does not grow.
//! A node signs nothing during its first round timeout after a start, nor, for up to ten, while
//! a peer announces a heavier head (it learns the heads and catches up first).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};

use super::block::{Evidence, PosBlock, MAX_EVIDENCE, MAX_ROUND};
use super::Pos;
use crate::ledger::block::Header;
use crate::ledger::consensus::{ModeAction, ModeEvent, View};
use crate::ledger::encoding::{Hash32, PublicKey};

/// Heights below the head for which signed slots and seen headers are kept.
const KEEP_HEIGHTS: u64 = 64;
/// Most headers kept for equivocation detection.
const MAX_SEEN: usize = 4096;

/// One node's proof-of-stake state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PosState {
    /// The head the round schedule is for, and when its round 0 started.
    parent: Option<Hash32>,
    epoch_ms: Option<u64>,
    /// (height, round) slots this node produced a block for: never two blocks for one slot.
    signed: BTreeSet<(u64, u32)>,
    /// The first header seen for each (height, round, producer).
    seen: BTreeMap<(u64, u32, PublicKey), Header>,
    /// Checked evidence whose offender is not recorded on the head yet.
    evidence: Vec<Evidence>,
    /// When this node (process) first ran the schedule.
    started_ms: Option<u64>,
}

/// The body of an evidence message: `{"type":"evidence","a":header,"b":header}`.
fn evidence_body(e: &Evidence) -> Map<String, Value> {
    let mut body = e.to_map();
    body.insert("type".into(), "evidence".into());
    body
}

impl PosState {
    /// Evidence checked, not yet on the head (for tests and metrics).
    pub fn pending_evidence(&self) -> &[Evidence] {
        &self.evidence
    }

    pub(super) fn on_event(
        &mut self,
        pos: &Pos,
        view: &View<'_>,
        event: &ModeEvent<'_>,
    ) -> Vec<ModeAction> {
        match event {
            ModeEvent::Block { header } => self.observe(pos, view, header),
            ModeEvent::Message { payload, .. } => {
                // Evidence proves itself: who relayed it does not matter.
                if payload.get("type").and_then(Value::as_str) == Some("evidence") {
                    let mut body = (*payload).clone();
                    body.remove("type");
                    if let Ok(e) = Evidence::parse(&Value::Object(body)) {
                        self.add_evidence(pos, view, e);
                    }
                }
                self.schedule(pos, view)
            }
            // Pos appends what it produces; `Produced` never comes (`proposes` is false).
            ModeEvent::Head | ModeEvent::Ready | ModeEvent::Timer | ModeEvent::Produced { .. } => {
                self.schedule(pos, view)
            }
        }
    }

    /// Notes a valid header; a second one for its slot by the same producer is evidence,
    /// published to everyone.
    fn observe(&mut self, pos: &Pos, view: &View<'_>, header: &Header) -> Vec<ModeAction> {
        let Some(round) = header
            .consensus
            .as_ref()
            .and_then(|c| PosBlock::parse(c).ok())
            .map(|b| b.round)
        else {
            return Vec::new();
        };
        let low = view.head.index.saturating_sub(KEEP_HEIGHTS);
        self.seen.retain(|(h, _, _), _| *h >= low);
        if header.index < low {
            return Vec::new();
        }
        let slot = (header.index, round, header.producer);
        match self.seen.get(&slot) {
            Some(first) if first.hash != header.hash => {
                let e = Evidence::new(first.clone(), header.clone());
                if self.add_evidence(pos, view, e.clone()) {
                    return vec![ModeAction::Broadcast(evidence_body(&e))];
                }
            }
            Some(_) => {}
            None if self.seen.len() < MAX_SEEN => {
                self.seen.insert(slot, header.clone());
            }
            None => {}
        }
        Vec::new()
    }

    /// Keeps checked evidence against a validator not yet recorded (one item per offender).
    fn add_evidence(&mut self, pos: &Pos, view: &View<'_>, e: Evidence) -> bool {
        let Ok(offender) = pos.check_evidence(&e) else {
            return false;
        };
        let known = self.evidence.iter().any(|x| x.offender() == offender)
            || pos.offenders_of(view.head).contains(&offender);
        if known || self.evidence.len() >= MAX_VALIDATOR_EVIDENCE {
            return false;
        }
        self.evidence.push(e);
        true
    }

    /// Produce when this node leads the current round, and wake up for the next one.
    fn schedule(&mut self, pos: &Pos, view: &View<'_>) -> Vec<ModeAction> {
        let head = view.head;
        let started = *self.started_ms.get_or_insert(view.now_ms);
        let offenders = pos.offenders_of(head);
        self.evidence.retain(|e| !offenders.contains(&e.offender()));
        let height = head.index + 1;
        self.signed.retain(|(h, _)| *h + KEEP_HEIGHTS >= height);
        if self.parent != Some(head.hash) {
            self.parent = Some(head.hash);
            self.epoch_ms = None;
        }
        let want = view.pending > 0 || view.unfinal || view.contested || !self.evidence.is_empty();
        if !want {
            return Vec::new();
        }
        // A node that just started signs nothing for one round timeout, and while a peer
        // announces a heavier head for up to ten: it hears the heads and syncs first, so a
        // validator restarted with an empty disk does not sign a second block for a slot it
        // signed before its restart (a liar claiming weight delays it ten timeouts at most).
        let quiet_until = started.saturating_add(pos.round_timeout_ms);
        let catch_up_until = started.saturating_add(pos.round_timeout_ms.saturating_mul(10));
        if view.now_ms < quiet_until || (view.behind && view.now_ms < catch_up_until) {
            let at = if view.now_ms < quiet_until {
                quiet_until
            } else {
                catch_up_until
            };
            return vec![ModeAction::SetTimer { at_ms: at }];
        }
        let epoch = *self
            .epoch_ms
            .get_or_insert(view.now_ms.max(pos.earliest(head, 0)));
        if view.now_ms < epoch {
            return vec![ModeAction::SetTimer { at_ms: epoch }];
        }
        let round = pos.round_at(view.now_ms - epoch);
        let mut out = Vec::new();
        if pos.leader(height, round, &offenders).key == *view.me
            && self.signed.insert((height, round))
        {
            let evidence: Vec<Evidence> =
                self.evidence.iter().take(MAX_EVIDENCE).cloned().collect();
            let mut all = offenders.clone();
            all.extend(evidence.iter().map(Evidence::offender));
            all.sort_by_key(|k| k.0);
            let block = PosBlock {
                round,
                offenders: all,
                evidence,
            };
            out.push(ModeAction::Produce {
                parent: head.hash,
                consensus: Some(block.to_map()),
            });
        }
        if round < MAX_ROUND {
            out.push(ModeAction::SetTimer {
                at_ms: epoch.saturating_add(pos.round_offset(round + 1)),
            });
        }
        out
    }
}

/// Most pending evidence items (one per offender; a set has at most 1024 validators).
const MAX_VALIDATOR_EVIDENCE: usize = 1024;
