"""Write the built-in world to a folder of JSONL files in the shared formats.

    rlhfkit world export --out runs/world --seed 0 --size tiny

pretrain.jsonl {"text"}; sft.jsonl {"messages", "family", "demonstrator", "id"};
rm_prompts.jsonl / rl_prompts.jsonl / eval_prompts.jsonl {"prompt", "family", "id"};
world.json: seed, size, counts per split and family, and the demonstrations' gold means.
The same seed and size give byte-identical files.
"""

from __future__ import annotations

import json
import os
from collections import Counter, defaultdict
from pathlib import Path

from rlhfkit.data.jsonl import write_jsonl
from rlhfkit.world.corpus import generate_corpus
from rlhfkit.world.judge import judge
from rlhfkit.world.splits import SIZES, build_splits

FILES = {
    "pretrain": "pretrain.jsonl",
    "sft": "sft.jsonl",
    "rm": "rm_prompts.jsonl",
    "rl": "rl_prompts.jsonl",
    "eval": "eval_prompts.jsonl",
    "world": "world.json",
}


def _write_text(path: Path, text: str) -> None:
    """Atomic (temp file, then rename), as the JSONL files are (`write_jsonl`): under several processes every
    rank may export the same world into one folder, and a rank must never read another's half-written copy."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8", newline="\n")
    os.replace(tmp, path)


def demonstration_gold(sft: list[dict]) -> dict:
    """Mean gold score of the demonstrations, per demonstrator and overall: the ceiling an SFT
    model that imitates them can expect (before its own mistakes)."""
    by: dict[str, list[float]] = defaultdict(list)
    for r in sft:
        by[r["demonstrator"]].append(judge(r["messages"][0]["content"], r["messages"][-1]["content"]).score)
    every = [s for v in by.values() for s in v]
    out = {d: round(sum(v) / len(v), 4) for d, v in sorted(by.items())}
    out["mixture"] = round(sum(every) / max(1, len(every)), 4)
    return out


def export(out_dir: str | Path, seed: int = 0, size: str = "tiny") -> dict[str, Path]:
    """Generate the world for (`seed`, `size`) into `out_dir`; returns {name: path} for FILES."""
    if size not in SIZES:
        raise ValueError(f"unknown size {size!r}; choose from {sorted(SIZES)}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    docs = generate_corpus(seed, SIZES[size].corpus_chars)
    splits = build_splits(seed, size)
    paths = {name: out / fname for name, fname in FILES.items()}
    write_jsonl(paths["pretrain"], [{"text": d} for d in docs])
    for split in ("sft", "rm", "rl", "eval"):
        write_jsonl(paths[split], splits[split])
    summary = {
        "seed": seed,
        "size": size,
        "pretrain": {"documents": len(docs), "characters": sum(len(d) for d in docs)},
        "counts": {
            split: {"total": len(recs), **dict(sorted(Counter(r["family"] for r in recs).items()))}
            for split, recs in splits.items()
        },
        "demonstrators": dict(sorted(Counter(r["demonstrator"] for r in splits["sft"]).items())),
        "demonstration_gold": demonstration_gold(splits["sft"]),
        "files": {name: fname for name, fname in FILES.items()},
    }
    _write_text(paths["world"], json.dumps(summary, indent=2) + "\n")
    return paths
