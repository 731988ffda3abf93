"""The tracker stays fair under abuse (SPEC §6, issue 12): its connection layer, with real
processes on 127.0.0.0/8 (another source address is another "host").

Nothing here measures time: each test asserts that every command is answered, in order, while a
party misbehaves (a console or trace file nobody reads, sessions that never read, one address
holding or churning connections).  How fast is for ``make bench``.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import (
    DEFAULT_TIMEOUT,
    MANY_CONNECTIONS,
    PYTHON,
    ROOT,
    SAMPLE_KEY,
    Cluster,
    RawClient,
    Tweeter,
)

import tracker
from protocol import limits
from protocol.trace import TraceRecord
from protocol.tracker_core import TrackerCore

NO_FLOOD = ["--flood-burst", "1000000", "--flood-rate", "1000000"]
TEXT = "x" * 140        # a say as long as they come: each push is about 200 bytes


def register(client: RawClient, handle: str) -> None:
    reply = client.register(handle, [1, 2, 3])
    assert reply["status"] == "SUCCESS", reply


def pipelined(client: RawClient, cmd: str, count: int, batch: int = 100) -> list[int]:
    """Send ``count`` requests, ``batch`` at a time, reading the replies as they come; the ids
    the replies name, in the order they arrived."""
    answered: list[int] = []
    for start in range(0, count, batch):
        ids = range(client.next_id, client.next_id + min(batch, count - start))
        client.send_raw(b"".join(json.dumps({"id": i, "cmd": cmd}).encode() + b"\n"
                                 for i in ids))
        client.next_id += len(ids)
        for _ in ids:
            reply = client.read()
            assert reply["status"] == "SUCCESS", reply
            answered.append(reply["re"])
    return answered


def read_until(fd: int, pattern: bytes, timeout: float = DEFAULT_TIMEOUT) -> bytes:
    """Read ``fd`` (a pipe or FIFO) until ``pattern`` has been read; everything read."""
    data = b""
    deadline = time.monotonic() + timeout
    while pattern not in data:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"no {pattern!r} within {timeout:g}s; read {data[-500:]!r}"
        if select.select([fd], [], [], remaining)[0]:
            chunk = os.read(fd, 1 << 16)
            assert chunk, f"the output ended before {pattern!r}; read {data[-500:]!r}"
            data += chunk
    return data


@pytest.fixture
def unread_tracker() -> Iterator[tuple[subprocess.Popen, int]]:
    """A tracker whose standard output is a pipe that nobody reads after its first line."""
    popen = subprocess.Popen(
        [PYTHON, "tracker.py", "0", "--host", "127.0.0.1", "--db", ":memory:", *NO_FLOOD],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        assert popen.stdout is not None
        first = read_until(popen.stdout.fileno(), b"\n")
        port = int(first.split(b"listening on 127.0.0.1:")[1].split()[0])
        yield popen, port
    finally:
        popen.kill()
        popen.wait(DEFAULT_TIMEOUT)
        if popen.stdout:
            popen.stdout.close()


# ---- output never blocks service --------------------------------------------------------------
def test_a_console_nobody_reads_does_not_stop_the_tracker(unread_tracker) -> None:
    popen, port = unread_tracker
    client = RawClient(port)
    # 3000 commands, 6000 trace lines: far beyond the pipe (64 KiB) and the line queue.
    assert pipelined(client, "query-handles", 3000) == list(range(1, 3001))
    # Once the console reads again, the tracker says how much it dropped meanwhile.
    assert popen.stdout is not None
    read_until(popen.stdout.fileno(), b" lines were dropped: the output was not read]")
    client.close()


def test_a_trace_file_nobody_drains_does_not_stop_the_tracker(cluster: Cluster,
                                                             tmp_path: Path) -> None:
    fifo = tmp_path / "trace.fifo"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)     # there, but it reads nothing yet
    try:
        net = Tweeter(cluster)
        net.tracker("-q", "--trace-file", str(fifo), *NO_FLOOD)
        client = net.client()
        # 6000 records: far beyond what the FIFO holds (64 KiB), all answered meanwhile.
        assert pipelined(client, "query-handles", 3000) == list(range(1, 3001))
        data = read_until(reader, b'\\"re\\":3000')
        records = [TraceRecord.from_json(line) for line in data.decode().splitlines()[:-1]]
        assert len(records) > 1000 and all(record.at == "tracker" for record in records)
    finally:
        os.close(reader)


# ---- a send queue per connection ---------------------------------------------------------------
def test_sessions_that_never_read_do_not_hold_up_the_others(cluster: Cluster) -> None:
    net = Tweeter(cluster)
    net.tracker("-q", *NO_FLOOD, *MANY_CONNECTIONS)

    def joined(handle: str, client: RawClient) -> RawClient:
        register(client, handle)        # connected just before: 64 hashes take a while
        return client

    # Online, so every say is pushed to them; they never read.
    slow = [joined(f"@slow{letter}", RawClient(net.port, receive_buffer=4096))
            for letter in "abc"]
    chatty = [joined(f"@chatty{chr(97 + index // 26)}{chr(97 + index % 26)}", net.client())
              for index in range(60)]
    legit = joined("@legit", net.client())
    for round_number in range(20):
        for client in chatty:
            client.send_raw(json.dumps({"id": client.next_id, "cmd": "say",
                                        "text": TEXT}).encode() + b"\n")
            client.next_id += 1
        # Between rounds of 60 says (3,720 pushes), the legitimate session is answered.
        reply = legit.call("heartbeat")
        assert (reply["re"], reply["status"]) == (legit.next_id - 1, "SUCCESS"), reply
        for client in chatty:
            reply = client.read()
            assert (reply["re"], reply["status"]) == (client.next_id - 1, "SUCCESS"), reply
            client.pushes.clear()
        legit.pushes.clear()
        assert round_number == 19 or reply["count"] == 63       # all of them still online
    assert legit.call("online")["count"] == 64
    for client in slow:             # held open (and unread) until here
        client.close()


def test_a_session_past_its_send_queue_is_closed_with_a_reason(cluster: Cluster) -> None:
    net = Tweeter(cluster)
    proc = net.tracker("-q", "--sendq-max", "4096", *NO_FLOOD)
    slow = RawClient(net.port, receive_buffer=4096)
    register(slow, "@slow")
    watcher, talker = net.client(), net.client()
    register(watcher, "@watcher")
    register(talker, "@talker")
    assert watcher.call("follow", follower="@watcher", followee="@slow")["status"] == "SUCCESS"
    for _ in range(20_000):         # until @slow's follower hears that it went offline
        assert talker.call("say", text=TEXT)["status"] == "SUCCESS"
        push = watcher.read_push()                      # the watcher reads as it goes
        if push["push"] == "presence":
            break
        assert push["push"] == "say"
    assert (push["handle"], push["online"]) == ("@slow", False)
    proc.expect(r"-- 127\.0\.0\.1:\d+ SENDQ_EXCEEDED: \d+ bytes were waiting \(at most 4096\)")
    # What @slow finds when it reads at last: whole frames, then the reason, then the end.
    slow.sock.settimeout(DEFAULT_TIMEOUT)
    frames = []
    while line := slow.next_line():
        frames.append(json.loads(line))
    assert frames[-1]["code"] == "SENDQ_EXCEEDED" and frames[-1]["re"] is None, frames[-1]
    assert all("push" in frame for frame in frames[:-1])      # "followed", then says
    assert talker.call("say", text="still here")["count"] == 1      # everyone else is served


# ---- per-address limits -------------------------------------------------------------------------
def test_one_address_at_its_limit_does_not_stop_another(cluster: Cluster) -> None:
    net = Tweeter(cluster)
    net.tracker("--register-timeout", "3600")
    held = [RawClient(net.port, source="127.0.0.2")
            for _ in range(limits.CONNECTIONS_PER_ADDRESS)]
    refused = RawClient(net.port, source="127.0.0.2", welcome=False)
    reply = refused.read()
    assert (reply["re"], reply["status"], reply["code"]) == (None, "FAILURE",
                                                            "TOO_MANY_CONNECTIONS"), reply
    assert refused.closed_by_peer()
    users = net.users("@alice", "@bob")         # user.py, from 127.0.0.1
    users["@bob"].ok("follow @bob @alice")
    assert users["@alice"].tweet("@alice", "hello from another host")["reached"] == "1"
    users["@bob"].expect(r"^tweet #\d+ by @alice via @alice: hello from another host$")
    held[0].close()                              # 127.0.0.2 may connect again once it has room
    assert net.tracker_proc is not None
    net.tracker_proc.expect(r"-- 127\.0\.0\.2:\d+ closed")
    for client in [*held[1:], refused]:
        client.close()


def test_an_address_that_connects_too_fast_is_refused_and_others_are_not(
        cluster: Cluster) -> None:
    net = Tweeter(cluster)
    net.tracker("--connect-burst", "3", "--connect-rate", "0.01")
    for _ in range(3):
        RawClient(net.port, source="127.0.0.3").close()
    refused = RawClient(net.port, source="127.0.0.3", welcome=False)
    reply = refused.read()
    assert (reply["status"], reply["code"]) == ("FAILURE", "CONNECTING_TOO_FAST"), reply
    assert refused.closed_by_peer()
    refused.close()
    assert net.client().call("query-handles")["status"] == "SUCCESS"     # 127.0.0.1


def test_refusals_of_one_address_are_summarised_not_printed_one_by_one(
        cluster: Cluster) -> None:
    net = Tweeter(cluster)
    proc = net.tracker("--connect-burst", "1", "--connect-rate", "0.001")
    admitted = RawClient(net.port, source="127.0.0.4")
    attempts = 200
    for _ in range(attempts):
        client = RawClient(net.port, source="127.0.0.4", welcome=False)
        assert client.read()["code"] == "CONNECTING_TOO_FAST"
        client.close()
    # Each refusal is counted in exactly one line: shown itself, or in "(and N more like it)".
    pattern = r"-- 127\.0\.0\.4:\d+ refused: CONNECTING_TOO_FAST(?: \(and (\d+) more like it\))?$"
    counted = lines = 0
    while counted < attempts:
        match = proc.expect(pattern)
        more = int(match.group(1)) if match.group(1) else 0
        counted, lines = counted + 1 + more, lines + 1
    assert counted == attempts and lines < attempts / 4
    admitted.close()


def test_max_sessions_caps_connections_and_nothing_else(cluster: Cluster) -> None:
    net = Tweeter(cluster)
    proc = net.tracker("--max-sessions", "3")
    clients = [net.client() for _ in range(3)]
    full = RawClient(net.port, welcome=False)
    reply = full.read()
    assert (reply["status"], reply["code"]) == ("FAILURE", "SERVER_FULL"), reply
    assert full.closed_by_peer()
    full.close()
    for client, handle in zip(clients, ("@a", "@b", "@c"), strict=True):
        register(client, handle)                 # every connection may log in: one cap
    port = clients[0].sock.getsockname()[1]
    clients[0].close()
    proc.expect(rf"-- 127\.0\.0\.1:{port} closed")
    for _ in range(50):                          # its room is given back as the thread ends
        again = RawClient(net.port, welcome=False)
        first = again.next_frame()
        if first.get("push") == "welcome":
            break
        assert first["code"] == "SERVER_FULL"
        again.close()
    else:
        raise AssertionError("the closed connection's room was never given back")
    register(again, "@d")
    again.close()


def test_a_registration_waiting_for_its_hash_is_not_timed_out(cluster: Cluster) -> None:
    net = Tweeter(cluster)
    net.tracker("-q", "--register-timeout", "1", *MANY_CONNECTIONS)
    clients = [net.client() for _ in range(30)]
    for index, client in enumerate(clients):    # 30 scrypt hashes, a few at a time: seconds
        client.send_raw(json.dumps({
            "id": 1, "cmd": "register", "handle": f"@hash{chr(97 + index // 26)}"
            f"{chr(97 + index % 26)}", "ip": "127.0.0.1", "ports": [1, 2, 3], "key": SAMPLE_KEY,
            "password": "a password"}).encode() + b"\n")
    for client in clients:                      # the time spent hashing is the tracker's
        reply = client.read()
        assert (reply["re"], reply["status"]) == (1, "SUCCESS"), reply


# ---- accounts: throttling nobody can turn against the owner ------------------------------------
def login_from(client: RawClient, handle: str, password: str) -> dict:
    ip = client.sock.getsockname()[0]
    return client.call("login", handle=handle, ip=ip, ports=[61021, 61022, 61023],
                       key=SAMPLE_KEY, password=password)


def test_guesses_from_one_address_do_not_stop_the_owner_from_another(cluster: Cluster) -> None:
    net = Tweeter(cluster)
    net.tracker("-q", *NO_FLOOD)            # flood control is per session: not what is tested
    owner = net.client()
    assert owner.register("@owner", [61031, 61032, 61033], password="the right one")["status"] \
        == "SUCCESS"
    assert owner.call("logout")["status"] == "SUCCESS"
    attacker = RawClient(net.port, source="127.0.0.2")
    codes: list[str] = []
    for _ in range(10):
        for _ in range(5):                  # guesses as fast as the tracker answers them
            codes.append(login_from(attacker, "@owner", "a guess")["code"])
        reply = login_from(owner, "@owner", "the right one")
        assert reply["status"] == "SUCCESS", reply          # every time
        assert owner.call("logout")["status"] == "SUCCESS"
    assert set(codes) == {"WRONG_PASSWORD", "THROTTLED"} and codes[0] == "WRONG_PASSWORD"
    attacker.close()


def test_one_address_registering_at_its_limit_does_not_stop_another(cluster: Cluster) -> None:
    net = Tweeter(cluster)
    net.tracker("-q", "--registrations-per-address", "2")
    busy = [RawClient(net.port, source="127.0.0.2") for _ in range(3)]
    codes = [client.register(handle, [61041 + 3 * n, 61042 + 3 * n, 61043 + 3 * n],
                             ip="127.0.0.2").get("code", "ok")
             for n, (client, handle) in enumerate(zip(busy, ("@ba", "@bb", "@bc"), strict=True))]
    assert codes == ["ok", "ok", "THROTTLED"]
    register(net.client(), "@local")        # 127.0.0.1 has a budget of its own
    for client in busy:
        client.close()


# ---- smaller defects ---------------------------------------------------------------------------
def test_a_password_that_is_not_text_gets_an_answer(net: Tweeter) -> None:
    client = net.client()
    for cmd in ("register", "login"):
        client.send_raw(json.dumps({"id": client.next_id, "cmd": cmd, "handle": "@odd",
                                    "ip": "127.0.0.1", "ports": [1, 2, 3], "key": SAMPLE_KEY,
                                    "password": "\ud800"}).encode() + b"\n")
        reply = client.read()
        assert (reply["re"], reply["code"]) == (client.next_id, "BAD_PASSWORD"), reply
        client.next_id += 1
    assert client.call("query-handles")["status"] == "SUCCESS"     # the connection lives on
    assert net.tracker_proc is not None
    net.tracker_proc.assert_no_traceback()


def test_no_password_reaches_the_console_or_the_trace_file(cluster: Cluster,
                                                           tmp_path: Path) -> None:
    net = Tweeter(cluster)
    trace_file = tmp_path / "tracker.jsonl"
    proc = net.tracker("--trace-file", str(trace_file))
    secret = "Zebra-Secret-Quokka-" * 3
    client = net.client()
    client.send_raw(('{"id": 1, "cmd": "register", "handle": "@spelled", "ip": "127.0.0.1", '
                     f'"ports": [1, 2, 3], "key": "{SAMPLE_KEY}", '
                     f'"p\\u0061ssword": "{secret}"}}\n').encode())
    assert client.read()["status"] == "SUCCESS"
    for prefix in ('{"id": 2, "cmd": "login", "password": "', '{"id": 3, "password": "Ze'):
        big = net.client()                       # cut at 80 bytes for the trace: in the secret
        big.send_raw((prefix + secret + "x" * 5000).encode())
        assert big.read()["code"] == "TOO_LARGE"
        big.close()
    proc.expect(r'<- 127\.0\.0\.1:\d+ \{"id": 3, "password": "\*\*\*"…')
    proc.stop()
    proc.wait_eof()
    summaries = "\n".join(TraceRecord.from_json(line).summary
                          for line in trace_file.read_text("utf-8").splitlines())
    for text in (proc.text(), summaries):
        assert "Zebra" not in text, [line for line in text.splitlines() if "Zebra" in line]
        assert text.count('"password": "***"') == 3


def test_trace_files_escape_controls_and_bidi_overrides(cluster: Cluster,
                                                       tmp_path: Path) -> None:
    net = Tweeter(cluster)
    trace_file = tmp_path / "tracker.jsonl"
    proc = net.tracker("--trace-file", str(trace_file))
    client = net.client()
    frame = json.dumps({"id": 1, "cmd": "say", "text": "a\x9bb\u202ec\u2067d"},
                       ensure_ascii=False).encode() + b"\n"       # raw UTF-8, not \u escapes
    client.send_raw(frame)
    assert client.read()["code"] == "NOT_LOGGED_IN"
    proc.expect(r"<- 127\.0\.0\.1:\d+ .*a\\x9bb\\u202ec\\u2067d")
    proc.stop()
    text = trace_file.read_text("utf-8")
    assert "a\\\\x9bb\\\\u202ec\\\\u2067d" in text       # the escapes, as JSON writes them
    assert not any(0x80 <= ord(ch) < 0xA0 or 0x202A <= ord(ch) <= 0x202E
                   or 0x2066 <= ord(ch) <= 0x2069 for ch in text)


# ---- the connection layer in this process -------------------------------------------------------
def test_a_request_the_core_fails_on_gets_internal_error_and_the_session_goes_on() -> None:
    core = TrackerCore(wall_clock=time.time)
    real_execute = core.execute

    def execute(session, request, now):
        if request.cmd == "trending":
            raise RuntimeError("a bug")
        return real_execute(session, request, now)

    core.execute = execute                     # type: ignore[method-assign]
    server = tracker.TrackerServer(("127.0.0.1", 0), core, tracker.Trace(quiet=True))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        client = RawClient(server.server_address[1])
        reply = client.call("trending")
        assert (reply["re"], reply["status"], reply["code"]) == (1, "FAILURE",
                                                                "INTERNAL_ERROR"), reply
        assert client.call("query-handles")["status"] == "SUCCESS"
        client.close()
    finally:
        server.shutdown()
        server.server_close()


def test_admission_counts_each_address_and_forgets_quiet_ones() -> None:
    now = [0.0]
    admission = tracker.Admission(
        tracker.ConnectionLimits(max_sessions=5, per_address=2, connect_burst=3,
                                 connect_rate=1.0), clock=lambda: now[0])
    assert admission.admit("10.0.0.1") is None and admission.admit("10.0.0.1") is None
    assert admission.admit("10.0.0.1").code == "TOO_MANY_CONNECTIONS"
    admission.release("10.0.0.1")
    assert admission.admit("10.0.0.1") is None                 # the third of its burst
    admission.release("10.0.0.1")
    assert admission.admit("10.0.0.1").code == "CONNECTING_TOO_FAST"
    now[0] += 1.0                                              # one more a second
    assert admission.admit("10.0.0.1") is None
    for host in ("10.0.0.2", "10.0.0.3", "10.0.0.4"):
        admission.admit(host)
    assert admission.held() == 5
    assert admission.admit("10.0.0.5").code == "SERVER_FULL"
    for host in ("10.0.0.1", "10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4"):
        admission.release(host)
    admission.release("10.0.0.9")                              # unknown: nothing happens
    assert admission.held() == 0 and len(admission) == 4     # 10.0.0.5 was never let in
    now[0] += 10.0                                             # buckets full again
    admission.prune()
    assert len(admission) == 0
