"""`rlhfkit world` command line: export, judge, --help, bad arguments."""

from __future__ import annotations

import json

from rlhfkit.world.cli import main


def test_help_explains_every_flag(capsys):
    assert main(["--help"]) == 0
    assert "export" in capsys.readouterr().out
    assert main(["export", "--help"]) == 0
    out = capsys.readouterr().out
    assert all(flag in out for flag in ("--out", "--seed", "--size", "ci", "tiny", "small"))
    assert main(["judge", "--help"]) == 0
    out = capsys.readouterr().out
    assert all(flag in out for flag in ("--prompt", "--response", "--unfinished"))


def test_bad_arguments_exit_2(capsys):
    assert main([]) == 2
    assert main(["export"]) == 2  # --out is required
    assert main(["export", "--out", "x", "--size", "huge"]) == 2
    assert main(["export", "--out", "x", "--seed", "one"]) == 2
    assert main(["frobnicate"]) == 2
    assert main(["judge", "--prompt", "What is the capital of France?", "--response", "Paris."]) == 2
    assert "not a prompt of the built-in world" in capsys.readouterr().err


def test_judge_prints_json(capsys):
    assert main(["judge", "--prompt", "What is 3 plus 4?", "--response", "3 plus 4 is 7."]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["score"] == 1.0 and out["family"] == "arithmetic" and out["correct"] is True
    assert main(["judge", "--prompt", "What is 3 plus 4?", "--response", "3 plus 4 is 7.", "--unfinished"]) == 0
    assert json.loads(capsys.readouterr().out)["score"] <= 0.0


def test_export_writes_the_files(tmp_path, capsys):
    assert main(["export", "--out", str(tmp_path / "w"), "--size", "ci", "--seed", "2"]) == 0
    paths = json.loads(capsys.readouterr().out)
    assert set(paths) == {"pretrain", "sft", "rm", "rl", "eval", "world"}
    summary = json.loads((tmp_path / "w" / "world.json").read_text())
    assert summary["seed"] == 2 and summary["size"] == "ci"
