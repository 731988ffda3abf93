"""Time-space diagrams from trace files (SPEC §7): ``python3 -m protocol.diagram TRACE...``.

Every program writes, with ``--trace-file PATH``, one JSON record per message it sends or
receives (``protocol.trace``).  This module merges one or more such files and prints the Mermaid
``sequenceDiagram`` of the run: one lifeline per process, one arrow per message, in time order.

How the records become arrows (pure functions; ``main`` is a thin layer over them):

* ``parse_lines`` / ``read_traces`` turn lines into :class:`~protocol.trace.TraceRecord`\\ s;
  a line that is not a record is a :class:`DiagramError` naming the file and line.
* ``alias`` records (``from`` an old lifeline name such as ``127.0.0.1:40222``, ``to`` its new
  name such as ``@alice``) rename a lifeline in every record; the first alias of a name wins.
* A message is usually traced twice, by its sender (``send``) and by its receiver (``recv``).
  ``merge`` keeps every ``send`` record, and a ``recv`` record only when its sender wrote no trace
  among the inputs (is not the ``at`` of any record), so each message is drawn exactly once.
* ``render`` draws requests and datagrams as ``->>``, replies (``SUCCESS``/``FAILURE …``) and
  ``ack``\\ s as ``-->>``, pushes (``push:…``) as ``-)``, with Mermaid-safe labels of at most
  ``LABEL_MAX`` characters.

Example::

    python3 -m protocol.diagram tracker.jsonl alice.jsonl bob.jsonl -o run.md
"""

from __future__ import annotations

import argparse
import ast
import json
import sys
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from protocol.trace import TraceError, TraceRecord

LABEL_MAX = 60                  # characters of an arrow's label, before escaping
ALIAS = "alias"
REQUEST, REPLY, PUSH = "->>", "-->>", "-)"
# Characters that end or confuse a Mermaid message or participant text, as entity codes.
_ENTITIES = {"#": "#35;", ";": "#59;", "<": "#60;", ">": "#62;"}


class DiagramError(ValueError):
    """An input that cannot be drawn: an unreadable file or a line that is not a record."""


@dataclass(frozen=True)
class Arrow:
    """One message on the diagram; ``label`` is plain text (``render`` escapes it)."""

    t: float
    src: str
    dst: str
    kind: str
    style: str
    label: str


# ---- reading ---------------------------------------------------------------------------------
def parse_lines(lines: Iterable[str], source: str = "<trace>") -> list[TraceRecord]:
    """The records of one trace file's lines; blank lines are skipped."""
    records = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            records.append(TraceRecord.from_json(line))
        except TraceError as error:
            raise DiagramError(f"{source}:{number}: {error}") from None
    return records


def read_traces(paths: Sequence[str]) -> list[TraceRecord]:
    """All records of the given files, in file order."""
    records: list[TraceRecord] = []
    for path in paths:
        try:
            with open(path, encoding="utf-8", errors="replace") as stream:
                records += parse_lines(stream, path)
        except OSError as error:
            raise DiagramError(f"cannot read {path}: {error.strerror or error}") from None
    return records


# ---- merging ---------------------------------------------------------------------------------
def aliases(records: Iterable[TraceRecord]) -> dict[str, str]:
    """Old lifeline name -> final name, from the ``alias`` records (the first one of a name wins;
    chains such as address -> @a -> @b are followed to their end)."""
    first: dict[str, str] = {}
    for record in sorted((r for r in records if r.kind == ALIAS), key=lambda r: r.t):
        if record.src != record.dst:
            first.setdefault(record.src, record.dst)
    resolved = {}
    for name in first:
        seen, current = {name}, first[name]
        while current in first and first[current] not in seen:
            seen.add(current)
            current = first[current]
        resolved[name] = current
    return resolved


def rename(records: Iterable[TraceRecord], names: dict[str, str]) -> list[TraceRecord]:
    """The records with every lifeline name (``at``, ``from``, ``to``) renamed by ``names``."""
    return [replace(r, at=names.get(r.at, r.at), src=names.get(r.src, r.src),
                    dst=names.get(r.dst, r.dst)) for r in records]


def arrow_style(kind: str) -> str:
    """``-)`` for a push, ``-->>`` for a reply or an ack, ``->>`` for a request or datagram."""
    if kind.startswith("push:"):
        return PUSH
    if kind == "ack" or kind.split(" ", 1)[0] in ("SUCCESS", "FAILURE"):
        return REPLY
    return REQUEST


def _pairs(fields: dict[Any, Any], skip: tuple[str, ...] = ()) -> str:
    """``key=value …``; values that are not strings are shown as JSON (``true``, ``[1,2]``)."""
    return " ".join(
        f"{key}={value if isinstance(value, str) else json.dumps(value, separators=(',', ':'))}"
        for key, value in fields.items() if key not in skip)


def short_summary(kind: str, summary: str) -> str:
    """The informative part of a record's summary, whichever program wrote it.

    Tracker frames are JSON (a reply gives its ``message``, a push or a request its fields);
    ``user.py`` writes ``cmd {python dict}`` for requests and ``kind field=value …`` for
    datagrams.
    """
    text = summary.strip()
    try:
        obj = json.loads(text)
    except ValueError:
        obj = None
    if isinstance(obj, dict):
        if "status" in obj:
            return str(obj.get("message", ""))
        if "push" in obj:
            return _pairs(obj, ("push",))
        return _pairs(obj, ("id", "cmd") if obj.get("cmd") == kind else ("id",))
    if text.startswith(kind):
        text = text[len(kind):].strip()
    if text.startswith("{"):
        try:
            fields = ast.literal_eval(text)
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            fields = None
        if isinstance(fields, dict):
            return _pairs(fields)
    return text


def label_of(kind: str, summary: str, limit: int = LABEL_MAX) -> str:
    """``kind`` and a short summary, at most ``limit`` characters (plain text)."""
    detail = short_summary(kind, summary)
    joiner = ": " if arrow_style(kind) == REPLY and kind != "ack" else " "
    label = f"{kind}{joiner}{detail}" if detail else kind
    label = " ".join(label.split())             # newlines and runs of blanks become one space
    return label if len(label) <= limit else label[:limit - 1].rstrip() + "…"


def merge(records: Iterable[TraceRecord], acks: bool = True) -> list[Arrow]:
    """The arrows of a run: each message once, in time order (ties keep input order)."""
    records = list(records)
    named = rename((r for r in records if r.kind != ALIAS), aliases(records))
    writers = {r.at for r in named}
    chosen = [(r.t, index, r) for index, r in enumerate(named)
              if r.dir == "send" or r.src not in writers]
    arrows = []
    for _t, _index, r in sorted(chosen, key=lambda item: (item[0], item[1])):
        if not acks and r.kind == "ack":
            continue
        arrows.append(Arrow(r.t, r.src, r.dst, r.kind, arrow_style(r.kind),
                            label_of(r.kind, r.summary)))
    return arrows


# ---- drawing ---------------------------------------------------------------------------------
def mermaid_text(text: str) -> str:
    """``text`` safe inside a Mermaid message or participant name: ``# ; < >`` become entity
    codes, control and other invisible characters a space."""
    out = []
    for ch in text:
        if ch in _ENTITIES:
            out.append(_ENTITIES[ch])
        elif unicodedata.category(ch).startswith(("C", "Z")) and ch != " ":
            out.append(" ")
        else:
            out.append(ch)
    return "".join(out)


def participants(arrows: Iterable[Arrow]) -> list[str]:
    """Lifeline names in order of first appearance."""
    order: dict[str, None] = {}
    for arrow in arrows:
        order.setdefault(arrow.src)
        order.setdefault(arrow.dst)
    return list(order)


def render(arrows: Sequence[Arrow]) -> str:
    """The Mermaid ``sequenceDiagram`` text (participants get the ids P1, P2, …)."""
    names = participants(arrows)
    ids = {name: f"P{number}" for number, name in enumerate(names, 1)}
    lines = ["sequenceDiagram"]
    lines += [f"    participant {ids[name]} as {mermaid_text(name).strip() or '?'}"
              for name in names]
    lines += [f"    {ids[a.src]}{a.style}{ids[a.dst]}: {mermaid_text(a.label)}" for a in arrows]
    return "\n".join(lines) + "\n"


def diagram(paths: Sequence[str], acks: bool = True) -> str:
    """Read, merge and render trace files in one call."""
    return render(merge(read_traces(paths), acks=acks))


# ---- command line ----------------------------------------------------------------------------
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python3 -m protocol.diagram",
        description="Merge trace files (--trace-file of tracker.py and user.py) into a Mermaid "
                    "sequenceDiagram: one lifeline per process, each message once.",
        epilog="example: python3 -m protocol.diagram tracker.jsonl alice.jsonl bob.jsonl "
               "-o run.mmd")
    parser.add_argument("traces", nargs="+", metavar="TRACE", help="a JSON-lines trace file")
    parser.add_argument("--no-acks", action="store_true", help="leave the datagram acks out")
    parser.add_argument("-o", "--output", metavar="FILE", help="write here instead of stdout")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        text = diagram(args.traces, acks=not args.no_acks)
    except DiagramError as error:
        print(f"diagram: {error}", file=sys.stderr)
        return 2
    if args.output is None:
        sys.stdout.write(text)
        return 0
    try:
        with open(args.output, "w", encoding="utf-8") as stream:
            stream.write(text)
    except OSError as error:
        print(f"diagram: cannot write {args.output}: {error.strerror or error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
