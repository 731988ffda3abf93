"""``python3 -m protocol.diagram`` (tools/diagram_cli.py): files in, a diagram out, and one line
on stderr with exit status 2 for anything it cannot do."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from conftest import PYTHON, ROOT

from protocol.diagram import cells
from protocol.trace import TraceRecord
from tools.diagram_cli import main


def write(path: Path, *records: TraceRecord) -> Path:
    path.write_text("".join(r.to_json() + "\n" for r in records), encoding="utf-8")
    return path


def record(t: float, at: str, direction: str, src: str, dst: str, kind: str,
           summary: str = "") -> TraceRecord:
    return TraceRecord(t, at, direction, src, dst, kind, summary)


@pytest.fixture
def traces(tmp_path: Path) -> list[str]:
    """A scripted run of two steps: its marks in one file, @a's messages in another."""
    demo = write(tmp_path / "demo.jsonl",
                 record(10.0, "demo", "send", "demo", "demo", "step", "setup"),
                 record(12.0, "demo", "send", "demo", "demo", "step", "the tweet"))
    alice = write(tmp_path / "a.jsonl",
                  record(11.0, "@a", "send", "@a", "@b", "setup", "setup ring=@a seq=1"),
                  record(11.5, "@a", "recv", "@b", "@a", "ack", "ack seq=1"),
                  record(13.0, "@a", "send", "@a", "@b", "tweet", "tweet ring=@a seq=2"))
    return [str(demo), str(alice)]


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    status = main(list(args))
    out, err = capsys.readouterr()
    return status, out, err


def test_mermaid_by_default_and_text_with_text(traces: list[str],
                                                capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(capsys, *traces)
    assert status == 0 and out.startswith("sequenceDiagram\n")
    assert "    a->>b: setup ring=@a seq=1" in out.splitlines()
    status, out, _ = run(capsys, "--text", "--width", "40", *traces)
    assert status == 0
    assert out.splitlines()[0].split() == ["@a", "@b"]
    assert all(cells(line) <= 40 for line in out.splitlines())
    assert "step 2: the tweet" in out


def test_steps_are_listed_and_selected(traces: list[str],
                                       capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(capsys, "--steps", *traces)
    assert status == 0
    assert out.splitlines() == ["  1  setup  (2 messages)", "  2  the tweet  (1 messages)"]
    status, out, _ = run(capsys, "--step", "2", *traces)
    assert [line for line in out.splitlines() if "->>" in line] == [
        "    a->>b: tweet ring=@a seq=2"]


def test_a_time_window_counts_seconds_from_the_first_record(
        traces: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    _, out, _ = run(capsys, "--since", "1.2", "--until", "2", *traces)
    assert [line.split(":")[0].strip() for line in out.splitlines() if "-->>" in line] == \
        ["b-->>a"]
    assert "setup ring" not in out and "tweet ring" not in out


def test_ascii_no_acks_normalise_and_an_output_file(traces: list[str], tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    out_file = tmp_path / "out.txt"
    status, out, _ = run(capsys, "--text", "--ascii", "--no-acks", "--normalise",
                         "--width", "60", "-o", str(out_file), *traces)
    assert status == 0 and out == ""
    text = out_file.read_text(encoding="utf-8")
    assert text.isascii() and "seq=s1" in text and "ack seq" not in text


def test_no_steps_in_hand_made_traces(traces: list[str],
                                      capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(capsys, "--steps", traces[1])
    assert status == 0 and out.startswith("no steps in these traces")


@pytest.mark.parametrize(("args", "message"), [
    (["missing.jsonl"], "cannot read missing.jsonl"),
    (["BAD"], r"BAD:1: not a trace record"),
    (["GOOD", "--step", "7"], "no step 7 in these traces"),
    (["GOOD", "--step", "x"], "is not a step"),
    (["GOOD", "--step", "5-3"], "is not a step"),
    (["GOOD", "--width", "10"], "is not a number of columns from 30 to 10000"),
    (["GOOD", "--width", "wide"], "is not a number of columns"),
    (["GOOD", "--since", "soon"], "is not a number of seconds"),
    (["GOOD", "--until", "nan"], "is not a number of seconds"),
    (["GOOD", "-o", "/nonexistent/dir/out.md"], "cannot write /nonexistent/dir/out.md"),
    ([], "the following arguments are required"),
])
def test_a_bad_argument_or_input_is_one_line_on_stderr_and_exit_2(
        tmp_path: Path, args: list[str], message: str) -> None:
    good = write(tmp_path / "good.jsonl", record(1, "@a", "send", "@a", "@b", "x"))
    bad = tmp_path / "BAD"
    bad.write_text("{oops\n", encoding="utf-8")
    argv = [str(good) if a == "GOOD" else a for a in args]
    done = subprocess.run([PYTHON, "-m", "protocol.diagram", *argv], cwd=tmp_path,
                          env={"PYTHONPATH": str(ROOT)}, capture_output=True, text=True,
                          timeout=30, check=False)
    assert done.returncode == 2, done
    assert done.stdout == "" and "Traceback" not in done.stderr
    *usage, last = done.stderr.strip().splitlines()     # argparse shows the usage first
    assert message in last and last.startswith(("diagram: ", "python3 -m protocol.diagram: "))
    assert not usage or usage[0].startswith("usage: python3 -m protocol.diagram")


def test_it_runs_as_spec_section_7_says(tmp_path: Path) -> None:
    trace = write(tmp_path / "t.jsonl", record(1, "@a", "send", "@a", "@b", "hello"))
    done = subprocess.run([PYTHON, "-m", "protocol.diagram", "--text", "--width", "50",
                           str(trace)], cwd=ROOT, capture_output=True, text=True, timeout=30,
                          check=True)
    assert done.stdout.splitlines()[0].split() == ["@a", "@b"]
