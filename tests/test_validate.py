"""Unit tests of protocol.validate: handles, IPv4 addresses, ports and tweet text."""

from __future__ import annotations

import ipaddress
import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol import limits
from protocol.validate import (
    check_handle,
    check_ipv4,
    check_port,
    check_ports,
    check_text,
    check_unicast,
    handle_key,
    is_handle,
)

FAST = settings(max_examples=300, deadline=None)

# Any character at all, lone surrogates included (json.loads produces them from "\ud800").
# (st.text never yields surrogates, so texts are joined from lists of characters.)
ANY_CHAR = st.one_of(st.characters(), st.characters(categories=["Cs"]))


def any_text(min_size: int = 0, max_size: int = 20) -> st.SearchStrategy[str]:
    return st.lists(ANY_CHAR, min_size=min_size, max_size=max_size).map("".join)


# ---- handles -------------------------------------------------------------------------------

@pytest.mark.parametrize("handle", [
    "@a", "@Z", "@alice", "@Alice", "@ALICE", "@" + "a" * limits.HANDLE_MAX, "@" + "Zz" * 7 + "q",
])
def test_good_handles(handle: str) -> None:
    assert is_handle(handle)
    assert check_handle(handle) is None


@pytest.mark.parametrize("handle", [
    "", "@", "a", "alice", "@" + "a" * (limits.HANDLE_MAX + 1), "@é", "@alicé", "@ß", "@Ω",
    "@\u212a",               # KELVIN SIGN: lower() gives ASCII 'k', still not an ASCII letter
    "@ı",                    # dotless i
    "@a1", "@1", "@a_b", "@a-b", "@a b", "@@a", "@a@", " @a", "@a ", "@a\n", "\n@a", "@a\x00",
    "@ａ",                   # full-width letter
    "#tag", "＠a",
])
def test_bad_handles(handle: str) -> None:
    assert not is_handle(handle)
    problem = check_handle(handle)
    assert problem is not None
    code, sentence = problem
    assert code == "BAD_HANDLE"
    assert sentence


@pytest.mark.parametrize("value", [None, 7, 1.5, True, b"@alice", ["@alice"], {"@alice": 1}])
def test_non_strings_are_bad_handles_and_never_raise(value: object) -> None:
    assert not is_handle(value)
    assert check_handle(value) is not None
    assert check_handle(value)[0] == "BAD_HANDLE"  # type: ignore[index]


@FAST
@given(st.from_regex(rf"@[A-Za-z]{{1,{limits.HANDLE_MAX}}}", fullmatch=True))
def test_every_ascii_letter_handle_is_good(handle: str) -> None:
    assert check_handle(handle) is None


@FAST
@given(st.one_of(
    any_text(max_size=20),
    any_text(max_size=18).map(lambda rest: "@" + rest),
    st.text(st.sampled_from(string.ascii_letters + "@1é_ "), max_size=18),
))
def test_a_handle_is_exactly_at_and_1_to_15_ascii_letters(value: str) -> None:
    expected = (value[:1] == "@" and 1 <= len(value) - 1 <= limits.HANDLE_MAX
                and all(ch in string.ascii_letters for ch in value[1:]))
    assert is_handle(value) is expected
    assert (check_handle(value) is None) is expected


def test_handle_key_is_case_insensitive() -> None:
    assert handle_key("@Alice") == handle_key("@alice") == handle_key("@ALICE")
    assert handle_key("@alice") != handle_key("@alicea")


# ---- IPv4 ----------------------------------------------------------------------------------

@pytest.mark.parametrize("address", [
    "127.0.0.1", "0.0.0.0", "255.255.255.255", "10.0.0.1", "192.168.1.254", "1.2.3.4",
])
def test_good_ipv4(address: str) -> None:
    assert check_ipv4(address) is None


@pytest.mark.parametrize("address", [
    "", "1.2.3", "1.2.3.4.5", "256.0.0.1", "1.2.3.256", "1.2.3.-1", "-1.2.3.4", "01.2.3.4",
    "1..2.3", "1.2.3.", ".1.2.3", " 1.2.3.4", "1.2.3.4 ", "1.2.3.4\n", "localhost", "::1",
    "::ffff:1.2.3.4", "1.2.3.4/32", "1.2.3.4:80", "1.2.3.4%eth0", "０.０.０.０", "1.2.3.٤",
    "0x7f.0.0.1", "2130706433", "a.b.c.d", "1.2.3.4\x00",
])
def test_bad_ipv4(address: str) -> None:
    problem = check_ipv4(address)
    assert problem is not None
    assert problem[0] == "BAD_ADDRESS"


@pytest.mark.parametrize("value", [None, 2130706433, b"1.2.3.4", ["1.2.3.4"], (1, 2, 3, 4), 1.5])
def test_non_string_addresses_are_bad(value: object) -> None:
    problem = check_ipv4(value)
    assert problem is not None
    assert problem[0] == "BAD_ADDRESS"


@FAST
@given(st.lists(st.integers(0, 255), min_size=4, max_size=4))
def test_every_dotted_quad_is_good(octets: list[int]) -> None:
    assert check_ipv4(".".join(map(str, octets))) is None


@FAST
@given(st.one_of(
    any_text(max_size=20),
    st.text(st.sampled_from("0123456789.x :-"), max_size=20),
))
def test_accepted_addresses_are_canonical_dotted_quads(value: str) -> None:
    if check_ipv4(value) is None:
        assert str(ipaddress.IPv4Address(value)) == value
    else:
        assert check_ipv4(value)[0] == "BAD_ADDRESS"  # type: ignore[index]


# ---- ports ---------------------------------------------------------------------------------

@pytest.mark.parametrize("port", [1, 2, 1024, 13000, 65534, 65535])
def test_good_ports(port: int) -> None:
    assert check_port(port) is None


@pytest.mark.parametrize("port", [0, -1, 65536, 100000, True, False, 80.0, "80", None, [80]])
def test_bad_ports(port: object) -> None:
    problem = check_port(port)
    assert problem is not None
    assert problem[0] == "BAD_PORT"


@FAST
@given(st.integers(-(2**70), 2**70))
def test_ports_are_exactly_1_to_65535(port: int) -> None:
    assert (check_port(port) is None) is (1 <= port <= 65535)


def test_three_different_ports_are_good() -> None:
    assert check_ports([1, 2, 3]) is None
    assert check_ports([65535, 1, 13000]) is None


@pytest.mark.parametrize("ports", [
    [1, 1, 2], [1, 2, 1], [2, 1, 1], [7, 7, 7],
])
def test_ports_must_differ(ports: list[int]) -> None:
    problem = check_ports(ports)
    assert problem is not None
    assert problem[0] == "REPEATED_PORTS"
    assert "differ" in problem[1]


@pytest.mark.parametrize(("address", "why"), [
    ("0.0.0.0", "this host"), ("0.1.2.3", "this host"), ("224.0.0.1", "multicast"),
    ("239.255.255.250", "multicast"), ("255.255.255.255", "broadcast"),
    ("240.0.0.1", "reserved"), ("250.1.2.3", "reserved"),
])
def test_addresses_no_single_host_owns_are_refused(address: str, why: str) -> None:
    problem = check_unicast(address)
    assert problem is not None
    assert problem[0] == "BAD_ADDRESS" and why in problem[1] and address in problem[1]


@pytest.mark.parametrize("address", ["127.0.0.1", "10.0.0.5", "192.168.1.20", "169.254.3.4",
                                     "8.8.8.8", "100.64.0.1", "223.255.255.254"])
def test_unicast_addresses_are_good(address: str) -> None:
    assert check_unicast(address) is None


@pytest.mark.parametrize("ports", [
    [], [1], [1, 2], [1, 2, 3, 4], (1, 2, 3), "1 2 3", None, {1: 1, 2: 2, 3: 3},
    [1, 2, True], [True, 2, 3], [1, 2, 0], [1, 2, 65536], [1, 2, "3"], [1, 2, 3.0],
    [1, 2, None], [[1], 2, 3], [1, 2, {}],
])
def test_bad_port_lists(ports: object) -> None:
    problem = check_ports(ports)
    assert problem is not None
    assert problem[0] == "BAD_PORT"


@FAST
@given(st.lists(st.one_of(st.integers(-5, 70000), st.booleans(), st.none(), st.text(max_size=2),
                          st.lists(st.integers(), max_size=1)), max_size=5))
def test_check_ports_never_raises(ports: list[object]) -> None:
    problem = check_ports(ports)
    good = (len(ports) == 3 and all(type(p) is int and 1 <= p <= 65535 for p in ports)
            and len(set(ports)) == 3)  # type: ignore[arg-type]
    assert (problem is None) is good
    if problem:
        assert problem[0] in ("BAD_PORT", "REPEATED_PORTS")


# ---- text ----------------------------------------------------------------------------------

def test_empty_text() -> None:
    assert check_text("")[0] == "EMPTY_TEXT"  # type: ignore[index]


@pytest.mark.parametrize("value", [None, 5, b"hello", ["hello"]])
def test_non_string_text_is_empty_text(value: object) -> None:
    problem = check_text(value)
    assert problem is not None
    assert problem[0] == "EMPTY_TEXT"


def test_text_of_exactly_140_characters_is_good() -> None:
    assert check_text("a" * limits.TWEET_MAX) is None
    assert check_text("é" * limits.TWEET_MAX) is None          # characters, not bytes
    assert check_text("🎉" * limits.TWEET_MAX) is None


def test_text_of_141_characters_is_too_long() -> None:
    problem = check_text("a" * (limits.TWEET_MAX + 1))
    assert problem is not None
    assert problem[0] == "TOO_LONG"
    assert "141" in problem[1]


@pytest.mark.parametrize("text", [
    "a\nb", "a\rb", "tab\there", "\x1b[31mred", "bell\x07", "nul\x00", "del\x7f", "c1\x85",
    "csi\x9b31m", "rtl\u202eevil", "isolate\u2066x", "pop\u2069", "line\u2028sep", "para\u2029",
    "\x1f",
])
def test_control_characters_are_refused(text: str) -> None:
    problem = check_text(text)
    assert problem is not None
    assert problem[0] == "CONTROL_CHARACTERS"


@pytest.mark.parametrize("text", [
    "hello", "a", " ", "back\\slash", "\\n is not a newline", "quotes \" and '", "héllo wörld",
    "日本語のツイート", "Ελληνικά", "emoji 🎉🐍", "#tag @alice", "ðŸ’©",
])
def test_printable_text_is_good(text: str) -> None:
    assert check_text(text) is None


def test_length_is_checked_before_control_characters() -> None:
    assert check_text("\n" * (limits.TWEET_MAX + 1))[0] == "TOO_LONG"  # type: ignore[index]


def test_sentence_names_what_was_checked() -> None:
    assert "say" in check_text("", "say")[1]  # type: ignore[index]
    assert "message" in check_text("x" * 200, "message")[1]  # type: ignore[index]


@FAST
@given(any_text(max_size=160))
def test_check_text_codes(text: str) -> None:
    problem = check_text(text)
    if not text:
        assert problem is not None and problem[0] == "EMPTY_TEXT"
    elif len(text) > limits.TWEET_MAX:
        assert problem is not None and problem[0] == "TOO_LONG"
    elif any(ord(ch) < 0x20 or 0x7F <= ord(ch) < 0xA0 for ch in text):
        assert problem is not None and problem[0] == "CONTROL_CHARACTERS"


def test_text_with_a_lone_surrogate_is_refused() -> None:
    # json.loads turns the escape "\ud800" into a lone surrogate; such a text cannot be encoded
    # as UTF-8 again, so it cannot be stored, forwarded around the ring or printed.
    assert check_text("hi \ud800")[0] == "CONTROL_CHARACTERS"  # type: ignore[index]
    assert check_text("\udc80")[0] == "CONTROL_CHARACTERS"  # type: ignore[index]


@FAST
@given(any_text(1, limits.TWEET_MAX))
def test_accepted_text_can_travel(text: str) -> None:
    """A text that passes validation can be encoded as UTF-8 and shows as itself."""
    if check_text(text) is None:
        text.encode("utf-8")
