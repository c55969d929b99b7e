use super::*;
use crate::ledger::consensus::ModeOptions;
use crate::ledger::{Block, BlockTemplate, Genesis, GenesisSpec, NodeKey, Timestamp, Violation};

const T0: u64 = 1_800_000_000_000;

fn keys(n: u8) -> Vec<NodeKey> {
    (1..=n).map(|i| NodeKey::from_seed([i; 32])).collect()
}

fn genesis(keys: &[NodeKey], stakes: &[u64]) -> Genesis {
    let validators = keys
        .iter()
        .zip(stakes)
        .enumerate()
        .map(|(i, (k, s))| Validator {
            name: format!("v{i}"),
            key: k.public(),
            stake: *s,
        })
        .collect();
    let mut spec = GenesisSpec::pow(0);
    spec.created = Timestamp::from_millis(T0).unwrap();
    spec.consensus = new_params(&ModeOptions {
        validators,
        ..ModeOptions::default()
    })
    .unwrap();
    Genesis::new(spec).unwrap()
}

fn pos(g: &Genesis) -> Pos {
    Pos::from_params(&g.consensus.params(), g.finality_depth, g.id()).unwrap()
}

/// A block on `parent` by `key` at `round`, `at` ms after the earliest time of round 0.
fn block(g: &Genesis, parent: &Header, key: &NodeKey, round: u32, at: u64, c: PosBlock) -> Block {
    let p = pos(g);
    let obj = PosBlock { round, ..c }.to_map();
    BlockTemplate {
        index: parent.index + 1,
        previous_hash: parent.hash,
        timestamp: Timestamp::from_millis(p.earliest(parent, 0) + at).unwrap(),
        difficulty: 0,
        records: vec![],
        producer: key.public(),
        seal: PosBlock::seal(&obj),
        consensus: Some(obj),
    }
    .finish(0, key, &g.id())
}

fn empty() -> PosBlock {
    PosBlock {
        round: 0,
        offenders: vec![],
        evidence: vec![],
    }
}

fn leader_key<'a>(
    g: &Genesis,
    keys: &'a [NodeKey],
    h: u64,
    r: u32,
    off: &[PublicKey],
) -> &'a NodeKey {
    let want = pos(g).leader(h, r, off).key;
    keys.iter().find(|k| k.public() == want).unwrap()
}

fn check(g: &Genesis, b: &Block, parent: &Header) -> Result<(), Violation> {
    crate::ledger::rules::check_header(g, &b.header(), parent)
}

#[test]
fn only_the_rightful_leader_of_the_round_may_produce() {
    let ks = keys(4);
    let g = genesis(&ks, &[1, 2, 3, 4]);
    let parent = g.header();
    let leader = leader_key(&g, &ks, 1, 0, &[]);
    check(&g, &block(&g, &parent, leader, 0, 0, empty()), &parent).expect("leader accepted");
    let other = ks.iter().find(|k| k.public() != leader.public()).unwrap();
    let err = check(&g, &block(&g, &parent, other, 0, 0, empty()), &parent).unwrap_err();
    assert!(
        err.to_string()
            .contains("is not the leader of height 1 round 0"),
        "{err}"
    );
}

#[test]
fn a_later_round_is_valid_only_after_the_earlier_rounds_timed_out() {
    let ks = keys(4);
    let g = genesis(&ks, &[1, 1, 1, 1]);
    let p = pos(&g);
    let parent = g.header();
    let l2 = leader_key(&g, &ks, 1, 2, &[]);
    // Round 2 starts after round 0 (T) and round 1 (2T): 3T after the earliest round-0 time.
    let early = block(&g, &parent, l2, 2, 3 * p.round_timeout_ms - 1, empty());
    let err = check(&g, &early, &parent).unwrap_err();
    assert!(err.to_string().contains("before its round starts"), "{err}");
    let on_time = block(&g, &parent, l2, 2, 3 * p.round_timeout_ms, empty());
    check(&g, &on_time, &parent).expect("round 2 at its start");
    assert!(
        p.weight(&block(&g, &parent, l2, 0, 0, empty()).header()) > p.weight(&on_time.header())
    );
    assert_eq!(p.round_at(0), 0);
    assert_eq!(p.round_at(p.round_timeout_ms), 1);
    assert_eq!(p.round_at(3 * p.round_timeout_ms - 1), 1);
    assert_eq!(p.round_at(3 * p.round_timeout_ms), 2);
}

#[test]
fn equivocation_evidence_is_recorded_and_excludes_the_offender_from_the_next_height() {
    let ks = keys(3);
    let g = genesis(&ks, &[1, 1, 1]);
    let p = pos(&g);
    let parent = g.header();
    let cheat = leader_key(&g, &ks, 1, 0, &[]);
    let a = block(&g, &parent, cheat, 0, 0, empty());
    let b = block(&g, &parent, cheat, 0, 1, empty());
    let e = Evidence::new(a.header(), b.header());
    assert_eq!(p.check_evidence(&e), Ok(cheat.public()));
    // A forged copy (another signature) or two rounds are not evidence.
    let mut forged = e.clone();
    forged.b.signature.0[0] ^= 1;
    assert!(p.check_evidence(&forged).is_err());
    // Block 1 (by the cheat itself, a) is the parent; block 2 records the evidence.
    let one = a.header();
    let l2 = leader_key(&g, &ks, 2, 0, &[]);
    let rec = PosBlock {
        round: 0,
        offenders: vec![cheat.public()],
        evidence: vec![e.clone()],
    };
    let two = block(&g, &one, l2, 0, 0, rec.clone());
    check(&g, &two, &one).expect("evidence recorded");
    // Offenders must be the parent's plus the evidence: omitting it is refused.
    let lie = PosBlock {
        offenders: vec![],
        ..rec.clone()
    };
    assert!(check(&g, &block(&g, &one, l2, 0, 0, lie), &one).is_err());
    // From height 3 on, the offender never leads.
    let two_h = two.header();
    for h in 3..200 {
        assert_ne!(p.leader(h, 0, &[cheat.public()]).key, cheat.public());
    }
    let l3 = leader_key(&g, &ks, 3, 0, &[cheat.public()]);
    let carry = PosBlock {
        round: 0,
        offenders: vec![cheat.public()],
        evidence: vec![],
    };
    check(&g, &block(&g, &two_h, l3, 0, 0, carry), &two_h).expect("offenders carried");
    // The same evidence twice is refused.
    let again = PosBlock {
        round: 0,
        offenders: vec![cheat.public()],
        evidence: vec![e],
    };
    let err = check(&g, &block(&g, &two_h, l3, 0, 0, again), &two_h).unwrap_err();
    assert!(err.to_string().contains("already recorded"), "{err}");
}

/// Chi-square of each validator's leadership share over 10 000 heights against its stake
/// share (the leader draw is a pure function: no network). 4 degrees of freedom; the critical
/// value at significance 0.001 is 18.467.
#[test]
fn leadership_share_follows_stake_share_chi_square() {
    let ks = keys(5);
    let stakes = [1u64, 2, 3, 4, 10];
    let g = genesis(&ks, &stakes);
    let p = pos(&g);
    let total: u64 = stakes.iter().sum();
    let mut counts = [0u64; 5];
    let n = 10_000u64;
    for h in 1..=n {
        let k = p.leader(h, 0, &[]).key;
        counts[ks.iter().position(|x| x.public() == k).unwrap()] += 1;
    }
    let mut chi2 = 0.0;
    for (i, k) in ks.iter().enumerate() {
        let stake = p
            .validators
            .iter()
            .find(|v| v.key == k.public())
            .unwrap()
            .stake;
        let expected = n as f64 * stake as f64 / total as f64;
        chi2 += (counts[i] as f64 - expected).powi(2) / expected;
        eprintln!(
            "validator stake {stake:>2}: led {:>5} of {n} ({:.3} vs {:.3})",
            counts[i],
            counts[i] as f64 / n as f64,
            stake as f64 / total as f64
        );
    }
    eprintln!("chi-square {chi2:.3} (4 d.o.f., critical 18.467 at 0.001)");
    assert!(chi2 < 18.467, "chi-square {chi2:.3}");
}

#[test]
fn pos_genesis_params_are_checked() {
    let ks = keys(2);
    let g = genesis(&ks, &[1, 1]);
    let mut params = g.consensus.params();
    params.insert("round_timeout_ms".into(), 0.into());
    let err = Pos::from_params(&params, 6, g.id())
        .unwrap_err()
        .to_string();
    assert!(err.contains("round_timeout_ms"), "{err}");
    let mut params = g.consensus.params();
    params.insert("view_timeout_ms".into(), 5.into());
    assert!(matches!(
        Pos::from_params(&params, 6, g.id()),
        Err(ParamsError::UnknownKey(_))
    ));
    let mut params = g.consensus.params();
    params.insert("mode".into(), "nope".into());
    let err = crate::ledger::consensus::from_params(&params, 6, g.id())
        .unwrap_err()
        .to_string();
    assert!(err.contains("not one of: pow, pos"), "{err}");
}
