"""Tests of protocol.diagram: trace records in, arrows and Mermaid text out; then a real run.

The unit tests build records by hand.  The integration test runs a tracker and three users, each
writing its own ``--trace-file``, and checks that the diagram draws exactly the messages they
exchanged, once each, in order.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections import Counter
from pathlib import Path

import pytest
from conftest import PYTHON, ROOT, Cluster, Tweeter

from protocol.diagram import (
    LABEL_MAX,
    PUSH,
    REPLY,
    REQUEST,
    Arrow,
    DiagramError,
    aliases,
    arrow_style,
    label_of,
    main,
    merge,
    parse_lines,
    read_traces,
    render,
)
from protocol.trace import TraceRecord


def rec(t: float, at: str, direction: str, src: str, dst: str, kind: str,
        summary: str = "") -> TraceRecord:
    return TraceRecord(t, at, direction, src, dst, kind, summary)


def send(t: float, src: str, dst: str, kind: str, summary: str = "") -> TraceRecord:
    return rec(t, src, "send", src, dst, kind, summary)


def recv(t: float, src: str, dst: str, kind: str, summary: str = "") -> TraceRecord:
    return rec(t, dst, "recv", src, dst, kind, summary)


def hops(arrows: list[Arrow]) -> list[tuple[str, str, str]]:
    return [(a.src, a.dst, a.kind) for a in arrows]


# ---- reading ---------------------------------------------------------------------------------
def test_parse_lines_reads_records_and_skips_blank_lines() -> None:
    line = send(1.5, "@a", "tracker", "follow", "follow @a @b").to_json()
    records = parse_lines([line, "", "   \n", line])
    assert len(records) == 2
    assert records[0] == TraceRecord(1.5, "@a", "send", "@a", "tracker", "follow", "follow @a @b")


@pytest.mark.parametrize("bad", ["{not json", "[1, 2]", '{"t": 1}',
                                 '{"t": 1, "at": "a", "dir": "sideways", "from": "a", '
                                 '"to": "b", "kind": "k"}'])
def test_a_bad_line_names_its_file_and_line(bad: str) -> None:
    good = send(1, "@a", "tracker", "online").to_json()
    with pytest.raises(DiagramError, match=r"^run\.jsonl:2: "):
        parse_lines([good, bad], "run.jsonl")


def test_read_traces_reports_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DiagramError, match="cannot read"):
        read_traces([str(tmp_path / "nope.jsonl")])


# ---- aliases ---------------------------------------------------------------------------------
def test_the_first_alias_of_a_name_wins_and_chains_are_followed() -> None:
    records = [send(3, "127.0.0.1:1", "@late", "alias"),
               send(1, "127.0.0.1:1", "@alice", "alias"),
               send(2, "@alice", "@ally", "alias"),
               send(4, "x", "y", "alias"), send(5, "y", "x", "alias")]
    names = aliases(records)
    assert names["127.0.0.1:1"] == "@ally"
    assert names["@alice"] == "@ally"
    assert names["x"] in ("x", "y") and names["y"] in ("x", "y")     # a cycle ends


def test_an_alias_renames_a_lifeline_in_every_record() -> None:
    records = [send(1, "tracker", "127.0.0.1:9", "push:welcome"),
               rec(2, "127.0.0.1:9", "send", "127.0.0.1:9", "tracker", "register"),
               send(3, "tracker", "@alice", "SUCCESS"),
               send(3.5, "tracker", "127.0.0.1:9", "push:x"),
               rec(4, "127.0.0.1:9", "send", "127.0.0.1:9", "@alice", "alias")]
    arrows = merge(records)
    assert hops(arrows) == [("tracker", "@alice", "push:welcome"),
                            ("@alice", "tracker", "register"),
                            ("tracker", "@alice", "SUCCESS"),
                            ("tracker", "@alice", "push:x")]
    assert all(a.kind != "alias" for a in arrows)


# ---- merging ---------------------------------------------------------------------------------
def test_a_message_traced_at_both_ends_is_drawn_once_from_its_send_record() -> None:
    records = [send(1.0, "@a", "tracker", "follow", "follow {'follower': '@a'}"),
               recv(1.1, "@a", "tracker", "follow", '{"id":2,"cmd":"follow"}'),
               send(1.2, "tracker", "@a", "SUCCESS", '{"re":2,"status":"SUCCESS","message":"ok"}'),
               recv(1.3, "tracker", "@a", "SUCCESS", '{"re":2}')]
    arrows = merge(records)
    assert hops(arrows) == [("@a", "tracker", "follow"), ("tracker", "@a", "SUCCESS")]
    assert arrows[0].t == 1.0 and arrows[1].t == 1.2


def test_a_recv_record_is_used_when_its_sender_wrote_no_trace() -> None:
    # Only the tracker's file: what the users sent is known from the tracker's recv records.
    records = [recv(1, "@a", "tracker", "online", '{"id":1,"cmd":"online"}'),
               send(2, "tracker", "@a", "SUCCESS", '{"re":1,"status":"SUCCESS","message":"1"}'),
               recv(3, "127.0.0.1:5", "tracker", "BAD_FRAME", "garbage")]
    assert hops(merge(records)) == [("@a", "tracker", "online"), ("tracker", "@a", "SUCCESS"),
                                    ("127.0.0.1:5", "tracker", "BAD_FRAME")]


def test_arrows_are_in_time_order_across_files_and_ties_keep_input_order() -> None:
    tracker = [send(2.0, "tracker", "@a", "SUCCESS"), send(5.0, "tracker", "@b", "push:say")]
    alice = [send(1.0, "@a", "tracker", "say"), send(3.0, "@a", "@b", "tweet"),
             send(3.0, "@a", "@c", "tweet")]
    assert hops(merge(tracker + alice)) == [
        ("@a", "tracker", "say"), ("tracker", "@a", "SUCCESS"), ("@a", "@b", "tweet"),
        ("@a", "@c", "tweet"), ("tracker", "@b", "push:say")]


def test_no_acks_leaves_the_acks_out() -> None:
    records = [send(1, "@a", "@b", "setup"), send(2, "@b", "@a", "ack", "ack seq=1"),
               send(3, "@a", "@b", "tweet")]
    assert [a.kind for a in merge(records)] == ["setup", "ack", "tweet"]
    assert [a.kind for a in merge(records, acks=False)] == ["setup", "tweet"]


@pytest.mark.parametrize(("kind", "style"), [
    ("follow", REQUEST), ("tweet", REQUEST), ("setup", REQUEST), ("BAD_FRAME", REQUEST),
    ("SUCCESS", REPLY), ("FAILURE UNKNOWN_HANDLE", REPLY), ("ack", REPLY),
    ("push:welcome", PUSH), ("push:presence", PUSH)])
def test_arrow_styles(kind: str, style: str) -> None:
    assert arrow_style(kind) == style


# ---- labels ----------------------------------------------------------------------------------
@pytest.mark.parametrize(("kind", "summary", "label"), [
    ("SUCCESS", '{"re":3,"status":"SUCCESS","message":"@bob now follows @alice"}',
     "SUCCESS: @bob now follows @alice"),
    ("FAILURE UNKNOWN_HANDLE", '{"re":3,"status":"FAILURE","code":"UNKNOWN_HANDLE",'
     '"message":"@zed is not registered"}\n', "FAILURE UNKNOWN_HANDLE: @zed is not registered"),
    ("push:presence", '{"push":"presence","handle":"@a","online":false}',
     "push:presence handle=@a online=false"),
    ("follow", '{"id":4,"cmd":"follow","follower":"@b","followee":"@a"}',
     "follow follower=@b followee=@a"),
    ("follow", "follow {'follower': '@b', 'followee': '@a'}", "follow follower=@b followee=@a"),
    ("setup", "setup ring=@a left=@a right=@c seq=7", "setup ring=@a left=@a right=@c seq=7"),
    ("ack", "ack seq=7", "ack seq=7"),
    ("logout", "logout {}", "logout"),
])
def test_labels_show_the_kind_and_the_informative_part(kind: str, summary: str,
                                                       label: str) -> None:
    assert label_of(kind, summary) == label


def test_labels_are_short_and_mermaid_safe() -> None:
    nasty = 'say {"text": "a;b #tag <b>x</b>\\nnext line ' + "y" * 200 + '"}'
    records = [send(1, "@a", "tracker", "say", nasty),
               send(2, "tracker", "@b", "push:say",
                    json.dumps({"push": "say", "sender": "@a", "text": "1;2\n#3 <4>\x1b[31m"}))]
    arrows = merge(records)
    assert all(len(a.label) <= LABEL_MAX for a in arrows)
    text = render(arrows)
    body = [line for line in text.splitlines() if "->>" in line or "-)" in line]
    assert len(body) == 2 and text.count("\n") == 6           # header, 3 participants, 2 arrows
    for line in body:
        message = line.split(": ", 1)[1]
        assert not re.search(r"[;#<>\x00-\x1f]", re.sub(r"#\d+;", "", message)), line
    assert "#59;" in body[0] and "#35;" in body[1] and "#60;" in body[1]


# ---- rendering -------------------------------------------------------------------------------
def test_render_declares_participants_in_order_of_first_appearance() -> None:
    arrows = merge([send(1, "@bob", "tracker", "online"),
                    send(2, "tracker", "@bob", "SUCCESS", '{"status":"SUCCESS","message":"1"}'),
                    send(3, "@bob", "@alice", "message", "message id=1 sender=@bob seq=9"),
                    send(4, "@alice", "@bob", "ack", "ack seq=9"),
                    send(5, "tracker", "@alice", "push:say", '{"push":"say","sender":"@bob"}')])
    assert render(arrows).splitlines() == [
        "sequenceDiagram",
        "    participant P1 as @bob",
        "    participant P2 as tracker",
        "    participant P3 as @alice",
        "    P1->>P2: online",
        "    P2-->>P1: SUCCESS: 1",
        "    P1->>P3: message id=1 sender=@bob seq=9",
        "    P3-->>P1: ack seq=9",
        "    P2-)P3: push:say sender=@bob",
    ]


def test_render_of_nothing_is_an_empty_diagram() -> None:
    assert render([]) == "sequenceDiagram\n"


# ---- command line ----------------------------------------------------------------------------
def test_main_writes_the_diagram_to_a_file(tmp_path: Path) -> None:
    trace = tmp_path / "a.jsonl"
    trace.write_text(send(1, "@a", "@b", "setup").to_json() + "\n"
                     + send(2, "@b", "@a", "ack").to_json() + "\n", encoding="utf-8")
    out = tmp_path / "out.mmd"
    assert main([str(trace), "--no-acks", "-o", str(out)]) == 0
    assert out.read_text(encoding="utf-8").splitlines()[-1] == "    P1->>P2: setup"


def test_cli_bad_input_is_one_line_on_stderr_and_exit_2(tmp_path: Path) -> None:
    trace = tmp_path / "bad.jsonl"
    trace.write_text("{oops\n", encoding="utf-8")
    for args in ([str(trace)], [str(tmp_path / "missing.jsonl")], []):
        done = subprocess.run([PYTHON, "-m", "protocol.diagram", *args], cwd=ROOT,
                              capture_output=True, text=True, timeout=30, check=False)
        assert done.returncode == 2, done
        assert "Traceback" not in done.stderr and done.stdout == ""
        assert done.stderr.strip()


# ---- a real run --------------------------------------------------------------------------------
def raw_records(paths: list[Path]) -> list[dict]:
    return [json.loads(line) for path in paths
            for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def test_the_diagram_of_a_real_run_shows_each_message_once_in_order(cluster: Cluster,
                                                                      tmp_path: Path) -> None:
    files = {name: tmp_path / f"{name.strip('@')}.jsonl" for name in ("tracker", "@a", "@b", "@c")}
    net = Tweeter(cluster)
    tracker = net.tracker("-q", "--trace-file", str(files["tracker"]))
    users = {}
    for handle in ("@a", "@b", "@c"):     # a generous hop timeout: no resends on a busy machine
        users[handle] = net.user(handle, "-q", "--hop-timeout", "2",
                                 "--trace-file", str(files[handle]))
        users[handle].register(handle)
    users["@b"].ok("follow @b @a")
    users["@c"].ok("follow @c @a")
    users["@a"].expect(r"you were followed by @c")
    users["@a"].tweet("@a", "hello ring; #one <two>")
    users["@c"].expect(r"^tweet #1 by @a via @b: ")
    for user in users.values():
        user.send("quit")
        assert user.wait() == 0
    tracker.stop()

    arrows = merge(read_traces([str(path) for path in files.values()]))

    # Independently: every message is one send record, named by the aliases, in time order.
    raw = raw_records(list(files.values()))
    names: dict[str, str] = {}
    for r in sorted((r for r in raw if r["kind"] == "alias"), key=lambda r: r["t"]):
        names.setdefault(r["from"], r["to"])
    sends = sorted((r for r in raw if r["dir"] == "send" and r["kind"] != "alias"),
                   key=lambda r: r["t"])
    expected = [(names.get(r["from"], r["from"]), names.get(r["to"], r["to"]), r["kind"])
                for r in sends]
    assert hops(arrows) == expected
    assert {a.src for a in arrows} | {a.dst for a in arrows} == {"tracker", "@a", "@b", "@c"}

    # Everything received was drawn, and nothing twice: the receivers' records are a sub-multiset.
    received = Counter((names.get(r["from"], r["from"]), names.get(r["to"], r["to"]), r["kind"])
                       for r in raw if r["dir"] == "recv")
    assert not received - Counter(hops(arrows))
    assert len(set(arrows)) == len(arrows)

    # The tweet's hops, in ring order, and its setup before it.
    ring = [(a.src, a.dst) for a in arrows if a.kind == "tweet" and "tracker" not in (a.src, a.dst)]
    assert ring == [("@a", "@b"), ("@b", "@c"), ("@c", "@a")]
    kinds = [a.kind for a in arrows if "tracker" not in (a.src, a.dst)]
    assert kinds.index("setup") < kinds.index("tweet")

    # Each reply follows its request, per user; nothing is left unanswered.
    pending: dict[str, int] = Counter()
    for a in arrows:
        if a.dst == "tracker":
            pending[a.src] += 1
        elif a.src == "tracker" and a.style == REPLY:
            assert pending[a.dst] > 0, f"a reply to {a.dst} before its request: {a}"
            pending[a.dst] -= 1
    assert not +pending

    # The rendered text says the same, arrow by arrow.
    text = render(arrows)
    ids = dict(re.findall(r"^    participant (P\d+) as (.+)$", text, re.M))
    drawn = re.findall(r"^    (P\d+)(->>|-->>|-\))(P\d+): (.*)$", text, re.M)
    assert [(ids[s], ids[d], style) for s, style, d, _ in drawn] == \
        [(a.src, a.dst, a.style) for a in arrows]
    assert "tweet handle=@a text=hello ring#59; #35;one #60;two#62;" in text
