"""The wattchain ledger encoding v2 (topics.md, "Ledger encoding"), for scripts/verify_chain.py.

The genesis document and its chain id, the table of consensus modes, the strict parsing of a
chain line into a block (validity step 1), and the bytes that `hash` and the signature cover.
Python standard library only, written from the specification, not from the Rust code.
"""

import hashlib
import json
import math
import re
import struct
from collections import namedtuple

U16, U32, U64 = 2**16 - 1, 2**32 - 1, 2**64 - 1
HEX64 = re.compile(r"[0-9a-f]{64}\Z")
HEX128 = re.compile(r"[0-9a-f]{128}\Z")
CABINET = re.compile(r"[A-Za-z0-9_-]{1,64}\Z")
GENESIS_NAME = re.compile(r"[A-Za-z0-9._-]{1,64}\Z")
TIMESTAMP = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})"
                       r"\.([0-9]{3})Z\Z")
GENESIS_KEYS = ("format", "name", "created", "consensus", "finality_depth",
                "max_records_per_block")
BLOCK_KEYS = ("index", "timestamp", "previous_hash", "data", "difficulty", "nonce", "producer",
              "signature", "hash")
# Optional block keys that only some consensus modes use (issue 13); refused by the others.
MODE_BLOCK_KEYS = ("consensus", "certificate")
RECORD_KEYS = ("cabinet", "window", "from", "to", "n", "averages", "digests")
QUANTITIES = ("U", "I", "PA", "PR")
MAX_DIFFICULTY = 40
ZERO_PRODUCER = "0" * 64
ZERO_SIGNATURE = "0" * 128


class Invalid(Exception):
    """A validity rule of the chain is broken; the message is the reason."""


class Refused(Exception):
    """The genesis document is refused; the message is the reason."""


class JsonRefused(ValueError):
    """The JSON text uses something the ledger encoding does not allow."""


def short(hex_text):
    return hex_text[:8] + "\u2026"


# ---------------------------------------------------------------------------------------------
# Strict JSON and timestamps


def _no_duplicate_keys(pairs):
    obj = {}
    for key, value in pairs:
        if key in obj:
            raise JsonRefused("duplicate key %r" % key)
        obj[key] = value
    return obj


def _refuse_constant(name):
    raise JsonRefused("%s is not a JSON number" % name)


def _refuse_float(text):
    raise JsonRefused("%s is not an integer (floats are refused)" % text)


def _finite_float(text):
    value = float(text)
    if math.isinf(value):
        raise JsonRefused("number %s is out of the binary64 range" % text)
    return value


def canonical(value):
    """Canonical JSON bytes (topics.md, Genesis document): the chain id's and the modes' own."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False).encode("utf-8")


def int_in(value, low, high):
    """Whether `value` is a JSON integer (not a boolean, not a float) in low..=high."""
    return type(value) is int and low <= value <= high


def _integer(text):
    # serde_json reads "-0" as the float -0.0, so it is no integer for the Rust side either.
    return -0.0 if text == "-0" else int(text)


def _integer_only(text):
    if text == "-0":
        _refuse_float(text)
    return int(text)


def strict_json(text, floats):
    """Parses JSON text refusing duplicate keys, NaN/Infinity and (unless `floats`) floats."""
    return json.loads(text, object_pairs_hook=_no_duplicate_keys, parse_constant=_refuse_constant,
                      parse_float=_finite_float if floats else _refuse_float,
                      parse_int=_integer if floats else _integer_only)


def _has_null(value):
    if isinstance(value, dict):
        return any(_has_null(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_null(v) for v in value)
    return value is None


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
    match = TIMESTAMP.match(text) if isinstance(text, str) else None
    if not match:
        return None
    y, mo, d, h, mi, s, ms = (int(g) for g in match.groups())
    if y < 1970 or not 1 <= mo <= 12 or h > 23 or mi > 59 or s > 59:
        return None
    if not 1 <= d <= days_in_month(y, mo):
        return None
    return ((days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + s) * 1000) + ms


def want_int(obj, key, low, high, what="field"):
    value = obj[key]
    if type(value) is not int or not low <= value <= high:
        raise Invalid("%s %s is not an integer in %d..=%d" % (what, key, low, high))
    return value


def want_str(obj, key, what="field"):
    value = obj[key]
    if not isinstance(value, str):
        raise Invalid("%s %s is not a string" % (what, key))
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise Invalid("%s %s is not valid Unicode (lone surrogate)" % (what, key))
    return value


def want_hex(obj, key, pattern, digits):
    value = obj[key]
    if not isinstance(value, str) or not pattern.match(value):
        raise Invalid("field %s is not %d lowercase hex digits" % (key, digits))
    return value


def want_keys(obj, keys, what, optional=()):
    if not isinstance(obj, dict):
        raise Invalid("%s is not an object" % what)
    missing = [k for k in keys if k not in obj]
    unknown = [k for k in obj if k not in keys and k not in optional]
    if missing or unknown:
        parts = []
        if missing:
            parts.append("missing keys %s" % ", ".join(missing))
        if unknown:
            parts.append("unknown keys %s" % ", ".join(repr(k) for k in unknown))
        raise Invalid("%s: %s" % (what, "; ".join(parts)))


# ---------------------------------------------------------------------------------------------
# Consensus modes: what differs between pow, pos and pbft, one table entry per mode.

Mode = namedtuple("Mode", [
    "load",              # (consensus object) -> rules, raises Refused
    "block_keys",        # the MODE_BLOCK_KEYS its blocks carry
    "seal",              # (rules, block json object) -> seal bytes, raises Invalid (step 1)
    "check_difficulty",  # (rules, block, height) -> None, raises Invalid (step 6)
    "check_producer",    # (rules, block, verifier) -> None, raises Invalid (step 9); the
                         # verifier has .previous (block) and .mode_state (a dict the mode keeps)
    "describe",          # (rules) -> text for the summary
])


def pow_load(consensus):
    try:
        want_keys(consensus, ("mode", "difficulty"), "consensus")
    except Invalid as err:
        raise Refused(str(err))
    difficulty = consensus["difficulty"]
    if type(difficulty) is not int or not 0 <= difficulty <= MAX_DIFFICULTY:
        hint = ""
        if type(difficulty) is int and difficulty > MAX_DIFFICULTY:
            hint = " (2^%d expected trials per block: a chain that never grows)" % difficulty
        raise Refused("consensus difficulty %s is not an integer in 0..=%d%s"
                      % (json.dumps(difficulty), MAX_DIFFICULTY, hint))
    return {"difficulty": difficulty}


def pow_seal(rules, obj):
    return b""


def pow_check_difficulty(rules, block, height):
    if block.difficulty != rules["difficulty"]:
        raise Invalid("wrong difficulty: the block states %d, the genesis rules (pow) say %d"
                      % (block.difficulty, rules["difficulty"]))


def pow_check_producer(rules, block, verifier):
    """Under proof of work whoever did the work may produce: the signature is the only rule."""


MODES = {
    "pow": Mode(pow_load, (), pow_seal, pow_check_difficulty, pow_check_producer,
                lambda rules: "pow, difficulty %d" % rules["difficulty"]),
}
PLANNED_MODES = {}


# ---------------------------------------------------------------------------------------------
# Genesis document

Genesis = namedtuple("Genesis", "name created created_ms mode mode_name rules finality_depth "
                                "max_records chain_id")


def load_genesis(data):
    """Checks a genesis document (bytes) against section 1 of the spec; Refused otherwise."""
    try:
        doc = strict_json(data.decode("utf-8"), floats=False)
    except UnicodeDecodeError as err:
        raise Refused("not UTF-8: %s" % err.reason)
    except (ValueError, RecursionError) as err:
        raise Refused("not JSON the genesis allows: %s" % err)
    if _has_null(doc):
        raise Refused("null is not a value the genesis allows")
    try:
        want_keys(doc, GENESIS_KEYS, "genesis")
        want_int(doc, "format", 1, 1, "key")
        name = doc["name"]
        if not isinstance(name, str) or not GENESIS_NAME.match(name):
            raise Invalid("name is not 1..=64 characters of A-Z a-z 0-9 . _ -")
        created_ms = timestamp_ms(doc["created"])
        if created_ms is None:
            raise Invalid("created is not a timestamp YYYY-MM-DDTHH:MM:SS.mmmZ from 1970 on")
        finality_depth = want_int(doc, "finality_depth", 1, 1000, "key")
        max_records = want_int(doc, "max_records_per_block", 1, 256, "key")
        consensus = doc["consensus"]
        if not isinstance(consensus, dict) or "mode" not in consensus:
            raise Invalid("consensus is not an object with a mode")
    except Invalid as err:
        raise Refused(str(err))
    mode_name = consensus["mode"]
    if not isinstance(mode_name, str):
        raise Refused("consensus mode is not a string")
    if mode_name in PLANNED_MODES and mode_name not in MODES:
        raise Refused("consensus mode %r is not supported by this verifier yet (%s)"
                      % (mode_name, PLANNED_MODES[mode_name]))
    if mode_name not in MODES:
        raise Refused("unknown consensus mode %r (known: %s)" % (mode_name, ", ".join(MODES)))
    mode = MODES[mode_name]
    rules = mode.load(consensus)
    chain_id = hashlib.sha256(canonical(doc)).digest()
    return Genesis(name, doc["created"], created_ms, mode, mode_name, rules, finality_depth,
                   max_records, chain_id)


# ---------------------------------------------------------------------------------------------
# Blocks: parsing (step 1) and the byte encoding


class Block:
    """One parsed line of the chain file."""

    __slots__ = ("index", "timestamp", "ms", "previous_hash", "records", "difficulty", "nonce",
                 "producer", "signature", "hash", "seal", "mode_keys", "consensus", "certificate")


def parse_block(raw, genesis):
    """Step 1: JSON shape, types, ranges, hex lengths, timestamp format. Raises Invalid."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise Invalid("not a block: not UTF-8 (%s)" % err.reason)
    try:
        obj = strict_json(text, floats=True)
    except (ValueError, RecursionError) as err:
        raise Invalid("not a block: %s" % err)
    try:
        return block_from_json(obj, genesis)
    except Invalid as err:
        raise Invalid("not a block: %s" % err)


def block_from_json(obj, genesis):
    mode = genesis.mode
    want_keys(obj, BLOCK_KEYS, "block", MODE_BLOCK_KEYS)
    for key in MODE_BLOCK_KEYS:
        if key in obj and key not in mode.block_keys:
            raise Invalid("key %s is not used under %s" % (key, genesis.mode_name))
    block = Block()
    block.index = want_int(obj, "index", 0, U64)
    block.difficulty = want_int(obj, "difficulty", 0, U32)
    block.nonce = want_int(obj, "nonce", 0, U64)
    block.previous_hash = want_hex(obj, "previous_hash", HEX64, 64)
    block.hash = want_hex(obj, "hash", HEX64, 64)
    block.producer = want_hex(obj, "producer", HEX64, 64)
    block.signature = want_hex(obj, "signature", HEX128, 128)
    block.timestamp = obj["timestamp"]
    block.ms = timestamp_ms(block.timestamp)
    if block.ms is None:
        raise Invalid("timestamp is not YYYY-MM-DDTHH:MM:SS.mmmZ from 1970 on")
    want_keys(obj["data"], ("records",), "data")
    block.records = obj["data"]["records"]
    if not isinstance(block.records, list):
        raise Invalid("data.records is not an array")
    for position, record in enumerate(block.records):
        try:
            parse_record(record)
        except Invalid as err:
            raise Invalid("record #%d: %s" % (position, err))
    # The genesis block is derived, the same under every mode: no mode keys, an empty seal
    # (a block 0 that carries mode keys is not the derived one: step 3).
    block.mode_keys = [key for key in MODE_BLOCK_KEYS if key in obj]
    block.consensus = obj.get("consensus")
    block.certificate = obj.get("certificate")
    block.seal = b"" if block.index == 0 else mode.seal(genesis.rules, obj)
    return block


def parse_record(record):
    want_keys(record, RECORD_KEYS, "record")
    want_int(record, "window", 0, U64)
    want_int(record, "n", 0, U32)
    for key in ("cabinet", "from", "to"):
        want_str(record, key)
    want_keys(record["averages"], QUANTITIES, "averages")
    want_keys(record["digests"], QUANTITIES, "digests")
    for q in QUANTITIES:
        value = record["averages"][q]
        if type(value) not in (int, float):
            raise Invalid("average %s is not a number" % q)
        try:
            record["averages"][q] = float(value)
        except OverflowError:
            raise Invalid("average %s is out of the binary64 range" % q)
        want_hex(record["digests"], q, HEX64, 64)


def put_str(text):
    data = text.encode("utf-8")[:U16]
    return struct.pack(">H", len(data)) + data


def encode_records(records):
    """The records' bytes inside records_hash (after magic and count)."""
    out = []
    for r in records:
        out.append(put_str(r["cabinet"]) + struct.pack(">Q", r["window"]))
        out.append(put_str(r["from"]) + put_str(r["to"]) + struct.pack(">I", r["n"]))
        out.append(struct.pack(">4d", *(r["averages"][q] for q in QUANTITIES)))
        out.append(b"".join(bytes.fromhex(r["digests"][q]) for q in QUANTITIES))
    return b"".join(out)


def records_hash(records):
    return hashlib.sha256(b"WCR1" + struct.pack(">I", len(records))
                          + encode_records(records)).digest()


def data_hash(producer, seal, records):
    return hashlib.sha256(b"WCD2" + producer + struct.pack(">I", len(seal)) + seal
                          + records_hash(records)).digest()


def header(magic, index, difficulty, previous_hash, data_digest, ms, nonce):
    """The 96 header bytes whose SHA-256 is the block hash (magic WCB2 under v2)."""
    return (magic + struct.pack(">QI", index, difficulty) + previous_hash + data_digest
            + struct.pack(">QQ", ms, nonce))


def block_hash(block):
    digest = data_hash(bytes.fromhex(block.producer), block.seal, block.records)
    return hashlib.sha256(header(b"WCB2", block.index, block.difficulty,
                                 bytes.fromhex(block.previous_hash), digest, block.ms,
                                 block.nonce)).hexdigest()


def sign_bytes(chain_id, hash_hex):
    return b"WCS1" + chain_id + bytes.fromhex(hash_hex)


def genesis_block(genesis):
    """The block 0 every node derives from the genesis document (section 3)."""
    block = Block()
    block.index, block.timestamp, block.ms = 0, genesis.created, genesis.created_ms
    block.previous_hash = genesis.chain_id.hex()
    block.records, block.difficulty, block.nonce, block.seal = [], 0, 0, b""
    block.mode_keys, block.consensus, block.certificate = [], None, None
    block.producer, block.signature = ZERO_PRODUCER, ZERO_SIGNATURE
    block.hash = block_hash(block)
    return block


def leading_zero_bits(hex_hash):
    return 256 - int(hex_hash, 16).bit_length()


# Each further mode lives in its own file and registers here (it imports this module's names,
# all defined above).
import mode_pos  # noqa: E402

MODES["pos"] = Mode(mode_pos.load, ("consensus",), mode_pos.seal, mode_pos.check_difficulty,
                    mode_pos.check_producer, mode_pos.describe)
import mode_pbft  # noqa: E402

MODES["pbft"] = Mode(mode_pbft.load, ("consensus", "certificate"), mode_pbft.seal,
                     mode_pbft.check_difficulty, mode_pbft.check_producer, mode_pbft.describe)
