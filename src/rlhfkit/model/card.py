"""Model cards: the README.md a saved model folder carries, with YAML front matter as the Hugging Face Hub
reads it (https://huggingface.co/docs/hub/model-cards): what the model is, what it started from, what it
was trained on, the key settings, its figures when known, and the rlhfkit version and command that made it.

    ---
    base_model: runs/demo/sft/model
    library_name: transformers
    tags: [rlhfkit, rlhf, ppo]
    ---
    # ppo model (rlhfkit) ...
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import yaml

STAGES = {
    "pretrain": "a causal language model pretrained on text (stage 1 of the recipe)",
    "sft": "a causal language model after supervised fine-tuning on demonstrations (stage 2)",
    "reward": "a reward model (backbone + scalar head) trained on K-way rankings of responses (stage 3)",
    "ppo": "a policy optimised with PPO against a reward model, with a KL penalty to the SFT model (stage 4)",
    "grpo": "a policy optimised with GRPO (group-relative advantages) against a reward model (stage 4)",
    "rloo": "a policy optimised with RLOO (REINFORCE, leave-one-out baseline) against a reward model (stage 4)",
    "dpo": "a policy optimised with DPO on preference pairs from rankings (stage 4)",
}
# The settings worth a line each, per stage (dotted paths into the stage's resolved config).
KEY = {
    "pretrain": ["arch.size", "vocab_size", "optim.max_steps", "optim.lr", "optim.batch_size"],
    "sft": ["optim.max_steps", "optim.lr", "optim.batch_size", "lora.r"],
    "reward": ["loss", "ensemble", "optim.max_steps", "optim.lr", "lora.r"],
    "ppo": ["ppo.steps", "ppo.lr", "ppo.kl_coef", "ppo.kl_target", "rollout.batch_prompts", "lora.r"],
    "grpo": ["grpo.steps", "grpo.loss_type", "grpo.group_size", "grpo.lr", "grpo.kl_coef", "lora.r"],
    "rloo": ["rloo.steps", "rloo.group_size", "rloo.lr", "rloo.kl_coef", "lora.r"],
    "dpo": ["loss", "beta", "optim.max_steps", "optim.lr", "lora.r"],
}
DATA = ["data.path", "rollout.prompts", "reward"]


def _get(cfg: dict, path: str):
    for part in path.split("."):
        if not isinstance(cfg, dict) or part not in cfg:
            return None
        cfg = cfg[part]
    return cfg


def card_text(stage: str, cfg: dict, figures: dict | None = None) -> str:
    """The README.md of a model folder written by `stage` with the resolved config `cfg` (as in config.yaml)."""
    from .. import __version__

    base = cfg.get("model") or None
    front = {"library_name": "transformers", "tags": ["rlhfkit", "rlhf", stage]}
    if base:
        front["base_model"] = str(base)
    lines = ["---", yaml.safe_dump(front, sort_keys=True).strip(), "---", "",
             f"# {stage} model (rlhfkit)", "", f"{_sentence(STAGES.get(stage, stage))}.", "",
             f"- base model: {base or 'none (trained from scratch)'}"]
    lines += [f"- {key}: {_get(cfg, key)}" for key in DATA if _get(cfg, key) not in (None, "")]
    lines += [f"- {key}: {_get(cfg, key)}" for key in KEY.get(stage, []) if _get(cfg, key) is not None]
    lines += [f"- seed: {cfg.get('seed')}", f"- rlhfkit {__version__}"]
    if figures:
        lines += ["", "## Figures", "", "| figure | value |", "|---|---|"]
        lines += [f"| {k} | {_fmt(v)} |" for k, v in figures.items() if isinstance(v, (int, float)) and v is not None]
    lines += ["", "## How it was made", "", "```bash", _command(), "```", "",
              "The resolved configuration (`config.yaml` of the stage's output folder):", "", "```yaml",
              yaml.safe_dump(cfg, sort_keys=False).strip(), "```", ""]
    return "\n".join(lines)


def _command() -> str:
    """The command line that is running: `rlhfkit ...` for the CLI, else the Python program and its arguments."""
    prog = Path(sys.argv[0]).name
    if prog in ("rlhfkit", "cli.py", "__main__.py"):
        return " ".join(["rlhfkit", *map(shlex.quote, sys.argv[1:])])
    return " ".join(["python", *map(shlex.quote, sys.argv)]) + "  # rlhfkit called from Python"


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:]  # (str.capitalize would lower-case "PPO")


def _fmt(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def write_card(folder: Path, stage: str, stage_out: Path, figures: dict | None = None) -> None:
    """Write folder/README.md from the stage's OUT/config.yaml and `figures` (default: OUT/summary.json when
    it is there)."""
    import json

    cfg_file, summary_file = Path(stage_out) / "config.yaml", Path(stage_out) / "summary.json"
    cfg = yaml.safe_load(cfg_file.read_text()) if cfg_file.exists() else {}
    if figures is None and summary_file.exists():
        figures = json.loads(summary_file.read_text())
    (Path(folder) / "README.md").write_text(card_text(stage, cfg, figures))


def read_front_matter(path: Path) -> dict:
    """The YAML front matter of a card (what the Hub reads)."""
    text = Path(path).read_text()
    if not text.startswith("---\n"):
        raise ValueError(f"{path}: no YAML front matter")
    return yaml.safe_load(text.split("---\n", 2)[1])
