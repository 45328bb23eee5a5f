"""PPO's memory options: a value head sharing the policy's trunk (`--ppo.share_value_backbone`) and keeping
the frozen models off the GPU while idle (`--ppo.offload`, through `model.offload.on_device`).

Run: .venv/bin/python -m pytest tests/stages/test_ppo_memory.py -q
"""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import pytest
import torch

from rlhfkit.config import parse
from rlhfkit.model.offload import on_device
from rlhfkit.model.scalar import ScalarModel


def _length_reward(prompts, responses):  # longer answers score higher: any signal will do
    r = torch.tensor([len(x) / 10.0 for x in responses])
    return r, torch.zeros_like(r)


def _ppo(ppo, lm_dir, prompts, out, *extra):
    argv = ["--preset", "ci", "--model", str(lm_dir), "--rollout.prompts", prompts, "--out", str(out),
            "--reward=length", "--ppo.steps=2", "--rollout.batch_prompts=8", "--rollout.max_new_tokens=8", *extra]
    ppo.run(parse(ppo.Config, argv, ppo.PRESETS))
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_shared_trunk_gives_forward_logprobs_and_the_value_heads_values(lm):
    from rlhfkit.rl.engine import forward_logprobs
    from rlhfkit.stages.ppo import logprobs_and_values

    torch.manual_seed(0)
    value = ScalarModel.sharing(lm)
    assert value.backbone is lm.model  # one trunk, two heads
    seq = torch.randint(3, 60, (3, 12))
    attn = torch.ones_like(seq)
    attn[0, :3] = 0  # left padding, as rollouts have
    P = 5
    logp, logits, v = logprobs_and_values(lm, value, seq, attn, P, 0.7)
    want_logp, want_logits = forward_logprobs(lm, seq, attn, P, 0.7)
    torch.testing.assert_close(logp, want_logp, rtol=0, atol=1e-5)
    torch.testing.assert_close(logits, want_logits, rtol=0, atol=1e-5)
    torch.testing.assert_close(v, value.values(seq, attn)[:, P - 1:-1], rtol=0, atol=1e-6)


def test_ppo_with_a_shared_value_backbone(lm_dir, tiny_data, tmp_path, monkeypatch):
    from rlhfkit.stages import ppo

    monkeypatch.setattr("rlhfkit.rl.loop.make_reward", lambda spec: _length_reward)

    def no_value_model(*a, **k):
        raise AssertionError("a shared backbone loads no separate value model")

    monkeypatch.setattr(ppo, "load_value_model", no_value_model)
    rows = _ppo(ppo, lm_dir, tiny_data["prompts"], tmp_path / "ppo", "--ppo.share_value_backbone")
    assert len(rows) == 2
    assert abs(rows[0]["kl"]) < 1e-6  # the policy has not moved when the first rollout is taken
    assert all(math.isfinite(r["value_loss"]) and math.isfinite(r["policy_loss"]) for r in rows)
    assert (tmp_path / "ppo" / "model" / "config.json").exists()


class _FakeModel:
    """Stands in for a module on a device this machine lacks: records where it is sent."""

    def __init__(self, where: str):
        self.where, self.moves = torch.device(where), []

    def parameters(self):
        yield SimpleNamespace(device=self.where)

    def to(self, device):
        self.moves.append(str(device))
        self.where = torch.device(device)
        return self


def test_on_device_visits_the_gpu_and_returns_even_on_error():
    ref, reward, already = _FakeModel("cpu"), _FakeModel("cpu"), _FakeModel("cuda")
    with on_device([ref, reward, already], "cuda"):
        assert ref.where.type == reward.where.type == "cuda"
    assert ref.moves == reward.moves == ["cuda", "cpu"] and already.moves == []
    with pytest.raises(RuntimeError), on_device([ref], "cuda"):
        raise RuntimeError("scoring failed")
    assert ref.where.type == "cpu"


def test_on_device_is_a_noop_on_cpu():
    model = torch.nn.Linear(4, 2)
    weight = model.weight
    with on_device([model], "cpu"):
        assert model.weight is weight
    assert model.weight is weight and model.weight.device.type == "cpu"


def test_ppo_offload_on_cpu_leaves_every_model_where_it_was(lm_dir, tiny_data, tmp_path, monkeypatch):
    from rlhfkit.stages import ppo

    monkeypatch.setattr("rlhfkit.rl.loop.make_reward", lambda spec: _length_reward)
    visits = []
    real = ppo.on_device

    def spy(models, device):
        visits.append(([type(m).__name__ for m in models], str(device)))
        return real(models, device)

    monkeypatch.setattr(ppo, "on_device", spy)
    rows = _ppo(ppo, lm_dir, tiny_data["prompts"], tmp_path / "off", "--ppo.offload")
    # The reference (the reward here is a plain function: no model) visits the compute device, the CPU.
    assert visits == [(["LlamaForCausalLM"], "cpu")] * 2
    assert abs(rows[0]["kl"]) < 1e-6 and len(rows) == 2


def test_resume_with_lora_and_a_shared_value_head(lm_dir, tiny_data, tmp_path, monkeypatch):
    """The memory options checkpoint what they hold: LoRA adapters only (the base comes from --model) and
    the value head only (its trunk is the policy's). A run stopped after its step-2 checkpoint and resumed
    ends with the uninterrupted run's adapters. (Kills of default PPO: tests/reliability.)"""
    from safetensors.torch import load_file

    from rlhfkit.stages import ppo

    monkeypatch.setattr("rlhfkit.rl.loop.make_reward", lambda spec: _length_reward)
    opts = ("--ppo.share_value_backbone", "--lora.r=4", "--ppo.save_every=2")
    ref = _ppo(ppo, lm_dir, tiny_data["prompts"], tmp_path / "ref", *opts, "--ppo.steps=4")
    _ppo(ppo, lm_dir, tiny_data["prompts"], tmp_path / "run", *opts, "--ppo.steps=2")
    (tmp_path / "run" / "metrics.jsonl").open("a").write(json.dumps({"step": 3, "lost": True}) + "\n")
    got = _ppo(ppo, lm_dir, tiny_data["prompts"], tmp_path / "run", *opts, "--ppo.steps=4", "--resume")
    assert [r["step"] for r in got] == [1, 2, 3, 4]  # the killed attempt's step-3 row was dropped
    assert [r["policy_loss"] for r in got] == [r["policy_loss"] for r in ref]
    a, b = (load_file(str(tmp_path / d / "ckpt" / "model" / "adapter_model.safetensors")) for d in ("ref", "run"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert not any("base_layer" in k for k in a)  # adapters only
