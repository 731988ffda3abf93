"""The one IPv4 address parser, shared by every program (and import-free: ttweetcl.py starts fast).
"""


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
