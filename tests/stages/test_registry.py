"""The stage registry (rlhfkit.stages): every registered stage explains itself with --help, runs its ci preset
configured through `stages.configure` (dotted overrides, as on the command line) and returns a folder or
file that exists. The stages run as the recipe chains them, each shortened to a few steps.

Run: .venv/bin/python -m pytest tests/stages/test_registry.py -q
"""

from __future__ import annotations

from pathlib import Path

import pytest

from rlhfkit import stages
from rlhfkit.cli import COMMANDS, main

SHORT = {"pretrain": {"optim.max_steps": 10, "optim.eval_every": 5}, "sft": {"optim.max_steps": 5},
         "rankings": {"max_prompts": 8}, "reward": {"optim.max_steps": 5}, "dpo": {"optim.max_steps": 2},
         "ppo": {"ppo.steps": 1}, "grpo": {"grpo.steps": 1}, "rloo": {"rloo.steps": 1},
         "best-of-n": {"max_prompts": 4, "n": 2, "ns": [1, 2]}, "sample": {"k": 2}}


def test_every_stage_is_a_command_with_help(capsys):
    for name, (module, _) in stages.STAGES.items():
        assert COMMANDS[name][0] == module
        assert main([name, "--help"]) == 0
        text = capsys.readouterr().out
        assert f"usage: rlhfkit {name}" in text and "--out" in text and "--seed" in text


def test_configure_takes_the_command_lines_dotted_overrides():
    cfg = stages.configure("ppo", "ci", {"ppo.steps": 3, "rollout.prompts": Path("p.jsonl"), "seed": 7})
    assert (cfg.ppo.steps, cfg.rollout.prompts, cfg.seed) == (3, "p.jsonl", 7)
    assert cfg.rollout.world_size == "ci"  # from the preset
    with pytest.raises(KeyError, match="unknown stage"):
        stages.module("nope")


def test_every_stage_runs_its_ci_preset(tmp_path):
    from rlhfkit.world import export

    world = export(tmp_path / "world", seed=0, size="ci")
    ran: dict[str, Path] = {}

    def run(name: str, **wiring) -> Path:
        overrides = {"out": tmp_path / name, **SHORT[name], **{k.replace("__", "."): v for k, v in wiring.items()}}
        out = Path(stages.module(name).run(stages.configure(name, "ci", overrides)))
        assert out.exists(), (name, out)
        ran[name] = out
        return out

    base = run("pretrain", data__path=world["pretrain"])
    sft = run("sft", model=base, data__path=world["sft"])
    run("sample", model=sft, prompts=world["eval"])
    run("rankings", model=sft, prompts=world["rm"])
    run("reward", model=sft, data__path=tmp_path / "rankings" / "rankings.jsonl")
    for algo in ("ppo", "grpo", "rloo"):
        run(algo, model=sft, reward=tmp_path / "reward", rollout__prompts=world["rl"])
    run("dpo", model=sft, data__path=tmp_path / "rankings" / "rankings.jsonl")
    run("best-of-n", model=sft, reward=tmp_path / "reward", prompts=world["eval"])
    assert set(ran) == set(stages.STAGES)
