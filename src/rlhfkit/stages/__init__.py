"""The registry of stages: one module per stage of the recipe, each exposing `Config` (a documented
dataclass), `PRESETS` ({name: overrides}) and `run(cfg) -> Path` (the folder or file it delivered).

The CLI (`rlhfkit <stage>`), `rlhfkit run`, the experiments and the benchmarks all reach a stage through
here, and configure it the same way: preset, then overrides in the CLI's dotted syntax
(`{"rollout.prompts": "x.jsonl"}` is `--rollout.prompts x.jsonl`).

    from rlhfkit import stages
    cfg = stages.configure("ppo", preset="ci", overrides={"ppo.steps": 2, "model": "runs/x/sft/model"})
    folder = stages.module("ppo").run(cfg)
"""

from __future__ import annotations

import importlib
from types import ModuleType

# name -> (module, one-line help), in the recipe's order
STAGES: dict[str, tuple[str, str]] = {
    "pretrain": ("rlhfkit.stages.pretrain", "stage 1: train a tokenizer and a causal LM on text"),
    "sft": ("rlhfkit.stages.sft", "stage 2: supervised fine-tuning on demonstrations"),
    "sample": ("rlhfkit.stages.sample", "write K sampled responses per prompt to JSONL"),
    "rankings": ("rlhfkit.stages.rankings", "candidates from SFT ranked by simulated (or human) annotators"),
    "reward": ("rlhfkit.stages.reward", "stage 3: reward model on K-way rankings (+ ensembles)"),
    "ppo": ("rlhfkit.stages.ppo", "stage 4: PPO with a KL penalty to the SFT model"),
    "grpo": ("rlhfkit.stages.grpo", "stage 4 alt: GRPO / Dr. GRPO (group-relative advantages)"),
    "rloo": ("rlhfkit.stages.rloo", "stage 4 alt: RLOO (REINFORCE, leave-one-out baseline)"),
    "dpo": ("rlhfkit.stages.dpo", "stage 4 alt: DPO / IPO / conservative DPO on preferences"),
    "best-of-n": ("rlhfkit.stages.best_of_n", "stage 4 alt: best-of-n sampling against the reward model"),
}


def module(name: str) -> ModuleType:
    """The stage's module (imported on first use, so listing stages stays instant)."""
    if name not in STAGES:
        raise KeyError(f"unknown stage {name!r}; stages: {', '.join(STAGES)}")
    return importlib.import_module(STAGES[name][0])


def configure(name: str, preset: str | None = None, overrides: dict | None = None):
    """The stage's Config: defaults < PRESETS[preset] < `overrides`, whose keys are dotted paths as on the
    command line ("rollout.prompts") or nested dicts ({"rollout": {"prompts": ...}})."""
    from .. import config

    mod = module(name)
    cfg = mod.Config()
    if preset:
        config.apply(cfg, getattr(mod, "PRESETS", {}).get(preset, {}))
    config.apply(cfg, nest(overrides or {}))
    return cfg


def nest(flat: dict) -> dict:
    """{"a.b": 1, "c": 2} -> {"a": {"b": 1}, "c": 2}; values that are paths become strings."""
    from pathlib import Path

    out: dict = {}
    for key, value in flat.items():
        *parents, last = key.split(".")
        node = out
        for p in parents:
            node = node.setdefault(p, {})
        node[last] = str(value) if isinstance(value, Path) else value
    return out
