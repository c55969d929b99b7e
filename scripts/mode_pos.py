"""Proof of stake for scripts/verify_chain.py (topics.md, "Proof of stake"): the genesis
parameters, the seal, the leader draw, evidence and the producer rule (validity step 9).
Python standard library only, written from the specification, not from the Rust code.
"""

import hashlib
import re
import struct

import ed25519
from chain_format import (canonical, int_in as _int, GENESIS_NAME, HEX64, HEX128, Invalid, Refused, header, sign_bytes,
                          timestamp_ms, want_keys)

MAX_VALIDATORS = 1024
MAX_DURATION_MS = 3_600_000
MAX_ROUND = 32
MAX_DOUBLINGS = 4
MAX_EVIDENCE = 16
KEYS = ("mode", "validators", "block_interval_ms", "round_timeout_ms", "exclude_equivocators")
HEADER_KEYS = ("index", "timestamp", "previous_hash", "records_hash", "difficulty", "nonce",
               "producer", "signature", "hash")
HEX = re.compile(r"[0-9a-f]*\Z")


def load(consensus):
    """The genesis `consensus` object of a pos chain -> rules; Refused otherwise."""
    try:
        want_keys(consensus, KEYS, "consensus")
    except Invalid as err:
        raise Refused(str(err))
    validators = consensus["validators"]
    if not isinstance(validators, list) or not 1 <= len(validators) <= MAX_VALIDATORS:
        raise Refused("consensus validators is not a list of 1..=%d" % MAX_VALIDATORS)
    out = []
    for i, v in enumerate(validators):
        try:
            want_keys(v, ("name", "key", "stake"), "validator %d" % i)
        except Invalid as err:
            raise Refused(str(err))
        if not isinstance(v["name"], str) or not GENESIS_NAME.match(v["name"]):
            raise Refused("validator %d: name is not 1..=64 characters of A-Z a-z 0-9 . _ -" % i)
        if not isinstance(v["key"], str) or not HEX64.match(v["key"]):
            raise Refused("validator %d: key is not 64 lowercase hex digits" % i)
        if not _int(v["stake"], 1, 2**64 - 1):
            raise Refused("validator %d: stake is not an integer >= 1" % i)
        out.append((v["name"], v["key"], v["stake"]))
    keys = [bytes.fromhex(k) for _, k, _ in out]
    if any(a >= b for a, b in zip(keys, keys[1:])):
        raise Refused("consensus validators are not sorted by key, distinct")
    if len({n for n, _, _ in out}) != len(out):
        raise Refused("consensus validators: a name is listed twice")
    rules = {"validators": out}
    for key, low in (("block_interval_ms", 1), ("round_timeout_ms", 10)):
        if not _int(consensus[key], low, MAX_DURATION_MS):
            raise Refused("consensus %s is not an integer %d..=%d" % (key, low, MAX_DURATION_MS))
        rules[key] = consensus[key]
    if type(consensus["exclude_equivocators"]) is not bool:
        raise Refused("consensus exclude_equivocators is not true or false")
    rules["exclude"] = consensus["exclude_equivocators"]
    return rules


def parse_consensus(obj):
    """The block's `consensus` object -> (round, offenders, evidence); Invalid otherwise."""
    if not isinstance(obj, dict):
        raise Invalid("a pos block needs a consensus object")
    want_keys(obj, ("round", "offenders", "evidence"), "consensus")
    if not _int(obj["round"], 0, MAX_ROUND):
        raise Invalid("round is not an integer 0..=%d" % MAX_ROUND)
    offenders = obj["offenders"]
    if not isinstance(offenders, list) or not all(
            isinstance(k, str) and HEX64.match(k) for k in offenders):
        raise Invalid("consensus.offenders is not a list of keys")
    raw = [bytes.fromhex(k) for k in offenders]
    if any(a >= b for a, b in zip(raw, raw[1:])):
        raise Invalid("consensus.offenders is not sorted and distinct")
    evidence = obj["evidence"]
    if not isinstance(evidence, list) or len(evidence) > MAX_EVIDENCE:
        raise Invalid("consensus.evidence is not a list of at most %d items" % MAX_EVIDENCE)
    for item in evidence:
        want_keys(item, ("a", "b"), "evidence item")
        for h in (item["a"], item["b"]):
            want_keys(h, HEADER_KEYS, "evidence header", ("consensus", "certificate"))
    return obj["round"], offenders, evidence


def seal(rules, obj):
    """The seal of a pos block: the canonical JSON of its `consensus` object (step 1 checks
    its shape)."""
    if "consensus" not in obj:
        raise Invalid("a pos block needs a consensus object")
    parse_consensus(obj["consensus"])
    return canonical(obj["consensus"])


def check_difficulty(rules, block, height):
    if block.difficulty != 0:
        raise Invalid("wrong difficulty: the block states %d, pos requires 0" % block.difficulty)


def seed(chain_id, height, rnd):
    return hashlib.sha256(b"WPL1" + chain_id + struct.pack(">QI", height, rnd)).digest()


def leader(rules, chain_id, height, rnd, offenders):
    """The (name, key hex, stake) leading (height, round) when `offenders` are recorded."""
    validators = rules["validators"]
    eligible = [v for v in validators if not (rules["exclude"] and v[1] in offenders)]
    if not eligible:
        eligible = validators
    total = sum(v[2] for v in eligible)
    x = int.from_bytes(seed(chain_id, height, rnd)[:16], "big") % total
    running = 0
    for v in eligible:
        running += v[2]
        if running > x:
            return v
    raise AssertionError("the running sum always exceeds x")


def round_offset(rules, rnd):
    """The sum of the lengths of rounds 0..rnd: round i lasts round_timeout * 2^min(i, 4)."""
    return sum(rules["round_timeout_ms"] << min(i, MAX_DOUBLINGS) for i in range(rnd))


def earliest(rules, parent_ms, rnd):
    """ms(parent) + block interval + round_offset(round)."""
    return parent_ms + rules["block_interval_ms"] + round_offset(rules, rnd)


def header_hash(h, seal_bytes):
    data = hashlib.sha256(b"WCD2" + bytes.fromhex(h["producer"])
                          + struct.pack(">I", len(seal_bytes)) + seal_bytes
                          + bytes.fromhex(h["records_hash"])).digest()
    return hashlib.sha256(header(b"WCB2", h["index"], h["difficulty"],
                                 bytes.fromhex(h["previous_hash"]), data,
                                 timestamp_ms(h["timestamp"]), h["nonce"])).hexdigest()


def check_evidence(rules, chain_id, item):
    """The offender's key (hex) if the evidence item proves equivocation; Invalid otherwise."""
    a, b = item["a"], item["b"]
    for h in (a, b):
        for key in ("index", "difficulty", "nonce"):
            if type(h[key]) is not int or h[key] < 0:
                raise Invalid("evidence header %s is not an integer" % key)
        for key, pattern in (("previous_hash", HEX64), ("records_hash", HEX64),
                             ("producer", HEX64), ("hash", HEX64), ("signature", HEX128)):
            if not isinstance(h[key], str) or not pattern.match(h[key]):
                raise Invalid("evidence header %s is not hex" % key)
        if not isinstance(h["timestamp"], str) or timestamp_ms(h["timestamp"]) is None:
            raise Invalid("evidence header timestamp is malformed")
    if a["index"] != b["index"] or a["index"] == 0:
        raise Invalid("evidence headers are not of one height")
    if a["producer"] != b["producer"]:
        raise Invalid("evidence headers have different producers")
    if not bytes.fromhex(a["hash"]) < bytes.fromhex(b["hash"]):
        raise Invalid("evidence headers are not two distinct hashes, lower first")
    if a["producer"] not in {v[1] for v in rules["validators"]}:
        raise Invalid("evidence names %s, not a validator" % a["producer"])
    rounds = []
    for h in (a, b):
        if "consensus" not in h:
            raise Invalid("an evidence header has no consensus object")
        rounds.append(parse_consensus(h["consensus"])[0])
        if header_hash(h, canonical(h["consensus"])) != h["hash"]:
            raise Invalid("an evidence header's hash does not match its fields")
        if not ed25519.verify(bytes.fromhex(h["producer"]), sign_bytes(chain_id, h["hash"]),
                              bytes.fromhex(h["signature"])):
            raise Invalid("an evidence header's signature does not verify")
    if rounds[0] != rounds[1]:
        raise Invalid("evidence headers are of different rounds")
    return a["producer"]


def check_producer(rules, block, verifier):
    """Step 9: evidence, offenders, the rightful leader of (height, round), the round's start."""
    if "certificate" in block.mode_keys:
        raise Invalid("certificate is not used under pos")
    chain_id = verifier.genesis.chain_id
    rnd, offenders, evidence = parse_consensus(block.consensus)
    before = verifier.mode_state.get("offenders", [])
    after = list(before)
    for i, item in enumerate(evidence):
        try:
            offender = check_evidence(rules, chain_id, item)
        except Invalid as err:
            raise Invalid("consensus: evidence #%d: %s" % (i, err))
        if offender in after:
            raise Invalid("consensus: evidence #%d: %s is already recorded" % (i, offender[:8]))
        after.append(offender)
    after.sort(key=bytes.fromhex)
    if offenders != after:
        raise Invalid("consensus: offenders are not the parent's plus this block's evidence")
    name, key, _ = leader(rules, chain_id, block.index, rnd, before)
    if key != block.producer:
        raise Invalid("consensus: producer %s is not the leader of height %d round %d (%s is)"
                      % (block.producer[:8], block.index, rnd, name))
    start = earliest(rules, verifier.previous.ms, rnd)
    if block.ms < start:
        raise Invalid("consensus: round %d block at %d ms, before its round starts (%d ms)"
                      % (rnd, block.ms, start))
    verifier.mode_state["offenders"] = after
    verifier.mode_state.setdefault("rounds", {})
    verifier.mode_state["rounds"][rnd] = verifier.mode_state["rounds"].get(rnd, 0) + 1


def describe(rules):
    return "pos, %d validators, block interval %d ms, round timeout %d ms" % (
        len(rules["validators"]), rules["block_interval_ms"], rules["round_timeout_ms"])
