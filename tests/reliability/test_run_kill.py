"""Crash anywhere, lose nothing, for `rlhfkit run` itself: SIGKILL the whole ci recipe at random moments
(inside whichever stage is running then), rerun the same command, and require what an uninterrupted run
gives — the same eval numbers, bit-identical policy weights, finished stages reused rather than redone,
and one metrics row per step in every stage (a killed stage continues from its last checkpoint, or starts
over when it had none, so the rows it logged after that point and any stale summary must not survive).

Kill moments are drawn from RLHFKIT_KILL_SEED (random when unset; the seed is in every failure message).
"""

from __future__ import annotations

import json
import os
import random
import re
import time
from collections import Counter
from pathlib import Path

import pytest
from safetensors.torch import load_file

from rlhfkit import checkpoint

from .conftest import kill, run_to_end, spawn, wait_until

SEED = int(os.environ.get("RLHFKIT_KILL_SEED", random.SystemRandom().randrange(10**6)))
STAGES = ("pretrain", "sft", "reward", "ppo")


def run_args(out: Path) -> list[str]:
    return ["run", "--preset", "ci", "--out", str(out)]


def policy_weights(run: Path) -> dict:
    return load_file(str(next((run / "ppo" / "model").glob("*.safetensors"))))


def eval_numbers(run: Path) -> dict:
    ev = json.loads((run / "eval.json").read_text())
    return {m: {k: ev[m].get(k) for k in ("gold_mean", "win_rate", "kl", "refusal_rate_harmful")}
            for m in ("base", "sft", "policy")}


@pytest.mark.slow
def test_run_survives_kills_and_matches_an_uninterrupted_run(tmp_path, record_property):
    rng = random.Random(SEED)
    ref = tmp_path / "ref"
    t0 = time.time()
    assert run_to_end(run_args(ref), tmp_path / "ref.log", timeout=600).returncode == 0
    duration = time.time() - t0

    out, kills, start = tmp_path / "run", [], 0.0
    for i, frac in enumerate(sorted(rng.uniform(0.15, 0.9) for _ in range(3))):
        proc = spawn(run_args(out), tmp_path / f"kill{i}.log")
        # Finished stages are reused, so this attempt picks up about where the last one was killed.
        deadline = time.time() + (frac - start) * duration
        while time.time() < deadline and proc.poll() is None:
            time.sleep(0.05)
        if proc.poll() is None:
            kill(proc)
            kills.append(round(frac, 2))
        start = frac
    ppo_resumes = not (out / "ppo" / "summary.json").exists()
    if ppo_resumes:  # one more kill once PPO has a checkpoint (ci: every 2 of its 4 steps): it must continue
        proc = spawn(run_args(out), tmp_path / "kill_ppo.log")
        wait_until(lambda: checkpoint.is_complete(out / "ppo" / "ckpt"), proc, tmp_path / "kill_ppo.log", timeout=600)
        kill(proc)
        kills.append("ppo checkpoint")
    final = run_to_end(run_args(out), tmp_path / "final.log", timeout=600)
    assert final.returncode == 0, f"seed {SEED}: {final.stdout[-2000:]}"
    if ppo_resumes:
        assert re.search(r"resumed from \S*ppo/ckpt at step 2", final.stdout), f"seed {SEED}: {final.stdout[-2000:]}"

    assert eval_numbers(out) == eval_numbers(ref), f"seed {SEED}"
    a, b = policy_weights(ref), policy_weights(out)
    assert a.keys() == b.keys()
    assert all((a[k] == b[k]).all() for k in a), f"seed {SEED}: policy weights differ"
    for stage in STAGES:
        steps = Counter(json.loads(line)["step"] for line in (out / stage / "metrics.jsonl").read_text().splitlines()
                        if '"step"' in line)
        ref_steps = Counter(json.loads(line)["step"] for line in (ref / stage / "metrics.jsonl").read_text().splitlines()
                            if '"step"' in line)
        assert steps == ref_steps, f"seed {SEED}: {stage} logged {steps} vs {ref_steps}"
    assert kills, f"seed {SEED}: no attempt was still running when its kill came"
    resumed = sum("resumed from" in p.read_text() for p in [*tmp_path.glob("kill*.log"), tmp_path / "final.log"])
    record_property("run_kill_points", len(kills))
    print(f"\nrlhfkit run (seed {SEED}): killed at {kills} of the run time; {resumed} attempts resumed a stage")
