"""Tests of scripts/ed25519.py: RFC 8032 section 7.1 vectors and the strict rules.

Run: python3 -m unittest discover -s scripts -p 'test_*.py'
"""

import hashlib
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import ed25519  # noqa: E402
from testkit import base_mult, expand, flip, public_key, sign  # noqa: E402

# RFC 8032 section 7.1: (secret key, public key, message, signature).
RFC_VECTORS = [
    ("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
     "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a", "",
     "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155"
     "5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"),
    ("4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
     "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c", "72",
     "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da"
     "085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00"),
    ("c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
     "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025", "af82",
     "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac"
     "18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a"),
    # TEST SHA(abc): the message is SHA-512("abc").
    ("833fe62409237b9d62ec77587520911e9a759cec1d19755b7da901b96dca3d42",
     "ec172b93ad5e563bf4932c70e1245034c35467ef2efd4d64ebf819683467e2bf",
     hashlib.sha512(b"abc").hexdigest(),
     "dc2a4459e7369633a52b1bf277839a00201009a3efbf3ecb69bea2186c26b589"
     "09351fc9ac90b3ecfdfbc7c66431e0303dca179c138ac17ad9bef1177331a704"),
]

# The eight points of order dividing 8 (identity, order 2, two of order 4, four of order 8).
SMALL_ORDER = [
    "0100000000000000000000000000000000000000000000000000000000000000",
    "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    "0000000000000000000000000000000000000000000000000000000000000000",
    "0000000000000000000000000000000000000000000000000000000000000080",
    "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
    "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa",
    "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
    "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85",
]


class Ed25519Test(unittest.TestCase):
    def test_rfc8032_vectors_verify_and_signing_reproduces_them(self):
        for secret, public, message, signature in RFC_VECTORS:
            secret, public, message, signature = map(
                bytes.fromhex, (secret, public, message, signature))
            ed25519.check(public, message, signature)
            self.assertEqual(public_key(secret), public)
            self.assertEqual(sign(secret, message), signature)

    def test_one_flipped_bit_in_a_r_s_or_the_message_fails(self):
        for _, public, message, signature in RFC_VECTORS:
            public, message, signature = map(bytes.fromhex, (public, message, signature))
            for bit in (0, 1, 7, 64, 131, 200, 254, 255):
                self.assertFalse(ed25519.verify(flip(public, bit), message, signature), bit)
                self.assertFalse(ed25519.verify(public, message, flip(signature, bit)), bit)
                self.assertFalse(ed25519.verify(public, message, flip(signature, 256 + bit)),
                                 bit)
                if message:
                    self.assertFalse(ed25519.verify(public, flip(message, bit % 8), signature))
            self.assertFalse(ed25519.verify(public, message + b"\0", signature))

    def test_s_plus_l_is_refused_as_non_canonical(self):
        _, public, message, signature = map(bytes.fromhex, RFC_VECTORS[1])
        s = int.from_bytes(signature[32:], "little")
        forged = signature[:32] + (s + ed25519.L).to_bytes(32, "little")
        with self.assertRaisesRegex(ed25519.BadSignature, "S is not below L"):
            ed25519.check(public, message, forged)

    def test_small_order_points_are_refused_as_key_and_as_r(self):
        _, public, message, signature = map(bytes.fromhex, RFC_VECTORS[2])
        for encoded in map(bytes.fromhex, SMALL_ORDER):
            point = ed25519.decode_point(encoded)
            self.assertTrue(ed25519.is_small_order(point))
            with self.assertRaisesRegex(ed25519.BadSignature, "public key is a point of small"):
                ed25519.check(encoded, message, signature)
            with self.assertRaisesRegex(ed25519.BadSignature, "R is a point of small order"):
                ed25519.check(public, message, encoded + signature[32:])

    def test_a_signature_that_only_the_small_order_rule_refuses(self):
        # With A = identity, [S]B - [k]A = [S]B: R = [r]B, S = r satisfies the equation.
        identity = bytes.fromhex(SMALL_ORDER[0])
        r = 123456789
        r_bytes = ed25519.encode_point(base_mult(r))
        forged = r_bytes + r.to_bytes(32, "little")
        self.assertEqual(ed25519.encode_point(ed25519.double_scalar_mult(
            r, 5, ed25519.odd_multiples(ed25519.decode_point(identity), ed25519.WIDTH_KEY))),
            r_bytes)
        with self.assertRaisesRegex(ed25519.BadSignature, "public key is a point of small"):
            ed25519.check(identity, b"any message", forged)

    def test_a_result_with_the_same_y_as_r_but_the_other_x_fails(self):
        # R' = -[r]B and S' = r + k'a make [S']B - [k']A = [r]B = -R': same y, x negated, so
        # it must fail although a comparison of y alone would pass.
        secret, public, message, _ = map(bytes.fromhex, RFC_VECTORS[1])
        scalar, _ = expand(secret)
        r = 987654321
        r_bytes = ed25519.encode_point(base_mult(ed25519.L - r))
        k = int.from_bytes(hashlib.sha512(r_bytes + public + message).digest(), "little")
        s = (r + k * scalar) % ed25519.L
        self.assertEqual(flip(r_bytes, 255), ed25519.encode_point(base_mult(r)))
        with self.assertRaisesRegex(ed25519.BadSignature, r"\[S\]B - \[k\]A is not R"):
            ed25519.check(public, message, r_bytes + s.to_bytes(32, "little"))

    def test_non_canonical_encodings_are_refused(self):
        _, public, message, signature = map(bytes.fromhex, RFC_VECTORS[2])
        # y = p + y0 for a small y0 that is the y of a point of large order.
        y0 = next(y for y in range(2, 19) if ed25519.recover_x(y, 0) is not None
                  and not ed25519.is_small_order(
                      (ed25519.recover_x(y, 0), y, 1, ed25519.recover_x(y, 0) * y)))
        high = (ed25519.P + y0).to_bytes(32, "little")
        with self.assertRaisesRegex(ed25519.BadSignature, "public key: y is not below p"):
            ed25519.check(high, message, signature)
        with self.assertRaisesRegex(ed25519.BadSignature, "R: y is not below p"):
            ed25519.check(public, message, high + signature[32:])
        # x = 0 with the sign bit set (the identity with "negative" x) does not decode.
        with self.assertRaisesRegex(ed25519.BadSignature, "public key: not the encoding"):
            ed25519.check(flip(bytes.fromhex(SMALL_ORDER[0]), 255), message, signature)
