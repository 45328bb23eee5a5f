"""Run the built-in simulated annotator pool through the real labeling store and quality control
(`rlhfkit label simulate --db sim.db --spec careful:0.6,noisy:0.2,adversarial:0.2`).

Each simulated annotator is created in the store, asks it for items exactly as the web app does
(`next_assignment`, responses in shuffled display order), ranks what it is shown with the world's
annotator model, and submits through `submit_ranking`; the quality report is then computed on the
export. If the store has no items, world prompts with K candidates written by the world's
demonstrators of mixed quality are added first. The world package is imported only here.
"""

from __future__ import annotations

import random
from typing import Any

from rlhfkit.feedback.export import export_records
from rlhfkit.feedback.quality import QualityConfig, assess
from rlhfkit.feedback.store import Store, StoreError


def world_items(n_items: int, k: int = 4, seed: int = 0, gold_every: int = 5) -> list[dict[str, Any]]:
    """`n_items` world prompts (families in turn), each with up to `k` distinct candidates.

    Every `gold_every`-th item whose best candidate under the gold judge is unique gets it as
    `gold_best`, as an admin would mark a few known answers.
    """
    from rlhfkit.world.judge import judge
    from rlhfkit.world.demonstrators import DEMONSTRATORS, demonstrate
    from rlhfkit.world.tasks import FAMILIES, universe

    rng = random.Random(seed)
    pools = {f: universe(f) for f in FAMILIES}
    items = []
    while len(items) < n_items:
        family = list(FAMILIES)[len(items) % len(FAMILIES)]
        task = rng.choice(pools[family])
        responses: list[str] = []
        for _ in range(6 * k):  # demonstrators often agree; draw until k distinct or give up
            text = demonstrate(task, rng.choice(list(DEMONSTRATORS)), rng)
            if text not in responses:
                responses.append(text)
            if len(responses) == k:
                break
        if len(responses) < 2:
            continue
        item = {"prompt": task.prompt, "responses": responses, "family": family, "gold_best": None}
        if gold_every and len(items) % gold_every == 0:
            scores = [judge(task.prompt, r).score for r in responses]
            best = max(scores)
            if scores.count(best) == 1:
                item["gold_best"] = scores.index(best)
        items.append(item)
    return items


def _annotator_id(store: Store, name: str) -> int:
    try:
        return store.create_annotator(name)[0]
    except StoreError:  # a rerun on the same database: reuse the simulated annotator
        return next(a["id"] for a in store.annotators() if a["name"] == name)


def simulate(store: Store, spec: str = "careful:0.6,noisy:0.2,adversarial:0.2", n_annotators: int = 10,
             redundancy: int = 3, seed: int = 0, n_items: int = 60,
             cfg: QualityConfig | None = None) -> dict[str, Any]:
    """Rank every open item with the simulated pool; returns {"report", "summary", "profiles"}."""
    try:
        from rlhfkit.world import AnnotatorPool
    except ImportError:  # the world package before its __init__ re-exports it
        from rlhfkit.world.annotators import AnnotatorPool

    if not store.items(limit=1):
        with store.transaction() as c:
            for it in world_items(n_items, seed=seed):
                store.add_item(c, it["prompt"], it["responses"], it["family"], gold_best=it["gold_best"])
    pool = AnnotatorPool.from_spec(spec, n_annotators, seed)
    rng = random.Random(seed)
    members = {f"sim-{a.id}": a for a in pool.annotators}
    ids = {name: _annotator_id(store, name) for name in members}
    active = list(members)
    while active:  # rounds in random order, so who shares items with whom varies as in a live session
        rng.shuffle(active)
        for name in list(active):
            assignment = store.next_assignment(ids[name], redundancy, rng=rng)
            if assignment is None:
                active.remove(name)
                continue
            rec = pool.rank(assignment.prompt, assignment.responses, annotator=members[name], rng=rng)
            store.submit_ranking(ids[name], assignment.id, rec["ranking"])
    records = [r for r in export_records(store, weights=False) if r["annotator"] in members]
    report = assess(records, cfg)
    profiles = {name: str(getattr(a, "profile", "?")) for name, a in members.items()}
    return {"report": report, "summary": summarize(report, profiles), "profiles": profiles}


def summarize(report: dict[str, Any], profiles: dict[str, str], bad: str = "adversarial") -> dict[str, Any]:
    """Detection precision/recall of `bad` annotators, and agreement / reliability per profile."""
    flagged = set(report["suspected_adversarial"])
    truth = {n for n, p in profiles.items() if p == bad}
    tp = len(flagged & truth)
    by_profile: dict[str, list[float]] = {}
    for name, s in report["annotators"].items():
        by_profile.setdefault(profiles.get(name, "?"), []).append(s["reliability"])
    agree: dict[str, list[float]] = {}
    for pair in report["pairwise_agreement"]:
        if pair["agreement"] is None:
            continue
        key = "-".join(sorted((profiles.get(pair["a"], "?"), profiles.get(pair["b"], "?"))))
        agree.setdefault(key, []).append(pair["agreement"])
    return {
        "precision": tp / len(flagged) if flagged else (1.0 if not truth else 0.0),
        "recall": tp / len(truth) if truth else 1.0,
        "flagged": sorted(flagged), "truly_" + bad: sorted(truth),
        "reliability_by_profile": {p: round(sum(v) / len(v), 3) for p, v in sorted(by_profile.items())},
        "agreement_by_profile_pair": {k: round(sum(v) / len(v), 3) for k, v in sorted(agree.items())},
        "alpha": report["alpha"]["value"],
    }


__all__ = ["simulate", "summarize", "world_items"]
