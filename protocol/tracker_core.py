"""What the tracker answers: the command semantics of SPEC §2 as a state machine, free of I/O.

How data flows::

    tracker.py  (one thread per connection; one lock around every call into the core)
      │ execute(session, request, now)     None, or password work to run() outside the lock
      │ resume(session, work, result, now) the rest of register/login once the hash is done
      │ disconnect(session, now)           the connection is gone
      │ expire(session, now)               the FAILURE that closes a timed-out connection
      │ tick(now)                          about once a second: ends stale tweets, says BUSY
      │ take_outbox()  ──> [(session, Answer | Notice), …]   in the order decided: send them
      │ take_paging()  ──> [session, …]    sessions just pushed a page of kept messages, with
      └ next_page(session, now)            more to come: ask for the next once it has left

The core never blocks, never sleeps and owns no I/O.  Every reply and every push leaves through
the outbox, the replies it decides later too: an ``exit`` that has to wait for a running tweet is
a pending state, answered when that tweet ends (or with ``BUSY`` by a ``tick`` after
``exit_wait``).  Time comes in as ``now`` (a monotonic clock's seconds) on every call; the wall
clock that stamps tweets and messages is injected (``wall_clock``).  Replies and pushes are the
typed values of ``protocol.messages``.

Durable state (accounts, follows, tweets, hashtags, messages) is reached through
``protocol.store.ReadModel`` (``model``), which keeps the graph in memory — no read of it touches
the database — and records each change in the durable ``store``; who is online, at which
address, and which tweets are running is kept here, in memory only.  A change is durable only
at the store's next ``commit()``: the caller commits before it sends anything the core decided
after that change (group commit).  The
core is not thread-safe: its caller serialises the calls (``tracker.py`` holds one lock, which
makes the "exactly one wins" rules — two registrations of one handle, two tweets of one author —
plain).  Password hashing takes tens of milliseconds, so ``register`` and ``login`` stop half way
and hand their caller the hashing to do outside that lock (``protocol.accounts``).

Nothing here walks a whole table under that lock: lists are answered a page at a time
(``query-handles``, ``followers``, ``following``, ``feed``, ``search``: PROTOCOL.md §1.2), the
messages kept for a login are pushed a page at a time, each page once the one before has left
(``next_page``), and ``trending`` reads counts kept in order as hashtags are used.  Abuse is
bounded per address (``protocol.accounts``): registrations, failed logins (and a growing wait
per address and handle, so that guesses from one address never lock the owner out from
another), and messages kept for one recipient or from one sender (``MAILBOX_FULL``,
``TOO_MANY_UNREAD``).
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from protocol import limits
from protocol.accounts import (
    AddressBudget,
    CheckPassword,
    HashPassword,
    LoginThrottle,
    PasswordHasher,
    check_password,
    wait_text,
)
from protocol.flood import TokenBucket
from protocol.messages import (
    Answer,
    Done,
    EndTweetReply,
    ExitReply,
    Failure,
    FollowedPush,
    FollowReply,
    ListReply,
    LoginReply,
    MessagePush,
    MessageReply,
    Notice,
    OnlineReply,
    PeerPush,
    PresencePush,
    QueryHandlesReply,
    RegisterReply,
    SayPush,
    SayReply,
    TrendingReply,
    TweetPush,
    TweetReply,
    TweetsReply,
    WelcomePush,
)
from protocol.ring import Peer
from protocol.store import MemoryStore, Message, Page, ReadModel, Store, Tweet, by_name
from protocol.validate import (
    check_count,
    check_handle,
    check_ipv4,
    check_ports,
    check_public_key,
    check_tag,
    check_text,
    check_unicast,
    handle_key,
)
from protocol.wire import COMMANDS, Request

# The argument that names who acts: it must be the session's own handle (NOT_YOUR_HANDLE).
ACTOR_ARGUMENT = {"follow": "follower", "drop": "follower", "tweet": "handle",
                  "end-tweet": "handle", "exit": "handle", "exit-complete": "handle"}
# Commands a session may send before it has a handle.
ANONYMOUS_COMMANDS = {"auth", "register", "login", "query-handles", "online"}
# Housekeeping that user.py sends by itself: never refused by flood control.
UNTHROTTLED_COMMANDS = {"heartbeat", "end-tweet", "exit-complete", "logout"}
# ... and so is a receipt that confirms a message kept for the session (a login may be pushed a
# thousand, each confirmed by one): only a receipt that confirms nothing costs a command.
RECEIPT = "message-received"

Outgoing = tuple["Session", Answer | Notice]


def failure(code: str, message: str) -> Failure:
    """A FAILURE whose ``re`` the core fills in when it answers."""
    return Failure(code=code, message=message)


@dataclass(eq=False)
class Session:
    """One connection as the core sees it: where it comes from and which handle it acts for."""

    name: str                       # how traces name the connection, e.g. "127.0.0.1:40512"
    address: str                    # the IPv4 address its TCP connection comes from
    started: float                  # when it opened, or last stopped acting for a handle
    handle: str | None = None
    exiting: bool = False           # `exit` asked, `exit-complete` not yet received
    admitted: bool = False          # gave the server password (or none is needed)
    closing: bool = False           # the tracker closes the connection after what is queued
    bucket: TokenBucket | None = None       # flood control, made by the core at first use
    pending_re: int | None = None   # a request whose answer the core gives later (`exit`)
    last_active: float = field(init=False)  # when it last sent a frame

    def __post_init__(self) -> None:
        self.last_active = self.started


@dataclass(frozen=True)
class PasswordWork:
    """The half of ``register``/``login`` that hashes: the caller runs it outside its lock and
    gives the result to ``TrackerCore.resume``, with what the request asked for."""

    job: HashPassword | CheckPassword
    handle: str
    ip: str
    ports: tuple[int, int, int]
    key: str
    re: int = 0                     # the request's id, filled in by `execute`
    known: bool = True              # login: the handle had an account (else a decoy is checked)

    def run(self) -> str | bool:
        return self.job.run()


@dataclass
class RunningTweet:
    tid: int
    author: str
    text: str
    created: float                  # wall clock, as stored
    involved: set[str]              # handle keys of the author and the followers it was given
    started: float
    handed_out: dict[str, Peer] = field(default_factory=dict)  # follower key -> tuple given

    def as_push(self) -> TweetPush:
        return TweetPush(author=self.author, tid=self.tid, text=self.text, created=self.created)


@dataclass
class _Online:
    session: Session
    peer: Peer
    lost: bool = False              # the connection closed without logout or exit


@dataclass
class _PendingExit:
    session: Session
    deadline: float                 # BUSY after this


@dataclass
class _KeptPages:
    """The messages kept for a login that are still to be pushed: ids over ``after``, up to
    ``upto`` (the newest when it logged in: later ones came while it was online)."""

    after: int
    upto: int


@dataclass(kw_only=True)
class TrackerCore:
    wall_clock: Callable[[], float]     # seconds since the epoch, for `created` stamps
    store: Store = field(default_factory=MemoryStore)
    log: Callable[[str], None] = lambda line: None
    tweet_timeout: float = limits.TWEET_TIMEOUT
    exit_wait: float = limits.EXIT_WAIT_TIMEOUT
    hasher: PasswordHasher = field(default_factory=PasswordHasher)
    throttle: LoginThrottle = field(default_factory=LoginThrottle)
    register_limit: int = limits.REGISTRATIONS_PER_ADDRESS  # at once, then as many an hour
    kept_per_recipient: int = limits.KEPT_PER_RECIPIENT
    kept_per_sender: int = limits.KEPT_PER_SENDER
    kept_page: int = limits.KEPT_PAGE
    server_password: str | None = None
    register_timeout: float = limits.REGISTER_TIMEOUT
    idle_timeout: float = limits.IDLE_TIMEOUT
    flood_burst: int = limits.FLOOD_BURST
    flood_rate: float = limits.FLOOD_RATE

    def __post_init__(self) -> None:
        self.model = ReadModel(self.store)      # decides and reads; the store records
        self._commands = {cmd: getattr(self, "_cmd_" + cmd.replace("-", "_")) for cmd in COMMANDS}
        self._online: dict[str, _Online] = {}
        self._running: dict[str, RunningTweet] = {}
        self._exits: dict[str, _PendingExit] = {}
        self._outbox: list[Outgoing] = []
        self.registrations = AddressBudget(self.register_limit)
        self._decoy = self.hasher.decoy()       # what a login of an unknown handle checks
        self._kept_pages: dict[Session, _KeptPages] = {}
        self._paging: list[Session] = []        # pushed a page, more to come (take_paging)

    # ---- entry points ------------------------------------------------------------------------
    def execute(self, session: Session, request: Request, now: float) -> PasswordWork | None:
        """Run one request.  Its answer (now or later) and the pushes it causes go to the
        outbox; for ``register`` and ``login`` the caller first runs the returned work."""
        session.last_active = now
        mark = len(self._outbox)
        refused = self._gate(session, request, now)
        if refused is not None:
            self._answer(session, request.id, refused, mark)
            return None
        self._expire_tweets(now)
        outcome = self._commands[request.cmd](session, now, **request.args)
        if isinstance(outcome, PasswordWork):
            return replace(outcome, re=request.id)
        if outcome is None:                 # answered later, through the outbox
            session.pending_re = request.id
        else:
            self._answer(session, request.id, outcome, mark)
        return None

    def resume(self, session: Session, work: PasswordWork, result: str | bool,
               now: float) -> None:
        """Finish ``register`` or ``login`` with the hash (or the check) ``work`` produced."""
        mark = len(self._outbox)
        if isinstance(work.job, HashPassword):
            assert isinstance(result, str)
            reply = self._finish_register(session, work, result)
        else:
            reply = self._finish_login(session, work, result is True, now)
        self._answer(session, work.re, reply, mark)

    def disconnect(self, session: Session, now: float) -> None:
        """The connection is gone without a logout: end the handle's tweet, if any.

        The handle stays listed as online, at its last address, marked lost: a ring that finds
        it silent skips it and the tracker then takes it offline (SPEC §3.3).  A connection
        closed in the middle of ``exit`` takes its handle offline at once.
        """
        if session.handle is None:
            return
        key = handle_key(session.handle)
        self._drop_pending_exit(session)
        entry = self._online.get(key)
        if entry and entry.session is session:
            if session.exiting:
                del self._online[key]
            else:
                entry.lost = True
                self.log(f"{session.handle} lost its connection; listed until a ring "
                         "skips it or it logs in again")
        self._announce(session.handle, online=False)
        self._go_offline(session, now, still_listed=True)

    def expire(self, session: Session, now: float) -> Failure | None:
        """The FAILURE to send before closing this connection now (SPEC §6), or None.

        A logged-in session silent for ``idle_timeout`` goes offline (not lost: the tracker
        gave up on it); a connection without a handle for ``register_timeout`` is just closed.
        """
        if session.closing:
            return None
        if session.handle is None:
            if now - session.started <= self.register_timeout:
                return None
            session.closing = True
            return failure("REGISTER_TIMEOUT",
                           f"register or log in within {self.register_timeout:g}s")
        if now - session.last_active <= self.idle_timeout:
            return None
        self.log(f"{session.handle} sent nothing for {self.idle_timeout:g}s: offline")
        self._drop_pending_exit(session)
        self._announce(session.handle, online=False)
        self._go_offline(session, now)
        session.closing = True
        return failure("IDLE_TIMEOUT",
                       f"nothing received for {self.idle_timeout:g}s: you are offline")

    def tick(self, now: float) -> None:
        """Time passes: end tweets past ``tweet_timeout``, answer exits past ``exit_wait``,
        forget the throttling of addresses that went quiet."""
        self._expire_tweets(now)
        self.throttle.prune(now)
        self.registrations.prune(now)
        for key, pending in list(self._exits.items()):
            if now >= pending.deadline:
                del self._exits[key]
                session = pending.session
                session.exiting = False         # back to normal: it may act, and exit later
                self._answer_later(session, failure(
                    "BUSY", f"a tweet involving {session.handle} is still running; try again"))

    def next_page(self, session: Session, now: float) -> None:
        """The last page of kept messages pushed to ``session`` has left: push the next one
        (nothing if none is left, or the session went offline meanwhile)."""
        self._push_kept_page(session)

    def take_paging(self) -> list[Session]:
        """The sessions pushed a page of kept messages since the last call that have more to
        come: the caller calls ``next_page`` for each once that page has been sent."""
        if not self._paging:
            return []
        paging, self._paging = self._paging, []
        return paging

    def take_outbox(self) -> list[Outgoing]:
        """The replies and pushes decided since the last call, in order, for the caller to
        send (each to its session's connection)."""
        if not self._outbox:            # the usual case after a reply was taken
            return []
        out, self._outbox = self._outbox, []
        return out

    def welcome(self) -> WelcomePush:
        """The first frame of every connection: says whether a server password is needed."""
        return WelcomePush(server="tweeter", password_required=self.server_password is not None)

    def online_handles(self) -> list[str]:
        """Every handle listed online, lost ones included (for tests and the console)."""
        return by_name(entry.peer.handle for entry in self._online.values())

    # ---- the way in: checks every command passes first --------------------------------------
    def _gate(self, session: Session, request: Request, now: float) -> Failure | None:
        if session.bucket is None:
            session.bucket = TokenBucket(now, self.flood_burst, self.flood_rate)
        if request.cmd not in UNTHROTTLED_COMMANDS and request.cmd != RECEIPT \
                and not session.bucket.take(now):
            return self._throttled()
        if not session.admitted and self.server_password is not None:
            return self._admit(session, request)
        if request.cmd not in ANONYMOUS_COMMANDS and session.handle is None:
            return failure("NOT_LOGGED_IN", f"register or log in first: {request.cmd} "
                                            "needs a handle")
        actor = request.args.get(ACTOR_ARGUMENT.get(request.cmd, ""))
        if actor is not None and session.handle is not None \
                and handle_key(actor) != handle_key(session.handle):
            return failure("NOT_YOUR_HANDLE",
                           f"this session acts for {session.handle}, not {actor}")
        if session.exiting and request.cmd not in ("exit-complete", "heartbeat"):
            return failure("EXITING", f"{session.handle} is exiting: only exit-complete is left")
        if request.cmd in ("register", "login") and session.handle is not None:
            return failure("ALREADY_LOGGED_IN", f"this session is already {session.handle}")
        return None

    def _throttled(self) -> Failure:
        return failure("THROTTLED", f"at most {self.flood_burst} commands at once and "
                                    f"{self.flood_rate:g} a second; slow down")

    def _admit(self, session: Session, request: Request) -> Failure | None:
        """Before anything else, a session must give the server password (SPEC §4)."""
        session.closing = True      # unless the password is right, the connection is closed
        if request.cmd != "auth":
            return failure("SERVER_PASSWORD_REQUIRED", "this tracker wants its password first")
        given = request.args.get("password", "")
        if not hmac.compare_digest(str(given).encode("utf-8"),
                                   str(self.server_password).encode("utf-8")):
            return failure("WRONG_SERVER_PASSWORD", "wrong server password")
        session.admitted, session.closing = True, False
        return None                 # admitted: `auth` itself then answers SUCCESS

    # ---- the way out -------------------------------------------------------------------------
    def _answer(self, session: Session, re: int, reply: Answer, mark: int) -> None:
        """Queue ``reply`` to request ``re``: after the pushes this command made for other
        sessions (they hear of a change no later than its author), before those it made for
        ``session`` itself (e.g. the messages kept for a login follow the login's reply)."""
        made = self._outbox[mark:]
        answered = (session, reply.answering(re))
        if not made:
            self._outbox.append(answered)
            return
        self._outbox[mark:] = [*(o for o in made if o[0] is not session), answered,
                               *(o for o in made if o[0] is session)]

    def _answer_later(self, session: Session, reply: Answer) -> None:
        """Answer the request the session is waiting on (``exit``)."""
        re, session.pending_re = session.pending_re, None
        self._outbox.append((session, reply.answering(re)))

    def _push(self, recipient: str, notice: Notice) -> None:
        """Queue a notice for ``recipient`` if it is online in a live session."""
        entry = self._online.get(handle_key(recipient))
        if entry and not entry.lost and entry.session.handle is not None:
            self._outbox.append((entry.session, notice))

    def _announce(self, handle: str, online: bool) -> None:
        """Tell the online followers of ``handle`` that it came online (and at which address:
        a ring keeps its author's tuple) or went offline."""
        entry = self._online.get(handle_key(handle))
        peer = entry.peer if online and entry else None
        notice = PresencePush(handle=handle, online=online, peer=peer)
        for follower in self.model.followers(handle):
            self._push(follower, notice)

    # ---- helpers -----------------------------------------------------------------------------
    @staticmethod
    def _me(session: Session) -> str:
        """The session's handle; `_gate` has already refused sessions without one."""
        assert session.handle is not None
        return session.handle

    def _known(self, handle: object) -> str | Failure:
        """The handle's registered spelling, or the FAILURE to answer."""
        problem = check_handle(handle)
        if problem:
            return failure(*problem)
        name = self.model.find(handle)  # type: ignore[arg-type]
        return name if name else failure("UNKNOWN_HANDLE", f"{handle} is not registered")

    def _live_peer(self, handle: str) -> Peer | None:
        """The tuple of ``handle`` if it is online in a live session."""
        entry = self._online.get(handle_key(handle))
        return entry.peer if entry is not None and not entry.lost else None

    def _go_online(self, session: Session, peer: Peer) -> None:
        session.handle = peer.handle
        self._online[handle_key(peer.handle)] = _Online(session, peer)

    def _go_offline(self, session: Session, now: float, still_listed: bool = False) -> None:
        """The session stops acting for its handle; its running tweet, if any, ends."""
        assert session.handle is not None
        self._kept_pages.pop(session, None)
        key = handle_key(session.handle)
        if key in self._running:
            why = "its author's connection closed" if still_listed else "its author logged out"
            self._abandon_tweet(key, why)
        entry = self._online.get(key)
        if not still_listed and entry and entry.session is session:
            del self._online[key]
        session.handle = None
        session.started = now       # a connection that stays may log in again in time

    def _start_tweet(self, me: str, text: str, now: float,
                     retweet_of: int | None = None) -> Answer:
        if handle_key(me) in self._running:
            return failure("TWEET_IN_PROGRESS",
                           f"tweet #{self._running[handle_key(me)].tid} of {me} is still running")
        entries = [entry for name in self.model.followers(me)
                   if (entry := self._online.get(handle_key(name)))
                   and not entry.session.exiting]
        followers = [entry.peer for entry in entries]
        # Those it reaches now (live sessions, and its author) have it: it is not "new" to
        # them at their next login.  A lost follower will be skipped: to it, it is new.
        reached = [me, *(entry.peer.handle for entry in entries if not entry.lost)]
        created = self.wall_clock()
        tid = self.model.add_tweet(me, text, created, retweet_of, seen_by=reached)
        self._running[handle_key(me)] = RunningTweet(
            tid, me, text, created, {handle_key(me), *(peer.key for peer in followers)}, now,
            {peer.key: peer for peer in followers})
        return TweetReply(message=f"tweet #{tid} of {me} goes to {len(followers)} followers",
                          tid=tid, text=text, count=len(followers), followers=tuple(followers))

    def _end_tweet(self, author_key: str, why: str) -> None:
        del self._running[author_key]
        self.log(why)
        self._release_exits()

    def _abandon_tweet(self, author_key: str, why: str) -> None:
        """A tweet ends without ``end-tweet``: nobody reports who the ring reached, so the
        tracker gives it to every follower it was handed to that is still alive (a peer that
        printed it already drops the copy by author and tid)."""
        running = self._running[author_key]
        relayed = self._relay(running, list(running.handed_out.values()))
        note = f"; sent by the tracker to {' '.join(relayed)}" if relayed else ""
        self._end_tweet(author_key, f"tweet #{running.tid} of {running.author} ended: "
                                    f"{why}{note}")

    def _relay(self, running: RunningTweet, peers: list[Peer]) -> list[str]:
        """Push the tweet to each of ``peers`` whose handle has a live session; their names."""
        relayed = []
        for peer in peers:
            entry = self._online.get(peer.key)
            if entry is not None and not entry.lost and entry.session.handle is not None:
                self._outbox.append((entry.session, running.as_push()))
                relayed.append(entry.peer.handle)
        return relayed

    def _expire_tweets(self, now: float) -> None:
        if not self._running:
            return
        for key, running in list(self._running.items()):
            if now - running.started > self.tweet_timeout:
                self._abandon_tweet(key, f"no end-tweet within {self.tweet_timeout:g}s")

    def _involved(self, key: str) -> bool:
        return any(key in running.involved for running in self._running.values())

    def _release_exits(self) -> None:
        """Answer every waiting ``exit`` whose handle no running tweet involves any more."""
        for key, pending in list(self._exits.items()):
            if not self._involved(key):
                del self._exits[key]
                self._answer_later(pending.session, self._exit_granted(pending.session))

    def _drop_pending_exit(self, session: Session) -> None:
        if session.handle is not None:
            pending = self._exits.get(handle_key(session.handle))
            if pending is not None and pending.session is session:
                del self._exits[handle_key(session.handle)]
                session.pending_re = None

    def _exit_granted(self, session: Session) -> ExitReply:
        me = self._me(session)
        followers = tuple(entry.peer for name in self.model.followers(me)
                          if (entry := self._online.get(handle_key(name))) and not entry.lost)
        # Its online followers, so that a process that never tweeted can still tear down
        # the ring state an earlier process of the same handle left with them.
        return ExitReply(message=f"{me} may exit: tear the ring down, then send exit-complete",
                         followers=followers)

    @staticmethod
    def _tweets(what: str, tweets: list[Tweet], count: int) -> TweetsReply:
        """A page of ``count`` tweets out of ``tweets``, read one over, to know whether older
        ones follow."""
        page = tweets[:count]
        return TweetsReply(message=f"{len(page)} {what}", count=len(page), tweets=tuple(page),
                           next=page[-1].id if len(tweets) > count else None)

    @staticmethod
    def _check_page(after: object, limit: object) -> Failure | None:
        """The page fields of a list of handles: ``after`` a handle, ``limit`` a count."""
        problem = (after is not None and check_handle(after)) \
            or check_count(limit, limits.LIST_PAGE_MAX)
        return failure(*problem) if problem else None

    def _push_kept_page(self, session: Session) -> None:
        """Push the next page of the messages kept for the session's login (PROTOCOL.md §1.5):
        an indexed read of at most ``kept_page`` of them."""
        pages = self._kept_pages.get(session)
        if pages is None or session.handle is None:
            return
        messages = self.model.undelivered(session.handle, pages.after, pages.upto,
                                          self.kept_page)
        for message in messages:                # until its message-received
            self._outbox.append((session, self._message_push(message)))
        if len(messages) < self.kept_page:
            del self._kept_pages[session]
        else:
            pages.after = messages[-1].id
            self._paging.append(session)

    # ---- accounts: register and login stop half way for the password hash -------------------
    @staticmethod
    def _check_peer(session: Session, handle: object, ip: object, ports: object,
                    key: object) -> Failure | None:
        """What register and login check of the tuple a session asks to be reached at."""
        problem = (check_handle(handle) or check_ipv4(ip) or check_unicast(ip)  # type: ignore
                   or check_ports(ports) or check_public_key(key))
        if problem:
            return failure(*problem)
        if ip != session.address:
            return failure("ADDRESS_MISMATCH", f"the tracker sees this session at "
                                               f"{session.address}: a peer's address must be "
                                               "its own")
        return None

    def _cmd_register(self, session: Session, now: float, handle: str, ip: str,
                      ports: list[int], password: str, key: str) -> Answer | PasswordWork:
        refused = self._check_peer(session, handle, ip, ports, key)
        if refused:
            return refused
        problem = check_password(password)
        if problem:
            return failure(*problem)
        existing = self.model.find(handle)      # a cheap early answer, before the hash
        if existing:
            return failure("DUPLICATE_HANDLE", f"{existing} is already registered")
        if not self.registrations.take(session.address, now):     # each costs a hash
            wait = wait_text(self.registrations.wait(session.address, now))
            return failure("THROTTLED", f"{session.address} registered {self.register_limit} "
                                        f"handles lately, the most one address may; try again "
                                        f"in {wait}")
        return PasswordWork(HashPassword(password, self.hasher), handle, ip,
                            (ports[0], ports[1], ports[2]), key)

    def _finish_register(self, session: Session, work: PasswordWork, digest: str) -> Answer:
        handle, ip, ports = work.handle, work.ip, work.ports
        if session.handle is not None:
            return failure("ALREADY_LOGGED_IN", f"this session is already {session.handle}")
        if not self.model.create(handle, digest, self.wall_clock()):
            return failure("DUPLICATE_HANDLE", f"{self.model.find(handle)} is already registered")
        self.model.set_last_seen(handle, self.model.latest_tweet_id())
        self._go_online(session, Peer(handle, ip, *ports, work.key))
        return RegisterReply(message=f"{handle} registered at {ip} ports {ports[0]} {ports[1]} "
                                     f"{ports[2]}", handle=handle)

    def _cmd_login(self, session: Session, now: float, handle: str, ip: str, ports: list[int],
                   password: str, key: str) -> Answer | PasswordWork:
        refused = self._check_peer(session, handle, ip, ports, key)
        if refused:
            return refused
        problem = check_password(password)
        if problem:
            return failure(*problem)
        why = self.throttle.refused(session.address, handle_key(handle), now)
        if why:
            return failure("THROTTLED", why)
        # Counted as failed until proven right: parallel guesses cannot outrun the count.
        self.throttle.attempt(session.address, handle_key(handle), now)
        # An unknown handle costs the hash a wrong password costs: the same work, the same
        # time, and a failed login all the same.
        stored = self.model.password_hash(handle)
        return PasswordWork(CheckPassword(password, stored or self._decoy), handle, ip,
                            (ports[0], ports[1], ports[2]), key, known=stored is not None)

    def _finish_login(self, session: Session, work: PasswordWork, good: bool,
                      now: float) -> Answer:
        handle, ip, ports = work.handle, work.ip, work.ports
        assert isinstance(work.job, CheckPassword)
        if not (work.known and good):
            self.throttle.failed(session.address, now)
        if not work.known:
            return failure("UNKNOWN_HANDLE", f"{handle} is not registered")
        if not good:
            name = self.model.find(handle) or handle
            return failure("WRONG_PASSWORD", f"wrong password for {name}")
        # The right password for the account it was checked against: no failed login,
        # whatever else stops this one (ALREADY_ONLINE included).
        self.throttle.succeeded(session.address, handle_key(handle), now)
        name = self.model.find(handle)
        if name is None:                        # deleted while the hash was checked
            return failure("UNKNOWN_HANDLE", f"{handle} is not registered")
        if self.model.password_hash(name) != work.job.stored:
            # Deleted and registered again while the hash was checked: this account's own
            # password has not been checked, and the old one must not let anyone in.
            return failure("ACCOUNT_CHANGED", f"{name} was deleted and registered again while "
                                              "the password was checked; log in again")
        if session.handle is not None:
            return failure("ALREADY_LOGGED_IN", f"this session is already {session.handle}")
        entry = self._online.get(handle_key(name))
        if entry and not entry.lost:
            return failure("ALREADY_ONLINE", f"{name} is online in another session")
        # Tweets of its feed it has not had: newer than the last one it got while online
        # (PROTOCOL.md §1.8).  Once told, they are no longer new.
        new = self.model.feed_count_after(name, self.model.last_seen(name))
        self.model.set_last_seen(name, self.model.latest_tweet_id())
        self._go_online(session, Peer(name, ip, *ports, work.key))
        self._announce(name, online=True)
        kept = self.model.kept_for(name)
        if kept:        # pushed after the reply, a page at a time (PROTOCOL.md §1.5)
            self._kept_pages[session] = _KeptPages(0, self.model.latest_message_id())
            self._push_kept_page(session)
        return LoginReply(message=f"{name} logged in at {ip} ports {ports[0]} {ports[1]} "
                                  f"{ports[2]}; {new} new tweets since the last session",
                          handle=name, new=new, blocked=tuple(self.model.blocked_by(name)),
                          kept=kept)

    def _cmd_logout(self, session: Session, now: float) -> Answer:
        me = self._me(session)
        self._announce(me, online=False)
        self._go_offline(session, now)
        return Done(message=f"{me} logged out; everything is kept")

    # ---- the course's commands ---------------------------------------------------------------
    def _cmd_query_handles(self, session: Session, now: float, after: str | None = None,
                           limit: int = limits.LIST_PAGE_MAX) -> Answer:
        refused = self._check_page(after, limit)
        if refused:
            return refused
        page = self.model.handles_page(after, limit)
        return QueryHandlesReply(message=f"{page.total} handles", count=page.total,
                                 handles=tuple(page.names),
                                 next=page.names[-1] if page.more else None)

    def _cmd_follow(self, session: Session, now: float, follower: str, followee: str) -> Answer:
        target = self._known(followee)
        if isinstance(target, Failure):
            return target
        me = self._me(session)
        if handle_key(target) == handle_key(me):
            return failure("SELF_FOLLOW", f"{me} cannot follow itself")
        if self.model.is_blocked(target, me):
            return failure("BLOCKED", f"{target} has blocked {me}")
        if not self.model.follow(me, target):
            return failure("ALREADY_FOLLOWING", f"{me} already follows {target}")
        self._push(target, FollowedPush(by=me))
        return FollowReply(message=f"{me} now follows {target}", peer=self._live_peer(target))

    def _cmd_drop(self, session: Session, now: float, follower: str, followee: str) -> Answer:
        target = self._known(followee)
        if isinstance(target, Failure):
            return target
        me = self._me(session)
        if not self.model.unfollow(me, target):
            return failure("NOT_FOLLOWING", f"{me} does not follow {target}")
        return Done(message=f"{me} no longer follows {target}")

    def _cmd_tweet(self, session: Session, now: float, handle: str, text: str) -> Answer:
        problem = check_text(text)
        if problem:
            return failure(*problem)
        return self._start_tweet(self._me(session), text, now)

    def _cmd_end_tweet(self, session: Session, now: float, handle: str, tid: int, reached: int,
                       skipped: list[object]) -> Answer:
        """The author's round is over.  ``skipped`` is its report, never an order: the tracker
        judges each named follower itself (SPEC §3.3)."""
        me = self._me(session)
        running = self._running.get(handle_key(me))
        if running is None or running.tid != tid:
            return failure("NO_TWEET_IN_PROGRESS", f"{me} has no tweet #{tid} in progress")
        named = dict.fromkeys(handle_key(name) for name in skipped if isinstance(name, str))
        peers = [running.handed_out[key] for key in named if key in running.handed_out]
        for peer in peers:
            entry = self._online.get(peer.key)
            if entry is not None and entry.lost and entry.peer == peer:
                del self._online[peer.key]      # gone: offline (announced when it was lost)
                self.log(f"{peer.handle} was skipped and its connection is gone: offline")
        relayed = self._relay(running, peers)  # alive: it stays online and gets the tweet
        gone = [peer.handle for peer in peers]
        note = f", skipped {' '.join(gone)}" if gone else ""
        if relayed:
            note += f", sent by the tracker to {' '.join(relayed)}"
        self._end_tweet(handle_key(me), f"tweet #{tid} of {me} ended: reached {reached}{note}")
        return EndTweetReply(message=f"tweet #{tid} of {me} ended: {reached} followers "
                                     f"reached{note}", reached=reached, skipped=tuple(gone),
                             relayed=tuple(relayed))

    def _cmd_exit(self, session: Session, now: float, handle: str) -> Answer | None:
        me = self._me(session)
        session.exiting = True      # from now on no new tweet involves the handle
        if not self._involved(handle_key(me)):
            return self._exit_granted(session)
        self._exits[handle_key(me)] = _PendingExit(session, now + self.exit_wait)
        return None                 # answered when the tweet ends, or BUSY at the deadline

    def _cmd_exit_complete(self, session: Session, now: float, handle: str) -> Answer:
        me = self._me(session)
        if not session.exiting:
            return failure("EXIT_NOT_STARTED", f"send exit {me} first")
        if handle_key(me) in self._exits:
            return failure("EXITING", f"{me} waits for a running tweet: exit is not answered yet")
        self._announce(me, online=False)
        self.model.delete(me)
        self._online.pop(handle_key(me), None)
        session.handle, session.exiting = None, False
        return Done(message=f"{me} exited: handle, account and follower list deleted")

    # ---- the social commands -----------------------------------------------------------------
    def _cmd_online(self, session: Session, now: float) -> Answer:
        me = session.handle
        names = by_name(e.peer.handle for e in self._online.values() if not e.lost)
        return OnlineReply(message=f"{len(names)} online", count=len(names),
                           online=tuple((name, me is not None
                                         and self.model.is_following(me, name))
                                        for name in names))

    def _lists(self, session: Session, handle: str | None, after: str | None, limit: int,
               read: Callable[[str, str | None, int], Page], what: str) -> ListReply | Failure:
        name = self._known(handle) if handle is not None else self._me(session)
        if isinstance(name, Failure):
            return name
        refused = self._check_page(after, limit)
        if refused:
            return refused
        page = read(name, after, limit)
        return ListReply(message=f"{name} has {page.total} {what}", handle=name,
                         count=page.total, handles=tuple(page.names),
                         next=page.names[-1] if page.more else None)

    def _cmd_followers(self, session: Session, now: float, handle: str | None = None,
                       after: str | None = None, limit: int = limits.LIST_PAGE_MAX) -> Answer:
        return self._lists(session, handle, after, limit, self.model.followers_page,
                           "followers")

    def _cmd_following(self, session: Session, now: float, handle: str | None = None,
                       after: str | None = None, limit: int = limits.LIST_PAGE_MAX) -> Answer:
        reply = self._lists(session, handle, after, limit, self.model.following_page,
                            "followed")
        if isinstance(reply, Failure) or handle_key(reply.handle) != handle_key(self._me(session)):
            return reply
        # Your own list carries the keys of the authors you follow that are online, so your
        # peer can check their datagrams (the others come with their `presence` push).
        peers = tuple(peer for name in reply.handles if (peer := self._live_peer(name)))
        return replace(reply, peers=peers)

    def _cmd_feed(self, session: Session, now: float, count: int = limits.FEED_DEFAULT,
                  before: int | None = None) -> Answer:
        problem = check_count(count)
        if problem:
            return failure(*problem)
        return self._tweets("tweets in the feed",
                            self.model.feed(self._me(session), count + 1, before), count)

    def _cmd_retweet(self, session: Session, now: float, tid: int) -> Answer:
        original = self.model.tweet(tid)
        if original is None:
            return failure("UNKNOWN_TWEET", f"there is no tweet #{tid}")
        if original.retweet_of is not None:     # retweet the original, not "RT @x: RT @y: …"
            original = self.model.tweet(original.retweet_of) or original
        text = f"RT {original.author}: {original.text}"
        # A retweet whose original was deleted reads as an original (retweet_of is null):
        # quoting it again could outgrow what a ring datagram carries.
        if len(text) > limits.RING_TEXT_MAX:
            return failure("TOO_LONG", f"the retweet would have {len(text)} characters; "
                                       f"a ring carries at most {limits.RING_TEXT_MAX}")
        return self._start_tweet(self._me(session), text, now, retweet_of=original.id)

    def _cmd_search(self, session: Session, now: float, tag: str, count: int = limits.FEED_MAX,
                    before: int | None = None) -> Answer:
        problem = check_tag(tag) or check_count(count)
        if problem:
            return failure(*problem)
        return self._tweets(f"tweets with {tag}", self.model.search(tag[1:], count + 1, before),
                            count)

    def _cmd_trending(self, session: Session, now: float) -> Answer:
        top = self.model.trending(limits.TRENDING_COUNT)
        return TrendingReply(message=f"{len(top)} trending hashtags", count=len(top),
                             tags=tuple((f"#{tag}", uses) for tag, uses in top))

    # ---- live features -----------------------------------------------------------------------
    def _cmd_auth(self, session: Session, now: float, password: str) -> Answer:
        return Done(message="no server password is needed" if self.server_password is None
                    else "welcome")

    def _cmd_say(self, session: Session, now: float, text: str, **ignored: Any) -> Answer:
        """Chat-room broadcast.  The sender is the session's handle, whatever else was sent."""
        problem = check_text(text, "say")
        if problem:
            return failure(*problem)
        me = self._me(session)
        listeners = [entry.peer.handle for entry in self._online.values()
                     if not entry.lost and handle_key(entry.peer.handle) != handle_key(me)]
        notice = SayPush(sender=me, text=text)
        for listener in listeners:
            self._push(listener, notice)
        return SayReply(message=f"said to {len(listeners)} users online", count=len(listeners))

    def _cmd_message(self, session: Session, now: float, to: str, text: str) -> Answer:
        """A direct message.  The tracker keeps it until its recipient confirms it; when the
        recipient is online the sender gets its tuple to send it peer to peer, and the
        recipient gets the sender's tuple first, to check the datagram."""
        problem = check_text(text, "message")
        if problem:
            return failure(*problem)
        target = self._known(to)
        if isinstance(target, Failure):
            return target
        me = self._me(session)
        if self.model.is_blocked(target, me):
            return failure("BLOCKED", f"{target} has blocked {me}")
        # Kept until confirmed, so bounded (SPEC §6): per recipient, whoever the senders, and
        # per sender, so that one sender alone cannot fill anyone's mailbox.
        if self.model.kept_for(target) >= self.kept_per_recipient:
            return failure("MAILBOX_FULL", f"{target} has {self.model.kept_for(target)} "
                                           "messages waiting to be read, the most the tracker "
                                           "keeps for anyone; try again once it has read some")
        if self.model.kept_from(me) >= self.kept_per_sender:
            return failure("TOO_MANY_UNREAD", f"{self.model.kept_from(me)} messages of {me} "
                                              "wait to be read, the most the tracker keeps from "
                                              "anyone; try again once they are read")
        message_id = self.model.add_message(me, target, text, self.wall_clock())
        peer, sender = self._live_peer(target), self._live_peer(me)
        if peer is None:
            return MessageReply(message=f"message #{message_id} kept for {target}, who is "
                                        "offline", message_id=message_id, to=target)
        if sender is not None:
            self._push(target, PeerPush(peer=sender))
        return MessageReply(message=f"message #{message_id} to {target}: send it peer to peer",
                            message_id=message_id, to=target, peer=peer)

    def _cmd_message_received(self, session: Session, now: float, message_id: int) -> Answer:
        """The recipient's receipt: the message is delivered, and no longer kept."""
        me = self._me(session)
        message = self.model.message(message_id)
        mine = message is not None and handle_key(message.recipient) == handle_key(me)
        confirms = mine and message is not None and not message.delivered
        assert session.bucket is not None               # made by _gate
        if not confirms and not session.bucket.take(now):   # confirms nothing: a command
            return self._throttled()
        if message is None or not mine:
            return failure("UNKNOWN_MESSAGE", f"{me} was sent no message #{message_id}")
        if not message.delivered:
            self.model.set_delivered(message_id)
        return Done(message=f"message #{message_id} from {message.sender} delivered")

    def _cmd_message_undelivered(self, session: Session, now: float, message_id: int) -> Answer:
        """The sender's peer-to-peer send got no receipt: the tracker carries the message over
        the recipient's session if it is online, and keeps it for its next login anyway."""
        me = self._me(session)
        message = self.model.message(message_id)
        if message is None or handle_key(message.sender) != handle_key(me):
            return failure("UNKNOWN_MESSAGE", f"{me} sent no message #{message_id}")
        if message.delivered:
            return Done(message=f"message #{message_id} was delivered after all")
        # Online: the tracker carries it over the recipient's session now.  Either way it is
        # kept until the recipient confirms it, which is what the sender is told.
        self._push(message.recipient, self._message_push(message))
        return Done(message=f"message #{message_id} kept for the recipient's next login")

    @staticmethod
    def _message_push(message: Message) -> MessagePush:
        return MessagePush(id=message.id, sender=message.sender, text=message.text,
                           created=message.created, kept=True)

    def _cmd_block(self, session: Session, now: float, handle: str) -> Answer:
        target = self._known(handle)
        if isinstance(target, Failure):
            return target
        me = self._me(session)
        if handle_key(target) == handle_key(me):
            return failure("SELF_BLOCK", f"{me} cannot block itself")
        if not self.model.block(me, target):
            return failure("ALREADY_BLOCKED", f"{me} has already blocked {target}")
        return Done(message=f"{me} blocked {target}: it no longer follows or messages {me}")

    def _cmd_unblock(self, session: Session, now: float, handle: str) -> Answer:
        target = self._known(handle)
        if isinstance(target, Failure):
            return target
        me = self._me(session)
        if not self.model.unblock(me, target):
            return failure("NOT_BLOCKED", f"{me} has not blocked {target}")
        return Done(message=f"{me} unblocked {target}")

    def _cmd_heartbeat(self, session: Session, now: float) -> Answer:
        return Done(message="still here")       # last_active was updated in execute
