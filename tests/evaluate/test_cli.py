"""`rlhfkit eval`: --json prints one parseable object with the documented keys, --help documents every
flag, and bad input exits 2 with a message instead of a traceback.

Run: .venv/bin/python -m pytest tests/evaluate/test_cli.py -q
"""

from __future__ import annotations

import json

import pytest

from rlhfkit.cli import main as rlhfkit_main
from rlhfkit.evaluate.cli import build_parser, main

from .conftest import world_or_skip

KEYS = {"gold_mean", "win_rate", "refusal_rate_harmful", "over_refusal_benign", "kl", "mean_length",
        "per_family", "finish_rate", "diversity", "instruction_following", "examples"}


def test_json_output_parses_and_has_keys(model_dir, perturbed_dir, capsys):
    world_or_skip()
    rc = rlhfkit_main(["eval", "--model", str(perturbed_dir.parent), "--vs", str(model_dir),
                       "--ref", str(model_dir), "--world-size", "ci", "--limit", "6", "--n", "2",
                       "--max-new-tokens", "12", "--json"])
    out = capsys.readouterr().out
    assert rc == 0
    result = json.loads(out)  # exactly one JSON object: progress went to stderr
    assert KEYS <= set(result)
    assert result["n_prompts"] == 6 and result["n_samples"] == 2
    assert 0.0 <= result["win_rate"] <= 1.0 and result["kl"] > 0
    assert sum(f["n"] for f in result["per_family"].values()) == 12


def test_table_output_and_prompts_file(model_dir, tmp_path, capsys):
    world = world_or_skip()
    paths = world.export(tmp_path / "w", seed=0, size="ci")
    assert main(["--model", str(model_dir), "--prompts", str(paths["eval"]), "--limit", "3", "--n", "1",
                 "--max-new-tokens", "8", "--few-shot", "2", "--demos", str(paths["sft"])]) == 0
    out = capsys.readouterr().out
    assert "gold_mean" in out and "family" in out and "2-shot" in out


def test_help_lists_every_flag(capsys):
    assert main(["--help"]) == 0
    text = capsys.readouterr().out
    for action in build_parser()._actions:
        for flag in action.option_strings:
            assert flag in text
        assert action.help  # every flag explained


@pytest.mark.parametrize("argv,message", [
    (["--model", "/nonexistent/model"], "no such model folder"),
    (["--model", ".", "--n", "0"], "--n must be >= 1"),
    (["--model", ".", "--prompts", "p.jsonl", "--few-shot", "2"], "needs --demos"),
])
def test_errors_exit_2(argv, message, capsys):
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_usage_error_exit_2(capsys):
    assert main(["--n", "3"]) == 2  # --model is required
    assert "--model" in capsys.readouterr().err
