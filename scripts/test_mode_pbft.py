"""Tests of the PBFT checks of scripts/verify_chain.py (scripts/mode_pbft.py) on pbft chains
built here from the specification — the primary of a view, commit certificates with 2f+1
distinct validators' signatures — and the reference vectors of topics.md ("PBFT")."""

import json
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import chain_format  # noqa: E402
import mode_pbft  # noqa: E402
import testkit  # noqa: E402
from testkit import public_key, sign, ts  # noqa: E402

SEEDS = sorted((bytes([i]) * 32 for i in range(1, 5)), key=public_key)


def pbft_doc():
    validators = [{"name": "v%d" % i, "key": public_key(s).hex()} for i, s in enumerate(SEEDS)]
    return {"format": 1, "name": "wattchain", "created": "2027-01-15T08:00:00.000Z",
            "consensus": {"mode": "pbft", "validators": validators, "f": 1,
                          "view_timeout": 2000},
            "finality_depth": 6, "max_records_per_block": 256}


GENESIS = testkit.load(pbft_doc())


def pbft_block(parent, view=0, seed=None, signers=(0, 1, 3), cert_view=None, height=None,
               records=()):
    """The block after `parent` proposed in `view` (by its primary unless `seed` says),
    certified by the validators at positions `signers`."""
    i = parent["index"] + 1
    seed = seed or SEEDS[view % 4]
    obj = {"index": i, "timestamp": ts(chain_format.timestamp_ms(parent["timestamp"]) + 100),
           "previous_hash": parent["hash"], "data": {"records": list(records)},
           "difficulty": 0, "nonce": 0, "consensus": {"view": view},
           "producer": public_key(seed).hex()}
    testkit.mine(obj, GENESIS)
    obj["signature"] = sign(seed, chain_format.sign_bytes(GENESIS.chain_id, obj["hash"])).hex()
    w = view if cert_view is None else cert_view
    message = mode_pbft.commit_sign_bytes(GENESIS.chain_id, w, height or i, obj["hash"])
    obj["certificate"] = {"view": w, "commits": [
        {"key": public_key(SEEDS[s]).hex(), "sig": sign(SEEDS[s], message).hex()}
        for s in signers]}
    return obj


def chain_of(n):
    chain = [testkit.block_json(chain_format.genesis_block(GENESIS))]
    for k in range(n):
        chain.append(pbft_block(chain[-1], view=k // 3, records=[testkit.record("c1", k)]))
    return chain


class PbftVerifierTest(testkit.VerifierRun):

    def test_a_certified_chain_is_valid(self):
        self.write(chain_of(8), pbft_doc())
        code, out, err = self.verify()
        self.assertEqual(code, 0, err)
        self.assertIn("pbft, 4 validators, f = 1", out)

    def test_2f_signatures_a_twice_signer_or_another_height_are_refused(self):
        chain = chain_of(4)
        chain[3] = pbft_block(chain[2], view=1, signers=(0, 1))
        self.assert_invalid(chain, 3, "consensus: certificate: 2 commit signatures, 3 needed", pbft_doc())
        chain[3] = pbft_block(chain[2], view=1, signers=(0, 1, 1))
        self.assert_invalid(chain, 3, "consensus: certificate commit #2: ", pbft_doc())
        chain[3] = pbft_block(chain[2], view=1, height=2)
        self.assert_invalid(chain, 3, "consensus: certificate commit #0: the signature of ", pbft_doc())
        chain[3] = pbft_block(chain[2], view=1, cert_view=0)
        self.assert_invalid(chain, 3, "consensus: certificate view 0 before the block's view 1", pbft_doc())

    def test_a_block_by_a_backup_or_without_certificate_is_refused(self):
        chain = chain_of(4)
        chain[3] = pbft_block(chain[2], view=1, seed=SEEDS[2])
        self.assert_invalid(chain, 3, "consensus: producer ", pbft_doc())
        chain[3] = pbft_block(chain[2], view=1)
        del chain[3]["certificate"]
        self.assert_invalid(chain, 3, "consensus: no commit certificate", pbft_doc())

    def test_a_genesis_without_3f_plus_1_validators_is_refused(self):
        doc = pbft_doc()
        doc["consensus"]["validators"].pop()
        with self.assertRaisesRegex(chain_format.Refused, "needs exactly 3f\\+1 = 4"):
            testkit.load(doc)


class ReferenceVectorTest(unittest.TestCase):
    """The PBFT vectors of topics.md, reproduced from the specification."""

    def test_chain_id_block_and_commit_sign_bytes_match_topics_md(self):
        topics = open(os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                   "..", "topics.md"), encoding="utf-8").read()
        g = GENESIS
        block = pbft_block(testkit.block_json(chain_format.genesis_block(g)))
        message = mode_pbft.commit_sign_bytes(g.chain_id, 0, 1, block["hash"])
        for value in (g.chain_id.hex(), block["hash"], message.hex()):
            self.assertIn(value, topics)
        self.assertEqual(json.dumps(block["certificate"]["commits"][0]["key"]),
                         json.dumps(public_key(SEEDS[0]).hex()))


if __name__ == "__main__":
    unittest.main()
