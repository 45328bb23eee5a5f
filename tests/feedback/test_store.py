"""The SQLite store: schema migrations, assignment rules, ranking validation and mapping."""

from __future__ import annotations

import json
import random
import sqlite3
import threading

import pytest

from rlhfkit.feedback.store import SCHEMA_VERSION, Store, StoreError, connect, migrate, schema_version
from .helpers import add_items


def test_migrating_a_v1_database_keeps_its_rows_and_adds_the_new_columns(tmp_path):
    path = tmp_path / "old.db"
    conn = connect(path)
    assert migrate(conn, target=1) == 1
    conn.execute("INSERT INTO prompts (text, family, created) VALUES ('p', 'math', 0)")
    conn.execute("INSERT INTO candidates (prompt_id, position, text) VALUES (1, 0, 'a'), (1, 1, 'b')")
    conn.execute("INSERT INTO annotators (name, token_hash, created) VALUES ('ann', 'h', 0)")
    conn.execute("INSERT INTO assignments (prompt_id, annotator_id, display_order, created) VALUES (1, 1, '[1,0]', 0)")
    conn.execute("INSERT INTO rankings (assignment_id, ranking, created) VALUES (1, '[1, 0]', 0)")
    with pytest.raises(sqlite3.OperationalError):
        conn.execute("SELECT flags FROM rankings")
    conn.close()

    store = Store.open(path)  # migrates to the latest version
    with store.conn() as c:
        assert schema_version(c) == SCHEMA_VERSION > 1
        assert c.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert c.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    rows = store.ranking_rows()
    assert len(rows) == 1 and rows[0]["ranking"] == [1, 0] and rows[0]["flags"] == {}
    assert rows[0]["time_ms"] is None and rows[0]["gold_best"] is None
    store.set_gold(1, 0)  # the v2 column works
    assert store.ranking_rows()[0]["gold_best"] == 0


def test_a_database_newer_than_the_code_is_refused(tmp_path):
    store = Store.open(tmp_path / "x.db")
    with store.conn() as c:
        c.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION + 1,))
    with pytest.raises(StoreError, match="newer"):
        Store.open(tmp_path / "x.db")


def test_foreign_keys_are_enforced(store):
    with pytest.raises(sqlite3.IntegrityError):
        with store.transaction() as c:
            c.execute("INSERT INTO candidates (prompt_id, position, text) VALUES (999, 0, 'x')")


def test_each_item_goes_to_redundancy_annotators_and_never_twice_to_one(store):
    add_items(store, 5)
    ids = [store.create_annotator(f"a{i}")[0] for i in range(4)]
    seen: dict[int, list[int]] = {i: [] for i in ids}
    for _ in range(10):
        for aid in ids:
            a = store.next_assignment(aid, redundancy=3)
            if a is None:
                continue
            seen[aid].append(a.prompt_id)
            store.submit_ranking(aid, a.id, list(range(len(a.responses))))
    per_item = {}
    for aid, items in seen.items():
        assert len(items) == len(set(items)), "an annotator saw an item twice"
        for p in items:
            per_item[p] = per_item.get(p, 0) + 1
    assert per_item == {p: 3 for p in range(1, 6)}
    assert all(store.next_assignment(aid, 3) is None for aid in ids)


def test_unfinished_assignment_is_returned_again_until_ranked(store):
    add_items(store, 3)
    aid, _ = store.create_annotator("a")
    first = store.next_assignment(aid, 1)
    again = store.next_assignment(aid, 1)
    assert (again.id, again.display_order, again.responses) == (first.id, first.display_order, first.responses)


def test_abandoned_assignment_frees_its_slot_after_the_lease(store):
    add_items(store, 1)
    a1, _ = store.create_annotator("a1")
    a2, _ = store.create_annotator("a2")
    assert store.next_assignment(a1, 1) is not None
    assert store.next_assignment(a2, 1) is None          # slot held by a1
    assert store.next_assignment(a2, 1, lease_s=-1) is not None  # a1's lease has run out


def test_ranking_in_display_positions_is_stored_in_candidate_indices(store):
    add_items(store, 1, k=4)
    aid, _ = store.create_annotator("a")
    a = store.next_assignment(aid, 1, rng=random.Random(3))
    assert sorted(a.display_order) == [0, 1, 2, 3] and a.display_order != [0, 1, 2, 3]
    texts = [f"p0 response {j}" for j in range(4)]
    assert a.responses == [texts[c] for c in a.display_order]
    shown_ranking = [2, [0, 3], 1]  # display positions; a tie in the middle
    store.submit_ranking(aid, a.id, shown_ranking, time_ms=1234, flags={"2": ["harmful"], "1": []})
    row = store.ranking_rows()[0]
    d = a.display_order
    assert row["ranking"] == [d[2], [d[0], d[3]], d[1]]
    assert row["flags"] == {str(d[2]): ["harmful"]}
    assert row["time_ms"] == 1234 and row["display_order"] == d


@pytest.mark.parametrize("bad, match", [
    ([0, 1, 2], "missing"), ([0, 1, 2, 4], "out of range"), ([0, 1, 1, 2], "twice"), ([], "expected a list"),
    ([0, 1, 2, "3"], "not an integer"), ([0, 1, [], 2, 3], "empty tie"), ([0, 1, 2, True], "not an integer"),
])
def test_bad_rankings_are_refused_and_nothing_is_stored(store, bad, match):
    add_items(store, 1, k=4)
    aid, _ = store.create_annotator("a")
    a = store.next_assignment(aid, 1)
    with pytest.raises(StoreError, match=match) as e:
        store.submit_ranking(aid, a.id, bad)
    assert e.value.status == 422
    assert store.ranking_rows() == []


def test_bad_flags_and_foreign_or_repeated_submissions_are_refused(store):
    add_items(store, 1, k=3)
    a1, _ = store.create_annotator("a1")
    a2, _ = store.create_annotator("a2")
    a = store.next_assignment(a1, 2)
    with pytest.raises(StoreError, match="flags"):
        store.submit_ranking(a1, a.id, [0, 1, 2], flags={"5": ["harmful"]})
    with pytest.raises(StoreError, match="flags"):
        store.submit_ranking(a1, a.id, [0, 1, 2], flags={"0": ["rude"]})
    with pytest.raises(StoreError, match="not one of yours") as e:
        store.submit_ranking(a2, a.id, [0, 1, 2])
    assert e.value.status == 404
    assert store.ranking_rows() == []
    store.submit_ranking(a1, a.id, [0, 1, 2])
    with pytest.raises(StoreError, match="already ranked") as e:
        store.submit_ranking(a1, a.id, [2, 1, 0])
    assert e.value.status == 409 and len(store.ranking_rows()) == 1


def test_concurrent_next_item_requests_never_overfill_an_item(store):
    """16 threads with their own connections race for 4 items x redundancy 2 = 8 slots."""
    add_items(store, 4)
    ids = [store.create_annotator(f"a{i}")[0] for i in range(16)]
    got, barrier = [], threading.Barrier(len(ids))

    def worker(aid):
        barrier.wait()
        a = store.next_assignment(aid, 2)
        if a is not None:
            got.append(a.prompt_id)

    threads = [threading.Thread(target=worker, args=(i,)) for i in ids]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert sorted(got) == [1, 1, 2, 2, 3, 3, 4, 4]


def test_tokens_are_stored_hashed_and_names_unique(store):
    aid, token = store.create_annotator("alice")
    assert store.authenticate(token).name == "alice" and store.authenticate("nope") is None
    with store.conn() as c:
        assert token not in json.dumps([tuple(r) for r in c.execute("SELECT * FROM annotators")])
    with pytest.raises(StoreError, match="taken"):
        store.create_annotator("alice")


def test_gold_index_is_checked(store):
    add_items(store, 1, k=3)
    with pytest.raises(StoreError, match="out of range"):
        store.set_gold(1, 3)
    with pytest.raises(StoreError, match="does not exist"):
        store.set_gold(42, 0)
    store.set_gold(1, 2)
    assert store.items()[0]["gold_best"] == 2
