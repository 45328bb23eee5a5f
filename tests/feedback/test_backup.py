"""`rlhfkit label backup DB OUT` while the served app takes rankings from several threads: the copy opens,
passes integrity_check, holds a count of rankings between those before and after it, and only rankings
the live database has; a failed backup leaves no file behind and says why."""

from __future__ import annotations

import re
import sqlite3
import threading

import httpx

from rlhfkit.feedback.app import create_app
from rlhfkit.feedback.backup import TABLES
from rlhfkit.feedback.cli import main

from .helpers import add_items, running_server

N_WRITERS = 4


def rankings(path) -> set[tuple]:
    with sqlite3.connect(path) as c:
        return set(c.execute("SELECT id, assignment_id, ranking FROM rankings"))


def count(path, table: str = "rankings") -> int:
    with sqlite3.connect(path) as c:
        return c.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]


def submit_until(url: str, token: str, stop: threading.Event, acked: list, errors: list) -> None:
    """Rank items as one annotator until `stop`; ranking ids answered 200 go to `acked`, other answers to `errors`."""
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}) as http:
        while not stop.is_set() and (item := http.get("/api/next").json()["item"]) is not None:
            r = http.post("/api/rankings", json={"assignment_id": item["assignment_id"], "ranking": [1, 0, 3, 2]})
            (acked.append(r.json()["ranking_id"]) if r.status_code == 200 else errors.append(r.text))


def test_backup_while_rankings_arrive(store, tmp_path, capsys, record_property):
    add_items(store, 200)
    tokens = [store.create_annotator(f"w{i}")[1] for i in range(N_WRITERS)]
    out, stop, acked, errors = tmp_path / "backups" / "b.db", threading.Event(), [], []
    with running_server(create_app(store, redundancy=N_WRITERS, rate_limit=0)) as url:
        writers = [threading.Thread(target=submit_until, args=(url, t, stop, acked, errors)) for t in tokens]
        [w.start() for w in writers]
        while len(acked) < 20:
            assert any(w.is_alive() for w in writers), "the writers stopped early"
            stop.wait(0.01)
        before = count(store.path)
        assert main(["backup", str(store.path), str(out)]) == 0
        after = count(store.path)
        stop.set()
        [w.join(timeout=30) for w in writers]
    assert errors == []
    with sqlite3.connect(out) as c:
        assert c.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert c.execute("PRAGMA foreign_key_check").fetchall() == []
    copied = count(out)
    assert before <= copied <= after
    assert rankings(out) <= rankings(store.path)
    printed = capsys.readouterr().out
    for table in TABLES:
        assert re.search(rf"\b{count(out, table)} {table}\b", printed), printed
    assert [p.name for p in out.parent.iterdir()] == ["b.db"]  # no temporary file left
    record_property("backup_rankings", copied)
    print(f"\nbackup during writes: rankings before {before}, in backup {copied}, after {after}; "
          f"{len(acked)} acknowledged by the end")


def test_backup_replaces_the_old_copy_and_refuses_what_it_cannot_do(store, tmp_path, capsys):
    add_items(store, 3)
    out = tmp_path / "b.db"
    out.write_text("an old backup")
    assert main(["backup", str(store.path), str(out)]) == 0
    assert count(out, "prompts") == 3
    missing = tmp_path / "missing.db"
    assert main(["backup", str(missing), str(tmp_path / "x.db")]) == 2
    assert f"{missing}: no such labeling database" in capsys.readouterr().err
    junk = tmp_path / "junk.db"
    junk.write_text("not sqlite")
    assert main(["backup", str(junk), str(tmp_path / "x.db")]) == 2
    assert "file is not a database" in capsys.readouterr().err
    assert main(["backup", str(store.path), str(store.path)]) == 2
    assert "another file than the database" in capsys.readouterr().err
    assert main(["backup", str(out), str(store.path)]) == 2  # over a live WAL database: refused
    assert "-wal exists" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir() if "tmp" in p.name) == []
    assert count(store.path, "prompts") == 3
