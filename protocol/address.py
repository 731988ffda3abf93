"""Addresses as people type them: the one IPv4 address parser and the one port parser.

    "127.0.0.1" ──is_ipv4_address──> True            "13000" ──parse_port──> 13000
    "localhost" ──is_ipv4_address──> False           "http"  ──parse_port──> None

Every program's command line, and ``user.py``'s ``register``/``login``, read addresses and ports
through these two functions.  They import nothing: ``ttweetcl.py`` uses them, and its start-up
is benchmarked.
"""

PORT_MAX = 65535


def is_ipv4_address(text: str) -> bool:
    """True for a dotted-quad IPv4 address such as ``127.0.0.1``.

    Leading zeros are refused (``010.0.0.1`` could mean octal to other tools); names such as
    ``localhost`` are refused too, so no lookup ever runs.
    """
    parts = text.split(".")
    if len(parts) != 4:
        return False
    for part in parts:
        if not (part.isascii() and part.isdigit()) or len(part) > 3:
            return False
        if len(part) > 1 and part[0] == "0":
            return False
        if int(part) > 255:
            return False
    return True


def parse_port(text: str, lowest: int = 1) -> int | None:
    """The port ``text`` names, from ``lowest`` (1, or 0 for "any free port") to 65535; None
    when it names none.  ASCII digits only, at most five: no sign, space, ``_`` or other
    script's digits."""
    if not (text.isascii() and text.isdigit()) or len(text) > 5:
        return None
    port = int(text)
    return port if lowest <= port <= PORT_MAX else None
