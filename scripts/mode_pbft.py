"""PBFT for scripts/verify_chain.py (topics.md, "PBFT"): the genesis parameters, the seal of
`{"view": v}`, the primary of a view and the commit certificate (validity step 9): 2f+1
COMMIT signatures of distinct validators for the block's height and hash.
Python standard library only, written from the specification, not from the Rust code.
"""

import struct

import ed25519
from chain_format import canonical, int_in as _int, GENESIS_NAME, HEX64, HEX128, Invalid, Refused, want_keys

TAG = b"WPB1"
MAX_F = 21
VIEW_TIMEOUT_MS = (50, 600_000)
U64 = 2**64 - 1


def load(consensus):
    """The genesis `consensus` object of a pbft chain -> rules; Refused otherwise."""
    try:
        want_keys(consensus, ("mode", "validators", "f", "view_timeout"), "consensus")
    except Invalid as err:
        raise Refused(str(err))
    validators = consensus["validators"]
    if not isinstance(validators, list) or not validators:
        raise Refused("consensus validators is not a non-empty list")
    out = []
    for i, v in enumerate(validators):
        try:
            want_keys(v, ("name", "key"), "validator %d" % i)
        except Invalid as err:
            raise Refused(str(err))
        if not isinstance(v["name"], str) or not GENESIS_NAME.match(v["name"]):
            raise Refused("validator %d: name is not 1..=64 characters of A-Z a-z 0-9 . _ -" % i)
        if not isinstance(v["key"], str) or not HEX64.match(v["key"]):
            raise Refused("validator %d: key is not 64 lowercase hex digits" % i)
        out.append((v["name"], v["key"]))
    keys = [bytes.fromhex(k) for _, k in out]
    if any(a >= b for a, b in zip(keys, keys[1:])):
        raise Refused("consensus validators are not sorted by key, distinct")
    if len({n for n, _ in out}) != len(out):
        raise Refused("consensus validators: a name is listed twice")
    f = consensus["f"]
    if not _int(f, 1, MAX_F):
        raise Refused("consensus f is not an integer 1..=%d" % MAX_F)
    if len(out) != 3 * f + 1:
        raise Refused("consensus: %d validators, f = %d needs exactly 3f+1 = %d"
                      % (len(out), f, 3 * f + 1))
    timeout = consensus["view_timeout"]
    if not _int(timeout, *VIEW_TIMEOUT_MS):
        raise Refused("consensus view_timeout is not an integer %d..=%d ms" % VIEW_TIMEOUT_MS)
    return {"validators": out, "f": f, "view_timeout": timeout}


def parse_view(consensus):
    """The view of a block's `consensus` object, exactly {"view": v}; Invalid otherwise."""
    if not isinstance(consensus, dict) or set(consensus) != {"view"}:
        raise Invalid("consensus is not exactly {\"view\": v}")
    if not _int(consensus["view"], 0, U64):
        raise Invalid("consensus view is not an integer 0..=2^64-1")
    return consensus["view"]


def seal(rules, obj):
    """The seal of a pbft block: its view, 8 bytes big-endian."""
    if "consensus" not in obj:
        raise Invalid("a pbft block needs a consensus object")
    return struct.pack(">Q", parse_view(obj["consensus"]))


def check_difficulty(rules, block, height):
    if block.difficulty != 0:
        raise Invalid("wrong difficulty: the block states %d, pbft requires 0" % block.difficulty)


def primary(rules, view):
    """The primary of `view`: validators[view mod N] (sorted by key)."""
    validators = rules["validators"]
    return validators[view % len(validators)]


def commit_sign_bytes(chain_id, view, height, block_hash):
    """"WPB1" || chain id || canonical JSON of the COMMIT body."""
    body = {"type": "commit", "view": view, "height": height, "hash": block_hash}
    return TAG + chain_id + canonical(body)


def check_certificate(rules, chain_id, height, block_hash, certificate):
    """(view, signatures) of a valid commit certificate; Invalid otherwise."""
    if not isinstance(certificate, dict):
        raise Invalid("certificate is not an object")
    try:
        want_keys(certificate, ("view", "commits"), "certificate")
    except Invalid as err:
        raise Invalid(str(err))
    view, commits = certificate["view"], certificate["commits"]
    if not _int(view, 0, U64):
        raise Invalid("certificate view is not an integer 0..=2^64-1")
    if not isinstance(commits, list) or len(commits) > 256:
        raise Invalid("certificate commits is not a list of at most 256")
    members = {k for _, k in rules["validators"]}
    message = commit_sign_bytes(chain_id, view, height, block_hash)
    signers = []
    for i, vote in enumerate(commits):
        if not isinstance(vote, dict):
            raise Invalid("certificate commit #%d is not an object" % i)
        want_keys(vote, ("key", "sig"), "certificate commit #%d" % i)
        key, sig = vote["key"], vote["sig"]
        if not isinstance(key, str) or not HEX64.match(key):
            raise Invalid("certificate commit #%d: key is not 64 hex digits" % i)
        if not isinstance(sig, str) or not HEX128.match(sig):
            raise Invalid("certificate commit #%d: sig is not 128 hex digits" % i)
        if key not in members:
            raise Invalid("certificate commit #%d: %s is not a validator" % (i, key[:8]))
        if key in signers:
            raise Invalid("certificate commit #%d: %s signed twice" % (i, key[:8]))
        if not ed25519.verify(bytes.fromhex(key), message, bytes.fromhex(sig)):
            raise Invalid("certificate commit #%d: the signature of %s does not verify"
                          % (i, key[:8]))
        signers.append(key)
    need = 2 * rules["f"] + 1
    if len(signers) < need:
        raise Invalid("certificate: %d commit signatures, %d needed (2f+1)" % (len(signers), need))
    return view, len(signers)


def check_producer(rules, block, verifier):
    """Step 9: the producer is the primary of the block's view, and the certificate holds
    2f+1 valid COMMIT signatures of distinct validators in a view at least the block's."""
    view = parse_view(block.consensus)
    name, key = primary(rules, view)
    if block.producer != key:
        raise Invalid("consensus: producer %s is not the primary of view %d (%s)"
                      % (block.producer[:8], view, name))
    if block.certificate is None:
        raise Invalid("consensus: no commit certificate")
    try:
        cert_view, _ = check_certificate(rules, verifier.genesis.chain_id, block.index,
                                         block.hash, block.certificate)
    except Invalid as err:
        raise Invalid("consensus: %s" % err)
    if cert_view < view:
        raise Invalid("consensus: certificate view %d before the block's view %d"
                      % (cert_view, view))


def describe(rules):
    return "pbft, %d validators, f = %d, view timeout %d ms" % (
        len(rules["validators"]), rules["f"], rules["view_timeout"])
