"""The labeling store: one SQLite file holding prompts, candidate responses, annotators, assignments
and rankings (`rlhfkit label init --db labels.db` creates it).

Thread-safety model: each thread gets its own connection (kept per thread, since closing the last
connection of a WAL database checkpoints it — most of a request's cost), so a web server can call
the store from any worker thread. The two writes that race — handing out the next item and recording a
ranking — run inside `BEGIN IMMEDIATE`, which takes SQLite's write lock up front, so two annotators
asking at once cannot both be given the last open slot of an item. WAL mode lets readers proceed
while one writer holds the lock.

Rankings are submitted in *display* positions (what the annotator saw) and stored in *candidate*
indices (the order in the prompts file); the per-assignment display order is kept, so position
bias stays measurable.
"""

from __future__ import annotations

import hashlib
import json
import random
import secrets
import sqlite3
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from rlhfkit.feedback.rankings import RankingError, normalize_ranking

FLAG_KINDS = ("harmful", "nonsense")

# Ordered migrations: index i brings the schema from version i to i+1. Never edit a shipped step;
# append a new one. v1 held the core tables; v2 added what quality control needs (gold answers,
# time spent, per-response flags) and the indexes the next-item query uses.
MIGRATIONS: list[str] = [
    """
    CREATE TABLE prompts (
        id INTEGER PRIMARY KEY,
        text TEXT NOT NULL,
        family TEXT NOT NULL DEFAULT '',
        created REAL NOT NULL
    );
    CREATE TABLE candidates (
        id INTEGER PRIMARY KEY,
        prompt_id INTEGER NOT NULL REFERENCES prompts(id) ON DELETE CASCADE,
        position INTEGER NOT NULL,
        text TEXT NOT NULL,
        model TEXT NOT NULL DEFAULT '',
        UNIQUE (prompt_id, position)
    );
    CREATE TABLE annotators (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        token_hash TEXT NOT NULL UNIQUE,
        is_admin INTEGER NOT NULL DEFAULT 0,
        created REAL NOT NULL
    );
    CREATE TABLE assignments (
        id INTEGER PRIMARY KEY,
        prompt_id INTEGER NOT NULL REFERENCES prompts(id) ON DELETE CASCADE,
        annotator_id INTEGER NOT NULL REFERENCES annotators(id) ON DELETE CASCADE,
        display_order TEXT NOT NULL,
        created REAL NOT NULL,
        UNIQUE (prompt_id, annotator_id)
    );
    CREATE TABLE rankings (
        id INTEGER PRIMARY KEY,
        assignment_id INTEGER NOT NULL UNIQUE REFERENCES assignments(id) ON DELETE CASCADE,
        ranking TEXT NOT NULL,
        created REAL NOT NULL
    );
    """,
    """
    ALTER TABLE prompts ADD COLUMN gold_best INTEGER;
    ALTER TABLE rankings ADD COLUMN time_ms INTEGER;
    ALTER TABLE rankings ADD COLUMN flags TEXT NOT NULL DEFAULT '{}';
    CREATE INDEX assignments_by_annotator ON assignments (annotator_id);
    CREATE INDEX candidates_by_prompt ON candidates (prompt_id);
    """,
]
SCHEMA_VERSION = len(MIGRATIONS)


class StoreError(Exception):
    """A request the store refuses; `status` is the HTTP code the web app answers with."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


@dataclass
class LabelerAccount:
    """A person's sign-in to the labeling app (a row of the annotators table); the simulated crowd of the
    built-in world is world/annotators.py CrowdAnnotator."""

    id: int
    name: str
    is_admin: bool


@dataclass
class Assignment:
    """An item shown to one annotator: `responses` are already in display order."""

    id: int
    prompt_id: int
    prompt: str
    family: str
    responses: list[str]
    display_order: list[int]  # display position p shows candidate display_order[p]


def hash_token(token: str) -> str:
    # Tokens are 192-bit random strings, so a fast hash is enough: there is nothing to brute-force.
    return hashlib.sha256(token.encode()).hexdigest()


def schema_version(conn: sqlite3.Connection) -> int:
    has = conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'schema_version'").fetchone()
    if not has:
        return 0
    row = conn.execute("SELECT version FROM schema_version").fetchone()
    return int(row[0]) if row else 0


def migrate(conn: sqlite3.Connection, target: int = SCHEMA_VERSION) -> int:
    """Apply migrations up to `target` (each in its own transaction); returns the new version."""
    current = schema_version(conn)
    if current > SCHEMA_VERSION:
        raise StoreError(f"database schema v{current} is newer than this rlhfkit (v{SCHEMA_VERSION})")
    for version in range(current, target):
        # executescript would COMMIT on its own; run the statements inside one explicit transaction.
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            for stmt in MIGRATIONS[version].split(";"):
                if stmt.strip():
                    conn.execute(stmt)
            conn.execute("DELETE FROM schema_version")
            conn.execute("INSERT INTO schema_version (version) VALUES (?)", (version + 1,))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    return max(current, target)


def connect(path: str | Path) -> sqlite3.Connection:
    """A connection with the pragmas every caller needs (autocommit; explicit BEGIN where it matters)."""
    conn = sqlite3.connect(str(path), timeout=30.0, isolation_level=None, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute("PRAGMA busy_timeout = 30000")
    # In WAL mode NORMAL still survives an application crash; only a power cut can lose the
    # last commits. It saves an fsync per commit, which is most of a ranking's cost. Every write commits
    # before its method returns, so a ranking the app answered 200 for survives a killed server
    # (tests/reliability/test_app_soak.py SIGKILLs it mid-write).
    conn.execute("PRAGMA synchronous = NORMAL")
    return conn


class Store:
    """All reads and writes of the labeling database. Create with `Store.open(path)`."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._local = threading.local()
        self._write_lock = threading.RLock()  # re-entrant: a nested BEGIN errors instead of hanging

    @classmethod
    def open(cls, path: str | Path) -> "Store":
        """Open (creating and migrating if needed) the database at `path`."""
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        conn = connect(path)
        try:
            conn.execute("PRAGMA journal_mode = WAL")  # persistent: stored in the file
            migrate(conn)
        finally:
            conn.close()
        return cls(path)

    @contextmanager
    def conn(self) -> Iterator[sqlite3.Connection]:
        """This thread's connection (opened on first use)."""
        c = getattr(self._local, "conn", None)
        if c is None:
            c = self._local.conn = connect(self.path)
        yield c

    def close(self) -> None:
        """Close this thread's connection (others close when their thread or the Store goes)."""
        c = getattr(self._local, "conn", None)
        if c is not None:
            c.close()
            self._local.conn = None

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction that holds the write lock from its first statement.

        Writers in this process also queue on a Python lock first: when SQLite finds its lock
        taken, its busy handler sleeps 1 to 100 ms between retries, which under 50 concurrent
        requests costs far more than waiting in line. Other processes still meet busy_timeout.
        """
        with self._write_lock, self.conn() as c:
            c.execute("BEGIN IMMEDIATE")
            try:
                yield c
                c.execute("COMMIT")
            except BaseException:
                c.execute("ROLLBACK")
                raise

    # --- annotators -------------------------------------------------------------------------
    def create_annotator(self, name: str, is_admin: bool = False) -> tuple[int, str]:
        """Create an annotator; returns (id, token). The token is shown once and stored hashed."""
        name = name.strip()
        if not name or len(name) > 100:
            raise StoreError("annotator name: expected 1-100 characters")
        token = secrets.token_urlsafe(24)
        try:
            with self.transaction() as c:
                cur = c.execute(
                    "INSERT INTO annotators (name, token_hash, is_admin, created) VALUES (?, ?, ?, ?)",
                    (name, hash_token(token), int(is_admin), time.time()))
        except sqlite3.IntegrityError:
            raise StoreError(f"annotator name {name!r} is already taken", 409) from None
        return int(cur.lastrowid), token

    def authenticate(self, token: str) -> LabelerAccount | None:
        with self.conn() as c:
            row = c.execute("SELECT id, name, is_admin FROM annotators WHERE token_hash = ?",
                            (hash_token(token),)).fetchone()
        return LabelerAccount(row["id"], row["name"], bool(row["is_admin"])) if row else None

    def has_admin(self) -> bool:
        with self.conn() as c:
            return c.execute("SELECT 1 FROM annotators WHERE is_admin = 1").fetchone() is not None

    def annotators(self) -> list[dict[str, Any]]:
        with self.conn() as c:
            rows = c.execute(
                "SELECT a.id, a.name, a.is_admin, COUNT(r.id) AS done FROM annotators a "
                "LEFT JOIN assignments s ON s.annotator_id = a.id "
                "LEFT JOIN rankings r ON r.assignment_id = s.id GROUP BY a.id ORDER BY a.id").fetchall()
        return [{"id": r["id"], "name": r["name"], "is_admin": bool(r["is_admin"]), "done": r["done"]}
                for r in rows]

    # --- items ------------------------------------------------------------------------------
    def add_item(self, conn: sqlite3.Connection, prompt: str, responses: list[str], family: str = "",
                 models: list[str] | None = None, gold_best: int | None = None) -> int:
        """Insert one prompt and its K candidates on an open transaction; returns the prompt id."""
        models = models or [""] * len(responses)
        cur = conn.execute("INSERT INTO prompts (text, family, gold_best, created) VALUES (?, ?, ?, ?)",
                           (prompt, family, gold_best, time.time()))
        pid = int(cur.lastrowid)
        conn.executemany("INSERT INTO candidates (prompt_id, position, text, model) VALUES (?, ?, ?, ?)",
                         [(pid, i, t, m) for i, (t, m) in enumerate(zip(responses, models))])
        return pid

    def set_gold(self, prompt_id: int, best: int | None) -> None:
        """Mark candidate `best` as the known-best answer of a prompt (None clears it)."""
        with self.transaction() as c:
            k = c.execute("SELECT COUNT(*) FROM candidates WHERE prompt_id = ?", (prompt_id,)).fetchone()[0]
            if k == 0:
                raise StoreError(f"prompt {prompt_id} does not exist", 404)
            if best is not None and not 0 <= best < k:
                raise StoreError(f"gold best index {best} out of range; expected 0..{k - 1}")
            c.execute("UPDATE prompts SET gold_best = ? WHERE id = ?", (best, prompt_id))

    def items(self, offset: int = 0, limit: int = 50) -> list[dict[str, Any]]:
        """Prompts with their candidates and ranking counts (for the admin view)."""
        with self.conn() as c:
            rows = c.execute(
                "SELECT p.id, p.text, p.family, p.gold_best, (SELECT COUNT(*) FROM assignments s "
                "JOIN rankings r ON r.assignment_id = s.id WHERE s.prompt_id = p.id) AS n_rankings "
                "FROM prompts p ORDER BY p.id LIMIT ? OFFSET ?", (limit, offset)).fetchall()
            out = []
            for r in rows:
                cands = c.execute("SELECT text, model FROM candidates WHERE prompt_id = ? ORDER BY position",
                                  (r["id"],)).fetchall()
                out.append({"id": r["id"], "prompt": r["text"], "family": r["family"],
                            "gold_best": r["gold_best"], "n_rankings": r["n_rankings"],
                            "responses": [x["text"] for x in cands], "models": [x["model"] for x in cands]})
        return out

    # --- assignment -------------------------------------------------------------------------
    def next_assignment(self, annotator_id: int, redundancy: int, rng: random.Random | None = None,
                        lease_s: float = 1800.0) -> Assignment | None:
        """The annotator's open item, else a new one; None when nothing is left for them.

        An item is open while fewer than `redundancy` annotators hold it, counting finished
        assignments and unfinished ones younger than `lease_s` (an abandoned one frees its slot).
        An annotator never gets an item twice (UNIQUE(prompt_id, annotator_id)).
        """
        rng = rng or random.SystemRandom()
        with self.transaction() as c:
            row = c.execute(
                "SELECT s.id FROM assignments s LEFT JOIN rankings r ON r.assignment_id = s.id "
                "WHERE s.annotator_id = ? AND r.id IS NULL ORDER BY s.id LIMIT 1", (annotator_id,)).fetchone()
            if row:
                return self._assignment(c, row["id"])
            # Prefer items closest to complete, so finished (fully redundant) items accumulate early.
            row = c.execute(
                "SELECT p.id, (SELECT COUNT(*) FROM assignments s LEFT JOIN rankings r "
                "  ON r.assignment_id = s.id WHERE s.prompt_id = p.id "
                "  AND (r.id IS NOT NULL OR s.created > ?)) AS held FROM prompts p "
                "WHERE NOT EXISTS (SELECT 1 FROM assignments s WHERE s.prompt_id = p.id "
                "  AND s.annotator_id = ?) AND held < ? ORDER BY held DESC, p.id LIMIT 1",
                (time.time() - lease_s, annotator_id, redundancy)).fetchone()
            if row is None:
                return None
            k = c.execute("SELECT COUNT(*) FROM candidates WHERE prompt_id = ?", (row["id"],)).fetchone()[0]
            order = list(range(k))
            rng.shuffle(order)
            cur = c.execute("INSERT INTO assignments (prompt_id, annotator_id, display_order, created) "
                            "VALUES (?, ?, ?, ?)", (row["id"], annotator_id, json.dumps(order), time.time()))
            return self._assignment(c, int(cur.lastrowid))

    def _assignment(self, c: sqlite3.Connection, assignment_id: int) -> Assignment:
        row = c.execute("SELECT s.id, s.prompt_id, s.display_order, p.text, p.family FROM assignments s "
                        "JOIN prompts p ON p.id = s.prompt_id WHERE s.id = ?", (assignment_id,)).fetchone()
        texts = [r[0] for r in c.execute("SELECT text FROM candidates WHERE prompt_id = ? ORDER BY position",
                                         (row["prompt_id"],))]
        order = json.loads(row["display_order"])
        return Assignment(row["id"], row["prompt_id"], row["text"], row["family"],
                          [texts[i] for i in order], order)

    # --- rankings ---------------------------------------------------------------------------
    def submit_ranking(self, annotator_id: int, assignment_id: int, ranking: Any,
                       time_ms: int | None = None, flags: Any = None) -> int:
        """Record a ranking given in display positions (best->worst; nested list = tie).

        Raises StoreError (nothing stored) for a ranking that is not a permutation of the
        displayed positions, an assignment that is not the caller's, or one already ranked.
        """
        with self.transaction() as c:
            row = c.execute("SELECT annotator_id, display_order FROM assignments WHERE id = ?",
                            (assignment_id,)).fetchone()
            if row is None or row["annotator_id"] != annotator_id:
                # Same answer for "missing" and "someone else's": ids of others' work are not probed.
                raise StoreError(f"assignment {assignment_id} is not one of yours", 404)
            if c.execute("SELECT 1 FROM rankings WHERE assignment_id = ?", (assignment_id,)).fetchone():
                raise StoreError(f"assignment {assignment_id} is already ranked", 409)
            order = json.loads(row["display_order"])
            try:
                shown = normalize_ranking(ranking, len(order))
            except RankingError as e:
                raise StoreError(str(e), 422) from None
            stored = [[order[p] for p in g] if isinstance(g, list) else order[g] for g in shown]
            cand_flags = _check_flags(flags, order)
            if time_ms is not None and (not isinstance(time_ms, int) or isinstance(time_ms, bool)
                                        or time_ms < 0):
                raise StoreError("time_ms: expected a non-negative integer number of milliseconds", 422)
            cur = c.execute("INSERT INTO rankings (assignment_id, ranking, time_ms, flags, created) "
                            "VALUES (?, ?, ?, ?, ?)",
                            (assignment_id, json.dumps(stored), time_ms, json.dumps(cand_flags), time.time()))
            return int(cur.lastrowid)

    def progress(self, redundancy: int, annotator_id: int | None = None) -> dict[str, int]:
        """Counts for the progress bar: items, rankings, complete items, and this annotator's share."""
        with self.conn() as c:
            n_items = c.execute("SELECT COUNT(*) FROM prompts").fetchone()[0]
            n_rankings = c.execute("SELECT COUNT(*) FROM rankings").fetchone()[0]
            complete = c.execute(
                "SELECT COUNT(*) FROM (SELECT s.prompt_id FROM assignments s JOIN rankings r "
                "ON r.assignment_id = s.id GROUP BY s.prompt_id HAVING COUNT(*) >= ?)", (redundancy,)).fetchone()[0]
            out = {"items": n_items, "rankings": n_rankings, "complete_items": complete,
                   "target_rankings": n_items * redundancy, "redundancy": redundancy}
            if annotator_id is not None:
                done = c.execute("SELECT COUNT(*) FROM assignments s JOIN rankings r ON r.assignment_id = s.id "
                                 "WHERE s.annotator_id = ?", (annotator_id,)).fetchone()[0]
                # Items still ahead of this annotator: the open one, plus those they have not been
                # given that are not yet fully ranked.
                open_ = c.execute("SELECT COUNT(*) FROM assignments s WHERE s.annotator_id = ? AND NOT EXISTS "
                                  "(SELECT 1 FROM rankings r WHERE r.assignment_id = s.id)",
                                  (annotator_id,)).fetchone()[0]
                avail = open_ + c.execute(
                    "SELECT COUNT(*) FROM prompts p WHERE NOT EXISTS (SELECT 1 FROM assignments s "
                    "WHERE s.prompt_id = p.id AND s.annotator_id = ?) AND (SELECT COUNT(*) FROM "
                    "assignments s JOIN rankings r ON r.assignment_id = s.id WHERE s.prompt_id = p.id) < ?",
                    (annotator_id, redundancy)).fetchone()[0]
                out.update(done=done, available=avail)
        return out

    def ranking_rows(self) -> list[dict[str, Any]]:
        """Every stored ranking with its item, in candidate indices (the input of export)."""
        with self.conn() as c:
            rows = c.execute(
                "SELECT r.id, r.ranking, r.time_ms, r.flags, r.created, s.display_order, s.prompt_id, "
                "p.text AS prompt, p.family, p.gold_best, a.name AS annotator FROM rankings r "
                "JOIN assignments s ON s.id = r.assignment_id JOIN prompts p ON p.id = s.prompt_id "
                "JOIN annotators a ON a.id = s.annotator_id ORDER BY r.id").fetchall()
            cands: dict[int, list[sqlite3.Row]] = {}
            for r in c.execute("SELECT prompt_id, text, model FROM candidates ORDER BY prompt_id, position"):
                cands.setdefault(r["prompt_id"], []).append(r)
        return [{"ranking_id": r["id"], "prompt_id": r["prompt_id"], "prompt": r["prompt"],
                 "family": r["family"], "gold_best": r["gold_best"], "annotator": r["annotator"],
                 "responses": [x["text"] for x in cands[r["prompt_id"]]],
                 "models": [x["model"] for x in cands[r["prompt_id"]]],
                 "ranking": json.loads(r["ranking"]), "display_order": json.loads(r["display_order"]),
                 "time_ms": r["time_ms"], "flags": json.loads(r["flags"]), "created": r["created"]}
                for r in rows]


def _check_flags(flags: Any, order: list[int]) -> dict[str, list[str]]:
    """Validate {display position: [kinds]} and re-key it by candidate index."""
    if flags is None:
        return {}
    if not isinstance(flags, dict):
        raise StoreError('flags: expected an object like {"2": ["harmful"]}', 422)
    out: dict[str, list[str]] = {}
    for key, kinds in flags.items():
        try:
            pos = int(key)
        except (TypeError, ValueError):
            raise StoreError(f"flags: key {key!r} is not a display position", 422) from None
        if not 0 <= pos < len(order):
            raise StoreError(f"flags: position {pos} out of range; expected 0..{len(order) - 1}", 422)
        if not isinstance(kinds, list) or any(k not in FLAG_KINDS for k in kinds):
            raise StoreError(f"flags[{key}]: expected a list drawn from {list(FLAG_KINDS)}", 422)
        if kinds:
            out[str(order[pos])] = sorted(set(kinds))
    return out
