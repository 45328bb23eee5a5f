"""Stage 4 alternative, RLOO: REINFORCE on whole responses with a leave-one-out baseline over k samples per
prompt (Kool et al. 2019; Ahmadian et al. 2024, "Back to Basics").

    rlhfkit rloo --preset tiny --model runs/demo/sft/model --reward runs/demo/reward --out runs/demo/rloo

Per prompt, k responses; each response's reward is the reward model's score minus β·KL(sequence), the sum
over its tokens of log π − log π_ref (k1, as the paper and TRL's RLOOTrainer); its advantage is that reward
minus the mean of the other k − 1. The loss treats the whole response as one action (losses.rloo_loss):
−A · log π(y|x) on the first pass over a batch. The loop is rl/loop.py's, the epochs rl/group.py's.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from ..config import group, opt
from ..losses import rloo_loss
from ..rl import loop
from ..rl.advantages import group_advantages
from ..rl.group import GroupAlgorithm, GroupFields
from ..rl.loop import RLConfig, RolloutConfig, shaped_score
from ..rl.rollout import Rollout
from . import grpo
from ..lm import save_final


@dataclass
class RLOOConfig(GroupFields):
    """REINFORCE leave-one-out (epochs > 1 clip the sequence ratio at --rloo.clip)."""

    kl_coef: float = opt(0.05, "β: the reward is score − β × KL(sequence) to the reference (TRL's default β)")


@dataclass
class Config(RLConfig):
    out: str = opt("runs/default/rloo", "output folder")
    rloo: RLOOConfig = group(RLOOConfig)


PRESETS = {name: {"rollout": p["rollout"], "rloo": p["grpo"]} for name, p in grpo.PRESETS.items()}


class RLOO(GroupAlgorithm):
    """RLOO's rewards, advantages and loss for rl.loop (the rest is rl/group.py)."""

    def __init__(self, r: RLOOConfig, rcfg: RolloutConfig):
        super().__init__(r, rcfg)
        self.r = r

    def describe(self) -> str:
        return f"leave-one-out baseline, sequence-level REINFORCE, reward − {self.r.kl_coef}·KL(sequence)"

    def rewards(self, ro: Rollout, rcfg: RolloutConfig) -> torch.Tensor:
        """score − β·Σ_t (log π_old − log π_ref) per response [B] (the KL of the policy that sampled it)."""
        kl = ((ro.logp - ro.ref_logp) * ro.response_mask).sum(-1)
        return shaped_score(ro, rcfg).to(kl.device) - self.r.kl_coef * kl

    def advantages(self, ro: Rollout, rcfg: RolloutConfig) -> torch.Tensor:
        return group_advantages(self.rewards(ro, rcfg), self.r.group_size, "rloo")

    def units(self, ro: Rollout, idx: torch.Tensor) -> torch.Tensor:
        return torch.ones(len(idx))  # the loss is a mean over responses

    def loss(self, logp, ro: Rollout, idx, adv) -> tuple[torch.Tensor, dict]:
        loss, clipfrac = rloo_loss(logp, ro.logp[idx], adv[idx], ro.response_mask[idx], self.r.clip)
        return loss, {"clipfrac": clipfrac}


def run(cfg: Config) -> Path:
    out, policy, tokenizer = loop.train(cfg, RLOO(cfg.rloo, cfg.rollout), "rloo")
    save_final(policy, tokenizer, out, stage="rloo")
    return out / "model"
