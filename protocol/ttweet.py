"""The ttweet wire format: one length-prefixed request, one length-prefixed reply.

Every frame, in both directions, is an ASCII header line followed by a body of exactly as many
bytes as the header's last field says::

    request  UPLOAD <n>\\n<n bytes: the message, UTF-8>
             DOWNLOAD 0\\n
    reply    OK <n>\\n<n bytes: the stored message for a download, nothing for an upload>
             ERROR <CODE> <n>\\n<n bytes: a sentence for people, UTF-8>

Because the body is counted rather than terminated, a message may hold anything printable:
quotes, ``#tags``, non-ASCII letters, newlines.  The limit on a message (``TTWEET_MAX``) counts
characters (code points), not bytes; the limit on a frame (``TTWEET_REQUEST_MAX``) counts bytes.

This module does no I/O.  ``ttweetsrv.py`` and ``ttweetcl.py`` hand it the bytes they receive and
send the bytes it returns.  Every decoding function either returns a typed value or raises
:class:`TtweetProtocolError` — never any other exception, whatever the bytes.
"""


from protocol.limits import TTWEET_EMPTY, TTWEET_MAX, TTWEET_REQUEST_MAX

# --- error codes (the <CODE> of an ERROR reply) ----------------------------------------------
MALFORMED = "MALFORMED"      # not a frame of this format (bad header, bad UTF-8, surplus bytes)
TOO_LARGE = "TOO_LARGE"      # the frame would be longer than TTWEET_REQUEST_MAX bytes
TOO_LONG = "TOO_LONG"        # the message has more than TTWEET_MAX characters
INCOMPLETE = "INCOMPLETE"    # the peer closed its side before a whole frame arrived
TIMEOUT = "TIMEOUT"          # no whole request arrived within TTWEET_IO_TIMEOUT seconds
INTERNAL = "INTERNAL"        # the server failed in a way it did not foresee

ERROR_CODES = (MALFORMED, TOO_LARGE, TOO_LONG, INCOMPLETE, TIMEOUT, INTERNAL)

# A header is short; bounding it lets garbage without a newline be refused after a few bytes.
HEADER_MAX = 64              # bytes in a header line, its newline included


class TtweetProtocolError(ValueError):
    """Bytes that are not a valid ttweet frame.

    ``code`` is one of :data:`ERROR_CODES` (what the server answers with), ``reason`` a sentence.
    """

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(f"{code}: {reason}")
        self.code = code
        self.reason = reason


# --- typed messages ----------------------------------------------------------------------------
class _Value:
    """A small record: equality and repr from ``__slots__`` (``dataclasses`` would add to the
    client's start-up time, which is benchmarked)."""

    __slots__ = ()

    def _fields(self) -> tuple[object, ...]:
        return tuple(getattr(self, name) for name in self.__slots__)

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other._fields() == self._fields()

    def __hash__(self) -> int:
        return hash((type(self).__name__, *self._fields()))

    def __repr__(self) -> str:
        inner = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__slots__)
        return f"{type(self).__name__}({inner})"


class UploadRequest(_Value):
    """Replace the stored message; ``""`` resets it to ``TTWEET_EMPTY``."""

    __slots__ = ("message",)

    def __init__(self, message: str) -> None:
        self.message = message


class DownloadRequest(_Value):
    """Ask for the stored message."""

    __slots__ = ()


class OkReply(_Value):
    """Success: ``message`` is the stored message for a download, ``""`` for an upload."""

    __slots__ = ("message",)

    def __init__(self, message: str = "") -> None:
        self.message = message


class ErrorReply(_Value):
    """Failure: ``code`` from :data:`ERROR_CODES`, ``reason`` a sentence for people."""

    __slots__ = ("code", "reason")

    def __init__(self, code: str, reason: str) -> None:
        self.code = code
        self.reason = reason


Request = UploadRequest | DownloadRequest
Reply = OkReply | ErrorReply


# --- validation shared by both programs -------------------------------------------------------
def message_length_problem(message: str) -> str | None:
    """``None`` when ``message`` fits in the slot, else a sentence saying why it does not."""
    if len(message) > TTWEET_MAX:
        return f"the message has {len(message)} characters, at most {TTWEET_MAX} are allowed"
    return None


# --- encoding -----------------------------------------------------------------------------------
def _frame(header_fields: list[str], body: bytes) -> bytes:
    return " ".join([*header_fields, str(len(body))]).encode("ascii") + b"\n" + body


def encode_request(request: Request) -> bytes:
    """The bytes of ``request``.  An upload is not length-checked here: callers that want to
    refuse an over-long message before sending use :func:`message_length_problem`."""
    if isinstance(request, UploadRequest):
        return _frame(["UPLOAD"], request.message.encode("utf-8"))
    return _frame(["DOWNLOAD"], b"")


def encode_reply(reply: Reply) -> bytes:
    """The bytes of ``reply``."""
    if isinstance(reply, OkReply):
        return _frame(["OK"], reply.message.encode("utf-8"))
    return _frame(["ERROR", reply.code], reply.reason.encode("utf-8"))


# --- decoding ----------------------------------------------------------------------------------
def _header_fields(header: bytes) -> list[bytes]:
    """Split a header line (newline removed) into its fields; the last must be a length."""
    if not header.isascii() or any(byte < 0x20 or byte == 0x7F for byte in header):
        raise TtweetProtocolError(MALFORMED, "the header is not printable ASCII")
    fields = header.split(b" ")
    if len(fields) < 2 or any(not field for field in fields):
        raise TtweetProtocolError(MALFORMED, "the header is not fields separated by one space")
    length = fields[-1]
    # bytes.isdigit() is ASCII-only; a leading zero would give one length two spellings.
    if not length.isdigit() or (len(length) > 1 and length.startswith(b"0")):
        raise TtweetProtocolError(MALFORMED, "the header does not end with a length")
    return fields


def _body_text(body: bytes) -> str:
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        raise TtweetProtocolError(MALFORMED, "the body is not UTF-8 text") from None


class FrameAssembler:
    """Collects the bytes of one frame as they arrive, in pieces of any size.

    ``feed`` returns the whole frame once its header and all of its body are there, and raises
    :class:`TtweetProtocolError` as soon as the bytes cannot become a frame: a header that is not
    one, a frame over ``limit`` bytes (``TOO_LARGE``, before its body is read), or bytes after the
    frame's end.  It never holds more than ``limit`` plus one piece, so memory stays flat.
    """

    def __init__(self, limit: int = TTWEET_REQUEST_MAX) -> None:
        self.limit = limit
        self._buffer = bytearray()
        self._frame_size: int | None = None   # known once the header line is complete

    @property
    def received(self) -> int:
        """Bytes fed so far."""
        return len(self._buffer)

    def feed(self, data: bytes) -> bytes | None:
        """Add ``data``; return the whole frame once it is complete, else ``None``."""
        self._buffer += data
        if self._frame_size is None:
            newline = self._buffer.find(b"\n", 0, HEADER_MAX)
            if newline < 0:
                if len(self._buffer) >= HEADER_MAX:
                    raise TtweetProtocolError(
                        MALFORMED, f"no header line within the first {HEADER_MAX} bytes")
                return None
            fields = _header_fields(bytes(self._buffer[:newline]))
            frame_size = newline + 1 + int(fields[-1])   # at most 62 digits: int() is cheap
            if frame_size > self.limit:
                raise TtweetProtocolError(
                    TOO_LARGE, f"a frame may have at most {self.limit} bytes")
            self._frame_size = frame_size
        if len(self._buffer) < self._frame_size:
            return None
        if len(self._buffer) > self._frame_size:
            raise TtweetProtocolError(MALFORMED, "bytes follow the end of the frame")
        return bytes(self._buffer)

    def close(self) -> bytes:
        """The peer closed its side: return the whole frame if it had arrived, else raise
        ``INCOMPLETE``.  (Reading loops can then end on either event with one ``return``.)"""
        if self._frame_size is None or len(self._buffer) < self._frame_size:
            raise TtweetProtocolError(
                INCOMPLETE, f"the connection closed after {len(self._buffer)} bytes, "
                            "before a whole frame")
        return bytes(self._buffer)


def _split_frame(frame: bytes) -> tuple[list[bytes], bytes]:
    """The header fields and the body of one whole frame, its length checked."""
    newline = frame.find(b"\n", 0, HEADER_MAX)
    if newline < 0:
        raise TtweetProtocolError(MALFORMED, f"no header line within the first {HEADER_MAX} bytes")
    fields = _header_fields(frame[:newline])
    body = frame[newline + 1:]
    if int(fields[-1]) != len(body):
        raise TtweetProtocolError(MALFORMED, "the body is not as long as the header says")
    return fields, body


def decode_request(frame: bytes) -> Request:
    """The request in ``frame`` (one whole frame, as :class:`FrameAssembler` returns it).

    Raises :class:`TtweetProtocolError`: ``TOO_LARGE`` for a frame over ``TTWEET_REQUEST_MAX``
    bytes, ``TOO_LONG`` for a message over ``TTWEET_MAX`` characters, ``MALFORMED`` otherwise.
    """
    if len(frame) > TTWEET_REQUEST_MAX:
        raise TtweetProtocolError(TOO_LARGE, f"a request may have at most {TTWEET_REQUEST_MAX} "
                                             "bytes")
    fields, body = _split_frame(frame)
    verb = fields[0]
    if verb == b"UPLOAD" and len(fields) == 2:
        message = _body_text(body)
        problem = message_length_problem(message)
        if problem:
            raise TtweetProtocolError(TOO_LONG, problem)
        return UploadRequest(message)
    if verb == b"DOWNLOAD" and len(fields) == 2:
        if body:
            raise TtweetProtocolError(MALFORMED, "a download request has no body")
        return DownloadRequest()
    raise TtweetProtocolError(MALFORMED, "the request is neither UPLOAD <n> nor DOWNLOAD 0")


def decode_reply(frame: bytes) -> Reply:
    """The reply in ``frame`` (one whole frame).  Raises :class:`TtweetProtocolError`."""
    if len(frame) > TTWEET_REQUEST_MAX:
        raise TtweetProtocolError(TOO_LARGE, f"a reply may have at most {TTWEET_REQUEST_MAX} "
                                             "bytes")
    fields, body = _split_frame(frame)
    verb = fields[0]
    if verb == b"OK" and len(fields) == 2:
        message = _body_text(body)
        if message_length_problem(message):
            raise TtweetProtocolError(MALFORMED, f"a message has at most {TTWEET_MAX} characters")
        return OkReply(message)
    if verb == b"ERROR" and len(fields) == 3:
        code = fields[1].decode("ascii")
        if code not in ERROR_CODES:
            raise TtweetProtocolError(MALFORMED, "the reply names an unknown error code")
        return ErrorReply(code, _body_text(body))
    raise TtweetProtocolError(MALFORMED, "the reply is neither OK <n> nor ERROR <CODE> <n>")


# --- the server's decision, without the socket ---------------------------------------------------
def serve(stored: str, request: Request) -> tuple[str, OkReply]:
    """What the slot holds after ``request`` and what the server answers.

    The caller holds the slot's lock around this call, so a download never sees half an upload.
    """
    if isinstance(request, UploadRequest):
        return (request.message or TTWEET_EMPTY), OkReply("")
    return stored, OkReply(stored)
