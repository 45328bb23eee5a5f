"""The whole recipe: wall time per stage of `rlhfkit run --preset P` (from RUN/timings.json).

    python -m benchmarks.run --cases pipeline

Quick mode runs the `ci` preset (about half a minute); full mode also the default `tiny` preset, whose
goal is ≤ 8 minutes end to end; smoke mode the `ci` preset with every training stage cut to a few steps
(SMOKE), so the test suite runs every stage's code. No peer: the row reports seconds, and the notes give
each stage.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from . import common as C

GOALS = {"tiny": "≤ 480 s end to end (the default run)"}
# Smoke mode's overrides: the whole recipe in ~15 s on one thread (pretraining alone is 17 s of the ci preset's 32).
SMOKE = ["--pretrain.optim.max_steps=10", "--sft.optim.max_steps=10", "--reward.optim.max_steps=10",
         "--policy.ppo.steps=1"]
# The CLI entry point as a module call, so the benchmark needs no installed console script.
ENTRY = "import sys; from rlhfkit.cli import main; sys.exit(main(sys.argv[1:]))"


def presets(ctx: C.Ctx) -> list[tuple[str, list[str]]]:
    """(preset, extra `rlhfkit run` flags) to time."""
    return ctx.pick(smoke=[("ci", SMOKE)], quick=[("ci", [])], full=[("ci", []), ("tiny", [])])


def run_preset(preset: str, flags: list[str], out: Path, threads: int) -> dict:
    env_threads = {"OMP_NUM_THREADS": str(threads)} if threads else {}
    t0 = time.time()
    proc = subprocess.run([sys.executable, "-c", ENTRY, "run", "--preset", preset, "--out", str(out), *flags],
                          capture_output=True, text=True, env={**os.environ, **env_threads})
    wall = time.time() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"rlhfkit run --preset {preset} failed:\n{(proc.stderr or proc.stdout)[-2000:]}")
    return {"wall": wall, "timings": json.loads((out / "timings.json").read_text())}


def run(ctx: C.Ctx) -> list[dict]:
    rows = []
    for preset, flags in presets(ctx):
        with tempfile.TemporaryDirectory() as tmp:
            got = run_preset(preset, flags, Path(tmp) / "run", ctx.threads)
        t = got["timings"]
        stages = ", ".join(f"{k} {v:.1f}s" for k, v in t.items() if k != "total")
        command = " ".join(["rlhfkit run --preset", preset, *flags])
        rows.append(C.row(f"pipeline-{preset}", t.get("total", got["wall"]), None, "s", GOALS.get(preset, ""), None,
                          None, f"{command} (algo ppo): {stages}; process wall {got['wall']:.1f}s", stages=t))
    return rows
