"""Run the benchmark suite and write benchmarks/results/latest.json and latest.md.

    python -m benchmarks.run                  # full sizes (tens of minutes on 2 cores)
    python -m benchmarks.run --quick          # small sizes, a few minutes
    python -m benchmarks.run --cases sft,engine --quick

Every case runs in its own subprocess (a fresh interpreter: no warm caches or leaked memory from the
case before it), which prints its rows as JSON; this process collects them. Running a subset of cases
replaces those cases' rows in latest.json and keeps the others.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CASES = {  # name -> module, in run order (cheap first)
    "engine": "benchmarks.engine",
    "sft": "benchmarks.sft",
    "reward": "benchmarks.reward",
    "dpo": "benchmarks.dpo",
    "grpo": "benchmarks.grpo",
    "mfu": "benchmarks.mfu",
    "memory": "benchmarks.memory",
    "pipeline": "benchmarks.pipeline",
}
RESULTS = Path(__file__).parent / "results"


def run_case(name: str, mode: str, workdir: Path, threads: int) -> list[dict]:
    """Run one case in this process (the subprocess side) and return its rows."""
    import importlib

    import torch

    from . import common as C

    if threads:
        torch.set_num_threads(threads)
    ctx = C.Ctx(mode=mode, workdir=workdir, threads=threads)
    rows = importlib.import_module(CASES[name]).run(ctx)
    for r in rows:
        r.setdefault("mode", mode)
        if r.get("peak_rss_mb") is None:
            r["peak_rss_mb"] = C.peak_rss_mb()
    return rows


def spawn(name: str, mode: str, workdir: Path, threads: int, timeout: int) -> list[dict]:
    """Run a case in a subprocess; a crash or timeout becomes a row that says so."""
    out = workdir / f"{name}.rows.json"
    cmd = [sys.executable, "-m", "benchmarks.run", "--child", name, "--mode", mode, "--workdir", str(workdir),
           "--threads", str(threads), "--json", str(out)]
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "TRANSFORMERS_VERBOSITY": "error"}
    t0 = time.time()
    try:
        proc = subprocess.run(cmd, cwd=Path(__file__).parent.parent, env=env, capture_output=True, text=True,
                              timeout=timeout)
        err = None if proc.returncode == 0 else (proc.stderr or proc.stdout)[-1500:]
    except subprocess.TimeoutExpired:
        err = f"timed out after {timeout}s"
    if err is None and out.exists():
        rows = json.loads(out.read_text())
    else:
        rows = [{"case": name, "rlhfkit": None, "peer": None, "unit": "", "ratio": None, "goal": "",
                 "losses_match": None, "peak_rss_mb": None, "notes": f"FAILED: {err}", "mode": mode}]
    for r in rows:
        r["case_wall_s"] = round(time.time() - t0, 1)
    return rows


def machine() -> dict:
    import torch
    import transformers

    try:
        import trl

        trl_version = trl.__version__
    except ImportError:
        trl_version = None
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "torch": torch.__version__, "transformers": transformers.__version__,
            "trl": trl_version, "python": platform.python_version()}


def merge(rows: list[dict], cases: list[str], results: Path) -> list[dict]:
    """This run's rows plus the previous rows of cases not run this time, in suite order."""
    path = results / "latest.json"
    old = json.loads(path.read_text()) if path.exists() else []
    kept = [r for r in old if r.get("suite_case") not in cases]
    order = {name: i for i, name in enumerate(CASES)}
    return sorted(kept + rows, key=lambda r: order.get(r.get("suite_case"), len(order)))


def markdown(rows: list[dict], info: dict) -> str:
    def fmt(x):
        if x is None:
            return "–"
        if isinstance(x, bool):
            return "yes" if x else "**NO**"
        if isinstance(x, dict):
            return " / ".join(fmt(v) for v in x.values())
        if isinstance(x, float):
            return f"{x:,.3g}" if abs(x) < 1000 else f"{x:,.0f}"
        return str(x)

    lines = [
        "# rlhfkit benchmarks", "",
        f"{info['date']} (this run: mode `{info['mode']}`; rows of cases not rerun keep their own mode and date) · "
        f"{info['cpu']} ({info['cores']} cores, "
        f"{info['threads']} torch threads) · "
        f"torch {info['torch']} · transformers {info['transformers']} · TRL {info['trl']} · load average "
        f"{info['load_before']} before, {info['load_after']} after", "",
        "ratio > 1: rlhfkit faster. Peak RSS: rlhfkit / peer (MB), each side measured from its own start.", "",
        "| case | mode | rlhfkit | peer | unit | ratio | goal | losses match | peak RSS MB | notes |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        cells = [r["case"], r.get("mode", ""), fmt(r["rlhfkit"]), fmt(r["peer"]), r["unit"], fmt(r["ratio"]), r["goal"],
                 fmt(r["losses_match"]), fmt(r["peak_rss_mb"]), str(r["notes"]).replace("|", "/").replace("\n", " ")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="small sizes (a few minutes)")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes, for the test suite (numbers meaningless)")
    ap.add_argument("--cases", default="", help=f"comma-separated subset of: {', '.join(CASES)}")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    ap.add_argument("--sft-model", default="", help="a trained SFT model folder (e.g. runs/default/sft/model): the "
                                                   "engine case adds a GRPO-like rollout where responses end at EOS")
    ap.add_argument("--out", default=str(RESULTS), help="results folder")
    ap.add_argument("--timeout", type=int, default=3600, help="seconds per case")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--mode", help=argparse.SUPPRESS)
    ap.add_argument("--workdir", help=argparse.SUPPRESS)
    ap.add_argument("--json", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        rows = run_case(args.child, args.mode, Path(args.workdir), args.threads)
        Path(args.json).write_text(json.dumps(rows))
        return 0
    results = Path(args.out)
    if args.sft_model:  # read by the engine case in its subprocess
        os.environ["RLHFKIT_BENCH_SFT_MODEL"] = str(Path(args.sft_model).resolve())
    mode = "smoke" if args.smoke else "quick" if args.quick else "full"
    cases = [c.strip() for c in args.cases.split(",") if c.strip()] or list(CASES)
    unknown = [c for c in cases if c not in CASES]
    if unknown:
        ap.error(f"unknown case(s) {', '.join(unknown)}; choose from {', '.join(CASES)}")
    info = {"date": datetime.datetime.now().isoformat(timespec="seconds"), "mode": mode, **machine(),
            "threads": args.threads or "default", "load_before": _load()}
    rows = []
    with tempfile.TemporaryDirectory(prefix="rlhfkit-bench-") as wd:
        for name in cases:
            print(f"[benchmarks] {name} ({mode}) ...", flush=True)
            got = spawn(name, mode, Path(wd), args.threads, args.timeout)
            for r in got:
                r.update(suite_case=name, date=info["date"])
                print(f"  {r['case']}: rlhfkit {r['rlhfkit']} vs {r['peer']} {r['unit']} -> ratio {r['ratio']}; "
                      f"losses match {r['losses_match']}; {r['case_wall_s']}s", flush=True)
            rows += got
    info["load_after"] = _load()
    results.mkdir(parents=True, exist_ok=True)
    rows = merge(rows, cases, results)
    (results / "latest.json").write_text(json.dumps(rows, indent=1) + "\n")
    (results / "latest.md").write_text(markdown(rows, info))
    print(f"[benchmarks] wrote {results / 'latest.json'} and latest.md")
    return 0 if all(not str(r["notes"]).startswith("FAILED") for r in rows) else 1


def _load() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "?"


if __name__ == "__main__":
    sys.exit(main())
