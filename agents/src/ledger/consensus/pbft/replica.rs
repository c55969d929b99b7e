//! One PBFT replica as a pure state machine: inputs (the head moved, records ready, a timer, a
//! verified signed message, the block the engine built) → outputs (send a message, build a
//! block, append a certified block, set a timer). No clock, no network, no disk: the node
//! engine (and the simulations) drive it.
//!
//! One height at a time: the height being decided is the head's index + 1. Views are global
//! and only grow: the primary of view v keeps proposing until a view change; a replica that
//! appends a certified block adopts the certificate's view (2f+1 were in it). A replica
//!
//! - accepts one PRE-PREPARE per (view, height), from the view's primary, for a block on its
//!   head that passes the rules, and sends PREPARE for its hash;
//! - on 2f+1 PREPARE (distinct validators) for that hash in its view is *prepared*: keeps the
//!   prepared certificate and sends COMMIT;
//! - on 2f+1 COMMIT for a hash whose block it holds (any view of this height): appends the
//!   block with the commit certificate;
//! - on timeout (view_timeout × 2^(view changes at this height)) sends VIEW-CHANGE for the
//!   next view with its highest prepared certificate, and joins a view change that f+1 others
//!   started;
//! - as new primary, on 2f+1 VIEW-CHANGE sends NEW-VIEW with them and the highest prepared
//!   block; as backup, accepts a NEW-VIEW only after checking every VIEW-CHANGE in it and that
//!   the block is the highest prepared one (or none if none was prepared).
//!
//! Every vote goes through [`Sent`]: a replica never sends two different PRE-PREPARE, PREPARE
//! or COMMIT for one (height, view). The engine journals every outgoing message before it is
//! sent and replays the journal into [`Replica::on_message`] at start (its own messages come
//! back as `from == me`), which restores [`Sent`] after a restart.

use std::collections::BTreeMap;

use serde_json::{Map, Value};
use tracing::{debug, warn};

use super::certificate::{certificate_value, Added, Committee, SigCache, Tally};
use super::messages::sign_bytes;
use super::messages::{Message, Phase, Prepared, Signed, Vote};
use crate::ledger::block::{Block, Header};
use crate::ledger::encoding::{Hash32, PublicKey};

/// Most messages held for a later height or view.
const MAX_BUFFER: usize = 2048;
/// Doublings of the view timeout stop here (2^6 × timeout).
const MAX_DOUBLINGS: u32 = 6;

/// What the replica is told about its node.
pub struct Ctx<'a> {
    /// The chain id (signatures are bound to it).
    pub chain: Hash32,
    /// This node's key.
    pub me: PublicKey,
    /// The last appended block.
    pub head: &'a Header,
    /// The clock, ms.
    pub now_ms: u64,
    /// Records ready to commit.
    pub pending: usize,
    /// The rules for a proposal on `head` (hash, signature, records), certificate aside.
    pub check: &'a dyn Fn(&Block) -> Result<(), String>,
}

/// What the replica asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum Out {
    /// Journal, sign and send this message to every validator (this one included).
    Send(Message),
    /// Build a block on the head with `{"view": view}` as its `consensus` object and give it
    /// back with [`Replica::on_produced`].
    Produce {
        /// The view of the proposal.
        view: u64,
    },
    /// Append this block (it carries its commit certificate) to the main chain.
    Append(Box<Block>),
    /// Call [`Replica::on_timer`] at this time (ms); replaces any earlier request.
    Timer(u64),
}

/// What this replica sent for one (height, view).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sent {
    /// The PRE-PREPARE (or NEW-VIEW block) hash.
    pub proposal: Option<Hash32>,
    /// The PREPARE hash.
    pub prepare: Option<Hash32>,
    /// The COMMIT hash.
    pub commit: Option<Hash32>,
    /// A VIEW-CHANGE into this view was sent.
    pub view_change: bool,
    /// A NEW-VIEW for this view was sent.
    pub new_view: bool,
}

/// The replica's state (the mode's per-node state).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Replica {
    /// Height being decided (head index + 1); 0 before the first event.
    pub height: u64,
    parent: Hash32,
    /// Current view.
    pub view: u64,
    /// VIEW-CHANGE into `view` sent, NEW-VIEW not accepted yet.
    pub changing: bool,
    /// The proposal accepted in `view`.
    proposal: Option<Hash32>,
    /// Asked the engine for a block (primary).
    producing: bool,
    /// Proposals seen at this height, by hash.
    blocks: BTreeMap<Hash32, Block>,
    prepares: BTreeMap<u64, Tally>,
    commits: BTreeMap<u64, Tally>,
    /// Highest prepared certificate at this height.
    pub prepared: Option<Prepared>,
    changes: BTreeMap<u64, BTreeMap<PublicKey, Signed>>,
    /// What this replica sent, by (height, view).
    pub sent: BTreeMap<(u64, u64), Sent>,
    deadline: Option<u64>,
    /// While changing views: 2f+1 validators want this view or a later one, and `deadline`
    /// is the NEW-VIEW timeout (else it is only the next re-send of our VIEW-CHANGE).
    escalating: bool,
    /// View changes at this height so far (the timeout doubles with each).
    pub failures: u32,
    buffer: Vec<Signed>,
    /// The block appended at this height was asked for; waiting for the head to move.
    appended: bool,
    /// Conflicting votes seen (equivocation evidence), for the operator.
    pub conflicts: u64,
    cache: SigCache,
}

impl Replica {
    /// When the replica wants [`Replica::on_timer`] next.
    pub fn deadline(&self) -> Option<u64> {
        self.deadline
    }

    fn timeout(&self, base: u64) -> u64 {
        base.saturating_mul(1 << self.failures.min(MAX_DOUBLINGS))
    }

    /// Follows the head: a new height resets the per-height state and replays held messages.
    fn follow(&mut self, c: &Committee, ctx: &Ctx<'_>, base: u64, out: &mut Vec<Out>) {
        let height = ctx.head.index + 1;
        if height == self.height && ctx.head.hash == self.parent {
            return;
        }
        if let Some(view) = ctx
            .head
            .certificate
            .as_ref()
            .and_then(|cert| cert.get("view"))
            .and_then(Value::as_u64)
        {
            // 2f+1 validators committed the head in this view: it is where they are.
            if view > self.view || (view == self.view && self.changing) {
                self.view = view;
                self.changing = false;
            }
        }
        self.height = height;
        self.parent = ctx.head.hash;
        self.proposal = None;
        self.producing = false;
        self.blocks.clear();
        self.prepares.clear();
        self.commits.clear();
        self.prepared = None;
        self.changes.clear();
        self.deadline = None;
        self.escalating = false;
        self.failures = 0;
        self.appended = false;
        self.sent.retain(|(h, _), _| *h >= height);
        self.replay(c, ctx, base, out);
    }

    fn replay(&mut self, c: &Committee, ctx: &Ctx<'_>, base: u64, out: &mut Vec<Out>) {
        let held = std::mem::take(&mut self.buffer);
        for signed in held {
            self.on_message(c, ctx, base, signed, out);
        }
    }

    /// The head moved, records are ready, or nothing in particular: make progress.
    pub fn on_tick(&mut self, c: &Committee, ctx: &Ctx<'_>, base: u64) -> Vec<Out> {
        let mut out = Vec::new();
        self.follow(c, ctx, base, &mut out);
        self.progress(c, ctx, base, &mut out);
        out
    }

    /// The view timer fired.
    pub fn on_timer(&mut self, c: &Committee, ctx: &Ctx<'_>, base: u64) -> Vec<Out> {
        let mut out = Vec::new();
        self.follow(c, ctx, base, &mut out);
        if self.deadline.is_some_and(|d| ctx.now_ms >= d) && !self.appended {
            if self.changing && !self.escalating {
                // Too few validators want this view yet to give up on it (PBFT starts the
                // NEW-VIEW timer only at 2f+1): say it again, in case it was lost.
                self.deadline = Some(ctx.now_ms + base);
                out.push(Out::Timer(ctx.now_ms + base));
                out.push(Out::Send(Message::ViewChange {
                    view: self.view,
                    height: self.height,
                    prepared: self.prepared.clone().map(Box::new),
                }));
            } else {
                let next = self.view + 1;
                debug!(
                    height = self.height,
                    view = next,
                    "view timeout: view change"
                );
                self.change_view(c, ctx, base, next, &mut out);
            }
        }
        self.progress(c, ctx, base, &mut out);
        out
    }

    /// The block asked for with [`Out::Produce`].
    pub fn on_produced(
        &mut self,
        c: &Committee,
        ctx: &Ctx<'_>,
        base: u64,
        block: Block,
    ) -> Vec<Out> {
        let mut out = Vec::new();
        self.follow(c, ctx, base, &mut out);
        self.producing = false;
        let view = block
            .consensus
            .as_ref()
            .and_then(|m| m.get("view"))
            .and_then(Value::as_u64);
        if block.index == self.height
            && block.previous_hash == self.parent
            && view == Some(self.view)
            && !self.changing
            && self.proposal.is_none()
            && c.primary(self.view) == ctx.me
            && self.mark(|s| &mut s.proposal, block.hash)
        {
            out.push(Out::Send(Message::PrePrepare {
                view: self.view,
                height: self.height,
                block: Box::new(block),
            }));
        }
        self.progress(c, ctx, base, &mut out);
        out
    }

    /// Records in `sent` that this replica sends `hash` in the slot `field` picks for the
    /// current (height, view); false if it already sent another hash there.
    fn mark(&mut self, field: impl Fn(&mut Sent) -> &mut Option<Hash32>, hash: Hash32) -> bool {
        let slot = field(self.sent.entry((self.height, self.view)).or_default());
        match slot {
            Some(h) => *h == hash,
            None => {
                *slot = Some(hash);
                true
            }
        }
    }

    fn vote(&mut self, phase: Phase, hash: Hash32, out: &mut Vec<Out>) {
        let ok = match phase {
            Phase::Prepare => self.mark(|s| &mut s.prepare, hash),
            Phase::Commit => self.mark(|s| &mut s.commit, hash),
        };
        if ok {
            out.push(Out::Send(Message::Vote {
                phase,
                view: self.view,
                height: self.height,
                hash,
            }));
        }
    }

    fn change_view(
        &mut self,
        c: &Committee,
        ctx: &Ctx<'_>,
        base: u64,
        view: u64,
        out: &mut Vec<Out>,
    ) {
        if view <= self.view && (self.changing || view < self.view) {
            return;
        }
        self.view = view;
        self.changing = true;
        self.proposal = None;
        self.producing = false;
        // Each view change at one height doubles the time the next view gets.
        self.failures += 1;
        self.deadline = None;
        self.escalating = false;
        let slot = self.sent.entry((self.height, view)).or_default();
        if !slot.view_change {
            slot.view_change = true;
            out.push(Out::Send(Message::ViewChange {
                view,
                height: self.height,
                prepared: self.prepared.clone().map(Box::new),
            }));
        }
        self.replay(c, ctx, base, out);
    }

    /// Validators that sent a VIEW-CHANGE into `view` or a later view at this height.
    fn support(&self, view: u64) -> usize {
        let mut signers: Vec<&PublicKey> = self
            .changes
            .range(view..)
            .flat_map(|(_, m)| m.keys())
            .collect();
        signers.sort();
        signers.dedup();
        signers.len()
    }

    /// Whether the replica waits for something the view timer must bound.
    fn waiting(&self, ctx: &Ctx<'_>) -> bool {
        !self.appended
            && (ctx.pending > 0
                || self.proposal.is_some()
                || self.changing
                || !self.blocks.is_empty())
    }

    /// Primary duties and the view timer.
    fn progress(&mut self, c: &Committee, ctx: &Ctx<'_>, base: u64, out: &mut Vec<Out>) {
        if !self.changing
            && !self.appended
            && self.proposal.is_none()
            && ctx.pending > 0
            && c.primary(self.view) == ctx.me
            && self
                .sent
                .get(&(self.height, self.view))
                .is_none_or(|s| s.proposal.is_none())
        {
            // Asked again after every event until the block comes back (an engine busy with
            // a sync or another job ignores the request).
            out.push(Out::Produce { view: self.view });
        }
        if !self.waiting(ctx) {
            self.deadline = None;
            return;
        }
        if self.changing && !self.escalating && self.support(self.view) >= c.quorum() {
            self.escalating = true;
            self.deadline = None;
        }
        if self.deadline.is_none() {
            let wait = if self.changing && !self.escalating {
                base
            } else {
                self.timeout(base)
            };
            self.deadline = Some(ctx.now_ms + wait);
            out.push(Out::Timer(ctx.now_ms + wait));
        }
    }

    /// A message whose signature the engine verified (`from` signed `body` for this chain).
    pub fn on_message(
        &mut self,
        c: &Committee,
        ctx: &Ctx<'_>,
        base: u64,
        signed: Signed,
        out: &mut Vec<Out>,
    ) {
        self.follow(c, ctx, base, out);
        if !c.is_member(&signed.from) {
            debug!(from = %signed.from.short(), "pbft message from a non-validator ignored");
            return;
        }
        // The engine verified it; inside a certificate or NEW-VIEW later it costs nothing.
        self.cache.trust(
            &signed.from,
            &sign_bytes(&ctx.chain, &signed.body),
            &signed.sig,
        );
        let msg = match Message::parse(&signed.body) {
            Ok(msg) => msg,
            Err(e) => {
                debug!(cause = %e, "malformed pbft message ignored");
                return;
            }
        };
        if msg.height() < self.height {
            return;
        }
        // A PRE-PREPARE or PREPARE for a view this replica has not entered yet (it may have
        // overtaken the NEW-VIEW on the way) waits until it does.
        let later_view = (msg.view() > self.view || (msg.view() == self.view && self.changing))
            && !matches!(msg, Message::ViewChange { .. } | Message::NewView { .. })
            && !matches!(
                msg,
                Message::Vote {
                    phase: Phase::Commit,
                    ..
                }
            );
        if msg.height() > self.height || later_view {
            if signed.from == ctx.me {
                self.record_own(&msg);
            }
            if self.buffer.len() >= MAX_BUFFER {
                self.buffer.remove(0);
            }
            self.buffer.push(signed);
            return;
        }
        if signed.from == ctx.me {
            self.record_own(&msg);
        }
        match msg {
            Message::PrePrepare { view, block, .. } => {
                self.on_pre_prepare(c, ctx, &signed.from, view, *block, out)
            }
            Message::Vote {
                phase, view, hash, ..
            } => self.on_vote(c, ctx, phase, view, hash, signed, out),
            Message::ViewChange { view, prepared, .. } => {
                self.on_view_change(c, ctx, base, view, prepared.as_deref(), signed, out)
            }
            Message::NewView {
                view,
                changes,
                block,
                ..
            } => self.on_new_view(c, ctx, base, &signed.from, view, &changes, block, out),
        }
        self.progress(c, ctx, base, out);
    }

    /// One of this replica's own messages (loopback or journal replay): what it sent.
    fn record_own(&mut self, msg: &Message) {
        let slot = self.sent.entry((msg.height(), msg.view())).or_default();
        match msg {
            Message::PrePrepare { block, .. } => {
                slot.proposal.get_or_insert(block.hash);
            }
            Message::NewView { block, .. } => {
                slot.new_view = true;
                if let Some(b) = block {
                    slot.proposal.get_or_insert(b.hash);
                }
            }
            Message::Vote {
                phase: Phase::Prepare,
                hash,
                ..
            } => {
                slot.prepare.get_or_insert(*hash);
            }
            Message::Vote {
                phase: Phase::Commit,
                hash,
                ..
            } => {
                slot.commit.get_or_insert(*hash);
            }
            Message::ViewChange { view, .. } => {
                slot.view_change = true;
                if msg.height() == self.height && *view > self.view {
                    // Restarted after asking for this view: never vote in the older ones.
                    self.view = *view;
                    self.changing = true;
                    self.proposal = None;
                }
            }
        }
    }

    /// Checks a proposal for this height: link, the rules, and who may have made it.
    fn proposal_ok(&self, c: &Committee, ctx: &Ctx<'_>, block: &Block) -> Result<(), String> {
        if block.index != self.height || block.previous_hash != self.parent {
            return Err(format!(
                "proposal #{} on {} is not on our head #{}",
                block.index,
                block.previous_hash.short(),
                self.height - 1
            ));
        }
        let view = proposed_view(block.consensus.as_ref())?;
        if block.producer != c.primary(view) {
            return Err(format!(
                "block by {}, not the primary of view {view}",
                block.producer.short()
            ));
        }
        (ctx.check)(block)
    }

    fn on_pre_prepare(
        &mut self,
        c: &Committee,
        ctx: &Ctx<'_>,
        from: &PublicKey,
        view: u64,
        block: Block,
        out: &mut Vec<Out>,
    ) {
        if view != self.view || self.changing || *from != c.primary(view) {
            return;
        }
        if let Err(e) = self.proposal_ok(c, ctx, &block) {
            warn!(view, height = self.height, cause = %e, "pre-prepare refused");
            return;
        }
        if proposed_view(block.consensus.as_ref()) != Ok(view) {
            return;
        }
        if let Some(accepted) = self.proposal {
            if accepted != block.hash {
                self.conflicts += 1;
                warn!(
                    view,
                    height = self.height,
                    "the primary proposed two blocks (equivocation)"
                );
            }
            return;
        }
        self.accept(c, block, out);
    }

    fn accept(&mut self, c: &Committee, block: Block, out: &mut Vec<Out>) {
        let hash = block.hash;
        self.proposal = Some(hash);
        self.blocks.insert(hash, block);
        self.vote(Phase::Prepare, hash, out);
        self.check_prepared(c, hash, out);
    }

    #[allow(clippy::too_many_arguments)]
    fn on_vote(
        &mut self,
        c: &Committee,
        ctx: &Ctx<'_>,
        phase: Phase,
        view: u64,
        hash: Hash32,
        signed: Signed,
        out: &mut Vec<Out>,
    ) {
        let tallies = match phase {
            Phase::Prepare if view != self.view => return,
            Phase::Prepare => &mut self.prepares,
            Phase::Commit => &mut self.commits,
        };
        if tallies.len() > 64 && !tallies.contains_key(&view) {
            return;
        }
        match tallies
            .entry(view)
            .or_default()
            .add(signed.from, hash, signed.sig)
        {
            Added::New => {}
            Added::Again => return,
            Added::Conflict => {
                self.conflicts += 1;
                warn!(from = %signed.from.short(), view, height = self.height, phase = phase.name(), "two votes for one slot (equivocation)");
                return;
            }
        }
        match phase {
            Phase::Prepare => self.check_prepared(c, hash, out),
            Phase::Commit => self.check_committed(c, ctx, view, hash, out),
        }
    }

    fn check_prepared(&mut self, c: &Committee, hash: Hash32, out: &mut Vec<Out>) {
        if self.changing || self.proposal != Some(hash) {
            return;
        }
        let Some(tally) = self.prepares.get(&self.view) else {
            return;
        };
        let votes = tally.votes_for(&hash);
        if votes.len() < c.quorum() {
            return;
        }
        let Some(block) = self.blocks.get(&hash).cloned() else {
            return;
        };
        if self.prepared.as_ref().is_none_or(|p| p.view < self.view) {
            self.prepared = Some(Prepared {
                view: self.view,
                block,
                prepares: votes,
            });
        }
        self.vote(Phase::Commit, hash, out);
    }
}

impl Replica {
    fn check_committed(
        &mut self,
        c: &Committee,
        ctx: &Ctx<'_>,
        view: u64,
        hash: Hash32,
        out: &mut Vec<Out>,
    ) {
        if self.appended {
            return;
        }
        let Some(votes) = self
            .commits
            .get(&view)
            .map(|t| t.votes_for(&hash))
            .filter(|v| v.len() >= c.quorum())
        else {
            return;
        };
        let Some(block) = self.blocks.get(&hash) else {
            // Committed by 2f+1 but we never saw the proposal: the block comes with its
            // certificate on `ledger/block` or through sync.
            return;
        };
        debug!(height = self.height, view, signatures = votes.len(), me = %ctx.me.short(), "committed");
        self.appended = true;
        self.deadline = None;
        out.push(Out::Append(Box::new(certified(block, view, &votes))));
    }

    #[allow(clippy::too_many_arguments)]
    fn on_view_change(
        &mut self,
        c: &Committee,
        ctx: &Ctx<'_>,
        base: u64,
        view: u64,
        prepared: Option<&Prepared>,
        signed: Signed,
        out: &mut Vec<Out>,
    ) {
        if view <= self.view && !(view == self.view && self.changing) {
            return;
        }
        if let Some(p) = prepared {
            if let Err(e) = self.prepared_ok(c, ctx, view, p) {
                warn!(from = %signed.from.short(), cause = %e, "view-change with a bad prepared certificate ignored");
                return;
            }
            self.blocks
                .entry(p.block.hash)
                .or_insert_with(|| p.block.clone());
        }
        if self.changes.len() > 64 && !self.changes.contains_key(&view) {
            return;
        }
        self.changes
            .entry(view)
            .or_default()
            .entry(signed.from)
            .or_insert(signed);
        // f+1 validators want a later view: at least one honest one timed out; join the
        // smallest such view so that a slow timer does not keep this replica behind.
        let mut latest: BTreeMap<PublicKey, u64> = BTreeMap::new();
        for (v, senders) in self.changes.range(self.view + 1..) {
            for key in senders.keys() {
                latest.insert(*key, *v);
            }
        }
        if latest.len() > c.f && !self.changing_beyond(&latest) {
            if let Some(join) = latest.values().min().copied() {
                self.change_view(c, ctx, base, join, out);
            }
        }
        self.lead_new_view(c, ctx, out);
    }

    fn changing_beyond(&self, latest: &BTreeMap<PublicKey, u64>) -> bool {
        latest.values().all(|v| *v <= self.view)
    }

    /// A prepared certificate inside a VIEW-CHANGE into `into`: an earlier view, this height,
    /// a block that is a valid proposal here, 2f+1 PREPARE signatures for it.
    fn prepared_ok(
        &mut self,
        c: &Committee,
        ctx: &Ctx<'_>,
        into: u64,
        p: &Prepared,
    ) -> Result<(), String> {
        if p.view >= into {
            return Err(format!(
                "prepared in view {} for a change into {into}",
                p.view
            ));
        }
        self.proposal_ok(c, ctx, &p.block)?;
        c.check_votes(
            &ctx.chain,
            Phase::Prepare,
            p.view,
            self.height,
            &p.block.hash,
            &p.prepares,
            &mut self.cache,
        )
    }

    /// As primary of the view being changed into, on 2f+1 VIEW-CHANGE: NEW-VIEW.
    fn lead_new_view(&mut self, c: &Committee, ctx: &Ctx<'_>, out: &mut Vec<Out>) {
        let view = self.view;
        if !self.changing || c.primary(view) != ctx.me {
            return;
        }
        if self
            .sent
            .get(&(self.height, view))
            .is_some_and(|s| s.new_view)
        {
            return;
        }
        let Some(changes) = self.changes.get(&view).filter(|m| m.len() >= c.quorum()) else {
            return;
        };
        let changes: Vec<Signed> = changes.values().take(c.quorum()).cloned().collect();
        let block = match highest_prepared(&changes) {
            Ok(found) => found.map(|p| Box::new(p.block)),
            Err(e) => {
                warn!(cause = %e, "cannot build a new view");
                return;
            }
        };
        let slot = self.sent.entry((self.height, view)).or_default();
        slot.new_view = true;
        if let Some(b) = &block {
            slot.proposal = Some(b.hash);
        }
        out.push(Out::Send(Message::NewView {
            view,
            height: self.height,
            changes,
            block,
        }));
    }

    #[allow(clippy::too_many_arguments)]
    fn on_new_view(
        &mut self,
        c: &Committee,
        ctx: &Ctx<'_>,
        base: u64,
        from: &PublicKey,
        view: u64,
        changes: &[Signed],
        block: Option<Box<Block>>,
        out: &mut Vec<Out>,
    ) {
        if view < self.view || (view == self.view && !self.changing) || *from != c.primary(view) {
            return;
        }
        if let Err(e) = self.new_view_ok(c, ctx, view, changes, block.as_deref()) {
            warn!(view, height = self.height, cause = %e, "new-view refused");
            return;
        }
        debug!(view, height = self.height, "new view");
        self.view = view;
        self.changing = false;
        self.escalating = false;
        self.proposal = None;
        self.producing = false;
        self.deadline = Some(ctx.now_ms + self.timeout(base));
        out.push(Out::Timer(ctx.now_ms + self.timeout(base)));
        if let Some(block) = block {
            self.accept(c, *block, out);
        }
        self.replay(c, ctx, base, out);
    }

    /// A backup's own check of a NEW-VIEW: 2f+1 VIEW-CHANGE into this view and height from
    /// distinct validators, each signed, each prepared certificate valid, and the block the
    /// highest prepared one (none if none was prepared).
    fn new_view_ok(
        &mut self,
        c: &Committee,
        ctx: &Ctx<'_>,
        view: u64,
        changes: &[Signed],
        block: Option<&Block>,
    ) -> Result<(), String> {
        let mut signers = Vec::new();
        for change in changes {
            if !c.is_member(&change.from) || signers.contains(&change.from) {
                return Err(format!(
                    "view-change by {} is not a distinct validator's",
                    change.from.short()
                ));
            }
            if !self.cache.verify(
                &change.from,
                &sign_bytes(&ctx.chain, &change.body),
                &change.sig,
            ) {
                return Err(format!(
                    "view-change by {} does not verify",
                    change.from.short()
                ));
            }
            match Message::parse(&change.body)? {
                Message::ViewChange {
                    view: v,
                    height,
                    prepared,
                } if v == view && height == self.height => {
                    if let Some(p) = prepared {
                        self.prepared_ok(c, ctx, view, &p)?;
                    }
                }
                _ => return Err("an entry is not a view-change into this view and height".into()),
            }
            signers.push(change.from);
        }
        if signers.len() < c.quorum() {
            return Err(format!(
                "{} view-changes, {} needed",
                signers.len(),
                c.quorum()
            ));
        }
        let forced = highest_prepared(changes)?.map(|p| p.block.hash);
        match (forced, block) {
            (None, None) => Ok(()),
            (Some(h), Some(b)) if b.hash == h => Ok(()),
            (Some(h), _) => Err(format!(
                "the highest prepared block {} is not re-proposed",
                h.short()
            )),
            (None, Some(_)) => Err("a block is re-proposed that no view-change prepared".into()),
        }
    }
}

/// The prepared certificate of the highest view among VIEW-CHANGE messages (two different
/// blocks prepared in one view cannot both have 2f+1 honest-overlapping prepares: refused).
fn highest_prepared(changes: &[Signed]) -> Result<Option<Prepared>, String> {
    let mut best: Option<Prepared> = None;
    for change in changes {
        if let Ok(Message::ViewChange {
            prepared: Some(p), ..
        }) = Message::parse(&change.body)
        {
            match &best {
                Some(b) if b.view == p.view && b.block.hash != p.block.hash => {
                    return Err(format!("two blocks prepared in view {}", p.view));
                }
                Some(b) if b.view >= p.view => {}
                _ => best = Some(*p),
            }
        }
    }
    Ok(best)
}

/// The `view` of a block's `consensus` object `{"view": v}`.
pub fn proposed_view(consensus: Option<&Map<String, Value>>) -> Result<u64, String> {
    let obj = consensus.ok_or("the block has no consensus object")?;
    if obj.len() != 1 {
        return Err("the consensus object must be exactly {\"view\": v}".into());
    }
    obj.get("view")
        .filter(|v| !v.is_f64())
        .and_then(Value::as_u64)
        .ok_or_else(|| "consensus.view is not a non-negative integer".into())
}

/// The commit certificate for `votes` in `view`, on a copy of `block`.
pub fn certified(block: &Block, view: u64, votes: &[Vote]) -> Block {
    let mut block = block.clone();
    block.certificate = Some(certificate_value(view, votes));
    block
}
