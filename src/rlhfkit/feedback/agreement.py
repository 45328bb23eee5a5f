"""Agreement statistics between annotators' rankings (numpy only): pairwise agreement on shared
items, Krippendorff's alpha, agreement with the leave-one-out consensus and with gold answers.

All take a `quality.Parsed` (records indexed by item and annotator); "pairs" are the K(K-1)/2
candidate pairs of an item, and a pair counts only where both sides order it strictly.
"""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from rlhfkit.feedback.quality import Parsed


def _rankdata(x: np.ndarray) -> np.ndarray:
    """Average ranks (ties share their mean rank)."""
    order = np.argsort(x, kind="stable")
    ranks = np.empty(len(x))
    ranks[order] = np.arange(len(x), dtype=float)
    for v in np.unique(x):
        tie = x == v
        ranks[tie] = ranks[tie].mean()
    return ranks


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman's rho (Pearson on average ranks); nan if either side is constant."""
    rx, ry = _rankdata(np.asarray(x, float)), _rankdata(np.asarray(y, float))
    rx, ry = rx - rx.mean(), ry - ry.mean()
    den = np.sqrt(np.dot(rx, rx) * np.dot(ry, ry))
    return float(np.dot(rx, ry) / den) if den > 0 else float("nan")


def _sign_matrix(pos: np.ndarray) -> np.ndarray:
    """(K, K) sign(pos[j] - pos[i]): +1 where i is ranked above j, 0 for ties and the diagonal."""
    return np.sign(pos[None, :] - pos[:, None])


def _agree(pa: np.ndarray, pb: np.ndarray) -> tuple[int, int]:
    """(agreeing pairs, pairs both order strictly) over the upper triangle."""
    sa, sb = _sign_matrix(pa), _sign_matrix(pb)
    iu = np.triu_indices(len(pa), 1)
    both = (sa[iu] != 0) & (sb[iu] != 0)
    return int(np.sum(both & (sa[iu] == sb[iu]))), int(both.sum())


def _by_item(p: "Parsed") -> dict[int, list[int]]:
    out: dict[int, list[int]] = defaultdict(list)
    for r, u in enumerate(p.rec_item):
        out[int(u)].append(r)
    return out


def pairwise_agreement(p: "Parsed") -> list[dict[str, Any]]:
    """For every two annotators with a shared item: the fraction of pairs they order alike."""
    acc: dict[tuple[int, int], list[int]] = defaultdict(lambda: [0, 0, 0])
    for recs in _by_item(p).values():
        for x in range(len(recs)):
            for y in range(x + 1, len(recs)):
                ra, rb = recs[x], recs[y]
                a, b = sorted((int(p.rec_annot[ra]), int(p.rec_annot[rb])))
                agree, n = _agree(p.positions[ra], p.positions[rb])
                acc[(a, b)][0] += agree
                acc[(a, b)][1] += n
                acc[(a, b)][2] += 1
    return [{"a": p.annotators[a], "b": p.annotators[b], "agreement": agree / n if n else None,
             "n_pairs": n, "n_items": items} for (a, b), (agree, n, items) in sorted(acc.items())]


def loo_agreement(p: "Parsed") -> list[dict[str, Any]]:
    """Per annotator: agreement with the mean rank position of the *other* annotators of each item."""
    acc = np.zeros((len(p.annotators), 2))
    for recs in _by_item(p).values():
        if len(recs) < 2:
            continue
        total = np.sum([p.positions[r] for r in recs], axis=0)
        for r in recs:
            consensus = (total - p.positions[r]) / (len(recs) - 1)
            agree, n = _agree(p.positions[r], consensus)
            acc[p.rec_annot[r]] += (agree, n)
    return [{"agreement": float(a / n) if n else None, "n_pairs": int(n)} for a, n in acc]


def gold_accuracy(p: "Parsed") -> list[dict[str, Any]]:
    """Per annotator: fraction of (gold best, other) pairs where gold is ranked above (ties = 1/2)."""
    acc = np.zeros((len(p.annotators), 2))
    for r, u in enumerate(p.rec_item):
        g = p.item_gold[u]
        if g is None:
            continue
        pos = p.positions[r]
        others = np.delete(pos, g)
        score = np.sum(others > pos[g]) + 0.5 * np.sum(others == pos[g])
        acc[p.rec_annot[r]] += (score, len(others))
    return [{"accuracy": float(a / n) if n else None, "n_pairs": int(n)} for a, n in acc]


def alpha_from_units(units: list[list[float]], metric: str = "interval") -> float | None:
    """Krippendorff's alpha from the values each unit received (missing values simply absent).

    Coincidence-matrix form (Krippendorff 2011, "Computing Krippendorff's alpha-reliability"):
    o_ck = sum_u (#c,k pairs in u) / (m_u - 1);  alpha = 1 - (n - 1) sum o_ck d_ck / sum n_c n_k d_ck.
    Distances: nominal [c != k]; interval (c - k)^2; ordinal (sum_{g=c..k} n_g - (n_c + n_k)/2)^2.
    """
    units = [u for u in units if len(u) >= 2]
    if not units:
        return None
    values = np.unique(np.concatenate([np.asarray(u, float) for u in units]))
    counts = np.zeros((len(units), len(values)))            # (U, V) how often unit u got value v
    for i, u in enumerate(units):
        np.add.at(counts[i], np.searchsorted(values, np.asarray(u, float)), 1.0)
    inv = 1.0 / (counts.sum(1) - 1.0)                       # (U,) 1 / (m_u - 1)
    o = (counts * inv[:, None]).T @ counts - np.diag((counts * inv[:, None]).sum(0))  # (V, V)
    n_c = o.sum(1)
    n = n_c.sum()
    if metric == "nominal":
        d = 1.0 - np.eye(len(values))
    elif metric == "interval":
        d = (values[:, None] - values[None, :]) ** 2
    elif metric == "ordinal":
        cum = np.cumsum(n_c)
        lo, hi = np.minimum.outer(np.arange(len(values)), np.arange(len(values))), \
            np.maximum.outer(np.arange(len(values)), np.arange(len(values)))
        between = cum[hi] - cum[lo] + n_c[lo]                # sum of n_g for g from c to k
        d = (between - (n_c[:, None] + n_c[None, :]) / 2) ** 2
    else:
        raise ValueError(f"alpha metric {metric!r}: expected nominal, interval or ordinal")
    expected = n_c @ d @ n_c
    if expected == 0:
        return None
    return float(1.0 - (n - 1) * np.sum(o * d) / expected)


def krippendorff_alpha(p: "Parsed", metric: str = "interval") -> float | None:
    """Alpha over units (item, candidate), each annotator contributing the candidate's rank position."""
    units: dict[tuple[int, int], list[float]] = defaultdict(list)
    for r, u in enumerate(p.rec_item):
        for c, v in enumerate(p.positions[r]):
            units[(int(u), c)].append(float(v))
    return alpha_from_units(list(units.values()), metric)
