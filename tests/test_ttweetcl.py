"""ttweetcl.py as a real process: the standard scenario, the limits, arguments, odd servers."""

from __future__ import annotations

import os
import socket
import subprocess
import threading
from pathlib import Path

import pytest
from conftest import DEFAULT_TIMEOUT, PYTHON, ROOT, Cluster, Proc, free_port

from protocol.limits import TTWEET_MAX
from protocol.ttweet import FrameAssembler

CLIENT_ENV = {**os.environ, "PYTHONIOENCODING": "utf-8"}

UPLOADED = "Transmission Successfull...\n"
TOO_LONG = "message length illegal, connection refused.\n"
NOT_FOUND = "error: server not found, connection refused.\n"
BAD_IP = "error: server ip invalid, connection refused.\n"
BAD_PORT = "error: server port invalid, connection refused.\n"


def received(message: str) -> str:
    return f"Received Message: {message}\n"


def client(log: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ttweetcl.py with ``args`` (and ``--log log``) to the end."""
    return subprocess.run([PYTHON, "ttweetcl.py", "--log", str(log), *args], cwd=ROOT,
                          env=CLIENT_ENV, capture_output=True, text=True, encoding="utf-8",
                          timeout=DEFAULT_TIMEOUT, check=False)


def outcome(done: subprocess.CompletedProcess[str]) -> tuple[int, str, str]:
    return done.returncode, done.stdout, done.stderr


def start_server(cluster: Cluster, port: int, log: Path) -> Proc:
    server = cluster.start(["ttweetsrv.py", str(port), "--log", str(log)], "ttweetsrv")
    server.expect(rf"listening on port {port}\b")
    return server


# --- acceptance 1: the standard scenario of SPEC §5, step by step ------------------------------
def test_the_standard_scenario(cluster: Cluster, tmp_path: Path) -> None:
    log = tmp_path / "session.txt"
    port = str(free_port())
    up = ("-u", "127.0.0.1", port)
    down = ("-d", "127.0.0.1", port)
    overlong = "x" * (TTWEET_MAX + 1)

    # The server is not running: both requests fail.
    assert outcome(client(log, *up, "message1")) == (1, "", NOT_FOUND)
    assert outcome(client(log, *down)) == (1, "", NOT_FOUND)

    server = start_server(cluster, int(port), log)
    assert outcome(client(log, *down)) == (0, received("Empty Message"), "")
    assert outcome(client(log, *up, overlong)) == (1, "", TOO_LONG)
    assert outcome(client(log, *down)) == (0, received("Empty Message"), "")
    assert outcome(client(log, *up, "message1")) == (0, UPLOADED, "")
    assert outcome(client(log, *down)) == (0, received("message1"), "")
    assert outcome(client(log, *up, "message2")) == (0, UPLOADED, "")
    assert outcome(client(log, *down)) == (0, received("message2"), "")
    assert outcome(client(log, *up, overlong)) == (1, "", TOO_LONG)
    assert outcome(client(log, *down)) == (0, received("message2"), "")
    server.assert_no_traceback()

    text = log.read_text(encoding="utf-8")
    assert text.count("[client] [ERROR] error: server not found, connection refused.") == 2
    assert text.count("[client] [ERROR] message length illegal, connection refused.") == 2
    assert text.count("[client] [GENERAL] Transmission Successfull...") == 2
    assert text.count("[client] [GENERAL] Received Message: ") == 5
    assert text.count("new session: ttweet server on port") == 1


# --- acceptance 2: the limit counts characters -------------------------------------------------
def test_150_characters_upload_151_are_refused_and_empty_resets(cluster: Cluster,
                                                                tmp_path: Path) -> None:
    log = tmp_path / "session.txt"
    port = free_port()
    server = start_server(cluster, port, log)
    address = ("127.0.0.1", str(port))
    exactly = "ü" * (TTWEET_MAX - 1) + "é"                 # 150 characters, 300 bytes

    assert outcome(client(log, "-u", *address, exactly)) == (0, UPLOADED, "")
    assert outcome(client(log, "-d", *address)) == (0, received(exactly), "")
    for over in ("ü" * (TTWEET_MAX + 1), "a" * (TTWEET_MAX + 1), "a" * 1000):
        assert outcome(client(log, "-u", *address, over)) == (1, "", TOO_LONG)
        assert outcome(client(log, "-d", *address)) == (0, received(exactly), "")
    assert outcome(client(log, "-u", *address, "")) == (0, UPLOADED, "")
    assert outcome(client(log, "-d", *address)) == (0, received("Empty Message"), "")
    server.assert_no_traceback()


def test_an_over_long_message_is_refused_before_anything_is_sent(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = str(listener.getsockname()[1])
        done = client(tmp_path / "log.txt", "-u", "127.0.0.1", port, "y" * (TTWEET_MAX + 1))
        assert outcome(done) == (1, "", TOO_LONG)
        listener.setblocking(False)
        with pytest.raises(BlockingIOError):   # nobody connected
            listener.accept()
    assert "151 characters" in (tmp_path / "log.txt").read_text()


@pytest.mark.parametrize(("message", "shown"), [
    ('She said "hi" and \'bye\'', 'She said "hi" and \'bye\''),
    ("#tags #work @handles too", "#tags #work @handles too"),
    ("Ünïcödé, 日本語, ✓ and 💬", "Ünïcödé, 日本語, ✓ and 💬"),
    ("-5 degrees", "-5 degrees"),
    ("two\nlines", "two\\nlines"),                       # a newline is shown escaped
    ("red \x1b[31malert\x1b[0m", "red \\x1b[31malert\\x1b[0m"),  # no escape sequence runs
    ("back\\slash", "back\\\\slash"),
])
def test_any_printable_text_passes_and_is_shown_safely(cluster: Cluster, tmp_path: Path,
                                                       message: str, shown: str) -> None:
    log = tmp_path / "session.txt"
    port = free_port()
    start_server(cluster, port, log)
    address = ("127.0.0.1", str(port))
    assert outcome(client(log, "-u", *address, "--", message)) == (0, UPLOADED, "")
    assert outcome(client(log, "-d", *address)) == (0, received(shown), "")
    for line in log.read_text(encoding="utf-8").splitlines():
        assert "\x1b" not in line


# --- arguments ---------------------------------------------------------------------------------
@pytest.mark.parametrize(("args", "line"), [
    (["-d", "localhost", "13000"], BAD_IP),
    (["-d", "127.0.0.256", "13000"], BAD_IP),
    (["-u", "1.2.3", "13000", "hi"], BAD_IP),
    (["-d", "127.0.0.1", "0"], BAD_PORT),
    (["-d", "127.0.0.1", "65536"], BAD_PORT),
    (["-u", "127.0.0.1", "port", "hi"], BAD_PORT),
    (["-d", "127.0.0.1", "-1"], BAD_PORT),               # a number, not an option
])
def test_a_bad_address_or_port_is_one_line_and_exit_2(tmp_path: Path, args: list[str],
                                                      line: str) -> None:
    done = client(tmp_path / "log.txt", *args)
    assert outcome(done) == (2, "", line)
    assert f"[client] [ERROR] {line.strip()}" in (tmp_path / "log.txt").read_text()


@pytest.mark.parametrize("args", [
    [], ["127.0.0.1", "13000"], ["-u", "127.0.0.1", "13000"], ["-d", "127.0.0.1", "13000", "x"],
    ["-u", "-d", "127.0.0.1", "13000", "x"], ["-x", "127.0.0.1", "13000"], ["-d", "127.0.0.1"],
    ["-u", "127.0.0.1", "13000", "a", "b"], ["-d", "127.0.0.1", "13000", "--log"],
])
def test_argument_errors_give_usage_and_exit_2(tmp_path: Path, args: list[str]) -> None:
    done = subprocess.run([PYTHON, "ttweetcl.py", "--log", str(tmp_path / "log.txt"), *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=DEFAULT_TIMEOUT,
                          check=False)
    assert done.returncode == 2 and done.stdout == ""
    assert "Traceback" not in done.stderr
    assert done.stderr.startswith("usage: ttweetcl.py -u <server-ip> <server-port> \"message\"")
    errors = [line for line in done.stderr.splitlines() if line.startswith("ttweetcl.py: ")]
    assert len(errors) == 1 and errors[0].startswith("ttweetcl.py: error: ")


def test_help_shows_both_forms_with_examples() -> None:
    done = subprocess.run([PYTHON, "ttweetcl.py", "-h"], cwd=ROOT, capture_output=True,
                          text=True, timeout=DEFAULT_TIMEOUT, check=False)
    assert done.returncode == 0
    assert 'ttweetcl.py -u <server-ip> <server-port> "message" [--log PATH]' in done.stdout
    assert "ttweetcl.py -d <server-ip> <server-port> [--log PATH]" in done.stdout
    assert 'python3 ttweetcl.py -u 127.0.0.1 13000 "Hello, #ttweet!"' in done.stdout
    assert "python3 ttweetcl.py -d 127.0.0.1 13000" in done.stdout


def test_an_unwritable_log_is_one_clear_error(tmp_path: Path) -> None:
    done = client(tmp_path / "missing" / "log.txt", "-d", "127.0.0.1", str(free_port()))
    assert done.returncode == 2
    assert done.stderr.startswith("ttweetcl.py: error: cannot open log file")
    assert len(done.stderr.splitlines()) == 1


# --- servers that misbehave ---------------------------------------------------------------------
class FakeServer:
    """Accepts one connection, reads one request, answers ``reply`` (None: hang up)."""

    def __init__(self, reply: bytes | None) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.reply = reply
        self.request: bytes | None = None
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self) -> None:
        self.listener.settimeout(DEFAULT_TIMEOUT)
        connection, _ = self.listener.accept()
        with connection:
            connection.settimeout(DEFAULT_TIMEOUT)
            assembler = FrameAssembler()
            while self.request is None:
                chunk = connection.recv(4096)
                self.request = assembler.feed(chunk) if chunk else assembler.close()
            if self.reply is not None:
                connection.sendall(self.reply)

    def close(self) -> None:
        self.thread.join(DEFAULT_TIMEOUT)
        self.listener.close()


@pytest.mark.parametrize(("reply", "status", "stderr"), [
    (None, 1, "error: no valid reply from the server.\n"),
    (b"garbage\n", 1, "error: no valid reply from the server.\n"),
    (b"OK 10\nshort", 1, "error: no valid reply from the server.\n"),
    (b"ERROR TOO_LONG 4\nlong", 1, TOO_LONG),
    (b"ERROR MALFORMED 8\nbad\x1b[2J!", 1,
     "error: the server refused the request: MALFORMED: bad\\x1b[2J!\n"),
])
def test_success_is_printed_only_after_the_server_confirmed(
        tmp_path: Path, reply: bytes | None, status: int, stderr: str) -> None:
    fake = FakeServer(reply)
    try:
        done = client(tmp_path / "log.txt", "-u", "127.0.0.1", str(fake.port), "hello")
    finally:
        fake.close()
    assert fake.request == b"UPLOAD 5\nhello"
    assert outcome(done) == (status, "", stderr)
    assert "Transmission Successfull" not in (tmp_path / "log.txt").read_text()


def test_a_download_from_a_hostile_server_is_escaped(tmp_path: Path) -> None:
    fake = FakeServer(b"OK 14\n\x1b]0;pwned\x07\nhi\r")
    try:
        done = client(tmp_path / "log.txt", "-d", "127.0.0.1", str(fake.port))
    finally:
        fake.close()
    assert fake.request == b"DOWNLOAD 0\n"
    assert outcome(done) == (0, received("\\x1b]0;pwned\\x07\\nhi\\r"), "")


EVERYDAY_FORMS = [
    ["-u", "127.0.0.1", "13000", "hello #tag"],
    ["-d", "127.0.0.1", "13000"],
    ["-u", "10.0.0.1", "1", "", "--log", "x.txt"],
    ["-d", "300.1.1.1", "99999", "--trace-file", "t.jsonl", "--log", "y.txt"],
]
UNUSUAL_FORMS = [["-h"], ["-u", "127.0.0.1", "13000", "--", "-5 degrees"], ["-d", "1.2.3.4"],
                 ["-u", "127.0.0.1", "13000"], ["-d", "127.0.0.1", "1", "--log"],
                 ["--log", "x", "-d", "127.0.0.1", "1"], ["-d", "127.0.0.1", "1", "--nope", "x"]]


def test_the_everyday_forms_read_without_argparse_as_argparse_reads_them() -> None:
    from ttweetcl import everyday_form, parse_with_argparse
    fields = ("upload", "download", "server_ip", "server_port", "message", "log", "trace_file")
    for argv in EVERYDAY_FORMS:
        quick, full = everyday_form(argv), parse_with_argparse(argv)
        assert quick is not None, argv
        assert {f: getattr(quick, f) for f in fields} == {f: getattr(full, f) for f in fields}
    for argv in UNUSUAL_FORMS:
        assert everyday_form(argv) is None, argv
