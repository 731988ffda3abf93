"""``user.py`` without authentication, for the benchmark only (``make bench``, ring rows).

Issue 11 asks what authenticating every datagram costs a whole tweet.  The benchmark answers it
by running the same ring twice: with ``user.py`` as shipped, and with this launcher, which is
``user.py``'s own ``main`` with keys that make and check nothing: every MAC is 16 zero bytes and
passes, every signature is 64 zero bytes and passes (``protocol.auth.SessionKeys.seal``,
``opens``, ``signed_by`` and ``sign`` are the one place the peers ask for them).  Datagrams keep
their size and shape; only the cryptography is gone.

    python3 tools/bench_unsigned_user.py 127.0.0.1 PORT -q     # the same arguments as user.py

Never a way to run the product: ``user.py`` has no flag for it, and nothing here is imported by
the product.  A ring of these trusts every datagram, as the ring did before issue 11.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))     # user.py, protocol/, …

import user
from protocol.auth import MAC_BYTES, SIGNATURE_BYTES, SessionKeys


class UnsignedKeys(SessionKeys):
    """Session keys whose authenticators cost nothing and prove nothing."""

    def sign(self, statement: bytes) -> bytes:
        return bytes(SIGNATURE_BYTES)

    def seal(self, peer_key: str, body: bytes) -> bytes:
        return bytes(MAC_BYTES)

    def opens(self, peer_key: str, body: bytes, tag: bytes) -> bool:
        return True

    def signed_by(self, peer_key: str, signature: bytes, statement: bytes) -> bool:
        return True


if __name__ == "__main__":
    user.SessionKeys = UnsignedKeys     # type: ignore[misc]  (what user.py makes at login)
    sys.exit(user.main())
