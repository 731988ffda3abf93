"""Bounded stores and paged lists (SPEC §6, issue 12), with real processes.

The databases are filled directly (``adapters.sqlite_store``): thousands of accounts, follows
and kept messages in a moment, beyond what the tracker would let anyone register or keep, so
that every list is longer than one page.  Then a real tracker serves them and ``user.py`` (or a
raw wire client) reads them whole.
"""

from __future__ import annotations

from pathlib import Path

from conftest import SAMPLE_KEY, Cluster, RawClient, Tweeter

from adapters.sqlite_store import SqliteStore
from protocol import limits
from protocol.accounts import PasswordHasher

PASSWORD = "pw-of-everyone"


def name(number: int) -> str:
    """``@haaa``, ``@haab``, …: a handle per number, in the same order as the numbers."""
    return "@h" + "".join(chr(97 + (number // 26**k) % 26) for k in (2, 1, 0))


def populate(path: Path, accounts: int, followers: int = 0, following: int = 0,
             kept: int = 0) -> list[str]:
    """``accounts`` handles and @reader, all with one password; the first ``followers`` follow
    @reader, who follows the last ``following``; @haaa keeps ``kept`` messages for @reader.
    The handles, alphabetical (@reader among them)."""
    store = SqliteStore(str(path))
    stored = PasswordHasher().hash(PASSWORD)
    handles = [name(n) for n in range(accounts)]
    for handle in [*handles, "@reader"]:
        store.create(handle, stored, 1.7e9)
    for handle in handles[:followers]:
        store.follow(handle, "@reader")
    for handle in handles[accounts - following:] if following else []:
        store.follow("@reader", handle)
    for number in range(kept):
        store.add_message(handles[0], "@reader", f"number {number}", 1.7e9 + number)
    store.close()
    return sorted([*handles, "@reader"], key=str.lower)


def login(client: RawClient, handle: str) -> dict:
    return client.call("login", handle=handle, ip="127.0.0.1", ports=[61051, 61052, 61053],
                       key=SAMPLE_KEY, password=PASSWORD)


def test_user_reads_every_page_of_a_long_list(cluster: Cluster, tmp_path: Path) -> None:
    db = tmp_path / "long.db"
    everyone = populate(db, 2 * limits.LIST_PAGE_MAX + 300, followers=1200, following=1100)
    net = Tweeter(cluster)
    net.tracker("-q", "--db", str(db))
    user = net.user("reader")
    user.login("@reader", PASSWORD)
    assert user.ok("query handles") == f"SUCCESS: {len(everyone)} handles"
    listed = user.expect(r"^\d+: ").string
    assert listed == f"{len(everyone)}: " + " ".join(everyone)
    assert user.ok("followers") == "SUCCESS: @reader has 1200 followers"
    assert user.expect(r"^  @").string.split() == everyone[:1200]
    assert user.ok("following") == "SUCCESS: @reader has 1100 followed"
    assert user.expect(r"^  @").string.split() == everyone[-1101:-1]   # @reader sorts last


def test_kept_messages_come_after_the_login_reply_a_page_at_a_time(cluster: Cluster,
                                                                   tmp_path: Path) -> None:
    db = tmp_path / "kept.db"
    kept = 5 * limits.KEPT_PAGE + 7
    populate(db, 3, kept=kept)
    net = Tweeter(cluster)
    net.tracker("-q", "--db", str(db))
    client = net.client()
    reply = login(client, "@reader")
    assert (reply["status"], reply["kept"]) == ("SUCCESS", kept)
    assert client.pushes == []                              # nothing before the reply
    texts = [client.read_push()["text"] for _ in range(kept)]
    assert texts == [f"number {n}" for n in range(kept)]
    assert client.call("heartbeat")["status"] == "SUCCESS"
    assert client.pushes == []                              # and no more than there were
    client.close()

    user = net.user("reader")                               # user.py shows every one, once
    user.login("@reader", PASSWORD)
    user.expect(rf"^\[message\] @haaa: number {kept - 1} \(kept by the tracker")
    user.ok("online")
    shown = [line for line in user.lines if line.startswith("[message]")]
    assert len(shown) == kept and shown[0].startswith("[message] @haaa: number 0 ")


def test_kept_messages_are_bounded_per_recipient_and_per_sender(cluster: Cluster) -> None:
    net = Tweeter(cluster)
    net.tracker("-q", "--kept-per-recipient", "2", "--kept-per-sender", "1")
    clients = {handle: net.client() for handle in ("@a", "@b", "@c", "@r")}
    for number, (handle, client) in enumerate(clients.items()):
        assert client.register(handle, [61061 + 3 * number, 61062 + 3 * number,
                                        61063 + 3 * number])["status"] == "SUCCESS"
    assert clients["@r"].call("logout")["status"] == "SUCCESS"

    def message(sender: str, text: str) -> str:
        return clients[sender].call("message", to="@r", text=text).get("code", "kept")

    assert [message("@a", "one"), message("@a", "two"), message("@b", "three"),
            message("@c", "four")] == ["kept", "TOO_MANY_UNREAD", "kept", "MAILBOX_FULL"]
    reader = net.client()
    reply = reader.call("login", handle="@r", ip="127.0.0.1", ports=[61091, 61092, 61093],
                        key=SAMPLE_KEY, password="pw-@r-secret")
    assert reply["kept"] == 2, reply
    first = reader.read_push()
    assert reader.call("message-received", message_id=first["id"])["status"] == "SUCCESS"
    assert message("@c", "room for one") == "kept"


def test_trending_and_search_on_a_store_filled_beforehand(cluster: Cluster,
                                                          tmp_path: Path) -> None:
    db = tmp_path / "tags.db"
    store = SqliteStore(str(db))
    store.create("@author", PasswordHasher().hash(PASSWORD), 1.7e9)
    for number in range(3000):           # #t0 in every tweet, #t1 in every other, …
        tags = " ".join(f"#t{k}" for k in range(7) if number % (k + 1) == 0)
        store.add_tweet("@author", f"tweet {number} {tags}", 1.7e9 + number)
    store.close()
    net = Tweeter(cluster)
    net.tracker("-q", "--db", str(db))
    client = net.client()
    assert login(client, "@author")["status"] == "SUCCESS"
    trending = client.call("trending")
    assert trending["tags"] == [["#t0", 3000], ["#t1", 1500], ["#t2", 1000], ["#t3", 750],
                                ["#t4", 600]]
    page = client.call("search", tag="#t6", count=50)
    assert [row[0] for row in page["tweets"]] == list(range(2997, 2997 - 50 * 7, -7))  # ids
    older = client.call("search", tag="#t6", count=50, before=page["next"])
    assert older["tweets"][0][0] == page["tweets"][-1][0] - 7
    assert client.call("tweet", handle="@author", text="one more #t4 #T4")["status"] == \
        "SUCCESS"
    assert client.call("trending")["tags"][4] == ["#t4", 601]
