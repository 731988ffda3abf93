"""Tests of protocol.diagram: trace records in, a diagram model, Mermaid and text out.

The unit tests build records by hand; the last test runs a tracker and three users, each writing
its own ``--trace-file``, and checks the text diagram of their run message by message.  The
tests look at structure (who sent what to whom, in which order, whole labels, widths), not at
today's datagram fields, which the protocol may change.
"""

from __future__ import annotations

import json
import random
import re
from collections import Counter
from pathlib import Path

import pytest
from conftest import Cluster, Tweeter
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.diagram import (
    ASCII,
    MERMAID_WRAP,
    PUSH,
    REPLY,
    REQUEST,
    UNICODE,
    WORD_MAX,
    DiagramError,
    Message,
    Normaliser,
    Run,
    aliases,
    arrow_style,
    build,
    cells,
    label_text,
    label_words,
    mermaid,
    mermaid_ids,
    parse_lines,
    parse_summary,
    render_text,
    select,
    text_width_needed,
    wrap,
)
from protocol.trace import TraceRecord


def rec(t: float, at: str, direction: str, src: str, dst: str, kind: str,
        summary: str = "") -> TraceRecord:
    return TraceRecord(t, at, direction, src, dst, kind, summary)


def send(t: float, src: str, dst: str, kind: str, summary: str = "") -> TraceRecord:
    return rec(t, src, "send", src, dst, kind, summary)


def recv(t: float, src: str, dst: str, kind: str, summary: str = "") -> TraceRecord:
    return rec(t, dst, "recv", src, dst, kind, summary)


def both(t: float, src: str, dst: str, kind: str, summary: str = "") -> list[TraceRecord]:
    """A datagram traced the same way at both ends."""
    return [send(t, src, dst, kind, summary), recv(t + 0.0001, src, dst, kind, summary)]


def mark(t: float, kind: str = "mark", summary: str = "") -> TraceRecord:
    return rec(t, "demo", "send", "demo", "demo", kind, summary)


def hops(run: Run) -> list[tuple[str, str, str]]:
    return [(m.src, m.dst, m.kind) for m in run.messages]


# ---- reading ---------------------------------------------------------------------------------
def test_parse_lines_reads_records_and_skips_blank_lines() -> None:
    line = send(1.5, "@a", "tracker", "follow", "follow @a @b").to_json()
    records = parse_lines([line, "", "   \n", line])
    assert len(records) == 2
    assert records[0] == TraceRecord(1.5, "@a", "send", "@a", "tracker", "follow", "follow @a @b")


@pytest.mark.parametrize("bad", ["{not json", "[1, 2]", '{"t": 1}',
                                 '{"t": 1, "at": "a", "dir": "sideways", "from": "a", '
                                 '"to": "b", "kind": "k"}'])
def test_a_bad_line_names_its_file_and_line(bad: str) -> None:
    good = send(1, "@a", "tracker", "online").to_json()
    with pytest.raises(DiagramError, match=r"^run\.jsonl:2: "):
        parse_lines([good, bad], "run.jsonl")


# ---- names -----------------------------------------------------------------------------------
def test_the_first_alias_of_a_name_wins_and_chains_are_followed() -> None:
    records = [send(3, "127.0.0.1:1", "@late", "alias"),
               send(1, "127.0.0.1:1", "@alice", "alias"),
               send(2, "@alice", "@ally", "alias"),
               send(4, "x", "y", "alias"), send(5, "y", "x", "alias")]
    names = aliases(records)
    assert names["127.0.0.1:1"] == "@ally"
    assert names["@alice"] == "@ally"
    assert names["x"] in ("x", "y") and names["y"] in ("x", "y")     # a cycle ends


def test_an_alias_renames_a_lifeline_in_every_record() -> None:
    records = [send(1, "tracker", "127.0.0.1:9", "push:welcome"),
               rec(2, "127.0.0.1:9", "send", "127.0.0.1:9", "tracker", "register"),
               send(3, "tracker", "@alice", "SUCCESS"),
               send(3.5, "tracker", "127.0.0.1:9", "push:x"),
               rec(4, "127.0.0.1:9", "send", "127.0.0.1:9", "@alice", "alias")]
    run = build(records)
    assert hops(run) == [("tracker", "@alice", "push:welcome"), ("@alice", "tracker", "register"),
                         ("tracker", "@alice", "SUCCESS"), ("tracker", "@alice", "push:x")]
    assert run.lifelines == ("tracker", "@alice")


# ---- messages --------------------------------------------------------------------------------
def test_a_message_traced_at_both_ends_is_drawn_once_from_its_send_record() -> None:
    records = [send(1.0, "@a", "tracker", "follow", "follow {'follower': '@a'}"),
               recv(1.1, "@a", "tracker", "follow", '{"id":2,"cmd":"follow"}'),
               send(1.2, "tracker", "@a", "SUCCESS", '{"re":2,"status":"SUCCESS","message":"ok"}'),
               recv(1.3, "tracker", "@a", "SUCCESS", '{"re":2}')]
    run = build(records)
    assert hops(run) == [("@a", "tracker", "follow"), ("tracker", "@a", "SUCCESS")]
    assert [m.t for m in run.messages] == [1.0, 1.2]
    assert all(m.delivered for m in run.messages)


def test_a_recv_record_stands_for_a_message_whose_sender_wrote_no_trace() -> None:
    # Only the tracker's file: what the users sent is known from the tracker's recv records.
    records = [recv(1, "@a", "tracker", "online", '{"id":1,"cmd":"online"}'),
               send(2, "tracker", "@a", "SUCCESS", '{"re":1,"status":"SUCCESS","message":"1"}'),
               recv(3, "127.0.0.1:5", "tracker", "BAD_FRAME", "garbage")]
    run = build(records)
    assert hops(run) == [("@a", "tracker", "online"), ("tracker", "@a", "SUCCESS"),
                         ("127.0.0.1:5", "tracker", "BAD_FRAME")]
    assert [m.delivered for m in run.messages] == [True, None, True]


def test_resends_of_a_datagram_are_one_message_and_a_never_received_one_is_lost() -> None:
    records = [send(1, "@a", "@b", "setup", "setup ring=@a seq=7"),
               send(2, "@a", "@b", "setup", "setup ring=@a seq=7"),      # resent
               recv(2.1, "@a", "@b", "setup", "setup ring=@a seq=7"),
               *both(2.2, "@b", "@a", "ack", "ack seq=7"),
               send(3, "@a", "@b", "teardown", "teardown ring=@a seq=8"),
               send(4, "@a", "@b", "teardown", "teardown ring=@a seq=8"),
               send(5, "@a", "@b", "teardown", "teardown ring=@a seq=8"),
               send(6, "@a", "@c", "tweet", "tweet seq=9")]             # @c wrote no trace
    run = build(records)
    assert [(m.kind, m.copies, m.delivered) for m in run.messages] == [
        ("setup", 2, True), ("ack", 1, True), ("teardown", 3, False), ("tweet", 1, None)]
    assert label_text(run.messages[2]) == "teardown ring=@a seq=8 (sent 3 times)"
    assert label_text(run.messages[2], Normaliser()) == "teardown ring=@a seq=s1 (resent)"


def test_identical_requests_are_not_taken_for_resends() -> None:
    # Two logouts in a row say the same words, and carry no sequence number: two messages.
    records = [send(1, "@a", "tracker", "logout", "logout {}"),
               recv(1.1, "@a", "tracker", "logout", '{"id":1,"cmd":"logout"}'),
               send(2, "@a", "tracker", "logout", "logout {}"),
               recv(2.1, "@a", "tracker", "logout", '{"id":2,"cmd":"logout"}')]
    assert [m.copies for m in build(records).messages] == [1, 1]


def test_no_acks_leaves_the_acks_out() -> None:
    records = [send(1, "@a", "@b", "setup", "seq=1"), send(2, "@b", "@a", "ack", "ack seq=1"),
               send(3, "@a", "@b", "tweet", "seq=2")]
    assert [m.kind for m in build(records).messages] == ["setup", "ack", "tweet"]
    assert [m.kind for m in build(records, acks=False).messages] == ["setup", "tweet"]


@pytest.mark.parametrize(("kind", "style"), [
    ("follow", REQUEST), ("tweet", REQUEST), ("setup", REQUEST), ("BAD_FRAME", REQUEST),
    ("SUCCESS", REPLY), ("FAILURE UNKNOWN_HANDLE", REPLY), ("ack", REPLY), ("OK", REPLY),
    ("ERROR TOO_LARGE", REPLY), ("push:welcome", PUSH), ("push:presence", PUSH)])
def test_arrow_styles(kind: str, style: str) -> None:
    assert arrow_style(kind) == style


# ---- order -----------------------------------------------------------------------------------
def test_without_marks_messages_are_in_time_order_across_files() -> None:
    tracker = [send(2.0, "tracker", "@a", "SUCCESS"), send(5.0, "tracker", "@b", "push:say")]
    alice = [send(1.0, "@a", "tracker", "say"), send(3.0, "@a", "@b", "tweet"),
             send(3.0, "@a", "@c", "tweet")]
    assert hops(build(tracker + alice)) == [
        ("@a", "tracker", "say"), ("tracker", "@a", "SUCCESS"), ("@a", "@b", "tweet"),
        ("@a", "@c", "tweet"), ("tracker", "@b", "push:say")]


def ring_round(order: list[str]) -> list[TraceRecord]:
    """@a sets up @b and @c at once, then tweets around: the records of each writer in the
    order given by ``order`` for the two setup acks (the machine's choice)."""
    records = [mark(0.0), send(1, "@a", "tracker", "tweet", "tweet {'text': 'hi'}"),
               recv(1.1, "@a", "tracker", "tweet", '{"id":1,"cmd":"tweet"}'),
               send(1.2, "tracker", "@a", "SUCCESS", '{"status":"SUCCESS","message":"go"}'),
               recv(1.3, "tracker", "@a", "SUCCESS", "{}"),
               *both(2.0, "@a", "@b", "setup", "setup seq=1"),
               *both(2.1, "@a", "@c", "setup", "setup seq=2")]
    acks = {"@b": both(2.5, "@b", "@a", "ack", "ack seq=1"),
            "@c": both(2.5, "@c", "@a", "ack", "ack seq=2")}
    for name in order:
        records += acks[name]
    records += [*both(3.0, "@a", "@b", "tweet", "tweet seq=3"),
                *both(3.1, "@b", "@a", "ack", "ack seq=3"),
                *both(3.2, "@b", "@c", "tweet", "tweet seq=4"),
                *both(3.3, "@c", "@b", "ack", "ack seq=4"),
                *both(3.4, "@c", "@a", "tweet", "tweet seq=5")]
    return records


def test_concurrent_messages_are_drawn_in_the_same_order_whatever_the_machine_did() -> None:
    first = build(ring_round(["@b", "@c"]))
    second = build(ring_round(["@c", "@b"]))
    assert hops(first) == hops(second) == [
        ("@a", "tracker", "tweet"), ("tracker", "@a", "SUCCESS"),
        ("@a", "@b", "setup"), ("@a", "@c", "setup"),          # sent together ...
        ("@b", "@a", "ack"), ("@c", "@a", "ack"),              # ... answered together
        ("@a", "@b", "tweet"), ("@b", "@a", "ack"), ("@b", "@c", "tweet"),
        ("@c", "@b", "ack"), ("@c", "@a", "tweet")]


def test_an_ack_that_races_the_next_datagram_to_another_peer_does_not_move_it() -> None:
    def run(ack_first: bool) -> list[tuple[str, str, str]]:
        teardown = send(1.0, "@a", "@c", "teardown", "teardown seq=1")
        ack = [send(1.05, "@c", "@a", "ack", "ack seq=1"), recv(1.1, "@c", "@a", "ack",
                                                                "ack seq=1")]
        tweet = send(1.2 if ack_first else 1.08, "@a", "@b", "tweet", "tweet seq=2")
        records = [mark(0.0), teardown, recv(1.01, "@a", "@c", "teardown", "teardown seq=1"),
                   *([*ack, tweet] if ack_first else [tweet, *ack]),
                   recv(1.3, "@a", "@b", "tweet", "tweet seq=2"),
                   send(1.4, "@a", "tracker", "end-tweet", "end-tweet {}")]
        return hops(build(records))
    assert run(ack_first=True) == run(ack_first=False)
    assert run(True)[-1] == ("@a", "tracker", "end-tweet")     # sent once every ack was in


def test_marks_order_what_a_script_did_one_after_the_other() -> None:
    # @b's command was typed after @a's; no message links them, the marks do.
    records = [mark(0.0), send(1.0, "@b", "tracker", "online"), mark(1.5),
               send(2.0, "@a", "tracker", "online")]
    order = ("tracker", "@a", "@b")
    assert [m.src for m in build(records, order=order).messages] == ["@b", "@a"]
    # In one segment, concurrent messages go by lifeline, whatever their times.
    assert [m.src for m in build(records[:2] + records[3:], order=order).messages] == \
        ["@a", "@b"]


def test_steps_group_the_messages_and_select_picks_steps_or_a_time_window() -> None:
    records = [send(0.5, "@a", "tracker", "hello"), mark(1.0, "step", "register"),
               send(2.0, "@a", "tracker", "register"), mark(3.0, "step", "help"),
               mark(4.0, "step", "follow"), send(5.0, "@b", "tracker", "follow")]
    run = build(records)
    assert [(s.number, s.title, len(s.messages)) for s in run.steps] == [
        (0, "", 1), (1, "register", 1), (2, "help", 0), (3, "follow", 1)]
    assert hops(select(run, {3})) == [("@b", "tracker", "follow")]
    assert select(run, {3}).lifelines == ("tracker", "@b")
    assert hops(select(run, since=1.0, until=4.0)) == [("@a", "tracker", "register")]
    with pytest.raises(DiagramError, match="no step 9 in these traces"):
        select(run, {9})


def test_lifelines_follow_the_given_order_then_appearance() -> None:
    records = [send(1, "@zed", "tracker", "x"), send(2, "@ann", "@zed", "y")]
    assert build(records).lifelines == ("tracker", "@zed", "@ann")
    assert build(records, order=("tracker", "@ann")).lifelines == ("tracker", "@ann", "@zed")


# ---- labels ----------------------------------------------------------------------------------
def message(kind: str, summary: str, **fields: object) -> Message:
    return Message(1.0, "@a", "@b", kind, summary, **fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(("kind", "summary", "label"), [
    ("SUCCESS", '{"re":3,"status":"SUCCESS","message":"@bob now follows @alice"}',
     "SUCCESS: @bob now follows @alice"),
    ("FAILURE UNKNOWN_HANDLE", '{"re":3,"status":"FAILURE","code":"UNKNOWN_HANDLE",'
     '"message":"@zed is not registered"}\n', "FAILURE UNKNOWN_HANDLE: @zed is not registered"),
    ("push:presence", '{"push":"presence","handle":"@a","online":false}',
     "push:presence handle=@a online=false"),
    ("follow", '{"id":4,"cmd":"follow","follower":"@b","followee":"@a"}',
     "follow follower=@b followee=@a"),
    ("follow", "follow {'follower': '@b', 'followee': '@a'}", "follow follower=@b followee=@a"),
    ("setup", "setup ring=@a left=@a right=@c seq=7", "setup ring=@a left=@a right=@c seq=7"),
    ("ack", "ack seq=7", "ack seq=7"),
    ("logout", "logout {}", "logout"),
    ("tweet", "tweet {'text': 'hello ring #one'}", 'tweet text="hello ring #one"'),
    ("BAD_REQUEST", '{"id":2,"cmd":"auth"}', "BAD_REQUEST cmd=auth"),
    ("UPLOAD", "UPLOAD 8\nmessage1", "UPLOAD 8\\nmessage1"),
])
def test_labels_show_the_kind_and_the_fields(kind: str, summary: str, label: str) -> None:
    assert label_text(message(kind, summary)) == label


def test_keys_show_eight_characters_and_long_words_are_shortened_whole() -> None:
    key = "qpWbzdgiwiB7Erh7EULY7K601U8EsUBr628hsbXpnkyCsflTEjOaF3xlS0vj2YT+m33NHZUzagA8cOTwS1M0Zg=="
    summary = f"register {{'handle': '@a', 'key': {key!r}, 'text': {'x' * 141!r}}}"
    words = label_words(message("register", summary))
    assert "key=qpWbzdgi…" in words
    assert " ".join(words[-3:]) == "text=xxxxxxxxxxxxxxxx… (141 characters)"
    assert all(cells(w) <= WORD_MAX for w in words)


def test_control_characters_in_a_label_are_shown_escaped() -> None:
    words = label_words(message("push:say", json.dumps(
        {"push": "say", "text": "a\x1b[31mred\nline"})))
    assert "\x1b" not in " ".join(words) and "\\x1b[31mred\\nline" in " ".join(words)


def test_the_normaliser_names_ports_sequence_numbers_keys_and_times_in_order() -> None:
    norm = Normaliser()
    register = message("register", "register {'ports': [40211, 40212, 40213], "
                                   "'key': 'AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwd'}")
    assert label_text(register, norm) == "register ports=[p1,p2,p3] key=k1"
    reply = message("SUCCESS", '{"status":"SUCCESS","message":"at 127.0.0.1 ports 40211 '
                               '40212 40213; from 127.0.0.1:5555"}')
    assert label_text(reply, norm) == "SUCCESS: at 127.0.0.1 ports p1 p2 p3; from 127.0.0.1:p4"
    kept = message("push:message", '{"push":"message","created":1763700000.25,"seq":99}')
    assert label_text(kept, norm) == "push:message created=t1 seq=s1"
    # The kernel may hand a port number out again: a new registration gets new names.
    again = message("login", "login {'ports': [40211, 40300, 40301]}")
    assert label_text(again, norm) == "login ports=[p5,p6,p7]"
    assert label_text(again, norm) == "login ports=[p5,p6,p7]"     # the same message: the same
    assert norm.text("ports: left=40211") == "ports: left=p5"


def test_wrapping_breaks_between_words_only() -> None:
    words = ["tweet", "handle=@ann", 'text="hello', "from", "@ann", '#demo"', "seq=1462986726"]
    for width in range(WORD_MAX, 80):
        lines = wrap(words, width)
        assert all(cells(line) <= width for line in lines)
        assert " ".join(lines).split() == words


def test_cells_counts_wide_characters_twice() -> None:
    assert cells("abc") == 3 and cells("日本") == 4 and cells("e\u0301") == 1


# ---- Mermaid ---------------------------------------------------------------------------------
def test_mermaid_names_participants_readably_and_marks_lost_messages() -> None:
    records = [*both(1, "@bob", "tracker", "online"),
               *both(2, "tracker", "@bob", "SUCCESS", '{"status":"SUCCESS","message":"1"}'),
               *both(3, "@bob", "@alice", "message", "message id=1 sender=@bob seq=9"),
               *both(4, "@alice", "@bob", "ack", "ack seq=9"),
               *both(5, "tracker", "@alice", "push:say", '{"push":"say","sender":"@bob"}'),
               send(6, "@bob", "@end", "teardown", "teardown seq=10"),
               *both(7, "@end", "tracker", "online")]    # @end writes a trace: the loss shows
    assert mermaid(build(records)).splitlines() == [
        "sequenceDiagram",
        "    participant tracker",
        "    participant bob as @bob",
        "    participant alice as @alice",
        "    participant p_end as @end",
        "    bob->>tracker: online",
        "    tracker-->>bob: SUCCESS: 1",
        "    bob->>alice: message id=1 sender=@bob seq=9",
        "    alice-->>bob: ack seq=9",
        "    tracker-)alice: push:say sender=@bob",
        "    bob-xp_end: teardown seq=10",
        "    p_end->>tracker: online",
    ]


def test_mermaid_labels_are_safe_whole_and_wrapped() -> None:
    text = 'a;b #tag <b>x</b> ' + " ".join(["word"] * 30)
    run = build([send(1, "@a", "tracker", "say", f"say {{'text': {text!r}}}")])
    body = mermaid(run).splitlines()[-1]
    shown = body.split(": ", 1)[1]
    assert not re.search(r"[;#<>]", re.sub(r"#\d+;|<br/>", "", shown))
    lines = shown.split("<br/>")
    assert len(lines) > 1 and all(len(re.sub(r"#\d+;", "x", line)) <= MERMAID_WRAP
                                  for line in lines)
    assert " ".join(lines).replace("#59;", ";").replace("#35;", "#").replace(
        "#60;", "<").replace("#62;", ">") == label_text(run.messages[0])


def test_mermaid_ids_are_unique_and_never_keywords() -> None:
    ids = mermaid_ids(["@end", "end", "127.0.0.1:5", "@a-b", "@a_b", "tracker"])
    assert len(set(ids.values())) == 6
    assert all(re.fullmatch(r"[A-Za-z]\w*", i) and i.lower() != "end" for i in ids.values())


def test_mermaid_notes_each_step() -> None:
    records = [mark(1, "step", "one; two"), send(2, "@a", "tracker", "x")]
    assert "    Note over tracker,a: step 1: one#59; two" in mermaid(build(records)).splitlines()


# ---- text ------------------------------------------------------------------------------------
def random_run(seed: int) -> Run:
    rng = random.Random(seed)
    names = ["tracker", "@ann", "@bea", "@cal", "@dan", "@eve", "@fitzgeraldine"]
    records = []
    for i in range(40):
        src, dst = rng.sample(names, 2)
        kind = rng.choice(["tweet", "SUCCESS", "push:say", "ack", "setup"])
        words = " ".join(rng.choice(["hello", "日本語", "ring=@ann", "x" * 30, "seq=123456789"])
                         for _ in range(rng.randint(0, 12)))
        records.append(send(i, src, dst, kind, f"{kind} {words}"))
    return build(records)


@pytest.mark.parametrize("width", [40, 57, 80, 132])
@pytest.mark.parametrize("ascii_only", [False, True])
def test_the_text_diagram_fits_the_width_and_ascii_is_ascii(width: int, ascii_only: bool) -> None:
    for seed in range(5):
        text = render_text(random_run(seed), width, ascii_only)
        assert all(cells(line) <= width for line in text.splitlines())
        if ascii_only:
            assert all(ord(c) < 128 for c in text.replace("日本語", ""))     # the text's own


def test_the_text_diagram_draws_each_arrow_between_its_lifelines() -> None:
    records = [*both(1, "@a", "tracker", "register", "register {'handle': '@a'}"),
               *both(2, "tracker", "@a", "SUCCESS", '{"status":"SUCCESS","message":"ok"}'),
               *both(3, "tracker", "@b", "push:say", '{"push":"say"}'),
               send(4, "@a", "@b", "teardown", "teardown seq=1"), recv(5, "@x", "@b", "z")]
    lines = render_text(build(records), 60, legend=False).splitlines()
    assert lines[0].split() == ["tracker", "@a", "@b", "@x"]
    t, a, b, x = (lines[0].index(name) + (len(name) - 1) // 2 for name in lines[0].split())
    arrows = [line for line in lines if re.search(r"[▶◀▷◁✕]", line)]
    assert len(arrows) == 5
    assert arrows[0][t:a + 1] == "│◀" + "─" * (a - t - 2) + "┤"
    assert arrows[1][t:a + 1] == "├" + "╌" * (a - t - 2) + "▶│"
    assert arrows[2][t:b + 1] == "├" + "─" * (a - t - 1) + "┼" + "─" * (b - a - 2) + "▷│"
    assert arrows[3][a:b + 1] == "├" + "─" * (b - a - 2) + "✕│"    # @b traced, never got it
    assert arrows[4][b:x + 1] == "│◀" + "─" * (x - b - 2) + "┤"
    assert lines[lines.index(arrows[0]) + 1].split() == ["│", "register", "handle=@a", "│", "│"]


def test_glyph_sets_have_the_same_shape() -> None:
    for glyphs in (UNICODE, ASCII):
        assert all(cells(c) == 1 for c in (glyphs.bar, glyphs.cross, glyphs.lost, glyphs.rule,
                                           *glyphs.tail, *glyphs.body.values(),
                                           *(h for pair in glyphs.head.values() for h in pair)))


def test_too_narrow_a_width_is_an_error_not_a_mess() -> None:
    run = random_run(1)
    needed = text_width_needed(run)
    with pytest.raises(DiagramError, match=f"columns are too few for 7 lifelines .at least "
                                           f"{needed}"):
        render_text(run, needed - 1)
    assert all(cells(line) <= needed for line in render_text(run, needed).splitlines())


def test_a_json_frame_cut_short_still_gives_its_first_fields() -> None:
    # user.py traces the first 200 characters of what the tracker sends it.
    cut = '{"re":2,"status":"SUCCESS","message":"tweet #1 of @a goes to 2 followers","tid":1,"fo'
    assert label_text(message("SUCCESS", cut)) == "SUCCESS: tweet #1 of @a goes to 2 followers"
    assert label_text(message("push:say", '{"push":"say","sender":"@b","text":"a \\"q')) == \
        "push:say sender=@b"


def test_parse_summary_reads_pairs_only_before_the_sentence() -> None:
    label = parse_summary("note", "note a=1 b=2 then c=3")
    assert label.fields == (("a", "1"), ("b", "2")) and label.text == "then c=3"


NAMES = st.sampled_from(["tracker", "@a", "@b", "127.0.0.1:5", "demo", "日本"])
SUMMARIES = st.one_of(
    st.text(max_size=60),
    st.sampled_from(['{"re":1,"status":"SUCCESS","message":"ok"}', '{"push":"say","t":1e10}',
                     "setup ring=@a seq=7", "ack seq=7", "x {'ports': [1, 2], 'key': 'AB12"
                     "CDEF34567890abcd'}", '{"status":"FAILURE","message":"no', "{'a': [1"]))
RECORDS = st.lists(st.builds(
    TraceRecord, st.floats(0, 100), NAMES, st.sampled_from(["send", "recv"]), NAMES, NAMES,
    st.sampled_from(["alias", "step", "mark", "ack", "SUCCESS", "push:x", "setup", "tweet"]),
    SUMMARIES), max_size=30)


@settings(max_examples=150, deadline=None)
@given(RECORDS, st.integers(30, 120), st.booleans())
def test_any_records_draw_without_error(records: list[TraceRecord], width: int,
                                        normalise: bool) -> None:
    run = build(records)
    norm = Normaliser() if normalise else None
    assert mermaid(run, norm).startswith("sequenceDiagram\n")
    width = max(width, text_width_needed(run))
    assert all(cells(line) <= width for line in render_text(run, width, norm=norm).splitlines())
    assert len(run.messages) <= sum(1 for r in records if r.kind not in ("alias", "step",
                                                                          "mark"))


# ---- a real run ------------------------------------------------------------------------------
def raw_records(paths: list[Path]) -> list[dict]:
    return [json.loads(line) for path in paths
            for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def test_the_text_diagram_of_a_real_run_shows_each_message_once_in_order(
        cluster: Cluster, tmp_path: Path) -> None:
    files = {name: tmp_path / f"{name.strip('@')}.jsonl" for name in ("tracker", "@a", "@b", "@c")}
    net = Tweeter(cluster)
    net.tracker("-q", "--trace-file", str(files["tracker"]))
    users = {}
    # A generous hop timeout and give-up (the tests' default gives up after half a second):
    # no resends and nobody skipped on a busy machine.
    for handle in ("@a", "@b", "@c"):
        users[handle] = net.user(handle, "-q", "--hop-timeout", "2", "--give-up", "10",
                                 "--trace-file", str(files[handle]))
        users[handle].register(handle)
    users["@b"].ok("follow @b @a")
    users["@c"].ok("follow @c @a")
    users["@a"].expect(r"you were followed by @c")
    users["@a"].tweet("@a", "hello ring; #one <two> " + "word " * 20)
    users["@c"].expect(r"^tweet #1 by @a via @b: ")
    for user in users.values():
        user.send("quit")
        assert user.wait() == 0
    net.tracker_proc.interrupt()      # type: ignore[union-attr]

    records = parse_lines("".join(path.read_text(encoding="utf-8") for path in files.values())
                          .splitlines())
    run = build(records)

    # Independently: every message is one send record, named by the aliases, in time order.
    raw = raw_records(list(files.values()))
    names: dict[str, str] = {}
    for r in sorted((r for r in raw if r["kind"] == "alias"), key=lambda r: r["t"]):
        names.setdefault(r["from"], r["to"])
    sends = sorted((r for r in raw if r["dir"] == "send" and r["kind"] != "alias"),
                   key=lambda r: r["t"])
    expected = [(names.get(r["from"], r["from"]), names.get(r["to"], r["to"]), r["kind"])
                for r in sends]
    assert hops(run) == expected
    assert run.lifelines == ("tracker", "@a", "@b", "@c")
    received = Counter((names.get(r["from"], r["from"]), names.get(r["to"], r["to"]), r["kind"])
                       for r in raw if r["dir"] == "recv")
    assert received == Counter(hops(run)), "each message drawn once, and each one received"
    ring = [(m.src, m.dst) for m in run.messages if m.kind == "tweet" and "tracker" not in
            (m.src, m.dst)]
    assert ring == [("@a", "@b"), ("@b", "@c"), ("@c", "@a")]

    # The text diagram: within the width, one arrow per message in this order, labels whole.
    for width in (60, 100):
        lines = render_text(run, width, legend=False).splitlines()
        assert all(cells(line) <= width for line in lines)
        columns = {name: lines[0].index(name) + (len(name) - 1) // 2 for name in run.lifelines}
        arrows = [i for i, line in enumerate(lines) if re.search(r"[▶◀▷◁✕]", line)]
        assert len(arrows) == len(run.messages)
        for m, i, end in zip(run.messages, arrows, [*arrows[1:], len(lines)], strict=True):
            low, high = sorted((columns[m.src], columns[m.dst]))
            assert set(lines[i][low + 1:high]) <= {"─", "╌", "┼", "▶", "◀", "▷", "◁"}, lines[i]
            assert text_under(lines[i + 1:end], set(columns.values())) == label_text(m)


def text_under(lines: list[str], columns: set[int]) -> str:
    """The words of the lines under an arrow, the lifelines' bars left out."""
    words = []
    for line in lines:
        kept = "".join(" " if x in columns and ch == "│" else ch for x, ch in enumerate(line))
        words += kept.split()
    return " ".join(words)
