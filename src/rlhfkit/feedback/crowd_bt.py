"""Annotator reliability and item preferences estimated jointly: a Bradley–Terry model with one
reliability per annotator (and per annotator x prompt family), fitted by EM.

Model (Crowd-BT, Chen et al. 2013, "Pairwise ranking aggregation in a crowdsourced setting",
WSDM; fitted here by batch EM in the style of Dawid & Skene 1979 instead of their online updates):

    true order of pair p = (i, j):   P(z_p = 1) = sigmoid(s_i - s_j)            (z_p = 1: i beats j)
    judgement of annotator group g:  P(y = z_p) = eta_g,  P(y != z_p) = 1 - eta_g

`eta` below 1/2 is an annotator who reports the *opposite* of the truth more often than not:
reliability r = 2*eta - 1 lies in [-1, 1] and is negative for an adversarial one. Groups g are
(annotator, family) pairs; a group's eta is shrunk toward its annotator's pooled eta with
`family_prior` pseudo-judgements, so a family with few judgements borrows the annotator's record.

Identifiability: the likelihood is unchanged by flipping every eta to 1 - eta and every s to -s.
EM starts from eta = `init_eta` > 1/2 for everyone, i.e. it assumes most judgements are honest.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

_EPS = 1e-4


@dataclass
class CrowdBTResult:
    scores: np.ndarray        # (C,) latent quality of each candidate (comparable within an item)
    eta_group: np.ndarray     # (G,) P(judgement == truth) per (annotator, family) group
    eta_annot: np.ndarray     # (A,) pooled over the annotator's groups
    posterior: np.ndarray     # (P,) P(pair_i beats pair_j | everything)
    n_group: np.ndarray       # (G,) judgements per group
    n_annot: np.ndarray       # (A,) judgements per annotator
    iterations: int = 0
    objective: list[float] = field(default_factory=list)  # log posterior after each iteration


def _log_sigmoid(x: np.ndarray) -> np.ndarray:
    return -np.logaddexp(0.0, -x)


def log_posterior(scores, eta_group, pairs, obs_pair, obs_group, y, l2: float) -> float:
    """log P(y | s, eta) + log N(s; 0, 1/l2), marginalising each pair's true order z_p."""
    sign = 2.0 * y - 1.0                                               # (N,)
    log_e, log_1me = np.log(eta_group[obs_group]), np.log1p(-eta_group[obs_group])
    # Log-likelihood of each judgement if z = 1 (i beats j) and if z = 0, summed per pair.
    ll1 = np.bincount(obs_pair, np.where(sign > 0, log_e, log_1me), minlength=len(pairs))
    ll0 = np.bincount(obs_pair, np.where(sign > 0, log_1me, log_e), minlength=len(pairs))
    delta = scores[pairs[:, 0]] - scores[pairs[:, 1]]
    marg = np.logaddexp(_log_sigmoid(delta) + ll1, _log_sigmoid(-delta) + ll0)
    return float(marg.sum() - 0.5 * l2 * np.dot(scores, scores))


def fit_crowd_bt(pairs: np.ndarray, obs_pair: np.ndarray, obs_group: np.ndarray, y: np.ndarray,
                 group_annot: np.ndarray, n_cands: int, n_annot: int, *, l2: float = 0.1,
                 family_prior: float = 8.0, annot_prior: float = 2.0, init_eta: float = 0.8,
                 max_iter: int = 200, inner_steps: int = 5, tol: float = 1e-6) -> CrowdBTResult:
    """EM for the model above.

    pairs (P, 2): candidate ids (i, j) of each compared pair; obs_pair, obs_group, y (N,): for each
    judgement its pair, its (annotator, family) group and y = 1 if it says i beats j;
    group_annot (G,): the annotator of each group. `family_prior` = 0 makes each group free
    (exact M-step: the log posterior then never decreases); `annot_prior` pseudo-judgements
    split evenly pull an annotator with little data toward eta = 1/2.
    """
    n_groups, y = len(group_annot), np.asarray(y, dtype=float)
    obs_annot = group_annot[obs_group]
    n_group = np.bincount(obs_group, minlength=n_groups).astype(float)
    n_ann = np.bincount(obs_annot, minlength=n_annot).astype(float)
    scores = np.zeros(n_cands)
    eta_g = np.full(n_groups, init_eta)
    eta_a = np.full(n_annot, init_eta)
    # Jacobi majorizer of the score Hessian: sum_p sigmoid'(.) L_p + l2 I <= 0.5 * D_deg + l2 I.
    deg = np.bincount(pairs.ravel(), minlength=n_cands).astype(float)
    precond = 0.5 * deg + l2
    history: list[float] = []
    it = 0
    for it in range(1, max_iter + 1):
        # E-step: posterior log-odds that pair p's true order is i beats j, Dawid & Skene eq. (2.5).
        logit_eta = np.log(eta_g) - np.log1p(-eta_g)
        votes = np.bincount(obs_pair, (2 * y - 1) * logit_eta[obs_group], minlength=len(pairs))
        q = 1.0 / (1.0 + np.exp(-(scores[pairs[:, 0]] - scores[pairs[:, 1]] + votes)))  # (P,)
        # M-step (reliabilities): expected agreement of each judgement with the truth.
        agree = np.where(y > 0, q[obs_pair], 1.0 - q[obs_pair])                          # (N,)
        agree_a = np.bincount(obs_annot, agree, minlength=n_annot)
        new_eta_a = (agree_a + 0.5 * annot_prior) / (n_ann + annot_prior)
        agree_g = np.bincount(obs_group, agree, minlength=n_groups)
        prior_g = family_prior * new_eta_a[group_annot]
        new_eta_g = (agree_g + prior_g) / np.maximum(n_group + family_prior, _EPS)
        new_eta_g = np.clip(new_eta_g, _EPS, 1 - _EPS)
        # M-step (scores): weighted Bradley-Terry with soft targets q and an L2 prior; each
        # preconditioned step maximises a quadratic minorizer, so the objective cannot fall.
        for _ in range(inner_steps):
            p_win = 1.0 / (1.0 + np.exp(-(scores[pairs[:, 0]] - scores[pairs[:, 1]])))
            resid = q - p_win                                                            # (P,)
            grad = (np.bincount(pairs[:, 0], resid, minlength=n_cands)
                    - np.bincount(pairs[:, 1], resid, minlength=n_cands) - l2 * scores)
            scores = scores + grad / precond
        change = max(np.abs(new_eta_g - eta_g).max(initial=0.0), np.abs(new_eta_a - eta_a).max(initial=0.0))
        eta_g, eta_a = new_eta_g, new_eta_a
        history.append(log_posterior(scores, eta_g, pairs, obs_pair, obs_group, y, l2))
        if change < tol:
            break
    logit_eta = np.log(eta_g) - np.log1p(-eta_g)
    votes = np.bincount(obs_pair, (2 * y - 1) * logit_eta[obs_group], minlength=len(pairs))
    post = 1.0 / (1.0 + np.exp(-(scores[pairs[:, 0]] - scores[pairs[:, 1]] + votes)))
    return CrowdBTResult(scores, eta_g, eta_a, post, n_group, n_ann, it, history)
