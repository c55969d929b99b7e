"""Strict Ed25519 signature verification (RFC 8032 section 5.1), Python standard library only.

Written from the RFC's text for the chain verifier (scripts/verify_chain.py); the rules are the
strict ones of the ledger encoding ("Signature" in topics.md's "Ledger encoding"):

- the public key A and the signature's R must be canonical point encodings: y < p, the point
  decodes (RFC 8032 section 5.1.3), and encoding it again gives the same 32 bytes;
- neither A nor R is of small order (8 * P is not the identity);
- S < L;
- accept iff encode([S]B - [k]A) == R (cofactorless, compared as bytes), k = SHA-512(R || A || M)
  mod L.

Points are kept in extended twisted Edwards coordinates (X, Y, Z, T), x = X/Z, y = Y/Z,
xy = T/Z (RFC 8032 section 5.1.4); [S]B - [k]A is one interleaved double-and-add over signed
sliding-window digits (w = 8 for the fixed base B, whose odd multiples are computed once, w = 5
for A), so the 253 doublings are shared by both scalars.
"""

import hashlib

P = 2**255 - 19
L = 2**252 + 27742317777372353535851937790883648493
D = -121665 * pow(121666, P - 2, P) % P
D2 = 2 * D % P
SQRT_M1 = pow(2, (P - 1) // 4, P)
BASE_Y = 4 * pow(5, P - 2, P) % P

# Window widths of the signed digits: 2^(w-2) odd multiples per table.
WIDTH_BASE = 8
WIDTH_KEY = 5


class BadSignature(Exception):
    """The signature does not verify; the message says which rule it breaks."""


def recover_x(y, sign):
    """The x with sign bit `sign` of the curve point with coordinate y (section 5.1.3), or None."""
    yy = y * y % P
    u = (yy - 1) % P
    v = (D * yy + 1) % P
    v3 = v * v % P * v % P
    x = u * v3 % P * pow(u * v3 % P * v3 % P * v % P, (P - 5) // 8, P) % P
    vxx = v * x % P * x % P
    if vxx == u:
        pass
    elif vxx == (P - u) % P:
        x = x * SQRT_M1 % P
    else:
        return None
    if x == 0 and sign:
        return None
    if x & 1 != sign:
        x = P - x
    return x


def decode_point(data):
    """Extended coordinates of a canonical 32-byte point encoding; BadSignature otherwise."""
    if len(data) != 32:
        raise BadSignature("point encoding is %d bytes, not 32" % len(data))
    value = int.from_bytes(data, "little")
    y = value & ((1 << 255) - 1)
    sign = value >> 255
    if y >= P:
        raise BadSignature("y is not below p (non-canonical encoding)")
    x = recover_x(y, sign)
    if x is None:
        raise BadSignature("not the encoding of a curve point")
    point = (x, y, 1, x * y % P)
    if encode_point(point) != data:
        raise BadSignature("encoding is not canonical")
    return point


def encode_point(point):
    """The 32-byte encoding of a point (section 5.1.2)."""
    X, Y, Z, _ = point
    zinv = pow(Z, P - 2, P)
    x = X * zinv % P
    y = Y * zinv % P
    return (y | (x & 1) << 255).to_bytes(32, "little")


def double(point):
    """2 * point (section 5.1.4's doubling formulas for a = -1)."""
    X, Y, Z, _ = point
    a = X * X % P
    b = Y * Y % P
    c = 2 * Z * Z % P
    h = a + b
    e = h - (X + Y) * (X + Y) % P
    g = a - b
    f = c + g
    return (e * f % P, g * h % P, f * g % P, e * h % P)


def add(p1, p2):
    """p1 + p2 (section 5.1.4's unified addition for a = -1)."""
    X1, Y1, Z1, T1 = p1
    X2, Y2, Z2, T2 = p2
    a = (Y1 - X1) * (Y2 - X2) % P
    b = (Y1 + X1) * (Y2 + X2) % P
    c = T1 * D2 % P * T2 % P
    d = 2 * Z1 * Z2 % P
    e, f, g, h = b - a, d - c, d + c, b + a
    return (e * f % P, g * h % P, f * g % P, e * h % P)


def is_small_order(point):
    """True iff 8 * point is the identity (x = 0, y = 1)."""
    for _ in range(3):
        point = double(point)
    X, Y, Z, _ = point
    return X % P == 0 and (Y - Z) % P == 0


def signed_digits(k, width):
    """Width-`width` non-adjacent form of k >= 0, least significant digit first.

    Every non-zero digit is odd and in (-2^(width-1), 2^(width-1)), and at least width - 1 zeros
    follow each of them, so about one digit in width + 1 needs an addition.
    """
    digits = []
    full, half = 1 << width, 1 << (width - 1)
    while k:
        if k & 1:
            digit = k & (full - 1)
            if digit >= half:
                digit -= full
            k -= digit
        else:
            digit = 0
        digits.append(digit)
        k >>= 1
    return digits


def odd_multiples(point, width):
    """[1, 3, 5, ..., 2^(width-1) - 1] * point, each as (Y - X, Y + X, 2d * T, 2 * Z)."""
    twice = double(point)
    out = []
    for _ in range(1 << (width - 2)):
        X, Y, Z, T = point
        out.append(((Y - X) % P, (Y + X) % P, D2 * T % P, 2 * Z % P))
        point = add(point, twice)
    return out


def affine_odd_multiples(point, width):
    """As odd_multiples, with every entry scaled to Z = 1: (y - x, y + x, 2d * x * y)."""
    out = []
    for ym, yp, t2, z2 in odd_multiples(point, width):
        zinv = 2 * pow(z2, P - 2, P)
        out.append((ym * zinv % P, yp * zinv % P, t2 * zinv % P))
    return out


BASE = (recover_x(BASE_Y, 0), BASE_Y, 1, recover_x(BASE_Y, 0) * BASE_Y % P)
BASE_TABLE = affine_odd_multiples(BASE, WIDTH_BASE)


def double_scalar_mult(s, k, table):
    """[s]B + [k]Q as extended coordinates, `table` being odd_multiples(Q, WIDTH_KEY)."""
    ds = signed_digits(s, WIDTH_BASE)
    dk = signed_digits(k, WIDTH_KEY)
    n = max(len(ds), len(dk))
    ds += [0] * (n - len(ds))
    dk += [0] * (n - len(dk))
    base = BASE_TABLE
    X, Y, Z = 0, 1, 1
    e = h = 0
    p = P
    for i in range(n - 1, -1, -1):
        # Doubling. T is not an input of the doubling formulas: it is computed (T = e*h of the
        # last operation) only where an addition needs it, and at the end.
        a = X * X % p
        b = Y * Y % p
        c = 2 * (Z * Z % p)
        h = a + b
        e = h - (X + Y) * (X + Y) % p
        g = a - b
        f = c + g
        X, Y, Z = e * f % p, g * h % p, f * g % p
        digit = ds[i]
        if digit:
            # Mixed addition of a Z = 1 entry: D = 2 * Z1 needs no multiplication.
            if digit > 0:
                ym, yp, t2 = base[digit >> 1]
            else:
                yp, ym, t2 = base[(-digit) >> 1]
                t2 = -t2
            a = (Y - X) * ym % p
            b = (Y + X) * yp % p
            c = e * h % p * t2 % p
            d = 2 * Z
            e, f, g, h = b - a, d - c, d + c, b + a
            X, Y, Z = e * f % p, g * h % p, f * g % p
        digit = dk[i]
        if digit:
            if digit > 0:
                ym, yp, t2, z2 = table[digit >> 1]
            else:
                yp, ym, t2, z2 = table[(-digit) >> 1]
                t2 = -t2
            a = (Y - X) * ym % p
            b = (Y + X) * yp % p
            c = e * h % p * t2 % p
            d = Z * z2 % p
            e, f, g, h = b - a, d - c, d + c, b + a
            X, Y, Z = e * f % p, g * h % p, f * g % p
    return (X, Y, Z, e * h % p)


class PublicKey:
    """A decoded, checked public key with its precomputed multiples; reusable across messages."""

    __slots__ = ("encoded", "minus_table")

    def __init__(self, encoded):
        """Decodes `encoded` (32 bytes); BadSignature if it is not canonical or of small order."""
        try:
            point = decode_point(encoded)
        except BadSignature as err:
            raise BadSignature("public key: %s" % err)
        if is_small_order(point):
            raise BadSignature("public key is a point of small order")
        X, Y, Z, T = point
        self.encoded = bytes(encoded)
        self.minus_table = odd_multiples(((P - X) % P, Y, Z, (P - T) % P), WIDTH_KEY)

    def check(self, message, signature):
        """Raises BadSignature unless `signature` (R || S, 64 bytes) is valid for `message`."""
        if len(signature) != 64:
            raise BadSignature("signature is %d bytes, not 64" % len(signature))
        r_bytes = signature[:32]
        try:
            xr, yr, _, _ = decode_point(r_bytes)
        except BadSignature as err:
            raise BadSignature("R: %s" % err)
        if is_small_order((xr, yr, 1, xr * yr % P)):
            raise BadSignature("R is a point of small order")
        s = int.from_bytes(signature[32:], "little")
        if s >= L:
            raise BadSignature("S is not below L (non-canonical)")
        digest = hashlib.sha512(r_bytes + self.encoded + message).digest()
        k = int.from_bytes(digest, "little") % L
        X, Y, Z, _ = double_scalar_mult(s, k, self.minus_table)
        # encode([S]B - [k]A) == R bytes. R is canonical (checked above), and two points with
        # the same y and x of the same parity are equal, so the byte comparison is the
        # projective comparison x = X/Z, y = Y/Z, which needs no inversion.
        if (X - xr * Z) % P or (Y - yr * Z) % P:
            raise BadSignature("[S]B - [k]A is not R")


def check(public, message, signature):
    """Raises BadSignature unless `signature` is a valid strict Ed25519 signature of `message`.

    `public` is the 32-byte key A, `signature` the 64 bytes R || S.
    """
    PublicKey(public).check(message, signature)


def verify(public, message, signature):
    """True iff `check` accepts."""
    try:
        check(public, message, signature)
    except BadSignature:
        return False
    return True
