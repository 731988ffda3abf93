"""The layering of the code: ``protocol/`` is the core, and it owns no I/O.

Every module of ``protocol/`` is parsed (never imported) and must not

* import a module that does I/O, runs concurrently or reads the process's surroundings
  (sockets, selectors, threads, SQLite, subprocesses, the command line, files, signals, …);
* import the layers above it (``adapters``, ``tools``, ``tests``, the four programs);
* call ``open``, ``print`` or ``input``, or read a clock (``time.time()``, ``time.monotonic()``,
  ``datetime.now()``, …): the core is handed the time (``now``) by whoever drives it.

Imports count wherever they are in the module (inside a function or an ``if`` too).  What must
stay is listed in ``ALLOWED``, each with its reason; an entry that is no longer needed fails the
test too, so the list never outlives its reasons.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CORE = ROOT / "protocol"

# Modules (and their submodules) the core may not import.
IO_MODULES = {
    "socket", "_socket", "ssl", "select", "selectors", "socketserver", "asyncio", "http",
    "urllib", "threading", "_thread", "multiprocessing", "concurrent", "queue", "subprocess",
    "signal", "sqlite3", "dbm", "shelve", "argparse", "getopt", "getpass", "readline",
    "termios", "tty", "curses", "io", "os", "sys", "shutil", "pathlib", "tempfile", "glob",
    "fileinput", "logging", "ctypes",
}
UPPER_LAYERS = {"adapters", "tools", "tests", "tracker", "user", "ttweetsrv", "ttweetcl"}
IO_CALLS = {"open", "print", "input", "breakpoint"}
# time.<name>() and datetime.<name>() that read a clock or wait on one.
CLOCK_CALLS = {"time", "time_ns", "monotonic", "monotonic_ns", "perf_counter", "perf_counter_ns",
               "process_time", "thread_time", "sleep", "now", "utcnow", "today"}
CLOCK_MODULES = {"time", "datetime", "date"}

# (module, what it uses) -> why it must stay.
ALLOWED: dict[tuple[str, str], str] = {
    ("protocol/diagram.py", "import tools.diagram_cli"):
        "SPEC §7 names the command `python3 -m protocol.diagram`, which runs this file: its "
        "`if __name__ == '__main__':` guard hands over to the command line in tools/ (never run "
        "on import)",
    ("protocol/accounts.py", "import os"):
        "os.urandom only: the randomness of a new password salt (no file, no process)",
}


def core_modules() -> list[Path]:
    return sorted(CORE.glob("*.py"))


def _top(name: str) -> str:
    return name.split(".")[0]


def findings(path: Path) -> Iterator[tuple[str, int]]:
    """What ``path`` uses that the core may not, as (what, line)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if _top(alias.name) in IO_MODULES | UPPER_LAYERS:
                    yield f"import {alias.name}", node.lineno
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if _top(node.module) in IO_MODULES | UPPER_LAYERS:
                yield f"import {node.module}", node.lineno
            elif node.module in CLOCK_MODULES:
                for alias in node.names:
                    if alias.name in CLOCK_CALLS:
                        yield f"from {node.module} import {alias.name}", node.lineno
        elif isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Name) and func.id in IO_CALLS:
                yield f"{func.id}()", node.lineno
            elif isinstance(func, ast.Attribute) and func.attr in CLOCK_CALLS \
                    and isinstance(func.value, ast.Name) and func.value.id in CLOCK_MODULES:
                yield f"{func.value.id}.{func.attr}()", node.lineno


def main_guard_lines(path: Path) -> set[int]:
    """The lines inside the module's ``if __name__ == "__main__":`` blocks."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    lines: set[int] = set()
    for node in tree.body:
        if isinstance(node, ast.If) and ast.unparse(node.test) in (
                "__name__ == '__main__'", "'__main__' == __name__"):
            lines.update(range(node.lineno, (node.end_lineno or node.lineno) + 1))
    return lines


@pytest.mark.parametrize("path", core_modules(), ids=lambda path: path.name)
def test_the_core_module_owns_no_io(path: Path) -> None:
    module = path.relative_to(ROOT).as_posix()
    bad = [f"{module}:{line}: {what}" for what, line in findings(path)
           if (module, what) not in ALLOWED]
    assert not bad, "the I/O-free core uses:\n" + "\n".join(bad)


def test_the_core_is_every_module_of_protocol() -> None:
    names = {path.name for path in core_modules()}
    assert {"tracker_core.py", "peer.py", "trace.py", "session_log.py", "diagram.py"} <= names


@pytest.mark.parametrize(("module", "what"), list(ALLOWED), ids=lambda item: str(item))
def test_every_allowed_use_is_still_made(module: str, what: str) -> None:
    uses = [line for found, line in findings(ROOT / module) if found == what]
    assert uses, f"{module} no longer needs {what!r}: remove it from ALLOWED"


def test_the_command_line_of_diagram_is_reached_only_when_run() -> None:
    path = CORE / "diagram.py"
    guarded = main_guard_lines(path)
    lines = [line for found, line in findings(path) if found == "import tools.diagram_cli"]
    assert lines and all(line in guarded for line in lines)


@pytest.mark.parametrize("source", [
    "import socket", "from threading import Lock", "import sqlite3 as db",
    "def f():\n    import subprocess", "import argparse", "from os import path",
    "import time\nt = time.time()", "from time import monotonic", "import adapters.console",
    "from datetime import datetime\nnow = datetime.now()", "open('x')", "print('x')",
    "if __name__ == '__main__':\n    import tools.demo",
])
def test_the_checker_finds_what_it_looks_for(source: str, tmp_path: Path) -> None:
    path = tmp_path / "module.py"
    path.write_text(source + "\n", encoding="utf-8")
    assert list(findings(path))


def test_the_checker_lets_pure_code_through(tmp_path: Path) -> None:
    path = tmp_path / "module.py"
    path.write_text("import json\nimport time\nfrom dataclasses import dataclass\n"
                    "stamp = time.strftime('%H:%M', time.localtime(0))\n"
                    "def f(now: float) -> float:\n    return now + 1\n", encoding="utf-8")
    assert list(findings(path)) == []
