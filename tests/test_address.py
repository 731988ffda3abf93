"""protocol/address.py: the one IPv4 address parser and the one port parser."""

from __future__ import annotations

import pytest

from protocol.address import is_ipv4_address, parse_port


@pytest.mark.parametrize(("text", "valid"), [
    ("127.0.0.1", True), ("0.0.0.0", True), ("255.255.255.255", True), ("10.1.2.3", True),
    ("256.0.0.1", False), ("1.2.3", False), ("1.2.3.4.5", False), ("localhost", False),
    ("", False), ("1.2.3.-4", False), ("01.2.3.4", False), ("1.2.3.4 ", False),
    ("١.٢.٣.٤", False), ("::1", False), ("1..2.3", False), ("+1.2.3.4", False),
])
def test_ipv4_addresses(text: str, valid: bool) -> None:
    assert is_ipv4_address(text) is valid


@pytest.mark.parametrize(("text", "port"), [
    ("1", 1), ("13000", 13000), ("65535", 65535), ("0", None), ("65536", None), ("-1", None),
    ("", None), ("http", None), ("1e3", None), (" 80", None), ("١٢", None), ("1_000", None),
    ("000080", None),
])
def test_ports(text: str, port: int | None) -> None:
    assert parse_port(text) == port


def test_port_zero_is_a_port_where_any_free_one_will_do() -> None:
    assert parse_port("0", lowest=0) == 0
    assert parse_port("00000", lowest=0) == 0
    assert parse_port("65536", lowest=0) is None
