"""Load prompts and their K candidate responses into the store
(`rlhfkit label add --db labels.db --from samples.jsonl`).

One JSON object per line: {"prompt": str, "responses": [K strings, 2<=K<=9], optional "family": str,
"model": str or [K strs], "gold_best": int}. The whole file is checked before anything is written;
a bad record is reported as `file:line: what, expected what`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rlhfkit.feedback.rankings import MAX_K, MIN_K
from rlhfkit.feedback.store import Store


class CandidateError(ValueError):
    """One or more bad records in a candidates file (all of them listed, up to 20)."""


def parse_record(rec: Any) -> dict[str, Any]:
    """Validate one record; returns the normalized fields or raises ValueError('what, expected what')."""
    if not isinstance(rec, dict):
        raise ValueError(f"got a {type(rec).__name__}, expected a JSON object")
    prompt = rec.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise ValueError('"prompt" missing or empty, expected a non-empty string')
    responses = rec.get("responses")
    if not isinstance(responses, list) or not all(isinstance(r, str) for r in responses):
        raise ValueError('"responses" missing or not all strings, expected a list of strings')
    k = len(responses)
    if not MIN_K <= k <= MAX_K:
        raise ValueError(f'"responses" has {k} items, expected {MIN_K} to {MAX_K}')
    family = rec.get("family", "")
    if not isinstance(family, str):
        raise ValueError('"family" is not a string, expected a string such as "math"')
    model = rec.get("model", "")
    if isinstance(model, str):
        models = [model] * k
    elif isinstance(model, list) and len(model) == k and all(isinstance(m, str) for m in model):
        models = list(model)
    else:
        raise ValueError(f'"model" is malformed, expected a string or a list of {k} strings')
    gold = rec.get("gold_best")
    if gold is not None and (not isinstance(gold, int) or isinstance(gold, bool) or not 0 <= gold < k):
        raise ValueError(f'"gold_best" is {gold!r}, expected an index 0..{k - 1} or null')
    return {"prompt": prompt, "responses": responses, "family": family, "models": models, "gold_best": gold}


def read_candidates(path: str | Path) -> list[dict[str, Any]]:
    """Parse and validate a candidates JSONL file; raises CandidateError listing every bad line."""
    path = Path(path)
    records, errors = [], []
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                records.append(parse_record(json.loads(line)))
            except json.JSONDecodeError as e:
                errors.append(f"{path}:{lineno}: not valid JSON ({e.msg}), expected one JSON object per line")
            except ValueError as e:
                errors.append(f"{path}:{lineno}: {e}")
    if errors:
        more = f"\n... and {len(errors) - 20} more" if len(errors) > 20 else ""
        raise CandidateError("\n".join(errors[:20]) + more)
    return records


def add_from_jsonl(db: Store | str | Path, path: str | Path) -> list[int]:
    """Add every record of `path` to the store in one transaction; returns the new prompt ids."""
    store = db if isinstance(db, Store) else Store.open(db)
    records = read_candidates(path)
    with store.transaction() as c:
        return [store.add_item(c, r["prompt"], r["responses"], r["family"], r["models"], r["gold_best"])
                for r in records]
