"""Test-only support for the tests of scripts/verify_chain.py: Ed25519 key generation and
signing (RFC 8032 sections 5.1.5 and 5.1.6) and the building of real v2 chains.

A chain is built one block after another, each honestly sealed (proof of work at a small
difficulty, signed over the chain id) unless a test's hook changes it before or after sealing;
later blocks link to whatever came before, so the changed block is the only bad one.
"""

import functools
import hashlib
import io
import json
import os
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import chain_format  # noqa: E402
import ed25519  # noqa: E402
import verify_chain  # noqa: E402


def base_mult(scalar):
    """[scalar]B, extended coordinates."""
    return ed25519.double_scalar_mult(scalar, 0, [])


@functools.lru_cache(maxsize=None)
def expand(seed):
    """The secret scalar (pruned as in RFC 8032 section 5.1.5) and the prefix of a 32-byte
    secret key."""
    h = hashlib.sha512(seed).digest()
    scalar = int.from_bytes(h[:32], "little")
    scalar = (scalar & ((1 << 254) - 8)) | (1 << 254)
    return scalar, h[32:]


@functools.lru_cache(maxsize=None)
def public_key(seed):
    """The 32-byte public key of a secret key (section 5.1.5)."""
    return ed25519.encode_point(base_mult(expand(seed)[0]))


def sign(seed, message):
    """The 64-byte pure Ed25519 signature R || S of `message` (section 5.1.6)."""
    scalar, prefix = expand(seed)
    public = public_key(seed)
    r = int.from_bytes(hashlib.sha512(prefix + message).digest(), "little") % ed25519.L
    r_bytes = ed25519.encode_point(base_mult(r))
    k = int.from_bytes(hashlib.sha512(r_bytes + public + message).digest(), "little")
    s = (r + k * scalar) % ed25519.L
    return r_bytes + s.to_bytes(32, "little")


def flip(data, bit):
    """`data` with bit `bit` (little-endian bit order) inverted."""
    out = bytearray(data)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


CREATED = "2026-12-01T21:40:00.000Z"
CREATED_MS = chain_format.timestamp_ms(CREATED)
KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))
BLOCKS = 8          # enough for one tampered block (5) with blocks after it
HONEST_BLOCKS = 30
EMPTY_EVERY = 10   # blocks 10, 20, 30 carry no record
DIFFICULTY = 4


def genesis_doc(**changes):
    doc = {"format": 1, "name": "test-chain", "created": CREATED,
           "consensus": {"mode": "pow", "difficulty": DIFFICULTY}, "finality_depth": 6,
           "max_records_per_block": 8}
    doc.update(changes)
    return doc


def ts(ms):
    days, rest = divmod(ms, 86_400_000)
    # Civil date from days since 1970-01-01 (Hinnant), test-only.
    z = days + 719468
    era = z // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    day = doy - (153 * mp + 2) // 5 + 1
    month = mp + 3 if mp < 10 else mp - 9
    year = yoe + era * 400 + (month <= 2)
    h, rest = divmod(rest, 3_600_000)
    m, rest = divmod(rest, 60_000)
    s, milli = divmod(rest, 1000)
    return "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ" % (year, month, day, h, m, s, milli)


def record(cabinet, window):
    start = CREATED_MS + window * 10_000
    return {"cabinet": cabinet, "window": window, "from": ts(start), "to": ts(start + 9_800),
            "n": 50, "averages": {"U": 230.25 + window, "I": 1.5, "PA": 345.375, "PR": -12.0},
            "digests": {q: hashlib.sha256(("%s/%d/%s" % (cabinet, window, q)).encode())
                        .hexdigest() for q in chain_format.QUANTITIES}}


def load(doc):
    return chain_format.load_genesis(json.dumps(doc).encode())


def block_json(block):
    return {"index": block.index, "timestamp": block.timestamp,
            "previous_hash": block.previous_hash, "data": {"records": block.records},
            "difficulty": block.difficulty, "nonce": block.nonce, "producer": block.producer,
            "signature": block.signature, "hash": block.hash}


def mine(obj, genesis, work=True, first_nonce=0):
    """Sets nonce and hash of a block object: the first nonce from `first_nonce` whose hash
    meets the block's difficulty (or, with work=False, misses it)."""
    obj.setdefault("signature", "0" * 128)
    obj.setdefault("hash", "0" * 64)
    block = chain_format.block_from_json(json.loads(json.dumps(obj)), genesis)
    digest = chain_format.data_hash(bytes.fromhex(block.producer), block.seal, block.records)
    nonce = first_nonce
    while True:
        hashed = hashlib.sha256(chain_format.header(
            b"WCB2", block.index, block.difficulty, bytes.fromhex(block.previous_hash), digest,
            block.ms, nonce)).hexdigest()
        if (chain_format.leading_zero_bits(hashed) >= block.difficulty) == work:
            obj["nonce"], obj["hash"] = nonce, hashed
            return
        nonce += 1


def seal(obj, genesis, seed=KEY, chain_id=None, work=True, first_nonce=0):
    """Sets producer, nonce, hash and signature of a block object, honestly unless told."""
    obj["producer"] = public_key(seed).hex()
    mine(obj, genesis, work, first_nonce)
    message = chain_format.sign_bytes(chain_id or genesis.chain_id, obj["hash"])
    obj["signature"] = sign(seed, message).hex()


def build(doc=None, blocks=BLOCKS, edit=None, sealing=None, after=None):
    """Block objects of a chain: the genesis block and `blocks` more, each honestly sealed
    unless edit(i, obj) changes it before sealing, sealing(i) gives seal()'s options, or
    after(i, obj) changes it after sealing. Later blocks link to whatever came before."""
    doc = doc or genesis_doc()
    genesis = load(doc)
    chain = [block_json(chain_format.genesis_block(genesis))]
    window = 0
    for i in range(1, blocks + 1):
        records = []
        if i % EMPTY_EVERY:
            records = [record("c1", window), record("c2", window)]
            window += 1
        obj = {"index": i, "timestamp": ts(CREATED_MS + i * 10_000),
               "previous_hash": chain[-1]["hash"], "data": {"records": records},
               "difficulty": doc["consensus"].get("difficulty", 0), "nonce": 0}
        if edit:
            edit(i, obj)
        seal(obj, genesis, **(sealing(i) if sealing else {}))
        if after:
            after(i, obj)
        chain.append(obj)
    return chain


def lines_of(chain):
    return "".join(json.dumps(obj, separators=(",", ":")) + "\n" for obj in chain)


def at(index, change):
    """An edit/after hook that applies `change(obj)` to block `index` only."""
    return lambda i, obj: change(obj) if i == index else None


HONEST = build(blocks=HONEST_BLOCKS)


def resign_as(obj, producer_hex):
    """Puts a producer key nobody holds into a block, with a fresh hash and work (so only its
    signature can be wrong)."""
    obj["producer"] = producer_hex
    mine(obj, load(genesis_doc()))


class VerifierRun(unittest.TestCase):
    """Writes a chain and its genesis into a temp dir and runs the verifier in-process."""

    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.addCleanup(self.tmp.cleanup)
        self.chain_path = os.path.join(self.tmp.name, "chain.jsonl")
        self.genesis_path = os.path.join(self.tmp.name, "genesis.json")

    def write(self, chain, doc=None, text=None):
        with open(self.genesis_path, "w") as f:
            json.dump(doc or genesis_doc(), f, indent=2)
        with open(self.chain_path, "w") as f:
            f.write(lines_of(chain) if text is None else text)

    def verify(self, *extra):
        out, err = io.StringIO(), io.StringIO()
        code = verify_chain.main([self.chain_path, *extra], out, err)
        return code, out.getvalue(), err.getvalue()

    def assert_invalid(self, chain, index, reason, doc=None, text=None):
        self.write(chain, doc, text)
        code, out, err = self.verify()
        self.assertEqual((code, out), (1, ""), err)
        prefix = "block %d (line %d): " % (index, index + 1)
        self.assertTrue(err.startswith(prefix + reason), "%r does not start with %r"
                        % (err, prefix + reason))
        self.assertEqual(err.count("\n"), 1, err)
