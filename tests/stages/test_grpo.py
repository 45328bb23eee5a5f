"""GRPO and Dr. GRPO as users rely on them: the first update starts exactly on-policy, `--grpo.loss_type dr_grpo`
really drops both the std scaling and the length normalisation (Liu et al. 2025), and a NaN loss is skipped.
The losses themselves are checked against TRL in tests/test_losses_vs_trl.py.

Run: .venv/bin/python -m pytest tests/stages/test_grpo.py -q
"""

from __future__ import annotations

import json

import pytest
import torch

from rlhfkit.config import parse
from rlhfkit.stages import grpo

MAX_NEW = 8


def _length_reward(prompts, responses):
    r = torch.tensor([len(x) / 10.0 for x in responses])
    return r, torch.zeros_like(r)


def _run(lm_dir, prompts, out, *extra):
    argv = ["--preset", "ci", "--model", str(lm_dir), "--rollout.prompts", prompts, "--out", str(out),
            "--reward=test", "--grpo.steps=2", "--grpo.group_size=4", "--grpo.minibatch=8",
            "--rollout.batch_prompts=4", f"--rollout.max_new_tokens={MAX_NEW}", "--grpo.save_every=0", *extra]
    grpo.run(parse(grpo.Config, argv, grpo.PRESETS))
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture
def calls(monkeypatch):
    """Every grpo_loss call of a run: its inputs and outputs."""
    seen = []
    loss_fn = grpo.grpo_loss

    def recording(logp, old_logp, adv, mask, clip, **kw):
        out = loss_fn(logp, old_logp, adv, mask, clip, **kw)
        seen.append({"logp": logp.detach().clone(), "old": old_logp.clone(), "adv": adv.clone(), "mask": mask.clone(),
                     "clipfrac": out[1].item(), **kw})
        return out

    monkeypatch.setattr(grpo, "grpo_loss", recording)
    monkeypatch.setattr("rlhfkit.rl.loop.make_reward", lambda spec: _length_reward)
    return seen


def test_first_minibatch_is_exactly_on_policy(lm_dir, tiny_data, tmp_path, calls):
    _run(lm_dir, tiny_data["prompts"], tmp_path / "grpo", "--grpo.epochs=2")
    first = calls[0]
    ratio = torch.exp(first["logp"] - first["old"])[first["mask"].bool()]
    assert torch.equal(ratio, torch.ones_like(ratio)) and first["clipfrac"] == 0.0
    assert first["level"] == "seq"  # GRPO's per-response averaging


def test_dr_grpo_drops_std_scaling_and_length_normalisation(lm_dir, tiny_data, tmp_path, calls, monkeypatch):
    advantages = []
    group_fn = grpo.group_advantages

    def recording(r, *a):
        advantages.append((r.clone(), group_fn(r, *a)))
        return advantages[-1][1]

    monkeypatch.setattr(grpo, "group_advantages", recording)
    rows = _run(lm_dir, tiny_data["prompts"], tmp_path / "drgrpo", "--grpo.loss_type=dr_grpo")
    assert calls[0]["level"] == "constant" and calls[0]["max_len"] == MAX_NEW
    r, adv = advantages[0]
    want = [x - sum(g) / 4 for g in r.view(-1, 4).tolist() for x in g]  # r − group mean, no division by the std
    torch.testing.assert_close(adv, torch.tensor(want))
    assert all(row["skipped_updates"] == 0 for row in rows)


def test_nonfinite_loss_is_skipped(lm_dir, tiny_data, tmp_path, monkeypatch, capsys):
    def nan_reward(prompts, responses):
        r = torch.full((len(responses),), float("nan"))
        return r, torch.zeros_like(r)

    monkeypatch.setattr("rlhfkit.rl.loop.make_reward", lambda spec: nan_reward)
    out = tmp_path / "grpo"
    _run(lm_dir, tiny_data["prompts"], out)
    assert capsys.readouterr().out.count("non-finite loss in an update") == 1
    assert json.loads((out / "summary.json").read_text())["skipped_updates"] == 4  # 2 steps x 2 minibatches
