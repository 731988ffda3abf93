"""protocol/trace.py (SPEC §7): the record format, what a trace shows of a frame, and what every
program writes with --trace-file."""

from __future__ import annotations

import contextlib
import json
import subprocess
from pathlib import Path

import pytest
from conftest import PYTHON, ROOT, Cluster, Tweeter, free_port
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.trace import TraceError, TraceRecord, shown_frame, trace_line


def records(path: Path) -> list[TraceRecord]:
    return [TraceRecord.from_json(line) for line in path.read_text("utf-8").splitlines()]


def test_a_line_is_an_escaped_record_of_its_time() -> None:
    line = trace_line(1.5, "@a", "send", "@a", "@b\x1b[2J", "tweet", "tweet ring=@a")
    record = TraceRecord.from_json(line)
    assert record == TraceRecord(1.5, "@a", "send", "@a", "@b\\x1b[2J", "tweet", "tweet ring=@a")
    assert TraceRecord.from_json(record.to_json()) == record
    assert "\n" not in line


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=200),
                 st.dictionaries(st.sampled_from(["t", "at", "dir", "from", "to", "kind"]),
                                 st.one_of(st.none(), st.integers(), st.text(max_size=5),
                                           st.lists(st.integers(), max_size=2))).map(json.dumps)))
def test_any_line_is_a_record_or_a_trace_error(line: str) -> None:
    with contextlib.suppress(TraceError):       # anything else would fail the test
        TraceRecord.from_json(line)


@pytest.mark.parametrize("line", ['{"t": 1, "at": "a", "dir": "sideways", "from": "a", '
                                  '"to": "b", "kind": "k"}', "[]", '{"t": "soon"}', ""])
def test_bad_records_are_refused(line: str) -> None:
    with pytest.raises(TraceError):
        TraceRecord.from_json(line)


def test_tracker_and_users_trace_every_message_both_ways(cluster: Cluster,
                                                         tmp_path: Path) -> None:
    net = Tweeter(cluster)
    net.tracker("--trace-file", str(tmp_path / "tracker.jsonl"))
    users = {}
    for handle in ("@a", "@b"):
        users[handle] = net.user(handle, "--trace-file", str(tmp_path / f"{handle[1:]}.jsonl"))
        users[handle].register(handle)
    users["@b"].ok("follow @b @a")
    users["@a"].tweet("@a", "traced")
    for user in users.values():
        user.send("quit")
        assert user.wait() == 0
    tracker_records = records(tmp_path / "tracker.jsonl")
    a_records, b_records = records(tmp_path / "a.jsonl"), records(tmp_path / "b.jsonl")
    assert {r.at for r in tracker_records} == {"tracker"}
    # Every user's register request was traced under its address, then renamed to its handle.
    for handle, own in (("@a", a_records), ("@b", b_records)):
        alias = [r for r in own if r.kind == "alias"]
        assert len(alias) == 1 and alias[0].dst == handle
        assert any(r.kind == "alias" and r.dst == handle for r in tracker_records)
    # The tweet: a tracker request, a ring hop each way with acks, end-tweet.
    kinds_a = [(r.dir, r.kind, r.dst if r.dir == "send" else r.src) for r in a_records
               if r.at == "@a"]
    for step in [("send", "tweet", "tracker"), ("send", "tweet", "@b"), ("recv", "ack", "@b"),
                 ("recv", "tweet", "@b"), ("send", "ack", "@b"), ("send", "end-tweet", "tracker"),
                 ("recv", "SUCCESS", "tracker")]:
        assert step in kinds_a, step
    # What one side sent, the other received: requests and datagrams match up in count.
    a_address = next(r.src for r in a_records if r.kind == "alias")   # its name before @a
    sent_to_tracker = [r.kind for r in a_records if r.dir == "send" and r.dst == "tracker"]
    got_from_a = [r.kind for r in tracker_records
                  if r.dir == "recv" and r.src in ("@a", a_address)]
    assert got_from_a == sent_to_tracker                 # the same requests, in the same order
    b_got = [r.kind for r in b_records if r.dir == "recv" and r.src == "@a"]
    a_sent = [r.kind for r in a_records if r.dir == "send" and r.dst == "@b"]
    assert sorted(b_got) == sorted(a_sent)
    assert all("pw-" not in r.summary for r in tracker_records + a_records + b_records)


def test_ttweet_programs_trace_their_exchange(cluster: Cluster, tmp_path: Path) -> None:
    port = free_port()
    log, server_trace, client_trace = (tmp_path / name for name in
                                       ("log.txt", "srv.jsonl", "cl.jsonl"))
    server = cluster.start(["ttweetsrv.py", str(port), "--log", str(log), "--trace-file",
                            str(server_trace)], "ttweetsrv")
    server.expect(r"listening on port")
    for args in (["-u", "127.0.0.1", str(port), "hello"], ["-d", "127.0.0.1", str(port)]):
        done = subprocess.run([PYTHON, "ttweetcl.py", *args, "--log", str(log),
                               "--trace-file", str(client_trace)], cwd=ROOT,
                              capture_output=True, text=True, timeout=15)
        assert done.returncode == 0, done.stderr
    server.stop()
    server_records, client_records = records(server_trace), records(client_trace)
    assert [(r.dir, r.kind) for r in server_records] == [
        ("recv", "UPLOAD"), ("send", "OK"), ("recv", "DOWNLOAD"), ("send", "OK")]
    assert [(r.dir, r.kind) for r in client_records] == [
        ("send", "UPLOAD"), ("recv", "OK"), ("send", "DOWNLOAD"), ("recv", "OK")]
    # Both sides name each client by the same lifeline.
    assert {r.at for r in client_records} == {r.src for r in server_records if r.dir == "recv"}


# ---- what the tracker's trace shows of a frame (SPEC §4: never a password) ---------------------
def spelled(key: str, escapes: list[bool]) -> str:
    """``key`` as a JSON string literal, each character either itself or a \\u escape."""
    return '"' + "".join(f"\\u{ord(ch):04x}" if escape else ch
                         for ch, escape in zip(key, escapes, strict=False)) \
        + key[len(escapes):] + '"'


@settings(max_examples=400, deadline=None)
@given(secret=st.text(alphabet="QWXZJK", min_size=6, max_size=40),
       escapes=st.lists(st.booleans(), max_size=8),
       ascii_only=st.booleans(), cut=st.integers(min_value=1, max_value=400),
       before=st.booleans())
def test_no_password_is_shown_however_spelled_or_cut(secret: str, escapes: list[bool],
                                                     ascii_only: bool, cut: int,
                                                     before: bool) -> None:
    value = json.dumps(secret, ensure_ascii=ascii_only)
    fields = ['"id": 7', '"cmd": "login"', '"handle": "@alice"',
              f"{spelled('password', escapes)}: {value}", '"key": "AAAA"']
    if before:                                  # the password first, then the rest
        fields.insert(1, fields.pop(3))
    frame = ("{" + ", ".join(fields) + "}\n").encode()
    for shown in (shown_frame(frame), shown_frame(frame[:cut]), shown_frame(frame[:80])):
        assert secret[:3] not in shown, (frame, shown)


def test_a_frame_without_a_password_is_shown_as_it_came() -> None:
    frame = b'{"id": 3, "cmd": "say", "text": "my password is long"}\n'
    assert shown_frame(frame) == frame.decode().rstrip("\n")
    assert shown_frame(b'\xff\xfe{"id": 3') == '\\xff\\xfe{"id": 3'
    assert shown_frame(b'{"id": 1, "cmd": "auth", "password": "s3cret"}') == \
        '{"id": 1, "cmd": "auth", "password": "***"}'
    assert shown_frame(b'{"id": 1, "cmd": "register", "p\\u0061ssword": "s3cret", "x": 1}') == \
        '{"id": 1, "cmd": "register", "password": "***", "x": 1}'
    assert shown_frame(b'{"id": 1, "password": "s3c') == '{"id": 1, "password": "***"…'
    assert shown_frame(b'{"id": 1, "p\\u00') == '{"id": 1, …'
    assert shown_frame(b"[" * 100_000) == "[" * 100_000      # too deep to parse: shown as text
