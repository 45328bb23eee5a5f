"""Every stage writes a model card (README.md, model/card.py) into the model folder it saves."""

from __future__ import annotations

import json

from rlhfkit import stages
from rlhfkit.model.card import read_front_matter


def test_stages_write_cards_into_their_model_folders(lm_dir, tiny_data, tmp_path, monkeypatch):
    """SFT (figures unknown when it saves) and PPO (its summary is written first) on the fixture model."""
    monkeypatch.setattr("rlhfkit.rl.loop.make_reward", lambda spec: _length_reward)
    sft = stages.configure("sft", "ci", {"out": tmp_path / "sft", "model": lm_dir, "data.path": tiny_data["sft"],
                                         "optim.max_steps": 2})
    sft_model = stages.module("sft").run(sft)
    front = read_front_matter(sft_model / "README.md")
    assert front["base_model"] == str(lm_dir) and "sft" in front["tags"]
    ppo = stages.configure("ppo", "ci", {"out": tmp_path / "ppo", "model": sft_model, "reward": "test",
                                         "rollout.prompts": tiny_data["prompts"], "ppo.steps": 1})
    ppo_model = stages.module("ppo").run(ppo)
    card = (ppo_model / "README.md").read_text()
    assert read_front_matter(ppo_model / "README.md")["base_model"] == str(sft_model)
    summary = json.loads((tmp_path / "ppo" / "summary.json").read_text())
    assert f"| wall_s | {summary['wall_s']:.4g} |" in card
    from transformers import AutoModelForCausalLM

    AutoModelForCausalLM.from_pretrained(ppo_model)  # the card does not get in the way of loading


def test_the_reward_model_folder_has_a_card_with_its_held_out_figures(lm_dir, tiny_data, tmp_path):
    cfg = stages.configure("reward", "ci", {"out": tmp_path / "reward", "model": lm_dir,
                                            "data.path": tiny_data["rankings"], "optim.max_steps": 2})
    out = stages.module("reward").run(cfg)
    card = out / "model" / "README.md"
    assert read_front_matter(card)["tags"] == ["rlhfkit", "rlhf", "reward"]
    summary = json.loads((out / "model" / "train_summary.json").read_text())
    assert f"| best_val_accuracy | {summary['best_val_accuracy']:.4g} |" in card.read_text()


def _length_reward(prompts, responses):
    import torch

    r = torch.tensor([len(x) / 10.0 for x in responses])
    return r, torch.zeros_like(r)
