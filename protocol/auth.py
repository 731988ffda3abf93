"""Session keys and the authenticators of peer datagrams (SPEC §3.5; PROTOCOL.md §3.3).

Every login makes fresh :class:`SessionKeys`: an ECDSA P-256 pair that signs the user's tweets
and an X25519 pair that agrees a secret with each peer it talks to.  The public halves travel as
one string, the ``key`` of a peer tuple (``base64(P-256 public, compressed ‖ x25519 public)``: 33
and 32 bytes, 88 characters),
which the tracker hands out with the tuples it already sends.  The tracker authenticates every
session by its password, so a key it hands out belongs to that handle's current login, and to no
other.

Two authenticators, chosen for cost (a signature costs about 35 µs to make and 85 µs to check,
a MAC about 2 µs):

* **a signature** by the author over what it wrote: the tweet's ring, tid and text
  (``tweet_statement``).  It travels unchanged around the ring, so no member can make another
  show text the author did not write;
* **a MAC** (keyed BLAKE2b, 16 bytes) on every datagram (acks included), with the key the two
  ends share (``pair_key``: HKDF-SHA256 of their X25519 secret and both public keys).  Only
  those two ends can make it, so nobody else can inject, alter or redirect a datagram between
  them, and a direct message is known to come from its sender.

Keys change with every login, so a datagram recorded in an earlier session fails both checks
afterwards; within a session, duplicates are dropped by their ids (PROTOCOL.md §3.3).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from functools import lru_cache

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

MAC_BYTES = 16          # keyed BLAKE2b-128 (RFC 7693): forging one takes 2^128 tries
SIGNATURE_BYTES = 64    # ECDSA P-256: r and s, 32 bytes each
SIGNING_KEY_BYTES = 33  # a P-256 public key, compressed
KEY_BYTES = SIGNING_KEY_BYTES + 32
_HKDF_SALT = b"tweeter peer mac v1"
_CURVE = ec.SECP256R1()
# RFC 6979 nonces: a signature is a function of key and statement, so no weak random number can
# leak the key, and a simulation replays exactly.
_SIGN = ec.ECDSA(hashes.SHA256(), deterministic_signing=True)
_VERIFY = ec.ECDSA(hashes.SHA256())
_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551     # of P-256


def split_public(key: str) -> tuple[bytes, bytes]:
    """The P-256 and X25519 halves of a tuple's ``key``; ValueError if it is not one."""
    raw = base64.b64decode(key.encode("ascii"), validate=True)
    if len(raw) != KEY_BYTES:
        raise ValueError(f"a key is {KEY_BYTES} bytes")
    return raw[:SIGNING_KEY_BYTES], raw[SIGNING_KEY_BYTES:]


class SessionKeys:
    """One login's private keys; ``public`` is what the tracker hands out."""

    def __init__(self, signing: ec.EllipticCurvePrivateKey, agreement: X25519PrivateKey) -> None:
        self._signing, self._agreement = signing, agreement
        signing_half = signing.public_key().public_bytes(Encoding.X962,
                                                         PublicFormat.CompressedPoint)
        agreement_half = agreement.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        self.public = base64.b64encode(signing_half + agreement_half).decode("ascii")
        self._pairs: dict[str, bytes] = {}

    @classmethod
    def generate(cls) -> SessionKeys:
        return cls(ec.generate_private_key(_CURVE), X25519PrivateKey.generate())

    @classmethod
    def from_bytes(cls, secret: bytes) -> SessionKeys:
        """Keys made from 64 given bytes: for simulations that must replay exactly."""
        scalar = int.from_bytes(secret[:32], "big") % (_ORDER - 1) + 1
        return cls(ec.derive_private_key(scalar, _CURVE),
                   X25519PrivateKey.from_private_bytes(secret[32:64]))

    def sign(self, statement: bytes) -> bytes:
        """The signature of ``statement``: r and s, 32 bytes each."""
        r, s = decode_dss_signature(self._signing.sign(statement, _SIGN))
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")

    # What a peer asks of its keys for each datagram and tweet (``protocol.peer``): one place,
    # so that the benchmark can measure the same ring without them (``tools/bench_unsigned_user``).
    def seal(self, peer_key: str, body: bytes) -> bytes:
        """The MAC of ``body`` for the login whose public key is ``peer_key``."""
        return mac(self.pair_key(peer_key), body)

    def opens(self, peer_key: str, body: bytes, tag: bytes) -> bool:
        """Whether ``tag`` is the MAC of ``body`` made by the login whose key is ``peer_key``."""
        try:
            key = self.pair_key(peer_key)
        except ValueError:
            return False
        return mac_ok(key, body, tag)

    def signed_by(self, peer_key: str, signature: bytes, statement: bytes) -> bool:
        """Whether ``signature`` is the signature of ``statement`` by ``peer_key``'s owner."""
        return signature_ok(peer_key, signature, statement)

    def pair_key(self, peer_key: str) -> bytes:
        """The MAC key this login shares with the login whose public key is ``peer_key``.

        Both ends derive the same key; nobody else can.  ValueError if ``peer_key`` is not a
        key.  Kept per peer key: the exchange is done once per neighbour and login.
        """
        found = self._pairs.get(peer_key)
        if found is None:
            _, agreement = split_public(peer_key)
            secret = self._agreement.exchange(X25519PublicKey.from_public_bytes(agreement))
            ends = sorted((self.public, peer_key))
            found = HKDF(algorithm=hashes.SHA256(), length=32, salt=_HKDF_SALT,
                         info=f"{ends[0]}|{ends[1]}".encode("ascii")).derive(secret)
            if len(self._pairs) > 4096:     # bounded: a login talks to its rings' members
                self._pairs.clear()
            self._pairs[peer_key] = found
        return found


def mac(key: bytes, data: bytes) -> bytes:
    # BLAKE2b has a keyed mode of its own, made to be a MAC: no HMAC construction around it.
    # In the standard library, and a fifth of what OpenSSL's HMAC-SHA256 cost per datagram here
    # (its set-up dominates a few hundred bytes).
    return hashlib.blake2b(data, key=key, digest_size=MAC_BYTES).digest()


def mac_ok(key: bytes, data: bytes, tag: bytes) -> bool:
    return hmac.compare_digest(mac(key, data), tag)


@lru_cache(maxsize=4096)
def _verifier(peer_key: str) -> ec.EllipticCurvePublicKey:
    """The signing half of ``peer_key``, decoded once; ValueError if it is not a P-256 point."""
    return ec.EllipticCurvePublicKey.from_encoded_point(_CURVE, split_public(peer_key)[0])


def signature_ok(peer_key: str, signature: bytes, statement: bytes) -> bool:
    """Whether ``signature`` is the signature of ``statement`` by the owner of ``peer_key``."""
    if len(signature) != SIGNATURE_BYTES:
        return False
    der = encode_dss_signature(int.from_bytes(signature[:32], "big"),
                               int.from_bytes(signature[32:], "big"))
    try:
        _verifier(peer_key).verify(der, statement, _VERIFY)
    except (InvalidSignature, ValueError):
        return False
    return True


def tweet_statement(author_key: str, ring: str, tid: int, text: str) -> bytes:
    """What an author signs for a tweet: bound to its login (its key), ring, id and text."""
    return f"tweet\n{author_key}\n{ring.lower()}\n{tid}\n{text}".encode()

