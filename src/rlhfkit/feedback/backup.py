"""`rlhfkit label backup DB OUT`: a consistent copy of a labeling database, safe while the app serves it.

SQLite's online backup API copies the pages of one read snapshot (in WAL mode writers carry on meanwhile),
so the copy is the database as of one moment: no half-recorded ranking, whatever is being submitted.
The copy goes to a temporary file next to OUT, is checked (integrity_check), switched to a plain
rollback journal (one self-contained file) and fsynced, then renamed over OUT: OUT is always the previous
backup or the complete new one, never a partial file.

To restore: stop the server, move DB and its DB-wal / DB-shm files aside, and copy the backup to DB.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from rlhfkit.feedback.store import StoreError, connect, schema_version

TABLES = ("prompts", "candidates", "annotators", "assignments", "rankings")


def backup(db: str | Path, out: str | Path) -> dict[str, int]:
    """Copy the labeling database `db` to `out` atomically; returns the row count of each table copied."""
    db, out = Path(db), Path(out)
    if not db.is_file():
        raise FileNotFoundError(f"{db}: no such labeling database")
    if out.exists() and out.resolve() == db.resolve():
        raise ValueError(f"{out}: the backup must go to another file than the database it copies")
    wal = out.with_name(out.name + "-wal")
    if wal.exists():
        # Renaming a file over a WAL database would let SQLite replay that stale log onto the copy.
        raise ValueError(f"{wal} exists: {out} is (or was) a live database; write the backup to another file")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        try:
            counts = _copy(db, tmp)
        except sqlite3.Error as e:  # not an SQLite file, an unwritable folder, a full disk...
            raise StoreError(f"cannot back up {db} to {out}: {e}") from None
        _fsync(tmp)
        os.replace(tmp, out)
        _fsync(out.parent)  # the rename itself survives a power cut only once the directory is synced
    finally:
        tmp.unlink(missing_ok=True)
    return counts


def _copy(db: Path, tmp: Path) -> dict[str, int]:
    """Back `db` up into the new file `tmp`, check the copy and count its rows."""
    tmp.unlink(missing_ok=True)
    src, dst = connect(db), None
    try:
        if schema_version(src) == 0:
            raise StoreError(f"{db}: not a labeling database (no schema_version table)")
        dst = sqlite3.connect(str(tmp), isolation_level=None)
        src.backup(dst)  # all pages in one step: one consistent snapshot
        dst.execute("PRAGMA journal_mode = DELETE")
        check = dst.execute("PRAGMA integrity_check").fetchone()[0]
        if check != "ok":
            raise StoreError(f"{db}: the copy fails SQLite's integrity_check: {check}")
        return {t: dst.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in TABLES}
    finally:
        src.close()
        if dst is not None:
            dst.close()


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
