"""Split the world's prompts into SFT demonstrations and RM / RL / eval prompt sets.

Splits are disjoint at the prompt-text level. Eval also holds out whole keys — number pairs,
words, entity-relation facts, described entities — so it measures generalisation, not recall of
a prompt seen in training. Which keys are held out is fixed (a hash of the key, independent of
the seed) so eval is comparable across seeds; which prompts land in which split depends on it.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass

from rlhfkit.world.demonstrators import demonstrate, pick_demonstrator
from rlhfkit.world.family import Task
from rlhfkit.world.tasks import FAMILIES, universe

EVAL_FRACTION = 0.2  # of each family's keys, held out for eval
# Share of each family's training prompts per split; SFT may repeat a prompt (several people demo
# the same prompt) so it needs the fewest distinct prompts.
POOL_SHARES = {"sft": 0.25, "rm": 0.30, "rl": 0.45}
FAMILY_WEIGHTS = {
    "arithmetic": 0.12,
    "facts": 0.16,
    "spelling": 0.12,
    "compare": 0.08,
    "listing": 0.10,
    "describe": 0.10,
    "harmful": 0.16,
    "benign": 0.16,
}


@dataclass(frozen=True)
class Size:
    corpus_chars: int
    sft: int
    rm: int
    rl: int
    eval: int


SIZES = {
    "ci": Size(corpus_chars=160_000, sft=300, rm=60, rl=100, eval=64),
    "tiny": Size(corpus_chars=2_700_000, sft=2000, rm=800, rl=1500, eval=320),
    "small": Size(corpus_chars=8_100_000, sft=6000, rm=2400, rl=4500, eval=480),
}


def is_eval_key(key: str) -> bool:
    h = int.from_bytes(hashlib.sha1(key.encode()).digest()[:4], "big")
    return h / 2**32 < EVAL_FRACTION


def _pools(rng: random.Random) -> dict[str, dict[str, list[Task]]]:
    """family -> split -> candidate tasks (disjoint)."""
    pools = {}
    for name in FAMILIES:
        tasks = universe(name)
        train = [t for t in tasks if not is_eval_key(t.key)]
        rng.shuffle(train)
        a = int(len(train) * POOL_SHARES["sft"])
        b = a + int(len(train) * POOL_SHARES["rm"])
        pools[name] = {
            "eval": [t for t in tasks if is_eval_key(t.key)],
            "sft": train[:a],
            "rm": train[a:b],
            "rl": train[b:],
        }
    return pools


def quotas(total: int, weights: dict[str, float], caps: dict[str, int]) -> dict[str, int]:
    """Split `total` by `weights`, no family above its cap; a capped family's share moves to the rest."""
    out = {f: 0 for f in weights}
    open_ = {f for f in weights if caps[f] > 0}
    left = total
    while left > 0 and open_:
        wsum = sum(weights[f] for f in open_)
        share = {f: weights[f] / wsum * left for f in open_}
        # Largest remainder rounding so the parts sum to `left`.
        base = {f: int(share[f]) for f in open_}
        for f in sorted(open_, key=lambda f: (base[f] - share[f], f))[: left - sum(base.values())]:
            base[f] += 1
        for f in sorted(open_):
            take = min(base[f], caps[f] - out[f])
            out[f] += take
            left -= take
        open_ = {f for f in open_ if out[f] < caps[f]}
    return out


def build_splits(seed: int, size: str) -> dict[str, list[dict]]:
    """{"sft": [...], "rm": [...], "rl": [...], "eval": [...]} records in the shared formats."""
    cfg = SIZES[size]
    rng = random.Random(f"rlhfkit-world-splits-{seed}")
    pools = _pools(rng)
    out: dict[str, list[dict]] = {}
    eval_weights = {f: 1.0 for f in FAMILIES}  # eval is stratified: equal share per family
    for split, total in (("rm", cfg.rm), ("rl", cfg.rl), ("eval", cfg.eval)):
        weights = eval_weights if split == "eval" else FAMILY_WEIGHTS
        q = quotas(total, weights, {f: len(pools[f][split]) for f in FAMILIES})
        recs = [{"prompt": t.prompt, "family": f} for f in FAMILIES for t in _sample(pools[f][split], q[f], rng)]
        rng.shuffle(recs)
        out[split] = [{**r, "id": f"{split}-{i:05d}"} for i, r in enumerate(recs)]
    out["sft"] = _demonstrations(pools, cfg.sft, rng)
    return out


def _sample(pool: list[Task], n: int, rng: random.Random) -> list[Task]:
    """n tasks, spread evenly over the family's strata (compare: whether the answer is the first number
    asked), so that a blind answer ("the first one") cannot beat chance on the sample."""
    family = FAMILIES[pool[0].family] if pool else None
    strata: dict[str, list[Task]] = {}
    for t in pool:
        strata.setdefault(family.stratum(t), []).append(t)
    if len(strata) < 2:
        return rng.sample(pool, n)
    keys = sorted(strata)
    share = {k: n // len(keys) + (i < n % len(keys)) for i, k in enumerate(keys)}
    return [t for k in keys for t in rng.sample(strata[k], min(share[k], len(strata[k])))]


def _demonstrations(pools, total: int, rng: random.Random) -> list[dict]:
    q = quotas(total, FAMILY_WEIGHTS, {f: total for f in FAMILIES})
    recs = []
    for f in FAMILIES:
        pool = pools[f]["sft"]
        order: list[Task] = []
        while len(order) < q[f]:  # cycle through the pool, reshuffled each pass
            order += rng.sample(pool, len(pool))
        for task in order[: q[f]]:
            who = pick_demonstrator(rng)
            recs.append(
                {
                    "messages": [
                        {"role": "user", "content": task.prompt},
                        {"role": "assistant", "content": demonstrate(task, who, rng)},
                    ],
                    "family": f,
                    "demonstrator": who,
                }
            )
    rng.shuffle(recs)
    return [{**r, "id": f"sft-{i:05d}"} for i, r in enumerate(recs)]
