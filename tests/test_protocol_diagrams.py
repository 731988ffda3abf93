"""PROTOCOL.md's per-command diagrams are those of a real run (tools/protocol_diagrams.py).

The first test plays the scripted run again and fails, showing the difference, when a diagram
of PROTOCOL.md is not what the code does now: regenerate them with ``make diagrams``.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from conftest import PYTHON, ROOT

from tools import protocol_diagrams
from tools.demo import DemoFailed
from tools.protocol_diagrams import BLOCK, GENERATED, PROTOCOL, main, update


def test_protocol_md_diagrams_are_those_of_a_fresh_run() -> None:
    done = subprocess.run([PYTHON, "tools/protocol_diagrams.py", "--check"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip() == "PROTOCOL.md: the diagrams are those of a fresh run"


def test_every_block_of_protocol_md_is_generated() -> None:
    text = PROTOCOL.read_text(encoding="utf-8")
    blocks = [m.group(0) for m in BLOCK.finditer(text)]
    assert len(blocks) >= 8
    assert all(GENERATED in block and "```mermaid\nsequenceDiagram\n" in block
               for block in blocks)


PAGE = """# Title

<!-- diagram: one -->
old one
<!-- /diagram -->

text between, kept

<!-- diagram: two -->
<!-- /diagram -->
"""


def test_update_rewrites_only_the_blocks() -> None:
    assert update(PAGE, {"one": "new one", "two": "new\ntwo"}) == PAGE.replace(
        "old one", "new one").replace("two -->\n", "two -->\nnew\ntwo\n")


def test_a_block_missing_from_the_page_is_an_error() -> None:
    with pytest.raises(DemoFailed, match="no block for three: add the lines "
                                         "<!-- diagram: three -->"):
        update(PAGE, {"one": "1", "two": "2", "three": "3"})


@pytest.fixture
def fake_run(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(protocol_diagrams, "generate",
                        lambda quiet=True: {"one": "fresh one", "two": "fresh two"})


@pytest.mark.usefixtures("fake_run")
def test_check_shows_a_stale_page_and_exits_1_and_changes_nothing(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    page = tmp_path / "PROTOCOL.md"
    page.write_text(PAGE, encoding="utf-8")
    assert main(["--check", "--file", str(page)]) == 1
    out = capsys.readouterr().out
    assert "-old one\n+fresh one\n" in out and "run make diagrams" in out
    assert page.read_text(encoding="utf-8") == PAGE
    assert main(["--file", str(page)]) == 0                 # without --check: rewritten
    assert main(["--check", "--file", str(page)]) == 0
    assert "fresh two" in page.read_text(encoding="utf-8")


@pytest.mark.usefixtures("fake_run")
def test_a_file_that_cannot_be_read_is_exit_2(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--file", str(tmp_path / "missing.md")]) == 2
    assert "missing.md: No such file or directory" in capsys.readouterr().err


def test_a_failed_run_is_exit_1(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                capsys: pytest.CaptureFixture[str]) -> None:
    def failing(quiet: bool = True) -> dict[str, str]:
        raise DemoFailed("@a: expected SUCCESS, got FAILURE X")
    monkeypatch.setattr(protocol_diagrams, "generate", failing)
    page = tmp_path / "PROTOCOL.md"
    page.write_text(PAGE, encoding="utf-8")
    assert main(["--file", str(page)]) == 1
    assert "the run failed: @a: expected SUCCESS" in capsys.readouterr().err
    assert page.read_text(encoding="utf-8") == PAGE
