"""Stage 4 alternative, RLOO: REINFORCE with a leave-one-out baseline over k samples per prompt
(Kool et al. 2019; Ahmadian et al. 2024, "Back to Basics"). Same loop as GRPO with
`--grpo.baseline=rloo` and no std scaling; see `rlhfkit grpo --help` for the shared flags.

    rlhfkit rloo --preset tiny --model runs/demo/sft/model --reward runs/demo/reward --out runs/demo/rloo
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..config import group, opt
from . import grpo
from .grpo import GroupConfig, MonitorConfig, RolloutConfig


@dataclass
class RLOOGroupConfig(GroupConfig):
    """RLOO: leave-one-out baseline, unscaled advantages."""

    baseline: str = opt("rloo", "grpo: (r − mean)/std of the group; rloo: r − mean of the others",
                        choices=("grpo", "rloo"))
    scale_std: bool = opt(False, "divide by the group std (off for RLOO)")


@dataclass
class Config(grpo.Config):
    out: str = opt("runs/default/rloo", "output folder")
    rollout: RolloutConfig = group(RolloutConfig)
    grpo: RLOOGroupConfig = group(RLOOGroupConfig)
    monitor: MonitorConfig = group(MonitorConfig)


PRESETS = grpo.PRESETS


def run(cfg: Config) -> Path:
    return grpo.run(cfg, stage="rloo")
