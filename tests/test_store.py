"""The tracker's state: protocol.store.ReadModel over each durable Store (the SQLite log of
adapters.sqlite_store and the MemoryStore reference) answers alike, starts from what the store
holds, and reads the graph without it; SqliteStore's changes are durable at the commit."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from adapters.sqlite_store import SqliteStore
from protocol.store import MemoryStore, ReadModel, SortedKeys, Store, TagCounts, by_name


@pytest.fixture(params=["memory", "sqlite"])
def durable(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    yield MemoryStore() if request.param == "memory" else SqliteStore(str(tmp_path / "t.db"))


@pytest.fixture
def model(durable: Store) -> ReadModel:
    """The read model over each store: the same answers, whatever keeps them."""
    return ReadModel(durable)


def test_accounts_are_case_insensitive_and_shown_as_registered(model: ReadModel) -> None:
    assert model.create("@Alice", "h1", 1.0)
    assert not model.create("@alice", "h2", 2.0)
    assert model.find("@ALICE") == "@Alice" and model.find("@bob") is None
    assert model.password_hash("@alice") == "h1" and model.password_hash("@bob") is None
    model.create("@bob", "h", 1.0)
    model.create("@Carl", "h", 1.0)
    assert model.handles() == ["@Alice", "@bob", "@Carl"]


def test_follows_in_both_directions(model: ReadModel) -> None:
    for handle in ("@a", "@B", "@c"):
        model.create(handle, "h", 1.0)
    assert model.follow("@c", "@a") and model.follow("@b", "@a") and model.follow("@a", "@c")
    assert not model.follow("@C", "@A")
    assert model.followers("@a") == ["@B", "@c"]
    assert model.following("@a") == ["@c"]
    assert model.unfollow("@b", "@a") and not model.unfollow("@b", "@a")
    assert model.followers("@a") == ["@c"]


def test_feed_is_own_and_followed_tweets_newest_first(model: ReadModel) -> None:
    for handle in ("@a", "@b", "@c"):
        model.create(handle, "h", 1.0)
    model.follow("@a", "@b")
    ids = [model.add_tweet(author, f"t{i}", float(i)) for i, author in
           enumerate(["@a", "@b", "@c", "@b", "@a"])]
    assert ids == sorted(ids) and len(set(ids)) == 5
    feed = model.feed("@a", 10)
    assert [t.id for t in feed] == [ids[4], ids[3], ids[1], ids[0]]
    assert [t.author for t in feed] == ["@a", "@b", "@b", "@a"]
    assert [t.id for t in model.feed("@a", 2)] == [ids[4], ids[3]]
    assert model.feed_count_after("@a", ids[1]) == 2
    assert model.tweet(ids[2]).text == "t2" and model.tweet(999) is None  # type: ignore[union-attr]


def test_last_seen_and_latest_id(model: ReadModel) -> None:
    model.create("@a", "h", 1.0)
    assert model.latest_tweet_id() == 0 and model.last_seen("@a") == 0
    tid = model.add_tweet("@a", "x", 1.0)
    model.set_last_seen("@a", tid)
    assert model.last_seen("@a") == tid == model.latest_tweet_id()


def test_a_tweet_marks_who_got_it_at_once(model: ReadModel) -> None:
    for handle in ("@a", "@B", "@c"):
        model.create(handle, "h", 1.0)
    tid = model.add_tweet("@a", "hi", 1.0, seen_by=["@a", "@b"])
    assert (model.last_seen("@a"), model.last_seen("@B"), model.last_seen("@c")) == (tid, tid, 0)


def test_retweets_and_hashtags(model: ReadModel) -> None:
    model.create("@a", "h", 1.0)
    first = model.add_tweet("@a", "hello #Demo and #x", 1.0)
    second = model.add_tweet("@a", "RT @a: hello #Demo and #x", 2.0, retweet_of=first)
    model.add_tweet("@a", "#demo again, not#this", 3.0)
    assert model.tweet(second).retweet_of == first  # type: ignore[union-attr]
    assert [t.id for t in model.search("DEMO", 10)] == [3, second, first]
    assert model.search("this", 10) == []
    assert model.trending(5) == [("demo", 3), ("x", 2)]
    assert model.trending(1) == [("demo", 3)]


def test_delete_removes_account_follows_and_tweets_ids_are_not_reused(model: ReadModel) -> None:
    for handle in ("@a", "@b"):
        model.create(handle, "h", 1.0)
    model.follow("@a", "@b")
    model.follow("@b", "@a")
    old = model.add_tweet("@a", "bye #gone", 1.0)
    model.delete("@A")
    assert model.find("@a") is None and model.handles() == ["@b"]
    assert model.followers("@b") == [] and model.following("@b") == []
    assert model.search("gone", 10) == [] and model.trending(5) == []
    model.create("@a", "h2", 2.0)
    assert model.add_tweet("@a", "new", 2.0) > old
    assert model.followers("@a") == []


def test_a_retweet_outlives_its_deleted_original(model: ReadModel) -> None:
    for handle in ("@a", "@b"):
        model.create(handle, "h", 1.0)
    original = model.add_tweet("@a", "first", 1.0)
    retweet = model.add_tweet("@b", "RT @a: first", 2.0, retweet_of=original)
    model.delete("@a")
    kept = model.tweet(retweet)
    assert kept is not None and kept.retweet_of is None and kept.text == "RT @a: first"


def test_blocks(model: ReadModel) -> None:
    for handle in ("@a", "@B", "@c"):
        model.create(handle, "h", 1.0)
    model.follow("@b", "@a")
    assert model.block("@a", "@b") and not model.block("@A", "@B")
    assert model.followers("@a") == [] and model.following("@b") == []   # the follow ended
    assert model.block("@a", "@c")
    assert model.is_blocked("@a", "@b") and not model.is_blocked("@b", "@a")
    assert model.blocked_by("@a") == ["@B", "@c"] and model.blocked_by("@b") == []
    assert model.unblock("@a", "@B") and not model.unblock("@a", "@b")
    assert model.blocked_by("@a") == ["@c"]
    model.delete("@c")
    assert model.blocked_by("@a") == []


def test_messages_wait_until_delivered(model: ReadModel) -> None:
    for handle in ("@a", "@B"):
        model.create(handle, "h", 1.0)
    first = model.add_message("@a", "@b", "one", 5.0)
    second = model.add_message("@a", "@b", "two", 6.0)
    assert second > first
    message = model.message(first)
    assert message is not None
    assert (message.sender, message.recipient, message.text, message.created,
            message.delivered) == ("@a", "@B", "one", 5.0, False)
    assert [m.id for m in model.undelivered("@b")] == [first, second]
    model.set_delivered(first)
    assert model.message(first).delivered                               # type: ignore[union-attr]
    assert [m.id for m in model.undelivered("@B")] == [second]
    model.set_delivered(first, delivered=False)
    assert [m.id for m in model.undelivered("@b")] == [first, second]
    assert model.message(999) is None and model.undelivered("@a") == []
    model.delete("@a")
    assert model.message(first) is None and model.undelivered("@b") == []
    model.create("@a", "h", 2.0)
    assert model.add_message("@a", "@b", "three", 7.0) > second         # ids are never reused


def test_deleting_an_account_takes_its_hashtags_out_of_trending(model: ReadModel) -> None:
    fill(model)
    model.delete("@ann")
    assert model.trending(5) == [("a", 1)]
    assert model.followers("@cy") == [] and model.blocked_by("@ann") == []


def test_by_name() -> None:
    assert by_name(["@b", "@C", "@a", "@Ab"]) == ["@a", "@Ab", "@b", "@C"]


def test_handles_and_follows_are_read_in_pages(model: ReadModel) -> None:
    for handle in ("@amy", "@Dan", "@bob", "@Cat", "@eve"):
        model.create(handle, "h", 1.0)
        if handle != "@amy":
            model.follow(handle, "@amy")
            model.follow("@amy", handle)
    assert model.handles_page(None, 2) == (["@amy", "@bob"], 5, True)
    assert model.handles_page("@BOB", 2) == (["@Cat", "@Dan"], 5, True)
    assert model.handles_page("@dan", 2) == (["@eve"], 5, False)
    assert model.handles_page("@zed", 2) == ([], 5, False)
    assert model.followers_page("@amy", "@c", 2) == (["@Cat", "@Dan"], 4, True)
    assert model.following_page("@AMY", "@dan", 9) == (["@eve"], 4, False)
    assert model.followers_page("@nobody", None, 9) == ([], 0, False)
    assert model.is_following("@eve", "@amy") and not model.is_following("@amy", "@amy")
    model.delete("@Cat")
    assert model.handles_page(None, 9).names == ["@amy", "@bob", "@Dan", "@eve"]
    assert model.followers("@amy") == ["@bob", "@Dan", "@eve"]


def test_sorted_keys() -> None:
    keys = SortedKeys(["@c", "@a", "@c"])
    assert list(keys) == ["@a", "@c"] and len(keys) == 2
    assert keys.add("@b") and not keys.add("@b") and "@b" in keys and "@d" not in keys
    assert keys.discard("@a") and not keys.discard("@a")
    assert keys.page(None, 1) == (["@b"], True) and keys.page("@B", 5) == (["@c"], False)


def test_trending_is_kept_in_order_as_tags_are_used_and_forgotten() -> None:
    counts = TagCounts(Counter({"b": 2, "a": 2, "c": 1, "gone": 0}))
    assert counts.top(5) == [("a", 2), ("b", 2), ("c", 1)] and len(counts) == 3
    counts.change("c", 2)
    counts.change("d", 1)
    assert counts.top(2) == [("c", 3), ("a", 2)]
    counts.change("c", -3)
    counts.change("a", -5)                                  # never below none
    assert counts.top(5) == [("b", 2), ("d", 1)] and len(counts) == 2
    assert TagCounts().top(5) == []


def test_trending_matches_a_full_count_whatever_the_uses() -> None:
    rng = random.Random(5)
    counts, reference = TagCounts(), Counter[str]()
    for _ in range(3000):
        tag, delta = f"t{rng.randrange(60)}", rng.choice([1, 1, 1, 2, -1, -3])
        delta = max(delta, -reference[tag])
        counts.change(tag, delta)
        reference[tag] += delta
        expected = sorted(((t, n) for t, n in reference.items() if n), key=lambda i: (-i[1], i[0]))
        assert counts.top(5) == expected[:5]


def test_messages_are_read_a_page_at_a_time(model: ReadModel) -> None:
    for handle in ("@a", "@b", "@c"):
        model.create(handle, "h", 1.0)
    ids = [model.add_message("@a" if n % 2 else "@c", "@b", f"m{n}", float(n))
           for n in range(7)]
    assert (model.kept_for("@b"), model.kept_from("@a"), model.kept_from("@c")) == (7, 3, 4)
    assert [m.id for m in model.undelivered("@b", count=3)] == ids[:3]
    assert [m.id for m in model.undelivered("@b", ids[2], count=3)] == ids[3:6]
    assert [m.id for m in model.undelivered("@b", ids[2], ids[4])] == ids[3:5]
    model.set_delivered(ids[3])
    model.set_delivered(ids[3])                             # once is enough
    assert [m.id for m in model.undelivered("@b", ids[2], count=3)] == [ids[4], ids[5], ids[6]]
    assert (model.kept_for("@b"), model.kept_from("@a")) == (6, 2)
    model.set_delivered(ids[3], delivered=False)
    assert model.kept_for("@b") == 7
    model.delete("@a")
    assert (model.kept_for("@b"), model.kept_from("@c")) == (4, 4)
    model.delete("@b")
    assert model.kept_from("@c") == 0 and model.kept_for("@b") == 0


# ---- the read model starts from the store and reads the graph without it -------------------------

def fill(model: ReadModel) -> None:
    for handle in ("@Ann", "@bob", "@cy"):
        model.create(handle, f"hash of {handle}", 1.0)
    model.follow("@bob", "@ann")
    model.follow("@cy", "@ann")
    model.follow("@ann", "@cy")
    model.block("@ann", "@cy")
    model.add_tweet("@ann", "hi #a #b", 1.0, seen_by=["@ann", "@bob"])
    model.add_tweet("@bob", "#a again", 2.0)
    model.add_message("@bob", "@ann", "psst", 3.0)


def test_a_new_read_model_starts_from_what_the_store_holds(durable: Store) -> None:
    fill(ReadModel(durable))
    durable.commit()
    again = ReadModel(durable)          # as after a restart of the tracker
    assert again.handles() == ["@Ann", "@bob", "@cy"]
    assert again.followers("@ANN") == ["@bob"]          # the block ended @cy's follow
    assert again.following("@ann") == ["@cy"]
    assert again.blocked_by("@ann") == ["@cy"] and again.is_blocked("@ann", "@CY")
    assert again.password_hash("@cy") == "hash of @cy"
    assert (again.last_seen("@bob"), again.last_seen("@cy")) == (1, 0)
    assert again.latest_tweet_id() == 2
    assert again.trending(5) == [("a", 2), ("b", 1)]
    assert again.add_tweet("@cy", "next", 4.0) == 3
    assert again.add_message("@cy", "@ann", "next", 4.0) == 2
    assert (again.kept_for("@ann"), again.kept_from("@bob"), again.kept_from("@cy")) == (2, 1, 1)


def test_the_graph_is_read_without_the_database(tmp_path: Path) -> None:
    durable = SqliteStore(str(tmp_path / "quiet.db"))
    model = ReadModel(durable)
    fill(model)
    durable.commit()
    durable.db.close()                              # any use of it would raise now
    assert model.handles() == ["@Ann", "@bob", "@cy"]
    assert model.followers("@ann") == ["@bob"] and model.following("@cy") == []
    assert model.find("@BOB") == "@bob" and model.find("@zed") is None
    assert not model.follow("@bob", "@ann")         # known already: nothing to record
    assert model.trending(1) == [("a", 2)]


# ---- the durable log: group commit ---------------------------------------------------------------

def test_changes_are_durable_at_the_commit_and_not_before(tmp_path: Path) -> None:
    path = str(tmp_path / "group.db")
    store = SqliteStore(path)
    model = ReadModel(store)
    model.create("@a", "h", 1.0)
    model.create("@b", "h", 1.0)
    model.follow("@b", "@a")
    tid = model.add_tweet("@a", "hi", 1.0)
    assert (store.changes, store.committed) == (4, 0)
    assert [t.id for t in store.feed(["@b", "@a"], 5)] == [tid]  # its own reads see them
    assert ReadModel(SqliteStore(path)).handles() == []     # another connection does not
    store.commit()                                          # one COMMIT for the four
    assert store.committed == 4
    assert ReadModel(SqliteStore(path)).followers("@a") == ["@b"]
    model.unfollow("@b", "@a")
    del model, store                                # gone before its commit: as if killed
    assert ReadModel(SqliteStore(path)).followers("@a") == ["@b"]


def test_a_commit_takes_the_changes_recorded_while_another_was_written(tmp_path: Path) -> None:
    store = SqliteStore(str(tmp_path / "log.db"))
    model = ReadModel(store)
    model.create("@a", "h", 1.0)
    model.create("@b", "h", 1.0)
    store.commit()
    for _ in range(3):
        model.follow("@a", "@b")
        model.unfollow("@a", "@b")
    model.follow("@a", "@b")
    store.commit()
    assert store.committed == store.changes == 9
    assert ReadModel(SqliteStore(str(tmp_path / "log.db"))).following("@a") == ["@b"]


def test_a_store_that_commits_every_change(tmp_path: Path) -> None:
    path = str(tmp_path / "auto.db")
    store = SqliteStore(path, autocommit=True)
    store.create("@a", "h", 1.0)
    assert store.add_tweet("@a", "one", 1.0) == 1
    assert store.committed == store.changes == 2
    assert ReadModel(SqliteStore(path)).latest_tweet_id() == 1


def test_a_memory_store_is_durable_at_once() -> None:
    store = MemoryStore()
    ReadModel(store).create("@a", "h", 1.0)
    assert store.changes == store.committed == 1


def test_a_database_with_the_old_follows_index_loses_it_and_keeps_its_follows(
        tmp_path: Path) -> None:
    path = str(tmp_path / "old.db")
    model = ReadModel(SqliteStore(path))
    for handle in ("@a", "@b", "@c"):
        model.create(handle, "h", 1.0)
    model.follow("@b", "@a")
    model.follow("@b", "@c")
    model.follow("@c", "@a")
    tid = model.add_tweet("@a", "hi", 2.0)
    model.store.commit()
    # As an older tracker left it: follows indexed by follower too.
    model.store.db.execute("CREATE INDEX follows_by_follower ON follows (follower, followee)")
    model.store.close()

    store = SqliteStore(path)
    indexes = {row[0] for row in store.db.execute(
        "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'follows'")}
    assert "follows_by_follower" not in indexes
    again = ReadModel(store)
    assert again.following("@b") == ["@a", "@c"]
    assert [t.id for t in again.feed("@b", 5)] == [tid]
    again.delete("@b")                      # the cascade finds its follows without the index
    store.commit()
    assert store.db.execute("SELECT count(*) FROM follows WHERE follower = '@b'").fetchone() == (0,)
    assert again.followers("@a") == ["@c"]
