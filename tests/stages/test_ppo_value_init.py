"""PPO's critic starts from the reward model (`rlhfkit reward` writes OUT/model/ or OUT/member_i/), and
says so loudly when it cannot (issue "RL correctness", item 1: it silently started from a random head)."""

from __future__ import annotations

import pytest
import torch

from rlhfkit.common import StageError
from rlhfkit.model.scalar import ScalarModel
from rlhfkit.stages import ppo


def _reward_folder(lm, root, layout: str):
    """A reward folder as `rlhfkit reward` writes it: OUT/model/ (one model) or OUT/member_0..1/."""
    torch.manual_seed(1)
    dirs = [root / "model"] if layout == "single" else [root / "member_0", root / "member_1"]
    heads = []
    for d in dirs:
        rm = ScalarModel.from_causal_lm(lm)
        torch.nn.init.normal_(rm.head.weight)
        rm.save(d)
        heads.append(rm.head.weight.detach().clone())
    return heads[0]


@pytest.mark.parametrize("layout", ["single", "ensemble"])
def test_value_model_starts_from_the_reward_folder(lm, tmp_path, capsys, layout):
    head = _reward_folder(lm, tmp_path / "reward", layout)
    cfg = ppo.Config(reward=str(tmp_path / "reward"))
    value = ppo.load_value_model(cfg, lm)
    assert torch.equal(value.head.weight, head)  # the first member's head, not a fresh one
    assert "initialised from the reward model" in capsys.readouterr().out


def test_value_init_wins_over_reward_and_must_hold_a_reward_model(lm, tmp_path):
    head = _reward_folder(lm, tmp_path / "other", "single")
    _reward_folder(lm, tmp_path / "reward", "ensemble")
    cfg = ppo.Config(reward=str(tmp_path / "reward"), value_init=str(tmp_path / "other"))
    assert torch.equal(ppo.load_value_model(cfg, lm).head.weight, head)
    (tmp_path / "empty").mkdir()
    with pytest.raises(StageError, match="--value_init"):
        ppo.load_value_model(ppo.Config(reward="mod:fn", value_init=str(tmp_path / "empty")), lm)


def test_a_fresh_head_is_announced(lm, capsys):
    value = ppo.load_value_model(ppo.Config(reward="rlhfkit.world:reward_fn"), lm)
    assert isinstance(value, ScalarModel) and "WARNING: the value model starts as a copy" in capsys.readouterr().out
