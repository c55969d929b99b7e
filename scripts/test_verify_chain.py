"""Tests of scripts/verify_chain.py: every validity rule on real v2 chains, and the command
line as a user runs it.

Run: python3 -m unittest discover -s scripts -p 'test_*.py'

Each rule test changes one thing in one block of a chain built by testkit and checks the exact
block and reason the verifier reports.
"""

import json
import os
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import chain_format  # noqa: E402
import ed25519  # noqa: E402
from testkit import (CREATED, CREATED_MS, DIFFICULTY, HONEST, HONEST_BLOCKS, KEY,  # noqa: E402
                     OTHER_KEY, VerifierRun, at, build, flip, genesis_doc, lines_of, load,
                     public_key, record, resign_as, seal, ts)
from test_ed25519 import SMALL_ORDER  # noqa: E402

SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "verify_chain.py")


class ValidChainTest(VerifierRun):
    def test_an_honest_chain_passes_with_its_summary(self):
        self.write(HONEST)
        code, out, err = self.verify("--stats")
        self.assertEqual((code, err), (0, ""))
        # 31 blocks, of which 10, 20 and 30 are empty (valid: they only add depth).
        self.assertIn("valid chain: 31 blocks, 54 records, 2 cabinets", out)
        self.assertIn("chain id %s" % load(genesis_doc()).chain_id.hex(), out)
        self.assertIn("head      #30 %s" % HONEST[-1]["hash"], out)
        self.assertIn("producers 1: %s" % public_key(KEY).hex()[:8], out)
        self.assertIn("cabinet   c1: 27 windows, ids 0..=26", out)
        self.assertRegex(out, r"stats     30 signatures verified in [0-9.]+ s: [0-9]+ "
                              r"verifications/s")

    def test_a_chain_of_only_the_genesis_block_is_valid(self):
        self.write(HONEST[:1])
        code, out, _ = self.verify()
        self.assertEqual(code, 0)
        self.assertIn("valid chain: 1 blocks, 0 records, 0 cabinets", out)

    def test_a_last_block_without_newline_is_accepted(self):
        self.write(HONEST, text=lines_of(HONEST)[:-1])
        self.assertEqual(self.verify()[0], 0)

    def test_equal_timestamps_are_not_going_back(self):
        chain = build(edit=at(5, lambda b: b.update(timestamp=ts(CREATED_MS + 40_000))))
        self.write(chain)
        self.assertEqual(self.verify()[0], 0)

    def test_gaps_are_warned_per_cabinet_as_ranges(self):
        def drop(i, obj):
            keep = [r for r in obj["data"]["records"]
                    if (r["cabinet"], r["window"]) not in missing]
            obj["data"]["records"] = keep
        missing = {("c1", 5), ("c1", 6), ("c1", 7), ("c1", 12), ("c2", 20), ("c2", 26)}
        self.write(build(blocks=HONEST_BLOCKS, edit=drop))
        code, out, err = self.verify()
        self.assertEqual(code, 0)
        # c2's window 26 is its last: nothing after it is missing yet.
        self.assertEqual(err, "warning: gap: c1: 5..=7, 12..=12 missing\n"
                              "warning: gap: c2: 20..=20 missing\n")
        self.assertIn("cabinet   c1: 23 windows, ids 0..=26", out)


class BlockRuleTest(VerifierRun):
    """One test per validity rule of section 4, in the spec's order."""

    def test_1_a_line_that_is_not_a_block(self):
        cases = [
            (lambda b: b.update(extra=1), "not a block: block: unknown keys 'extra'"),
            (lambda b: b.update(consensus={}), "not a block: key consensus is not used under pow"),
            (lambda b: b.update(certificate={}),
             "not a block: key certificate is not used under pow"),
            (lambda b: b.pop("nonce"), "not a block: block: missing keys nonce"),
            (lambda b: b.update(hash=b["hash"].upper()),
             "not a block: field hash is not 64 lowercase hex digits"),
            (lambda b: b.update(signature=b["signature"][:64]),
             "not a block: field signature is not 128 lowercase hex digits"),
            (lambda b: b.update(timestamp="2026-12-01T21:40:50Z"),
             "not a block: timestamp is not YYYY-MM-DDTHH:MM:SS.mmmZ"),
            (lambda b: b.update(index=-1), "not a block: field index is not an integer"),
            (lambda b: b.update(difficulty=4.0), "not a block: field difficulty is not an int"),
            (lambda b: b["data"]["records"][0].update(n=2**32),
             "not a block: record #0: field n is not an integer in 0..=4294967295"),
            (lambda b: b["data"]["records"][1]["averages"].pop("PR"),
             "not a block: record #1: averages: missing keys PR"),
        ]
        for change, reason in cases:
            with self.subTest(reason):
                self.assert_invalid(build(blocks=5, after=at(5, change)), 5, reason)

    def test_1_json_the_encoding_refuses(self):
        text = lines_of(HONEST[:7]).split("\n")
        cases = [
            (text[5].replace('"nonce":', '"nonce":1,"nonce":'), "not a block: duplicate key"),
            (text[5].replace('"PA":345.375', '"PA":NaN'), "not a block: NaN is not a JSON num"),
            (text[5].replace('"PA":345.375', '"PA":1e999'),
             "not a block: number 1e999 is out of the binary64 range"),
            (text[5].replace('"index":5', '"index":-0'),
             "not a block: field index is not an integer"),
            (text[5].replace('"cabinet":"c1"', '"cabinet":"\\ud800"'),
             "not a block: record #0: field cabinet is not valid Unicode"),
            (text[5][:-1], "not a block: "),
            ("", "not a block: "),
        ]
        for line, reason in cases:
            with self.subTest(reason):
                broken = "\n".join(text[:5] + [line] + text[6:])
                self.assert_invalid(None, 5, reason, text=broken)
        raw = lines_of(HONEST[:7]).encode().replace(b'"c1"', b'"c\xff1"', 9)
        with open(self.chain_path, "wb") as f:
            f.write(raw)
        with open(self.genesis_path, "w") as f:
            json.dump(genesis_doc(), f)
        code, _, err = self.verify()
        self.assertEqual(code, 1)
        self.assertTrue(err.startswith("block 1 (line 2): not a block: not UTF-8"), err)

    def test_2_index(self):
        self.assert_invalid(build(edit=at(5, lambda b: b.update(index=6))), 5,
                            "index out of sequence: expected 5, found 6")
        self.assert_invalid(HONEST[:5] + HONEST[6:], 5,
                            "index out of sequence: expected 5, found 6")

    def test_3_genesis_block_is_the_derived_one(self):
        other = genesis_doc(name="another-chain")
        self.assert_invalid(HONEST, 0, "not the genesis block derived from the genesis "
                            "document: previous_hash is %s, derived %s (the chain id: this "
                            "chain follows another genesis)"
                            % (HONEST[0]["previous_hash"], load(other).chain_id.hex()), doc=other)
        later = genesis_doc(created="2026-12-01T21:40:00.001Z")
        self.assert_invalid(HONEST, 0, "not the genesis block derived from the genesis "
                            "document: previous_hash is", doc=later)
        for field, value in [("timestamp", "2026-12-01T21:40:00.001Z"), ("nonce", 1),
                             ("difficulty", 1), ("producer", "1" * 64),
                             ("signature", "1" * 128), ("hash", "1" * 64)]:
            with self.subTest(field):
                first = dict(HONEST[0], **{field: value})
                self.assert_invalid([first] + HONEST[1:], 0, "not the genesis block derived "
                                    "from the genesis document: %s is %s" % (field, value))
        first = dict(HONEST[0], data={"records": [record("c1", 0)]})
        self.assert_invalid([first] + HONEST[1:], 0, "not the genesis block derived from the "
                            "genesis document: records is 1 records, derived none")

    def test_4_previous_hash(self):
        self.assert_invalid(build(edit=at(5, lambda b: b.update(
            previous_hash=HONEST[3]["hash"]))), 5, "broken link: previous_hash %s\u2026, "
            "expected %s\u2026" % (HONEST[3]["hash"][:8], HONEST[4]["hash"][:8]))

    def test_5_hash(self):
        def edit_average(obj):
            obj["data"]["records"][1]["averages"]["U"] += 0.5
        self.assert_invalid(build(after=at(5, edit_average)), 5, "hash mismatch: stored")
        self.assert_invalid(build(after=at(5, lambda b: b.update(nonce=b["nonce"] + 1))), 5,
                            "hash mismatch: stored")

    def test_6_difficulty_is_the_genesis_rule(self):
        for stated in (3, 5, 0):
            with self.subTest(stated):
                self.assert_invalid(build(edit=at(5, lambda b: b.update(difficulty=stated))), 5,
                                    "wrong difficulty: the block states %d, the genesis rules "
                                    "(pow) say 4" % stated)

    def test_7_work(self):
        chain = build(sealing=lambda i: {"work": i != 5})
        zeros = chain_format.leading_zero_bits(chain[5]["hash"])
        self.assertLess(zeros, DIFFICULTY)
        self.assert_invalid(chain, 5, "insufficient work: %d leading zero bits, difficulty 4"
                            % zeros)

    def test_8_signature(self):
        self.assert_invalid(build(after=at(5, lambda b: b.update(
            signature=flip(bytes.fromhex(b["signature"]), 300).hex()))), 5,
            "bad signature: [S]B - [k]A is not R")
        other_chain = load(genesis_doc(name="another-chain")).chain_id
        self.assert_invalid(build(sealing=lambda i: {"chain_id": other_chain} if i == 5 else {}),
                            5, "bad signature: [S]B - [k]A is not R")
        self.assert_invalid(build(after=at(5, lambda b: b.update(producer="0" * 64))), 5,
                            "hash mismatch")

    def test_8_producer_changed(self):
        # Another key put in, the hash no longer matches.
        other = public_key(OTHER_KEY).hex()
        self.assert_invalid(build(after=at(5, lambda b: b.update(producer=other))), 5,
                            "hash mismatch")

        # Another key put in and the work redone, the old signature does not verify for it.
        def take_over(i, obj):
            if i == 5:
                signature = obj["signature"]
                seal(obj, load(genesis_doc()), seed=OTHER_KEY)
                obj["signature"] = signature
        self.assert_invalid(build(after=take_over), 5, "bad signature: [S]B - [k]A is not R")

        # A key that is no point, or a small-order one, is named as such.
        self.assert_invalid(build(after=at(5, lambda b: resign_as(b, SMALL_ORDER[4]))), 5,
                            "bad signature: public key is a point of small order")
        no_point = next(y for y in range(2, 100) if ed25519.recover_x(y, 0) is None)
        self.assert_invalid(build(after=at(5, lambda b: resign_as(
            b, no_point.to_bytes(32, "little").hex()))), 5,
            "bad signature: public key: not the encoding of a curve point")

        # Under pow any producer that did the work and signed is valid.
        self.write(build(sealing=lambda i: {"seed": OTHER_KEY} if i % 2 else {}))
        code, out, _ = self.verify()
        self.assertEqual(code, 0)
        self.assertIn("producers 2: ", out)

    def test_10_timestamp(self):
        self.assert_invalid(build(edit=at(5, lambda b: b.update(
            timestamp=ts(CREATED_MS + 40_000 - 1)))), 5, "timestamp went back: "
            "2026-12-01T21:40:39.999Z after 2026-12-01T21:40:40.000Z")
        self.assert_invalid(build(edit=at(1, lambda b: b.update(
            timestamp=ts(CREATED_MS - 1)))), 1, "timestamp went back: ")

    def test_11_record_count(self):
        doc = genesis_doc(max_records_per_block=3)
        many = [record("c9", w) for w in range(4)]
        self.assert_invalid(build(doc, edit=at(5, lambda b: b["data"].update(records=many))), 5,
                            "record count 4, allowed 0..=3 (max_records_per_block)", doc=doc)

    def test_12_malformed_record(self):
        cases = [
            ({"n": 0}, "bad record #1: n is 0"),
            ({"cabinet": "c 1"}, "bad record #1: cabinet id 'c 1' is not 1..=64 characters"),
            ({"cabinet": "c" * 65}, "bad record #1: cabinet id"),
            ({"from": "2026-12-01"}, "bad record #1: from is not YYYY-MM-DDTHH:MM:SS.mmmZ"),
            ({"to": "2026-02-30T00:00:00.000Z"}, "bad record #1: to is not YYYY-MM-DDTHH"),
            ({"to": ts(CREATED_MS)}, "bad record #1: from 2026-12-01T21:40:40.000Z is after"),
        ]
        for change, reason in cases:
            with self.subTest(reason):
                self.assert_invalid(build(edit=at(5, lambda b: b["data"]["records"][1].update(
                    change))), 5, reason)

    def test_13_duplicate_windows(self):
        self.assert_invalid(build(edit=at(5, lambda b: b["data"]["records"].append(
            record("c2", 4)))), 5, "duplicate window: cabinet c2 window 4 already in block 5")
        self.assert_invalid(build(edit=at(7, lambda b: b["data"]["records"].append(
            record("c1", 2)))), 7, "duplicate window: cabinet c1 window 2 already in block 3")

    def test_the_first_failing_rule_is_reported(self):
        # Wrong link (4), bad signature (8) and going back in time (10) at once: 4 is reported.
        def many(obj):
            obj.update(previous_hash="ab" * 32, timestamp=CREATED)
        self.assert_invalid(build(edit=at(5, many), sealing=lambda i: {
            "chain_id": b"\0" * 32} if i == 5 else {}), 5, "broken link")

    def test_torn_last_line(self):
        text = lines_of(HONEST)
        torn = text[:len(text) - 40]
        self.assert_invalid(None, 30, "torn last line (no newline, not a block: ", text=torn)
        # The same cut line followed by a newline is no torn line but a bad block.
        self.assert_invalid(None, 30, "not a block: ", text=torn + "\n")

    def test_an_empty_chain_file(self):
        self.assert_invalid(None, 0, "empty chain file: no genesis block", text="")


class CommandLineTest(unittest.TestCase):
    """The script as a user runs it: a separate python3 process."""

    def run_script(self, *args):
        done = subprocess.run([sys.executable, SCRIPT, *args], capture_output=True, text=True,
                              timeout=60)
        return done.returncode, done.stdout, done.stderr

    def test_help_prints_usage_and_exits_0(self):
        code, out, err = self.run_script("--help")
        self.assertEqual((code, err), (0, ""))
        self.assertIn("usage: verify_chain.py [-h] [--genesis FILE] [--stats] CHAIN", out)
        self.assertIn("default: genesis.json in CHAIN's directory", " ".join(out.split()))
        self.assertIn("  2  usage error, a file that cannot be read, or a refused genesis", out)

    def test_usage_errors_exit_2(self):
        code, out, err = self.run_script()
        self.assertEqual((code, out), (2, ""))
        self.assertIn("the following arguments are required: CHAIN", err)
        self.assertEqual(self.run_script("a", "b")[0], 2)

    def test_io_errors_exit_2_with_one_message_naming_the_file(self):
        with tempfile.TemporaryDirectory() as tmp:
            missing = os.path.join(tmp, "nope.jsonl")
            self.assertEqual(self.run_script(missing),
                             (2, "", "cannot open %s: No such file or directory\n" % missing))
            chain = os.path.join(tmp, "chain.jsonl")
            with open(chain, "w") as f:
                f.write(lines_of(HONEST))
            genesis = os.path.join(tmp, "genesis.json")
            self.assertEqual(self.run_script(chain), (2, "", (
                "cannot open %s: No such file or directory (the default beside the chain; "
                "name another with --genesis FILE)\n" % genesis)))
            other = os.path.join(tmp, "other.json")
            self.assertEqual(self.run_script("--genesis", other, chain),
                             (2, "", "cannot open %s: No such file or directory\n" % other))
            self.assertEqual(self.run_script(tmp),
                             (2, "", "cannot open %s: Is a directory\n" % tmp))

    def test_a_valid_chain_with_a_genesis_elsewhere(self):
        with tempfile.TemporaryDirectory() as tmp:
            chain = os.path.join(tmp, "chain.jsonl")
            genesis = os.path.join(tmp, "elsewhere.json")
            with open(chain, "w") as f:
                f.write(lines_of(build(blocks=HONEST_BLOCKS, edit=at(
                    7, lambda b: b["data"]["records"].pop(0)))))
            with open(genesis, "w") as f:
                json.dump(genesis_doc(), f)
            code, out, err = self.run_script("--genesis", genesis, chain)
            self.assertEqual((code, err), (0, "warning: gap: c1: 6..=6 missing\n"))
            self.assertTrue(out.startswith("valid chain: 31 blocks, 53 records, 2 cabinets\n"))
            bad = os.path.join(tmp, "bad.jsonl")
            with open(bad, "w") as f:
                f.write(lines_of(HONEST[:3] + HONEST[4:]))
            self.assertEqual(self.run_script("--genesis", genesis, bad), (
                1, "", "block 3 (line 4): index out of sequence: expected 3, found 4\n"))
