"""Crash anywhere, lose nothing, for the RL stages: SIGKILL `rlhfkit ppo` and `grpo` at random steps,
inside a checkpoint write and during the final model write, resume each time with `--resume`, and require
the uninterrupted run's step count, prompt-stream position, final weights and one metrics row per step.

    .venv/bin/python -m pytest tests/reliability/test_rl_crash_resume.py -q   (~1 min CPU)

What a resume must restore beyond the policy (rl/loop.py `save_checkpoint`): the optimizers (PPO: policy
and value), the value model, the sampling generator (the next rollout's tokens), the adaptive KL β, and the
tracker: metrics history, the overoptimisation monitor's windows, and the best-by-gold policy, which
`--monitor.on_alarm=keep_best` makes the final model, so a lost best-so-far would change the weights.
Same tolerance and kill-point seed as test_crash_resume.py.
"""

from __future__ import annotations

import json
import random

import pytest
import torch

from .conftest import run_to_end
from .test_crash_resume import SEED, TOL, Kill, _record, assert_same_run, crash_chain, weights

REWARD = "tests._rewards:vowels"
COMMON = ["--preset", "ci", "--rollout.world_size=ci", "--rollout.max_new_tokens=12", "--monitor.on_alarm=keep_best",
          "--monitor.keep_best=true"]


def _survives(stage: str, args: list[str], steps: int, tmp_path, record_property, rng, start) -> dict:
    ref = tmp_path / "ref"
    assert run_to_end(args + ["--out", str(ref)], tmp_path / "ref.log").returncode == 0
    # Training really moved the weights (by 100x the tolerance the runs are compared at), so that "the same as
    # the uninterrupted run" is not met by doing nothing.
    init, end = weights(start), weights(ref / "ckpt" / "model")
    assert max(float((end[k] - init[k]).abs().max()) for k in init if k in end) > 100 * TOL["atol"]
    out = tmp_path / "run"
    kills = [Kill(("step", rng.randint(1, 2))),                  # before any checkpoint
             Kill(("step", rng.randint(4, 5))),
             Kill(("inject", "mid-write", 1, "ckpt")),           # trainer_state.pt never written
             Kill(("inject", "between-renames", 1, "ckpt")),     # only ckpt.old is complete
             Kill(("step", rng.randint(steps - 2, steps - 1))),  # between two checkpoints
             Kill(("inject", "mid-write", 1, "model"))]          # the final model folder half-written
    report = crash_chain(args + ["--out", str(out)], out, tmp_path, kills)
    _record(record_property, stage, report, assert_same_run(ref, out, steps, save_every=3))
    # With keep_best the final model is the best-by-gold step's; the last checkpoint holds the trajectory's end.
    a, b = weights(ref / "ckpt" / "model"), weights(out / "ckpt" / "model")
    for key in a:
        torch.testing.assert_close(b[key], a[key], **TOL, msg=lambda m, key=key: f"seed {SEED}: ckpt {key}: {m}")
    return {k: json.loads((d / "summary.json").read_text()) for k, d in (("ref", ref), ("run", out))}


@pytest.mark.slow
def test_ppo_survives_kills_anywhere(lm_dir, tmp_path, record_property):
    args = ["ppo", *COMMON, "--model", str(lm_dir), "--reward", REWARD, "--ppo.steps=10", "--ppo.save_every=3",
            "--rollout.batch_prompts=8", "--ppo.minibatch=4", "--ppo.kl_target=0.5", "--ppo.kl_horizon=100"]
    s = _survives("ppo", args, 10, tmp_path, record_property, random.Random(SEED + 3), lm_dir)
    for key in ("best_step", "best_gold", "alarms", "end"):  # the adaptive β and the tracker came back too
        assert s["run"][key] == s["ref"][key], key


@pytest.mark.slow
def test_grpo_survives_kills_anywhere(lm_dir, tmp_path, record_property):
    args = ["grpo", *COMMON, "--model", str(lm_dir), "--reward", REWARD, "--grpo.steps=10", "--grpo.save_every=3",
            "--rollout.batch_prompts=4", "--grpo.group_size=4", "--grpo.minibatch=8"]
    s = _survives("grpo", args, 10, tmp_path, record_property, random.Random(SEED + 4), lm_dir)
    for key in ("best_step", "best_gold", "alarms", "end"):
        assert s["run"][key] == s["ref"][key], key
