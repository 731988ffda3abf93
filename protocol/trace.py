"""Trace records: one JSON line per message a program sends or receives (SPEC §7).

Every program takes ``--trace-file PATH`` and writes, for each message::

    {"t": 1763700000.123456, "at": "@alice", "dir": "send", "from": "@alice", "to": "tracker",
     "kind": "follow", "summary": "follow @alice @bob"}

``t`` is seconds since the epoch; ``at`` is the program that wrote the line (its lifeline);
``dir`` is ``send`` or ``recv``; ``from``/``to`` name lifelines (``tracker``, a handle, or
``ttweetsrv``/``ttweetcl``); ``kind`` is the message kind (a command, ``SUCCESS``/``FAILURE``,
``push:<kind>``, a datagram kind).  ``protocol.diagram`` merges such files into a time-space
diagram.  The writer is handed an open text stream by its program: this module opens no file.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import asdict, dataclass
from typing import TextIO


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


class TraceWriter:
    """Writes records for one program (``owner``) to a stream, one whole line at a time."""

    def __init__(self, stream: TextIO | None, owner: str) -> None:
        self.stream, self.owner = stream, owner
        self._lock = threading.Lock()

    def record(self, direction: str, src: str, dst: str, kind: str, summary: str = "") -> None:
        if self.stream is None:
            return
        line = TraceRecord(time.time(), self.owner, direction, src, dst, kind,
                           summary).to_json()
        with self._lock:
            self.stream.write(line + "\n")
            self.stream.flush()

    def send(self, dst: str, kind: str, summary: str = "") -> None:
        self.record("send", self.owner, dst, kind, summary)

    def recv(self, src: str, kind: str, summary: str = "") -> None:
        self.record("recv", src, self.owner, kind, summary)
