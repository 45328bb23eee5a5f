"""Annotator quality control on K-way rankings (`rlhfkit label quality --data rankings.jsonl`).

From the records alone (numpy only) it measures: pairwise inter-annotator agreement on shared items;
Krippendorff's alpha on rank positions (interval metric by default); each annotator's agreement with
the leave-one-out consensus and with gold items; position and length bias; and a reliability in
[-1, 1] per annotator (and per annotator x family) fitted jointly with item preferences by the
Crowd-BT model (see crowd_bt.py). It flags unreliable and adversarial annotators, including those
honest everywhere except one family (the world's adversarial annotators favour compliance on
harmful prompts only): their rankings there agree with the fitted truth below chance and far less
than their own rankings elsewhere (a t-test over rankings). Each ranking gets a weight, its
(annotator, family) reliability clipped to [0, 1], for the reward-model stage.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from rlhfkit.config import opt
from rlhfkit.feedback.agreement import (gold_accuracy, krippendorff_alpha, loo_agreement,
                                        pairwise_agreement, spearman)
from rlhfkit.feedback.crowd_bt import fit_crowd_bt
from rlhfkit.feedback.rankings import normalize_ranking, pairwise, rank_positions


@dataclass
class QualityConfig:
    """Thresholds for quality flags and settings of the reliability model."""

    min_reliability: float = opt(0.3, "flag 'low_reliability' below this reliability (2*eta-1, in [-1,1])")
    adversarial_below: float = opt(0.0, "flag 'negative_reliability' (suspected adversarial) below this")
    family_t: float = opt(4.0, "flag 'family_disagreement:F' when the annotator's reliability in family F is "
                               "below adversarial_below and this many standard errors (pooled t) below their "
                               "other families; high because every annotator x family is a test")
    min_family_rankings: int = opt(5, "rankings needed in family F and in the other families to test F")
    min_pairs: int = opt(30, "pairwise judgements a reliability needs before it may raise a flag")
    bias_z: float = opt(3.0, "z-score beyond which position or length bias is flagged")
    bias_min: float = opt(0.2, "smallest mean rank correlation flagged as position or length bias")
    alpha_metric: str = opt("interval", "Krippendorff's alpha distance on rank positions",
                            choices=("interval", "ordinal", "nominal"))
    family_prior: float = opt(8.0, "pseudo-judgements pulling a per-family reliability to the annotator's")
    l2: float = opt(0.1, "L2 prior on Bradley-Terry scores in the reliability model")
    max_iter: int = opt(200, "EM iterations of the reliability model")


@dataclass
class Parsed:
    """Records indexed for the computations: r = record, a = annotator, u = item."""

    annotators: list[str]
    families: list[str]
    rec_annot: np.ndarray          # (R,)
    rec_item: np.ndarray           # (R,)
    rec_family: np.ndarray         # (R,) index into families
    positions: list[np.ndarray]    # R arrays (K_r,): rank position of each candidate, 0 = best
    rankings: list[list]           # normalized rankings
    item_k: list[int]
    item_gold: list[int | None]
    item_lengths: list[np.ndarray]  # (K,) character lengths of the responses


def parse_records(records: list[dict[str, Any]]) -> Parsed:
    """Validate ranking records and index items by (prompt, responses)."""
    item_ids: dict[tuple, int] = {}
    annots: dict[str, int] = {}
    fams: dict[str, int] = {}
    ra, ru, rf, pos, ranks, ks, golds, lens = [], [], [], [], [], [], [], []
    for n, rec in enumerate(records):
        responses = rec["responses"]
        k = len(responses)
        try:
            ranking = normalize_ranking(rec["ranking"], k)
        except ValueError as e:
            raise ValueError(f"record {n}: {e}") from None
        key = (rec["prompt"], tuple(responses))
        if key not in item_ids:
            item_ids[key] = len(item_ids)
            ks.append(k)
            golds.append(rec.get("gold_best"))
            lens.append(np.array([len(r) for r in responses], dtype=float))
        ra.append(annots.setdefault(str(rec.get("annotator", "?")), len(annots)))
        ru.append(item_ids[key])
        rf.append(fams.setdefault(str(rec.get("family") or ""), len(fams)))
        pos.append(np.array(rank_positions(ranking, k)))
        ranks.append(ranking)
    return Parsed(list(annots), list(fams), np.array(ra, dtype=int), np.array(ru, dtype=int),
                  np.array(rf, dtype=int), pos, ranks, ks, golds, lens)


def judgement_arrays(p: Parsed) -> dict[str, np.ndarray]:
    """Flatten rankings into pairwise judgements for the Crowd-BT model."""
    offsets = np.concatenate([[0], np.cumsum(p.item_k)])
    pair_ids: dict[tuple[int, int], int] = {}
    obs_pair, obs_group, obs_rec, y = [], [], [], []
    groups: dict[tuple[int, int], int] = {}
    for r, ranking in enumerate(p.rankings):
        u = p.rec_item[r]
        g = groups.setdefault((int(p.rec_annot[r]), int(p.rec_family[r])), len(groups))
        for i, j, win in pairwise(ranking, p.item_k[u]):
            key = (offsets[u] + i, offsets[u] + j)
            obs_pair.append(pair_ids.setdefault(key, len(pair_ids)))
            obs_group.append(g)
            obs_rec.append(r)
            y.append(win)
    pairs = np.array(list(pair_ids), dtype=int).reshape(-1, 2)
    group_keys = np.array(list(groups), dtype=int).reshape(-1, 2)
    rec_group = np.array([groups.get((int(a), int(f)), -1) for a, f in zip(p.rec_annot, p.rec_family)])
    return {"pairs": pairs, "obs_pair": np.array(obs_pair, dtype=int), "obs_group": np.array(obs_group, dtype=int),
            "y": np.array(y, dtype=float), "group_annot": group_keys[:, 0], "group_family": group_keys[:, 1],
            "obs_rec": np.array(obs_rec, dtype=int), "rec_group": rec_group, "n_cands": int(offsets[-1])}


def bias_stats(p: Parsed, records: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    """Per-ranking Spearman correlations: display position vs rank (position bias) and length vs
    goodness (length bias). Under no bias, rho of a K-way ranking has mean 0 and variance 1/(K-1)."""
    n = len(p.rankings)
    pos_rho, len_rho, null_var = np.full(n, np.nan), np.full(n, np.nan), np.zeros(n)
    for r, rec in enumerate(records):
        k = p.item_k[p.rec_item[r]]
        null_var[r] = 1.0 / (k - 1) if k > 1 else 0.0
        order = rec.get("display_order")
        if isinstance(order, list) and sorted(order) == list(range(k)):
            # Positive: candidates shown earlier end up ranked higher.
            pos_rho[r] = spearman(np.arange(k), p.positions[r][order])
        len_rho[r] = spearman(p.item_lengths[p.rec_item[r]], -p.positions[r])  # positive: longer wins
    return {"position": pos_rho, "length": len_rho, "null_var": null_var}


def _bias_summary(rho: np.ndarray, null_var: np.ndarray, mask: np.ndarray, centre: float = 0.0):
    ok = mask & ~np.isnan(rho)
    if not ok.any():
        return None, None
    z = float(np.sum(rho[ok] - centre) / np.sqrt(np.sum(null_var[ok])))
    return float(np.mean(rho[ok]) - centre), z


def ranking_agreement(j: dict[str, np.ndarray], posterior: np.ndarray, n_records: int) -> np.ndarray:
    """(R,) mean posterior probability that each ranking's pairwise judgements match the truth
    (nan for a ranking with no untied pair): the unit of the family test, since pairs from one
    ranking are not independent."""
    q = posterior[j["obs_pair"]]
    agree = np.where(j["y"] > 0, q, 1.0 - q)
    num = np.bincount(j["obs_rec"], agree, minlength=n_records)
    den = np.bincount(j["obs_rec"], minlength=n_records)
    return np.where(den > 0, num / np.maximum(den, 1), np.nan)


def relative_agreement(agree: np.ndarray, rec_family: np.ndarray) -> np.ndarray:
    """(R,) each ranking's agreement minus the mean over all rankings of its family."""
    ok = ~np.isnan(agree)
    n_fam = rec_family.max() + 1
    mean = np.bincount(rec_family[ok], agree[ok], minlength=n_fam) / np.maximum(
        np.bincount(rec_family[ok], minlength=n_fam), 1)
    return agree - mean[rec_family]


def family_contrast(agree: np.ndarray, rel_agree: np.ndarray, in_f: np.ndarray,
                    rest: np.ndarray) -> tuple[float, float, int, int]:
    """(reliability 2*mean-1 in family F, t of rest-minus-F, n in F, n rest), over rankings.

    Student's t with pooled variance: a family has few rankings, and its own variance estimate
    is often near 0 by chance (which made Welch's t flag noisy annotators). The test uses
    `rel_agree`, agreement minus its family's mean over all annotators, so a family where
    everyone agrees less (a hard family) does not single anyone out.
    """
    ok = ~np.isnan(rel_agree)
    a, b = rel_agree[in_f & ok], rel_agree[rest & ok]
    rel = float(2 * agree[in_f & ok].mean() - 1) if len(a) else float("nan")
    if len(a) < 2 or len(b) < 2:
        return rel, 0.0, len(a), len(b)
    pooled = ((len(a) - 1) * a.var(ddof=1) + (len(b) - 1) * b.var(ddof=1)) / (len(a) + len(b) - 2)
    se = np.sqrt(pooled * (1 / len(a) + 1 / len(b)))
    return rel, float((b.mean() - a.mean()) / max(se, 1e-9)), len(a), len(b)


def _annotator_stats(a: int, p: Parsed, j: dict, fit, rec_agree: np.ndarray, rel_agree: np.ndarray,
                     biases: dict, len_centre: float, loo: list, gold: list) -> dict[str, Any]:
    mine = p.rec_annot == a
    pos_b, pos_z = _bias_summary(biases["position"], biases["null_var"], mine)
    len_b, len_z = _bias_summary(biases["length"], biases["null_var"], mine, len_centre)
    fams = {}
    for g in np.flatnonzero(j["group_annot"] == a):
        f = int(j["group_family"][g])
        raw, t, n_f, n_rest = family_contrast(rec_agree, rel_agree, mine & (p.rec_family == f),
                                              mine & (p.rec_family != f))
        fams[p.families[f]] = {"reliability": round(float(2 * fit.eta_group[g] - 1), 4),
                               "raw_reliability": None if np.isnan(raw) else round(raw, 4),
                               "t_vs_rest": round(t, 2),
                               "n_rankings": n_f, "n_rest": n_rest, "n_pairs": int(fit.n_group[g])}
    return {"n_rankings": int(mine.sum()), "n_pairs": int(fit.n_annot[a]),
            "reliability": round(float(2 * fit.eta_annot[a] - 1), 4), "reliability_by_family": fams,
            "loo_agreement": loo[a]["agreement"], "loo_pairs": loo[a]["n_pairs"],
            "gold_accuracy": gold[a]["accuracy"], "gold_pairs": gold[a]["n_pairs"],
            "position_bias": pos_b, "position_z": pos_z, "length_bias": len_b, "length_z": len_z}


def assess(records: list[dict[str, Any]], cfg: QualityConfig | None = None) -> dict[str, Any]:
    """The full quality report (JSON-serialisable) plus per-record weights under 'weights'."""
    cfg = cfg or QualityConfig()
    if not records:
        raise ValueError("no rankings to assess")
    p = parse_records(records)
    j = judgement_arrays(p)
    fit = fit_crowd_bt(j["pairs"], j["obs_pair"], j["obs_group"], j["y"], j["group_annot"], j["n_cands"],
                       len(p.annotators), l2=cfg.l2, family_prior=cfg.family_prior, max_iter=cfg.max_iter)
    rec_agree = ranking_agreement(j, fit.posterior, len(records))
    rel_agree = relative_agreement(rec_agree, p.rec_family)
    biases = bias_stats(p, records)
    len_centre = float(np.nanmean(biases["length"])) if not np.all(np.isnan(biases["length"])) else 0.0
    loo, gold = loo_agreement(p), gold_accuracy(p)
    per: dict[str, dict[str, Any]] = {}
    for a, name in enumerate(p.annotators):
        per[name] = _annotator_stats(a, p, j, fit, rec_agree, rel_agree, biases, len_centre, loo, gold)
        per[name]["flags"] = annotator_flags(per[name], cfg)
        per[name]["suspected_adversarial"] = suspected_adversarial(per[name])
    weights = [float(np.clip(2 * fit.eta_group[g] - 1, 0.0, 1.0)) if g >= 0 else 1.0 for g in j["rec_group"]]
    return {
        "n_records": len(records), "n_items": len(p.item_k), "n_annotators": len(p.annotators),
        "alpha": {"value": krippendorff_alpha(p, cfg.alpha_metric), "metric": cfg.alpha_metric,
                  "on": "rank positions"},
        "pairwise_agreement": pairwise_agreement(p),
        "model": "Crowd-BT (Chen et al. 2013) fitted by Dawid-Skene-style EM; reliability = 2*eta-1",
        "em_iterations": fit.iterations,
        "annotators": per,
        "flagged": sorted(n for n, v in per.items() if v["flags"]),
        "suspected_adversarial": sorted(n for n, v in per.items() if v["suspected_adversarial"]),
        "weights": [round(w, 4) for w in weights],
    }


def annotator_flags(stats: dict[str, Any], cfg: QualityConfig) -> list[str]:
    """Names of the quality problems the stats of one annotator show (empty = none)."""
    flags = []
    rel = stats["reliability"]
    if stats["n_pairs"] >= cfg.min_pairs:
        if rel < cfg.adversarial_below:
            flags.append("negative_reliability")
        elif rel < cfg.min_reliability:
            flags.append("low_reliability")
    for fam, v in stats["reliability_by_family"].items():
        enough = min(v["n_rankings"], v["n_rest"]) >= cfg.min_family_rankings
        below = v["raw_reliability"] is not None and v["raw_reliability"] < cfg.adversarial_below
        if enough and below and v["t_vs_rest"] >= cfg.family_t:
            flags.append(f"family_disagreement:{fam}")
    for kind in ("position", "length"):
        b, z = stats[f"{kind}_bias"], stats[f"{kind}_z"]
        if b is not None and abs(z) >= cfg.bias_z and abs(b) >= cfg.bias_min:
            flags.append(f"{kind}_bias")
    if stats["gold_pairs"] >= 10 and stats["gold_accuracy"] < 0.5:
        flags.append("gold_disagreement")
    return flags


def suspected_adversarial(stats: dict[str, Any]) -> bool:
    """Below chance overall, or below chance in one family where the annotator is otherwise fine."""
    return any(f == "negative_reliability" or f.startswith("family_disagreement:") for f in stats["flags"])


def apply_weights(records: list[dict[str, Any]], report: dict[str, Any]) -> list[dict[str, Any]]:
    """Copies of `records` with 'weight' set from the report (same order as assessed)."""
    if len(report["weights"]) != len(records):
        raise ValueError("report was computed on a different set of records")
    return [{**rec, "weight": w} for rec, w in zip(records, report["weights"])]


def format_table(report: dict[str, Any]) -> str:
    """A plain-text table of the per-annotator stats, with flags."""
    def f(x, spec=".2f"):
        return "-" if x is None else format(x, spec)
    a = report["alpha"]
    lines = [f"{report['n_records']} rankings, {report['n_items']} items, {report['n_annotators']} annotators; "
             f"Krippendorff's alpha ({a['metric']}, {a['on']}) = {f(a['value'], '.3f')}",
             f"{'annotator':<20} {'n':>4} {'reliab':>7} {'loo':>5} {'gold':>5} {'pos':>6} {'len':>6}  flags"]
    for name, s in sorted(report["annotators"].items()):
        lines.append(f"{name[:20]:<20} {s['n_rankings']:>4} {f(s['reliability'], '+.2f'):>7} "
                     f"{f(s['loo_agreement']):>5} {f(s['gold_accuracy']):>5} {f(s['position_bias'], '+.2f'):>6} "
                     f"{f(s['length_bias'], '+.2f'):>6}  {', '.join(s['flags'])}")
    return "\n".join(lines)
