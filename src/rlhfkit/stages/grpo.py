"""Stage 4 alternative, GRPO: no value model — each prompt gets a group of G responses and each
response's advantage is its reward relative to the group (Shao et al. 2024, DeepSeekMath §4.1).

    rlhfkit grpo --preset tiny --model runs/demo/sft/model --reward runs/demo/reward --out runs/demo/grpo

The KL to the reference is a loss term (β·k3, unbiased and non-negative), not a reward penalty.
`rlhfkit rloo` runs the same loop with the leave-one-out baseline (Ahmadian et al. 2024).
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
from ..rl.rollout import collect
from ..training import BatchStream
from ._lm import save_final
from ._rl import (MonitorConfig, RLTracker, RolloutConfig, batch_iter, load_policy_and_ref, load_prompts, resume,
                  sampling_params, save_checkpoint, seq_kl)


@dataclass
class GroupConfig:
    """Group-relative policy optimisation."""

    steps: int = opt(60, "rollout batches (RL steps)")
    group_size: int = opt(8, "responses sampled per prompt (G)")
    baseline: str = opt("grpo", "grpo: (r − mean)/std of the group; rloo: r − mean of the others",
                        choices=("grpo", "rloo"))
    scale_std: bool = opt(True, "divide by the group std (GRPO); off = Dr. GRPO")
    epochs: int = opt(1, "optimisation epochs per rollout batch (1 = on-policy)")
    minibatch: int = opt(64, "responses per minibatch")
    lr: float = opt(5e-5, "policy learning rate")
    clip: float = opt(0.2, "policy ratio clip ε")
    kl_coef: float = opt(0.04, "β of the k3 KL-to-reference loss term (0 = off)")
    level: str = opt("seq", "loss averaging: per sequence then batch (seq) or over all tokens (token)",
                     choices=("seq", "token"))
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


def run(cfg: Config, stage: str = "grpo") -> Path:
    set_threads()
    seed_everything(cfg.seed)
    out = prepare_out(cfg.out, cfg)
    t0 = time.time()
    g = cfg.grpo
    prompts = load_prompts(cfg.rollout, cfg.seed, out)
    tokenizer, policy, ref = load_policy_and_ref(cfg.model, cfg.lora)
    reward = make_reward(cfg.reward)
    optimizer = torch.optim.Adam(policy.parameters(), lr=g.lr, eps=1e-5)
    trainee = ddp(policy)  # what updates run through (DDP under several processes)
    tracker = RLTracker(out, cfg.monitor, stage)
    stream = BatchStream(prompts, cfg.rollout.batch_prompts, cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    params = sampling_params(cfg.rollout)
    state = checkpoint.Bundle(optimizer=optimizer)
    done, _ = resume(out, policy, state, stream, gen, tracker) if cfg.resume else (0, {})
    say(f"{stage}: {len(prompts)} prompts x {g.group_size} samples, baseline={g.baseline}, reward={cfg.reward}")
    for step in progress(range(done + 1, g.steps + 1), desc=stage):
        batch = [p for p in stream.next() for _ in range(g.group_size)]
        ro = collect(policy, ref, tokenizer, batch, params, reward, gen, cfg.rollout.temperature)
        ro, _ = gather_rollout(ro, None, tokenizer.pad_token_id)  # every rank's groups, in rank order
        r = ro.score - cfg.rollout.eos_penalty * (~ro.finished).float()  # the EOS trick, as PPO's
        adv = group_advantages(r, g.group_size, g.baseline, g.scale_std)
        metrics = update(trainee, optimizer, ro, adv, cfg, gen)
        if tracker.step(step, ro, seq_kl(ro), metrics, policy):
            say(f"{stage}: stopping at step {step} on the overoptimisation alarm")
            break
        if g.save_every and step % g.save_every == 0:
            save_checkpoint(out, step, policy, tokenizer, state, stream, gen, tracker)
    tracker.finalize(policy)
    save_final(policy, tokenizer, out)
    summary = {**tracker.summary(), "wall_s": round(time.time() - t0, 1)}
    write_json(out / "summary.json", summary)
    say(f"{stage}: proxy {summary['start']['proxy_reward']:.3f} -> {summary['end']['proxy_reward']:.3f}, "
        f"KL {summary['end']['kl']:.2f}, {summary['wall_s']}s")
    return out / "model"


def update(policy, optimizer, ro, adv, cfg: Config, gen) -> dict:
    """Policy-gradient epochs over shuffled minibatches; under N processes a minibatch is N x --grpo.minibatch
    rows of the whole batch, split across the ranks (rl/distributed.py)."""
    g, P, T = cfg.grpo, ro.prompt_len, cfg.rollout.temperature
    policy.train()
    sums: dict[str, float] = {}
    n = 0
    for _ in range(g.epochs):
        for idx in batch_iter(len(ro.prompts), g.minibatch * world()[1], gen):
            units = ro.response_mask[idx].sum(-1) if g.level == "token" else torch.ones(len(idx))
            idx, w = shard(idx, units)  # this rank's rows and its share of what the loss averages over
            mask = ro.response_mask[idx]
            logp, logits = forward_logprobs(policy, ro.sequences[idx], ro.attention_mask[idx], P, T)
            loss, clipfrac, kl = grpo_loss(logp, ro.logp[idx], adv[idx], mask, g.clip,
                                           ref_logp=ro.ref_logp[idx] if g.kl_coef else None,
                                           kl_coef=g.kl_coef, level=g.level)
            optimizer.zero_grad(set_to_none=True)
            (w * loss).backward()
            torch.nn.utils.clip_grad_norm_(policy.parameters(), g.max_grad_norm)
            optimizer.step()
            with torch.no_grad():
                ent = masked_mean(entropy_from_logits(logits), mask)
            for k, v in dict(policy_loss=loss, clipfrac=clipfrac, kl_k3=kl, entropy=ent).items():
                sums[k] = sums.get(k, 0.0) + w * float(v.detach())
            n += 1
    return {k: v / max(n, 1) for k, v in mean_over_ranks(sums).items()}
