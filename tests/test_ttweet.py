"""protocol/ttweet.py, the ttweet codec, without sockets: bytes in, typed values out."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.limits import TTWEET_EMPTY, TTWEET_MAX, TTWEET_REQUEST_MAX
from protocol.ttweet import (
    ERROR_CODES,
    HEADER_MAX,
    INCOMPLETE,
    MALFORMED,
    TOO_LARGE,
    TOO_LONG,
    DownloadRequest,
    ErrorReply,
    FrameAssembler,
    OkReply,
    TtweetProtocolError,
    UploadRequest,
    decode_reply,
    decode_request,
    encode_reply,
    encode_request,
    message_length_problem,
    serve,
)


def protocol_error(code: str):
    """pytest.raises for a TtweetProtocolError with the given code."""
    return pytest.raises(TtweetProtocolError, match=f"^{code}: ")


# --- exact bytes ------------------------------------------------------------------------------
def test_requests_and_replies_have_the_documented_bytes() -> None:
    assert encode_request(UploadRequest("hi")) == b"UPLOAD 2\nhi"
    assert encode_request(UploadRequest("")) == b"UPLOAD 0\n"
    assert encode_request(UploadRequest("é")) == b"UPLOAD 2\n\xc3\xa9"   # length in bytes
    assert encode_request(DownloadRequest()) == b"DOWNLOAD 0\n"
    assert encode_reply(OkReply()) == b"OK 0\n"
    assert encode_reply(OkReply("Empty Message")) == b"OK 13\nEmpty Message"
    assert encode_reply(ErrorReply(TOO_LONG, "too long")) == b"ERROR TOO_LONG 8\ntoo long"


@pytest.mark.parametrize("message", [
    "message1", "", 'say "hi"', "#tags #more", "Ünïcödé ✓ 日本語", "two\nlines", "tab\there",
    "back\\slash", "é" * TTWEET_MAX, "💬" * TTWEET_MAX,
])
def test_any_printable_message_round_trips(message: str) -> None:
    assert decode_request(encode_request(UploadRequest(message))) == UploadRequest(message)
    assert decode_reply(encode_reply(OkReply(message))) == OkReply(message)


def test_download_and_error_replies_round_trip() -> None:
    assert decode_request(b"DOWNLOAD 0\n") == DownloadRequest()
    for code in ERROR_CODES:
        reply = ErrorReply(code, "why, in words")
        assert decode_reply(encode_reply(reply)) == reply


def test_the_limit_counts_characters_not_bytes() -> None:
    assert message_length_problem("ü" * TTWEET_MAX) is None
    assert "151 characters" in message_length_problem("ü" * (TTWEET_MAX + 1))
    four_byte = "😀" * TTWEET_MAX              # 600 bytes of body: still one legal message
    assert decode_request(encode_request(UploadRequest(four_byte))).message == four_byte
    with protocol_error(TOO_LONG):
        decode_request(encode_request(UploadRequest("a" * (TTWEET_MAX + 1))))


# --- refusals -----------------------------------------------------------------------------------
@pytest.mark.parametrize("frame", [
    b"",                                  # nothing
    b"hello there",                       # no header line
    b"\n",                                # empty header
    b"UPLOAD\n",                          # no length
    b"UPLOAD x\nx",                       # length not a number
    b"UPLOAD -1\n",                       # nor this
    b"UPLOAD 03\nabc",                    # leading zero
    b"UPLOAD  3\nabc",                    # two spaces
    b"UPLOAD 3\r\nabc",                   # CRLF
    b"upload 3\nabc",                     # verbs are upper case
    b"UPLOAD 3\nab",                      # body shorter than said
    b"UPLOAD 3\nabcd",                    # body longer than said
    b"UPLOAD 2\n\xff\xfe",                # not UTF-8
    b"DOWNLOAD 3\nabc",                   # a download has no body
    b"DOWNLOAD x 0\n",                    # extra field
    b"DELETE 0\n",                        # unknown verb
    b"OK 0\n",                            # a reply is not a request
    b"UPLOAD \xc3\xa9 0\n",               # header not ASCII
    b"UPLOAD\x00 0\n",                    # header with a control character
])
def test_malformed_requests_are_refused(frame: bytes) -> None:
    with protocol_error(MALFORMED):
        decode_request(frame)


def test_an_oversized_request_is_too_large() -> None:
    body = b"a" * TTWEET_REQUEST_MAX
    with protocol_error(TOO_LARGE):
        decode_request(b"UPLOAD %d\n" % len(body) + body)


@pytest.mark.parametrize("frame", [
    b"OK 2\nab\n", b"ERROR 2\nab", b"ERROR NOPE 2\nab", b"ERROR TOO_LONG\n", b"HELLO 0\n",
    b"OK 2\n\xc3(", b"UPLOAD 0\n",
    b"OK %d\n" % (TTWEET_MAX + 1) + b"a" * (TTWEET_MAX + 1),   # no server stores that much
])
def test_malformed_replies_are_refused(frame: bytes) -> None:
    with protocol_error(MALFORMED):
        decode_reply(frame)


# --- assembling frames from pieces --------------------------------------------------------------
def test_a_frame_fed_one_byte_at_a_time_completes_exactly_at_its_end() -> None:
    frame = encode_request(UploadRequest("Ünïcödé\n#tag"))
    assembler = FrameAssembler()
    results = [assembler.feed(frame[i:i + 1]) for i in range(len(frame))]
    assert results[:-1] == [None] * (len(frame) - 1)
    assert results[-1] == frame
    assert assembler.close() == frame        # the peer closing after a whole frame is fine


def test_a_frame_declared_too_large_is_refused_before_its_body_arrives() -> None:
    assembler = FrameAssembler()
    with protocol_error(TOO_LARGE):
        assembler.feed(b"UPLOAD %d\n" % TTWEET_REQUEST_MAX)
    with protocol_error(TOO_LARGE):
        FrameAssembler().feed(b"UPLOAD " + b"9" * 50 + b"\n")


def test_garbage_without_a_newline_is_refused_after_a_bounded_number_of_bytes() -> None:
    assembler = FrameAssembler()
    assert assembler.feed(b"x" * (HEADER_MAX - 1)) is None
    with protocol_error(MALFORMED):
        assembler.feed(b"x")


def test_bytes_after_the_frame_are_refused() -> None:
    with protocol_error(MALFORMED):
        FrameAssembler().feed(b"DOWNLOAD 0\nDOWNLOAD 0\n")


@pytest.mark.parametrize("received", [b"", b"UPLO", b"UPLOAD 5\nab"])
def test_closing_before_a_whole_frame_is_incomplete(received: bytes) -> None:
    assembler = FrameAssembler()
    assembler.feed(received)
    with protocol_error(INCOMPLETE):
        assembler.close()


# --- the server's decision -----------------------------------------------------------------------
def test_serve_replaces_resets_and_reads_the_slot() -> None:
    slot = TTWEET_EMPTY
    slot, reply = serve(slot, DownloadRequest())
    assert (slot, reply) == (TTWEET_EMPTY, OkReply(TTWEET_EMPTY))
    slot, reply = serve(slot, UploadRequest("message1"))
    assert (slot, reply) == ("message1", OkReply(""))
    assert serve(slot, DownloadRequest()) == ("message1", OkReply("message1"))
    assert serve(slot, UploadRequest(""))[0] == TTWEET_EMPTY


# --- properties -----------------------------------------------------------------------------------
@settings(max_examples=400)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_are_a_request_or_the_protocol_error(data: bytes) -> None:
    try:
        request = decode_request(data)
    except TtweetProtocolError as error:
        assert error.code in ERROR_CODES
    else:
        assert encode_request(request) == data   # only the one canonical spelling decodes


@settings(max_examples=400)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_are_a_reply_or_the_protocol_error(data: bytes) -> None:
    try:
        reply = decode_reply(data)
    except TtweetProtocolError as error:
        assert error.code in ERROR_CODES
    else:
        assert encode_reply(reply) == data


@settings(max_examples=300)
@given(st.sampled_from([b"UPLOAD ", b"DOWNLOAD ", b"OK ", b"ERROR TOO_LONG "]),
       st.binary(max_size=200), st.lists(st.integers(1, 40), max_size=20))
def test_arbitrary_pieces_assemble_or_raise_the_protocol_error(
        prefix: bytes, rest: bytes, cuts: list[int]) -> None:
    data = prefix + rest
    assembler = FrameAssembler()
    frame = None
    try:
        position = 0
        for size in [*cuts, len(data)]:
            frame = assembler.feed(data[position:position + size])
            position += size
            if frame is not None or position >= len(data):
                break
        if frame is None:
            frame = assembler.close()
        if prefix in (b"UPLOAD ", b"DOWNLOAD "):
            decode_request(frame)
        else:
            decode_reply(frame)
    except TtweetProtocolError as error:
        assert error.code in ERROR_CODES


@given(st.text(max_size=TTWEET_MAX))
def test_every_legal_message_round_trips_within_the_request_limit(message: str) -> None:
    frame = encode_request(UploadRequest(message))
    assert len(frame) <= TTWEET_REQUEST_MAX
    assembler = FrameAssembler()
    assert assembler.feed(frame) == frame
    assert decode_request(frame) == UploadRequest(message)
    assert decode_reply(encode_reply(OkReply(message))) == OkReply(message)


@given(st.text(min_size=TTWEET_MAX + 1, max_size=TTWEET_MAX + 40))
def test_every_over_long_message_is_too_long_on_the_server_side(message: str) -> None:
    with protocol_error(TOO_LONG):
        decode_request(encode_request(UploadRequest(message)))
