"""Unit tests of protocol.accounts: password hashes and the login throttle."""

from __future__ import annotations

from protocol.accounts import (
    AddressBudget,
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
    # JSON can carry a lone surrogate, which has no UTF-8 form: no hash could take it
    assert check_password("\ud800")[0] == "BAD_PASSWORD"    # type: ignore[index]
    assert check_password("p\u00e4ss \U0001f600") is None


def test_the_work_left_to_the_caller_hashes_and_checks() -> None:
    stored = HashPassword("pw", CHEAP).run()
    assert stored.startswith("scrypt$16$")
    assert CheckPassword("pw", stored).run() is True
    assert CheckPassword("pw!", stored).run() is False


def test_the_wait_doubles_with_each_failure_of_a_pair_up_to_its_most() -> None:
    throttle = LoginThrottle(backoff=1.0, backoff_max=8.0)
    now = 1000.0
    waits = []
    for _ in range(6):
        throttle.attempt("10.0.0.9", "@a", now)
        start = now
        while throttle.refused("10.0.0.9", "@a", now):
            now += 0.5
        waits.append(now - start)
    assert waits == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    throttle.attempt("10.0.0.9", "@a", now)
    assert throttle.refused("10.0.0.9", "@a", now)          # that pair, and no other
    assert throttle.refused("10.0.0.8", "@a", now) is None
    assert throttle.refused("10.0.0.9", "@b", now) is None


def test_only_failures_spend_the_address_budget() -> None:
    throttle = LoginThrottle(per_address=2)
    for key in ("@a", "@b", "@c"):                          # in flight side by side
        throttle.attempt("10.0.0.9", key, 0.0)
    throttle.succeeded("10.0.0.9", "@a", 0.0)
    assert throttle.refused("10.0.0.9", "@a", 0.0) is None  # the pair starts afresh
    throttle.failed("10.0.0.9", 0.0)
    throttle.failed("10.0.0.9", 0.0)
    refused = throttle.refused("10.0.0.9", "@a", 0.0)       # two failures: the budget is spent
    assert refused is not None and "from 10.0.0.9" in refused and "30 min" in refused
    throttle.failed("10.0.0.9", 0.0)                        # one more came in meanwhile
    assert "60 min" in throttle.refused("10.0.0.9", "@d", 0.0)  # type: ignore[operator]
    assert throttle.refused("10.0.0.8", "@a", 0.0) is None


def test_forgotten_failures_start_the_wait_afresh_and_leave_the_table() -> None:
    throttle = LoginThrottle(backoff=1.0, forget=100.0)
    for when in (0.0, 1.0, 3.0):
        throttle.attempt("10.0.0.9", "@a", when)
        throttle.failed("10.0.0.9", when)
    assert len(throttle) == 1
    throttle.prune(103.0)
    assert len(throttle) == 1                               # 100 s after the last: not yet
    throttle.prune(103.5)
    assert len(throttle) == 0 and len(throttle.addresses) == 1  # the budget: not whole yet
    throttle.attempt("10.0.0.9", "@a", 200.0)
    assert throttle.refused("10.0.0.9", "@a", 200.9) and not throttle.refused(
        "10.0.0.9", "@a", 201.0)                            # 1 s again, not 8


def test_an_address_budget_refills_and_is_forgotten_when_whole() -> None:
    budget = AddressBudget(2, period=60.0)
    assert budget.take("a", 0.0) and budget.take("a", 0.0) and not budget.take("a", 0.0)
    assert budget.wait("a", 0.0) == 30.0 and budget.wait("b", 0.0) == 0.0
    assert budget.take("a", 30.0) and not budget.take("a", 30.0)
    budget.spend("a", 30.0)                                 # into debt: a longer wait
    assert budget.wait("a", 30.0) == 60.0
    budget.prune(60.0)
    assert len(budget) == 1                                 # still in debt: kept
    budget.prune(150.0)
    assert len(budget) == 0


def test_a_decoy_costs_a_hash_and_matches_nothing() -> None:
    decoy = CHEAP.decoy()
    assert decoy.split("$")[:4] == CHEAP.hash("x").split("$")[:4]
    assert decoy != CHEAP.decoy()
    assert not CHEAP.verify("", decoy) and not CHEAP.verify("x", decoy)
