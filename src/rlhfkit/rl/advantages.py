"""Advantages for policy-gradient RLHF: per-token PPO rewards, GAE, and group baselines (GRPO/RLOO).

Pure torch functions on `[B, T]` tensors aligned with the token ids (see `rlhfkit.losses`), where
`mask` marks the response tokens of each row as one contiguous run. Used by the ppo and grpo stages.
"""

from __future__ import annotations

import torch
from torch import Tensor

from rlhfkit.losses import kl_k1, kl_k3, masked_whiten

__all__ = ["gae", "group_advantages", "last_token_index", "masked_whiten", "ppo_token_rewards"]


def last_token_index(mask: Tensor) -> Tensor:
    """Index `[B]` of the last 1 in each row of `mask` `[B, T]` (0 for an empty row)."""
    positions = torch.arange(mask.size(-1), device=mask.device)
    return (mask.long() * positions).argmax(-1)


def ppo_token_rewards(
    score: Tensor,
    logp: Tensor,
    ref_logp: Tensor,
    mask: Tensor,
    kl_coef: float,
    eos_missing_penalty: float | None = None,
    ended: Tensor | None = None,
    kl_estimator: str = "k1",
) -> tuple[Tensor, Tensor]:
    """Per-token PPO reward: R_t = -β·KL_t, plus the reward model's score on the last response token.

    Ziegler et al. 2019 eq. 2 / Ouyang et al. 2022 eq. 2: R(x, y) = r(x, y) - β log π(y|x)/π_ref(y|x),
    spread over tokens (the KL term per token, the score once at the end) so GAE can assign credit.
    score `[B]`; logp, ref_logp, mask `[B, T]`. If `eos_missing_penalty` is set, rows whose `ended` `[B]`
    is False (truncated before EOS) get the penalty subtracted from their score, as TRL's
    `missing_eos_penalty`. kl_estimator "k1" (the papers') or "k3" (non-negative, see losses.kl_k3).
    Returns (rewards `[B, T]`, kl `[B, T]`), both zero outside the mask.
    """
    mask = mask.to(logp.dtype)
    kl = {"k1": kl_k1, "k3": kl_k3}[kl_estimator](logp, ref_logp) * mask
    score = score.to(logp.dtype)
    if eos_missing_penalty is not None:
        if ended is None:
            raise ValueError("eos_missing_penalty needs `ended` (which rows produced EOS)")
        score = torch.where(ended.bool(), score, score - eos_missing_penalty)
    rewards = -kl_coef * kl
    has_response = mask.sum(-1) > 0  # an empty response has no token to carry the score
    last = last_token_index(mask).unsqueeze(-1)
    rewards = rewards.scatter_add(-1, last, (score * has_response).unsqueeze(-1))
    return rewards, kl


def gae(
    rewards: Tensor, values: Tensor, mask: Tensor, gamma: float = 1.0, lam: float = 0.95
) -> tuple[Tensor, Tensor]:
    """Generalised advantage estimation (Schulman et al. 2016, eq. 16), per token.

        δ_t = r_t + γ V_{t+1} - V_t          (V_{t+1} = 0 after the last response token)
        A_t = δ_t + γλ A_{t+1}  = Σ_l (γλ)^l δ_{t+l}
        R_t = A_t + V_t                       (the value-head target, "returns")

    rewards, values, mask `[B, T]`; each row's response is the contiguous run where mask is 1, and the
    episode ends at its last token. A reverse loop over T, vectorised over B. Returns (adv, returns),
    zero outside the mask.
    """
    mask = mask.to(values.dtype)
    values, rewards = values * mask, rewards * mask
    adv = torch.zeros_like(values)
    next_value = torch.zeros_like(values[:, 0])
    next_adv = torch.zeros_like(values[:, 0])
    for t in reversed(range(values.size(1))):
        # Positions after the response are masked out, so their value and advantage are 0: the bootstrap
        # from the last response token is 0 (terminal state).
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        next_adv = (delta + gamma * lam * next_adv) * mask[:, t]
        next_value = values[:, t]
        adv[:, t] = next_adv
    return adv, (adv + values) * mask


def group_advantages(
    rewards: Tensor, group_size: int, kind: str = "grpo", scale_std: bool | None = None, eps: float = 1e-4
) -> Tensor:
    """One advantage per response from a baseline over the other responses to the same prompt.

    rewards `[B*G]`, grouped consecutively (G = group_size responses per prompt).
    - "grpo" (Shao et al. 2024 §4.1.2): A_i = (r_i - mean_g) / (std_g + eps), std with Bessel's correction
      and eps=1e-4 as in TRL. A group of identical rewards gives A = 0.
    - "rloo" (Kool et al. 2019; Ahmadian et al. 2024): A_i = r_i - mean_{j≠i} r_j, the leave-one-out
      baseline, which keeps REINFORCE unbiased.
    `scale_std` None means each paper's form (True for grpo, False for rloo); scale_std=False with grpo is
    Dr. GRPO (Liu et al. 2025), which removes the std's difficulty bias.
    """
    if rewards.numel() % group_size:
        raise ValueError(f"{rewards.numel()} rewards do not split into groups of {group_size}")
    r = rewards.view(-1, group_size).to(torch.promote_types(rewards.dtype, torch.float32))  # [n_prompts, G]
    if kind == "grpo":
        adv = r - r.mean(-1, keepdim=True)
    elif kind == "rloo":
        if group_size < 2:
            raise ValueError("RLOO needs group_size >= 2 (the baseline is the mean of the others)")
        adv = r - (r.sum(-1, keepdim=True) - r) / (group_size - 1)
    else:
        raise ValueError(f"kind must be 'grpo' or 'rloo', got {kind!r}")
    if scale_std if scale_std is not None else kind == "grpo":
        std = r.std(-1, keepdim=True) if group_size > 1 else torch.zeros_like(r[:, :1])
        adv = adv / (std + eps)
    return adv.reshape(-1)
