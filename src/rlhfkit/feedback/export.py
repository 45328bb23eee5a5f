"""Export stored rankings as K-way ranking records for the reward stage
(`rlhfkit label export --db labels.db --out rankings.jsonl`).

Each record: {"prompt", "responses" (candidate order), "ranking" (candidate indices best->worst),
"annotator", "family", "weight"} plus metadata the quality code uses: "id" (prompt id),
"display_order", "time_ms", "flags", "gold_best", "models". `weight` comes from quality.assess.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rlhfkit.feedback.rankings import RankingError, normalize_ranking
from rlhfkit.feedback.quality import QualityConfig, apply_weights, assess
from rlhfkit.feedback.store import Store


def export_records(store: Store, weights: bool = True, cfg: QualityConfig | None = None) -> list[dict[str, Any]]:
    """All rankings as records; with `weights`, each gets its annotator's reliability in [0, 1]."""
    records = []
    for row in store.ranking_rows():
        rec = {"prompt": row["prompt"], "responses": row["responses"], "ranking": row["ranking"],
               "annotator": row["annotator"], "family": row["family"], "id": str(row["prompt_id"]),
               "display_order": row["display_order"], "time_ms": row["time_ms"], "flags": row["flags"],
               "models": row["models"]}
        if row["gold_best"] is not None:
            rec["gold_best"] = row["gold_best"]
        records.append(rec)
    if weights and records:
        records = apply_weights(records, assess(records, cfg))
    return records


def write_jsonl(records: list[dict[str, Any]], path: str | Path) -> int:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with Path(path).open("w", encoding="utf-8") as f:
        for rec in records:
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")
    return len(records)


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """Read ranking records; a bad line raises ValueError naming `file:line`."""
    out = []
    with Path(path).open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{lineno}: not valid JSON ({e.msg}), expected one object per line") from None
            missing = [k for k in ("prompt", "responses", "ranking") if k not in rec]
            if missing:
                raise ValueError(f"{path}:{lineno}: missing {missing}, expected a K-way ranking record")
            try:
                normalize_ranking(rec["ranking"], len(rec["responses"]))
            except (RankingError, TypeError) as e:
                raise ValueError(f"{path}:{lineno}: {e}") from None
            out.append(rec)
    return out
