"""PPO as users rely on it: the first update starts exactly on-policy (ratio 1, nothing clipped, also for a
model whose config asks for attention dropout), a NaN/inf loss skips the update and says so once, and each
alarm kind is printed once with what to do. The learning test (PPO through a learned reward model raises
the gold score at bounded KL) is in tests/stages/test_rl_learns.py.

Run: .venv/bin/python -m pytest tests/stages/test_ppo.py -q
"""

from __future__ import annotations

import json

import pytest
import torch

from rlhfkit.common import StageError
from rlhfkit.config import parse
from rlhfkit.model import load_causal_lm
from rlhfkit.stages import ppo


def _length_reward(prompts, responses):  # any signal that varies between responses
    r = torch.tensor([len(x) / 10.0 for x in responses])
    return r, torch.zeros_like(r)


def _nan_reward(prompts, responses):
    r = torch.full((len(responses),), float("nan"))
    return r, torch.zeros_like(r)


def _run(lm_dir, prompts, out, *extra):
    argv = ["--preset", "ci", "--model", str(lm_dir), "--rollout.prompts", prompts, "--out", str(out),
            "--reward=test", "--ppo.steps=2", "--ppo.epochs=2", "--ppo.minibatch=4", "--rollout.batch_prompts=8",
            "--rollout.max_new_tokens=8", "--ppo.save_every=0", *extra]
    ppo.run(parse(ppo.Config, argv, ppo.PRESETS))
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture
def dropout_lm_dir(lm_dir, tmp_path):
    """The fixture model saved with attention dropout 0.5 in its config: dropout must still be off in training."""
    model = load_causal_lm(lm_dir)
    model.config.attention_dropout = 0.5
    path = tmp_path / "dropout_lm"
    model.save_pretrained(path)
    (path / "tokenizer.json").write_bytes((lm_dir / "tokenizer.json").read_bytes())
    for f in lm_dir.glob("*token*"):
        (path / f.name).write_bytes(f.read_bytes())
    return path


@pytest.mark.parametrize("model", ["plain", "attention_dropout"])
def test_first_minibatch_is_exactly_on_policy(lm_dir, dropout_lm_dir, tiny_data, tmp_path, monkeypatch, model):
    calls = []
    clip = ppo.ppo_clip

    def recording_clip(logp, old_logp, adv, mask, eps):
        out = clip(logp, old_logp, adv, mask, eps)
        calls.append((logp.detach().clone(), old_logp.clone(), mask.clone(), out[1].item(), out[2].item()))
        return out

    monkeypatch.setattr("rlhfkit.rl.loop.make_reward", lambda spec: _length_reward)
    monkeypatch.setattr(ppo, "ppo_clip", recording_clip)
    _run(lm_dir if model == "plain" else dropout_lm_dir, tiny_data["prompts"], tmp_path / "ppo")
    logp, old, mask, clipfrac, approx_kl = calls[0]
    ratio = torch.exp(logp - old)[mask.bool()]
    assert torch.equal(ratio, torch.ones_like(ratio))  # bit for bit: eval-mode rollout = train-mode update
    assert clipfrac == 0.0 and approx_kl == 0.0
    later = torch.exp(calls[-1][0] - calls[-1][1])[calls[-1][2].bool()]  # the policy has moved by the last one
    assert not torch.equal(later, torch.ones_like(later))


def test_nonfinite_loss_skips_the_update_and_says_so_once(lm_dir, tiny_data, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("rlhfkit.rl.loop.make_reward", lambda spec: _nan_reward)
    out = tmp_path / "ppo"
    rows = _run(lm_dir, tiny_data["prompts"], out)
    printed = capsys.readouterr().out
    assert printed.count("non-finite loss in an update") == 1
    summary = json.loads((out / "summary.json").read_text())
    # 2 steps x 2 epochs x 2 minibatches, policy and value each skipped
    assert summary["skipped_updates"] == 16 and rows[-1]["skipped_updates"] == 16
    before, after = load_causal_lm(lm_dir).state_dict(), load_causal_lm(out / "model").state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # no step was taken with NaN gradients


def test_nonfinite_loss_can_stop_instead(lm_dir, tiny_data, tmp_path, monkeypatch):
    monkeypatch.setattr("rlhfkit.rl.loop.make_reward", lambda spec: _nan_reward)
    with pytest.raises(StageError, match="non-finite loss"):
        _run(lm_dir, tiny_data["prompts"], tmp_path / "ppo", "--optim.on_nonfinite=stop")


def test_each_alarm_kind_is_printed_once_with_what_to_do(lm_dir, tiny_data, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("rlhfkit.rl.loop.make_reward", lambda spec: _length_reward)
    rows = _run(lm_dir, tiny_data["prompts"], tmp_path / "ppo", "--ppo.steps=4", "--monitor.kl_budget=-1")
    printed = capsys.readouterr().out
    assert sum(r["alarm"] is not None for r in rows) == 4  # fired every step (any KL exceeds a budget of -1)...
    assert printed.count("ALARM") == 1 and "raise the KL coefficient" in printed  # ...said once, with advice
    summary = json.loads((tmp_path / "ppo" / "summary.json").read_text())
    assert summary["alarm_counts"] == {"kl": 4}


def test_ensemble_objectives():
    """--rollout.ensemble: mean, Coste et al.'s uncertainty-weighted mean − λ·variance, mean − λ·std; the EOS
    penalty on top for responses that never end (hand-computed)."""
    from types import SimpleNamespace

    from rlhfkit.rl.loop import RolloutConfig, shaped_score

    ro = SimpleNamespace(score=torch.tensor([1.0, 2.0]), score_std=torch.tensor([0.5, 2.0]),
                         finished=torch.tensor([True, False]))
    got = {kind: shaped_score(ro, RolloutConfig(ensemble=kind, ensemble_coef=0.5, eos_penalty=1.0)).tolist()
           for kind in ("mean", "uwo", "std")}
    assert got == {"mean": [1.0, 1.0], "uwo": [1.0 - 0.5 * 0.25, 2.0 - 0.5 * 4.0 - 1.0],
                   "std": [1.0 - 0.25, 2.0 - 1.0 - 1.0]}
