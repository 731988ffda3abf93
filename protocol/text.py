"""Showing text that came from the network without letting it drive the terminal."""

_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\\": "\\\\"}


def escape_for_terminal(text: str) -> str:
    """Return ``text`` with every control character written out visibly.

    C0 and C1 controls (ESC included, so no escape sequence survives) and DEL become ``\\n``,
    ``\\r``, ``\\t`` or ``\\xNN``; line separators, bidi overrides and lone surrogates (which
    JSON can carry but UTF-8 cannot) become ``\\uNNNN``.  A backslash is doubled so the result is
    unambiguous.
    Printable characters, non-ASCII letters included, pass through unchanged.
    """
    out = []
    for ch in text:
        code = ord(ch)
        if ch in _NAMED:
            out.append(_NAMED[ch])
        elif code < 0x20 or 0x7F <= code < 0xA0:
            out.append(f"\\x{code:02x}")
        elif (code in (0x2028, 0x2029) or 0x202A <= code <= 0x202E or 0x2066 <= code <= 0x2069
              or 0xD800 <= code <= 0xDFFF):
            out.append(f"\\u{code:04x}")   # line separators, bidi overrides, lone surrogates
        else:
            out.append(ch)
    return "".join(out)


def has_control_characters(text: str) -> bool:
    """True when ``text`` holds a character that :func:`escape_for_terminal` would rewrite,
    the backslash aside."""
    return escape_for_terminal(text.replace("\\", "")) != text.replace("\\", "")
