"""adapters/trace_file.py: the trace writer, and the one way every program opens --trace-file
(a file it cannot write is one line on stderr and exit status 2)."""

from __future__ import annotations

import io
import subprocess
from pathlib import Path

import pytest
from conftest import PYTHON, ROOT, free_port

from adapters.trace_file import EXIT_BAD_TRACE_FILE, TraceFileError, TraceWriter, open_trace_file
from protocol.trace import TraceRecord


def test_the_writer_stamps_each_record_with_its_clock_and_its_owner() -> None:
    stream = io.StringIO()
    times = iter([10.0, 11.5])
    writer = TraceWriter(stream, "@a", clock=lambda: next(times))
    writer.send("@b", "tweet", "tweet ring=@a")
    writer.rename("@z")
    writer.recv("tracker", "SUCCESS", "ok")
    sent, received = (TraceRecord.from_json(line) for line in stream.getvalue().splitlines())
    assert sent == TraceRecord(10.0, "@a", "send", "@a", "@b", "tweet", "tweet ring=@a")
    assert received == TraceRecord(11.5, "@z", "recv", "tracker", "@z", "SUCCESS", "ok")
    TraceWriter(None, "nobody").send("x", "y")           # no file: nothing happens


def test_records_escape_what_came_from_the_network() -> None:
    stream = io.StringIO()
    TraceWriter(stream, "tracker").recv("127.0.0.1:1", "say",
                                        'say "a\x9bb\u202ec\u2066d\x1b[2Je\ud800"')
    line = stream.getvalue()
    record = TraceRecord.from_json(line)
    assert record.summary == 'say "a\\x9bb\\u202ec\\u2066d\\x1b[2Je\\ud800"'
    assert not any(0x80 <= ord(ch) < 0xA0 or 0x202A <= ord(ch) <= 0x202E
                   or 0x2066 <= ord(ch) <= 0x2069 or ch == "\x1b" for ch in line)
    line.encode("utf-8")            # no lone surrogate reaches the file


def test_a_trace_file_is_opened_to_append(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_text("earlier\n", encoding="utf-8")
    with open_trace_file(str(path)) as stream:
        stream.write("later\n")
    assert path.read_text(encoding="utf-8") == "earlier\nlater\n"


def test_a_trace_file_that_cannot_be_written_is_a_bad_argument(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]
                                                               ) -> None:
    with pytest.raises(TraceFileError) as raised:
        open_trace_file(str(tmp_path / "no-such-folder" / "t.jsonl"))
    assert raised.value.report("x.py") == EXIT_BAD_TRACE_FILE == 2
    assert capsys.readouterr().err == (f"x.py: error: cannot write the trace file "
                                       f"{tmp_path}/no-such-folder/t.jsonl: No such file or "
                                       "directory\n")


@pytest.mark.parametrize("program", [
    ["tracker.py", "0", "--db", ":memory:"],
    ["user.py", "127.0.0.1", "1"],
    ["ttweetsrv.py", "PORT"],
    ["ttweetcl.py", "-d", "127.0.0.1", "PORT"],
])
def test_every_program_refuses_a_trace_file_it_cannot_write_alike(program: list[str],
                                                                  tmp_path: Path) -> None:
    args = [str(free_port()) if arg == "PORT" else arg for arg in program]
    if args[0].startswith("ttweet"):
        args += ["--log", str(tmp_path / "log.txt")]
    where = tmp_path / "missing" / "t.jsonl"
    done = subprocess.run([PYTHON, *args, "--trace-file", str(where)], cwd=ROOT,
                          capture_output=True, text=True, timeout=15, stdin=subprocess.DEVNULL,
                          check=False)
    assert (done.returncode, done.stdout, done.stderr) == (
        2, "" if args[0] != "ttweetsrv.py" else done.stdout,
        f"{args[0]}: error: cannot write the trace file {where}: No such file or directory\n")
