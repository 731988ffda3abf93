"""Validation of the values users type and peers send: handles, addresses, ports, texts.

    a value from a request or a command line ──check_*──> None (good)
                                                         or (code, sentence): the FAILURE

Each ``check_*`` function returns ``None`` when the value is good, or a ``(code, sentence)`` pair
that the tracker sends back as its ``FAILURE`` reason (and ``user.py`` prints before sending
anything).  They never raise on bad input.  Addresses and ports as typed are read by
``protocol.address``.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re

from protocol import limits
from protocol.address import is_ipv4_address
from protocol.text import has_control_characters

_HANDLE = re.compile(rf"@[A-Za-z]{{1,{limits.HANDLE_MAX}}}")

Problem = tuple[str, str] | None


def handle_key(handle: str) -> str:
    """The identity of a handle: handles are unique case-insensitively."""
    return handle.lower()


def is_handle(value: object) -> bool:
    return isinstance(value, str) and _HANDLE.fullmatch(value) is not None


def check_handle(value: object) -> Problem:
    if is_handle(value):
        return None
    return ("BAD_HANDLE",
            f"{value!r} is not a handle: '@' and 1 to {limits.HANDLE_MAX} ASCII letters")


def is_whole_number(value: object) -> bool:
    """An int that JSON carried as a number (``True`` is an int to Python, not to us)."""
    return isinstance(value, int) and not isinstance(value, bool)


def check_ipv4(value: object) -> Problem:
    if isinstance(value, str) and is_ipv4_address(value):
        return None
    return ("BAD_ADDRESS", f"{value!r} is not an IPv4 address (dotted quad, e.g. 127.0.0.1)")


_THIS_NETWORK = ipaddress.IPv4Network("0.0.0.0/8")


def check_unicast(value: str) -> Problem:
    """A well-formed IPv4 address (``check_ipv4``) that one host can own: not "this host",
    multicast, broadcast or reserved.  A subnet's own broadcast address (e.g. 10.0.0.255/24)
    cannot be told from here; the tracker refuses it anyway, as no session connects from it."""
    address = ipaddress.IPv4Address(value)
    if address in _THIS_NETWORK:
        why = "0.0.0.0/8 means 'this host' and is nobody's address"
    elif address.is_multicast:
        why = "a multicast address (224.0.0.0/4) reaches every host in a group"
    elif address == ipaddress.IPv4Address("255.255.255.255"):
        why = "the broadcast address reaches every host on the network"
    elif address.is_reserved:
        why = "240.0.0.0/4 is reserved and no host has such an address"
    else:
        return None
    return ("BAD_ADDRESS", f"{value} is not a peer's address: {why}")


PUBLIC_KEY_CHARS = 88      # base64 of 65 bytes: P-256 (compressed) and X25519 public keys
PUBLIC_KEY_BYTES = 65      # (protocol.auth, which this module does not import: it stays light)


def is_public_key(value: object) -> bool:
    """A peer's public ``key`` as the tuples carry it (checked for shape, not for trust)."""
    if not isinstance(value, str) or len(value) != PUBLIC_KEY_CHARS or not value.isascii():
        return False
    try:
        return len(base64.b64decode(value, validate=True)) == PUBLIC_KEY_BYTES
    except (binascii.Error, ValueError):
        return False


def check_public_key(value: object) -> Problem:
    if is_public_key(value):
        return None
    return ("BAD_KEY", "a key is 88 characters of base64: the session's two public keys")


def check_port(value: object) -> Problem:
    if is_whole_number(value) and 1 <= value <= 65535:  # type: ignore[operator]
        return None
    return ("BAD_PORT", f"{value!r} is not a port (1-65535)")


def check_ports(values: object) -> Problem:
    if not isinstance(values, list) or len(values) != 3:
        return ("BAD_PORT", "three ports are needed: left, middle, right")
    for value in values:
        problem = check_port(value)
        if problem:
            return problem
    if len(set(values)) != 3:
        return ("REPEATED_PORTS", "the left, middle and right ports must differ")
    return None


def check_text(value: object, what: str = "tweet", most: int = limits.TWEET_MAX) -> Problem:
    """A tweet, `say` or direct message: 1 to ``most`` characters, no control characters."""
    if not isinstance(value, str) or not value:
        return ("EMPTY_TEXT", f"a {what} needs some text")
    if len(value) > most:
        return ("TOO_LONG", f"a {what} has at most {most} characters, "
                            f"this one has {len(value)}")
    if has_control_characters(value):
        return ("CONTROL_CHARACTERS", f"a {what} may not contain control characters")
    return None


_TAG = re.compile(rf"(?<![A-Za-z0-9_])#([A-Za-z0-9_]{{1,{limits.TAG_MAX}}})(?![A-Za-z0-9_])")


def hashtags(text: str) -> list[str]:
    """The distinct hashtags of a text, lower-cased, in order of first use."""
    return list(dict.fromkeys(match.lower() for match in _TAG.findall(text)))


def check_tag(value: object) -> Problem:
    if isinstance(value, str) and _TAG.fullmatch(value):
        return None
    return ("BAD_TAG", f"{value!r} is not a hashtag: '#' and 1 to {limits.TAG_MAX} letters, "
                       "digits or '_'")


def check_count(value: object, most: int = limits.FEED_MAX) -> Problem:
    if is_whole_number(value) and 1 <= value <= most:  # type: ignore[operator]
        return None
    return ("BAD_COUNT", f"{value!r} is not a count from 1 to {most}")
