"""RLOO as Ahmadian et al. 2024 define it: REINFORCE on the whole response with reward − β·KL(sequence) and a
leave-one-out baseline. Checked here by hand and against plain REINFORCE; against TRL's RLOOTrainer in
tests/test_losses_vs_trl.py (test_rloo_matches_trl).

Run: .venv/bin/python -m pytest tests/stages/test_rloo.py -q
"""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch

from rlhfkit import losses as L
from rlhfkit.config import parse
from rlhfkit.stages import rloo
from rlhfkit.rl.loop import RolloutConfig


def test_rewards_subtract_beta_times_the_sequence_kl_and_the_eos_penalty():
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]])
    logp = torch.tensor([[-1.0, -2.0, 0.0], [-0.5, -0.5, -0.5]])
    ref = torch.tensor([[-1.5, -1.0, -9.0], [-0.5, -1.0, 0.0]])  # the padded position must not count
    ro = SimpleNamespace(logp=logp * mask, ref_logp=ref * mask, response_mask=mask, score=torch.tensor([2.0, 1.0]),
                         score_std=torch.zeros(2), finished=torch.tensor([True, False]))
    algo = rloo.RLOO(rloo.RLOOConfig(group_size=2, kl_coef=0.1), RolloutConfig())
    # KL row 0: (−1+1.5) + (−2+1) = −0.5; row 1: 0 + 0.5 + (−0.5) = 0; row 1 never ended: −1
    want = [2.0 - 0.1 * -0.5, 1.0 - 1.0 - 0.1 * 0.0]
    torch.testing.assert_close(algo.rewards(ro, RolloutConfig(eos_penalty=1.0)), torch.tensor(want))
    # leave-one-out with k = 2: each one's advantage is its reward minus the other's
    torch.testing.assert_close(algo.advantages(ro, RolloutConfig(eos_penalty=1.0)),
                               torch.tensor([want[0] - want[1], want[1] - want[0]]))


def test_first_pass_gradient_is_plain_reinforce():
    """With old = logp (the first pass over a batch), ∇ rloo_loss = ∇ −mean_i A_i Σ_t log π(y_it)."""
    torch.manual_seed(0)
    logits = torch.randn(4, 5, 7, requires_grad=True)
    ids = torch.randint(0, 7, (4, 5))
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0], [1, 1, 0, 0, 0]], dtype=torch.float)
    adv = torch.tensor([1.5, -0.5, -2.0, 1.0])

    def logp():
        return torch.log_softmax(logits, -1).gather(-1, ids[..., None]).squeeze(-1)

    lp = logp()
    loss, clipfrac = L.rloo_loss(lp, lp.detach(), adv, mask)
    (grad,) = torch.autograd.grad(loss, logits)
    reinforce = -(adv * (logp() * mask).sum(-1)).mean()
    (want,) = torch.autograd.grad(reinforce, logits)
    torch.testing.assert_close(grad, want)
    assert clipfrac.item() == 0.0


def test_later_passes_clip_the_sequence_ratio():
    # ρ = exp(0.5) ≈ 1.65 with A > 0: clipped to 1.2, so the loss is −1.2·A and no gradient flows
    lp = torch.tensor([[0.25, 0.25]], requires_grad=True)
    loss, clipfrac = L.rloo_loss(lp, torch.zeros(1, 2), torch.tensor([2.0]), torch.ones(1, 2), clip=0.2)
    assert loss.item() == pytest.approx(-2.4) and clipfrac.item() == 1.0
    loss.backward()
    assert torch.equal(lp.grad, torch.zeros(1, 2))


def test_rloo_needs_two_samples_per_prompt():
    with pytest.raises(ValueError, match="group_size >= 2"):
        rloo.RLOO(rloo.RLOOConfig(group_size=1), RolloutConfig())


def test_run_is_on_policy_and_logs_the_sequence_kl(lm_dir, tiny_data, tmp_path, monkeypatch):
    seen = []
    loss_fn = rloo.rloo_loss

    def recording(logp, old, adv, mask, clip):
        seen.append((torch.exp(((logp - old) * mask).sum(-1)).detach(), adv.clone()))
        return loss_fn(logp, old, adv, mask, clip)

    def length_reward(prompts, responses):
        r = torch.tensor([len(x) / 10.0 for x in responses])
        return r, torch.zeros_like(r)

    monkeypatch.setattr(rloo, "rloo_loss", recording)
    monkeypatch.setattr("rlhfkit.rl.loop.make_reward", lambda spec: length_reward)
    out = tmp_path / "rloo"
    argv = ["--preset", "ci", "--model", str(lm_dir), "--rollout.prompts", tiny_data["prompts"], "--out", str(out),
            "--reward=test", "--rloo.steps=2", "--rloo.group_size=4", "--rloo.minibatch=8",
            "--rollout.batch_prompts=4", "--rollout.max_new_tokens=8", "--rloo.save_every=0"]
    rloo.run(parse(rloo.Config, argv, rloo.PRESETS))
    ratio, adv = seen[0]
    assert torch.equal(ratio, torch.ones_like(ratio))
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and all("clipfrac" in r and "kl_k3" not in r for r in rows)
