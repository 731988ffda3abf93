"""What the programs' command lines share: the argument types of ``argparse``.

    argv ──argparse──> port(0)("13000")   ──> 13000
                       count("0")          ──> "tracker.py: error: argument --max-sessions:
                                                '0' is not a whole number from 1", exit 2

Each type turns one word of the command line into a value, or refuses it with one sentence,
"'<word>' is not <what was wanted>", that ``argparse`` prints after the program's usage with exit
status 2 (SPEC §1).  Ports are read by ``protocol.address.parse_port``, the one port parser.
(``ttweetcl.py`` does not use argparse for its everyday forms, to start fast: it calls
``parse_port`` itself and prints the SPEC's own line.)
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from typing import TypeVar

from protocol.address import PORT_MAX, parse_port

T = TypeVar("T")


def argument_type(read: Callable[[str], T | None], wanted: str) -> Callable[[str], T]:
    """An argparse type: ``read`` the word (None when it is no such value)."""

    def convert(text: str) -> T:
        value = read(text)
        if value is None:
            raise argparse.ArgumentTypeError(f"{text!r} is not {wanted}")
        return value

    convert.__name__ = wanted           # what argparse would name it in other messages
    return convert


def whole_number(text: str, lowest: int = 1, highest: int | None = None) -> int | None:
    """A whole number from ``lowest`` (to ``highest``), in ASCII digits; None otherwise."""
    if not (text.isascii() and text.isdigit()):
        return None
    number = int(text)
    return number if number >= lowest and (highest is None or number <= highest) else None


def finite_number(text: str, positive: bool = False) -> float | None:
    """A finite number (above 0 if ``positive``); None otherwise."""
    try:
        number = float(text)
    except ValueError:
        return None
    if not math.isfinite(number) or (positive and number <= 0):
        return None
    return number


def port(lowest: int = 1) -> Callable[[str], int]:
    """A port from ``lowest`` (0 for "any free port") to 65535."""
    return argument_type(lambda text: parse_port(text, lowest), f"a port ({lowest}-{PORT_MAX})")


count = argument_type(whole_number, "a whole number from 1")
rate = argument_type(lambda text: finite_number(text, positive=True), "a positive number")
seconds = argument_type(lambda text: finite_number(text, positive=True),
                        "a positive number of seconds")
