"""The benchmark suite cannot rot: every case in benchmarks/run.py runs end to end at smoke sizes and writes
real rows (a figure on each side, the ratio in the documented direction, the loss check passed), and the
pieces every case relies on (ratio direction, the loss-agreement check, the step clock, merging a partial
run into latest.json) behave as documented. The speed figures themselves are not tested.

Run: .venv/bin/python -m pytest tests/test_benchmarks.py -q      (~2 minutes on 2 cores, one torch thread)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # benchmarks/ is a top-level folder, not part of the installed package
    sys.path.insert(0, str(ROOT))

from benchmarks import common as C  # noqa: E402
from benchmarks import run as R  # noqa: E402

SCHEMA = {"case", "rlhfkit", "peer", "unit", "ratio", "goal", "losses_match", "peak_rss_mb", "notes"}
NO_PEER = {"pipeline"}  # seconds per stage of `rlhfkit run`; nothing to compare with
CHECKS_LOSSES = {"engine", "sft", "reward", "dpo", "grpo", "mfu"}  # rows say whether both sides agree
LOWER_IS_FASTER = {"s", "MB peak RSS"}  # units where ratio = peer / rlhfkit


@pytest.mark.parametrize("name", list(R.CASES))
def test_smoke_case_writes_real_rows(name, tmp_path):
    assert R.main(["--smoke", "--cases", name, "--out", str(tmp_path)]) == 0
    rows = json.loads((tmp_path / "latest.json").read_text())
    assert rows
    for r in rows:
        assert SCHEMA <= set(r), SCHEMA - set(r)
        assert not str(r["notes"]).startswith("FAILED"), r["notes"]
        assert r["mode"] == "smoke" and r["suite_case"] == name and r["rlhfkit"] > 0
        if name in NO_PEER:
            assert r["peer"] is None and r["ratio"] is None
            continue
        assert r["peer"] > 0
        mine, theirs = (r["peer"], r["rlhfkit"]) if r["unit"] in LOWER_IS_FASTER else (r["rlhfkit"], r["peer"])
        assert r["ratio"] == pytest.approx(mine / theirs, rel=1e-2)
        if isinstance(r["peak_rss_mb"], dict):
            assert set(r["peak_rss_mb"]) == {"rlhfkit", "peer"} and min(r["peak_rss_mb"].values()) > 0
    checked = [r["losses_match"] for r in rows if r["losses_match"] is not None]
    assert False not in checked
    if name in CHECKS_LOSSES:  # a check that quietly stopped running would leave only None
        assert True in checked
    CASE_CHECKS.get(name, lambda rows, out: None)(rows, tmp_path)


def _engine(rows, out):
    assert [r["case"] for r in rows] == ["engine-ci@2", "engine-ci@2-reference-decoder"]
    assert all(r["unit"] == "tokens/s" for r in rows)
    # The fast decoder drew the reference decoder's tokens from the same seed.
    assert rows[0]["losses_match"] is True and "identical tokens" in rows[0]["notes"]
    table = (out / "latest.md").read_text()
    assert "| case | mode | rlhfkit | peer |" in table and "engine-ci@2" in table


def _memory(rows, out):
    options = ["default", "share_value_backbone", "lora_ref", "both"]
    assert [r["case"] for r in rows] == [f"memory-ci-{o}" for o in options]
    for r in rows:
        assert r["unit"] == "MB peak RSS"
        assert r["rlhfkit"] == r["peak_rss_mb"] > r["floor_mb"] > 0  # each option's own process
        assert r["peer"] == rows[0]["rlhfkit"]  # the default's peak; ratio > 1: the option saves memory


def _pipeline(rows, out):
    stages = ["world", "pretrain", "sft", "rankings", "reward", "policy", "eval", "report"]
    assert [r["case"] for r in rows] == ["pipeline-ci"]
    assert list(rows[0]["stages"]) == [*stages, "total"] and rows[0]["rlhfkit"] == rows[0]["stages"]["total"]


CASE_CHECKS = {"engine": _engine, "memory": _memory, "pipeline": _pipeline}


def test_failed_case_becomes_a_row(tmp_path):
    rows = R.spawn("no_such_case", "smoke", tmp_path, 1, timeout=120)  # the case subprocess raises
    assert rows[0]["case"] == "no_such_case" and rows[0]["notes"].startswith("FAILED")
    assert "KeyError: 'no_such_case'" in rows[0]["notes"] and rows[0]["ratio"] is None


def test_ratio_means_rlhfkit_faster():
    assert C.row("x", 30.0, 10.0, "tokens/s", "", True, None, "")["ratio"] == 3.0
    # For a time unit, fewer seconds is faster.
    assert C.row("x", 10.0, 30.0, "s", "", None, None, "", higher_is_faster=False)["ratio"] == 3.0
    assert C.row("x", 10.0, None, "s", "", None, None, "")["ratio"] is None


def test_losses_agree_checks_the_final_loss():
    ok, note = C.losses_agree([2.0, 1.5, 1.2], [2.0, 1.5, 1.2001])
    assert ok and "largest per-step gap 1.00e-04" in note
    assert not C.losses_agree([2.0, 1.5, 1.0], [2.0, 1.5, 1.2])[0]  # a fast wrong trainer does not count
    assert not C.losses_agree([2.0, 1.5], [2.0, 1.5, 1.2])[0]


def test_clock_times_steps_after_warmup():
    clock = C.Clock()
    clock.ends = [10.0, 11.0, 13.0, 14.0]  # step ends: the first step (setup) took long
    # Steps 2..4 after a warmup of 1: units 20+30+40 in 14 - 10 seconds.
    assert clock.rate([100, 20, 30, 40], warmup=1) == pytest.approx(90 / 4)
    with pytest.raises(ValueError):
        clock.rate([1, 2], warmup=1)


def test_partial_run_keeps_other_cases(tmp_path):
    old = [{"case": "sft", "suite_case": "sft", "ratio": 1.1}, {"case": "engine-x", "suite_case": "engine"}]
    (tmp_path / "latest.json").write_text(json.dumps(old))
    new = [{"case": "engine-y", "suite_case": "engine"}]
    merged = R.merge(new, ["engine"], tmp_path)
    assert [r["case"] for r in merged] == ["engine-y", "sft"]  # engine replaced, sft kept, suite order
