"""adapters/output.py: queues in front of writers that may stop (SPEC §6), in one process.

Every wait has a timeout; nothing sleeps to let something happen.  A writer that "stops" is a
function blocked on an Event, or a pipe or socket that nobody reads.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import json
import os
import random
import select
import socket
import threading

import pytest

from adapters.output import (
    FloodLines,
    OutputQueue,
    Sender,
    SendQueue,
    Summariser,
    TraceFile,
    pipe_ready,
)
from adapters.trace_file import TraceWriter
from protocol.trace import TraceRecord

WAIT = 15.0


def run_in_thread(work, timeout: float = WAIT) -> None:
    """Run ``work`` and fail the test if it has not returned within ``timeout``: how a test
    tells "never waits" from "waits forever" without timing anything."""
    errors: list[BaseException] = []

    def target() -> None:
        try:
            work()
        except BaseException as error:     # reported below, not lost in the thread
            errors.append(error)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(timeout)
    assert not thread.is_alive(), "it waited for a reader that does not read"
    assert not errors, errors


# ---- OutputQueue ------------------------------------------------------------------------------
def test_lines_put_while_the_writer_is_stuck_are_dropped_counted_and_said() -> None:
    written: list[str] = []
    unblocked = threading.Event()

    def write(line: str) -> None:
        unblocked.wait(WAIT)
        written.append(line)

    output = OutputQueue(write, limit=10)
    results: list[bool] = []
    run_in_thread(lambda: results.extend(output.put(f"line {i}") for i in range(100)))
    # The writer holds one line, ten wait in the queue: the rest were dropped and counted.
    assert results.count(True) in (10, 11) and output.dropped == 100 - results.count(True)
    unblocked.set()
    assert output.flush(WAIT)
    kept = [line for line in written if line.startswith("line ")]
    assert kept == [f"line {i}" for i, ok in enumerate(results) if ok]    # in order
    assert written[-1] == f"[{100 - len(kept)} lines were dropped: the output was not read]"
    assert output.dropped == 0


def test_a_file_behind_the_queue_is_flushed_when_the_writer_catches_up() -> None:
    stream = io.StringIO()
    flushed = threading.Event()
    output = OutputQueue(lambda line: stream.write(line + "\n"), idle=flushed.set)
    output.put("one")
    assert flushed.wait(WAIT) and output.flush(WAIT)
    assert stream.getvalue() == "one\n"


def test_a_line_the_output_is_ready_for_is_written_by_the_thread_that_puts_it() -> None:
    written: list[tuple[str, threading.Thread]] = []
    output = OutputQueue(lambda line: written.append((line, threading.current_thread())),
                         ready=lambda line: True)
    assert output.put("at once")
    assert written == [("at once", threading.current_thread())]    # before put returned


def test_a_line_put_behind_a_waiting_one_waits_its_turn_though_the_output_is_ready() -> None:
    written: list[tuple[str, threading.Thread]] = []
    writing, unblocked = threading.Event(), threading.Event()
    ready = {"now": False}

    def write(line: str) -> None:
        writing.set()
        unblocked.wait(WAIT)
        written.append((line, threading.current_thread()))

    output = OutputQueue(write, ready=lambda line: ready["now"])
    output.put("first")                     # not ready: the writer thread takes it, and sticks
    assert writing.wait(WAIT)
    ready["now"] = True
    run_in_thread(lambda: output.put("second"))     # ready, but "first" is being written
    run_in_thread(lambda: output.put("third"))
    assert written == []
    unblocked.set()
    assert output.flush(WAIT)
    assert [line for line, _ in written] == ["first", "second", "third"]
    assert all(thread is not threading.current_thread() for _, thread in written)


def test_lines_from_many_threads_keep_their_order_written_at_once_or_queued() -> None:
    written: list[str] = []
    coin = random.Random(7)
    output = OutputQueue(written.append, limit=100_000, ready=lambda line: coin.random() < 0.5)

    def speaker(name: str) -> None:
        for number in range(500):
            output.put(f"{name} {number}")

    threads = [threading.Thread(target=speaker, args=(f"t{i}",)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT)
    assert output.flush(WAIT)
    for i in range(6):
        assert [line for line in written if line.startswith(f"t{i} ")] == \
            [f"t{i} {number}" for number in range(500)]
    assert len(written) == 3000


def test_a_pipe_with_room_is_ready_and_a_full_one_is_not() -> None:
    read_end, write_end = os.pipe()
    stream = os.fdopen(write_end, "w", encoding="utf-8")
    try:
        ready = pipe_ready(stream)
        assert ready is not None
        assert ready("a line") and not ready("x" * select.PIPE_BUF)    # too long to promise
        os.set_blocking(write_end, False)
        held = 0
        with contextlib.suppress(BlockingIOError):
            while True:
                held += os.write(write_end, b"x" * 4096)
        os.set_blocking(write_end, True)
        assert not ready("a line")          # a reader that stopped: the writer thread waits
        while held:
            held -= len(os.read(read_end, held))
        assert ready("a line")
    finally:
        stream.close()
        os.close(read_end)


def test_only_a_pipe_is_written_at_once(tmp_path) -> None:
    with open(tmp_path / "file", "w", encoding="utf-8") as file:
        assert pipe_ready(file) is None     # a disk may stall
    main, terminal = os.openpty()
    try:
        with os.fdopen(terminal, "w", encoding="utf-8", closefd=False) as stream:
            assert pipe_ready(stream) is None
    finally:
        os.close(main)
        os.close(terminal)
    assert pipe_ready(io.StringIO()) is None


def test_a_pipe_nobody_reads_takes_a_line_at_once_until_full_then_never_waits() -> None:
    read_end, write_end = os.pipe()
    fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, 4096)    # room for four of these lines
    stream = os.fdopen(write_end, "w", encoding="utf-8")
    writers: dict[str, str] = {}

    def write(line: str) -> None:
        writers[line[:9]] = threading.current_thread().name
        stream.write(line + "\n")
        stream.flush()

    output = OutputQueue(write, limit=10, name="pipe", ready=pipe_ready(stream))
    run_in_thread(lambda: [output.put(f"line {i:04}".ljust(1000, ".")) for i in range(1000)])
    assert writers["line 0000"] != "pipe-writer"        # the empty pipe took it at once
    reader = os.fdopen(read_end, "r", encoding="utf-8")
    lines: list[str] = []
    reading = threading.Thread(target=lambda: lines.extend(reader), daemon=True)
    reading.start()
    assert output.flush(WAIT)
    stream.close()
    reading.join(WAIT)
    kept = [line[:9] for line in lines if line.startswith("line ")]
    assert kept[0] == "line 0000" and kept == sorted(kept) and 5 <= len(kept) < 1000
    assert all(len(line) == 1001 for line in lines[:len(kept)])     # every line whole
    assert lines[-1].endswith(" lines were dropped: the output was not read]\n")
    reader.close()


# ---- TraceFile --------------------------------------------------------------------------------
def test_recording_to_a_trace_file_nobody_drains_never_waits() -> None:
    read_end, write_end = os.pipe()
    stream = os.fdopen(write_end, "w", encoding="utf-8")
    trace_file = TraceFile(stream, "tracker", limit=100)
    writer = TraceWriter(trace_file, "tracker")
    # Far more than the pipe (64 KiB) and the queue hold: without the queue this would block.
    run_in_thread(lambda: [writer.send("@a", "SUCCESS", "x" * 200) for _ in range(5000)])
    reader = os.fdopen(read_end, "r", encoding="utf-8")
    kept = dropped = notes = 0
    while kept + dropped < 5000:        # every record is in the file, or counted as dropped
        line = reader.readline()
        assert line, "the trace file ended before every record was written or counted"
        record = TraceRecord.from_json(line)             # every line is a whole record
        if record.kind == "dropped":
            assert (record.at, record.src, record.dst) == ("tracker", "tracker", "tracker")
            dropped += int(record.summary.split()[0])
            notes += 1
        else:
            kept += 1
    assert kept + dropped == 5000 and dropped > 0 and notes < 10
    stream.close()
    reader.close()


# ---- Summariser -------------------------------------------------------------------------------
def test_a_flood_of_one_kind_is_one_line_a_period_then_a_count() -> None:
    summaries = Summariser(period=1.0)
    shown = []
    for i in range(100):                     # 100 lines in the first half second
        shown += summaries.line("drop 10.0.0.1", f"dropped {i}", now=i / 200)
    shown += summaries.line("drop 10.0.0.2", "other", now=0.6)     # another kind: shown
    assert shown == ["dropped 0", "other"]
    assert summaries.pending(now=1.2) == ["dropped 99 (and 98 more like it)"]
    assert summaries.pending(now=1.7) == []        # "other" had no surplus: nothing to say
    assert summaries.line("drop 10.0.0.1", "dropped again", now=5.0) == ["dropped again"]


# ---- SendQueue and Sender ---------------------------------------------------------------------
def small_pair(buffer: int = 4096) -> tuple[socket.socket, socket.socket]:
    """A connected pair whose buffers hold little, so that a reader that does not read fills
    them with a few frames."""
    ours, theirs = socket.socketpair()
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, buffer)
    theirs.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, buffer)
    return ours, theirs


def read_lines(sock: socket.socket) -> list[bytes]:
    """Everything until the other side closes, as lines (each must end with a newline)."""
    sock.settimeout(WAIT)
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    assert data.endswith(b"\n") or not data, data[-80:]
    return data.splitlines(keepends=True)


@pytest.fixture
def sender():
    running = Sender()
    yield running
    running.stop()


def test_frames_from_any_thread_leave_whole_and_in_order(sender: Sender) -> None:
    ours, theirs = socket.socketpair()
    queue = SendQueue(ours, sender, limit=1 << 20)
    sent = []

    def put(who: str, count: int) -> None:
        for i in range(count):
            assert queue.put(f"{who} {i} {'x' * 300}\n".encode())
            sent.append(who)

    put("owner", 5)                                  # sent at once: nothing waits before them
    others = [threading.Thread(target=put, args=(f"t{n}", 300)) for n in range(4)]
    lines: list[bytes] = []
    reader = threading.Thread(target=lambda: lines.extend(read_lines(theirs)))
    reader.start()
    for thread in others:
        thread.start()
    for thread in others:
        thread.join(WAIT)
    queue.close(linger=WAIT)
    assert queue.released.is_set()
    ours.close()
    reader.join(WAIT)
    assert len(lines) == 5 + 4 * 300
    for who in ["owner", "t0", "t1", "t2", "t3"]:
        numbers = [int(line.split()[1]) for line in lines if line.split()[0] == who.encode()]
        assert numbers == sorted(numbers) and len(numbers) == sent.count(who)
    theirs.close()


def test_a_reader_that_does_not_read_costs_only_its_own_bounded_queue(sender: Sender) -> None:
    ours, theirs = small_pair()
    exceeded: list[int] = []
    queue = SendQueue(ours, sender, limit=8192, on_exceeded=exceeded.append)
    frame = b'{"push": "say", "text": "' + b"y" * 200 + b'"}\n'
    accepted = 0

    def fill() -> None:
        nonlocal accepted
        for _ in range(10_000):                  # far more than buffers and the queue hold
            if not queue.put(frame):
                return
            accepted += 1
            assert queue.waiting <= 8192 + len(frame)

    run_in_thread(fill)
    assert len(exceeded) == 1 and 0 < exceeded[0] <= 8192
    assert accepted < 10_000
    assert not queue.put(frame)                  # refused from now on, and said only once
    assert len(exceeded) == 1
    queue.put_last(b'{"re": null, "status": "FAILURE", "code": "SENDQ_EXCEEDED"}\n')
    closer = threading.Thread(target=queue.close, args=(WAIT,))
    closer.start()                               # waits for the last frame to leave
    lines = []
    reading = threading.Thread(target=lambda: lines.extend(read_lines(theirs)))
    reading.start()
    closer.join(WAIT)
    assert queue.released.is_set()
    ours.close()
    reading.join(WAIT)
    assert all(json.loads(line) for line in lines)           # whole frames only
    assert json.loads(lines[-1])["code"] == "SENDQ_EXCEEDED"
    assert all(line == frame for line in lines[:-1]) and len(lines) - 1 <= accepted
    theirs.close()


def test_a_closing_queue_gives_up_its_last_bytes_after_the_linger(sender: Sender) -> None:
    ours, theirs = small_pair()
    queue = SendQueue(ours, sender, limit=1 << 20)
    for _ in range(200):
        queue.put(b"z" * 1000 + b"\n")
    assert queue.waiting > 0                     # the reader took nothing: bytes wait
    run_in_thread(lambda: queue.close(linger=0.2))
    assert queue.released.is_set() and queue.waiting == 0
    assert not queue.put(b"late\n")
    ours.close()
    theirs.close()


def test_a_peer_that_went_away_ends_the_queue_without_an_error(sender: Sender) -> None:
    ours, theirs = socket.socketpair()
    queue = SendQueue(ours, sender, limit=1 << 20)
    theirs.close()
    queue.put(b"to nobody\n")                    # a reset or broken pipe: nobody to send to
    assert not queue.put(b"again\n")
    run_in_thread(lambda: queue.close(linger=WAIT))
    assert queue.released.is_set()
    ours.close()


def test_flood_lines_from_many_threads_say_each_kind_once_a_period() -> None:
    said: list[str] = []
    now = [0.0]
    floods = FloodLines(said.append, period=1.0, clock=lambda: now[0])
    threads = [threading.Thread(target=floods.line, args=("drop 10.0.0.1", f"drop {n}"))
               for n in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT)
    assert len(said) == 1 and said[0].startswith("drop ")
    now[0] = 1.5
    floods.tick()                           # the period is over: the rest is counted
    assert len(said) == 2 and said[1].endswith("(and 18 more like it)")


def test_when_empty_is_told_once_everything_put_has_left(sender: Sender) -> None:
    ours, theirs = small_pair()
    queue = SendQueue(ours, sender, limit=1 << 20)
    told: list[str] = []
    queue.when_empty(lambda: told.append("at once"))     # nothing waits: now, on this thread
    assert told == ["at once"]
    for _ in range(100):
        queue.put(b"w" * 1000 + b"\n")
    assert queue.waiting > 0
    emptied = threading.Event()
    queue.when_empty(lambda: (told.append("later"), emptied.set()))
    assert told == ["at once"]                           # not while bytes wait
    received = 0
    theirs.settimeout(WAIT)
    while received < 100 * 1001:                         # the reader reads: the queue empties
        received += len(theirs.recv(65536))
    assert emptied.wait(WAIT) and told == ["at once", "later"]
    queue.close(linger=WAIT)
    queue.when_empty(lambda: told.append("closed"))      # a closed queue never tells
    assert told == ["at once", "later"]
    ours.close()
    theirs.close()
