"""How far best-of-n sampling moves from the policy: KL(π_bon ‖ π), analytic bound, exact and from samples.

Best-of-n draws n responses from π and keeps the highest-reward one. Gao et al. 2022 plot reward against
this KL to compare best-of-n with RL; the best_of_n stage and evaluate/ report it.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence

import torch


def bon_kl_analytic(n: int) -> float:
    """log n - (n-1)/n (Stiennon et al. 2020; Gao et al. 2022 §2).

    Exact only when every response is distinct with negligible probability; in general it is an upper
    bound on KL(π_bon ‖ π) (Beirami et al. 2024).
    """
    if n < 1:
        raise ValueError("n must be >= 1")
    return math.log(n) - (n - 1) / n


def bon_kl_exact(probs: Sequence[float] | torch.Tensor, rewards: Sequence[float] | torch.Tensor, n: int) -> float:
    """Exact KL(π_bon ‖ π) for a categorical policy π over M responses.

    With F(r) = P_π(R <= r) and F(r⁻) = P_π(R < r), the best of n draws has reward level v with probability
    F(v)^n - F(v⁻)^n. Responses tied at level v share that mass in proportion to π (ties broken at random):
        P_bon(y) = π(y) / π(R = r_y) · (F(r_y)^n - F(r_y⁻)^n)
    which is F(r_y)^n - F(r_y⁻)^n when r_y is unique (Beirami et al. 2024). Computed in float64.
    """
    p = torch.as_tensor(probs, dtype=torch.float64).flatten()
    r = torch.as_tensor(rewards, dtype=torch.float64).flatten()
    if p.shape != r.shape:
        raise ValueError("probs and rewards must have one entry per response")
    p = p / p.sum()
    levels, level_of = torch.unique(r, return_inverse=True)  # sorted reward levels
    level_mass = torch.zeros_like(levels).index_add(0, level_of, p)  # π(R = v)
    cdf = level_mass.cumsum(0).clamp(max=1.0)  # F(v)
    cdf_below = cdf - level_mass  # F(v⁻)
    ratio = (cdf**n - cdf_below.clamp(min=0.0) ** n) / level_mass  # P_bon(y) / π(y), same within a level
    ratio = ratio[level_of]
    keep = p > 0  # 0 · log 0 = 0
    return float((p[keep] * ratio[keep] * ratio[keep].log()).sum())


def bon_kl_from_samples(samples: Sequence[str], rewards: Sequence[float], n: int) -> float:
    """Plug-in estimate of KL(π_bon ‖ π) from N responses sampled from π and their rewards.

    π is replaced by the empirical distribution: a response sampled c times gets probability c/N, so
    repeats (a collapsed policy) lower the KL, as they should. Repeats with different rewards (a stochastic
    scorer) get their mean reward. The estimate cannot exceed log N: sample N >> n.
    """
    if len(samples) != len(rewards):
        raise ValueError("one reward per sample")
    count: dict[str, int] = defaultdict(int)
    total: dict[str, float] = defaultdict(float)
    for text, reward in zip(samples, rewards):
        count[text] += 1
        total[text] += float(reward)
    probs = [count[t] / len(samples) for t in count]
    mean_reward = [total[t] / count[t] for t in count]
    return bon_kl_exact(probs, mean_reward, n)
