"""The command line of ``python3 -m protocol.diagram`` (SPEC §7): trace files in, a diagram out.

    python3 -m protocol.diagram tracker.jsonl alice.jsonl bob.jsonl            # Mermaid
    python3 -m protocol.diagram --text tracker.jsonl alice.jsonl bob.jsonl     # in the terminal
    python3 -m protocol.diagram --steps TRACE...                               # list the steps
    python3 -m protocol.diagram --text --step 8 TRACE...                       # one step

This module does the I/O around ``protocol.diagram`` (which is pure): it reads the files, parses
the arguments, asks the terminal for its width, and writes the result.  A bad argument or an
unreadable trace is one line on stderr and exit status 2.

    argv ──parse_args──> files ──read_traces──> records ──protocol.diagram──> text ──> stdout / -o
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from collections.abc import Sequence

from adapters import cli
from protocol.diagram import (
    DiagramError,
    Normaliser,
    Run,
    build,
    mermaid,
    parse_lines,
    render_text,
    select,
)
from protocol.trace import TraceRecord

MIN_WIDTH = 30


def read_traces(paths: Sequence[str]) -> list[TraceRecord]:
    """All records of the given files, in file order."""
    records: list[TraceRecord] = []
    for path in paths:
        try:
            with open(path, encoding="utf-8", errors="replace") as stream:
                records += parse_lines(stream, path)
        except OSError as error:
            raise DiagramError(f"cannot read {path}: {error.strerror or error}") from None
    return records


def steps_wanted(text: str) -> set[int]:
    """``8``, ``3-5`` or ``1,4,7-9`` as a set of step numbers."""
    wanted: set[int] = set()
    try:
        for part in text.split(","):
            low, _, high = part.partition("-")
            first, last = int(low), int(high or low)
            if first < 0 or last < first or last - first > 10_000:
                raise ValueError
            wanted.update(range(first, last + 1))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a step, a range of steps (3-5) or a list of them (1,4)") from None
    return wanted


seconds = cli.argument_type(cli.finite_number, "a number of seconds")
width = cli.argument_type(lambda text: cli.whole_number(text, MIN_WIDTH, 10_000),
                          f"a number of columns from {MIN_WIDTH} to 10000")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python3 -m protocol.diagram",
        description="Merge trace files (--trace-file of tracker.py, user.py, ttweetsrv.py and "
                    "ttweetcl.py) into a time-space diagram: one lifeline per process, each "
                    "message once. Mermaid sequenceDiagram by default, or text with --text.",
        epilog="example: python3 -m protocol.diagram --text tracker.jsonl alice.jsonl bob.jsonl")
    parser.add_argument("traces", nargs="+", metavar="TRACE", help="a JSON-lines trace file")
    parser.add_argument("--text", action="store_true",
                        help="draw it as text: one column per process, one arrow per message")
    parser.add_argument("--ascii", action="store_true",
                        help="with --text: ASCII characters only, no box drawing")
    parser.add_argument("--width", type=width, metavar="COLUMNS",
                        help="with --text: the width to fit (default: the terminal's)")
    parser.add_argument("--steps", action="store_true",
                        help="list the steps of a scripted run (make demo writes them) and stop")
    parser.add_argument("--step", type=steps_wanted, metavar="N",
                        help="only step N (or 3-5, or 1,4): see --steps")
    parser.add_argument("--since", type=seconds, metavar="S",
                        help="only messages S seconds or more after the first record")
    parser.add_argument("--until", type=seconds, metavar="S",
                        help="only messages at most S seconds after the first record")
    parser.add_argument("--no-acks", action="store_true", help="leave the datagram acks out")
    parser.add_argument("--normalise", action="store_true",
                        help="name ports, sequence numbers, keys and times p1, s1, k1, t1 (as "
                             "tools/demo.md does), so that reruns give the same diagram")
    parser.add_argument("-o", "--output", metavar="FILE", help="write here instead of stdout")
    return parser.parse_args(argv)


def step_list(run: Run) -> str:
    if not any(step.number for step in run.steps):
        return "no steps in these traces: they come from a scripted run such as make demo\n"
    return "".join(f"{step.number:>3}  {step.title}  ({len(step.messages)} messages)\n"
                   for step in run.steps if step.number)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        run = build(read_traces(args.traces), acks=not args.no_acks)
        if args.steps:
            text = step_list(run)
        else:
            run = select(run, args.step, args.since, args.until)
            norm = Normaliser() if args.normalise else None
            if args.text:
                columns = args.width or shutil.get_terminal_size().columns
                text = render_text(run, max(columns, MIN_WIDTH), args.ascii, norm)
            else:
                text = mermaid(run, norm)
    except DiagramError as error:
        print(f"diagram: {error}", file=sys.stderr)
        return 2
    if args.output is None:
        try:
            sys.stdout.write(text)
            sys.stdout.flush()
        except BrokenPipeError:             # e.g. piped into head: the reader has had enough
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    try:
        with open(args.output, "w", encoding="utf-8") as stream:
            stream.write(text)
    except OSError as error:
        print(f"diagram: cannot write {args.output}: {error.strerror or error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
