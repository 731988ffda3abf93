"""The course's full demo as one end-to-end scenario: ``tools/demo.py``'s ``run_scenario``.

The scenario is scripted once, in ``tools/demo.py`` (``make demo`` plays it); this test plays the
same script against real processes and checks what the course asks of it, from the processes'
own traces: two logical rings of three that intersect in one user (@ann -> @bea -> @cal and
@eve -> @cal -> @dan), every command used, every tracker command answered once with SUCCESS and
once with FAILURE, and everyone gone at the end.  ``run_scenario`` itself checks every answer
and every line the users print as it goes.
"""

from __future__ import annotations

from pathlib import Path

from protocol.diagram import REQUEST, Run, build
from tools.demo import LIFELINES, Demo, coverage, run_scenario
from tools.diagram_cli import read_traces


def goes_round(run: Run, step: int, ring: list[str]) -> bool:
    """Whether the messages between users in ``step`` pass along ``ring``, hop by hop, in order
    (setups and acks may come in between)."""
    hops = [(m.src, m.dst) for s in run.steps if s.number == step for m in s.messages
            if m.style == REQUEST and "tracker" not in (m.src, m.dst)]
    wanted = list(zip(ring, [*ring[1:], ring[0]], strict=True))
    position = 0
    for hop in hops:
        if position < len(wanted) and hop == wanted[position]:
            position += 1
    return position == len(wanted)


def test_course_demo(tmp_path: Path) -> None:
    transcript: list[str] = []
    demo = Demo(tmp_path, quick=True, echo=transcript.append)
    try:
        run_scenario(demo)
    finally:
        demo.stop_all()
    records = read_traces([str(path) for path in demo.traces])
    summary, missing = coverage(demo, records)
    assert not missing, "\n".join(summary)
    assert not [line for line in transcript if "Traceback" in line]

    run = build(records, order=LIFELINES)
    titles = {step.title: step.number for step in run.steps}

    def step(words: str) -> int:
        return next(number for title, number in titles.items() if title.startswith(words))

    # The two rings, intersecting in @cal; each tweet goes round and comes back to its author.
    assert goes_round(run, step("@ann tweets"), ["@ann", "@bea", "@cal"])
    assert goes_round(run, step("@eve tweets: the ring"), ["@eve", "@cal", "@dan"])
    assert goes_round(run, step("retweet"), ["@eve", "@cal", "@dan"])
    # After @cal's drop, @eve's ring is @eve -> @dan; after @dan's new login, the same.
    assert goes_round(run, step("@eve tweets after the drop"), ["@eve", "@dan"])
    assert goes_round(run, step("@eve tweets again"), ["@eve", "@dan"])

    # The authors tear their rings down when they exit: a message to each follower, answered.
    for author, followers in (("@ann", {"@bea", "@cal"}), ("@eve", {"@dan"})):
        messages = [m for s in run.steps if s.title.startswith(f"{author} exits")
                    for m in s.messages]
        told = {m.dst for m in messages if m.src == author and m.dst != "tracker"}
        answered = {m.src for m in messages if m.dst == author and m.src != "tracker"}
        assert told == answered == followers
    assert run.lifelines == LIFELINES
