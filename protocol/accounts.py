"""Passwords, login throttling and per-address budgets: CPU work and bookkeeping, no I/O.

Passwords are stored as salted scrypt hashes (``hashlib.scrypt`` with ``maxmem`` set), in one
self-describing string so that the cost can be raised later without breaking old accounts::

    scrypt$16384$8$1$<salt, base64>$<hash, base64>

``PasswordHasher.verify`` compares with ``hmac.compare_digest``.  Nothing here logs or keeps a
password.

Hashing is tens of milliseconds of CPU, so the tracker's core never hashes itself: it hands its
caller a :class:`HashPassword` or :class:`CheckPassword` to ``run()`` outside the core's lock,
and takes the result back (``TrackerCore.resume``).  How many hashes run at once is the
caller's business too (each takes 16 MiB).

Throttling (SPEC §6) is built so that nobody can lock an owner out of an account::

    login of @h from address A
      │ LoginThrottle.refused(A, @h)   A's failures of @h make it wait: 1 s, 2 s, 4 s … 300 s
      │                                (a backoff per pair), and A's budget of failed logins
      │                                (AddressBudget: 32 at once, then 32 an hour) is spent
      │ LoginThrottle.attempt(A, @h)   counted as a failure of the pair before the hash is
      │                                checked, so parallel guesses cannot outrun the count
      ├ LoginThrottle.succeeded(A, @h) the right password: the pair is forgotten
      └ LoginThrottle.failed(A)        the wrong one (or no such handle): A's budget pays

Guesses from another address never slow the owner's own.  Every login costs one hash, whether
the handle exists or not (``PasswordHasher.decoy``), so the work done and the time taken do not
depend on it.  Registrations are counted per address the same way (``AddressBudget``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import os
from collections import OrderedDict
from dataclasses import dataclass

from protocol import limits
from protocol.flood import TokenBucket

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

    def decoy(self) -> str:
        """A stored hash at this hasher's cost that no password matches: checking a login of
        an unknown handle against it costs what checking a real account costs."""
        return (f"scrypt${self.n}${self.r}${self.p}${_b64(os.urandom(SALT_BYTES))}$"
                f"{_b64(os.urandom(HASH_BYTES))}")

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
    """A password the tracker accepts: 1 to PASSWORD_MAX characters of text that UTF-8 can
    encode (JSON can carry a lone surrogate such as "\\ud800", which no hash can take)."""
    if not isinstance(password, str) or not password:
        return ("BAD_PASSWORD", "a password is needed")
    if len(password) > limits.PASSWORD_MAX:
        return ("BAD_PASSWORD", f"a password has at most {limits.PASSWORD_MAX} characters")
    try:
        password.encode("utf-8")
    except UnicodeEncodeError:
        return ("BAD_PASSWORD", "a password is text: this one has a lone surrogate "
                                "(half of a UTF-16 pair)")
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


def wait_text(seconds: float) -> str:
    """``4 s``, ``3 min``: how long to wait, rounded up, for a FAILURE's sentence."""
    if seconds <= 90:
        return f"{max(1, math.ceil(seconds))} s"
    return f"{math.ceil(seconds / 60)} min"


class AddressBudget:
    """``burst`` things per address at once, then ``burst`` every ``period`` seconds (a token
    bucket per address; times are a monotonic clock's, passed in).

    The table holds only addresses that spent some of their budget lately: ``prune`` forgets
    those whose bucket is full again, looking at a few each call, so no call walks the table.
    """

    def __init__(self, burst: int, period: float = limits.ADDRESS_PERIOD) -> None:
        self.burst, self.rate = burst, burst / period
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    def wait(self, address: str, now: float) -> float:
        """Seconds until ``address`` may spend one (0: now)."""
        bucket = self._buckets.get(address)
        return 0.0 if bucket is None else bucket.wait(now)

    def take(self, address: str, now: float) -> bool:
        bucket = self._buckets.get(address)
        if bucket is None:
            bucket = self._buckets[address] = TokenBucket(now, self.burst, self.rate)
        return bucket.take(now)

    def spend(self, address: str, now: float) -> None:
        """Count one that happened anyway (into debt when the budget is spent)."""
        bucket = self._buckets.get(address)
        if bucket is None:
            bucket = self._buckets[address] = TokenBucket(now, self.burst, self.rate)
        bucket.spend(now)

    def prune(self, now: float, most: int = 64) -> None:
        """Forget up to ``most`` addresses whose budget is whole again (the rest go to the back
        of the line, to be looked at again later)."""
        for _ in range(min(most, len(self._buckets))):
            address, bucket = self._buckets.popitem(last=False)
            if not bucket.full(now):
                self._buckets[address] = bucket

    def __len__(self) -> int:
        return len(self._buckets)


@dataclass
class _Failures:
    count: int                  # failed logins in a row (an attempt counts until proven right)
    last: float                 # when the last one started
    until: float                # no login of the pair before this


class LoginThrottle:
    """Failed logins, counted per (address, handle) with a growing wait, and per address.

    After ``n`` failures of a handle from one address, the next login of it from there waits
    ``backoff * 2**(n-1)`` seconds (at most ``backoff_max``); a pair's failures are forgotten
    ``forget`` seconds after the last one.  Each address may fail ``per_address`` logins at
    once, then that many every hour (``AddressBudget``): only failures count there, so logins
    from one busy address (a site behind one NAT) may run side by side.  A login from another
    address is never slowed by these: an attacker cannot lock the owner out.
    """

    def __init__(self, backoff: float = limits.LOGIN_BACKOFF,
                 backoff_max: float = limits.LOGIN_BACKOFF_MAX,
                 per_address: int = limits.FAILED_LOGINS_PER_ADDRESS,
                 forget: float = limits.LOGIN_FORGET) -> None:
        self.backoff, self.backoff_max, self.forget = backoff, backoff_max, forget
        self.addresses = AddressBudget(per_address)
        # Oldest failure first (an entry moves to the end when it fails again): prune pops
        # from the front only what is forgotten.
        self._pairs: OrderedDict[tuple[str, str], _Failures] = OrderedDict()

    def refused(self, address: str, key: str, now: float) -> str | None:
        """Why a login of handle ``key`` from ``address`` may not be tried now, or None."""
        failures = self._pairs.get((address, key))
        if failures is not None and now < failures.until:
            return (f"failed logins of {key} from {address}: try again in "
                    f"{wait_text(failures.until - now)}")
        wait = self.addresses.wait(address, now)
        if wait > 0:
            return (f"too many failed logins from {address}: try again in {wait_text(wait)}")
        return None

    def attempt(self, address: str, key: str, now: float) -> None:
        """A login is tried: for its pair it counts as failed until ``succeeded`` says
        otherwise (a second try of the pair waits for this one's answer, and more)."""
        failures = self._pairs.pop((address, key), None)
        count = 1 if failures is None or now - failures.last > self.forget else failures.count + 1
        delay = min(self.backoff * 2 ** min(count - 1, 60), self.backoff_max)
        self._pairs[(address, key)] = _Failures(count, now, now + delay)

    def succeeded(self, address: str, key: str, now: float) -> None:
        """The password was right: the attempt was no failure, and the pair starts afresh."""
        self._pairs.pop((address, key), None)

    def failed(self, address: str, now: float) -> None:
        """The password was wrong (or the handle unknown): the address's budget pays."""
        self.addresses.spend(address, now)

    def prune(self, now: float) -> None:
        """Forget pairs whose last failure is ``forget`` seconds old, and full budgets."""
        while self._pairs:
            oldest = next(iter(self._pairs.values()))
            if now - oldest.last <= self.forget:
                break
            self._pairs.popitem(last=False)
        self.addresses.prune(now)

    def __len__(self) -> int:
        return len(self._pairs)
