"""The Store contract: adapters.sqlite_store.SqliteStore and protocol.store.MemoryStore alike.

Every test runs against both, so the in-memory reference used by the core's unit tests cannot
drift from the store the tracker really uses.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from adapters.sqlite_store import SqliteStore
from protocol.store import MemoryStore, Store, by_name


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    yield MemoryStore() if request.param == "memory" else SqliteStore(str(tmp_path / "t.db"))


def test_accounts_are_case_insensitive_and_shown_as_registered(store: Store) -> None:
    assert store.create("@Alice", "h1", 1.0)
    assert not store.create("@alice", "h2", 2.0)
    assert store.find("@ALICE") == "@Alice" and store.find("@bob") is None
    assert store.password_hash("@alice") == "h1" and store.password_hash("@bob") is None
    store.create("@bob", "h", 1.0)
    store.create("@Carl", "h", 1.0)
    assert store.handles() == ["@Alice", "@bob", "@Carl"]


def test_follows_in_both_directions(store: Store) -> None:
    for handle in ("@a", "@B", "@c"):
        store.create(handle, "h", 1.0)
    assert store.follow("@c", "@a") and store.follow("@b", "@a") and store.follow("@a", "@c")
    assert not store.follow("@C", "@A")
    assert store.followers("@a") == ["@B", "@c"]
    assert store.following("@a") == ["@c"]
    assert store.unfollow("@b", "@a") and not store.unfollow("@b", "@a")
    assert store.followers("@a") == ["@c"]


def test_feed_is_own_and_followed_tweets_newest_first(store: Store) -> None:
    for handle in ("@a", "@b", "@c"):
        store.create(handle, "h", 1.0)
    store.follow("@a", "@b")
    ids = [store.add_tweet(author, f"t{i}", float(i)) for i, author in
           enumerate(["@a", "@b", "@c", "@b", "@a"])]
    assert ids == sorted(ids) and len(set(ids)) == 5
    feed = store.feed("@a", 10)
    assert [t.id for t in feed] == [ids[4], ids[3], ids[1], ids[0]]
    assert [t.author for t in feed] == ["@a", "@b", "@b", "@a"]
    assert [t.id for t in store.feed("@a", 2)] == [ids[4], ids[3]]
    assert store.feed_count_after("@a", ids[1]) == 2
    assert store.tweet(ids[2]).text == "t2" and store.tweet(999) is None  # type: ignore[union-attr]


def test_last_seen_and_latest_id(store: Store) -> None:
    store.create("@a", "h", 1.0)
    assert store.latest_tweet_id() == 0 and store.last_seen("@a") == 0
    tid = store.add_tweet("@a", "x", 1.0)
    store.set_last_seen("@a", tid)
    assert store.last_seen("@a") == tid == store.latest_tweet_id()


def test_retweets_and_hashtags(store: Store) -> None:
    store.create("@a", "h", 1.0)
    first = store.add_tweet("@a", "hello #Demo and #x", 1.0)
    second = store.add_tweet("@a", "RT @a: hello #Demo and #x", 2.0, retweet_of=first)
    store.add_tweet("@a", "#demo again, not#this", 3.0)
    assert store.tweet(second).retweet_of == first  # type: ignore[union-attr]
    assert [t.id for t in store.search("DEMO", 10)] == [3, second, first]
    assert store.search("this", 10) == []
    assert store.trending(5) == [("demo", 3), ("x", 2)]
    assert store.trending(1) == [("demo", 3)]


def test_delete_removes_account_follows_and_tweets_ids_are_not_reused(store: Store) -> None:
    for handle in ("@a", "@b"):
        store.create(handle, "h", 1.0)
    store.follow("@a", "@b")
    store.follow("@b", "@a")
    old = store.add_tweet("@a", "bye #gone", 1.0)
    store.delete("@A")
    assert store.find("@a") is None and store.handles() == ["@b"]
    assert store.followers("@b") == [] and store.following("@b") == []
    assert store.search("gone", 10) == [] and store.trending(5) == []
    store.create("@a", "h2", 2.0)
    assert store.add_tweet("@a", "new", 2.0) > old
    assert store.followers("@a") == []


def test_sqlite_store_keeps_everything_across_reopening(tmp_path: Path) -> None:
    path = str(tmp_path / "keep.db")
    first = SqliteStore(path)
    first.create("@a", "hash", 1.0)
    first.create("@b", "hash", 1.0)
    first.follow("@b", "@a")
    tid = first.add_tweet("@a", "kept #yes", 1.0)
    again = SqliteStore(path)
    assert again.followers("@a") == ["@b"]
    assert [t.id for t in again.feed("@b", 5)] == [tid]
    assert again.trending(5) == [("yes", 1)]


def test_a_retweet_outlives_its_deleted_original(store: Store) -> None:
    for handle in ("@a", "@b"):
        store.create(handle, "h", 1.0)
    original = store.add_tweet("@a", "first", 1.0)
    retweet = store.add_tweet("@b", "RT @a: first", 2.0, retweet_of=original)
    store.delete("@a")
    kept = store.tweet(retweet)
    assert kept is not None and kept.retweet_of is None and kept.text == "RT @a: first"


def test_a_tweet_marks_who_got_it_at_once(store: Store) -> None:
    for handle in ("@a", "@B", "@c"):
        store.create(handle, "h", 1.0)
    tid = store.add_tweet("@a", "hi", 1.0, seen_by=["@a", "@b"])
    assert (store.last_seen("@a"), store.last_seen("@B"), store.last_seen("@c")) == (tid, tid, 0)


def test_blocks(store: Store) -> None:
    for handle in ("@a", "@B", "@c"):
        store.create(handle, "h", 1.0)
    store.follow("@b", "@a")
    assert store.block("@a", "@b") and not store.block("@A", "@B")
    assert store.followers("@a") == []                  # a block ends the blocked's follow
    assert store.block("@a", "@c")
    assert store.is_blocked("@a", "@b") and not store.is_blocked("@b", "@a")
    assert store.blocked_by("@a") == ["@B", "@c"] and store.blocked_by("@b") == []
    assert store.unblock("@a", "@B") and not store.unblock("@a", "@b")
    assert store.blocked_by("@a") == ["@c"]
    store.delete("@c")
    assert store.blocked_by("@a") == []


def test_messages_wait_until_delivered(store: Store) -> None:
    for handle in ("@a", "@B"):
        store.create(handle, "h", 1.0)
    first = store.add_message("@a", "@b", "one", 5.0)
    second = store.add_message("@a", "@b", "two", 6.0)
    assert second > first
    message = store.message(first)
    assert message is not None
    assert (message.sender, message.recipient, message.text, message.created,
            message.delivered) == ("@a", "@B", "one", 5.0, False)
    assert [m.id for m in store.undelivered("@b")] == [first, second]
    store.set_delivered(first)
    assert store.message(first).delivered                               # type: ignore[union-attr]
    assert [m.id for m in store.undelivered("@B")] == [second]
    store.set_delivered(first, delivered=False)
    assert [m.id for m in store.undelivered("@b")] == [first, second]
    assert store.message(999) is None and store.undelivered("@a") == []
    store.delete("@a")
    assert store.message(first) is None and store.undelivered("@b") == []
    store.create("@a", "h", 2.0)
    assert store.add_message("@a", "@b", "three", 7.0) > second        # ids are never reused


def test_by_name() -> None:
    assert by_name(["@b", "@C", "@a", "@Ab"]) == ["@a", "@Ab", "@b", "@C"]
