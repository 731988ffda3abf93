"""Unit tests of protocol.text: text from the network is shown without driving the terminal."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.text import counted, escape_for_terminal, has_control_characters

FAST = settings(max_examples=400, deadline=None)

BIDI = [0x202A, 0x202B, 0x202C, 0x202D, 0x202E, 0x2066, 0x2067, 0x2068, 0x2069]
LINE_SEPARATORS = [0x2028, 0x2029]

# Any character, lone surrogates included (st.text never yields them).
ANY_CHAR = st.one_of(st.characters(), st.characters(categories=["Cs"]),
                     st.sampled_from([chr(c) for c in range(0x20)] + ["\x7f", "\x85", "\x9b"]
                                     + [chr(c) for c in BIDI + LINE_SEPARATORS]))
ANY_TEXT = st.lists(ANY_CHAR, max_size=60).map("".join)


def is_dangerous(ch: str) -> bool:
    """A character a terminal would interpret rather than show, or cannot be sent at all
    (a lone surrogate, which JSON can carry but UTF-8 cannot)."""
    return (unicodedata.category(ch) in ("Cc", "Cs") or ord(ch) in BIDI
            or ord(ch) in LINE_SEPARATORS)


@pytest.mark.parametrize(("raw", "shown"), [
    ("\x1b[31mred\x1b[0m", "\\x1b[31mred\\x1b[0m"),
    ("\x1b]0;title\x07", "\\x1b]0;title\\x07"),
    ("a\rb", "a\\rb"),
    ("a\nb", "a\\nb"),
    ("a\tb", "a\\tb"),
    ("del\x7f", "del\\x7f"),
    ("\x00", "\\x00"),
    ("\x1f", "\\x1f"),
    ("\x80", "\\x80"),
    ("nel\x85", "nel\\x85"),
    ("csi\x9b31m", "csi\\x9b31m"),
    ("\x9f", "\\x9f"),
    ("\u202eevil", "\\u202eevil"),
    ("\u2028", "\\u2028"),
    ("\u2029", "\\u2029"),
    ("back\\slash", "back\\\\slash"),
    ("\\n", "\\\\n"),
])
def test_escapes(raw: str, shown: str) -> None:
    assert escape_for_terminal(raw) == shown


@pytest.mark.parametrize("code", BIDI)
def test_bidi_overrides_and_isolates_are_escaped(code: int) -> None:
    assert escape_for_terminal(f"a{chr(code)}b") == f"a\\u{code:04x}b"


@pytest.mark.parametrize("code", [*range(0x20), *range(0x7F, 0xA0)])
def test_every_c0_c1_control_and_del_is_escaped(code: int) -> None:
    shown = escape_for_terminal(chr(code))
    assert shown.startswith("\\")
    assert not any(is_dangerous(ch) for ch in shown)


@pytest.mark.parametrize("text", [
    "hello world", "héllo wörld", "日本語", "Ελληνικά", "Привет", "עברית", "مرحبا", "emoji 🎉🐍",
    "\u00a0non-breaking", "ÿ", "quotes \" ' `", "~!@#$%^&*()_+{}[]|:;<>,.?/",
])
def test_printable_text_is_untouched(text: str) -> None:
    assert escape_for_terminal(text) == text
    assert not has_control_characters(text)


def test_a_literal_backslash_sequence_differs_from_the_control_it_spells() -> None:
    assert escape_for_terminal("\n") != escape_for_terminal("\\n")
    assert escape_for_terminal("\x1b") != escape_for_terminal("\\x1b")


def test_has_control_characters() -> None:
    assert has_control_characters("a\nb")
    assert has_control_characters("\x1b[2J")
    assert has_control_characters("\u202e")
    assert not has_control_characters("back\\slash")
    assert not has_control_characters("")


@FAST
@given(ANY_TEXT)
def test_output_never_holds_a_control_character(text: str) -> None:
    shown = escape_for_terminal(text)
    assert not any(is_dangerous(ch) for ch in shown)


@FAST
@given(st.text(st.characters(exclude_categories=["Cc", "Cs"]).filter(
    lambda ch: ch != "\\" and not is_dangerous(ch)), max_size=60))
def test_text_without_controls_is_unchanged(text: str) -> None:
    assert escape_for_terminal(text) == text


@FAST
@given(ANY_TEXT)
def test_has_control_characters_agrees_with_escaping(text: str) -> None:
    assert has_control_characters(text) is any(is_dangerous(ch) for ch in text)


def test_a_lone_surrogate_is_shown_escaped() -> None:
    # json.loads makes lone surrogates out of "\udc80"-style escapes in any datagram or frame;
    # printed as is to a UTF-8 terminal they raise UnicodeEncodeError instead of showing.
    shown = escape_for_terminal("bad \udc80 text \ud800")
    assert shown == "bad \\udc80 text \\ud800"
    shown.encode("utf-8")
    assert has_control_characters("\udc80")


@FAST
@given(ANY_TEXT)
def test_output_can_always_be_printed_to_a_utf8_terminal(text: str) -> None:
    escape_for_terminal(text).encode("utf-8")


def test_a_count_of_one_takes_the_singular() -> None:
    assert counted(1, "follower") == "1 follower"
    assert counted(0, "follower") == "0 followers"
    assert counted(2, "new tweet") == "2 new tweets"
