"""The whole recipe: wall time per stage of `rlhfkit run --preset P` (from RUN/timings.json).

    python -m benchmarks.run --cases pipeline

Quick mode runs the `ci` preset (about half a minute); full mode also the default `tiny` preset, whose
goal is ≤ 8 minutes end to end. No peer: the row reports seconds, and the notes give each stage.
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
# The CLI entry point as a module call, so the benchmark needs no installed console script.
ENTRY = "import sys; from rlhfkit.cli import main; sys.exit(main(sys.argv[1:]))"


def presets(ctx: C.Ctx) -> list[str]:
    return ctx.pick(smoke=[], quick=["ci"], full=["ci", "tiny"])


def run_preset(preset: str, out: Path, threads: int) -> dict:
    env_threads = {"OMP_NUM_THREADS": str(threads)} if threads else {}
    t0 = time.time()
    proc = subprocess.run([sys.executable, "-c", ENTRY, "run", "--preset", preset, "--out", str(out)],
                          capture_output=True, text=True, env={**os.environ, **env_threads})
    wall = time.time() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"rlhfkit run --preset {preset} failed:\n{(proc.stderr or proc.stdout)[-2000:]}")
    return {"wall": wall, "timings": json.loads((out / "timings.json").read_text())}


def run(ctx: C.Ctx) -> list[dict]:
    rows = []
    for preset in presets(ctx):
        with tempfile.TemporaryDirectory() as tmp:
            got = run_preset(preset, Path(tmp) / "run", ctx.threads)
        t = got["timings"]
        stages = ", ".join(f"{k} {v:.1f}s" for k, v in t.items() if k != "total")
        rows.append(C.row(f"pipeline-{preset}", t.get("total", got["wall"]), None, "s", GOALS.get(preset, ""), None,
                          None, f"rlhfkit run --preset {preset} (algo ppo): {stages}; process wall {got['wall']:.1f}s",
                          stages=t))
    if not rows:
        rows.append(C.row("pipeline", None, None, "s", "", None, None, "not run in smoke mode"))
    return rows
