"""Every loss and per-token estimator of the RLHF recipe, as short pure functions (OpenRLHF `loss.py` style).

Imports only torch, so stages, tests and benchmarks can use it without loading a model library. A new
variant is a new function, never a `loss_type` branch. Each function names its paper and equation.

Conventions used throughout:
- `mask` tensors hold 0/1 (bool or float) and have the shape of the tensor they select from.
- Per-token tensors are `[B, T]` and *aligned with the token ids*: position `t` holds a quantity about
  token `ids[:, t]` (see `token_logprobs`), so one response mask indexes ids, log-probs, values and rewards.
- Sequence log-probs (DPO family) are `[B]` sums of per-token log-probs over the response.
- Losses return a scalar; PPO-style losses also return detached diagnostics.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

# ----------------------------------------------------------------------------------------------
# masked reductions


def masked_sum(x: Tensor, mask: Tensor, dim: int | None = None) -> Tensor:
    """Sum of `x` where `mask` is 1 (over `dim`, or everything)."""
    x = x * mask
    return x.sum() if dim is None else x.sum(dim)


def masked_mean(x: Tensor, mask: Tensor, dim: int | None = None) -> Tensor:
    """Mean of `x` over positions where `mask` is 1; 0 where the mask is empty (not NaN)."""
    count = mask.sum() if dim is None else mask.sum(dim)
    return masked_sum(x, mask, dim) / count.clamp(min=1)


def masked_var(x: Tensor, mask: Tensor, unbiased: bool = True) -> Tensor:
    """Variance of `x` over the masked positions (scalar); 0 when fewer than two positions are selected."""
    count = mask.sum()
    centred = (x - masked_mean(x, mask)) * mask
    var = (centred**2).sum() / count.clamp(min=1)
    if unbiased:
        # Bessel's correction n/(n-1) is undefined for one element: report zero spread instead of NaN.
        var = torch.where(count > 1, var * count / (count - 1).clamp(min=1), torch.zeros_like(var))
    return var


def masked_whiten(x: Tensor, mask: Tensor, shift_mean: bool = True, eps: float = 1e-8) -> Tensor:
    """(x - mean) / std over the masked positions; positions outside the mask become 0.

    Used to normalise PPO advantages per batch (Ziegler et al. 2019; lm-human-preferences `whiten`).
    A zero std (all selected values equal, or a single one) leaves the centred values unscaled rather than
    dividing by ~0 and blowing up rounding noise. `shift_mean=False` scales but keeps the mean (for rewards).
    """
    mean, std = masked_mean(x, mask), masked_var(x, mask).sqrt()
    scale = torch.where(std > eps, std, torch.ones_like(std))
    out = (x - mean) / scale
    if not shift_mean:
        out = out + mean
    return out * mask


def aggregate(per_token: Tensor, mask: Tensor, level: str = "token", max_len: int | None = None) -> Tensor:
    """Reduce a `[B, T]` per-token loss to a scalar.

    level="token": sum over all response tokens / their number (DAPO, Yu et al. 2025 §3.3: long
    responses weigh in proportion to their length). level="seq": mean over each sequence's tokens, then
    over sequences (GRPO, Shao et al. 2024 eq. 3: every response counts equally). level="constant": sum
    over all response tokens / (B · max_len), a constant that does not depend on the responses' lengths
    (Dr. GRPO, Liu et al. 2025 §3.1: no length normalisation; TRL's loss_type "dr_grpo").
    """
    if level == "token":
        return masked_mean(per_token, mask)
    if level == "seq":
        return masked_mean(per_token, mask, dim=-1).mean()
    if level == "constant":
        if not max_len:
            raise ValueError("level 'constant' needs max_len (the response length limit)")
        return masked_sum(per_token, mask) / (per_token.size(0) * max_len)
    raise ValueError(f"level must be 'token', 'seq' or 'constant', got {level!r}")


# ----------------------------------------------------------------------------------------------
# language modelling


def token_logprobs(logits: Tensor, ids: Tensor, temperature: float = 1.0) -> Tensor:
    """Log-probability of each token given the tokens before it, `[B, T]` aligned with `ids`.

    out[:, t] = log softmax(logits[:, t-1] / temperature)[ids[:, t]] for t >= 1, and out[:, 0] = 0
    (the first token has no prediction). logits `[B, T, V]` are the model outputs on `ids` `[B, T]`.
    Computed as gathered logit - logsumexp in float32 so no second `[B, T, V]` tensor of log-probs is kept.
    Sampling at temperature τ draws from softmax(logits/τ), so PPO's ratios must use the same τ.
    """
    logits = logits[:, :-1].float() / temperature  # [B, T-1, V], predicts ids[:, 1:]
    target = ids[:, 1:].unsqueeze(-1)
    logp = logits.gather(-1, target).squeeze(-1) - logits.logsumexp(-1)  # [B, T-1]
    return F.pad(logp, (1, 0), value=0.0)


def lm_loss(logits: Tensor, labels: Tensor, mask: Tensor) -> Tensor:
    """Next-token cross-entropy, averaged over the target tokens (Radford et al. 2018 eq. 1).

    logits `[B, T, V]` from the model on `labels` `[B, T]`; `mask[b, t] = 1` marks `labels[b, t]` as a
    target (so `mask[:, 0]` is ignored: nothing predicts the first token). For SFT, the mask covers the
    assistant tokens only. Mean over tokens of the batch (not per sequence), so with equal-length
    sequences gradient accumulation over micro-batches reproduces the full batch.
    """
    logits, target, weight = logits[:, :-1].float(), labels[:, 1:], mask[:, 1:].float()
    nll = F.cross_entropy(logits.reshape(-1, logits.size(-1)), target.reshape(-1), reduction="none")
    return masked_mean(nll.view_as(weight), weight)


# ----------------------------------------------------------------------------------------------
# reward model


def bradley_terry(r_w: Tensor, r_l: Tensor, weight: Tensor | None = None, margin: Tensor | None = None) -> Tensor:
    """Pairwise reward-model loss -log σ(r_w - r_l - margin) (Bradley & Terry 1952; Ouyang et al. 2022 eq. 1).

    r_w, r_l `[P]`: rewards of the preferred and the other response. `margin` `[P]` (Llama 2, Touvron et al.
    2023 eq. 2) asks for a larger gap on clearer preferences. `weight` `[P]` gives a weighted mean
    sum(w·loss)/sum(w), so all-ones weights equal the plain mean.
    """
    d = r_w - r_l if margin is None else r_w - r_l - margin
    loss = -F.logsigmoid(d)
    return loss.mean() if weight is None else (loss * weight).sum() / weight.sum()


def center_rewards(r_w: Tensor, r_l: Tensor) -> Tensor:
    """Auxiliary mean((r_w + r_l)^2) that pins the reward's free offset near 0 (Eisenstein et al. 2023;
    TRL's `center_rewards_coefficient` term). Add it times a small coefficient (e.g. 0.01)."""
    return ((r_w + r_l) ** 2).mean()


def ranking_pairs(ranking: list) -> tuple[Tensor, Tensor]:
    """Expand one K-way ranking (indices best->worst, a nested list = a tie) into its C(K,2) pairs.

    Returns pairs `[P, 2]` (winner, loser) and tie `[P]` bool; tied responses give one pair with tie=True
    (its order is meaningless). Example: [2, [0, 3], 1] -> (2,0) (2,3) (2,1) (0,3 tie) (0,1) (3,1).
    """
    tiers = [t if isinstance(t, (list, tuple)) else [t] for t in ranking]
    pairs, tie = [], []
    for i, tier in enumerate(tiers):
        for a_pos, a in enumerate(tier):
            for b in tier[a_pos + 1 :]:
                pairs.append((a, b))
                tie.append(True)
            for lower in tiers[i + 1 :]:
                for b in lower:
                    pairs.append((a, b))
                    tie.append(False)
    return torch.tensor(pairs, dtype=torch.long).view(-1, 2), torch.tensor(tie, dtype=torch.bool)


def ranking_loss(
    scores: Tensor,
    pairs: Tensor,
    prompt_index: Tensor,
    weights: Tensor | None = None,
    tie: Tensor | None = None,
    margin: Tensor | None = None,
) -> Tensor:
    """Reward-model loss on K-way rankings: all C(K,2) pairs of a prompt form one batch element.

    InstructGPT (Ouyang et al. 2022, §3.5, eq. 1): loss = -1/C(K,2) E[log σ(r(x,y_w) - r(x,y_l))], i.e.
    average over a prompt's pairs first, then over prompts, so a prompt with K=9 does not outweigh one
    with K=2 by 36 to 1 (and its correlated pairs do not overfit).

    scores `[N]`: reward of every response in the batch; pairs `[P, 2]` indices into scores (winner,
    loser); prompt_index `[P]`: the prompt each pair came from; weights `[P]`: per-pair weight (e.g. the
    annotator's reliability): a prompt's loss is sum(w·loss)/n_pairs and prompts are averaged with
    weight mean(w), so all-ones weights give the unweighted loss (and all-zero weights a loss of 0). tie `[P]` bool marks tied pairs, which
    contribute -½(log σ(d) + log σ(-d)): the Bradley-Terry cross-entropy with target ½, a tie counted as
    half a win each way (the Chatbot Arena convention, Chiang et al. 2024); it is minimised at d = 0.
    margin `[P]` (as `bradley_terry`'s) is subtracted from each pair's difference: -log σ(r_w - r_l - m).
    """
    d = scores[pairs[:, 0]] - scores[pairs[:, 1]]
    if margin is not None:
        d = d - margin.to(d)
    loss = -F.logsigmoid(d)
    if tie is not None:
        loss = torch.where(tie, -0.5 * (F.logsigmoid(d) + F.logsigmoid(-d)), loss)
    w = torch.ones_like(loss) if weights is None else weights.to(loss)
    n_prompts = int(prompt_index.max()) + 1 if prompt_index.numel() else 0
    per_prompt = torch.zeros(n_prompts, dtype=loss.dtype, device=loss.device)
    num = per_prompt.index_add(0, prompt_index, w * loss)
    wsum = per_prompt.index_add(0, prompt_index, w)
    count = per_prompt.index_add(0, prompt_index, torch.ones_like(w))
    present = count > 0  # prompt ids need not be contiguous
    total = (wsum[present] / count[present]).sum()  # 0 when every weight is 0: the loss is then 0, not NaN
    return (num[present] / count[present]).sum() / total.clamp_min(torch.finfo(total.dtype).tiny)


def plackett_luce(scores: Tensor, ranking: Tensor | list[int]) -> Tensor:
    """Negative log-likelihood of a full ranking under Plackett-Luce (Plackett 1975; Luce 1959).

    P(π | s) = Π_i exp(s_π(i)) / Σ_{j >= i} exp(s_π(j)): pick the best among all, then the best among the
    rest, ... (the K-wise MLE loss of Zhu, Jordan & Jiao 2023). scores `[K]`, ranking: indices best->worst,
    strict (break ties first, or use `ranking_loss`). With K=2 it equals `bradley_terry`.
    """
    s = scores[torch.as_tensor(ranking, device=scores.device)]  # best first
    # logsumexp over each suffix s[i:], computed as a reversed cumulative logsumexp.
    suffix_lse = torch.logcumsumexp(s.flip(0), 0).flip(0)
    return -(s - suffix_lse)[:-1].sum()


def plackett_luce_tiers(scores: Tensor, tiers: list[list[int]]) -> Tensor:
    """Plackett-Luce NLL of a ranking with ties (`rlhfkit reward --loss pl`), per choice step: / (K-1), so K=2
    equals Bradley-Terry.

    Each tier is picked from the responses not yet ranked; a tie of |T| items uses Breslow's (1974)
    approximation Π_{i∈T} exp(s_i) / (Σ_{j∈rest} exp(s_j))^|T|. Without ties it is `plackett_luce` / (K-1).
    """
    order = torch.tensor([i for t in tiers for i in t], device=scores.device)
    s = scores[order]
    suffix_lse = torch.logcumsumexp(s.flip(0), 0).flip(0)  # lse over everything not yet ranked
    nll, start = scores.new_zeros(()), 0
    for t in tiers:
        nll = nll - (s[start:start + len(t)] - suffix_lse[start]).sum()
        start += len(t)
    return nll / (len(order) - 1)



# ----------------------------------------------------------------------------------------------
# direct preference optimisation (inputs: sequence log-probs [B] of chosen/rejected under π and π_ref)


def _implicit_rewards(pi_w, pi_l, ref_w, ref_l, beta):
    # DPO's implicit reward r(x, y) = β log π(y|x)/π_ref(y|x) (Rafailov et al. 2023 eq. 5), for logging.
    return (beta * (pi_w - ref_w)).detach(), (beta * (pi_l - ref_l)).detach()


def dpo_sigmoid(
    pi_w: Tensor, pi_l: Tensor, ref_w: Tensor, ref_l: Tensor, beta: float = 0.1, label_smoothing: float = 0.0
) -> tuple[Tensor, Tensor, Tensor]:
    """DPO loss -log σ(β[(log π_w - log π_ref,w) - (log π_l - log π_ref,l)]) (Rafailov et al. 2023 eq. 7).

    label_smoothing ε > 0 is conservative DPO (Mitchell 2023): the label is flipped with probability ε,
    loss = -(1-ε) log σ(βh) - ε log σ(-βh). Returns (loss, chosen_rewards [B], rejected_rewards [B]).
    """
    h = (pi_w - ref_w) - (pi_l - ref_l)
    loss = -(1 - label_smoothing) * F.logsigmoid(beta * h) - label_smoothing * F.logsigmoid(-beta * h)
    return (loss.mean(), *_implicit_rewards(pi_w, pi_l, ref_w, ref_l, beta))


def ipo(pi_w: Tensor, pi_l: Tensor, ref_w: Tensor, ref_l: Tensor, beta: float = 0.1) -> tuple[Tensor, Tensor, Tensor]:
    """IPO loss (h - 1/(2β))^2 with h the DPO log-ratio difference (Azar et al. 2023 eq. 17, τ = β).

    It regresses the margin to a finite target instead of pushing it to infinity. TRL (with the authors'
    agreement) feeds length-averaged log-probs; pass averaged ones here for the same scale.
    Returns (loss, chosen_rewards [B], rejected_rewards [B]).
    """
    h = (pi_w - ref_w) - (pi_l - ref_l)
    loss = (h - 1 / (2 * beta)) ** 2
    return (loss.mean(), *_implicit_rewards(pi_w, pi_l, ref_w, ref_l, beta))


# ----------------------------------------------------------------------------------------------
# KL estimators, per token, for samples y ~ π (Schulman 2020, "Approximating KL divergence")


def kl_k1(logp: Tensor, ref_logp: Tensor) -> Tensor:
    """k1 = log π/π_ref: unbiased for KL(π‖π_ref), high variance, can be negative. The PPO reward penalty."""
    return logp - ref_logp


def kl_k2(logp: Tensor, ref_logp: Tensor) -> Tensor:
    """k2 = ½ (log π/π_ref)^2: biased but low variance, always >= 0 (exact to second order)."""
    return 0.5 * (logp - ref_logp) ** 2


def kl_k3(logp: Tensor, ref_logp: Tensor) -> Tensor:
    """k3 = (r - 1) - log r with r = π_ref/π: unbiased, always >= 0, low variance (GRPO's KL term)."""
    log_r = ref_logp - logp
    return torch.expm1(log_r) - log_r


# ----------------------------------------------------------------------------------------------
# policy gradient


def _clipped_surrogate(logp, old_logp, adv, clip_low, clip_high):
    # PPO clipped objective (Schulman et al. 2017 eq. 7), as a per-token loss to minimise:
    # max(-A·ρ, -A·clip(ρ, 1-ε_low, 1+ε_high)) with ρ = π/π_old.
    ratio = torch.exp(logp - old_logp)
    unclipped = -adv * ratio
    clipped = -adv * ratio.clamp(1 - clip_low, 1 + clip_high)
    return torch.maximum(unclipped, clipped), (clipped > unclipped)


def ppo_clip(
    logp: Tensor, old_logp: Tensor, adv: Tensor, mask: Tensor, clip: float = 0.2
) -> tuple[Tensor, Tensor, Tensor]:
    """PPO clipped policy loss over response tokens (Schulman et al. 2017 eq. 7; Ziegler et al. 2019).

    All inputs `[B, T]`; the loss is the mean over all masked tokens. Returns (loss, clipfrac, approx_kl):
    clipfrac = share of tokens where the clipped term is active, approx_kl = ½ mean((log π - log π_old)^2)
    (lm-human-preferences' `approxkl`), both detached.
    """
    per_token, was_clipped = _clipped_surrogate(logp, old_logp, adv, clip, clip)
    with torch.no_grad():
        clipfrac = masked_mean(was_clipped.float(), mask)
        approx_kl = masked_mean(kl_k2(logp, old_logp), mask)
    return masked_mean(per_token, mask), clipfrac, approx_kl


def value_clip(
    values: Tensor, old_values: Tensor, returns: Tensor, mask: Tensor, clip: float = 0.2
) -> tuple[Tensor, Tensor]:
    """Clipped value loss ½ mean(max((V - R)^2, (V_clip - R)^2)), V_clip = V_old + clip(V - V_old, ±c).

    As in lm-human-preferences / OpenAI baselines PPO2: the value head may not move further than `clip`
    from its rollout-time estimate in one update. All inputs `[B, T]`. Returns (loss, clipfrac).
    """
    v_clipped = old_values + (values - old_values).clamp(-clip, clip)
    loss_unclipped, loss_clipped = (values - returns) ** 2, (v_clipped - returns) ** 2
    with torch.no_grad():
        clipfrac = masked_mean((loss_clipped > loss_unclipped).float(), mask)
    return 0.5 * masked_mean(torch.maximum(loss_unclipped, loss_clipped), mask), clipfrac


def grpo_loss(
    logp: Tensor,
    old_logp: Tensor,
    adv: Tensor,
    mask: Tensor,
    clip: float = 0.2,
    clip_high: float | None = None,
    ref_logp: Tensor | None = None,
    kl_coef: float = 0.0,
    level: str = "seq",
    kl_importance_weight: bool = False,
    max_len: int | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """Group-relative policy loss for GRPO and RLOO (Shao et al. 2024 eq. 3; Ahmadian et al. 2024).

    Per token: clipped surrogate with the sequence's advantage (adv `[B]` or `[B, T]`) plus β·k3 toward the
    reference (GRPO puts the KL in the loss, not in the reward). `clip_high` (DAPO's clip-higher) defaults
    to `clip`. level (see `aggregate`): "seq" averages per response then over responses (GRPO); "token" over
    all tokens (DAPO, TRL's "bnpo"); "constant" divides the token sum by B·max_len (Dr. GRPO). `kl_importance_weight` multiplies k3 by
    ρ = π/π_old: the tokens were sampled from π_old, so this makes the term an estimate of KL(π‖π_ref) and
    adds the score-function part of its gradient (TRL's `use_bias_correction_kl`; off in the GRPO paper).
    Returns (loss, clipfrac, kl) — kl is the detached mean k3 (0 when no reference is given).
    """
    if adv.dim() == 1:
        adv = adv.unsqueeze(-1).expand_as(logp)
    per_token, was_clipped = _clipped_surrogate(logp, old_logp, adv, clip, clip if clip_high is None else clip_high)
    kl = torch.zeros((), device=logp.device)
    if ref_logp is not None:
        kl_tok = kl_k3(logp, ref_logp)
        kl = masked_mean(kl_tok.detach(), mask)
        if kl_importance_weight:
            kl_tok = kl_tok * torch.exp(logp - old_logp)
        per_token = per_token + kl_coef * kl_tok
    clipfrac = masked_mean(was_clipped.float(), mask).detach()
    return aggregate(per_token, mask, level, max_len), clipfrac, kl


def rloo_loss(
    logp: Tensor, old_logp: Tensor, adv: Tensor, mask: Tensor, clip: float = 0.2, clip_high: float | None = None
) -> tuple[Tensor, Tensor]:
    """RLOO: REINFORCE on the whole sequence (Ahmadian et al. 2024 §3; Kool et al. 2019).

    The action is the response, not a token: ρ = π(y|x)/π_old(y|x) = exp(Σ_t log π − Σ_t log π_old), and the
    loss is the mean over responses of −min(ρ·A, clip(ρ, 1−ε, 1+ε_high)·A), with A `[B]` the leave-one-out
    advantage of the reward already penalised by β·KL(sequence) (`rl.advantages.group_advantages`). On the
    first (on-policy) update ρ = 1 and this is −mean(A · log π(y|x)) in gradient: plain REINFORCE. The
    clipping matters only for further epochs on the same batch (TRL's RLOOTrainer `num_iterations` > 1).
    logp, old_logp, mask `[B, T]`. Returns (loss, clipfrac) — the share of responses whose clipped term is active.
    """
    log_ratio = masked_sum(logp, mask, dim=-1) - masked_sum(old_logp, mask, dim=-1)
    per_seq, was_clipped = _clipped_surrogate(log_ratio, torch.zeros_like(log_ratio), adv, clip,
                                              clip if clip_high is None else clip_high)
    return per_seq.mean(), was_clipped.float().mean().detach()
