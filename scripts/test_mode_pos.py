"""Tests of the proof-of-stake checks of scripts/verify_chain.py (scripts/mode_pos.py) on real
pos chains built here from the specification: the rightful leader, the round's start, evidence
and exclusion; and the reference vectors of topics.md."""

import json
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import chain_format  # noqa: E402
import mode_pos  # noqa: E402
import testkit  # noqa: E402
from testkit import CREATED_MS, public_key, sign, ts  # noqa: E402

SEEDS = [bytes(range(32)), bytes(range(1, 33)), bytes(range(2, 34))]
STAKES = [1, 2, 3]


def pos_doc():
    validators = sorted(({"name": "v%d" % i, "key": public_key(s).hex(), "stake": STAKES[i]}
                         for i, s in enumerate(SEEDS)), key=lambda v: bytes.fromhex(v["key"]))
    return testkit.genesis_doc(consensus={
        "mode": "pos", "validators": validators, "block_interval_ms": 1000,
        "round_timeout_ms": 2000, "exclude_equivocators": True})


GENESIS = testkit.load(pos_doc())
SEED_OF = {public_key(s).hex(): s for s in SEEDS}


def seal_pos(obj, seed):
    """Producer, hash (nonce 0, difficulty 0) and signature of a pos block object."""
    obj["producer"] = public_key(seed).hex()
    obj.setdefault("signature", "0" * 128)
    obj.setdefault("hash", "0" * 64)
    testkit.mine(obj, GENESIS)
    obj["signature"] = sign(seed, chain_format.sign_bytes(GENESIS.chain_id, obj["hash"])).hex()


def header_of(obj):
    """The header message form of a block object."""
    h = {k: obj[k] for k in ("index", "timestamp", "previous_hash", "difficulty", "nonce",
                             "producer", "signature", "hash", "consensus")}
    h["records_hash"] = chain_format.records_hash(obj["data"]["records"]).hex()
    return h


def pos_block(parent, rnd=0, offenders=(), evidence=(), seed=None, late=0):
    """The block after `parent` at round `rnd`, by the rightful leader unless `seed` says."""
    i = parent["index"] + 1
    rules = GENESIS.rules
    leader = mode_pos.leader(rules, GENESIS.chain_id, i, rnd, list(parent_offenders(parent)))
    start = mode_pos.earliest(rules, chain_format.timestamp_ms(parent["timestamp"]), rnd)
    obj = {"index": i, "timestamp": ts(start + late), "previous_hash": parent["hash"],
           "data": {"records": [testkit.record("c1", i)]}, "difficulty": 0, "nonce": 0,
           "consensus": {"round": rnd, "offenders": sorted(offenders, key=bytes.fromhex),
                         "evidence": list(evidence)}}
    seal_pos(obj, seed or SEED_OF[leader[1]])
    return obj


def parent_offenders(obj):
    return obj.get("consensus", {}).get("offenders", [])


def chain_of(n):
    chain = [testkit.block_json(chain_format.genesis_block(GENESIS))]
    for _ in range(n):
        chain.append(pos_block(chain[-1]))
    return chain


class PosVerifierTest(testkit.VerifierRun):

    def test_a_chain_by_the_rightful_leaders_is_valid(self):
        self.write(chain_of(12), pos_doc())
        code, out, err = self.verify()
        self.assertEqual(code, 0, err)
        self.assertIn("pos, 3 validators", out)

    def test_a_block_by_another_validator_is_refused(self):
        chain = chain_of(3)
        leader = chain[3]["producer"]
        other = next(s for k, s in SEED_OF.items() if k != leader)
        chain[3] = pos_block(chain[2], seed=other)
        self.assert_invalid(chain, 3, "consensus: producer", pos_doc())

    def test_a_later_round_before_its_start_is_refused_and_valid_at_it(self):
        chain = chain_of(2)
        chain.append(pos_block(chain[2], rnd=2, late=-1))
        self.assert_invalid(chain, 3, "consensus: round 2 block at", pos_doc())
        chain[3] = pos_block(chain[2], rnd=2)
        self.write(chain, pos_doc())
        self.assertEqual(self.verify()[0], 0)

    def test_evidence_is_recorded_and_the_offender_leads_no_more(self):
        chain = chain_of(1)
        cheat = chain[1]["producer"]
        twin = pos_block(chain[0], late=1)
        a, b = sorted((header_of(chain[1]), header_of(twin)), key=lambda h: h["hash"])
        evidence = {"a": a, "b": b}
        chain.append(pos_block(chain[1], offenders=[cheat], evidence=[evidence]))
        for _ in range(30):
            chain.append(pos_block(chain[-1], offenders=[cheat]))
            self.assertNotEqual(chain[-1]["producer"], cheat)
        self.write(chain, pos_doc())
        code, _, err = self.verify()
        self.assertEqual(code, 0, err)
        # Omitting the offender, or forging the evidence, is refused.
        bad = chain[:2] + [pos_block(chain[1], evidence=[evidence])]
        self.assert_invalid(bad, 2, "consensus: offenders are not", pos_doc())
        forged = json.loads(json.dumps(evidence))
        forged["b"]["signature"] = "00" + forged["b"]["signature"][2:]
        bad = chain[:2] + [pos_block(chain[1], offenders=[cheat], evidence=[forged])]
        self.assert_invalid(bad, 2, "consensus: evidence #0: an evidence header's signature",
                            pos_doc())

    def test_a_pos_block_without_consensus_is_not_a_block(self):
        chain = chain_of(2)
        del chain[2]["consensus"]
        self.assert_invalid(chain, 2, "not a block: a pos block needs a consensus object",
                            pos_doc())


class ReferenceVectorTest(unittest.TestCase):
    """The proof-of-stake vectors of topics.md, reproduced from the specification."""

    def test_leaders_and_seed_match_topics_md(self):
        doc = json.loads(VECTOR_GENESIS)
        g = chain_format.load_genesis(json.dumps(doc).encode())
        self.assertEqual(g.chain_id.hex(), VECTOR_CHAIN_ID)
        self.assertEqual(mode_pos.seed(g.chain_id, 1, 0).hex(), VECTOR_SEED_1_0)
        leaders = [mode_pos.leader(g.rules, g.chain_id, h, 0, [])[0] for h in range(1, 11)]
        self.assertEqual(" ".join(leaders), VECTOR_LEADERS)
        self.assertEqual(mode_pos.leader(g.rules, g.chain_id, 1, 1, [])[0], VECTOR_LEADER_1_1)


def vectors():
    """The vector block of topics.md's "Proof of stake" section."""
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "topics.md")
    text = open(path, encoding="utf-8").read()
    section = text[text.index("#### Proof-of-stake reference vectors"):]
    block = section.split("```")[1]
    values = {}
    for line in block.splitlines():
        if " = " in line:
            key, value = line.split(" = ", 1)
            values[key.strip()] = value.strip()
    return values


V = vectors()
VECTOR_GENESIS = V["genesis"]
VECTOR_CHAIN_ID = V["chain id"]
VECTOR_SEED_1_0 = V["seed(1, 0)"]
VECTOR_LEADERS = V["leaders 1..10"]
VECTOR_LEADER_1_1 = V["leader(1, 1)"]

if __name__ == "__main__":
    unittest.main()
