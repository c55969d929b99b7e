//! Quorums and certificates: 2f+1 signatures of distinct validators over one vote body.
//!
//! A **commit certificate** rides beside each block in the chain file, in the block's
//! `certificate` key (not covered by the hash): `{"view":v,"commits":[{"key","sig"},…]}`, each
//! `sig` a COMMIT signature over `sign_bytes(chain, {"type":"commit","view":v,
//! "height":index,"hash":block hash})`. A **prepared certificate** (inside a VIEW-CHANGE) is
//! the same with PREPARE bodies.

use std::collections::{BTreeMap, HashSet};

use sha2::{Digest, Sha256};

use serde_json::{Map, Value};

use super::messages::{parse_votes, sign_bytes, vote_body, Phase, Vote};
use crate::ledger::consensus::validators::ValidatorSet;
use crate::ledger::encoding::{Hash32, PublicKey, SignatureBytes};
use crate::ledger::keys::verify;

/// The validators and the fault bound: N = 3f+1, quorum 2f+1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committee {
    /// The validators, sorted by key.
    pub validators: ValidatorSet,
    /// Faults tolerated.
    pub f: usize,
}

impl Committee {
    /// Signatures that make a quorum: 2f+1.
    pub fn quorum(&self) -> usize {
        2 * self.f + 1
    }

    /// The primary of `view`: validators[view mod N].
    pub fn primary(&self, view: u64) -> PublicKey {
        let n = self.validators.len() as u64;
        // `n ≥ 1` (a set is never empty), and the index is below n.
        self.validators
            .get((view % n) as usize)
            .map(|v| v.key)
            .unwrap_or(PublicKey::NONE)
    }

    /// Whether `key` is a validator.
    pub fn is_member(&self, key: &PublicKey) -> bool {
        self.validators.position(key).is_some()
    }

    /// Checks that `votes` are at least 2f+1 valid `phase` signatures of distinct validators
    /// for (`view`, `height`, `hash`) under `chain`: every entry must be a validator's, appear
    /// once and verify (one bad entry refuses the whole set).
    #[allow(clippy::too_many_arguments)]
    pub fn check_votes(
        &self,
        chain: &Hash32,
        phase: Phase,
        view: u64,
        height: u64,
        hash: &Hash32,
        votes: &[Vote],
        cache: &mut SigCache,
    ) -> Result<(), String> {
        let bytes = sign_bytes(chain, &vote_body(phase, view, height, hash));
        let mut seen = Vec::with_capacity(votes.len());
        for vote in votes {
            if !self.is_member(&vote.key) {
                return Err(format!("{} is not a validator", vote.key.short()));
            }
            if seen.contains(&vote.key) {
                return Err(format!("{} signed twice", vote.key.short()));
            }
            if !cache.verify(&vote.key, &bytes, &vote.sig) {
                return Err(format!(
                    "the {} signature of {} does not verify",
                    phase.name(),
                    vote.key.short()
                ));
            }
            seen.push(vote.key);
        }
        if seen.len() < self.quorum() {
            return Err(format!(
                "{} {} signatures, {} needed (2f+1)",
                seen.len(),
                phase.name(),
                self.quorum()
            ));
        }
        Ok(())
    }

    /// Checks a block's commit certificate `{"view","commits"}` for (`height`, `hash`); returns
    /// its view and the number of signatures.
    pub fn check_certificate(
        &self,
        chain: &Hash32,
        height: u64,
        hash: &Hash32,
        certificate: &Map<String, Value>,
    ) -> Result<(u64, usize), String> {
        let (view, commits) = parse_certificate(certificate)?;
        let mut cache = SigCache::default();
        self.check_votes(
            chain,
            Phase::Commit,
            view,
            height,
            hash,
            &commits,
            &mut cache,
        )?;
        Ok((view, commits.len()))
    }
}

/// Reads `{"view":v,"commits":[…]}` (nothing else).
pub fn parse_certificate(certificate: &Map<String, Value>) -> Result<(u64, Vec<Vote>), String> {
    if let Some(k) = certificate
        .keys()
        .find(|k| !["view", "commits"].contains(&k.as_str()))
    {
        return Err(format!("{k} is not a key of a certificate"));
    }
    let view = certificate
        .get("view")
        .filter(|v| !v.is_f64())
        .and_then(Value::as_u64)
        .ok_or("certificate view is not a non-negative integer")?;
    let commits = parse_votes(
        certificate
            .get("commits")
            .ok_or("certificate commits are missing")?,
        super::messages::MAX_ITEMS,
    )?;
    Ok((view, commits))
}

/// The certificate object for `view` and these votes (sorted by key, so every node that holds
/// the same signatures writes the same bytes).
pub fn certificate_value(view: u64, votes: &[Vote]) -> Map<String, Value> {
    let mut sorted = votes.to_vec();
    sorted.sort_by_key(|v| v.key);
    let mut m = Map::new();
    m.insert("view".into(), view.into());
    m.insert(
        "commits".into(),
        Value::Array(sorted.iter().map(Vote::to_value).collect()),
    );
    m
}

/// Votes of one kind for one (view, height), by block hash, one per validator: the first vote a
/// validator sends for a slot counts, a second for another hash is equivocation (reported).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tally {
    by_signer: BTreeMap<PublicKey, (Hash32, SignatureBytes)>,
}

/// What adding a vote did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Added {
    /// Counted.
    New,
    /// The same vote again (a replay or duplicate): ignored.
    Again,
    /// The signer already voted for another hash in this slot: ignored, evidence.
    Conflict,
}

impl Tally {
    /// Counts `key`'s vote for `hash`.
    pub fn add(&mut self, key: PublicKey, hash: Hash32, sig: SignatureBytes) -> Added {
        match self.by_signer.get(&key) {
            Some((h, _)) if *h == hash => Added::Again,
            Some(_) => Added::Conflict,
            None => {
                self.by_signer.insert(key, (hash, sig));
                Added::New
            }
        }
    }

    /// The votes for `hash`.
    pub fn votes_for(&self, hash: &Hash32) -> Vec<Vote> {
        self.by_signer
            .iter()
            .filter(|(_, (h, _))| h == hash)
            .map(|(key, (_, sig))| Vote {
                key: *key,
                sig: *sig,
            })
            .collect()
    }

    /// How many distinct validators voted for `hash`.
    pub fn count(&self, hash: &Hash32) -> usize {
        self.by_signer.values().filter(|(h, _)| h == hash).count()
    }
}

/// Signatures already verified (signer, signature, SHA-256 of the signed bytes): a vote seen
/// on the bus costs nothing when it comes back inside a certificate or a NEW-VIEW. Bounded:
/// cleared when full.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SigCache {
    seen: HashSet<(PublicKey, SignatureBytes, [u8; 32])>,
}

impl SigCache {
    const MAX: usize = 8_192;

    fn entry(
        key: &PublicKey,
        bytes: &[u8],
        sig: &SignatureBytes,
    ) -> (PublicKey, SignatureBytes, [u8; 32]) {
        (*key, *sig, Sha256::digest(bytes).into())
    }

    /// Whether `sig` by `key` over `bytes` verifies (remembered when it does).
    pub fn verify(&mut self, key: &PublicKey, bytes: &[u8], sig: &SignatureBytes) -> bool {
        let entry = Self::entry(key, bytes, sig);
        if self.seen.contains(&entry) {
            return true;
        }
        if !verify(key, bytes, sig) {
            return false;
        }
        self.remember(entry);
        true
    }

    /// Records a signature the caller verified itself (the engine's envelope check).
    pub fn trust(&mut self, key: &PublicKey, bytes: &[u8], sig: &SignatureBytes) {
        self.remember(Self::entry(key, bytes, sig));
    }

    fn remember(&mut self, entry: (PublicKey, SignatureBytes, [u8; 32])) {
        if self.seen.len() >= Self::MAX {
            self.seen.clear();
        }
        self.seen.insert(entry);
    }
}
