"""ttweetsrv.py as a real process: concurrency, bad input, the session log, stopping, arguments."""

from __future__ import annotations

import os
import select
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest
from conftest import (
    DEFAULT_TIMEOUT,
    HEADER_LINE,
    PYTHON,
    REPORT_LINE,
    ROOT,
    Cluster,
    Proc,
    free_port,
)

from protocol.limits import TTWEET_EMPTY, TTWEET_MAX, TTWEET_REQUEST_MAX
from protocol.ttweet import (
    INCOMPLETE,
    MALFORMED,
    TIMEOUT,
    TOO_LARGE,
    TOO_LONG,
    DownloadRequest,
    ErrorReply,
    FrameAssembler,
    OkReply,
    Reply,
    UploadRequest,
    decode_reply,
    encode_request,
)

CLIENT_ENV = {**os.environ, "PYTHONIOENCODING": "utf-8"}


def start_server(cluster: Cluster, tmp_path: Path, *extra: str) -> tuple[Proc, int, Path]:
    """A ttweet server logging into tmp_path, returned once it says it is listening."""
    port = free_port()
    log = tmp_path / "session.txt"
    server = cluster.start(["ttweetsrv.py", str(port), "--log", str(log), *extra], "ttweetsrv")
    server.expect(rf"listening on port {port}\b")
    return server, port, log


def run_client(port: int, log: Path, *args: str) -> subprocess.CompletedProcess[str]:
    mode, *rest = args
    return subprocess.run(
        [PYTHON, "ttweetcl.py", mode, "127.0.0.1", str(port), *rest, "--log", str(log)],
        cwd=ROOT, capture_output=True, text=True, encoding="utf-8", timeout=DEFAULT_TIMEOUT,
        env=CLIENT_ENV, check=False)


def raw_exchange(port: int, data: bytes, half_close: bool = True) -> Reply:
    """Send ``data`` as is (``half_close``: then say so) and decode what comes back."""
    with socket.create_connection(("127.0.0.1", port), timeout=DEFAULT_TIMEOUT) as sock:
        sock.sendall(data)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        assembler = FrameAssembler()
        while True:
            chunk = sock.recv(4096)
            frame = assembler.feed(chunk) if chunk else assembler.close()
            if frame is not None:
                return decode_reply(frame)


def download(port: int) -> str:
    reply = raw_exchange(port, encode_request(DownloadRequest()))
    assert isinstance(reply, OkReply), reply
    return reply.message


def assert_log_lines_whole(log: Path) -> list[str]:
    lines = log.read_text(encoding="utf-8").split("\n")
    assert lines[-1] == "", "the log ends in the middle of a line"
    for line in lines[:-1]:
        assert line == "" or REPORT_LINE.match(line) or HEADER_LINE.match(line), \
            f"torn or foreign line in the log: {line!r}"
    return lines[:-1]


# --- start-up, the log, stopping -----------------------------------------------------------
def test_start_opens_a_session_section_and_says_it_listens(cluster: Cluster,
                                                          tmp_path: Path) -> None:
    log = tmp_path / "session.txt"
    log.write_text("2026-01-01 00:00:00.000 [client] [GENERAL] an earlier session\n")
    port = free_port()
    server = cluster.start(["ttweetsrv.py", str(port), "--log", str(log)], "ttweetsrv")
    server.expect(rf"\[server\] \[GENERAL\] listening on port {port}, the slot holds "
                  r'"Empty Message"')
    lines = assert_log_lines_whole(log)
    assert lines[1] == ""                                   # a blank line, then the header
    assert HEADER_LINE.match(lines[2]) and f"port {port}" in lines[2]
    assert lines[3].endswith(f"[server] [GENERAL] listening on port {port}, the slot holds "
                             '"Empty Message"')
    assert download(port) == TTWEET_EMPTY


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_or_sigterm_stops_it_cleanly(cluster: Cluster, tmp_path: Path,
                                            sig: signal.Signals) -> None:
    server, port, log = start_server(cluster, tmp_path)
    assert download(port) == TTWEET_EMPTY
    server.popen.send_signal(sig)
    assert server.wait() == 0
    server.assert_no_traceback()
    assert log.read_text(encoding="utf-8").rstrip("\n").endswith(
        "[server] [GENERAL] stopped; the stored message is discarded")


# --- the slot -------------------------------------------------------------------------------
def test_the_server_checks_the_length_too(cluster: Cluster, tmp_path: Path) -> None:
    server, port, _log = start_server(cluster, tmp_path)
    assert raw_exchange(port, encode_request(UploadRequest("kept"))) == OkReply("")
    # A client that skips the 150-character check gets an error reply; the slot is unchanged.
    reply = raw_exchange(port, encode_request(UploadRequest("ü" * (TTWEET_MAX + 1))))
    assert isinstance(reply, ErrorReply) and reply.code == TOO_LONG
    server.expect(r"\[server\] \[ERROR\] 127\.0\.0\.1:\d+ refused: TOO_LONG")
    assert download(port) == "kept"
    exact = "ü" * TTWEET_MAX
    assert raw_exchange(port, encode_request(UploadRequest(exact))) == OkReply("")
    assert download(port) == exact
    server.assert_no_traceback()


def test_fifty_concurrent_clients_never_see_a_mixed_message(cluster: Cluster,
                                                           tmp_path: Path) -> None:
    server, port, log = start_server(cluster, tmp_path)
    first = ("clïent 00 ✓ " * 20)[:TTWEET_MAX]
    assert run_client(port, log, "-u", first).returncode == 0
    uploads = {i: (f"clïent {i:02d} ✓ " * 20)[:TTWEET_MAX] for i in range(1, 26)}
    commands = [["-u", message] for message in uploads.values()] + [["-d"]] * 25
    clients = [
        subprocess.Popen(
            [PYTHON, "ttweetcl.py", mode, "127.0.0.1", str(port), *rest, "--log", str(log)],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            encoding="utf-8", env=CLIENT_ENV)
        for mode, *rest in commands]
    outputs = [client.communicate(timeout=DEFAULT_TIMEOUT * 2) for client in clients]

    possible = {first, *uploads.values()}
    for (mode, *_), client, (out, err) in zip(commands, clients, outputs, strict=True):
        assert client.returncode == 0, err
        assert err == ""
        if mode == "-u":
            assert out == "Transmission Successfull...\n"
        else:
            assert out.startswith("Received Message: ")
            assert out[len("Received Message: "):-1] in possible, f"a mixed message: {out!r}"
    assert download(port) in possible                # and it still answers afterwards
    server.assert_no_traceback()

    lines = assert_log_lines_whole(log)
    client_lines = [line for line in lines if "[client]" in line]
    assert len(client_lines) == 2 * 51               # "requested" and the outcome, each
    assert sum("[server] [CONNECTION]" in line and line.endswith(" connected")
               for line in lines) == 52


def test_concurrent_raw_requests_keep_every_message_whole(cluster: Cluster,
                                                          tmp_path: Path) -> None:
    server, port, _ = start_server(cluster, tmp_path)
    messages = [(f"{i:02d}" + chr(0x3b1 + i % 20)) * 50 for i in range(40)]
    messages = [message[:TTWEET_MAX] for message in messages]
    raw_exchange(port, encode_request(UploadRequest(messages[0])))
    failures: list[str] = []

    def hammer(index: int) -> None:
        try:
            for _ in range(5):
                raw_exchange(port, encode_request(UploadRequest(messages[index])))
                seen = download(port)
                if seen not in messages:
                    failures.append(seen)
        except Exception as error:   # reported below: a thread must not die silently
            failures.append(repr(error))

    threads = [threading.Thread(target=hammer, args=(i,)) for i in range(len(messages))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(DEFAULT_TIMEOUT * 2)
    assert not any(thread.is_alive() for thread in threads)
    assert failures == []
    server.assert_no_traceback()


# --- bad input ---------------------------------------------------------------------------------
def send_and_close(port: int, data: bytes) -> None:
    """Send ``data`` and close at once, without waiting for any reply."""
    with socket.create_connection(("127.0.0.1", port), timeout=DEFAULT_TIMEOUT) as sock:
        sock.sendall(data)


BAD_INPUTS = {
    "garbage": (b"\x00\xff\x1b[2J GET / HTTP/1.1\r\n\r\n" * 4, MALFORMED, "ERROR"),
    "garbage-without-newline": (bytes(range(1, 10)) * 20, MALFORMED, "ERROR"),
    "oversized": (b"UPLOAD 6000\n" + b"x" * 6000, TOO_LARGE, "ERROR"),
    "oversized-header-lie": (b"UPLOAD 5\n" + b"x" * (TTWEET_REQUEST_MAX * 2), MALFORMED,
                             "ERROR"),
    "bad-utf8": (b"UPLOAD 3\n\xe2\x28\xa1", MALFORMED, "ERROR"),
    "half-way-then-half-close": (b"UPLOAD 20\nonly part", INCOMPLETE, "CONNECTION"),
}


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_input_gets_an_error_reply_and_the_server_carries_on(
        cluster: Cluster, tmp_path: Path, case: str) -> None:
    data, code, category = BAD_INPUTS[case]
    server, port, log = start_server(cluster, tmp_path)
    reply = raw_exchange(port, data)
    assert isinstance(reply, ErrorReply) and reply.code == code, reply
    server.expect(rf"\[server\] \[{category}\] 127\.0\.0\.1:\d+ refused: {code}: ")
    # The next client is served normally.
    done = run_client(port, log, "-d")
    assert (done.returncode, done.stdout) == (0, "Received Message: Empty Message\n")
    server.assert_no_traceback()
    assert_log_lines_whole(log)


def test_a_client_that_sends_nothing_is_timed_out(cluster: Cluster, tmp_path: Path) -> None:
    server, port, log = start_server(cluster, tmp_path, "--timeout", "0.3")
    with socket.create_connection(("127.0.0.1", port), timeout=DEFAULT_TIMEOUT) as silent:
        server.expect(r"\[CONNECTION\] 127\.0\.0\.1:\d+ connected")
        # Another client is served while the silent one is still connected.
        done = run_client(port, log, "-u", "while someone is silent")
        assert (done.returncode, done.stdout) == (0, "Transmission Successfull...\n")
        assembler = FrameAssembler()
        frame = None
        while frame is None:
            chunk = silent.recv(4096)
            frame = assembler.feed(chunk) if chunk else assembler.close()
        reply = decode_reply(frame)
    assert isinstance(reply, ErrorReply) and reply.code == TIMEOUT
    server.expect(r"\[server\] \[ERROR\] 127\.0\.0\.1:\d+ refused: TIMEOUT: no whole request "
                  r"within 0\.3 s")
    assert download(port) == "while someone is silent"
    server.assert_no_traceback()


@pytest.mark.parametrize("data", [b"", b"UPLOAD 20\nonly part", b"DOWNL"])
def test_a_connection_closed_half_way_is_logged(cluster: Cluster, tmp_path: Path,
                                                data: bytes) -> None:
    server, port, log = start_server(cluster, tmp_path)
    send_and_close(port, data)
    server.expect(rf"\[server\] \[CONNECTION\] 127\.0\.0\.1:\d+ refused: INCOMPLETE: the "
                  rf"connection closed after {len(data)} bytes")
    assert download(port) == TTWEET_EMPTY
    server.assert_no_traceback()
    assert "INCOMPLETE" in log.read_text(encoding="utf-8")


# --- arguments ---------------------------------------------------------------------------------
def run_server_briefly(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PYTHON, "ttweetsrv.py", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=DEFAULT_TIMEOUT, check=False)


@pytest.mark.parametrize("args", [
    [], ["abc"], ["0"], ["65536"], ["-5"], ["13000", "14000"], ["13000", "--timeout", "0"],
    ["13000", "--timeout", "nan"], ["13000", "--bogus"], ["13000", "--log"],
])
def test_bad_arguments_give_usage_and_exit_2(args: list[str], tmp_path: Path) -> None:
    # --log first: were the arguments accepted after all, the committed Sample.txt stays safe.
    done = run_server_briefly("--log", str(tmp_path / "log.txt"), *args)
    assert done.returncode == 2
    assert done.stdout == ""
    assert "Traceback" not in done.stderr
    assert done.stderr.startswith("usage: ttweetsrv.py")
    errors = [line for line in done.stderr.splitlines() if line.startswith("ttweetsrv.py: ")]
    assert len(errors) == 1 and errors[0].startswith("ttweetsrv.py: error: ")


def test_an_unwritable_log_is_one_clear_error(tmp_path: Path) -> None:
    done = run_server_briefly(str(free_port()), "--log", str(tmp_path / "missing" / "log.txt"))
    assert done.returncode == 2
    assert done.stderr.startswith("ttweetsrv.py: error: cannot open log file")
    assert len(done.stderr.splitlines()) == 1


def test_a_port_in_use_is_one_clear_error(tmp_path: Path) -> None:
    with socket.create_server(("", 0)) as taken:
        port = taken.getsockname()[1]
        done = run_server_briefly(str(port), "--log", str(tmp_path / "log.txt"))
    assert done.returncode == 1
    assert done.stderr.startswith(f"ttweetsrv.py: error: cannot listen on port {port}")
    assert len(done.stderr.splitlines()) == 1
    assert f"[server] [ERROR] cannot listen on port {port}" in (tmp_path / "log.txt").read_text()


def test_help_shows_the_form_and_an_example() -> None:
    done = run_server_briefly("-h")
    assert done.returncode == 0
    usage = " ".join(done.stdout.split("\n\n")[0].split())     # argparse may wrap the line
    assert usage == ("usage: ttweetsrv.py [-h] [--trace-file PATH] [--log PATH] "
                     "[--timeout SECONDS] [--max-per-address N] [--log-max BYTES] port")
    assert "python3 ttweetsrv.py 13000" in done.stdout


# --- fair to everyone (SPEC §6) -----------------------------------------------------------------
def held_connection(port: int, source: str) -> socket.socket:
    """A connection from ``source`` that sends nothing: it holds its place until the timeout."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(DEFAULT_TIMEOUT)
    sock.bind((source, 0))
    sock.connect(("127.0.0.1", port))
    return sock


def test_one_address_has_a_bounded_share_and_the_others_are_served(cluster: Cluster,
                                                                  tmp_path: Path) -> None:
    server, port, log = start_server(cluster, tmp_path, "--max-per-address", "2",
                                     "--timeout", "60")
    held = [held_connection(port, "127.0.0.2") for _ in range(2)]
    for _ in held:
        server.expect(r"\[CONNECTION\] 127\.0\.0\.2:\d+ connected$")
    refused = held_connection(port, "127.0.0.2")
    assert refused.recv(100) == b""                  # closed at once, nothing read or said
    refused.close()
    server.expect(r"\[CONNECTION\] 127\.0\.0\.2:\d+ refused: 127\.0\.0\.2 has 2 connections"
                  r" being served, the most one address may have$")
    assert run_client(port, log, "-u", "from another address").returncode == 0
    assert download(port) == "from another address"
    held[0].close()                                  # its place comes back once it is served
    server.expect(r"127\.0\.0\.2:\d+ refused: INCOMPLETE")
    for _ in range(50):
        again = held_connection(port, "127.0.0.2")
        again.sendall(encode_request(DownloadRequest()))
        answer = again.recv(100)
        again.close()
        if answer:
            assert answer.startswith(b"OK ")
            break
    else:
        raise AssertionError("127.0.0.2 never got its place back")
    held[1].close()
    server.assert_no_traceback()


def test_the_session_log_moves_aside_when_full(cluster: Cluster, tmp_path: Path) -> None:
    server, port, log = start_server(cluster, tmp_path, "--log-max", "2000")
    for number in range(60):                         # about 6 KB of server lines
        raw_exchange(port, encode_request(UploadRequest(f"message {number}")))
    older = Path(f"{log}.1")
    server.stop()
    for path in (log, older):
        size = path.stat().st_size
        assert 0 < size <= 2000, (path, size)
        assert_log_lines_whole(path)
    assert log.read_text("utf-8").splitlines()[0].endswith(
        f"[server] [GENERAL] earlier lines are in {older} (a log holds at most 2000 bytes)")
    assert 'upload: stored "message 59"' in log.read_text("utf-8")
    assert not Path(f"{log}.2").exists()             # one older generation, no more


def test_a_terminal_that_does_not_read_never_holds_up_a_request(tmp_path: Path) -> None:
    port = free_port()
    popen = subprocess.Popen([PYTHON, "ttweetsrv.py", str(port), "--log", str(tmp_path / "l")],
                             cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             env={**CLIENT_ENV, "PYTHONUNBUFFERED": "1"})
    try:
        assert popen.stdout is not None
        seen, deadline = b"", time.monotonic() + DEFAULT_TIMEOUT
        while b"listening on port" not in seen:       # then nobody reads it any more
            remaining = max(0.0, deadline - time.monotonic())
            assert select.select([popen.stdout], [], [], remaining)[0], seen
            seen += os.read(popen.stdout.fileno(), 4096)
        for number in range(1500):       # 3000 lines: far beyond what the pipe holds
            raw_exchange(port, encode_request(UploadRequest(f"unread {number}")))
        assert download(port) == "unread 1499"
    finally:
        popen.kill()
        popen.wait(DEFAULT_TIMEOUT)
        if popen.stdout:
            popen.stdout.close()
