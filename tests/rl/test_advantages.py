"""rlhfkit.rl.advantages (and the PPO losses that consume it) against independent references.

Every expected value comes from a plain-Python loop over floats or from arithmetic written out in the test,
never from the function under test. Run: .venv/bin/python -m pytest tests/rl/test_advantages.py -q
"""

import math
import random

import numpy as np
import pytest
import torch

from rlhfkit.losses import masked_whiten, ppo_clip, value_clip
from rlhfkit.rl.advantages import gae, group_advantages, last_token_index, ppo_token_rewards


def close(got, expected, atol=1e-6):
    """`got` (a tensor) equals the nested list `expected` elementwise, within atol."""
    torch.testing.assert_close(got, torch.tensor(expected, dtype=got.dtype), atol=atol, rtol=0)


# ---------------------------------------------------------------------------------------------- GAE


def gae_reference(rewards, values, mask, gamma, lam):
    """Textbook GAE (Schulman et al. 2016 eq. 16) as a double loop over rows and steps, on Python floats.

    Each row's episode is its run of mask == 1; the bootstrap after its last token is 0 (terminal).
    Returns (adv, returns) as lists of lists, 0 outside the mask.
    """
    adv_rows, ret_rows = [], []
    for r, v, m in zip(rewards, values, mask):
        T = len(r)
        adv, ret = [0.0] * T, [0.0] * T
        running = 0.0  # A_{t+1}
        for t in reversed(range(T)):
            if not m[t]:
                running = 0.0
                continue
            next_v = v[t + 1] if t + 1 < T and m[t + 1] else 0.0
            delta = r[t] + gamma * next_v - v[t]
            running = delta + gamma * lam * running
            adv[t], ret[t] = running, running + v[t]
        adv_rows.append(adv)
        ret_rows.append(ret)
    return adv_rows, ret_rows


@pytest.mark.parametrize("gamma,lam", [(0.9, 0.8), (0.99, 0.95), (0.5, 0.0), (1.0, 0.95)])
def test_gae_matches_python_double_loop_with_ragged_responses(gamma, lam):
    g = torch.Generator().manual_seed(17)
    T = 8
    # (start, end) of each row's response: full length, empty, one token, ends at T, ends early
    spans = [(0, T), (3, 3), (2, 3), (4, T), (1, 6), (0, 5)]
    B = len(spans)
    # rewards and values are random everywhere, so anything read outside the mask shows up as an error
    rewards = torch.randn(B, T, generator=g, dtype=torch.float64)
    values = torch.randn(B, T, generator=g, dtype=torch.float64)
    mask = torch.zeros(B, T, dtype=torch.long)
    for b, (start, end) in enumerate(spans):
        mask[b, start:end] = 1
    adv, ret = gae(rewards, values, mask, gamma, lam)
    ref_adv, ref_ret = gae_reference(rewards.tolist(), values.tolist(), mask.tolist(), gamma, lam)
    for b in range(B):
        assert adv[b].tolist() == pytest.approx(ref_adv[b], abs=1e-12), f"row {b} span {spans[b]}"
        assert ret[b].tolist() == pytest.approx(ref_ret[b], abs=1e-12), f"row {b} span {spans[b]}"
    # returns = adv + V on the response, and both are exactly 0 elsewhere (the empty row is all 0)
    on = mask.bool()
    torch.testing.assert_close(ret[on], adv[on] + values[on])
    assert (adv[~on] == 0).all() and (ret[~on] == 0).all()
    assert adv[1].abs().sum() == 0


def test_gae_three_tokens_by_hand():
    # [prompt, y0, y1, y2, pad]: the prompt and pad carry junk reward/value that must not leak in
    rewards = torch.tensor([[3.0, 0.0, 0.5, 1.0, 7.0]], dtype=torch.float64)
    values = torch.tensor([[5.0, 0.2, 0.4, 0.6, -4.0]], dtype=torch.float64)
    mask = torch.tensor([[0, 1, 1, 1, 0]])
    adv, ret = gae(rewards, values, mask, gamma=0.9, lam=0.5)  # γλ = 0.45
    # δ2 = 1.0 + 0.9·0   - 0.6 = 0.40   (terminal: no bootstrap)
    # δ1 = 0.5 + 0.9·0.6 - 0.4 = 0.64
    # δ0 = 0.0 + 0.9·0.4 - 0.2 = 0.16
    # A2 = 0.40;  A1 = 0.64 + 0.45·0.40 = 0.82;  A0 = 0.16 + 0.45·0.82 = 0.529
    assert adv[0].tolist() == pytest.approx([0.0, 0.529, 0.82, 0.40, 0.0], abs=1e-12)
    # returns = A + V: 0.529 + 0.2, 0.82 + 0.4, 0.40 + 0.6
    assert ret[0].tolist() == pytest.approx([0.0, 0.729, 1.22, 1.0, 0.0], abs=1e-12)


def test_gae_lambda_one_is_monte_carlo_return_minus_value():
    rewards = torch.tensor([[0.0, -0.1, 0.0, 2.0, 9.0]])
    values = torch.tensor([[0.5, 0.4, 0.3, 0.2, 9.0]])
    mask = torch.tensor([[1, 1, 1, 1, 0]])  # last column is padding: its reward and value must not leak
    adv, ret = gae(rewards, values, mask, gamma=1.0, lam=1.0)
    mc = [1.9, 1.9, 2.0, 2.0]  # sum of future rewards within the response
    assert adv[0, :4].tolist() == pytest.approx([m - v for m, v in zip(mc, [0.5, 0.4, 0.3, 0.2])])
    assert ret[0, :4].tolist() == pytest.approx(mc)
    assert adv[0, 4] == 0 and ret[0, 4] == 0


def test_last_token_index():
    mask = torch.tensor([[0, 1, 1, 0], [1, 1, 1, 1], [0, 0, 0, 0]])
    assert last_token_index(mask).tolist() == [2, 3, 0]


# ---------------------------------------------------------------------------------------------- PPO token rewards


def test_ppo_token_rewards_by_hand():
    logp = torch.tensor([[0.0, -1.0, -2.0, -0.5], [0.0, -0.3, -0.3, -9.0], [0.0, -0.7, -0.2, -0.4]])
    ref = torch.tensor([[0.0, -1.5, -1.0, -0.5], [0.0, -0.1, -0.6, -1.0], [0.0, -0.2, -0.9, -3.0]])
    mask = torch.tensor([[0, 1, 1, 0], [0, 1, 1, 1], [0, 0, 0, 0]])  # row 2: empty response
    score = torch.tensor([2.0, -1.0, 5.0])
    ended = torch.tensor([True, False, False])  # row 1 was truncated before EOS
    rewards, kl = ppo_token_rewards(score, logp, ref, mask, kl_coef=0.1, eos_missing_penalty=1.5, ended=ended)
    # k1 = log π - log π_ref on the response, 0 elsewhere (row 2's nonzero log-ratios are masked out)
    close(kl, [[0, 0.5, -1.0, 0], [0, -0.2, 0.3, -8.0], [0, 0, 0, 0]])
    # R_t = -β k1_t, plus the score on the last response token:
    # row 0: -0.1·0.5 = -0.05;  0.1 + 2.0 = 2.1
    # row 1: 0.02; -0.03; 0.8 + (-1.0 - 1.5 EOS penalty) = -1.7
    # row 2: no token to carry its score (or its penalty)
    close(rewards, [[0, -0.05, 2.1, 0], [0, 0.02, -0.03, -1.7], [0, 0, 0, 0]])
    # summed over tokens: R = score' - β Σ k1 (Ziegler et al. eq. 2): 2 - 0.1·(-0.5), -2.5 - 0.1·(-7.9), 0
    assert rewards.sum(-1).tolist() == pytest.approx([2.05, -1.71, 0.0], abs=1e-6)
    # the penalty needs to know which rows ended
    with pytest.raises(ValueError):
        ppo_token_rewards(score, logp, ref, mask, 0.1, eos_missing_penalty=1.5)
    # without a penalty, an unfinished row keeps its raw score
    plain, _ = ppo_token_rewards(score, logp, ref, mask, kl_coef=0.1)
    assert plain[1, 3].item() == pytest.approx(0.8 - 1.0, abs=1e-6)


def test_ppo_token_rewards_k3_by_hand():
    logp = torch.tensor([[0.0, -1.0, -2.0, -0.5]], dtype=torch.float64)
    ref = torch.tensor([[0.0, -1.5, -1.0, -0.5]], dtype=torch.float64)
    mask = torch.tensor([[0, 1, 1, 0]])
    rewards, kl = ppo_token_rewards(torch.tensor([2.0]), logp, ref, mask, kl_coef=0.1, kl_estimator="k3")
    # k3 = (r - 1) - log r with log r = log π_ref - log π: t1 log r = -0.5, t2 log r = +1.0
    k3 = [math.exp(-0.5) - 1 + 0.5, math.exp(1.0) - 1 - 1.0]  # 0.10653..., 0.71828...
    assert kl[0].tolist() == pytest.approx([0.0, *k3, 0.0], abs=1e-12)
    assert rewards[0].tolist() == pytest.approx([0.0, -0.1 * k3[0], -0.1 * k3[1] + 2.0, 0.0], abs=1e-12)


# ---------------------------------------------------------------------------------------------- whitening


def test_masked_whiten_by_hand_uses_unbiased_variance_of_masked_entries():
    x = torch.tensor([[1.0, 100.0, 3.0], [-50.0, 5.0, 7.0]])
    mask = torch.tensor([[1, 0, 1], [0, 1, 0]])
    # selected 1, 3, 5: mean 3, Σ(x-mean)² = 4 + 0 + 4 = 8, unbiased var 8/2 = 4, std 2
    # (the biased std sqrt(8/3) would give ±1.2247 instead of ±1)
    close(masked_whiten(x, mask), [[-1, 0, 0], [0, 1, 0]])
    # shift_mean=False adds the mean back: (x - 3)/2 + 3
    close(masked_whiten(x, mask, shift_mean=False), [[2, 0, 3], [0, 4, 0]])


def test_masked_whiten_matches_numpy_on_the_selected_entries():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(5, 9, generator=g, dtype=torch.float64) * 3 + 2
    mask = torch.rand(5, 9, generator=g) > 0.4
    xs, m = x.numpy(), mask.numpy()
    sel = xs[m]
    mean, std = sel.mean(), sel.std(ddof=1)
    np.testing.assert_allclose(masked_whiten(x, mask).numpy(), np.where(m, (xs - mean) / std, 0.0), atol=1e-12)
    np.testing.assert_allclose(
        masked_whiten(x, mask, shift_mean=False).numpy(), np.where(m, (xs - mean) / std + mean, 0.0), atol=1e-12
    )


# ---------------------------------------------------------------------------------------------- group baselines


def group_reference(rewards, G, kind, scale_std, eps):
    """GRPO / Dr GRPO / RLOO advantages as a plain loop over groups of G consecutive rewards (Python floats)."""
    out = []
    for start in range(0, len(rewards), G):
        grp = rewards[start : start + G]
        mean = sum(grp) / G
        if kind == "grpo":
            adv = [r - mean for r in grp]
        else:  # rloo: baseline = mean of the other G-1 rewards
            adv = [r - (sum(grp) - r) / (G - 1) for r in grp]
        if scale_std:
            std = math.sqrt(sum((r - mean) ** 2 for r in grp) / (G - 1)) if G > 1 else 0.0  # Bessel
            adv = [a / (std + eps) for a in adv]
        out.extend(adv)
    return out


@pytest.mark.parametrize(
    "kind,scale_std,expect_scaled",
    [("grpo", None, True), ("grpo", False, False), ("rloo", None, False), ("rloo", True, True)],
    ids=["grpo", "dr-grpo", "rloo", "rloo-scaled"],
)
@pytest.mark.parametrize("G", [2, 4, 5])
def test_group_advantages_match_plain_loop(kind, scale_std, expect_scaled, G):
    rng = random.Random(G)
    rewards = [rng.gauss(0, 2) for _ in range(3 * G)]
    rewards += [1.0] * G  # a group of identical rewards
    rewards += [float(rng.random() < 0.5) for _ in range(G - 1)] + [1.0]  # 0/1 verifier rewards
    eps = 1e-4
    got = group_advantages(torch.tensor(rewards, dtype=torch.float64), G, kind, scale_std, eps)
    assert got.tolist() == pytest.approx(group_reference(rewards, G, kind, expect_scaled, eps), abs=1e-12)


def test_group_advantages_grpo_hand_values():
    r = torch.tensor([1.0, 2.0, 3.0, 5.0, 5.0, 5.0])
    adv = group_advantages(r, 3, "grpo")
    # group 1: mean 2, sample std sqrt((1 + 0 + 1)/2) = 1 -> ±1/(1 + 1e-4); group 2: constant -> 0 (not NaN)
    assert adv.tolist() == pytest.approx([-1 / 1.0001, 0.0, 1 / 1.0001, 0.0, 0.0, 0.0])
    # Dr GRPO: no division by the std
    assert group_advantages(r, 3, "grpo", scale_std=False).tolist() == pytest.approx([-1, 0, 1, 0, 0, 0])
    assert group_advantages(torch.tensor([4.0, 7.0]), 1, "grpo").tolist() == [0.0, 0.0]
    # G=2: mean 2, std sqrt(((0-2)² + (4-2)²)/1) = sqrt(8); eps=0 -> ±2/sqrt(8) = ±1/sqrt(2)
    two = group_advantages(torch.tensor([0.0, 4.0]), 2, "grpo", eps=0.0)
    assert two.tolist() == pytest.approx([-1 / math.sqrt(2), 1 / math.sqrt(2)])


def test_group_advantages_rloo_hand_values():
    r = torch.tensor([0.0, 1.0, 3.0, 7.0])
    # Σ = 11; leave-one-out baselines 11/3, 10/3, 8/3, 4/3
    loo = [0 - 11 / 3, 1 - 10 / 3, 3 - 8 / 3, 7 - 4 / 3]  # -11/3, -7/3, 1/3, 17/3
    assert group_advantages(r, 4, "rloo").tolist() == pytest.approx(loo)
    # scale_std=True divides by the group's sample std: mean 2.75, Σ(r-mean)² = 28.75, var 28.75/3
    std = math.sqrt(28.75 / 3)
    assert group_advantages(r, 4, "rloo", scale_std=True, eps=0.0).tolist() == pytest.approx([a / std for a in loo])
    with pytest.raises(ValueError):
        group_advantages(r, 1, "rloo")
    with pytest.raises(ValueError):
        group_advantages(r, 3, "grpo")  # 4 rewards do not split into groups of 3
    with pytest.raises(ValueError):
        group_advantages(r, 2, "reinforce")


# ---------------------------------------------------------------------------------------------- PPO losses
# ppo_clip and value_clip live in rlhfkit.losses (tests/test_losses.py has more); these cases cover each side
# of each clip, a ratio/value outside the range whose clip is inactive, and the gradient that passes.


def test_ppo_clip_by_hand_both_sides():
    log = math.log
    old = torch.zeros(1, 6, dtype=torch.float64)
    logp = torch.tensor([[log(1.5), log(0.5), log(1.1), log(0.5), log(1.5), 3.0]], dtype=torch.float64,
                        requires_grad=True)
    adv = torch.tensor([[2.0, -1.0, 1.0, 1.0, -0.5, 100.0]], dtype=torch.float64)
    mask = torch.tensor([[1, 1, 1, 1, 1, 0]])
    loss, clipfrac, approx_kl = ppo_clip(logp, old, adv, mask, clip=0.2)
    # per token max(-Aρ, -A·clip(ρ, 0.8, 1.2)):
    # ρ=1.5, A=+2:   max(-3.0, -2.4) = -2.4   clipped (upper side)
    # ρ=0.5, A=-1:   max( 0.5,  0.8) =  0.8   clipped (lower side)
    # ρ=1.1, A=+1:   max(-1.1, -1.1) = -1.1   inside the range
    # ρ=0.5, A=+1:   max(-0.5, -0.8) = -0.5   outside the range, but the unclipped term is the pessimistic one
    # ρ=1.5, A=-0.5: max(0.75,  0.6) =  0.75  likewise
    # sixth token masked out
    assert loss.item() == pytest.approx((-2.4 + 0.8 - 1.1 - 0.5 + 0.75) / 5, abs=1e-12)  # -0.49
    assert clipfrac.item() == pytest.approx(2 / 5)
    assert approx_kl.item() == pytest.approx(0.5 * (2 * log(1.5) ** 2 + 2 * log(0.5) ** 2 + log(1.1) ** 2) / 5)
    loss.backward()
    # d/dlogp: 0 where clipped, -A·ρ / 5 elsewhere: -1.1/5, -0.5/5, +0.75/5
    assert logp.grad[0].tolist() == pytest.approx([0.0, 0.0, -0.22, -0.1, 0.15, 0.0], abs=1e-12)


def test_value_clip_by_hand_both_sides():
    old = torch.tensor([[0.0, 0.0, 0.5, 0.0, 0.0]], dtype=torch.float64)
    values = torch.tensor([[1.0, -1.0, 0.6, 1.0, 9.0]], dtype=torch.float64, requires_grad=True)
    returns = torch.tensor([[1.0, -1.0, 1.0, 0.5, 0.0]], dtype=torch.float64)
    mask = torch.tensor([[1, 1, 1, 1, 0]])
    loss, clipfrac = value_clip(values, old, returns, mask, clip=0.2)
    # V_clip = V_old + clip(V - V_old, ±0.2); per token max((V-R)², (V_clip-R)²):
    # V=1.0,  R=1.0:  V_clip=0.2,  max(0, 0.64) = 0.64     clipped (moved up too far)
    # V=-1.0, R=-1.0: V_clip=-0.2, max(0, 0.64) = 0.64     clipped (moved down too far)
    # V=0.6,  R=1.0:  V_clip=0.6,  max(0.16, 0.16) = 0.16  inside the range
    # V=1.0,  R=0.5:  V_clip=0.2,  max(0.25, 0.09) = 0.25  overshot: the unclipped error is larger
    assert loss.item() == pytest.approx(0.5 * (0.64 + 0.64 + 0.16 + 0.25) / 4, abs=1e-12)  # 0.21125
    assert clipfrac.item() == pytest.approx(2 / 4)
    loss.backward()
    # d/dV of ½(V-R)²/4 = (V-R)/4 where the unclipped branch (or an equal one) wins; 0 where V_clip is frozen
    assert values.grad[0].tolist() == pytest.approx([0.0, 0.0, -0.1, 0.125, 0.0], abs=1e-12)
