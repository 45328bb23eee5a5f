"""Stage 4 alternative, GRPO: no value model — each prompt gets a group of G responses and each
response's advantage is its reward relative to the group (Shao et al. 2024, DeepSeekMath §4.1).

    rlhfkit grpo --preset tiny --model runs/demo/sft/model --reward runs/demo/reward --out runs/demo/grpo

The KL to the reference is a loss term (β·k3, unbiased and non-negative), not a reward penalty.
`--grpo.loss_type dr_grpo` is Dr. GRPO (Liu et al. 2025): no std scaling of the advantages and no length
normalisation of the loss. The loop is rl/loop.py's, the minibatch epochs rl/group.py's (shared with RLOO);
this file holds GRPO's config, advantages and loss.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from ..config import group, opt
from ..losses import grpo_loss
from ..rl import loop
from ..rl.advantages import group_advantages
from ..rl.group import GroupAlgorithm, GroupFields
from ..rl.loop import RLConfig, RolloutConfig, shaped_score
from ..rl.rollout import Rollout
from ..lm import save_final


@dataclass
class GroupConfig(GroupFields):
    """Group-relative policy optimisation."""

    loss_type: str = opt("grpo", "grpo: advantages (r − mean)/std of the group, loss averaged per response then "
                         "over responses; bnpo: the same advantages, loss averaged over all tokens; dr_grpo: "
                         "Dr. GRPO, advantages r − mean (no std) and the token sum divided by a constant "
                         "(responses × max_new_tokens), no length normalisation", choices=("grpo", "bnpo", "dr_grpo"))
    scale_std: bool = opt(True, "divide advantages by the group std (grpo, bnpo; dr_grpo never does)")
    kl_coef: float = opt(0.04, "β of the k3 KL-to-reference loss term (0 = off)")


@dataclass
class Config(RLConfig):
    out: str = opt("runs/default/grpo", "output folder")
    grpo: GroupConfig = group(GroupConfig)


PRESETS = {
    "ci": {"rollout": {"world_size": "ci", "batch_prompts": 4, "max_new_tokens": 24},
           "grpo": {"steps": 4, "group_size": 4, "minibatch": 16, "save_every": 2}},
    "tiny": {"rollout": {"world_size": "tiny", "batch_prompts": 16, "max_new_tokens": 40},
             "grpo": {"steps": 60, "group_size": 8, "minibatch": 32}},
    "small": {"rollout": {"world_size": "small", "batch_prompts": 32, "max_new_tokens": 48},
              "grpo": {"steps": 200, "group_size": 8, "minibatch": 64}},
}


class GRPO(GroupAlgorithm):
    """GRPO's advantages and loss for rl.loop (the rest is rl/group.py)."""

    LEVEL = {"grpo": "seq", "bnpo": "token", "dr_grpo": "constant"}

    def __init__(self, g: GroupConfig, rcfg: RolloutConfig):
        super().__init__(g, rcfg)
        self.level = self.LEVEL[g.loss_type]

    @property
    def scale_std(self) -> bool:
        return self.g.scale_std and self.g.loss_type != "dr_grpo"

    def describe(self) -> str:
        std = "std-scaled" if self.scale_std else "unscaled"
        return f"loss_type={self.g.loss_type} ({std} advantages, {self.level}-level loss, β·k3={self.g.kl_coef})"

    def advantages(self, ro: Rollout, rcfg: RolloutConfig) -> torch.Tensor:
        return group_advantages(shaped_score(ro, rcfg), self.g.group_size, "grpo", self.scale_std)

    def units(self, ro: Rollout, idx: torch.Tensor) -> torch.Tensor:
        """What the loss averages over in each row of a minibatch (for splitting it across processes)."""
        return ro.response_mask[idx].sum(-1) if self.level == "token" else torch.ones(len(idx))

    def loss(self, logp, ro: Rollout, idx, adv) -> tuple[torch.Tensor, dict]:
        g = self.g
        loss, clipfrac, kl = grpo_loss(logp, ro.logp[idx], adv[idx], ro.response_mask[idx], g.clip,
                                       ref_logp=ro.ref_logp[idx] if g.kl_coef else None, kl_coef=g.kl_coef,
                                       level=self.level, max_len=self.rcfg.max_new_tokens)
        return loss, {"clipfrac": clipfrac, "kl_k3": kl}


def run(cfg: Config) -> Path:
    out, policy, tokenizer = loop.train(cfg, GRPO(cfg.grpo, cfg.rollout), "grpo")
    save_final(policy, tokenizer, out, stage="grpo")
    return out / "model"
