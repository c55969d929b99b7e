#!/usr/bin/env python3
"""Independent verifier for a wattchain chain file (chain.jsonl).

Implements the "Ledger encoding" section of topics.md from the specification alone, with the Python standard library.
Usage: python3 scripts/verify_chain.py FILE
Exit 0 and print a summary when the chain is valid; otherwise print
"block <i> (line <n>): <reason>" for the first bad block on stderr and exit 1
(exit 2 when the file cannot be read).
"""

import hashlib
import json
import math
import re
import struct
import sys

MAX_RECORDS = 256
U16, U32, U64 = 2**16 - 1, 2**32 - 1, 2**64 - 1
HEX64 = re.compile(r"[0-9a-f]{64}\Z")
CABINET = re.compile(r"[A-Za-z0-9_-]{1,64}\Z")
TIMESTAMP = re.compile(r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})\.(\d{3})Z\Z")
BLOCK_KEYS = {"index", "timestamp", "previous_hash", "data", "difficulty", "nonce", "hash"}
RECORD_KEYS = {"cabinet", "window", "from", "to", "n", "averages", "digests"}
QUANTITIES = ("U", "I", "PA", "PR")
ZERO_HASH = "0" * 64


class Invalid(Exception):
    """A rule of the "Ledger encoding" section of topics.md is broken; the message is the reason."""


def short(hex_hash):
    return hex_hash[:8] + "\u2026"


def no_duplicate_keys(pairs):
    obj = {}
    for key, value in pairs:
        if key in obj:
            raise Invalid("duplicate key %r" % key)
        obj[key] = value
    return obj


def refuse_constant(name):
    raise Invalid("%s is not a JSON number" % name)


def days_from_civil(y, m, d):
    y -= m <= 2
    era = y // 400
    yoe = y - era * 400
    doy = (153 * ((m + 9) % 12) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def days_in_month(y, m):
    leap = (y % 4 == 0 and y % 100 != 0) or y % 400 == 0
    return 29 if (m == 2 and leap) else 28 if m == 2 else 30 if m in (4, 6, 9, 11) else 31


def timestamp_ms(text):
    """Milliseconds since the epoch of a strict YYYY-MM-DDTHH:MM:SS.mmmZ string, else None."""
    if not isinstance(text, str) or len(text) != 24:
        return None
    match = TIMESTAMP.match(text)
    if not match or not text.isascii():
        return None
    y, mo, d, h, mi, s, ms = (int(g) for g in match.groups())
    if y < 1970 or not 1 <= mo <= 12 or h > 23 or mi > 59 or s > 59:
        return None
    if not 1 <= d <= days_in_month(y, mo):
        return None
    return ((days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + s) * 1000) + ms


def want_int(obj, key, limit):
    value = obj[key]
    if type(value) is not int or not 0 <= value <= limit:
        raise Invalid("field %s is not an integer in 0..=%d" % (key, limit))
    return value


def want_keys(obj, keys, what):
    if not isinstance(obj, dict):
        raise Invalid("%s is not an object" % what)
    if set(obj) != set(keys):
        missing = sorted(set(keys) - set(obj))
        extra = sorted(set(obj) - set(keys))
        raise Invalid("%s: missing fields %s, unknown fields %s" % (what, missing, extra))


def want_hex(obj, key):
    value = obj[key]
    if not isinstance(value, str) or not HEX64.match(value):
        raise Invalid("field %s is not 64 lowercase hex digits" % key)
    return value


def parse_block(raw):
    """Step 1: shape, types and ranges. Returns the block dict with 'ms' added."""
    try:
        text = raw.decode("utf-8")
        block = json.loads(text, object_pairs_hook=no_duplicate_keys,
                           parse_constant=refuse_constant)
    except (UnicodeDecodeError, ValueError) as err:
        raise Invalid("not a block: %s" % err)
    try:
        want_keys(block, BLOCK_KEYS, "block")
        want_int(block, "index", U64)
        want_int(block, "difficulty", U32)
        want_int(block, "nonce", U64)
        want_hex(block, "previous_hash")
        want_hex(block, "hash")
        block["ms"] = timestamp_ms(block["timestamp"])
        if block["ms"] is None:
            raise Invalid("timestamp is not YYYY-MM-DDTHH:MM:SS.mmmZ")
        want_keys(block["data"], {"records"}, "data")
        records = block["data"]["records"]
        if not isinstance(records, list):
            raise Invalid("data.records is not an array")
        for record in records:
            want_keys(record, RECORD_KEYS, "record")
            want_int(record, "window", U64)
            want_int(record, "n", U32)
            for key in ("cabinet", "from", "to"):
                if not isinstance(record[key], str):
                    raise Invalid("record field %s is not a string" % key)
            want_keys(record["averages"], QUANTITIES, "averages")
            want_keys(record["digests"], QUANTITIES, "digests")
            for q in QUANTITIES:
                value = record["averages"][q]
                if type(value) not in (int, float):
                    raise Invalid("average %s is not a number" % q)
                try:
                    record["averages"][q] = float(value)
                except OverflowError:
                    raise Invalid("average %s is out of range" % q)
                want_hex(record["digests"], q)
    except Invalid as err:
        raise Invalid("not a block: %s" % err)
    return block


def put_str(text):
    data = text.encode("utf-8")
    return struct.pack(">H", min(len(data), U16)) + data[:U16]


def data_hash(records):
    out = [b"WCD1", struct.pack(">I", len(records))]
    for r in records:
        out.append(put_str(r["cabinet"]) + struct.pack(">Q", r["window"]))
        out.append(put_str(r["from"]) + put_str(r["to"]) + struct.pack(">I", r["n"]))
        out.append(struct.pack(">4d", *(r["averages"][q] for q in QUANTITIES)))
        out.append(b"".join(bytes.fromhex(r["digests"][q]) for q in QUANTITIES))
    return hashlib.sha256(b"".join(out)).digest()


def block_hash(block):
    header = (b"WCB1" + struct.pack(">QI", block["index"], block["difficulty"])
              + bytes.fromhex(block["previous_hash"]) + data_hash(block["data"]["records"])
              + struct.pack(">QQ", block["ms"], block["nonce"]))
    assert len(header) == 96
    return hashlib.sha256(header).hexdigest()


def leading_zero_bits(hex_hash):
    value = int(hex_hash, 16)
    return 256 - value.bit_length()


def check_record(position, r):
    """Step 8: field rules of one record."""
    problem = None
    start, end = timestamp_ms(r["from"]), timestamp_ms(r["to"])
    if not CABINET.match(r["cabinet"]):
        problem = "cabinet id %r is not 1..=64 characters of [A-Za-z0-9_-]" % r["cabinet"]
    elif start is None:
        problem = "from is not YYYY-MM-DDTHH:MM:SS.mmmZ: %r" % r["from"]
    elif end is None:
        problem = "to is not YYYY-MM-DDTHH:MM:SS.mmmZ: %r" % r["to"]
    elif start > end:
        problem = "from %s is after to %s" % (r["from"], r["to"])
    elif r["n"] < 1:
        problem = "n is 0"
    else:
        for q in QUANTITIES:
            if not math.isfinite(r["averages"][q]):
                problem = "average %s is not finite" % q
                break
    if problem:
        raise Invalid("bad record #%d: %s" % (position, problem))


def check_block(block, i, previous, committed):
    """Steps 2..9 for block i given the previous block (None for genesis)."""
    if block["index"] != i:
        raise Invalid("index out of sequence: expected %d, found %d" % (i, block["index"]))
    link = previous["hash"] if previous else ZERO_HASH
    if block["previous_hash"] != link:
        raise Invalid("broken link: previous_hash %s, expected %s"
                      % (short(block["previous_hash"]), short(link)))
    computed = block_hash(block)
    if block["hash"] != computed:
        raise Invalid("hash mismatch: stored %s, computed %s"
                      % (short(block["hash"]), short(computed)))
    zeros = leading_zero_bits(block["hash"])
    if zeros < block["difficulty"]:
        raise Invalid("insufficient work: %d leading zero bits, difficulty %d"
                      % (zeros, block["difficulty"]))
    if previous and block["ms"] < previous["ms"]:
        raise Invalid("timestamp went back: %s after %s"
                      % (block["timestamp"], previous["timestamp"]))
    records = block["data"]["records"]
    if i == 0 and records:
        raise Invalid("record count %d, allowed 0 (genesis)" % len(records))
    if i > 0 and not 1 <= len(records) <= MAX_RECORDS:
        raise Invalid("record count %d, allowed 1..=%d" % (len(records), MAX_RECORDS))
    here = {}
    for position, r in enumerate(records):
        check_record(position, r)
        key = (r["cabinet"], r["window"])
        first = committed.get(key, here.get(key))
        if first is not None:
            raise Invalid("duplicate window: cabinet %s window %d already in block %d"
                          % (key[0], key[1], first))
        here[key] = i
    committed.update(here)


def verify(content):
    """Returns (summary lines) or raises Invalid with 'block i (line n): reason'."""
    lines = content.split(b"\n")
    torn_possible = lines[-1] != b""
    if not torn_possible:
        lines.pop()
    previous, committed = None, {}
    first_timestamp, work, difficulties = None, 0, []
    for i, raw in enumerate(lines):
        where = "block %d (line %d): " % (i, i + 1)
        try:
            try:
                block = parse_block(raw)
            except Invalid:
                if torn_possible and i == len(lines) - 1:
                    raise Invalid("torn last line (no newline, not a block)")
                raise
            check_block(block, i, previous, committed)
        except Invalid as err:
            raise Invalid(where + str(err))
        first_timestamp = first_timestamp if first_timestamp is not None else block["timestamp"]
        work += 2 ** block["difficulty"]
        difficulties.append(block["difficulty"])
        previous = block
    if previous is None:
        raise Invalid("block 0 (line 1): empty chain: no genesis block")
    cabinets = {}
    for cabinet, window in committed:
        count, low, high = cabinets.get(cabinet, (0, window, window))
        cabinets[cabinet] = (count + 1, min(low, window), max(high, window))
    out = [
        "valid chain: %d blocks, %d records, %d cabinets"
        % (len(lines), len(committed), len(cabinets)),
        "  head      #%d %s" % (previous["index"], previous["hash"]),
        "  time      %s .. %s" % (first_timestamp, previous["timestamp"]),
        "  work      difficulty %d..=%d bits, total 2^%.2f hashes"
        % (min(difficulties), max(difficulties), math.log2(work)),
    ]
    for cabinet in sorted(cabinets):
        count, low, high = cabinets[cabinet]
        out.append("  cabinet   %s: %d windows, ids %d..=%d" % (cabinet, count, low, high))
    return out


def main(argv):
    if len(argv) != 2:
        print("usage: verify_chain.py FILE", file=sys.stderr)
        return 2
    try:
        with open(argv[1], "rb") as f:
            content = f.read()
    except OSError as err:
        print("cannot read %s: %s" % (argv[1], err), file=sys.stderr)
        return 2
    try:
        summary = verify(content)
    except Invalid as err:
        print(err, file=sys.stderr)
        return 1
    print("\n".join(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
