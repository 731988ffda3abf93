"""The ttweet client, behind ``ttweetcl.py``: check the arguments, send one request, print and
log the reply (the data flow is in ``ttweetcl.py``'s docstring).

It lives in a module rather than in the program file because Python compiles the file it runs
on every start but keeps the bytecode of the modules it imports: compiling this much source was
the largest part of the client's start-up, which is benchmarked against ``python3 -c pass``.
For the same reason it imports only what the job needs (``_socket``, not ``socket``; no
``typing``, ``argparse`` only for ``-h`` and mistakes, no ``from __future__``).
"""

import _socket
import os
import sys
import time

from protocol.address import is_ipv4_address, parse_port
from protocol.limits import TTWEET_IO_TIMEOUT
from protocol.session_log import CLIENT, ERROR, GENERAL, report_line
from protocol.text import escape_for_terminal
from protocol.ttweet import (
    TOO_LONG,
    DownloadRequest,
    ErrorReply,
    FrameAssembler,
    Reply,
    Request,
    TtweetProtocolError,
    UploadRequest,
    decode_reply,
    encode_request,
    message_length_problem,
)

TYPE_CHECKING = False     # typing itself costs milliseconds of start-up; checkers know this name
if TYPE_CHECKING:
    import argparse

    from adapters.trace_file import TraceWriter

RECV_SIZE = 4096

# The user-facing lines of SPEC §5, word for word (the spelling of "Successfull" included).
UPLOAD_DONE = "Transmission Successfull..."
DOWNLOAD_DONE = "Received Message: "
TOO_LONG_LINE = "message length illegal, connection refused."
NOT_FOUND_LINE = "error: server not found, connection refused."
BAD_IP_LINE = "error: server ip invalid, connection refused."
BAD_PORT_LINE = "error: server port invalid, connection refused."

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class ServerNotFound(Exception):
    """No TCP connection could be made to the server."""


class ClientLog:
    """Appends the client's report lines to the session log file."""

    def __init__(self, path: str) -> None:
        # O_APPEND and one os.write per line: the server and other clients may be writing to
        # the same file at the same moment, and no line may be torn.
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def report(self, category: str, text: str) -> None:
        try:
            line = report_line(CLIENT, category, text, time.time())
            os.write(self._fd, line.encode("utf-8", "backslashreplace"))
        except OSError as error:
            print(f"ttweetcl.py: cannot write the log: {error.strerror}", file=sys.stderr)


def exchange(ip: str, port: int, request: bytes, timeout: float,
             records: "TraceWriter | None" = None) -> Reply:
    """Send one request and return the server's reply (traced to ``records``, if given).

    Raises ``ServerNotFound`` when no connection can be made, and ``OSError`` (a timeout
    included) or ``TtweetProtocolError`` when the connection gives no valid reply.
    """
    # A plain IPv4 socket: the address is a checked dotted quad, so no name lookup is needed.
    # It comes from _socket, the C core of the socket module, which has the same calls: the
    # socket module itself imports enum and selectors, and start-up is this program's cost.
    connection = _socket.socket(_socket.AF_INET, _socket.SOCK_STREAM)
    try:
        connection.settimeout(timeout)
        try:
            connection.connect((ip, port))
        except OSError as error:
            raise ServerNotFound(error.strerror or str(error)) from None
        if records is not None:
            local = connection.getsockname()
            records.rename(f"ttweetcl {local[0]}:{local[1]}")   # as the server names it
            records.send("ttweetsrv", request.split(b" ", 1)[0].decode("ascii", "replace"),
                         request[:80].decode("utf-8", "replace"))
        connection.sendall(request)
        assembler = FrameAssembler()
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("timed out")
            connection.settimeout(remaining)
            chunk = connection.recv(RECV_SIZE)
            frame = assembler.close() if not chunk else assembler.feed(chunk)
            if frame is not None:
                reply = decode_reply(frame)
                if records is not None:
                    kind = f"ERROR {reply.code}" if isinstance(reply, ErrorReply) else "OK"
                    records.recv("ttweetsrv", kind, frame[:80].decode("utf-8", "replace"))
                return reply
    finally:
        connection.close()


class Arguments:
    """The parsed command line (the same fields ``parse_arguments`` gives)."""

    def __init__(self, upload: bool, server_ip: str, server_port: str, message: str | None,
                 log: str = "Sample.txt", trace_file: str | None = None) -> None:
        self.upload, self.download = upload, not upload
        self.server_ip, self.server_port, self.message = server_ip, server_port, message
        self.log, self.trace_file = log, trace_file


def everyday_form(argv: list[str]) -> Arguments | None:
    """The two forms people type, read without argparse.

    Building an argparse parser (and importing what argparse imports) costs more start-up
    than the whole exchange with the server.  Anything but an exact everyday form — ``-h``, an
    option out of place, a message that starts with ``-``, a mistake — returns None, and
    ``parse_arguments`` reads it with argparse, which gives the help and the usage errors.
    """
    if len(argv) < 3 or argv[0] not in ("-u", "-d"):
        return None
    upload = argv[0] == "-u"
    fixed = 4 if upload else 3
    if len(argv) < fixed or any(word.startswith("-") for word in argv[1:fixed]):
        return None
    options = {"--log": "Sample.txt", "--trace-file": None}
    rest = argv[fixed:]
    while rest:
        if len(rest) < 2 or rest[0] not in options or rest[1].startswith("-"):
            return None
        options[rest[0]], rest = rest[1], rest[2:]
    message = argv[3] if upload else None
    if message is not None:
        try:
            message.encode("utf-8")
        except UnicodeEncodeError:
            return None                 # argparse says why
    return Arguments(upload, argv[1], argv[2], message, str(options["--log"]),
                     options["--trace-file"])


def parse_arguments(argv: list[str] | None) -> "argparse.Namespace | Arguments":
    arguments = argv if argv is not None else sys.argv[1:]
    return everyday_form(arguments) or parse_with_argparse(arguments)


def parse_with_argparse(arguments: list[str]) -> "argparse.Namespace":
    """The full command line: help, every form, and a usage error (exit 2) for mistakes."""
    import argparse  # only for help, unusual forms and mistakes

    parser = argparse.ArgumentParser(
        prog="ttweetcl.py",
        usage='%(prog)s -u <server-ip> <server-port> "message" [--log PATH]\n'
              "       %(prog)s -d <server-ip> <server-port> [--log PATH]",
        description="Upload a message to a ttweet server (ttweetsrv.py), or download the one "
                    "it holds.",
        epilog="examples:\n"
               '  python3 ttweetcl.py -u 127.0.0.1 13000 "Hello, #ttweet!"\n'
               "  python3 ttweetcl.py -d 127.0.0.1 13000\n"
               '  python3 ttweetcl.py -u 127.0.0.1 13000 ""      # back to "Empty Message"\n'
               '  python3 ttweetcl.py -u 127.0.0.1 13000 -- "-5 degrees"   # leading dash\n'
               "exit status: 0 done, 1 refused or failed, 2 bad arguments",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("-u", dest="upload", action="store_true",
                      help="upload the message (at most 150 characters)")
    mode.add_argument("-d", dest="download", action="store_true",
                      help="download the stored message")
    parser.add_argument("server_ip", metavar="server-ip", help="the server's IPv4 address")
    parser.add_argument("server_port", metavar="server-port", help="the server's TCP port")
    parser.add_argument("message", nargs="?", help="the message to upload (with -u only)")
    parser.add_argument("--trace-file", metavar="PATH",
                        help="append a JSON record of the request and the reply (SPEC §7)")
    parser.add_argument("--log", default="Sample.txt", metavar="PATH",
                        help="session log to append to (default: Sample.txt)")
    args = parser.parse_args(arguments)
    if args.upload and args.message is None:
        parser.error('-u needs a message (an empty one, "", resets the server)')
    if args.download and args.message is not None:
        parser.error("-d takes no message")
    if args.message is not None:
        try:
            args.message.encode("utf-8")
        except UnicodeEncodeError:   # bytes in argv that are not UTF-8
            parser.error("the message is not valid UTF-8 text")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_arguments(argv)
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    try:
        log = ClientLog(args.log)
    except OSError as error:
        print(f"ttweetcl.py: error: cannot open log file {args.log!r}: {error.strerror}",
              file=sys.stderr)
        return EXIT_USAGE

    def fail(line: str, detail: str, status: int) -> int:
        # The log escapes control characters itself; the terminal gets them escaped here.
        print(escape_for_terminal(line), file=sys.stderr)
        log.report(ERROR, f"{line} ({detail})")
        return status

    ip = args.server_ip
    if not is_ipv4_address(ip):
        return fail(BAD_IP_LINE, f'"{ip}" is not an IPv4 address', EXIT_USAGE)
    port = parse_port(args.server_port)
    if port is None:
        return fail(BAD_PORT_LINE, f'"{args.server_port}" is not a port from 1 to 65535',
                    EXIT_USAGE)
    server = f"{ip}:{port}"

    request: Request
    if args.upload:
        log.report(GENERAL, f"upload of {len(args.message)} characters to {server} requested")
        problem = message_length_problem(args.message)
        if problem:   # refused here, before anything is sent
            return fail(TOO_LONG_LINE, problem, EXIT_FAILED)
        request = UploadRequest(args.message)
    else:
        log.report(GENERAL, f"download from {server} requested")
        request = DownloadRequest()

    records = None
    if args.trace_file:
        # Imported only when asked: start-up time counts.
        from adapters.trace_file import TraceFileError, TraceWriter, open_trace_file
        try:    # closed when the process ends
            records = TraceWriter(open_trace_file(args.trace_file), "ttweetcl")
        except TraceFileError as error:
            log.report(ERROR, str(error))
            return error.report("ttweetcl.py")
    try:
        reply = exchange(ip, port, encode_request(request), TTWEET_IO_TIMEOUT, records)
    except ServerNotFound as error:
        return fail(NOT_FOUND_LINE, f"{server}: {error}", EXIT_FAILED)
    except (OSError, TtweetProtocolError) as error:
        detail = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
        return fail("error: no valid reply from the server.", f"{server}: {detail}",
                    EXIT_FAILED)

    if isinstance(reply, ErrorReply):
        if reply.code == TOO_LONG:
            return fail(TOO_LONG_LINE, f"the server says: {reply.reason}", EXIT_FAILED)
        return fail(f"error: the server refused the request: {reply.code}: {reply.reason}",
                    server, EXIT_FAILED)
    line = UPLOAD_DONE if args.upload else DOWNLOAD_DONE + reply.message
    print(escape_for_terminal(line))   # a message's newline shows as \n: never interpreted
    log.report(GENERAL, line)
    return EXIT_OK

