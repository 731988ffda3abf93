"""`make bench` in quick mode: it runs to the end and prints every §9 figure with its baseline,
the ratio, the target and whether it was met.  The figures themselves are not judged here: a
timed test would be flaky, and SPEC §9 says performance is measured by the benchmark only."""

from __future__ import annotations

import re
import subprocess

from conftest import PYTHON, ROOT

ROWS = ["tracker requests/s, 1 session", "tracker requests/s, 10 sessions",
        "tracker CPU per request, 1 session", "tracker CPU per request, 10 sessions",
        "whole tweet, 3 followers (median)",
        "whole tweet, 5 followers (median)", "authenticated tweet, 3 followers (median)",
        "authenticated tweet, 5 followers (median)", "registrations/s, 30 sessions",
        "tracker RSS, 30 sessions online", "feed median, 2,000 tweets",
        "ttweetcl.py -d wall time", "heartbeat, 3 non-reading + 10 chatty sessions (worst)",
        "trending, 20,000 hashtag rows", "query handles first page, 2,000 accounts",
        "login reply, 500 kept messages", "login to the last kept message, 500"]


def test_bench_quick_prints_every_figure_beside_its_baseline() -> None:
    done = subprocess.run([PYTHON, "tools/bench.py", "--quick"], cwd=ROOT, capture_output=True,
                          text=True, timeout=240, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    table = done.stdout.split("\nfigure ", 1)[1]
    for figure in ROWS:
        row = re.search(rf"^{re.escape(figure)}  +(.+)$", table, re.M)
        assert row, f"no row for {figure}:\n{table}"
        cells = re.split(r"  +", row.group(1).strip())
        measured, baseline, ratio, target, verdict = cells
        assert re.fullmatch(r"[\d,.]+ \S+", measured), row.group(0)
        assert re.fullmatch(r".+: [\d,.]+ \S+", baseline), row.group(0)
        assert re.fullmatch(r"\d+\.\d\dx", ratio), row.group(0)
        assert re.fullmatch(r"(ratio )?[<>]= [\d.]+( \S+)?", target), row.group(0)
        assert verdict in ("met", "MISSED"), row.group(0)
    assert re.search(rf"^\d+ of {len(ROWS)} targets met; took \d+s$", done.stdout, re.M)
