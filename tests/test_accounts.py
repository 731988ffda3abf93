"""Unit tests of protocol.accounts: password hashes and the login throttle."""

from __future__ import annotations

from protocol.accounts import (
    CheckPassword,
    HashPassword,
    LoginThrottle,
    PasswordHasher,
    check_password,
)

CHEAP = PasswordHasher(n=2**4)


def test_hash_is_salted_scrypt_and_verifies() -> None:
    first, second = CHEAP.hash("correct horse"), CHEAP.hash("correct horse")
    assert first.startswith("scrypt$16$8$1$") and first != second     # a new salt each time
    assert "correct horse" not in first
    assert CHEAP.verify("correct horse", first) and CHEAP.verify("correct horse", second)
    assert not CHEAP.verify("correct hors", first)


def test_default_cost_is_memory_hard() -> None:
    stored = PasswordHasher().hash("pw")
    assert stored.split("$")[1:4] == ["16384", "8", "1"]    # 16 MiB of memory per hash
    assert PasswordHasher.verify("pw", stored)


def test_verify_refuses_malformed_hashes_without_raising() -> None:
    for stored in ("", "plain", "md5$1$2$3$4$5", "scrypt$x$8$1$AAAA$AAAA", "scrypt$16$8$1$!!$??"):
        assert PasswordHasher.verify("pw", stored) is False


def test_password_rules() -> None:
    assert check_password("x") is None
    assert check_password("")[0] == "BAD_PASSWORD"           # type: ignore[index]
    assert check_password("x" * 257)[0] == "BAD_PASSWORD"    # type: ignore[index]
    assert check_password(None)[0] == "BAD_PASSWORD"         # type: ignore[index]


def test_the_work_left_to_the_caller_hashes_and_checks() -> None:
    stored = HashPassword("pw", CHEAP).run()
    assert stored.startswith("scrypt$16$")
    assert CheckPassword("pw", stored).run() is True
    assert CheckPassword("pw!", stored).run() is False


def test_throttle_blocks_after_the_limit_until_the_window_passes() -> None:
    now = 1000.0
    throttle = LoginThrottle(limit=5, window=60)
    for _ in range(4):
        throttle.failed("@a", now)
        assert not throttle.blocked("@a", now)
    throttle.failed("@a", now)
    assert throttle.blocked("@a", now) and not throttle.blocked("@b", now)
    assert throttle.blocked("@a", now + 59.9)
    assert not throttle.blocked("@a", now + 60.1)


def test_a_success_clears_the_failures() -> None:
    throttle = LoginThrottle(limit=2, window=60)
    throttle.failed("@a", 0.0)
    throttle.succeeded("@a")
    throttle.failed("@a", 0.0)
    assert not throttle.blocked("@a", 0.0)
