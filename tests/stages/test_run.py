"""`rlhfkit run --preset ci` end to end: every stage folder, metrics file and the report exist, and the
report's tables hold numbers."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.slow
def test_run_ci_end_to_end(tmp_path):
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "rlhfkit.cli", "run", "--preset", "ci", "--out", str(out)],
                          capture_output=True, text=True, timeout=900)
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
    # a rerun reuses every finished stage (no retraining)
    again = subprocess.run([sys.executable, "-m", "rlhfkit.cli", "run", "--preset", "ci", "--out", str(out)],
                           capture_output=True, text=True, timeout=900)
    assert again.returncode == 0, again.stderr[-3000:]
    for stage in ("pretrain", "sft", "rankings", "reward", "ppo"):
        assert f"{stage}: reusing" in again.stdout, stage
