"""Time-space diagrams from trace records (SPEC §7): Mermaid for the page, text for the terminal.

Every program writes, with ``--trace-file PATH``, one JSON record per message it sends or
receives (``protocol.trace``).  This module turns the records of one run into a diagram: one
lifeline per process, one arrow per message, labels whole.  It is pure: reading files and the
command line (``python3 -m protocol.diagram``) live in ``tools/diagram_cli.py``.

How records become a diagram::

    lines --parse_lines--> records --build--> Run --select--> Run --mermaid/render_text--> str

``build`` does five things, all from the records alone (no message kind is known in advance,
so new kinds and fields are drawn as they come):

1. **Names.**  ``alias`` records (``from`` an old lifeline name such as ``127.0.0.1:40222``, ``to``
   its new one such as ``@alice``) rename a lifeline everywhere; the first alias of a name wins.
2. **Matching.**  A message is traced twice, by its sender (``send``) and its receiver (``recv``).
   Each ``recv`` is paired with its ``send``: first the one with the very same summary (peers
   trace a datagram the same way at both ends), then, per sender and receiver, in order (a TCP
   connection keeps order; the tracker and ``user.py`` word a frame differently).
3. **Messages.**  Each ``send`` is one arrow, except that a copy of an earlier datagram (the same
   sender, receiver and summary, with a ``seq`` field) is a resend of it: one arrow that counts
   its ``copies``.  A message whose receiver wrote a trace but never recorded it is drawn as lost.
   A ``recv`` stands for its message only when the sender wrote no trace among the inputs.
4. **Steps.**  A scripted run (``tools/demo.py``) writes a trace of its own: a ``step`` record
   where each step begins (its summary is the title) and a ``mark`` record each time it acts
   (types a line, starts a process).  Steps group the messages for drawing: a message belongs
   to the step in which it was first sent.
5. **Order.**  Processes that a script drives are linked only through the script, which
   writes no messages: so the marks cut the run into segments, drawn one after the other.
   Within a segment, messages are drawn in causal order, by Lamport clocks: a message's depth
   is one more than the deepest message its sender had received before sending it (an ``ack``
   counts only for what its receiver sends next to the same peer, or outside datagrams; see
   ``_Clock``).  Messages of equal depth, concurrent ones such as the acks of setups sent
   together, are ordered by lifeline, then by their sender's own order, never by the clock: so
   reruns of a script draw the same diagram even when the machine orders concurrent events
   differently.  Records without marks (a run by hand) are drawn in time order.

Labels are built field by field (``label_words``): the kind, then ``key=value`` pairs, or a
reply's sentence.  Keys, signatures and MACs (long opaque strings) show 8 characters; an
over-long word is shortened and its length given; wrapping is between words, never inside one.
A :class:`Normaliser` replaces what differs from run to run (ports, sequence numbers, opaque
strings, times) by names numbered in order of appearance (``p1``, ``s1``, ``k1``, ``t1``), so that
a page made from a rerun is the same page.
"""

from __future__ import annotations

import ast
import bisect
import json
import re
import unicodedata
from collections import defaultdict, deque
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from protocol.text import escape_for_terminal
from protocol.trace import TraceError, TraceRecord

ALIAS = "alias"                 # record kind: a lifeline's new name
STEP = "step"                   # record kind: a step of a scripted run begins (summary: title)
MARK = "mark"                   # record kind: the script acts again (e.g. types a command)
SEQ_FIELD = "seq"               # a datagram's: copies of one are resends, an ack names it
ACK = "ack"                     # the kind of a datagram's acknowledgement
REQUEST, REPLY, PUSH = "request", "reply", "push"       # the three arrow styles
REPLY_WORDS = ("SUCCESS", "FAILURE", "OK", "ERROR")     # first word of a reply's kind

WORD_MAX = 24                   # a longer word is shortened (a label never breaks inside a word)
BLOB_SHOWN = 8                  # characters shown of a key, signature or MAC
MERMAID_WRAP = 60               # characters per line of a Mermaid label
MIN_LABEL = 28                  # columns a text label always has, however far right it starts
MIN_GAP, MAX_GAP = 4, 26        # columns between two lifelines in the text diagram

PORT_KEYS = frozenset({"port", "ports", "left", "middle", "right"})
TIME_MIN = 1e9                  # a number this large, outside a ``seq``, is a time (epoch seconds)
_BLOB = re.compile(r"[A-Za-z0-9+/=_-]{16,}")
_IPV4 = re.compile(r"\d{1,3}(?:\.\d{1,3}){3}")
_ADDRESS = re.compile(r"\b(\d{1,3}(?:\.\d{1,3}){3}):(\d{1,5})\b")
_NUMBER = re.compile(r"(?<![\w.])\d+(?![\w.]|\.\d)")
_PAIR = re.compile(r"([A-Za-z_][\w-]*)=(\S*)$")


class DiagramError(ValueError):
    """An input that cannot be drawn: a line that is not a record, a step that does not exist,
    a width too small for the lifelines."""


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


def arrow_style(kind: str) -> str:
    """PUSH for ``push:…``, REPLY for a reply (``SUCCESS``, ``FAILURE …``, ``OK``, ``ERROR …``)
    or an ``ack``, REQUEST for anything else (requests and datagrams)."""
    if kind.startswith("push:"):
        return PUSH
    if kind == ACK or kind.split(" ", 1)[0] in REPLY_WORDS:
        return REPLY
    return REQUEST


# ---- the model -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Message:
    """One arrow: a message from ``src`` to ``dst``, as its sender traced it."""

    t: float                    # when it was first sent (received, if only its receiver traced it)
    src: str
    dst: str
    kind: str
    summary: str
    copies: int = 1             # how many times it was sent (a datagram resent until acked)
    delivered: bool | None = None   # None: the receiver wrote no trace, nobody knows

    @property
    def style(self) -> str:
        return arrow_style(self.kind)


@dataclass(frozen=True)
class Step:
    """The messages of one step, in drawing order; step 0 holds what came before any step."""

    number: int
    title: str
    messages: tuple[Message, ...]


@dataclass(frozen=True)
class Run:
    """A whole diagram: lifelines in drawing order and the steps."""

    lifelines: tuple[str, ...]
    steps: tuple[Step, ...]
    start: float = 0.0          # time of the first record: time windows are counted from it

    @property
    def messages(self) -> tuple[Message, ...]:
        return tuple(m for step in self.steps for m in step.messages)


# ---- building --------------------------------------------------------------------------------
@dataclass(eq=False)
class _Event:
    """One record, in its writer's order; ``peer`` is the other end once matched."""

    record: TraceRecord
    index: int
    peer: _Event | None = None
    draft: _Draft | None = None


@dataclass(eq=False)
class _Draft:
    """A message being built: its first event (a send, or a recv when only that was traced)."""

    first: _Event
    copies: int = 1
    recvs: list[_Event] = field(default_factory=list)
    depth: int | None = None


def rename(records: Iterable[TraceRecord], names: Mapping[str, str]) -> list[TraceRecord]:
    """The records with every lifeline name (``at``, ``from``, ``to``) renamed by ``names``."""
    return [replace(r, at=names.get(r.at, r.at), src=names.get(r.src, r.src),
                    dst=names.get(r.dst, r.dst)) for r in records]


def _match(events: Mapping[str, list[_Event]]) -> None:
    """Pair each recv event with the send event of the same message (sets ``peer``)."""
    by_summary: dict[tuple[str, str, str], deque[_Event]] = defaultdict(deque)
    by_pair: dict[tuple[str, str], list[_Event]] = defaultdict(list)
    for writer_events in events.values():
        for e in writer_events:
            if e.record.dir == "send":
                by_summary[e.record.src, e.record.dst, e.record.summary].append(e)
                by_pair[e.record.src, e.record.dst].append(e)
    recvs = [e for writer_events in events.values() for e in writer_events
             if e.record.dir == "recv"]
    for e in recvs:                         # the same words at both ends: a datagram
        queue = by_summary.get((e.record.src, e.record.dst, e.record.summary))
        if queue:
            e.peer = queue.popleft()
            e.peer.peer = e
    left: dict[tuple[str, str], list[_Event]] = defaultdict(list)
    for e in recvs:
        if e.peer is None:
            left[e.record.src, e.record.dst].append(e)
    for pair, waiting in left.items():      # the rest, in order: a TCP connection
        sends = (s for s in by_pair.get(pair, ()) if s.peer is None)
        for e, s in zip(waiting, sends):    # noqa: B905 (fewer sends than recvs: some lost)
            if s.record.t <= e.record.t:
                e.peer, s.peer = s, e


def _is_copy_of(draft: _Draft | None, e: _Event) -> bool:
    """Whether ``e`` repeats ``draft``'s message: a resent datagram, identified by its ``seq``."""
    return draft is not None and _has_seq(e.record)


def _drafts(events: Mapping[str, list[_Event]]) -> list[_Draft]:
    """Messages from events: each send (its copies folded in), and each recv whose sender
    wrote no trace."""
    drafts: list[_Draft] = []
    last: dict[tuple[str, str, str, str], _Draft] = {}
    firsts = [e for writer_events in events.values() for e in writer_events
              if e.record.dir == "send" or (e.peer is None and e.record.src not in events)]
    for e in sorted(firsts, key=lambda e: (e.record.t, e.record.at, e.index)):
        r = e.record
        key = (r.dir, r.src, r.dst, r.summary)
        draft = last.get(key)
        if _is_copy_of(draft, e):
            assert draft is not None
            draft.copies += 1
        else:
            draft = _Draft(e)
            drafts.append(draft)
            last[key] = draft
        e.draft = draft
        if r.dir == "send" and e.peer is not None:
            draft.recvs.append(e.peer)
            e.peer.draft = draft
    return drafts


class _Clock:
    """A writer's Lamport clock, with one refinement for datagram acks.

    A peer may send a datagram it will not wait for (the teardown of a follower that left)
    just before the next one; whether the first one's ack is recorded before the second is
    sent is the machine's timing, not a cause.  So an ``ack`` counts for later datagrams to the
    peer that sent it only, and for everything that is not a datagram (a request to the
    tracker, which a peer sends once the work of the command, acks included, is done).
    Everything else received counts for everything sent after it.
    """

    def __init__(self) -> None:
        self.time = 0
        self.acks: dict[str, int] = {}          # per peer: what its acks add

    def send(self, record: TraceRecord) -> int:
        if not _has_seq(record):
            self.time = max(self.time, *self.acks.values(), 0)
        else:
            self.time = max(self.time, self.acks.get(record.dst, 0))
        return self.time

    def receive(self, record: TraceRecord, depth: int) -> None:
        if record.kind == ACK:
            self.acks[record.src] = max(self.acks.get(record.src, 0), depth + 1)
        else:
            self.time = max(self.time, depth + 1)


def _has_seq(record: TraceRecord) -> bool:
    """Whether a record is of a datagram: it carries a sequence number."""
    return SEQ_FIELD in dict(parse_summary(record.kind, record.summary).fields)


def _causal_order(drafts: list[_Draft], events: Mapping[str, list[_Event]],
                  rank: Mapping[str, int]) -> list[_Draft]:
    """The drafts of one segment in causal order, ties broken without time.

    Each draft's depth is the Lamport clock of its sender when it sent it (see ``_Clock``).
    The writers' events are replayed so that a recv comes after its send: a writer waits at a
    recv whose send is not placed yet while the others go on.
    """
    mine = {id(d) for d in drafts}
    queues: dict[str, deque[_Event]] = {}
    for writer in sorted(events):
        segment_events = deque(e for e in events[writer] if e.draft is not None
                               and id(e.draft) in mine
                               and (e is e.draft.first or e.record.dir == "recv"))
        if segment_events:
            queues[writer] = segment_events
    clocks: dict[str, _Clock] = defaultdict(_Clock)
    while queues:
        progressed = False
        for writer in list(queues):
            queue, clock = queues[writer], clocks[writer]
            while queue:
                e = queue[0]
                draft = e.draft
                assert draft is not None
                if e is draft.first and e.record.dir == "send":
                    draft.depth = clock.send(e.record)
                elif e is draft.first:              # a recv standing for its message
                    draft.depth = clock.time
                    clock.receive(e.record, draft.depth)
                elif draft.depth is not None:       # a recv whose send is placed
                    clock.receive(e.record, draft.depth)
                else:
                    break                           # its send comes first: another writer's turn
                queue.popleft()
                progressed = True
            if not queue:
                del queues[writer]
        if not progressed:      # inconsistent records (a recv before its send): take the earliest
            writer = min(queues, key=lambda w: queues[w][0].record.t)
            queues[writer].popleft()
            if not queues[writer]:
                del queues[writer]
    return sorted(drafts, key=lambda d: (d.depth or 0, rank[d.first.record.src], d.first.index))


def build(records: Iterable[TraceRecord], order: Sequence[str] = ("tracker",),
          acks: bool = True) -> Run:
    """The diagram of a run's records (see the module's docstring).

    ``order`` names the lifelines drawn first, in that order (the others follow in order of
    appearance); ``acks=False`` leaves out the messages of kind ``ack``.
    """
    records = list(records)
    names = aliases(records)
    marks = sorted((r for r in records if r.kind in (STEP, MARK)), key=lambda r: r.t)
    events: dict[str, list[_Event]] = defaultdict(list)
    for r in rename((r for r in records if r.kind not in (ALIAS, STEP, MARK)), names):
        events[r.at].append(_Event(r, len(events[r.at])))
    _match(events)
    drafts = _drafts(events)                # in time order

    rank: dict[str, int] = {}
    for name in order:
        rank.setdefault(name, len(rank))
    used = {name for d in drafts for name in (d.first.record.src, d.first.record.dst)}
    for name in sorted(used - rank.keys()):         # ties between the others: by name
        rank[name] = len(rank)

    # Segments: the stretches between two marks.  Without marks, time order is all there is.
    times = [m.t for m in marks]
    segments: dict[int, list[_Draft]] = defaultdict(list)
    for d in drafts:
        segments[bisect.bisect_right(times, d.first.record.t)].append(d)
    titles = {0: ""}
    step_of = [0]                   # segment -> step number
    for mark in marks:
        if mark.kind == STEP:
            titles[len(titles)] = mark.summary
        step_of.append(len(titles) - 1)
    per_step: dict[int, list[_Draft]] = defaultdict(list)
    for segment in sorted(segments):
        ordered = (_causal_order(segments[segment], events, rank) if marks
                   else segments[segment])
        per_step[step_of[segment]] += ordered
    steps = []
    for number in sorted(per_step.keys() | set(titles) - {0}):
        messages = tuple(_message(d, events) for d in per_step.get(number, ())
                         if acks or d.first.record.kind != ACK)
        steps.append(Step(number, titles[number], messages))
    start = min((r.t for r in records), default=0.0)
    run = Run((), tuple(steps), start)
    return replace(run, lifelines=_lifelines(run.messages, order))


def _message(draft: _Draft, events: Mapping[str, list[_Event]]) -> Message:
    r = draft.first.record
    if r.dir == "recv":
        delivered: bool | None = True
    else:
        delivered = bool(draft.recvs) if r.dst in events else None
    return Message(r.t, r.src, r.dst, r.kind, r.summary, draft.copies, delivered)


def _lifelines(messages: Iterable[Message], order: Sequence[str]) -> tuple[str, ...]:
    """The lifelines the messages use: ``order``'s first, then in order of appearance."""
    seen: dict[str, None] = {}
    for m in messages:
        seen.setdefault(m.src)
        seen.setdefault(m.dst)
    first = [name for name in order if name in seen]
    return tuple(first + [name for name in seen if name not in first])


def select(run: Run, steps: Collection[int] | None = None, since: float | None = None,
           until: float | None = None) -> Run:
    """Part of a run: the given step numbers, and the messages from ``since`` to ``until``
    seconds after the run's first record; lifelines not used any more are left out."""
    known = {step.number for step in run.steps}
    missing = sorted(set(steps or ()) - known)
    if missing:
        listed = ", ".join(str(n) for n in sorted(known)) or "none"
        raise DiagramError(f"no step {missing[0]} in these traces (steps: {listed})")
    low = -float("inf") if since is None else run.start + since
    high = float("inf") if until is None else run.start + until
    chosen = tuple(replace(step, messages=tuple(m for m in step.messages if low <= m.t <= high))
                   for step in run.steps if steps is None or step.number in steps)
    if since is not None or until is not None:
        chosen = tuple(step for step in chosen if step.messages)
    used = {name for step in chosen for m in step.messages for name in (m.src, m.dst)}
    return Run(tuple(name for name in run.lifelines if name in used), chosen, run.start)


# ---- labels ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Label:
    """What a summary says: its kind, its fields, and a sentence (a reply's message)."""

    head: str
    fields: tuple[tuple[str, Any], ...] = ()
    text: str = ""


def parse_summary(kind: str, summary: str) -> Label:
    """The fields of a record's summary, whichever program wrote it.

    Tracker frames are JSON (a reply gives its ``message``, a push or a request its fields);
    ``user.py`` writes ``cmd {python dict}`` for requests and ``kind key=value …`` for
    datagrams; anything else is a sentence.
    """
    text = summary.strip()
    try:
        obj = json.loads(text)
    except ValueError:
        obj = _json_prefix(text) if text.startswith("{") else None
    if isinstance(obj, dict):
        if "status" in obj:
            return Label(kind, (), str(obj.get("message", "")))
        if "push" in obj:
            return Label(kind, tuple((k, v) for k, v in obj.items() if k != "push"))
        skip = ("id", "cmd") if obj.get("cmd") == kind else ("id",)
        return Label(kind, tuple((k, v) for k, v in obj.items() if k not in skip))
    if text.startswith(kind):
        text = text[len(kind):].strip()
    if text.startswith("{"):
        try:
            fields = ast.literal_eval(text)
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            fields = None
        if isinstance(fields, dict):
            return Label(kind, tuple((str(k), v) for k, v in fields.items()))
    pairs, words = [], []
    for word in text.split(" "):
        match = _PAIR.match(word)
        if match and not words:
            pairs.append((match.group(1), match.group(2)))
        elif word:
            words.append(word)
    return Label(kind, tuple(pairs), " ".join(words))


_JSON_PAIR = re.compile(r'\s*,?\s*"((?:[^"\\]|\\.)*)"\s*:\s*'
                        r'("(?:[^"\\]|\\.)*"|-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?|true|false|null)')


def _json_prefix(text: str) -> dict[str, Any] | None:
    """The leading simple fields of a JSON object cut short (a program may trace only the first
    characters of a long frame): ``{"re":2,"status":"SUCCESS","message":"…","tid"`` gives
    ``re``, ``status`` and ``message``; None if not even one field is whole."""
    fields: dict[str, Any] = {}
    position = 1
    while match := _JSON_PAIR.match(text, position):
        fields[json.loads(f'"{match.group(1)}"')] = json.loads(match.group(2))
        position = match.end()
    return fields or None


class Normaliser:
    """Names for the values that differ from run to run, numbered in order of appearance:
    ports ``p1``, sequence numbers ``s1``, keys, signatures and MACs ``k1``, times ``t1``.

    One normaliser serves a whole page, so that a port has one name on every diagram of it;
    labels must be made in drawing order for the numbering to be the same on every run.  The
    kernel may hand out a port number again: so the ``ports`` a process asks the tracker for
    are new names each time (``define``), and later mentions of the number mean the latest.
    """

    def __init__(self) -> None:
        self.names: dict[tuple[str, str], str] = {}
        self.counts: dict[str, int] = defaultdict(int)
        self.definitions: dict[tuple[str, str, object], str] = {}

    def name(self, prefix: str, value: object) -> str:
        key = (prefix, str(value))
        if key not in self.names:
            self.counts[prefix] += 1
            self.names[key] = f"{prefix}{self.counts[prefix]}"
        return self.names[key]

    def define(self, prefix: str, value: object, scope: object) -> str:
        """A new name for ``value`` from here on, the same one whenever ``scope`` (the message
        that defines it) asks again."""
        key = (prefix, str(value), scope)
        if key not in self.definitions:
            self.counts[prefix] += 1
            self.definitions[key] = self.names[prefix, str(value)] = \
                f"{prefix}{self.counts[prefix]}"
        return self.definitions[key]

    def known(self, prefix: str, value: str) -> str | None:
        return self.names.get((prefix, value))

    def text(self, text: str) -> str:
        """A sentence with its addresses' ports and every number already named replaced."""
        text = _ADDRESS.sub(lambda m: f"{m.group(1)}:{self.name('p', m.group(2))}", text)
        text = _BLOB.sub(lambda m: self.name("k", m.group(0)) if _is_blob(m.group(0))
                         else m.group(0), text)

        def number(match: re.Match[str]) -> str:
            word = match.group(0)
            return self.known("p", word) or self.known("s", word) or word
        return _NUMBER.sub(number, text)


def _is_blob(text: str) -> bool:
    """A key, signature or MAC: a long run of base64 or hex characters with a digit in it."""
    return bool(_BLOB.fullmatch(text)) and any(c.isdigit() for c in text)


class _Fields:
    """Shows the values of one message's fields: numbers named by the normaliser (the message
    is the scope of the ports it defines), opaque strings shortened, lists bracketed, a long
    word shortened with ``ellipsis``."""

    def __init__(self, norm: Normaliser | None, scope: object, ellipsis: str) -> None:
        self.norm, self.scope, self.ellipsis = norm, scope, ellipsis

    def word(self, word: str) -> str:
        """At most ``WORD_MAX`` characters: a longer word is shortened, and says so."""
        return word if len(word) <= WORD_MAX else word[:WORD_MAX - 8] + self.ellipsis

    def value(self, key: str, value: Any, port: bool = False) -> str:
        norm = self.norm
        if isinstance(value, bool) or value is None:
            return json.dumps(value)
        if isinstance(value, str) and re.fullmatch(r"\d+", value) and key != "text":
            value = int(value)
        if isinstance(value, (int, float)):
            if norm is None:
                return str(value)
            if key == SEQ_FIELD:
                return norm.name("s", value)
            if key == "ports":
                return norm.define("p", value, self.scope)
            if port or (key in PORT_KEYS and isinstance(value, int) and 0 < value < 65536):
                return norm.name("p", value)
            if value >= TIME_MIN:
                return norm.name("t", value)
            return str(value)
        if isinstance(value, (list, tuple)):
            shown, after_address = [], False
            for item in value:          # in a peer tuple, the numbers after the address
                is_port = isinstance(item, int) and (after_address or key in PORT_KEYS)
                shown.append(self.value(key, item, port=is_port))
                after_address |= isinstance(item, str) and bool(_IPV4.fullmatch(item))
            compact = "[" + ",".join(shown) + "]"       # one word, unless too long for one
            return compact if cells(compact) <= WORD_MAX else "[" + ", ".join(shown) + "]"
        if isinstance(value, dict):
            return "{" + ", ".join(f"{k}={self.value(str(k), v)}" for k, v in value.items()) + "}"
        text = escape_for_terminal(str(value))
        if _is_blob(text):
            return norm.name("k", text) if norm is not None else text[:BLOB_SHOWN] + self.ellipsis
        if norm is not None:
            text = norm.text(text)
        if text == "" or " " in text:
            return '"' + " ".join(self.word(w) for w in text.split(" ")) + '"'
        return self.word(text) + (f" ({len(text)} characters)" if len(text) > WORD_MAX else "")


def label_words(message: Message, norm: Normaliser | None = None,
                ellipsis: str = "…") -> list[str]:
    """A message's label as words, field by field: the kind, then ``key=value`` pairs, then a
    sentence, then how many times it was sent if more than once.  No word is longer than
    ``WORD_MAX`` but a field's name with its shortened value; a shortened word ends with
    ``ellipsis``."""
    label = parse_summary(message.kind, message.summary)
    fields = _Fields(norm, message, ellipsis)
    head = escape_for_terminal(label.head)
    words = [f"{head}:" if label.text and message.style == REPLY else head]
    for key, value in label.fields:
        words += f"{escape_for_terminal(key)}={fields.value(key, value)}".split(" ")
    sentence = escape_for_terminal(label.text)
    if norm is not None:
        sentence = norm.text(sentence)
    words += [fields.word(w) for w in sentence.split(" ") if w]
    if message.copies > 1 and norm is None:
        words.append(f"(sent {message.copies} times)")
    elif message.copies > 1 and message.delivered is False:
        words.append("(resent)")        # how many times depends on the machine's timing
    return [w for w in words if w]


def label_text(message: Message, norm: Normaliser | None = None) -> str:
    """A message's label on one line."""
    return " ".join(label_words(message, norm))


def cells(text: str) -> int:
    """Columns ``text`` takes in a terminal: wide characters two, combining ones none."""
    return sum(0 if unicodedata.combining(c) else
               2 if unicodedata.east_asian_width(c) in ("W", "F") else 1 for c in text)


def wrap(words: Sequence[str], width: int) -> list[str]:
    """Words in lines of at most ``width`` columns, broken between words only (a word wider than
    the line, which labels never have above ``WORD_MAX`` columns, is cut as a last resort)."""
    lines: list[str] = []
    line = ""
    for word in words:
        while cells(word) > width:                      # only for absurdly narrow widths
            if line:
                lines.append(line)
                line = ""
            cut = width
            while cells(word[:cut]) > width:
                cut -= 1
            lines.append(word[:cut])
            word = word[cut:]
        if not line:
            line = word
        elif cells(line) + 1 + cells(word) <= width:
            line += " " + word
        else:
            lines.append(line)
            line = word
    if line:
        lines.append(line)
    return lines


def display_names(run: Run, names: Mapping[str, str] | None = None,
                  norm: Normaliser | None = None) -> dict[str, str]:
    """Each lifeline's name as drawn: ``names`` may give some (e.g. with a host address)."""
    shown = {}
    for lifeline in run.lifelines:
        name = escape_for_terminal((names or {}).get(lifeline, lifeline))
        shown[lifeline] = norm.text(name) if norm is not None else name
    return shown


# ---- Mermaid ---------------------------------------------------------------------------------
_ENTITIES = {"#": "#35;", ";": "#59;", "<": "#60;", ">": "#62;"}
_MERMAID_WORDS = frozenset({
    "activate", "alt", "and", "as", "autonumber", "box", "break", "create", "critical",
    "deactivate", "destroy", "else", "end", "left", "link", "links", "loop", "note", "of",
    "opt", "over", "par", "participant", "actor", "rect", "right", "title"})
_MERMAID_ARROWS = {(REQUEST, True): "->>", (REPLY, True): "-->>", (PUSH, True): "-)",
                   (REQUEST, False): "-x", (REPLY, False): "--x", (PUSH, False): "-x"}


def mermaid_text(text: str) -> str:
    """``text`` safe in a Mermaid message: ``# ; < >`` become entity codes (which Mermaid shows
    as the characters), other invisible characters a space."""
    out = []
    for ch in text:
        if ch in _ENTITIES:
            out.append(_ENTITIES[ch])
        elif unicodedata.category(ch).startswith(("C", "Z")) and ch != " ":
            out.append(" ")
        else:
            out.append(ch)
    return "".join(out)


def mermaid_ids(lifelines: Sequence[str]) -> dict[str, str]:
    """A readable Mermaid id per lifeline (``@ann`` -> ``ann``), unique and not a keyword."""
    ids: dict[str, str] = {}
    for name in lifelines:
        base = re.sub(r"\W+", "_", name.lstrip("@")).strip("_") or "p"
        if base[0].isdigit() or base.lower() in _MERMAID_WORDS:
            base = f"p_{base}"
        candidate, n = base, 1
        while candidate in ids.values():
            n += 1
            candidate = f"{base}_{n}"
        ids[name] = candidate
    return ids


def mermaid(run: Run, norm: Normaliser | None = None, names: Mapping[str, str] | None = None,
            step_notes: bool = True, width: int = MERMAID_WRAP) -> str:
    """The Mermaid ``sequenceDiagram`` of a run; with ``step_notes`` each step (but step 0)
    opens with a note across every lifeline that gives its title."""
    ids = mermaid_ids(run.lifelines)
    shown = display_names(run, names, norm)
    lines = ["sequenceDiagram"]
    for lifeline in run.lifelines:
        alias = mermaid_text(shown[lifeline]).strip() or "?"
        lines.append(f"    participant {ids[lifeline]}" +
                     ("" if alias == ids[lifeline] else f" as {alias}"))
    span = ",".join(dict.fromkeys(ids[name] for name in run.lifelines[:1] + run.lifelines[-1:]))
    for step in run.steps:
        if step_notes and step.number and span:
            title = "<br/>".join(mermaid_text(line) for line in
                                 wrap(f"step {step.number}: {step.title}".split(), width))
            lines.append(f"    Note over {span}: {title}")
        for m in step.messages:
            text = "<br/>".join(mermaid_text(line) for line in wrap(label_words(m, norm), width))
            arrow = _MERMAID_ARROWS[m.style, m.delivered is not False]
            lines.append(f"    {ids[m.src]}{arrow}{ids[m.dst]}: {text}")
    return "\n".join(lines) + "\n"


# ---- text ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Glyphs:
    """The characters of the text diagram."""

    bar: str
    cross: str
    tail: tuple[str, str]                   # sender's end: arrow going right, going left
    body: Mapping[str, str]                 # per style
    head: Mapping[str, tuple[str, str]]     # per style: pointing right, pointing left
    lost: str
    rule: str


UNICODE = Glyphs("│", "┼", ("├", "┤"), {REQUEST: "─", REPLY: "╌", PUSH: "─"},
                 {REQUEST: ("▶", "◀"), REPLY: ("▶", "◀"), PUSH: ("▷", "◁")}, "✕", "─")
ASCII = Glyphs("|", "+", ("|", "|"), {REQUEST: "-", REPLY: ".", PUSH: "~"},
               {REQUEST: (">", "<"), REPLY: (">", "<"), PUSH: (">", "<")}, "x", "-")


class _Row:
    """One line of the text diagram as cells (a wide character takes two)."""

    def __init__(self, width: int) -> None:
        self.cells = [" "] * width

    def put(self, x: int, text: str) -> int:
        """Write ``text`` from column ``x``; returns the column after it."""
        for ch in text:
            w = cells(ch)
            if x + w > len(self.cells):
                break
            self.cells[x] = ch
            for extra in range(1, w):
                self.cells[x + extra] = ""          # covered by the wide character before
            x += w
        return x

    def __str__(self) -> str:
        return "".join(self.cells).rstrip()


def _margins(shown: Sequence[str]) -> tuple[int, int]:
    """Columns left of the first lifeline and right of the last: half their names."""
    if not shown:
        return 1, 1
    return max(1, (cells(shown[0]) - 1) // 2), max(1, cells(shown[-1]) // 2)


def text_width_needed(run: Run, names: Mapping[str, str] | None = None,
                      norm: Normaliser | None = None) -> int:
    """The fewest columns ``render_text`` can draw ``run`` in."""
    shown = list(display_names(run, names, norm).values())
    left, right = _margins(shown)
    return left + right + 1 + MIN_GAP * max(0, len(shown) - 1)


def _columns(count: int, shown: Sequence[str], width: int) -> list[int]:
    """The column of each lifeline: evenly spread over the width, at most ``MAX_GAP`` apart."""
    left, right = _margins(shown)
    if count <= 1:
        return [left][:count]
    gap = min(MAX_GAP, (width - 1 - left - right) // (count - 1))
    if gap < MIN_GAP:
        needed = left + right + 1 + MIN_GAP * (count - 1)
        raise DiagramError(f"{width} columns are too few for {count} lifelines "
                           f"(at least {needed})")
    return [left + i * gap for i in range(count)]


def _header(shown: Sequence[str], columns: Sequence[int], width: int) -> list[str]:
    """The lifelines' names centred over their columns, on as many lines as keep them apart."""
    rows: list[_Row] = []
    ends: list[int] = []                    # per row: the column after its last name
    for name, x in zip(shown, columns, strict=True):
        start = max(0, min(x - (cells(name) - 1) // 2, width - cells(name)))
        line = next((i for i, end in enumerate(ends) if start > end), None)
        if line is None:
            rows.append(_Row(width))
            ends.append(-1)
            line = len(rows) - 1
        ends[line] = rows[line].put(start, name)
    return [str(row) for row in rows]


def render_text(run: Run, width: int = 80, ascii_only: bool = False,
                norm: Normaliser | None = None, names: Mapping[str, str] | None = None,
                legend: bool = True) -> str:
    """The time-space diagram as text: one column per lifeline, one arrow per message, each
    label wrapped under its arrow; no line wider than ``width`` columns."""
    g = ASCII if ascii_only else UNICODE
    shown_names = display_names(run, names, norm)
    shown = [shown_names[name] for name in run.lifelines]
    columns = _columns(len(shown), shown, width)
    x_of = dict(zip(run.lifelines, columns, strict=True))
    lines = _header(shown, columns, width) if shown else []

    def bars() -> _Row:
        row = _Row(width)
        for x in columns:
            row.put(x, g.bar)
        return row

    lines.append(str(bars()))
    for step in run.steps:
        if step.number or len(run.steps) > 1:        # a rule with the step's title
            title = f"step {step.number}: {step.title}" if step.number else "before step 1"
            for text in wrap(title.split(), width - 4):
                lines.append(f"{g.rule * 2} {text} " + g.rule * (width - 4 - cells(text)))
        for m in step.messages:
            lines.append(str(_arrow(m, x_of, bars(), g)))
            start = min(min(x_of[m.src], x_of[m.dst]) + 2, max(0, width - MIN_LABEL))
            if start - 1 in columns:                # keep a lifeline's bar clear of the text
                start += 1
            for text in wrap(label_words(m, norm, "..." if ascii_only else "…"), width - start):
                row = bars()
                if start > 0:
                    row.put(start - 1, " ")
                end = row.put(start, text)
                if end < width:
                    row.put(end, " ")
                lines.append(str(row))
    if legend:
        key = (f"{g.body[REQUEST] * 2}{g.head[REQUEST][0]} request or datagram   "
               f"{g.body[REPLY] * 2}{g.head[REPLY][0]} reply or ack   "
               f"{g.body[PUSH] * 2}{g.head[PUSH][0]} push   "
               f"{g.body[REQUEST] * 2}{g.lost} never received")
        lines += wrap(key.split("   "), width)
    return "\n".join(lines) + "\n"


def _arrow(m: Message, x_of: Mapping[str, int], row: _Row, g: Glyphs) -> _Row:
    """The row of one message's arrow, drawn over the lifelines' bars."""
    a, b = x_of[m.src], x_of[m.dst]
    body = g.body[m.style]
    if a == b:                                  # to itself: a short hook
        row.put(a + 1, body * 2 + (g.lost if m.delivered is False else g.head[m.style][1]))
        return row
    rightwards = b > a
    low, high = min(a, b), max(a, b)
    lifelines = set(x_of.values())
    for x in range(low + 1, high):
        row.put(x, g.cross if x in lifelines else body)
    row.put(a, g.tail[0] if rightwards else g.tail[1])
    head = g.lost if m.delivered is False else g.head[m.style][0 if rightwards else 1]
    row.put(b - 1 if rightwards else b + 1, head)
    return row


# ---- python3 -m protocol.diagram ---------------------------------------------------------------
if __name__ == "__main__":
    # The command line (files, arguments, the terminal's width) is I/O, so it lives outside
    # this I/O-free package, in tools/diagram_cli.py; this guard only keeps SPEC §7's
    # ``python3 -m protocol.diagram TRACE...`` working (tests/test_layering.py allows it).
    from tools.diagram_cli import main
    raise SystemExit(main())
