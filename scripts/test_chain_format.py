"""Tests of scripts/chain_format.py: the genesis document, the byte encoding, and the table of
consensus modes.

Run: python3 -m unittest discover -s scripts -p 'test_*.py'
"""

import hashlib
import io
import json
import os
import struct
import sys
import tempfile
import unittest
import unittest.mock

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import chain_format  # noqa: E402
import ed25519  # noqa: E402
import verify_chain  # noqa: E402
from testkit import (CREATED, CREATED_MS, DIFFICULTY, HONEST, KEY, OTHER_KEY,  # noqa: E402
                     VerifierRun, at, build, genesis_doc, lines_of, load, public_key)


SPEC_GENESIS = """{
  "format": 1,
  "name": "wattchain",
  "created": "2026-12-01T21:40:00.000Z",
  "consensus": {"mode": "pow", "difficulty": 16},
  "finality_depth": 6,
  "max_records_per_block": 256
}"""


class GenesisTest(unittest.TestCase):
    def refused(self, text, reason):
        with self.assertRaises(chain_format.Refused) as caught:
            chain_format.load_genesis(text.encode() if isinstance(text, str) else text)
        self.assertIn(reason, str(caught.exception))

    def changed(self, **changes):
        return json.dumps(genesis_doc(**changes))

    def test_the_chain_id_is_the_sha256_of_the_canonical_json(self):
        canonical = ('{"consensus":{"difficulty":16,"mode":"pow"},"created":'
                     '"2026-12-01T21:40:00.000Z","finality_depth":6,"format":1,'
                     '"max_records_per_block":256,"name":"wattchain"}')
        genesis = chain_format.load_genesis(SPEC_GENESIS.encode())
        self.assertEqual(genesis.chain_id, hashlib.sha256(canonical.encode()).digest())
        self.assertEqual(chain_format.load_genesis(canonical.encode()).chain_id, genesis.chain_id)
        self.assertEqual((genesis.name, genesis.rules, genesis.finality_depth,
                          genesis.max_records), ("wattchain", {"difficulty": 16}, 6, 256))

    def test_the_derived_genesis_block(self):
        genesis = chain_format.load_genesis(SPEC_GENESIS.encode())
        block = chain_format.genesis_block(genesis)
        records_hash = hashlib.sha256(b"WCR1" + bytes(4)).digest()
        data_hash = hashlib.sha256(b"WCD2" + bytes(32) + bytes(4) + records_hash).digest()
        header = (b"WCB2" + bytes(8) + bytes(4) + genesis.chain_id + data_hash
                  + struct.pack(">Q", chain_format.timestamp_ms(CREATED)) + bytes(8))
        self.assertEqual(block.hash, hashlib.sha256(header).hexdigest())
        self.assertEqual((block.previous_hash, block.producer, block.signature),
                         (genesis.chain_id.hex(), "0" * 64, "0" * 128))

    def test_limits_are_accepted_up_to_their_bounds(self):
        for changes in [{"consensus": {"mode": "pow", "difficulty": 0}},
                        {"consensus": {"mode": "pow", "difficulty": 40}},
                        {"finality_depth": 1}, {"finality_depth": 1000},
                        {"max_records_per_block": 1}, {"max_records_per_block": 256},
                        {"name": "A-z_0.9" + "x" * 57}, {"created": "1970-01-01T00:00:00.000Z"}]:
            with self.subTest(changes):
                chain_format.load_genesis(self.changed(**changes).encode())

    def test_refused_documents(self):
        cases = [
            (self.changed(finality_depth=6.0), "6.0 is not an integer (floats are refused)"),
            (self.changed().replace('"format": 1', '"format": 1e0'), "1e0 is not an integer"),
            (self.changed().replace('"format": 1', '"format": -0'), "-0 is not an integer"),
            (self.changed().replace('"format": 1', '"format": NaN'), "NaN is not a JSON number"),
            (self.changed(extra=True), "genesis: unknown keys 'extra'"),
            (self.changed(consensus={"mode": "pow", "difficulty": 4, "reward": 1}),
             "consensus: unknown keys 'reward'"),
            (self.changed(consensus={"mode": "pow"}), "consensus: missing keys difficulty"),
            (json.dumps({k: v for k, v in genesis_doc().items() if k != "finality_depth"}),
             "genesis: missing keys finality_depth"),
            (self.changed().replace('"format": 1', '"format": 1, "name": "again"'),
             "duplicate key 'name'"),
            (self.changed(consensus={"mode": "pow", "difficulty": 41}),
             "consensus difficulty 41 is not an integer in 0..=40 (2^41 expected trials per "
             "block: a chain that never grows)"),
            (self.changed(consensus={"mode": "pow", "difficulty": -1}), "difficulty -1 is not"),
            (self.changed(consensus={"mode": "pow", "difficulty": "16"}), 'difficulty "16" is'),
            (self.changed(consensus={"mode": "pow", "difficulty": True}), "difficulty true is"),
            (self.changed(consensus={"mode": "pos", "validators": []}),
             "consensus: missing keys block_interval_ms"),
            (self.changed(consensus={"mode": "pbft"}),
             "consensus: missing keys validators, f, view_timeout"),
            (self.changed(consensus={"mode": "poa"}), "unknown consensus mode 'poa' (known: pow, pos"),
            (self.changed(consensus="pow"), "consensus is not an object with a mode"),
            (self.changed(format=2), "key format is not an integer in 1..=1"),
            (self.changed(format=True), "key format is not an integer"),
            (self.changed(name=""), "name is not 1..=64 characters of A-Z a-z 0-9 . _ -"),
            (self.changed(name="watt chain"), "name is not"),
            (self.changed(name="w\u00e4tt"), "name is not"),
            (self.changed(name="x" * 65), "name is not"),
            (self.changed(created="2026-12-01T21:40:00Z"), "created is not a timestamp"),
            (self.changed(created="1969-12-31T23:59:59.999Z"), "created is not a timestamp"),
            (self.changed(finality_depth=0), "key finality_depth is not an integer in 1..=1000"),
            (self.changed(finality_depth=1001), "finality_depth is not an integer in 1..=1000"),
            (self.changed(max_records_per_block=0), "max_records_per_block is not an integer "
                                                    "in 1..=256"),
            (self.changed(max_records_per_block=257), "max_records_per_block is not"),
            (self.changed(name=None), "null is not a value the genesis allows"),
            ("[]", "genesis is not an object"),
            ("{", "not JSON the genesis allows"),
            (b"\xff{}", "not UTF-8"),
        ]
        for text, reason in cases:
            with self.subTest(reason):
                self.refused(text, reason)

    def test_a_refused_genesis_exits_2_naming_the_file(self):
        with tempfile.TemporaryDirectory() as tmp:
            chain, genesis = os.path.join(tmp, "chain.jsonl"), os.path.join(tmp, "genesis.json")
            with open(chain, "w") as f:
                f.write(lines_of(HONEST[:1]))
            with open(genesis, "w") as f:
                f.write(self.changed(consensus={"mode": "pow", "difficulty": 41}))
            out, err = io.StringIO(), io.StringIO()
            self.assertEqual(verify_chain.main([chain], out, err), 2)
            self.assertEqual(err.getvalue(), "genesis %s: consensus difficulty 41 is not an "
                             "integer in 0..=40 (2^41 expected trials per block: a chain that "
                             "never grows)\n" % genesis)


class EncodingTest(unittest.TestCase):
    def test_record_bytes_and_header_layout_match_the_v1_reference_vector(self):
        # topics.md's v1 vector (computed by the Rust code): v2 keeps the record bytes and the
        # header layout, and changes only the magics and what data_hash covers.
        rec = {"cabinet": "cab-1", "window": 42, "from": "2026-11-21T01:31:35.123Z",
               "to": "2026-11-21T01:31:44.923Z", "n": 50,
               "averages": {"U": 230.25, "I": 1.5, "PA": 345.375, "PR": -12.0},
               "digests": {"U": "11" * 32, "I": "22" * 32, "PA": "33" * 32, "PR": "44" * 32}}
        v1_data = hashlib.sha256(b"WCD1" + struct.pack(">I", 1)
                                 + chain_format.encode_records([rec])).digest()
        self.assertEqual(v1_data.hex(),
                         "1061930b64b4d5e6671e4e83560637d4d4f466592d2eb65ddbc8a8edbd6b28bb")
        header = chain_format.header(b"WCB1", 7, 4, bytes(range(32)), v1_data,
                                     chain_format.timestamp_ms("2026-11-21T01:31:35.123Z"),
                                     0x0102030405060708)
        self.assertEqual(hashlib.sha256(header).hexdigest(),
                         "ef506879de12b71eb7b41906312d8804fb5090f53cdc3a2b4d32894aa7300bd9")

    def test_v2_hash_covers_producer_seal_and_records(self):
        obj = HONEST[5]
        block = chain_format.block_from_json(json.loads(json.dumps(obj)), load(genesis_doc()))
        records = hashlib.sha256(b"WCR1" + struct.pack(">I", 2)
                                 + chain_format.encode_records(block.records)).digest()
        data = hashlib.sha256(b"WCD2" + bytes.fromhex(obj["producer"]) + struct.pack(">I", 0)
                              + records).digest()
        header = (b"WCB2" + struct.pack(">QI", 5, DIFFICULTY) + bytes.fromhex(
            obj["previous_hash"]) + data + struct.pack(">QQ", CREATED_MS + 50_000, obj["nonce"]))
        self.assertEqual(len(header), 96)
        self.assertEqual(chain_format.block_hash(block), hashlib.sha256(header).hexdigest())
        self.assertEqual(obj["hash"], hashlib.sha256(header).hexdigest())
        message = b"WCS1" + load(genesis_doc()).chain_id + bytes.fromhex(obj["hash"])
        ed25519.check(bytes.fromhex(obj["producer"]), message, bytes.fromhex(obj["signature"]))


class ModeTableTest(VerifierRun):
    """A consensus mode is one entry of chain_format.MODES: a toy mode that puts a `consensus`
    object into the hash (seal), wants difficulty and nonce 0 and one fixed producer runs
    through every rule without any other change to the verifier."""

    def setUp(self):
        super().setUp()

        def load_mode(consensus):
            if set(consensus) != {"mode", "leader"}:
                raise chain_format.Refused("consensus: want mode and leader")
            return {"leader": consensus["leader"]}

        def seal(rules, obj):
            round_ = obj.get("consensus", {}).get("round")
            if type(round_) is not int:
                raise chain_format.Invalid("consensus is not {\"round\": <integer>}")
            return struct.pack(">Q", round_)

        def check_difficulty(rules, block, height):
            if block.difficulty or block.nonce:
                raise chain_format.Invalid("difficulty and nonce must be 0 under toy")

        def check_producer(rules, block, verifier):
            if block.producer != rules["leader"]:
                raise chain_format.Invalid("producer %s is not the leader" % block.producer[:8])

        toy = chain_format.Mode(load_mode, ("consensus",), seal, check_difficulty,
                                check_producer, lambda rules: "toy")
        patcher = unittest.mock.patch.dict(chain_format.MODES, {"toy": toy})
        patcher.start()
        self.addCleanup(patcher.stop)
        self.doc = genesis_doc(consensus={"mode": "toy", "leader": public_key(KEY).hex()})

    def toy_chain(self, edit=None, **options):
        def with_round(i, obj):
            obj["consensus"] = {"round": i}
            if edit:
                edit(i, obj)
        return build(self.doc, edit=with_round, **options)

    def test_a_toy_chain_passes(self):
        self.write(self.toy_chain(), self.doc)
        code, out, err = self.verify()
        self.assertEqual((code, err), (0, ""))
        self.assertIn("rules     toy, finality depth 6", out)

    def test_the_toy_rules_apply_at_their_steps(self):
        self.assert_invalid(self.toy_chain(after=at(5, lambda b: b["consensus"].update(
            round=9))), 5, "hash mismatch", doc=self.doc)
        self.assert_invalid(self.toy_chain(after=at(5, lambda b: b.pop("consensus"))), 5,
                            "not a block: consensus is not", doc=self.doc)
        self.assert_invalid(self.toy_chain(sealing=lambda i: {"first_nonce": int(i == 5)}), 5,
                            "difficulty and nonce must be 0 under toy", doc=self.doc)
        self.assert_invalid(self.toy_chain(sealing=lambda i: {"seed": OTHER_KEY} if i == 5
                                           else {}), 5, "producer %s is not the leader"
                            % public_key(OTHER_KEY).hex()[:8], doc=self.doc)
        self.assert_invalid(self.toy_chain(after=at(5, lambda b: b.update(certificate={}))), 5,
                            "not a block: key certificate is not used under toy", doc=self.doc)
