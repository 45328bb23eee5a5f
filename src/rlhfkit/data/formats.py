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

import json
import math
from dataclasses import dataclass, field
from typing import Any

from .jsonl import DataError, Records, kind_of, load_records, write_jsonl  # noqa: F401 (re-exported)

ROLES = ("system", "user", "assistant")
MIN_K, MAX_K = 2, 9
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
            raise DataError(f'"responses" is {kind_of(self.responses)}; '
                            f'expected a list of {MIN_K} to {MAX_K} strings')
        if not MIN_K <= self.k <= MAX_K:
            raise DataError(f'"responses" has {self.k} item(s); expected {MIN_K} to {MAX_K}')
        for i, r in enumerate(self.responses):
            if not isinstance(r, str):
                raise DataError(f'"responses"[{i}] is {kind_of(r)}; expected a string')
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
        raise DataError(f'"{key}" is {kind_of(v)}; expected a string')
    if not blank_ok and not v.strip():
        raise DataError(f'"{key}" is empty; expected a non-empty string')
    return v


def _check_ranking(ranking: Any, k: int) -> list[list[int]]:
    """Validate a best->worst ranking of k responses; return it as tiers of indices."""
    expected = f"expected each of 0..{k - 1} exactly once"
    if not isinstance(ranking, (list, tuple)):
        raise DataError(f'"ranking" is {kind_of(ranking)}; expected a list of indices best->worst')
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
        got = "empty" if isinstance(msgs, list) else kind_of(msgs)
        raise DataError(f'"messages" is {got}; expected a non-empty list of {{"role", "content"}}')
    out = []
    for i, m in enumerate(msgs):
        where = f'"messages"[{i}]'
        if not isinstance(m, dict):
            raise DataError(f'{where} is {kind_of(m)}; expected an object with "role" and "content"')
        if m.get("role") not in ROLES:
            got = "no role" if m.get("role") is None else f"unknown role {_show(m['role'])}"
            raise DataError(f'{where} has {got}; expected one of "system", "user", "assistant"')
        if not isinstance(m.get("content"), str):
            got = "no content" if m.get("content") is None else f"content {kind_of(m['content'])}"
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


# ---------------------------------------------------------------- public loaders


def load_text(source: Any, skip_invalid: bool = False) -> Records:
    """Pretraining documents: the "text" of each record."""
    return load_records(source, _parse_text, skip_invalid)


def load_sft(source: Any, skip_invalid: bool = False) -> Records:
    """SFT conversations; {"prompt", "completion"} becomes a user turn and an assistant turn."""
    return load_records(source, _parse_sft, skip_invalid)


def load_rankings(source: Any, skip_invalid: bool = False) -> Records:
    """K-way rankings; pairwise {"prompt", "chosen", "rejected"} records load as K=2 rankings."""
    return load_records(source, _parse_ranking, skip_invalid)


def load_pairs(source: Any, skip_invalid: bool = False) -> Records:
    """Pairwise preferences (TRL's form, or K-way records with K=2) as Rankings of 2."""
    return load_records(source, _parse_pair, skip_invalid)


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

    return load_records(source, parse, skip_invalid)
