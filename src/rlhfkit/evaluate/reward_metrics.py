"""Held-out metrics of a reward model: pairwise accuracy (ties count half) overall and by group,
calibration of σ(r_a − r_b) against observed wins (ECE), and agreement with the built-in world's gold judge.

`gold_accuracy` takes any batch with `pairs [P, 2]`, `tie [P]`, `group [P]`, `keys` (prompt, response) per
scored response and `rankings` per group (the reward stage's `Batch`)."""

from __future__ import annotations

import torch
from torch import Tensor


def accuracy(d: Tensor) -> float:
    return float(((d > 0).float() + 0.5 * (d == 0).float()).mean()) if len(d) else float("nan")


def by_group(labels: list, d: Tensor) -> dict:
    out = {}
    for name in sorted(set(labels), key=str):
        sel = torch.tensor([x == name for x in labels], dtype=torch.bool)
        out[str(name)] = {"accuracy": round(accuracy(d[sel]), 4), "n_pairs": int(sel.sum())}
    return out


def calibration(d: Tensor, n_bins: int = 5) -> dict:
    """Predicted P(the model's favourite wins) = σ(|r_a - r_b|) in bins over [0.5, 1] vs the observed rate.

    d [P] = r_winner - r_loser of labelled pairs; the favourite won exactly when d > 0 (d = 0 counts ½).
    ECE = Σ_bins (n_b / P) |mean predicted - observed| (Guo et al. 2017).
    """
    p = torch.sigmoid(d.abs())
    won = (d > 0).float() + 0.5 * (d == 0).float()
    bins, ece = [], 0.0
    for i in range(n_bins):
        lo, hi = 0.5 + 0.5 * i / n_bins, 0.5 + 0.5 * (i + 1) / n_bins
        sel = (p >= lo) & ((p < hi) if i < n_bins - 1 else (p <= hi))
        if sel.any():
            pred, obs = float(p[sel].mean()), float(won[sel].mean())
            bins.append({"lo": lo, "hi": hi, "n": int(sel.sum()), "predicted": round(pred, 4), "observed": round(obs, 4)})
            ece += int(sel.sum()) / max(len(d), 1) * abs(pred - obs)
    return {"bins": bins, "ece": round(ece, 4)}


def gold_scores(keys: list[tuple[str, str]]) -> dict | None:
    """Gold-judge score of each (prompt, response) the world can grade; None when the world is absent."""
    try:
        from ..world.judge import judge
    except ImportError:
        return None
    out = {}
    for prompt, response in keys:
        try:
            out[(prompt, response)] = judge(prompt, response).score
        except (ValueError, KeyError):  # a prompt the world did not generate
            pass
    return out or None


def gold_accuracy(scores: Tensor, b, gold: dict) -> dict:
    """Agreement of the model (and of the labels) with the gold judge on each distinct response pair of
    the held-out prompts; pairs the judge scores equally are skipped."""
    seen, d_model, fams, d_label, profiles = set(), [], [], [], []
    for (w, l), t, g in zip(b.pairs.tolist(), b.tie.tolist(), b.group.tolist()):
        kw, kl, r = b.keys[w], b.keys[l], b.rankings[g]
        if kw not in gold or kl not in gold or gold[kw] == gold[kl]:
            continue
        sign = 1.0 if gold[kw] > gold[kl] else -1.0  # +1: the label's winner is gold's winner
        if not t:
            d_label.append(sign)
            profiles.append(profile_of(r))
        if frozenset((w, l)) not in seen:
            seen.add(frozenset((w, l)))
            d_model.append(sign * float(scores[w] - scores[l]))
            fams.append(r.family or "-")
    d_model, d_label = torch.tensor(d_model), torch.tensor(d_label)
    return {"accuracy": round(accuracy(d_model), 4), "n_pairs": len(d_model), "by_family": by_group(fams, d_model),
            "label_agreement": round(accuracy(d_label), 4), "label_agreement_by_profile": by_group(profiles, d_label)}


def profile_of(r) -> str:
    return str(r.meta.get("profile") or r.annotator or "-")
