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
    pipe_writer,
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


def test_a_line_the_output_takes_at_once_is_written_by_the_thread_that_puts_it() -> None:
    written: list[str] = []
    output = OutputQueue(lambda line: None, write_now=lambda line: written.append(line) or True)
    assert output.put("at once")
    assert written == ["at once"]                   # before put returned


def test_a_line_the_output_does_not_take_at_once_goes_to_the_writer_thread_first() -> None:
    written: list[tuple[str, str]] = []
    output = OutputQueue(lambda line: written.append((line, threading.current_thread().name)),
                         name="out", write_now=lambda line: False)
    output.put("later")
    assert output.flush(WAIT) and written == [("later", "out-writer")]


def test_a_line_put_while_another_is_written_waits_its_turn_and_needs_no_flush() -> None:
    written: list[tuple[str, str]] = []
    writing, unblocked, third = threading.Event(), threading.Event(), threading.Event()
    takes = {"now": False}

    def write(line: str) -> None:
        writing.set()
        unblocked.wait(WAIT)
        written.append((line, threading.current_thread().name))
        if line == "third":
            third.set()

    def write_now(line: str) -> bool:
        if takes["now"]:
            written.append((line, threading.current_thread().name))
        return takes["now"]

    output = OutputQueue(write, name="out", write_now=write_now)
    output.put("first")                 # not taken at once: the writer thread takes it, sticks
    assert writing.wait(WAIT)
    takes["now"] = True
    run_in_thread(lambda: output.put("second"))     # the output would take it: "first" is first
    run_in_thread(lambda: output.put("third"))
    assert written == []
    unblocked.set()
    assert third.wait(WAIT)                         # no flush: the writer goes on by itself
    assert written == [("first", "out-writer"), ("second", "out-writer"), ("third", "out-writer")]
    assert output.put("fourth") and written[-1] == ("fourth", threading.current_thread().name)


def test_lines_from_many_threads_keep_their_order_taken_at_once_or_queued() -> None:
    written: list[str] = []
    coin = random.Random(7)
    lock = threading.Lock()

    def write_now(line: str) -> bool:
        with lock:
            taken = coin.random() < 0.5
        if taken:
            written.append(line)
        return taken

    output = OutputQueue(written.append, limit=100_000, write_now=write_now)

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


def test_an_output_whose_reader_has_gone_or_that_fails_costs_the_line_not_the_queue() -> None:
    written: list[str] = []

    def write_now(line: str) -> bool:
        if line == "gone":
            raise BrokenPipeError
        if line == "unencodable":
            raise UnicodeEncodeError("ascii", line, 0, 1, "not ascii")
        return False

    output = OutputQueue(written.append, write_now=write_now)
    output.put("gone")                  # lost, as the writer thread's write would lose it
    output.put("unencodable")           # left to the writer thread
    output.put("after")
    assert output.flush(WAIT) and written == ["unencodable", "after"]


def test_a_pipe_writer_writes_whole_lines_while_the_pipe_has_room_and_never_waits() -> None:
    read_end, write_end = os.pipe()
    fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, 4096)
    stream = os.fdopen(write_end, "w", encoding="utf-8")
    try:
        write_now = pipe_writer(stream)
        assert write_now is not None and os.get_blocking(write_end)   # its own: unchanged
        assert write_now("a line") and os.read(read_end, 100) == b"a line\n"
        too_long = "é" * (select.PIPE_BUF // 2)      # PIPE_BUF characters, but more bytes
        assert not write_now(too_long)               # it could go in part-way: not here
        lines = 0
        while write_now(f"line {lines:04}"):        # until the pipe is full: no wait, no tear
            lines += 1
        assert 0 < lines < 4096
        assert os.read(read_end, 8192) == b"".join(b"line %04d\n" % i for i in range(lines))
        os.set_blocking(write_end, False)            # another writer fills it, to the last byte
        with contextlib.suppress(BlockingIOError):
            while True:
                os.write(write_end, b"x")
        os.set_blocking(write_end, True)
        taken: list[bool] = []
        run_in_thread(lambda: taken.append(write_now("no room")))
        assert taken == [False]
    finally:
        stream.close()
        os.close(read_end)


def test_only_a_pipe_gets_a_pipe_writer(tmp_path) -> None:
    with open(tmp_path / "file", "w", encoding="utf-8") as file:
        assert pipe_writer(file) is None             # a disk may stall
    main, terminal = os.openpty()
    try:
        with os.fdopen(terminal, "w", encoding="utf-8", closefd=False) as stream:
            assert pipe_writer(stream) is None
    finally:
        os.close(main)
        os.close(terminal)
    assert pipe_writer(io.StringIO()) is None


def test_a_pipe_nobody_reads_takes_a_line_at_once_until_full_then_never_waits() -> None:
    read_end, write_end = os.pipe()
    fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, 4096)    # room for four of these lines
    stream = os.fdopen(write_end, "w", encoding="utf-8")
    output = OutputQueue(lambda line: (stream.write(line + "\n"), stream.flush()), limit=10,
                         write_now=pipe_writer(stream))
    run_in_thread(lambda: [output.put(f"line {i:04}".ljust(1000, ".")) for i in range(1000)])
    reader = os.fdopen(read_end, "r", encoding="utf-8")
    lines: list[str] = []

    def read_to_the_drop_note() -> None:    # the pipe writer's own descriptor keeps it open
        while not lines or not lines[-1].endswith("not read]\n"):
            lines.append(reader.readline())

    reading = threading.Thread(target=read_to_the_drop_note, daemon=True)
    reading.start()
    assert output.flush(WAIT)
    reading.join(WAIT)
    assert not reading.is_alive()
    stream.close()
    kept = [line[:9] for line in lines if line.startswith("line ")]
    assert kept[:4] == ["line 0000", "line 0001", "line 0002", "line 0003"]    # taken at once
    assert kept == sorted(kept) and len(kept) < 1000
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
