"""JSONL reading and writing shared by every loader: sources (file, `save_to_disk` folder, hub id, list),
line-numbered rows with UTF-8/JSON errors as values, the skip-or-raise loop, and atomic writes."""

from __future__ import annotations

import codecs
import dataclasses
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

MAX_ERRORS_KEPT = 5  # first few skip messages kept on Records.errors
# `org/name`, not a local file name: a missing `data/train.jsonl` must not be sent to the hub.
_HUB_ID = re.compile(r"[\w.-]+/[\w.-]+")
_FILE_SUFFIXES = (".jsonl", ".json", ".gz", ".txt", ".csv", ".parquet")


class DataError(ValueError):
    """A malformed record or source. `reason` is the bare "what; expected what" message."""

    def __init__(self, reason: str, where: str | None = None):
        super().__init__(f"{where}: {reason}" if where else reason)
        self.reason, self.where = reason, where

    def at(self, where: str) -> DataError:
        return self if self.where else DataError(self.reason, where)


class Records(list):
    """A loader's result: the records, plus how many invalid ones `skip_invalid=True` dropped."""

    def __init__(self, items: Iterable = ()):
        super().__init__(items)
        self.skipped = 0
        self.errors: list[str] = []  # the first MAX_ERRORS_KEPT messages



def kind_of(v: Any) -> str:
    if v is None:
        return "null"
    for types, name in ((bool, "a boolean"), ((int, float), "a number"), (str, "a string"),
                        ((list, tuple), "an array"), (dict, "an object")):
        if isinstance(v, types):
            return name
    return type(v).__name__


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict:
    out = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f'duplicate key "{key}"')
        out[key] = value
    return out


def _no_nan(name: str) -> float:
    raise ValueError(f"{name} is not JSON")  # Python's json accepts NaN/Infinity; the format does not


def _jsonl_rows(path: Path) -> Iterator[tuple[int, Any]]:
    """Yield (line number, parsed object or DataError) for each non-blank line."""
    with open(path, "rb") as f:
        for n, raw in enumerate(f, 1):
            if n == 1 and raw.startswith(codecs.BOM_UTF8):
                raw = raw[len(codecs.BOM_UTF8):]
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                yield n, DataError(f"invalid UTF-8 at byte {e.start + 1} of the line; "
                                   "expected UTF-8 text")
                continue
            if not text.strip():
                continue
            try:
                yield n, json.loads(text, object_pairs_hook=_no_duplicate_keys,
                                    parse_constant=_no_nan)
            except json.JSONDecodeError as e:
                cut = " (the file ends mid-record: truncated?)" if not raw.endswith(b"\n") else ""
                yield n, DataError(f"invalid JSON at column {e.colno}: {e.msg}{cut}; "
                                   "expected one complete JSON object per line")
            except (ValueError, RecursionError) as e:  # duplicate key, NaN, huge int, deep nesting
                msg = "nested too deeply" if isinstance(e, RecursionError) else str(e)
                yield n, DataError(f"invalid JSON: {msg}; expected one JSON object per line")


def _from_disk(path: Path):
    import datasets  # lazy: importing datasets costs seconds

    ds = datasets.load_from_disk(str(path))
    if isinstance(ds, datasets.DatasetDict):
        if "train" not in ds and len(ds) != 1:
            raise DataError(f"has splits {sorted(ds)}; expected a 'train' split or a single split",
                            str(path))
        ds = ds["train"] if "train" in ds else next(iter(ds.values()))
    return ds


def _open(source: Any) -> tuple[str, Iterable[tuple[int, Any]]]:
    """Resolve a source to (name used in messages, iterator of (line, row))."""
    if not isinstance(source, (str, os.PathLike)):
        return "<records>", enumerate(source, 1)  # a list of dicts or a datasets.Dataset
    path = Path(source)
    if path.is_dir():
        return str(source), enumerate(_from_disk(path), 1)
    if path.exists():
        return str(source), _jsonl_rows(path)
    if _HUB_ID.fullmatch(str(source)) and not str(source).endswith(_FILE_SUFFIXES):
        import datasets

        return str(source), enumerate(datasets.load_dataset(str(source), split="train"), 1)
    raise FileNotFoundError(f"{source}: no such file or folder; expected a JSONL file, a folder saved "
                            "with datasets' save_to_disk, or a hub dataset id org/name")


def load_records(source: Any, parse: Callable[[dict, int], Any], skip_invalid: bool) -> Records:
    name, rows = _open(source)
    out = Records()
    for line, row in rows:
        try:
            if isinstance(row, DataError):
                raise row
            if not isinstance(row, dict):
                raise DataError(f"line is {kind_of(row)}; expected a JSON object")
            out.append(parse(row, line))
        except DataError as e:
            err = e.at(f"{name}:{line}")
            if not skip_invalid:
                raise err from None
            out.skipped += 1
            if len(out.errors) < MAX_ERRORS_KEPT:
                out.errors.append(str(err))
    if not out:
        if out.skipped:
            raise DataError(f"no valid records ({out.skipped} invalid, first: {out.errors[0]}); "
                            "expected at least one", name)
        raise DataError("no records; expected at least one JSON object", name)
    return out


def _as_dict(record: Any) -> dict:
    if hasattr(record, "to_dict"):
        return record.to_dict()
    if dataclasses.is_dataclass(record) and not isinstance(record, type):
        return dataclasses.asdict(record)
    if isinstance(record, str):
        return {"text": record}  # so write_jsonl(p, load_text(q)) round-trips
    if isinstance(record, dict):
        return record
    raise TypeError(f"cannot write {type(record).__name__} as a JSON object")


def _dumps(obj: dict) -> str:
    line = json.dumps(obj, ensure_ascii=False, allow_nan=False)
    try:
        line.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates (from "\ud800" escapes) only survive as escapes
        line = json.dumps(obj, ensure_ascii=True, allow_nan=False)
    return line


def write_jsonl(path: str | os.PathLike, records: Iterable[Any]) -> Path:
    """Write records (dataclasses, dicts or texts) one per line, atomically: a reader sees the old
    file or the whole new one, never a half-written one (temp file in the same folder + os.replace)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
            for record in records:
                f.write(_dumps(_as_dict(record)) + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
