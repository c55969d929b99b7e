#!/usr/bin/env python3
"""Independent verifier for a wattchain chain file (chain.jsonl), ledger encoding v2.

Implements topics.md's "Ledger encoding" (signed blocks bound to a genesis) from the
specification alone, with the Python standard library only (Ed25519 in ed25519.py beside this
file), so that it catches mistakes the Rust implementation would share with its own verifier.

Exit 0 and a summary on stdout when the chain is valid (gap warnings on stderr); 1 and
"block <i> (line <i+1>): <reason>" for the first bad block on stderr; 2 for a usage error, a
file that cannot be read, or a genesis document that is refused.
"""

import argparse
import math
import os
import sys
import time

import ed25519
from chain_format import (CABINET, QUANTITIES, Invalid, Refused, block_hash,
                          genesis_block, leading_zero_bits, load_genesis, parse_block, short,
                          sign_bytes, timestamp_ms)

KEY_CACHE_SIZE = 256


# ---------------------------------------------------------------------------------------------
# Validity (section 4), one block after another

# previous_hash first: a chain checked against another genesis is told so.
GENESIS_FIELDS = ("previous_hash", "timestamp", "records", "difficulty", "nonce", "producer",
                  "signature", "mode_keys", "hash")


class Verifier:
    """Applies the validity rules to each line in turn; raises Invalid at the first failure."""

    def __init__(self, genesis):
        self.genesis = genesis
        self.derived = genesis_block(genesis)
        self.previous = None
        self.blocks = 0
        self.committed = {}   # (cabinet, window) -> index of the block that committed it
        self.keys = {}        # producer hex -> ed25519.PublicKey, or why it is no key (str)
        self.producers = {}   # producer hex -> blocks produced
        self.work = 0
        self.signatures = 0
        self.signature_seconds = 0.0
        self.mode_state = {}  # whatever the consensus mode keeps from block to block

    def add(self, raw, terminated):
        """Checks the next line (without its newline); `terminated` is False for a last line
        that had no newline."""
        i = self.blocks
        try:
            try:
                block = parse_block(raw, self.genesis)
            except Invalid as err:
                if not terminated:
                    raise Invalid("torn last line (no newline, %s)" % err)
                raise
            self.check(block, i)
        except Invalid as err:
            raise Invalid("block %d (line %d): %s" % (i, i + 1, err))
        self.previous = block
        self.blocks += 1

    def check(self, block, i):
        """Steps 2..13 for block i (step 1 is parse_block)."""
        genesis, previous = self.genesis, self.previous
        if block.index != i:
            raise Invalid("index out of sequence: expected %d, found %d" % (i, block.index))
        if i == 0:
            self.check_genesis_block(block)
            return
        if block.previous_hash != previous.hash:
            raise Invalid("broken link: previous_hash %s, expected %s"
                          % (short(block.previous_hash), short(previous.hash)))
        computed = block_hash(block)
        if block.hash != computed:
            raise Invalid("hash mismatch: stored %s, computed %s"
                          % (short(block.hash), short(computed)))
        genesis.mode.check_difficulty(genesis.rules, block, i)
        zeros = leading_zero_bits(block.hash)
        if zeros < block.difficulty:
            raise Invalid("insufficient work: %d leading zero bits, difficulty %d"
                          % (zeros, block.difficulty))
        self.check_signature(block)
        genesis.mode.check_producer(genesis.rules, block, self)
        if block.ms < previous.ms:
            raise Invalid("timestamp went back: %s after %s"
                          % (block.timestamp, previous.timestamp))
        if len(block.records) > genesis.max_records:
            raise Invalid("record count %d, allowed 0..=%d (max_records_per_block)"
                          % (len(block.records), genesis.max_records))
        for position, record in enumerate(block.records):
            problem = record_problem(record)
            if problem:
                raise Invalid("bad record #%d: %s" % (position, problem))
        here = {}
        for record in block.records:
            key = (record["cabinet"], record["window"])
            first = self.committed.get(key, here.get(key))
            if first is not None:
                raise Invalid("duplicate window: cabinet %s window %d already in block %d"
                              % (key[0], key[1], first))
            here[key] = i
        self.committed.update(here)
        self.work += 2 ** block.difficulty
        self.producers[block.producer] = self.producers.get(block.producer, 0) + 1

    def check_genesis_block(self, block):
        """Step 3: block 0 is the one derived from the genesis document, field by field."""
        for field in GENESIS_FIELDS:
            found, derived = getattr(block, field), getattr(self.derived, field)
            if found == derived:
                continue
            if field == "records":
                found, derived = "%d records" % len(found), "none"
            elif field == "mode_keys":
                raise Invalid("not the genesis block derived from the genesis document: it "
                              "carries %s, the derived block has no mode keys" % ", ".join(found))
            elif field == "previous_hash":
                derived += " (the chain id: this chain follows another genesis)"
            raise Invalid("not the genesis block derived from the genesis document: %s is %s, "
                          "derived %s" % (field, found, derived))

    def check_signature(self, block):
        """Step 8: the producer's Ed25519 signature over sign_bytes (strict verification)."""
        started = time.perf_counter()
        key = self.keys.get(block.producer)
        if key is None:
            if len(self.keys) >= KEY_CACHE_SIZE:
                self.keys.clear()
            try:
                key = ed25519.PublicKey(bytes.fromhex(block.producer))
            except ed25519.BadSignature as err:
                key = str(err)
            self.keys[block.producer] = key
        try:
            if isinstance(key, str):
                raise Invalid("bad signature: %s" % key)
            key.check(sign_bytes(self.genesis.chain_id, block.hash),
                      bytes.fromhex(block.signature))
        except ed25519.BadSignature as err:
            raise Invalid("bad signature: %s" % err)
        finally:
            self.signatures += 1
            self.signature_seconds += time.perf_counter() - started


def record_problem(r):
    """Step 12: why one record is not well formed, or None."""
    start, end = timestamp_ms(r["from"]), timestamp_ms(r["to"])
    if not CABINET.match(r["cabinet"]):
        return "cabinet id %r is not 1..=64 characters of [A-Za-z0-9_-]" % r["cabinet"]
    if start is None:
        return "from is not YYYY-MM-DDTHH:MM:SS.mmmZ: %r" % r["from"]
    if end is None:
        return "to is not YYYY-MM-DDTHH:MM:SS.mmmZ: %r" % r["to"]
    if start > end:
        return "from %s is after to %s" % (r["from"], r["to"])
    if r["n"] < 1:
        return "n is 0"
    for q in QUANTITIES:
        if not math.isfinite(r["averages"][q]):
            return "average %s is not finite" % q
    return None


def verify_lines(lines, genesis):
    """Runs a Verifier over an iterable of raw lines (each with its newline, except maybe the
    last) and returns it; raises Invalid for the first bad block or an empty chain."""
    verifier = Verifier(genesis)
    for raw in lines:
        terminated = raw.endswith(b"\n")
        verifier.add(raw[:-1] if terminated else raw, terminated)
    if verifier.blocks == 0:
        raise Invalid("block 0 (line 1): empty chain file: no genesis block")
    return verifier


# ---------------------------------------------------------------------------------------------
# Report

MAX_GAP_RANGES = 20


def gaps(committed):
    """{cabinet: [(first, last), ...]} of the window ids missing between a cabinet's first and
    last window on the chain."""
    windows = {}
    for cabinet, window in committed:
        windows.setdefault(cabinet, []).append(window)
    out = {}
    for cabinet, ids in windows.items():
        ids.sort()
        missing = [(a + 1, b - 1) for a, b in zip(ids, ids[1:]) if b > a + 1]
        if missing:
            out[cabinet] = missing
    return out


def gap_warnings(committed):
    lines = []
    for cabinet, missing in sorted(gaps(committed).items()):
        shown = ", ".join("%d..=%d" % r for r in missing[:MAX_GAP_RANGES])
        if len(missing) > MAX_GAP_RANGES:
            total = sum(b - a + 1 for a, b in missing)
            shown += ", and %d more ranges (%d windows in all)" % (
                len(missing) - MAX_GAP_RANGES, total)
        lines.append("warning: gap: %s: %s missing" % (cabinet, shown))
    return lines


def summary(verifier, elapsed=None):
    g, head = verifier.genesis, verifier.previous
    cabinets = {}
    for cabinet, window in verifier.committed:
        count, low, high = cabinets.get(cabinet, (0, window, window))
        cabinets[cabinet] = (count + 1, min(low, window), max(high, window))
    work = "total 2^%.2f expected hashes" % math.log2(verifier.work) if verifier.work else "none"
    producers = sorted(verifier.producers.items(), key=lambda kv: (-kv[1], kv[0]))
    out = [
        "valid chain: %d blocks, %d records, %d cabinets"
        % (verifier.blocks, len(verifier.committed), len(cabinets)),
        "  genesis   %s, created %s, chain id %s" % (g.name, g.created, g.chain_id.hex()),
        "  rules     %s, finality depth %d, at most %d records per block"
        % (g.mode.describe(g.rules), g.finality_depth, g.max_records),
        "  head      #%d %s" % (head.index, head.hash),
        "  time      %s .. %s" % (g.created, head.timestamp),
        "  work      %s" % work,
        "  producers %d: %s%s" % (len(producers), ", ".join(
            "%s %d blocks" % (short(p), c) for p, c in producers[:5]),
            ", \u2026" if len(producers) > 5 else ""),
    ]
    for cabinet in sorted(cabinets):
        count, low, high = cabinets[cabinet]
        out.append("  cabinet   %s: %d windows, ids %d..=%d" % (cabinet, count, low, high))
    if elapsed is not None:
        rate = (verifier.signatures / verifier.signature_seconds
                if verifier.signature_seconds else 0.0)
        out.append("  stats     %d signatures verified in %.3f s: %.0f verifications/s; "
                   "%d blocks in %.3f s"
                   % (verifier.signatures, verifier.signature_seconds, rate, verifier.blocks,
                      elapsed))
    return out


# ---------------------------------------------------------------------------------------------
# Command line


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="verify_chain.py", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Verify a wattchain chain file (ledger encoding v2: signed blocks bound to a\n"
                    "genesis) against its genesis document, independently of the Rust code.",
        epilog="exit status:\n"
               "  0  the chain is valid: summary on stdout, gap warnings on stderr\n"
               "  1  it is not: 'block <i> (line <i+1>): <reason>' on stderr\n"
               "  2  usage error, a file that cannot be read, or a refused genesis document")
    parser.add_argument("chain", metavar="CHAIN", help="the chain file (chain.jsonl)")
    parser.add_argument("--genesis", metavar="FILE",
                        help="the genesis document the chain follows "
                             "(default: genesis.json in CHAIN's directory)")
    parser.add_argument("--stats", action="store_true",
                        help="also print timings: signature verifications/s, blocks/s")
    return parser.parse_args(argv)


def main(argv=None, out=None, err=None):
    out, err = out or sys.stdout, err or sys.stderr
    args = parse_args(argv)
    default_genesis = args.genesis is None
    genesis_path = (os.path.join(os.path.dirname(args.chain), "genesis.json")
                    if default_genesis else args.genesis)
    started = time.perf_counter()
    try:
        chain = open(args.chain, "rb")
    except OSError as e:
        print("cannot open %s: %s" % (args.chain, e.strerror or e), file=err)
        return 2
    with chain:
        try:
            with open(genesis_path, "rb") as f:
                genesis_data = f.read()
        except OSError as e:
            hint = " (the default beside the chain; name another with --genesis FILE)"
            print("cannot open %s: %s%s" % (genesis_path, e.strerror or e,
                                            hint if default_genesis else ""), file=err)
            return 2
        try:
            genesis = load_genesis(genesis_data)
        except Refused as e:
            print("genesis %s: %s" % (genesis_path, e), file=err)
            return 2
        try:
            verifier = verify_lines(chain, genesis)
        except OSError as e:
            print("cannot read %s: %s" % (args.chain, e.strerror or e), file=err)
            return 2
        except Invalid as e:
            print(e, file=err)
            return 1
    elapsed = time.perf_counter() - started if args.stats else None
    print("\n".join(summary(verifier, elapsed)), file=out)
    for line in gap_warnings(verifier.committed):
        print(line, file=err)
    return 0


if __name__ == "__main__":
    sys.exit(main())
