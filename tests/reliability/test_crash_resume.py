"""Crash anywhere, lose nothing: SIGKILL `rlhfkit pretrain`, `sft` and `dpo` at many points (random steps,
inside a checkpoint write, between its renames, during the final model write), resume each time with
`--resume`, and require the uninterrupted run's step count, data position and final weights.

    .venv/bin/python -m pytest tests/reliability/test_crash_resume.py -q   (~2.5 min CPU; 22 rlhfkit processes)

Kills come two ways: from outside at a random moment (after a random logged step, or while `ckpt.tmp`
exists, i.e. mid-write), and from inside at exact points of `checkpoint.atomic_dir` (tests/reliability/
_inject.py), whose windows are too short to hit by polling. After every kill the test works out which
checkpoint a correct resume must use (`checkpoint.recover`: the complete `ckpt`, else a complete
`ckpt.old`, never a `.tmp`) and checks the next run's log says it resumed from exactly that step.
Kill points are drawn from RLHFKIT_KILL_SEED (random when unset; the seed is in every failure message).

Tolerance: resumed runs redo the same float32 arithmetic in the same order on one thread, so weights are
compared with atol=1e-6, rtol=1e-5 (observed: bit-identical). The reward stage's resume is in
tests/stages/test_reward.py, PPO's and GRPO's in test_rl_crash_resume.py, and `rlhfkit run` killed anywhere
in test_run_kill.py.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch

from rlhfkit import checkpoint

from .conftest import kill, ranking_records, run_to_end, spawn, wait_until, write_jsonl

SEED = int(os.environ.get("RLHFKIT_KILL_SEED", random.SystemRandom().randrange(10**6)))
TOL = dict(atol=1e-6, rtol=1e-5)


@dataclass
class Kill:
    """Where to kill: ("step", s) after step s is logged; ("tmp",) while OUT/ckpt.tmp exists; ("start", t)
    t seconds after config.yaml appears; ("inject", point, n, target) inside the n-th save of TARGET."""

    how: tuple
    seen: dict = field(default_factory=dict)


class Metrics:
    """Steps logged by the run started after this snapshot. Earlier runs' rows stay in metrics.jsonl, and
    a resume rewrites the file (dropping rows past its checkpoint), so new rows are told apart by content
    (each row carries the time since its own run started) rather than by file offset."""

    def __init__(self, path: Path):
        self.path = path
        self.before = set(self._lines())

    def _lines(self) -> list[bytes]:
        try:
            return self.path.read_bytes().split(b"\n")[:-1]  # complete lines only
        except FileNotFoundError:
            return []

    def last(self) -> int:
        steps = [json.loads(line)["step"] for line in self._lines() if line not in self.before]
        return max(steps, default=0)


def resumable_step(out: Path) -> int:
    """The step a correct `--resume` continues from: that of the complete checkpoint recover() picks."""
    path = checkpoint.recover(out / "ckpt")
    if path is None:
        return 0
    assert checkpoint.is_complete(path) and (path / "model" / "model.safetensors").exists()
    return int(torch.load(path / "trainer_state.pt", weights_only=False)["step"])


def _stat(path: Path) -> tuple | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return st.st_ino, st.st_mtime_ns


def kill_at(k: Kill, args: list[str], out: Path, log: Path) -> None:
    metrics = Metrics(out / "metrics.jsonl")
    if k.how[0] == "inject":
        proc = spawn(args, log, inject=k.how[1:])
        rc = proc.wait(timeout=300)
        assert rc == -signal.SIGKILL, f"injected kill {k.how} never fired (rc {rc}):\n{log.read_text()[-3000:]}"
        k.seen["step"] = metrics.last()
        return
    stale = _stat(out / "ckpt.tmp")
    proc = spawn(args, log)
    try:
        if k.how[0] == "step":
            wait_until(lambda: metrics.last() >= k.how[1], proc, log)
        elif k.how[0] == "tmp":  # a fresh ckpt.tmp: an injected kill may have left a stale one behind
            wait_until(lambda: _stat(out / "ckpt.tmp") not in (None, stale) and metrics.last() > 0, proc, log,
                       poll=0.001)
            k.seen["tmp_complete"] = (out / "ckpt.tmp" / checkpoint.MARKER).exists()
        elif k.how[0] == "start":
            wait_until(lambda: (out / "config.yaml").exists(), proc, log)
            time.sleep(k.how[1])
    finally:
        kill(proc)
    k.seen["step"] = metrics.last()
    assert proc.returncode == -signal.SIGKILL, f"{k.how}: the run ended by itself:\n{log.read_text()[-3000:]}"


def crash_chain(args: list[str], out: Path, tmp: Path, kills: list[Kill]) -> list[str]:
    """Run `args`, killing it at each of `kills` in turn and resuming; the last run goes to the end.
    Returns a log line per kill. Checks that every resume starts from the step recover() promises."""
    report, expected = [], None
    for i, k in enumerate(kills + [None]):
        log = tmp / f"seg{i}.log"
        argv = args + (["--resume"] if i else [])
        if k is None:
            done = run_to_end(argv, log)
            assert done.returncode == 0, f"final resume failed (seed {SEED}):\n{done.stdout[-3000:]}"
        else:
            kill_at(k, argv, out, log)
        text = log.read_text()
        got = re.search(r"resumed from (\S+) at step (\d+)", text)
        if expected:  # the previous kill left a complete checkpoint: this run must start from exactly it
            assert got and int(got.group(2)) == expected, (
                f"seed {SEED}: after kill {kills[i - 1].how} expected a resume at step {expected}, log: "
                f"{got and got.group(0)}\n{text[-2000:]}")
            assert not got.group(1).endswith(".tmp")
        elif i:
            assert got is None, f"seed {SEED}: resumed from {got.group(0)} though no complete checkpoint existed"
        if k is not None:
            expected = resumable_step(out)
            half = (out / "ckpt.tmp").exists() and not checkpoint.is_complete(out / "ckpt.tmp")
            report.append(f"kill {i + 1}: {k.how} at logged step {k.seen['step']}; resumable step {expected}"
                          f"{'; half-written ckpt.tmp left (ignored)' if half else ''}")
    return report


def weights(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(folder / "model.safetensors"))


def assert_same_run(ref: Path, got: Path, steps: int, save_every: int = 5) -> float:
    """Same step count, same final data position, same final weights, one metrics row per step from the
    first checkpoint on; returns the max abs weight diff."""
    for out in (ref, got):
        assert json.loads((out / "summary.json").read_text())["steps"] == steps
    state = [torch.load(o / "ckpt" / "trainer_state.pt", weights_only=False) for o in (ref, got)]
    assert state[0]["step"] == state[1]["step"] == (steps // save_every) * save_every
    assert state[0]["data"] == state[1]["data"], "the resumed run saw a different number of batches"
    a, b = weights(ref / "model"), weights(got / "model")
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(b[key], a[key], **TOL, msg=lambda m, key=key: f"seed {SEED}: {key}: {m}")
    logged = Counter(json.loads(line)["step"] for line in (got / "metrics.jsonl").read_text().splitlines())
    assert set(range(1, steps + 1)) <= set(logged)
    # Rows a killed run logged past its checkpoint (or before its first one) are dropped on resume.
    assert all(logged[s] == 1 for s in range(1, steps + 1)), logged
    return max(float((a[k] - b[k]).abs().max()) for k in a)


def _record(record_property, name: str, report: list[str], diff: float) -> None:
    record_property(f"{name}_kill_points", len(report))
    record_property(f"{name}_max_abs_weight_diff", diff)
    print(f"\n{name} (seed {SEED}): {len(report)} kills survived, max |dw| = {diff:g}\n  " + "\n  ".join(report))


@pytest.mark.slow
def test_pretrain_survives_kills_anywhere(data_dir, tmp_path, record_property):
    rng = random.Random(SEED)
    base = ["pretrain", "--preset", "ci", "--arch.context=64", "--data.path", str(data_dir / "text.jsonl"),
            "--optim.max_steps=40", "--optim.save_every=5", "--optim.eval_every=20", "--optim.batch_size=8"]
    ref = tmp_path / "ref"
    assert run_to_end(base + ["--out", str(ref)], tmp_path / "ref.log").returncode == 0
    out = tmp_path / "run"
    kills = [Kill(("step", rng.randint(1, 4))),                         # before any checkpoint
             Kill(("inject", "mid-write", 2, "ckpt")),                  # trainer_state.pt never written
             Kill(("inject", "between-renames", 1, "ckpt")),            # only ckpt.old is complete
             Kill(("tmp",)),                                            # from outside, during a write
             Kill(("inject", "before-swap", rng.randint(1, 2), "ckpt")),
             Kill(("inject", "before-cleanup", 1, "ckpt")),
             Kill(("step", rng.randint(31, 39))),                       # between two checkpoints
             Kill(("inject", "mid-write", 1, "model"))]                 # the final model folder half-written
    report = crash_chain(base + ["--out", str(out)], out, tmp_path, kills)
    diff = assert_same_run(ref, out, 40)
    assert not (out / "model.tmp").exists() and not (out / "ckpt.old").exists()
    _record(record_property, "pretrain", report, diff)


@pytest.mark.slow
def test_sft_survives_kills_anywhere(data_dir, lm_dir, tmp_path, record_property):
    """Early stopping keeps the best held-out weights, not the last: with a constant high learning rate the
    best evaluation comes before the end, and a resume must restore the best-so-far weights and patience
    count from the checkpoint rather than restart the bookkeeping from the resumed weights."""
    rng = random.Random(SEED + 1)
    base = ["sft", "--preset", "ci", "--model", str(lm_dir), "--data.path", str(data_dir / "sft.jsonl"),
            "--optim.max_steps=40", "--optim.save_every=5", "--optim.eval_every=3", "--optim.batch_size=8",
            "--optim.lr=0.5", "--optim.min_lr_ratio=1", "--patience=4"]
    ref = tmp_path / "ref"
    assert run_to_end(base + ["--out", str(ref)], tmp_path / "ref.log").returncode == 0
    summary = json.loads((ref / "summary.json").read_text())
    steps = summary["steps"]
    # The case under test; if a library change moves the trajectory, pick another lr that keeps it.
    assert summary["best_step"] < (steps // 5) * 5, f"best step {summary['best_step']} is not before the last save"
    out = tmp_path / "run"
    kills = [Kill(("step", rng.randint(4, 14))), Kill(("tmp",)), Kill(("step", rng.randint(21, steps - 1))),
             Kill(("inject", "mid-write", 1, "model"))]
    report = crash_chain(base + ["--out", str(out)], out, tmp_path, kills)
    _record(record_property, "sft", report, assert_same_run(ref, out, steps))
    got = json.loads((out / "summary.json").read_text())
    assert (got["best_step"], got["best_val_loss"]) == (summary["best_step"], summary["best_val_loss"])


@pytest.mark.slow
def test_dpo_survives_kills_anywhere(data_dir, lm_dir, tmp_path, record_property):
    rng = random.Random(SEED + 2)
    base = ["dpo", "--preset", "ci", "--model", str(lm_dir), "--data.path", str(data_dir / "rankings.jsonl"),
            "--data.val_fraction=0.25", "--optim.max_steps=30", "--optim.save_every=5", "--optim.eval_every=10",
            "--optim.batch_size=4"]
    ref = tmp_path / "ref"
    assert run_to_end(base + ["--out", str(ref)], tmp_path / "ref.log").returncode == 0
    out = tmp_path / "run"
    kills = [Kill(("start", rng.uniform(0.0, 0.5))),  # while loading / computing reference log-probs
             Kill(("step", rng.randint(7, 19))), Kill(("tmp",)), Kill(("step", rng.randint(22, 29)))]
    report = crash_chain(base + ["--out", str(out)], out, tmp_path, kills)
    _record(record_property, "dpo", report, assert_same_run(ref, out, 30))


def test_resume_without_a_checkpoint_starts_metrics_afresh(lm, tmp_path):
    """A run killed before its first checkpoint left rows 1..3; `--resume` finds nothing and starts over,
    so those rows are redone and must not stay beside the new ones (one row per step)."""
    from rlhfkit.training import OptimConfig, Trainer

    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps({"step": s, "loss": 1.0}) + "\n" for s in (1, 2, 3)))
    trainer = Trainer(lm, OptimConfig(), tmp_path)
    assert trainer.resume() is False
    trainer.logger.log(1, loss=0.5)
    steps = [json.loads(line)["step"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1]


@pytest.mark.slow
def test_dpo_resume_after_a_kill_while_writing_the_reference_cache(lm_dir, tmp_path):
    from rlhfkit.config import parse
    from rlhfkit.stages import dpo

    data = write_jsonl(tmp_path / "rankings.jsonl", ranking_records(8))
    argv = ["--preset", "ci", "--model", str(lm_dir), "--data.path", str(data),
            "--data.val_fraction=0.25", "--optim.save_every=2", "--optim.eval_every=100", "--optim.batch_size=4",
            "--out", str(tmp_path / "out")]
    dpo.run(parse(dpo.Config, argv + ["--optim.max_steps=2"], dpo.PRESETS))
    cache = tmp_path / "out" / "ref_logps.pt"
    cache.write_bytes(cache.read_bytes()[: cache.stat().st_size // 2])  # what a kill inside torch.save leaves
    dpo.run(parse(dpo.Config, argv + ["--optim.max_steps=3", "--resume"], dpo.PRESETS))
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["steps"] == 3
