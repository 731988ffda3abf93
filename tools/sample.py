"""Regenerate the session log of the standard ttweet scenario (SPEC §5) with real processes.

    python3 tools/sample.py Sample.txt        # what `make sample` runs

The log file given is emptied; then, on a free port, the scenario runs: two clients while no
server is running (upload and download both fail), the server starts, and clients download,
upload an over-long message, upload two messages, each followed by a download.  Finally the
server is stopped with Ctrl-C (SIGINT).  Every client's printed line and exit status is checked
as it runs; the script exits with status 1, naming the step, if anything differs.

    ttweetsrv.py ──tools.driver.Proc──> started, waited for ("listening on port"), SIGINT
    ttweetcl.py  ──tools.driver.run───> exit status and printed line, checked, per step
    both ──append──> the log file given: the new Sample.txt
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))     # tools/

from tools.driver import TIMEOUT, Proc, Timeout, free_port, run

MESSAGE_1 = "Hello from ttweet! #first"
MESSAGE_2 = 'Second message: "quotes", #tags and Ünïcödé all pass'
OVERLONG = "0123456789" * 15 + "!"   # 151 characters: one too many

NOT_FOUND = "error: server not found, connection refused."
TOO_LONG = "message length illegal, connection refused."
UPLOADED = "Transmission Successfull..."

# (arguments after the server's address, expected exit status, expected line, its stream)
BEFORE_SERVER = [
    (["-u", MESSAGE_1], 1, NOT_FOUND, "stderr"),
    (["-d"], 1, NOT_FOUND, "stderr"),
]
WITH_SERVER = [
    (["-d"], 0, "Received Message: Empty Message", "stdout"),
    (["-u", OVERLONG], 1, TOO_LONG, "stderr"),
    (["-d"], 0, "Received Message: Empty Message", "stdout"),
    (["-u", MESSAGE_1], 0, UPLOADED, "stdout"),
    (["-d"], 0, f"Received Message: {MESSAGE_1}", "stdout"),
    (["-u", MESSAGE_2], 0, UPLOADED, "stdout"),
    (["-d"], 0, f"Received Message: {MESSAGE_2}", "stdout"),
    (["-u", OVERLONG], 1, TOO_LONG, "stderr"),
    (["-d"], 0, f"Received Message: {MESSAGE_2}", "stdout"),
]

class ScenarioFailed(Exception):
    pass


def run_client(step: int, args: list[str], status: int, line: str, stream: str,
               port: int, log: Path) -> None:
    """Run one client and check that it printed ``line`` on ``stream`` and exited ``status``."""
    done = run(["ttweetcl.py", args[0], "127.0.0.1", str(port), *args[1:], "--log", str(log)])
    printed = {"stdout": done.stdout, "stderr": done.stderr}
    expected = {"stdout": "", "stderr": ""}
    expected[stream] = line + "\n"
    shown = " ".join(args[:1] + [repr(arg) for arg in args[1:]])
    print(f"step {step:2}: ttweetcl.py {shown}\n         -> exit {done.returncode}: "
          f"{(done.stdout or done.stderr).strip()}")
    if done.returncode != status or printed != expected:
        raise ScenarioFailed(f"step {step} ({shown}): expected exit {status} and {line!r} on "
                             f"{stream}, got exit {done.returncode}, {printed}")


def start_server(port: int, log: Path) -> Proc:
    """Start the server and return once it says it is listening."""
    server = Proc(["ttweetsrv.py", str(port), "--log", str(log)], "ttweetsrv")
    try:
        line = server.expect(rf"listening on port {port}\b", TIMEOUT).string
    except Timeout:
        server.stop()
        raise ScenarioFailed(f"the server did not say it was listening: {server.text()!r}") \
            from None
    print(f"server : {line.strip()}")
    return server


def stop_server(server: Proc) -> None:
    try:
        status = server.interrupt(TIMEOUT)      # SIGINT, as Ctrl-C does
    except Timeout:
        raise ScenarioFailed("the server did not stop on SIGINT") from None
    if status != 0:
        raise ScenarioFailed(f"the server stopped with status {status}")


def run_scenario(log: Path) -> None:
    log.write_bytes(b"")
    port = free_port()
    step = 0
    for args, status, line, stream in BEFORE_SERVER:
        step += 1
        run_client(step, args, status, line, stream, port, log)
    server = start_server(port, log)
    try:
        for args, status, line, stream in WITH_SERVER:
            step += 1
            run_client(step, args, status, line, stream, port, log)
        stop_server(server)
    finally:
        server.stop()           # whatever happened: no server is left running


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python3 tools/sample.py LOG    (e.g. Sample.txt)", file=sys.stderr)
        return 2
    log = Path(argv[0]).resolve()
    try:
        run_scenario(log)
    except (ScenarioFailed, Timeout, OSError) as error:
        print(f"sample.py: the scenario failed: {error}", file=sys.stderr)
        return 1
    print(f"wrote {argv[0]}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
