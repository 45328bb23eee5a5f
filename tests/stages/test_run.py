"""`rlhfkit run --preset ci` end to end: every stage folder, metrics file and the report exist, and the
report's tables hold numbers."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest


def rlhfkit(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rlhfkit.cli", *args], capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module")
def ci_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("ci") / "run"
    return out, rlhfkit("run", "--preset", "ci", "--out", str(out))


@pytest.mark.slow
def test_run_ci_end_to_end(ci_run):
    out, proc = ci_run
    assert proc.returncode == 0, proc.stderr[-3000:]
    for stage in ("world", "pretrain", "sft", "rankings", "reward", "ppo"):
        assert (out / stage).is_dir(), stage
    for stage in ("pretrain", "sft", "reward", "ppo"):
        assert (out / stage / "metrics.jsonl").stat().st_size > 0, stage
        assert (out / stage / "config.yaml").exists(), stage
    assert (out / "ppo" / "model" / "config.json").exists()
    ev = json.loads((out / "eval.json").read_text())
    for name in ("base", "base_few_shot", "sft", "policy"):
        assert isinstance(ev[name]["gold_mean"], float)
    assert isinstance(ev["policy"]["win_rate"], float) and isinstance(ev["policy"]["kl"], float)
    html = (out / "report.html").read_text()
    # the eval table holds numbers for every model row
    assert len(re.findall(r"<td class=\"num\">-?\d+(\.\d+)?</td>", html)) > 20
    assert "report.html" in proc.stdout
    audit = json.loads((out / "world" / "audit.json").read_text())  # the world audit, redone every run
    assert audit["size"] == "ci" and "World audit: degenerate policies vs the gold judge" in html
    # a rerun reuses every finished stage (no retraining)
    again = rlhfkit("run", "--preset", "ci", "--out", str(out))
    assert again.returncode == 0, again.stderr[-3000:]
    for stage in ("pretrain", "sft", "rankings", "reward", "ppo"):
        assert f"{stage}: reusing" in again.stdout, stage


@pytest.mark.slow
def test_experiments_run_on_a_finished_run(ci_run):
    """Each experiment drives the real stages on the ci run and writes numbers, not placeholders."""
    out, proc = ci_run
    assert proc.returncode == 0, proc.stderr[-3000:]
    bad = rlhfkit("experiment", "bad-labelers", "--run", str(out), "--fractions", "0.4", "--algo", "best-of-n")
    assert bad.returncode == 0, bad.stderr[-3000:]
    rows = json.loads((out / "experiments" / "bad-labelers.json").read_text())["details"]
    assert [(r["adversarial"], r["quality_weights"]) for r in rows] == [(0.4, False), (0.4, True)]
    for r in rows:
        assert 0.0 <= r["harmful_compliance"] <= 1.0 and isinstance(r["gold_mean"], float)
        assert isinstance(r["reward_model"]["gold_accuracy"], float)
    over = rlhfkit("experiment", "overoptimization", "--run", str(out), "--ns", "1,2,4", "--kl-coefs", "0.1")
    assert over.returncode == 0, over.stderr[-3000:]
    result = json.loads((out / "experiments" / "overoptimization.json").read_text())
    assert [r["n"] for r in result["best_of_n"]] == [1, 2, 4]
    assert result["ppo"]["0.1"]["curve"][-1]["kl"] is not None
    assert rlhfkit("report", str(out)).returncode == 0
    html = (out / "report.html").read_text()
    assert "<h3>bad-labelers</h3>" in html and "<h3>overoptimization</h3>" in html
    assert "gold and proxy reward against sqrt(KL)" in html  # the plot was drawn
