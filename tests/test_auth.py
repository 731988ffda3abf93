"""protocol/auth.py: session keys, the pair keys of two logins, MACs and tweet signatures
(SPEC §3.5, PROTOCOL.md §3.3).  How the ring uses them is tests/test_peer.py."""

from __future__ import annotations

import pytest

from protocol import auth
from protocol.auth import SessionKeys


def test_two_logins_agree_a_key_nobody_else_has() -> None:
    alice, bob, eve = SessionKeys.generate(), SessionKeys.generate(), SessionKeys.generate()
    shared = alice.pair_key(bob.public)
    assert shared == bob.pair_key(alice.public) and len(shared) == 32
    assert eve.pair_key(bob.public) != shared and eve.pair_key(alice.public) != shared
    assert SessionKeys.generate().pair_key(bob.public) != shared     # a new login, a new key


def test_a_mac_fits_only_its_key_and_bytes() -> None:
    key = SessionKeys.generate().pair_key(SessionKeys.generate().public)
    tag = auth.mac(key, b"datagram")
    assert len(tag) == auth.MAC_BYTES and auth.mac_ok(key, b"datagram", tag)
    assert not auth.mac_ok(key, b"datagraM", tag)
    assert not auth.mac_ok(bytes(32), b"datagram", tag)


def test_a_signature_binds_the_author_ring_tid_and_text() -> None:
    author, other = SessionKeys.generate(), SessionKeys.generate()
    statement = auth.tweet_statement(author.public, "@Ann", 7, "hello")
    signature = author.sign(statement)
    assert auth.signature_ok(author.public, signature, statement)
    assert auth.tweet_statement(author.public, "@ann", 7, "hello") == statement  # ring: any case
    for changed in (auth.tweet_statement(author.public, "@ann", 8, "hello"),
                    auth.tweet_statement(author.public, "@ann", 7, "hellO"),
                    auth.tweet_statement(other.public, "@ann", 7, "hello")):
        assert not auth.signature_ok(author.public, signature, changed)
    assert not auth.signature_ok(other.public, signature, statement)
    assert not auth.signature_ok("not a key", signature, statement)


def test_keys_made_from_bytes_are_the_same_keys() -> None:
    secret = bytes(range(64))
    assert SessionKeys.from_bytes(secret).public == SessionKeys.from_bytes(secret).public
    assert len(SessionKeys.from_bytes(secret).public) == 88


@pytest.mark.parametrize("key", ["", "AAAA", "!" * 88, "A" * 87])
def test_a_public_key_that_is_not_one_is_refused(key: str) -> None:
    with pytest.raises(ValueError):
        auth.split_public(key)
    with pytest.raises(ValueError):
        SessionKeys.generate().pair_key(key)
