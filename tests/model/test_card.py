"""Model cards: every saved model folder carries a README.md whose YAML front matter the Hub reads and which
names its base model, stage, data, key settings, figures when known, and the rlhfkit version and command."""

from __future__ import annotations

import yaml

from rlhfkit import __version__
from rlhfkit.model.card import card_text, read_front_matter


def test_card_parses_and_names_its_base_model():
    cfg = {"out": "runs/x/ppo", "seed": 3, "model": "runs/x/sft/model", "reward": "runs/x/reward",
           "rollout": {"prompts": "world"}, "ppo": {"steps": 60, "lr": 2e-5, "kl_coef": 0.1, "kl_target": 0.0}}
    text = card_text("ppo", cfg, {"steps": 60, "wall_s": 127.4, "alarms": [{"step": 3}], "note": "x"})
    front = yaml.safe_load(text.split("---\n", 2)[1])
    assert front == {"base_model": "runs/x/sft/model", "library_name": "transformers", "tags": ["rlhfkit", "rlhf", "ppo"]}
    body = text.split("---\n", 2)[2]
    for line in ("- base model: runs/x/sft/model", "- reward: runs/x/reward", "- ppo.kl_coef: 0.1", "- seed: 3",
                 f"- rlhfkit {__version__}", "| wall_s | 127.4 |", "| steps | 60 |", "A policy optimised with PPO"):
        assert line in body, line
    assert "alarms" not in body.split("## Figures")[1].split("## How")[0]  # only numbers in the figures table
    assert yaml.safe_load(body.split("```yaml\n")[1].split("```")[0]) == cfg  # the whole resolved config


def test_a_model_trained_from_scratch_has_no_base_model():
    front = yaml.safe_load(card_text("pretrain", {"model": "", "seed": 0}).split("---\n", 2)[1])
    assert "base_model" not in front and front["tags"][-1] == "pretrain"
