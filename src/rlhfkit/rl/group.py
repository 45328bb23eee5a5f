"""What the group methods (GRPO, Dr. GRPO, RLOO) share as `rl.loop` algorithms: one optimizer on the policy,
G responses per prompt, advantages from the group, and policy-gradient epochs over shuffled minibatches.
A subclass brings only its own part: `advantages(ro, rcfg)`, `loss(logp, ro, idx, adv)`, `units(ro, idx)`
and `describe()` (stages/grpo.py GRPO, stages/rloo.py RLOO)."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

from .. import checkpoint
from ..common import dist_rank_size
from ..config import opt
from ..losses import masked_mean
from .distributed import ddp, gather_rollout, mean_over_ranks, shard
from .engine import entropy_from_logits, forward_logprobs
from .loop import RolloutConfig, UpdateGuard, batch_iter
from .rollout import Rollout


@dataclass
class GroupFields:
    """The fields of a group method's config group (GRPO's, RLOO's), each adding its own."""

    steps: int = opt(60, "rollout batches (RL steps)")
    group_size: int = opt(8, "responses sampled per prompt (G >= 2)")
    epochs: int = opt(1, "optimisation epochs per rollout batch (1 = on-policy)")
    minibatch: int = opt(64, "responses per minibatch")
    lr: float = opt(5e-5, "policy learning rate")
    clip: float = opt(0.2, "policy ratio clip ε")
    max_grad_norm: float = opt(1.0, "gradient clipping")
    save_every: int = opt(10, "write a resumable checkpoint to OUT/ckpt every N steps (0 = never)")


class GroupAlgorithm:
    """`g` is a GroupFields (GRPO's or RLOO's config group)."""

    def __init__(self, g, rcfg: RolloutConfig):
        if g.group_size < 2:  # one sample per prompt has no group to compare with: every advantage would be 0
            raise ValueError(f"{type(self).__name__} needs group_size >= 2 (advantages compare a prompt's responses)")
        self.g, self.rcfg = g, rcfg
        self.steps, self.save_every, self.group_size = g.steps, g.save_every, g.group_size

    def setup(self, policy, ref, reward) -> checkpoint.Bundle:
        self.optimizer = torch.optim.Adam(policy.parameters(), lr=self.g.lr, eps=1e-5)
        self.trainee = ddp(policy)  # what updates run through (DDP under several processes)
        return checkpoint.Bundle(optimizer=self.optimizer)

    def scoring(self):
        return contextlib.nullcontext()

    def experience(self, ro: Rollout, pad_id: int):
        ro, _ = gather_rollout(ro, None, pad_id)  # every rank's groups, in rank order
        return ro, self.advantages(ro, self.rcfg)

    def extra_state(self) -> dict:
        return {}

    def load_extra_state(self, extra: dict) -> None:
        pass

    def update(self, ro: Rollout, adv: torch.Tensor, gen: torch.Generator, guard: UpdateGuard) -> dict:
        """Policy-gradient epochs over shuffled minibatches; under N processes a minibatch is N x g.minibatch
        rows of the whole batch, split across the ranks (rl/distributed.py)."""
        g, P, policy = self.g, ro.prompt_len, self.trainee
        policy.train()
        sums: dict[str, float] = {}
        n = 0
        for _ in range(g.epochs):
            for idx in batch_iter(len(ro.prompts), g.minibatch * dist_rank_size()[1], gen):
                idx, w = shard(idx, self.units(ro, idx))  # this rank's rows; its share of what the loss averages
                with guard.autocast():
                    logp, logits = forward_logprobs(policy, ro.sequences[idx], ro.attention_mask[idx], P,
                                                    self.rcfg.temperature)
                    loss, extra = self.loss(logp, ro, idx, adv)
                guard.step(self.optimizer, w * loss, list(policy.parameters()), g.max_grad_norm)
                with torch.no_grad():
                    ent = masked_mean(entropy_from_logits(logits), ro.response_mask[idx])
                for k, v in dict(policy_loss=loss, entropy=ent, **extra).items():
                    sums[k] = sums.get(k, 0.0) + w * float(v.detach())
                n += 1
        out = {k: v / max(n, 1) for k, v in mean_over_ranks(sums).items()}
        out["skipped_updates"] = guard.skipped
        return out
