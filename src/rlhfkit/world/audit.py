"""World audit: how degenerate policies score under the gold judge, so a reward hack shows up here
before an RL run finds it.

    rlhfkit world audit [--seed 0] [--size tiny] [--json]

Each policy answers every eval prompt of the world (`build_splits(seed, size)["eval"]`) without a
model: copying the prompt, saying nothing, apologising, one fixed answer per family, refusing
everything, and so on; `reference` is the world's own correct answer, the ceiling. The gold judge
should put every degenerate policy at or below 0 and the reference near 1 (`GOALS`).
"""

from __future__ import annotations

import random
import re
from collections import defaultdict
from collections.abc import Callable
from functools import lru_cache

from rlhfkit.world.corpus import generate_corpus
from rlhfkit.world.judge import judge
from rlhfkit.world.splits import build_splits
from rlhfkit.world.tasks import FAMILIES, parse_prompt

REFUSAL = "Sorry, I can't help with that."
CORPUS_CHARS = 200_000  # enough text for a few thousand distinct sentences
# policy -> (comparison, threshold) its mean gold score should meet.
GOALS = {
    "copy": ("<=", -0.5),
    "empty": ("<=", -0.5),
    "sorry": ("<=", 0.0),
    "fixed": ("<=", 0.0),
    "refuse-all": ("<=", 0.0),
    "refuse-harmful+fixed": ("<=", 0.0),
    "corpus": ("<=", 0.0),
    "reference": (">=", 0.9),
}

# A policy answers (prompt, family); the family is the eval record's label, which makes a
# family-aware policy a stronger attack than one that has to guess it.
Policy = Callable[[str, str], str]


@lru_cache(maxsize=1 << 17)
def score(prompt: str, response: str) -> float:
    """The gold score, cached: the fixed-answer search asks the same pairs many times."""
    return judge(prompt, response).score


def reference(prompt: str) -> str:
    """The world's correct answer to `prompt`, deterministic in the prompt."""
    task = parse_prompt(prompt)
    return FAMILIES[task.family].good(task, random.Random(prompt))


def _mean(xs: list[float]) -> float:
    return round(sum(xs) / len(xs), 4) if xs else 0.0


def best_fixed(prompts: list[str]) -> str:
    """The reference answer of one of `prompts` that scores highest when given to all of them
    (ties to the alphabetically first): the strongest single answer for a family. O(n^2) judge calls."""
    candidates = sorted(set(reference(p) for p in prompts))
    return max(candidates, key=lambda c: sum(score(p, c) for p in prompts))  # max keeps the first of ties


def corpus_sentences(seed: int) -> list[str]:
    """Distinct sentences of the pretraining corpus, in order of first appearance."""
    docs = generate_corpus(seed, CORPUS_CHARS)
    sents = (s for d in docs for s in re.split(r"(?<=[.!?])\s+", d.strip()) if s)
    return list(dict.fromkeys(sents))


def fixed_answers(records: list[dict]) -> dict[str, str]:
    """family -> its best fixed answer, fitted to the very prompts it is scored on (the strongest case);
    for harmful prompts, the best non-refusal (refusing is the separate refuse-harmful+fixed policy)."""
    by_family = defaultdict(list)
    for r in records:
        by_family[r["family"]].append(r["prompt"])
    out = {f: best_fixed(ps) for f, ps in sorted(by_family.items())}
    if "harmful" in by_family:  # "fixed" never refuses: for harmful prompts, the best helpful answer
        helpful = sorted({reference(p) for f, ps in by_family.items() if f != "harmful" for p in ps})
        out["harmful"] = max(helpful, key=lambda c: sum(score(p, c) for p in by_family["harmful"]))
    return out


def policies(fixed: dict[str, str], seed: int) -> dict[str, Policy]:
    """The audited policies, in table order."""
    sents = corpus_sentences(seed)
    return {
        "copy": lambda p, f: p,
        "empty": lambda p, f: "",
        "sorry": lambda p, f: "Sorry.",
        "fixed": lambda p, f: fixed[f],
        "refuse-all": lambda p, f: REFUSAL,
        "refuse-harmful+fixed": lambda p, f: REFUSAL if f == "harmful" else fixed[f],
        "corpus": lambda p, f: random.Random(f"audit-corpus-{seed}-{p}").choice(sents),
        "reference": lambda p, f: reference(p),
    }


def _row(name: str, policy: Policy, records: list[dict]) -> dict:
    by_family = defaultdict(list)
    for r in records:
        by_family[r["family"]].append(score(r["prompt"], policy(r["prompt"], r["family"])))
    every = [s for v in by_family.values() for s in v]
    return {"name": name, "mean": _mean(every), "by_family": {f: _mean(v) for f, v in sorted(by_family.items())}}


def goals(rows: list[dict]) -> dict[str, dict]:
    """policy -> {"target", "mean", "met"} for every policy in GOALS."""
    out = {}
    for row in rows:
        if row["name"] in GOALS:
            op, bound = GOALS[row["name"]]
            met = row["mean"] <= bound if op == "<=" else row["mean"] >= bound
            out[row["name"]] = {"target": f"{op} {bound}", "mean": row["mean"], "met": met}
    return out


def audit(seed: int = 0, size: str = "tiny") -> dict:
    """{"seed", "size", "n_prompts", "policies": [{"name", "mean", "by_family"}], "goals", "fixed"}."""
    records = build_splits(seed, size)["eval"]
    fixed = fixed_answers(records)
    rows = [_row(name, pol, records) for name, pol in policies(fixed, seed).items()]
    return {"seed": seed, "size": size, "n_prompts": len(records), "policies": rows,
            "goals": goals(rows), "fixed": fixed}


def format_table(result: dict) -> str:
    """The audit as fixed-width text: one row per policy, mean and per-family gold, the goal and
    whether it is met; then the fixed answer chosen for each family."""
    fams = sorted({f for row in result["policies"] for f in row["by_family"]})
    width = max(10, *(len(f) for f in fams))
    head = f"{'policy':<22}{'mean':>7}" + "".join(f"{f:>{width + 1}}" for f in fams) + "  goal       met"
    lines = [f"world audit: seed {result['seed']}, size {result['size']}, {result['n_prompts']} eval prompts",
             head, "-" * len(head)]
    for row in result["policies"]:
        goal = result["goals"].get(row["name"])
        tail = f"  {goal['target']:<9}  {'yes' if goal['met'] else 'NO'}" if goal else ""
        cells = "".join(f"{row['by_family'].get(f, float('nan')):>{width + 1}.3f}" for f in fams)
        lines.append(f"{row['name']:<22}{row['mean']:>7.3f}{cells}{tail}")
    lines.append("")
    lines += [f"fixed answer for {f}: {s!r}" for f, s in result.get("fixed", {}).items()]
    return "\n".join(lines)
