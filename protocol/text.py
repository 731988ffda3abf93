"""Showing text that came from the network without letting it drive the terminal.

    text from a peer or the tracker ──escape_for_terminal──> one line, every control visible
                                     (session logs, trace records, diagram labels)
    text people typed and read back ──as_typed──> as typed, only controls written out
                                     (tweets, says, messages on the console)

No text that arrived over the network is printed without going through one of the two: an
escape sequence in a tweet must show as ``\\x1b[2J``, never clear someone's screen.
"""

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


def as_typed(text: str) -> str:
    """Return ``text`` as a person typed it, with only its control characters written out.

    For text people type and read back (tweets, ``say`` lines, direct messages): a backslash
    stays one backslash, so ``¯\\_(ツ)_/¯`` and ``C:\\Users`` look as typed.  Control characters
    (which the tracker refuses in such text, and a peer might still send) are written out as
    :func:`escape_for_terminal` writes them, so nothing reaches the terminal that it would
    interpret.  The price: a real ESC and the four characters ``\\x1b`` typed by hand look
    alike.  Where that matters (session logs), use :func:`escape_for_terminal`.
    """
    if not has_control_characters(text):
        return text                         # the usual case: shown exactly as it is
    return "".join(ch if ch == "\\" else escape_for_terminal(ch) for ch in text)


def has_control_characters(text: str) -> bool:
    """True when ``text`` holds a character that :func:`escape_for_terminal` would rewrite,
    the backslash aside."""
    return escape_for_terminal(text.replace("\\", "")) != text.replace("\\", "")
