"""Record types and loaders for every data format of the recipe (JSONL, one object per line).

    text      {"text": str}                                          load_text     -> list[str]
    SFT       {"messages": [{"role", "content"}, ...]}               load_sft      -> list[Conversation]
              or {"prompt": str, "completion": str}
    pairwise  {"prompt", "chosen", "rejected"}  (TRL's form)         load_pairs    -> list[Ranking], K=2
    rankings  {"prompt", "responses": [K], "ranking": [2, [0, 3], 1],
               "annotator", "weight"?, "family"?}  (InstructGPT's)   load_rankings -> list[Ranking]
    prompts   {"prompt", "family"?, "id"?}                           load_prompts  -> list[PromptRecord]

A `source` is a JSONL path, a folder written by `datasets` `save_to_disk`, a hub id `org/name`
(loaded with `datasets.load_dataset(id, split="train")`), or an in-memory list of dicts / a Dataset.
Extra keys are kept in each record's `meta` and written back by `write_jsonl`.

Every malformed record raises `DataError("FILE:LINE: what is wrong; expected what")` (LINE is the
1-based row for datasets). With `skip_invalid=True` bad records are dropped instead and counted in the
returned list's `.skipped` / `.errors`; an empty result is still an error.

Decisions: blank lines are skipped (line numbers still count them); a UTF-8 BOM is ignored; duplicate
keys in one object are an error; JSON null counts as absent. Prompts, texts and SFT completions must be
non-blank, but a *response* may be "" (a model can answer nothing and be ranked last). A record whose
responses are all identical (pairwise: chosen == rejected) is an error: it carries no preference signal
and is almost always a pipeline bug. Identical responses inside a larger ranking are allowed (their
pair just adds a constant to the loss). `weight` must be finite and >= 0.
"""

from __future__ import annotations

import codecs
import dataclasses
import json
import math
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

ROLES = ("system", "user", "assistant")
MIN_K, MAX_K = 2, 9
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


# ---------------------------------------------------------------- record types


@dataclass
class Conversation:
    """An SFT example: messages [{"role", "content"}] (roles in ROLES) and the record's extra keys."""

    messages: list[dict]
    meta: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return _merge({"messages": self.messages}, self.meta)


@dataclass
class PromptRecord:
    """A prompt for reward-model labeling, RL or evaluation; `id` defaults to the line number."""

    prompt: str
    family: str | None = None
    id: str = ""
    meta: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        core = {"prompt": self.prompt, "family": self.family, "id": self.id}
        return _merge({k: v for k, v in core.items() if v is not None}, self.meta)


@dataclass
class Ranking:
    """K responses to one prompt ranked best -> worst by one annotator (InstructGPT, Ouyang+ 2022 §3.5).

    `ranking` is a list of tiers, e.g. [[2], [0, 3], [1]]: response 2 is best, 0 and 3 tie, 1 is worst.
    The constructor also accepts the JSONL form [2, [0, 3], 1] and normalises it to tiers.
    """

    prompt: str
    responses: list[str]
    ranking: list[list[int]]
    annotator: str | None = None
    weight: float = 1.0
    family: str | None = None
    meta: dict = field(default_factory=dict)

    def __post_init__(self):  # the loaders rely on these checks too
        if not isinstance(self.responses, list):
            raise DataError(f'"responses" is {_kind(self.responses)}; '
                            f'expected a list of {MIN_K} to {MAX_K} strings')
        if not MIN_K <= self.k <= MAX_K:
            raise DataError(f'"responses" has {self.k} item(s); expected {MIN_K} to {MAX_K}')
        for i, r in enumerate(self.responses):
            if not isinstance(r, str):
                raise DataError(f'"responses"[{i}] is {_kind(r)}; expected a string')
        if len(set(self.responses)) == 1:
            raise DataError('all responses are identical; expected at least two different responses')
        self.ranking = _check_ranking(self.ranking, self.k)
        w = self.weight
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not math.isfinite(w) or w < 0:
            raise DataError(f'"weight" is {_show(w)}; expected a finite number >= 0')
        self.weight = float(w)

    @property
    def k(self) -> int:
        return len(self.responses)

    def pairs(self) -> list[tuple[int, int, bool]]:
        """(winner, loser, is_tie) for every pair: C(K,2) in all. Tied pairs come as (i, j, True)."""
        out = []
        for t, tier in enumerate(self.ranking):
            out += [(a, b, True) for n, a in enumerate(tier) for b in tier[n + 1:]]
            out += [(a, b, False) for a in tier for lower in self.ranking[t + 1:] for b in lower]
        return out

    def to_dict(self) -> dict:
        """The JSONL form: single tiers as plain ints, ties as nested lists; defaults left out."""
        core = {"prompt": self.prompt, "responses": list(self.responses),
                "ranking": [t[0] if len(t) == 1 else list(t) for t in self.ranking],
                "annotator": self.annotator, "weight": self.weight, "family": self.family}
        defaults = {"annotator": None, "weight": 1.0, "family": None}
        return _merge({k: v for k, v in core.items() if k not in defaults or v != defaults[k]},
                      self.meta)


def ranking_from_scores(prompt: str, responses: list[str], scores: list[float],
                        annotator: str | None = None, *, weight: float = 1.0,
                        family: str | None = None, meta: dict | None = None) -> Ranking:
    """Rank responses by score, highest first; exactly equal scores share a tier (a tie)."""
    if len(scores) != len(responses):
        raise DataError(f"{len(scores)} scores for {len(responses)} responses; expected one each")
    if not all(isinstance(s, (int, float)) and math.isfinite(s) for s in scores):
        raise DataError(f"scores {scores!r} are not all finite numbers; expected finite numbers")
    tiers: list[list[int]] = []
    for i in sorted(range(len(scores)), key=lambda i: -scores[i]):  # stable: ties keep index order
        if tiers and scores[tiers[-1][0]] == scores[i]:
            tiers[-1].append(i)
        else:
            tiers.append([i])
    return Ranking(prompt, list(responses), tiers, annotator, weight, family, dict(meta or {}))


def _merge(core: dict, meta: dict) -> dict:
    out = dict(core)
    for key, value in meta.items():
        out.setdefault(key, value)  # a core field always wins over a stray meta key of the same name
    return out


# ---------------------------------------------------------------- field checks


def _kind(v: Any) -> str:
    if v is None:
        return "null"
    for types, name in ((bool, "a boolean"), ((int, float), "a number"), (str, "a string"),
                        ((list, tuple), "an array"), (dict, "an object")):
        if isinstance(v, types):
            return name
    return type(v).__name__


def _show(v: Any, limit: int = 40) -> str:
    try:
        text = json.dumps(v, ensure_ascii=False)
    except (TypeError, ValueError):
        text = repr(v)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _present(row: dict, key: str) -> bool:
    return row.get(key) is not None  # datasets fills absent columns with None


def _str(row: dict, key: str, *, required: bool = True, blank_ok: bool = False) -> str | None:
    if not _present(row, key):
        if required:
            raise DataError(f'missing "{key}"; expected a string')
        return None
    v = row[key]
    if not isinstance(v, str):
        raise DataError(f'"{key}" is {_kind(v)}; expected a string')
    if not blank_ok and not v.strip():
        raise DataError(f'"{key}" is empty; expected a non-empty string')
    return v


def _check_ranking(ranking: Any, k: int) -> list[list[int]]:
    """Validate a best->worst ranking of k responses; return it as tiers of indices."""
    expected = f"expected each of 0..{k - 1} exactly once"
    if not isinstance(ranking, (list, tuple)):
        raise DataError(f'"ranking" is {_kind(ranking)}; expected a list of indices best->worst')
    tiers, seen = [], set()
    for pos, entry in enumerate(ranking):
        tier = list(entry) if isinstance(entry, (list, tuple)) else [entry]
        if not tier:
            raise DataError(f'"ranking"[{pos}] is an empty tie; expected a list of at least one index')
        for x in tier:
            if isinstance(x, bool) or not isinstance(x, int):
                raise DataError(f'"ranking" has non-integer entry {_show(x)}; expected indices '
                                f'0..{k - 1}, a nested list of them marking a tie')
            if not 0 <= x < k:
                raise DataError(f'"ranking" has index {x} out of range; {expected}')
            if x in seen:
                raise DataError(f'"ranking" has duplicate index {x}; {expected}')
            seen.add(x)
        tiers.append(tier)
    missing = sorted(set(range(k)) - seen)
    if missing:
        raise DataError(f'"ranking" is missing index {", ".join(map(str, missing))}; {expected}')
    return tiers


def _check_messages(msgs: Any) -> list[dict]:
    if not isinstance(msgs, list) or not msgs:
        got = "empty" if isinstance(msgs, list) else _kind(msgs)
        raise DataError(f'"messages" is {got}; expected a non-empty list of {{"role", "content"}}')
    out = []
    for i, m in enumerate(msgs):
        where = f'"messages"[{i}]'
        if not isinstance(m, dict):
            raise DataError(f'{where} is {_kind(m)}; expected an object with "role" and "content"')
        if m.get("role") not in ROLES:
            got = "no role" if m.get("role") is None else f"unknown role {_show(m['role'])}"
            raise DataError(f'{where} has {got}; expected one of "system", "user", "assistant"')
        if not isinstance(m.get("content"), str):
            got = "no content" if m.get("content") is None else f"content {_kind(m['content'])}"
            raise DataError(f'{where} has {got}; expected "content" to be a string')
        out.append({k: v for k, v in m.items() if v is not None})
    if not any(m["role"] == "assistant" and m["content"].strip() for m in out):
        raise DataError('no assistant turn with content; expected at least one "assistant" message')
    return out


# ---------------------------------------------------------------- record parsers (row -> record)

_RANKING_KEYS = {"prompt", "responses", "ranking", "annotator", "weight", "family"}
_PAIR_KEYS = {"prompt", "chosen", "rejected", "annotator", "weight", "family"}


def _parse_text(row: dict, line: int) -> str:
    return _str(row, "text")


def _parse_sft(row: dict, line: int) -> Conversation:
    chat = _present(row, "messages")
    plain = _present(row, "prompt") or _present(row, "completion")
    if chat and plain:
        raise DataError('has both "messages" and "prompt"/"completion"; expected one form')
    if chat:
        return Conversation(_check_messages(row["messages"]),
                            {k: v for k, v in row.items() if k != "messages"})
    if plain:
        prompt, completion = _str(row, "prompt"), _str(row, "completion")
        meta = {k: v for k, v in row.items() if k not in ("prompt", "completion")}
        return Conversation([{"role": "user", "content": prompt},
                             {"role": "assistant", "content": completion}], meta)
    raise DataError('no "messages" or "prompt"/"completion"; expected an SFT record')


def _parse_ranking(row: dict, line: int) -> Ranking:
    kway = _present(row, "responses") or _present(row, "ranking")
    pair = _present(row, "chosen") or _present(row, "rejected")
    if kway and pair:
        raise DataError('has both "responses"/"ranking" and "chosen"/"rejected"; expected one form')
    if not (kway or pair):
        raise DataError('no "responses"/"ranking" or "chosen"/"rejected"; expected a K-way ranking '
                        'or a pairwise preference')
    prompt = _str(row, "prompt")
    common = dict(annotator=_str(row, "annotator", required=False, blank_ok=True),
                  family=_str(row, "family", required=False, blank_ok=True),
                  weight=row["weight"] if _present(row, "weight") else 1.0)
    if pair:
        chosen = _str(row, "chosen", blank_ok=True)
        rejected = _str(row, "rejected", blank_ok=True)
        if chosen == rejected:
            raise DataError('"chosen" equals "rejected"; expected two different responses')
        meta = {k: v for k, v in row.items() if k not in _PAIR_KEYS}
        return Ranking(prompt, [chosen, rejected], [[0], [1]], meta=meta, **common)
    for key in ("responses", "ranking"):
        if not _present(row, key):
            raise DataError(f'missing "{key}"; expected a K-way ranking with "responses" and "ranking"')
    meta = {k: v for k, v in row.items() if k not in _RANKING_KEYS}
    return Ranking(prompt, row["responses"], row["ranking"], meta=meta, **common)


def _parse_pair(row: dict, line: int) -> Ranking:
    r = _parse_ranking(row, line)
    if r.k != 2:
        raise DataError(f'"responses" has {r.k} items; expected a pair (load_rankings reads K-way)')
    return r


# ---------------------------------------------------------------- sources


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


def _load(source: Any, parse: Callable[[dict, int], Any], skip_invalid: bool) -> Records:
    name, rows = _open(source)
    out = Records()
    for line, row in rows:
        try:
            if isinstance(row, DataError):
                raise row
            if not isinstance(row, dict):
                raise DataError(f"line is {_kind(row)}; expected a JSON object")
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


# ---------------------------------------------------------------- public loaders


def load_text(source: Any, skip_invalid: bool = False) -> Records:
    """Pretraining documents: the "text" of each record."""
    return _load(source, _parse_text, skip_invalid)


def load_sft(source: Any, skip_invalid: bool = False) -> Records:
    """SFT conversations; {"prompt", "completion"} becomes a user turn and an assistant turn."""
    return _load(source, _parse_sft, skip_invalid)


def load_rankings(source: Any, skip_invalid: bool = False) -> Records:
    """K-way rankings; pairwise {"prompt", "chosen", "rejected"} records load as K=2 rankings."""
    return _load(source, _parse_ranking, skip_invalid)


def load_pairs(source: Any, skip_invalid: bool = False) -> Records:
    """Pairwise preferences (TRL's form, or K-way records with K=2) as Rankings of 2."""
    return _load(source, _parse_pair, skip_invalid)


def load_prompts(source: Any, skip_invalid: bool = False) -> Records:
    """Prompts with optional "family" and "id" (ids must be unique; default: the line number)."""
    seen: dict[str, int] = {}

    def parse(row: dict, line: int) -> PromptRecord:
        prompt = _str(row, "prompt")
        family = _str(row, "family", required=False, blank_ok=True)
        rid = row.get("id")
        if rid is None:
            rid = str(line)
        elif isinstance(rid, bool) or not isinstance(rid, (str, int)) or rid == "":
            raise DataError(f'"id" is {_show(rid)}; expected a non-empty string or an integer')
        rid = str(rid)
        if rid in seen:
            raise DataError(f'id "{rid}" repeats line {seen[rid]}; expected unique ids')
        seen[rid] = line
        meta = {k: v for k, v in row.items() if k not in ("prompt", "family", "id")}
        return PromptRecord(prompt, family, rid, meta)

    return _load(source, parse, skip_invalid)


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
