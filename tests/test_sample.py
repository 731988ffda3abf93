"""tools/sample.py (`make sample`): the committed Sample.txt is the log it produces (timestamps
and ports aside), and it shows the standard scenario."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from conftest import DEFAULT_TIMEOUT, PYTHON, ROOT

TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}")
ADDRESS_PORT = re.compile(r"127\.0\.0\.1:\d+")
PORT = re.compile(r"\bport \d+")


def normalised(log: str) -> list[str]:
    """The log's lines with what differs between runs — times and ports — blanked out."""
    log = TIMESTAMP.sub("<time>", log)
    log = ADDRESS_PORT.sub("127.0.0.1:<port>", log)
    return PORT.sub("port <port>", log).splitlines()


def test_make_sample_reproduces_the_committed_sample(tmp_path: Path) -> None:
    log = tmp_path / "Sample.txt"
    log.write_text("left over from an earlier run\n")          # the tool starts a fresh log
    done = subprocess.run([PYTHON, "tools/sample.py", str(log)], cwd=ROOT, capture_output=True,
                          text=True, encoding="utf-8", timeout=DEFAULT_TIMEOUT * 4, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    produced = normalised(log.read_text(encoding="utf-8"))
    committed = normalised((ROOT / "Sample.txt").read_text(encoding="utf-8"))
    assert produced == committed


def test_the_committed_sample_shows_the_standard_scenario() -> None:
    lines = (ROOT / "Sample.txt").read_text(encoding="utf-8").splitlines()
    shown = ("[client] [GENERAL] Transmission", "[client] [GENERAL] Received", "[client] [ERROR]")
    outcomes = [line.split("] ", 2)[2] for line in lines if line.startswith(shown, 24)]
    assert [outcome.split(" (")[0] for outcome in outcomes] == [
        "error: server not found, connection refused.",
        "error: server not found, connection refused.",
        "Received Message: Empty Message",
        "message length illegal, connection refused.",
        "Received Message: Empty Message",
        "Transmission Successfull...",
        "Received Message: Hello from ttweet! #first",
        "Transmission Successfull...",
        'Received Message: Second message: "quotes", #tags and Ünïcödé all pass',
        "message length illegal, connection refused.",
        'Received Message: Second message: "quotes", #tags and Ünïcödé all pass',
    ]
    header = next(index for index, line in enumerate(lines) if "new session:" in line)
    assert header == 5                       # the two failed clients come before the server
    assert "[server] [GENERAL] stopped" in lines[-1]
