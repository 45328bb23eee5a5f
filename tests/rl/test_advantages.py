"""rlhfkit.rl.advantages: GAE against a plain-Python loop, PPO token rewards and group baselines by hand.

Run: .venv/bin/python -m pytest tests/rl/test_advantages.py -q
"""

import math

import pytest
import torch

from rlhfkit.losses import kl_k1, kl_k3
from rlhfkit.rl.advantages import gae, group_advantages, last_token_index, ppo_token_rewards


def gae_reference(rewards, values, start, end, gamma, lam):
    """Textbook GAE on one episode (Python floats): the response occupies [start, end)."""
    T = len(rewards)
    adv, ret = [0.0] * T, [0.0] * T
    last = 0.0
    for t in reversed(range(start, end)):
        next_v = values[t + 1] if t + 1 < end else 0.0
        delta = rewards[t] + gamma * next_v - values[t]
        last = delta + gamma * lam * last
        adv[t], ret[t] = last, last + values[t]
    return adv, ret


@pytest.mark.parametrize("gamma,lam", [(1.0, 0.95), (0.9, 0.8), (1.0, 1.0), (0.99, 0.0)])
def test_gae_matches_python_loop_with_variable_lengths(gamma, lam):
    g = torch.Generator().manual_seed(int(gamma * 100 + lam * 10))
    B, T = 6, 9
    rewards, values = torch.randn(B, T, generator=g), torch.randn(B, T, generator=g)
    mask = torch.zeros(B, T)
    spans = []
    for b in range(B):  # a prompt prefix (left), a response of random length, then padding
        start = int(torch.randint(0, 4, (1,), generator=g))
        end = int(torch.randint(start + 1, T + 1, (1,), generator=g))
        mask[b, start:end] = 1
        spans.append((start, end))
    adv, ret = gae(rewards, values, mask, gamma, lam)
    for b, (start, end) in enumerate(spans):
        ref_adv, ref_ret = gae_reference(rewards[b].tolist(), values[b].tolist(), start, end, gamma, lam)
        assert adv[b].tolist() == pytest.approx(ref_adv, abs=1e-5)
        assert ret[b].tolist() == pytest.approx(ref_ret, abs=1e-5)


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


def test_ppo_token_rewards_kl_per_token_and_score_at_last_token():
    logp = torch.tensor([[0.0, -1.0, -2.0, -0.5], [0.0, -0.3, -0.3, -9.0]])
    ref = torch.tensor([[0.0, -1.5, -1.0, -0.5], [0.0, -0.1, -0.6, -1.0]])
    mask = torch.tensor([[0, 1, 1, 0], [0, 1, 1, 1]])
    score = torch.tensor([2.0, -1.0])
    rewards, kl = ppo_token_rewards(score, logp, ref, mask, kl_coef=0.1)
    # row 0: log-ratios at t=1,2 are 0.5 and -1.0; the score sits on t=2, the last response token
    assert rewards[0].tolist() == pytest.approx([0.0, -0.05, 0.1 + 2.0, 0.0])
    assert kl[0].tolist() == pytest.approx([0.0, 0.5, -1.0, 0.0])
    # row 1: log-ratios -0.2, 0.3, -8.0; the score on t=3
    assert rewards[1].tolist() == pytest.approx([0.0, 0.02, -0.03, 0.8 - 1.0])
    # the summed reward is the sequence-level R = score - β Σ log π/π_ref (Ziegler et al. eq. 2)
    seq_kl = (kl_k1(logp, ref) * mask).sum(-1)
    assert rewards.sum(-1).tolist() == pytest.approx((score - 0.1 * seq_kl).tolist())
    _, kl3 = ppo_token_rewards(score, logp, ref, mask, kl_coef=0.1, kl_estimator="k3")
    torch.testing.assert_close(kl3, kl_k3(logp, ref) * mask)


def test_ppo_token_rewards_missing_eos_penalty_and_empty_response():
    logp = torch.zeros(3, 3)
    mask = torch.tensor([[1, 1, 0], [1, 1, 1], [0, 0, 0]])
    score = torch.tensor([1.0, 1.0, 5.0])
    ended = torch.tensor([True, False, True])
    rewards, _ = ppo_token_rewards(score, logp, logp, mask, 0.1, eos_missing_penalty=2.0, ended=ended)
    assert rewards.tolist() == [[0.0, 1.0, 0.0], [0.0, 0.0, -1.0], [0.0, 0.0, 0.0]]
    with pytest.raises(ValueError):
        ppo_token_rewards(score, logp, logp, mask, 0.1, eos_missing_penalty=2.0)


def test_group_advantages_grpo_hand_values():
    r = torch.tensor([1.0, 2.0, 3.0, 5.0, 5.0, 5.0])
    adv = group_advantages(r, 3, "grpo")
    # group 1: mean 2, sample std 1; group 2: constant -> 0 (not NaN)
    assert adv.tolist() == pytest.approx([-1 / 1.0001, 0.0, 1 / 1.0001, 0.0, 0.0, 0.0])
    assert group_advantages(r, 3, "grpo", scale_std=False).tolist() == pytest.approx([-1, 0, 1, 0, 0, 0])
    assert group_advantages(torch.tensor([4.0, 7.0]), 1, "grpo").tolist() == [0.0, 0.0]


def test_group_advantages_rloo_leave_one_out():
    r = torch.tensor([1.0, 2.0, 3.0, 6.0, 0.0, 0.0, 0.0, 4.0])
    adv = group_advantages(r, 4, "rloo")
    expected = []
    for grp in (r[:4].tolist(), r[4:].tolist()):
        for i, ri in enumerate(grp):
            others = grp[:i] + grp[i + 1 :]
            expected.append(ri - sum(others) / len(others))
    assert adv.tolist() == pytest.approx(expected)
    # RLOO = G/(G-1) times the mean-baseline advantage
    assert adv.tolist() == pytest.approx((group_advantages(r, 4, "grpo", scale_std=False) * 4 / 3).tolist())
    with pytest.raises(ValueError):
        group_advantages(r, 1, "rloo")
    with pytest.raises(ValueError):
        group_advantages(r, 3, "grpo")


def test_group_advantages_rloo_scale_std_divides_by_group_std():
    r = torch.tensor([0.0, 1.0, 3.0, 7.0])
    scaled = group_advantages(r, 4, "rloo", scale_std=True, eps=0.0)
    assert scaled.tolist() == pytest.approx((group_advantages(r, 4, "rloo") / r.std()).tolist())
    assert not math.isnan(scaled.sum().item())
