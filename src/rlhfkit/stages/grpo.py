"""Stage 4 alternative, GRPO: no value model — each prompt gets a group of G responses and each
response's advantage is its reward relative to the group (Shao et al. 2024, DeepSeekMath §4.1).

    rlhfkit grpo --preset tiny --model runs/demo/sft/model --reward runs/demo/reward --out runs/demo/grpo

The KL to the reference is a loss term (β·k3, unbiased and non-negative), not a reward penalty.
`--grpo.loss_type dr_grpo` is Dr. GRPO (Liu et al. 2025): no std scaling of the advantages and no length
normalisation of the loss. This module also holds the group loop that `rlhfkit rloo` runs with its own
algorithm (stages/rloo.py): rollout G samples per prompt → score → advantages → policy update → monitor.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch

from .. import checkpoint
from ..common import prepare_out, progress, say, seed_everything, set_threads, world, write_json
from ..config import group, opt
from ..losses import grpo_loss, masked_mean
from ..model.lora import LoraConfig
from ..rl.advantages import group_advantages
from ..rl.distributed import ddp, gather_rollout, mean_over_ranks, shard
from ..rl.engine import entropy_from_logits, forward_logprobs
from ..rl.rewards import make_reward
from ..rl.rollout import Rollout, collect
from ..training import BatchStream
from ._lm import save_final
from ._rl import fmt as _fmt
from ._rl import (MonitorConfig, RLTracker, RolloutConfig, UpdateConfig, UpdateGuard, batch_iter,
                  load_policy_and_ref, load_prompts, resume, sampling_params, save_checkpoint, seq_kl, shaped_score)


@dataclass
class GroupConfig:
    """Group-relative policy optimisation."""

    steps: int = opt(60, "rollout batches (RL steps)")
    group_size: int = opt(8, "responses sampled per prompt (G)")
    loss_type: str = opt("grpo", "grpo: advantages (r − mean)/std of the group, loss averaged per response then "
                         "over responses; bnpo: the same advantages, loss averaged over all tokens; dr_grpo: "
                         "Dr. GRPO, advantages r − mean (no std) and the token sum divided by a constant "
                         "(responses × max_new_tokens), no length normalisation", choices=("grpo", "bnpo", "dr_grpo"))
    scale_std: bool = opt(True, "divide advantages by the group std (grpo, bnpo; dr_grpo never does)")
    epochs: int = opt(1, "optimisation epochs per rollout batch (1 = on-policy)")
    minibatch: int = opt(64, "responses per minibatch")
    lr: float = opt(5e-5, "policy learning rate")
    clip: float = opt(0.2, "policy ratio clip ε")
    kl_coef: float = opt(0.04, "β of the k3 KL-to-reference loss term (0 = off)")
    max_grad_norm: float = opt(1.0, "gradient clipping")
    save_every: int = opt(10, "write a resumable checkpoint to OUT/ckpt every N steps (0 = never)")


@dataclass
class Config:
    out: str = opt("runs/default/grpo", "output folder")
    seed: int = opt(0, "random seed")
    model: str = opt("runs/default/sft/model", "SFT model: the initial policy and the frozen reference")
    reward: str = opt("runs/default/reward", "reward-model folder, 'gold' (the world judge), or module:function")
    rollout: RolloutConfig = group(RolloutConfig)
    grpo: GroupConfig = group(GroupConfig)
    monitor: MonitorConfig = group(MonitorConfig)
    optim: UpdateConfig = group(UpdateConfig)
    lora: LoraConfig = group(LoraConfig)
    resume: bool = opt(False, "continue from OUT/ckpt if a complete checkpoint is there")


PRESETS = {
    "ci": {"rollout": {"world_size": "ci", "batch_prompts": 4, "max_new_tokens": 24},
           "grpo": {"steps": 4, "group_size": 4, "minibatch": 16, "save_every": 2}},
    "tiny": {"rollout": {"world_size": "tiny", "batch_prompts": 16, "max_new_tokens": 40},
             "grpo": {"steps": 60, "group_size": 8, "minibatch": 32}},
    "small": {"rollout": {"world_size": "small", "batch_prompts": 32, "max_new_tokens": 48},
              "grpo": {"steps": 200, "group_size": 8, "minibatch": 64}},
}


class GRPO:
    """The GRPO family's advantages and loss (one object per run; rloo.RLOO has the same two methods)."""

    LEVEL = {"grpo": "seq", "bnpo": "token", "dr_grpo": "constant"}

    def __init__(self, g: GroupConfig, max_new_tokens: int):
        if g.group_size < 2:  # one sample per prompt has no group to compare with: every advantage would be 0
            raise ValueError("GRPO needs --grpo.group_size >= 2 (advantages compare a prompt's responses)")
        self.g, self.max_len, self.level = g, max_new_tokens, self.LEVEL[g.loss_type]

    def describe(self) -> str:
        std = "std-scaled" if self.scale_std else "unscaled"
        return f"loss_type={self.g.loss_type} ({std} advantages, {self.level}-level loss, β·k3={self.g.kl_coef})"

    @property
    def scale_std(self) -> bool:
        return self.g.scale_std and self.g.loss_type != "dr_grpo"

    def advantages(self, ro: Rollout, rcfg: RolloutConfig) -> torch.Tensor:
        return group_advantages(shaped_score(ro, rcfg), self.g.group_size, "grpo", self.scale_std)

    def units(self, ro: Rollout, idx: torch.Tensor) -> torch.Tensor:
        """What the loss averages over in each row of a minibatch (for splitting it across processes)."""
        return ro.response_mask[idx].sum(-1) if self.level == "token" else torch.ones(len(idx))

    def loss(self, logp, ro: Rollout, idx, adv) -> tuple[torch.Tensor, dict]:
        g = self.g
        loss, clipfrac, kl = grpo_loss(logp, ro.logp[idx], adv[idx], ro.response_mask[idx], g.clip,
                                       ref_logp=ro.ref_logp[idx] if g.kl_coef else None, kl_coef=g.kl_coef,
                                       level=self.level, max_len=self.max_len)
        return loss, {"clipfrac": clipfrac, "kl_k3": kl}


def run(cfg: Config) -> Path:
    return loop(cfg, cfg.grpo, GRPO(cfg.grpo, cfg.rollout.max_new_tokens), "grpo")


def loop(cfg, g, algo, stage: str) -> Path:
    """Group RL: each step samples g.group_size responses to each of a batch of prompts, scores them, and
    updates the policy with `algo`'s advantages and loss. `g` holds steps, group_size, epochs, minibatch, lr,
    max_grad_norm and save_every (GroupConfig or rloo.RLOOConfig)."""
    set_threads()
    seed_everything(cfg.seed)
    out = prepare_out(cfg.out, cfg)
    t0 = time.time()
    prompts = load_prompts(cfg.rollout, cfg.seed, out)
    tokenizer, policy, ref = load_policy_and_ref(cfg.model, cfg.lora)
    reward = make_reward(cfg.reward)
    optimizer = torch.optim.Adam(policy.parameters(), lr=g.lr, eps=1e-5)
    trainee = ddp(policy)  # what updates run through (DDP under several processes)
    tracker = RLTracker(out, cfg.monitor, stage)
    guard = UpdateGuard(cfg.optim, stage, out)
    stream = BatchStream(prompts, cfg.rollout.batch_prompts, cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    params = sampling_params(cfg.rollout)
    state = checkpoint.Bundle(optimizer=optimizer)
    done, _ = resume(out, policy, state, stream, gen, tracker) if cfg.resume else (0, {})
    say(f"{stage}: {len(prompts)} prompts x {g.group_size} samples, {algo.describe()}, reward={cfg.reward}")
    for step in progress(range(done + 1, g.steps + 1), desc=stage):
        batch = [p for p in stream.next() for _ in range(g.group_size)]
        ro = collect(policy, ref, tokenizer, batch, params, reward, gen, cfg.rollout.temperature)
        ro, _ = gather_rollout(ro, None, tokenizer.pad_token_id)  # every rank's groups, in rank order
        adv = algo.advantages(ro, cfg.rollout)
        metrics = update(trainee, optimizer, ro, adv, algo, g, cfg.rollout.temperature, gen, guard)
        if tracker.step(step, ro, seq_kl(ro), metrics, policy):
            say(f"{stage}: stopping at step {step} on the overoptimisation alarm")
            break
        if g.save_every and step % g.save_every == 0:
            save_checkpoint(out, step, policy, tokenizer, state, stream, gen, tracker)
    tracker.finalize(policy)
    save_final(policy, tokenizer, out)
    summary = {**tracker.summary(), "skipped_updates": guard.skipped, "wall_s": round(time.time() - t0, 1)}
    write_json(out / "summary.json", summary)
    say(f"{stage}: proxy {_fmt(summary['start']['proxy_reward'])} -> {_fmt(summary['end']['proxy_reward'])}, "
        f"KL {_fmt(summary['end']['kl'])}, {summary['wall_s']}s")
    return out / "model"


def update(policy, optimizer, ro: Rollout, adv, algo, g, temperature: float, gen, guard: UpdateGuard) -> dict:
    """Policy-gradient epochs over shuffled minibatches; under N processes a minibatch is N x g.minibatch
    rows of the whole batch, split across the ranks (rl/distributed.py)."""
    P = ro.prompt_len
    policy.train()
    sums: dict[str, float] = {}
    n = 0
    for _ in range(g.epochs):
        for idx in batch_iter(len(ro.prompts), g.minibatch * world()[1], gen):
            idx, w = shard(idx, algo.units(ro, idx))  # this rank's rows and its share of what the loss averages
            with guard.autocast():
                logp, logits = forward_logprobs(policy, ro.sequences[idx], ro.attention_mask[idx], P, temperature)
                loss, extra = algo.loss(logp, ro, idx, adv)
            guard.step(optimizer, w * loss, list(policy.parameters()), g.max_grad_norm)
            with torch.no_grad():
                ent = masked_mean(entropy_from_logits(logits), ro.response_mask[idx])
            for k, v in dict(policy_loss=loss, entropy=ent, **extra).items():
                sums[k] = sums.get(k, 0.0) + w * float(v.detach())
            n += 1
    out = {k: v / max(n, 1) for k, v in mean_over_ranks(sums).items()}
    out["skipped_updates"] = guard.skipped
    return out
