"""Passwords and login throttling: CPU work and bookkeeping, no I/O.

Passwords are stored as salted scrypt hashes (``hashlib.scrypt`` with ``maxmem`` set), in one
self-describing string so that the cost can be raised later without breaking old accounts::

    scrypt$16384$8$1$<salt, base64>$<hash, base64>

``PasswordHasher.verify`` compares with ``hmac.compare_digest``.  Nothing here logs or keeps a
password.

Hashing is tens of milliseconds of CPU, so the tracker's core never hashes itself: it hands its
caller a :class:`HashPassword` or :class:`CheckPassword` to ``run()`` outside the core's lock,
and takes the result back (``TrackerCore.resume``).  How many hashes run at once is the
caller's business too (each takes 16 MiB).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from collections import deque
from dataclasses import dataclass

from protocol import limits

SCRYPT_MAXMEM = 64 * 1024 * 1024
SALT_BYTES, HASH_BYTES = 16, 32


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


class PasswordHasher:
    """scrypt with a cost; the default costs about 16 MiB and tens of milliseconds a hash.

    Tests of command semantics pass a tiny ``n`` so that they do not spend their time hashing.
    """

    def __init__(self, n: int = 2**14, r: int = 8, p: int = 1) -> None:
        self.n, self.r, self.p = n, r, p

    def hash(self, password: str, salt: bytes | None = None) -> str:
        salt = salt if salt is not None else os.urandom(SALT_BYTES)
        digest = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=self.n, r=self.r,
                                p=self.p, maxmem=SCRYPT_MAXMEM, dklen=HASH_BYTES)
        return f"scrypt${self.n}${self.r}${self.p}${_b64(salt)}${_b64(digest)}"

    @staticmethod
    def verify(password: str, stored: str) -> bool:
        """Check against a stored hash, whatever cost it was made with."""
        try:
            scheme, n, r, p, salt, digest = stored.split("$")
            if scheme != "scrypt":
                return False
            expected = base64.b64decode(digest)
            actual = hashlib.scrypt(password.encode("utf-8"), salt=base64.b64decode(salt),
                                    n=int(n), r=int(r), p=int(p), maxmem=SCRYPT_MAXMEM,
                                    dklen=len(expected))
        except (ValueError, TypeError):
            return False
        return hmac.compare_digest(actual, expected)


def check_password(password: object) -> tuple[str, str] | None:
    """A password the tracker accepts: 1 to PASSWORD_MAX characters of text."""
    if not isinstance(password, str) or not password:
        return ("BAD_PASSWORD", "a password is needed")
    if len(password) > limits.PASSWORD_MAX:
        return ("BAD_PASSWORD", f"a password has at most {limits.PASSWORD_MAX} characters")
    return None


@dataclass(frozen=True)
class HashPassword:
    """Work the core leaves to its caller: hash a new password (``register``)."""

    password: str
    hasher: PasswordHasher

    def run(self) -> str:
        return self.hasher.hash(self.password)


@dataclass(frozen=True)
class CheckPassword:
    """Work the core leaves to its caller: check a password against its stored hash (``login``)."""

    password: str
    stored: str

    def run(self) -> bool:
        return PasswordHasher.verify(self.password, self.stored)


class LoginThrottle:
    """At most ``limit`` failed logins per handle in any ``window`` seconds (times are a
    monotonic clock's, passed in)."""

    def __init__(self, limit: int = limits.LOGIN_FAILURES,
                 window: float = limits.LOGIN_WINDOW) -> None:
        self.limit, self.window = limit, window
        self._failures: dict[str, deque[float]] = {}

    def _recent(self, key: str, now: float) -> deque[float]:
        failures = self._failures.get(key, deque())
        cutoff = now - self.window
        while failures and failures[0] <= cutoff:
            failures.popleft()
        if not failures:
            self._failures.pop(key, None)
        return failures

    def blocked(self, key: str, now: float) -> bool:
        return len(self._recent(key, now)) >= self.limit

    def failed(self, key: str, now: float) -> None:
        self._failures.setdefault(key, deque()).append(now)

    def succeeded(self, key: str) -> None:
        self._failures.pop(key, None)
