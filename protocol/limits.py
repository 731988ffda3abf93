"""Every limit and timeout of the product, in one place.

    limits ──> the core's defaults (TrackerCore, RingPeer, codecs: sizes a frame may have)
           ──> each program's command line (defaults of its flags: -h shows them)

Programs read these as defaults and may override them from their command line; tests shrink the
timeouts so that fault scenarios run quickly.  PROTOCOL.md §8 lists them for people.
"""

# --- tracker wire ---------------------------------------------------------------------------
FRAME_MAX = 4096                # bytes in one frame to the tracker, newline included
SERVER_FRAME_MAX = 1 << 20      # bytes in one line from the tracker (a list may be long)
LISTEN_BACKLOG = 128
DEFAULT_TRACKER_PORT = 13000
TWEET_TIMEOUT = 60.0            # seconds a tweet may run before the tracker ends it
EXIT_WAIT_TIMEOUT = 30.0        # seconds `exit` waits for running tweets that involve the handle

# --- content --------------------------------------------------------------------------------
HANDLE_MAX = 15                 # letters after the '@'
TWEET_MAX = 140                 # characters in a tweet, a `say` or a direct message
RING_TEXT_MAX = TWEET_MAX + len("RT @: ") + HANDLE_MAX   # a retweet carries "RT @author: "
TAG_MAX = 50                    # characters of a hashtag after the '#'
FEED_DEFAULT = 20               # tweets in `feed` when no count is given
FEED_MAX = 200                  # the most tweets one `feed` or `search` returns
TRENDING_COUNT = 5              # hashtags in `trending`
LIST_PAGE_MAX = 1000            # handles in one page of `query-handles`, `followers`, `following`

# --- kept direct messages (not yet confirmed by their recipient) ------------------------------
KEPT_PER_RECIPIENT = 1000       # messages waiting for one recipient, whoever the senders
KEPT_PER_SENDER = 100           # messages of one sender waiting for their recipients
KEPT_PAGE = 100                 # kept messages pushed at once after a login; then the next page

# --- accounts -------------------------------------------------------------------------------
PASSWORD_MAX = 256              # characters in a password
# A failed login of a handle from an address makes the next login of that handle from that
# address wait LOGIN_BACKOFF seconds, doubled at each further failure up to LOGIN_BACKOFF_MAX;
# the failures of a pair are forgotten LOGIN_FORGET seconds after its last one.
LOGIN_BACKOFF = 1.0
LOGIN_BACKOFF_MAX = 300.0
LOGIN_FORGET = 3600.0
# Per address (SPEC §6): this many at once, then this many an hour (a token bucket).
FAILED_LOGINS_PER_ADDRESS = 32
REGISTRATIONS_PER_ADDRESS = 32
ADDRESS_PERIOD = 3600.0         # seconds in which an address earns its budget back

# --- peer datagrams -------------------------------------------------------------------------
DATAGRAM_MAX = 2048             # bytes in one UDP datagram between peers
# Resends follow a round-trip estimate with backoff (RFC 6298): the first wait is RTO_INITIAL
# until a peer has been measured, never under RTO_MIN or over RTO_MAX, doubled at each resend.
RTO_INITIAL = 0.2               # seconds before the first resend to a peer not measured yet
RTO_MIN = 0.05
RTO_MAX = 1.0
GIVE_UP = 3.0                   # seconds without an ack before a peer is given up
ROUND_SLACK = 2.0               # seconds an author's round may take beyond two give-ups ...
ROUND_PER_FOLLOWER = 0.05       # ... and this much per follower, before it ends unfinished
SEEN_MAX = 4096                 # ids remembered per author or sender, to drop duplicates

# --- ttweet ---------------------------------------------------------------------------------
TTWEET_MAX = 150                # characters in the one stored message
TTWEET_EMPTY = "Empty Message"  # what the slot holds before any upload, and after uploading ""
TTWEET_REQUEST_MAX = 4096       # bytes in one ttweet request, header included
TTWEET_IO_TIMEOUT = 5.0         # seconds the ttweet server waits for a slow client
TTWEET_DRAIN_MAX = 65536        # bytes the server reads and discards after refusing a request
TTWEET_DRAIN_TIMEOUT = 1.0      # seconds it waits for them, so the refusal is not lost to a reset

# --- sessions -------------------------------------------------------------------------------
SESSION_MAX = 4096              # connections at once before SERVER_FULL (tracker.py's cap)
REGISTER_TIMEOUT = 10.0         # seconds a connection may stay without registering or logging in
IDLE_TIMEOUT = 90.0             # seconds a logged-in session may be silent before it goes offline
HEARTBEAT_INTERVAL = 30.0       # seconds between user.py's heartbeats while logged in
FLOOD_BURST = 20                # commands a session may send at once ...
FLOOD_RATE = 10.0               # ... and then per second, before THROTTLED

# --- tracker connections (SPEC §6: fair to everyone, whoever misbehaves) ----------------------
CONNECTIONS_PER_ADDRESS = 32    # connections one IPv4 address may hold at once
CONNECT_BURST = 32              # connections one address may open at once ...
CONNECT_RATE = 2.0              # ... and then per second
SENDQ_MAX = 256 * 1024          # bytes waiting for one connection before it is closed
SEND_BUFFER = 64 * 1024         # the kernel's send buffer of one connection (SO_SNDBUF)
SEND_LINGER = 5.0               # seconds a closing connection's last bytes may take to leave

# --- ttweet server --------------------------------------------------------------------------
TTWEET_CONNECTIONS_PER_ADDRESS = 64     # connections one address may have served at once
TTWEET_LOG_MAX = 8 * 1024 * 1024        # bytes of session log before it moves to <log>.1
