"""Trace records: one JSON line per message a program sends or receives (SPEC §7).

Every program takes ``--trace-file PATH`` and writes, for each message::

    {"t": 1763700000.123456, "at": "@alice", "dir": "send", "from": "@alice", "to": "tracker",
     "kind": "follow", "summary": "follow @alice @bob"}

``t`` is seconds since the epoch; ``at`` is the program that wrote the line (its lifeline);
``dir`` is ``send`` or ``recv``; ``from``/``to`` name lifelines (``tracker``, a handle, or
``ttweetsrv``/``ttweetcl``); ``kind`` is the message kind (a command, ``SUCCESS``/``FAILURE``,
``push:<kind>``, a datagram kind).  ``protocol.diagram`` merges such files into a time-space
diagram.

How a record is made and read::

    (when, who, direction, from, to, kind, summary) ──trace_line──> one escaped JSON line
                                      adapters.trace_file.TraceWriter appends it to the file
    a line of a trace file ──TraceRecord.from_json──> a TraceRecord (protocol.diagram reads them)

``trace_line`` escapes what came from the network (control characters, bidi overrides, lone
surrogates: the same escapes as the console, ``protocol.text.escape_for_terminal``), so a trace
file is safe to ``cat``.  This module reads no clock and writes nothing: the time is given, and
``adapters.trace_file.TraceWriter`` stamps each record and hands its line to the file.

``shown_frame`` is what a trace may show of a tracker frame: its text with every password
replaced by ``***`` (SPEC §4: the tracker never logs a password).
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from typing import Any

from protocol.text import escape_for_terminal

REDACTED = "***"


class TraceError(ValueError):
    """A line that is not a trace record."""


@dataclass(frozen=True)
class TraceRecord:
    t: float
    at: str
    dir: str
    src: str
    dst: str
    kind: str
    summary: str

    def to_json(self) -> str:
        fields = asdict(self)
        fields["from"], fields["to"] = fields.pop("src"), fields.pop("dst")
        return json.dumps(fields, ensure_ascii=False)

    @classmethod
    def from_json(cls, line: str) -> TraceRecord:
        try:
            obj = json.loads(line)
            record = cls(float(obj["t"]), str(obj["at"]), str(obj["dir"]), str(obj["from"]),
                         str(obj["to"]), str(obj["kind"]), str(obj.get("summary", "")))
        except (ValueError, KeyError, TypeError, AttributeError):
            raise TraceError(f"not a trace record: {line[:80]!r}") from None
        if record.dir not in ("send", "recv"):
            raise TraceError(f"'dir' must be send or recv: {line[:80]!r}")
        return record


def trace_line(when: float, owner: str, direction: str, src: str, dst: str, kind: str,
               summary: str = "") -> str:
    """The JSON line (without its newline) of one record written by ``owner`` at ``when``;
    every name and the summary escaped for the terminal."""
    return TraceRecord(when, owner, direction, escape_for_terminal(src), escape_for_terminal(dst),
                       escape_for_terminal(kind), escape_for_terminal(summary)).to_json()


# ---- what a trace may show of a frame ---------------------------------------------------------
def _is_secret(key: str) -> bool:
    return "password" in key.lower()


def _redacted(value: Any) -> tuple[Any, bool]:
    """``value`` with the value of every secret key replaced; and whether there was one."""
    if isinstance(value, dict):
        out, found = {}, False
        for key, item in value.items():
            if _is_secret(key):
                out[key], found = REDACTED, True
            else:
                out[key], inner = _redacted(item)
                found = found or inner
        return out, found
    if isinstance(value, list):
        items = [_redacted(item) for item in value]
        return [item for item, _ in items], any(found for _, found in items)
    return value, False


# A JSON string literal; without its closing quote (group 1) when the text ends inside it.
_STRING_LITERAL = re.compile(r'"(?:[^"\\]|\\.)*(")?', re.DOTALL)


def _cut_before_secrets(text: str) -> str:
    """For text that is not JSON (garbage, or a frame cut short): everything before the first
    key that is, or may be, a password; that key's value and what follows become ``***…``.

    A key is a string literal followed by ``:``.  A key that cannot be decoded (cut inside an
    escape, a bad escape) may be a password as well, so the text is cut there too.
    """
    for match in _STRING_LITERAL.finditer(text):
        literal, closed = match.group(), match.group(1) is not None
        if closed and not text[match.end():].lstrip().startswith(":"):
            continue                                    # a value, not a key
        if not closed and text[:match.start()].rstrip().endswith(":"):
            break                                       # the value the text was cut in
        try:
            name = json.loads(literal) if closed else None
        except ValueError:
            name = None
        if not isinstance(name, str):
            return text[:match.start()] + "…"
        if _is_secret(name):
            return f'{text[:match.end()]}: "{REDACTED}"…'
    return text


def shown_frame(frame: bytes) -> str:
    """A tracker frame as a trace may show it: its text (undecodable bytes as ``\\xNN``,
    without its newline) with every password replaced by ``***``.

    A frame that parses is redacted by key, whatever escapes spell the key
    (``"p\\u0061ssword"``); a frame that does not (garbage, or cut short for the trace) is cut
    before its first key that is or may be a password.
    """
    text = frame.decode("utf-8", "backslashreplace").rstrip("\n")
    try:
        redacted, found = _redacted(json.loads(frame))
    except (ValueError, RecursionError):       # not JSON, or nested too deep to walk
        return _cut_before_secrets(text)
    return json.dumps(redacted, ensure_ascii=False) if found else text
