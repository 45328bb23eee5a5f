"""`rlhfkit report`: a synthetic run folder gives a self-contained HTML page whose tables hold the
numbers from the files, model outputs are escaped, and missing or broken parts do not crash it.

Run: .venv/bin/python -m pytest tests/evaluate/test_report.py -q
"""

from __future__ import annotations

import json
import re

import pytest

from rlhfkit.evaluate.plots import curve_panels
from rlhfkit.evaluate.report import calibration_points, main, write_report

XSS = "<script>alert('pwned')</script>"


def _jsonl(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def _json(path, obj):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))


@pytest.fixture
def run(tmp_path):
    run = tmp_path / "demo"
    _json(run / "timings.json", {"pretrain": 120.5, "sft": 61.25, "ppo": 181.0})
    _jsonl(run / "pretrain" / "metrics.jsonl", [{"step": s, "time": s, "loss": 6 - s / 10} for s in range(20)]
           + [{"step": 19, "val_loss": 4.2}])
    _jsonl(run / "sft" / "metrics.jsonl", [{"step": s, "loss": 2 - s / 10, "val_loss": 2.1 - s / 20} for s in range(5)])
    _jsonl(run / "reward" / "metrics.jsonl", [{"step": s, "loss": 0.7 - s / 50, "accuracy": 0.5 + s / 40} for s in range(8)])
    _json(run / "reward" / "eval.json", {
        "accuracy": 0.8125, "accuracy_gold": 0.7731,
        "per_family": {"arithmetic": {"accuracy": 0.91, "n": 40}, "harmful": {"accuracy": 0.66, "n": 12}},
        "model": {"gold": {"by_family": {"arithmetic": {"accuracy": 0.8743, "n_pairs": 52}}}},
        "calibration": [{"confidence": 0.55, "accuracy": 0.52, "count": 30},
                        {"confidence": 0.75, "accuracy": 0.71, "count": 20}]})
    _jsonl(run / "ppo" / "metrics.jsonl", [{"step": s, "proxy_reward": s / 10, "gold_reward": 0.3 + s / 40,
                                            "kl": s / 5, "response_length": 12, "clipfrac": 0.1} for s in range(10)])
    _json(run / "ppo" / "summary.json", {"best_step": 7, "best_gold": 0.4625})
    _json(run / "eval.json", {
        "base": {"gold_mean": -0.9312, "finish_rate": 0.0, "per_family": {"arithmetic": {"gold_mean": -1.0, "accuracy": 0.0}}},
        "sft": {"gold_mean": 0.6604, "refusal_rate_harmful": 0.875, "kl": 0.0,
                "per_family": {"arithmetic": {"gold_mean": 0.5, "accuracy": 0.75}}},
        "policy": {"gold_mean": 0.7177, "win_rate": 0.5391, "kl": 0.7612, "diversity": {"distinct_2": 0.4321},
                   "per_family": {"arithmetic": {"gold_mean": 0.62, "accuracy": 0.8, "best_of_2": 0.9,
                                                 "copy_rate": 0.95, "refusal": 0.01}}}})
    _json(run / "samples.json", [{"prompt": "What is 3 plus 4?", "family": "arithmetic", "base": XSS,
                                  "sft": "3 plus 4 is 7.", "policy": {"response": "7 & 7 <b>", "score": 0.85}}])
    _json(run / "world" / "audit.json", {
        "seed": 3, "size": "ci", "n_prompts": 64, "fixed": {"harmful": XSS},
        "policies": [{"name": "copy", "mean": -0.6172, "by_family": {"harmful": -1.0, "benign": -0.2344}},
                     {"name": "reference", "mean": 0.9876, "by_family": {"harmful": 1.0, "benign": 0.9752}}],
        "goals": {"copy": {"target": "<= -0.5", "mean": -0.6172, "met": True}}})
    _json(run / "rankings" / "quality.json", {"annotators": {"ann-careful": {"agreement": 0.9123, "n": 50},
                                                             "ann-spammer": {"agreement": 0.4567, "n": 50}},
                                              "kappa": 0.3141})
    return run


def test_full_report_tables_hold_numbers(run):
    out = write_report(run)
    assert out == run / "report.html"
    page = out.read_text()
    for number in ("0.6604", "0.7177", "0.5391", "0.7612", "0.875", "0.4321",  # eval table
                   "0.8125", "0.7731", "0.91",  # reward model
                   "0.9123", "0.4567", "0.3141", "ann-spammer",  # annotator quality
                   "120.5", "362.8",  # timings and their total
                   "0.4625",  # ppo summary
                   "-0.6172", "0.9876", "-0.2344", "0.9752", "&lt;= -0.5"):  # world audit
        assert number in page, number
    assert "0.750 (75%)" not in page and "0.500 (75%)" in page  # per-family gold (accuracy)
    # per-family detail: accuracy / best-of-k / copy rate / refusal, and the RM's agreement with gold
    assert "80% / 90% / 95% / 1%" in page and "75% / – / – / –" in page and "87%" in page
    assert "World audit: degenerate policies vs the gold judge" in page and "seed 3, size ci" in page
    assert "RLHF" in page and "base few-shot" in page  # base_few_shot missing -> listed as not run
    assert re.search(r"not run: [^<]*base few-shot", page)
    # plots: timings, 4 stages of curves, calibration, gold bar chart — all inline, none linked
    assert page.count('src="data:image/png;base64,') >= 7
    assert not re.search(r'(src|href)="(https?:)?//', page)


def test_model_outputs_are_escaped(run):
    page = write_report(run).read_text()
    assert "<script>" not in page
    assert "&lt;script&gt;alert(&#x27;pwned&#x27;)&lt;/script&gt;" in page
    assert "7 &amp; 7 &lt;b&gt;" in page


def test_empty_run_folder_says_not_run(tmp_path):
    page = write_report(tmp_path).read_text()
    for what in ("timings.json", "eval.json", "samples.json", "reward/eval.json", "rankings/quality.json",
                 "world/world.json"):
        assert f"not run: no {what}" in page
    assert "not run: no stage folders" in page


def test_world_audit_computed_from_world_json(tmp_path):
    """A run folder without world/audit.json (older runs) gets the audit for its world's seed and size."""
    pytest.importorskip("rlhfkit.world.audit", reason="rlhfkit.world (gold judge) is not importable")
    _json(tmp_path / "world" / "world.json", {"seed": 0, "size": "ci"})
    page = write_report(tmp_path).read_text()
    assert "seed 0, size ci, 64 eval prompts" in page
    assert all(f"<td>{name}</td>" in page for name in ("copy", "empty", "refuse-harmful+fixed", "reference"))


def test_broken_parts_do_not_lose_the_report(run):
    (run / "eval.json").write_text("{not json")
    (run / "samples.json").write_text(json.dumps({"unexpected": 1}))
    (run / "ppo" / "metrics.jsonl").write_text('{"step": 1, "kl": 0.5}\n{"step": 2, "kl"')  # torn write
    (run / "reward" / "eval.json").write_text(json.dumps({"calibration": {"weird": [1, 2]}}))
    page = write_report(run).read_text()
    assert "could not read this section: JSONDecodeError" in page
    assert "samples.json is empty" in page
    assert "0.9123" in page and "120.5" in page  # the healthy sections are still there
    assert "1 rows; last: step=1, kl=0.5" in page


def test_cli(run, tmp_path, capsys):
    assert main([str(run)]) == 0
    assert (run / "report.html").is_file() and "report.html" in capsys.readouterr().out
    assert main([str(tmp_path / "nope")]) == 2
    assert "no such run folder" in capsys.readouterr().err
    assert main(["--help"]) == 0


def test_curve_panels_pair_train_with_val_and_proxy_with_gold():
    rows = [{"step": 0, "loss": 2.0, "proxy_reward": 0.1, "gold_reward": 0.2, "lr": 1e-3, "note": "x"},
            {"step": 5, "val_loss": 1.5, "loss": 1.0, "gold_reward": float("nan")}]
    panels = curve_panels(rows)
    assert panels["loss"] == {"loss": ([0.0, 5.0], [2.0, 1.0]), "val_loss": ([5.0], [1.5])}
    assert set(panels["reward: proxy vs gold"]) == {"proxy_reward", "gold_reward"}
    assert panels["reward: proxy vs gold"]["gold_reward"] == ([0.0], [0.2])  # NaN dropped
    assert "note" not in panels and "step" not in panels
    assert list(panels)[:2] == ["loss", "reward: proxy vs gold"]


@pytest.mark.parametrize("cal", [
    [{"confidence": 0.6, "accuracy": 0.5, "count": 3}, {"confidence": 0.8, "accuracy": 0.9, "count": 4}],
    {"bins": [{"mean_pred": 0.6, "acc": 0.5, "n": 3}, {"mean_pred": 0.8, "acc": 0.9, "n": 4}]},
    {"confidence": [0.6, 0.8], "accuracy": [0.5, 0.9], "count": [3, 4]},
])
def test_calibration_shapes(cal):
    assert calibration_points(cal) == ([0.6, 0.8], [0.5, 0.9], [3, 4])
    assert calibration_points({"something": "else"}) is None
