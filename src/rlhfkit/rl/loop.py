"""The RL loop every policy-optimisation stage runs (PPO, GRPO, Dr. GRPO, RLOO):

    for each step:  rollout (sample + score)  →  the algorithm's experience (advantages)  →  its update
                    →  monitor (metrics.jsonl, hacking alarms)  →  checkpoint every N steps

`train(cfg, algo, stage)` owns everything but the algorithm: prompts, policy and frozen reference, reward,
sampling, the hacking monitor, numerical safety of the updates (`UpdateGuard`) and resumable checkpoints.
An algorithm is a small object (stages/ppo.py `PPO`, stages/grpo.py `GRPO`, stages/rloo.py `RLOO`) with:

    steps, save_every, group_size          how long, how often to checkpoint, responses per prompt
    setup(policy, ref, reward) -> Bundle   optimizers and extra models; the Bundle is what a checkpoint holds
    describe() -> str                      one line for the log
    scoring()                              context around a rollout (PPO's --ppo.offload), or nullcontext
    experience(ro, pad_id) -> (ro, exp)    gather across processes, then advantages (and values) for update
    update(ro, exp, gen, guard) -> dict    the optimisation epochs; returns metrics for the step
    extra_state() / load_extra_state(d)    what else a resume needs (PPO's adaptive β)

A stage's Config extends `RLConfig` (out, seed, model, reward and the groups `rollout`, `monitor`, `optim`,
`lora`, resume) with its algorithm's group. Shared config groups, the reward shaping (`shaped_score`) and the minibatch helpers live here too.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch

from .. import checkpoint
from ..common import StageError, is_main_process, main_process_first, prepare_out, progress, say, seed_everything
from ..common import set_threads, write_json
from ..config import group, opt
from ..tracking import report_to_option
from ..model.lora import LoraConfig
from ..training import BatchStream, resume_from
from .engine import SamplingParams
from .rewards import make_reward
from .rollout import Rollout, collect
from .tracker import RLTracker, fmt


@dataclass
class RolloutConfig:
    """Sampling of experience."""

    prompts: str = opt("world", "RL prompt JSONL / dataset folder; 'world' = the built-in world's rl_prompts")
    world_size: str = opt("tiny", "built-in world size when prompts is 'world'", choices=("ci", "tiny", "small"))
    batch_prompts: int = opt(64, "prompts per rollout batch")
    max_new_tokens: int = opt(48, "response length limit (tokens)")
    temperature: float = opt(1.0, "sampling temperature; log-probs are computed at the same temperature")
    eos_penalty: float = opt(1.0, "subtracted from the score of responses that never end (the 'EOS trick')")
    ensemble: str = opt("mean", "how an ensemble reward model's members combine: mean; uwo = mean − coef × "
                        "variance of the members (Coste et al. 2023, uncertainty-weighted optimisation); std = "
                        "mean − coef × std", choices=("mean", "uwo", "std"))
    ensemble_coef: float = opt(0.5, "λ of --rollout.ensemble uwo / std (ignored for mean)")


@dataclass
class UpdateConfig:
    """Precision and numerical safety of the policy/value updates (the supervised stages' --optim names)."""

    mixed_precision: str = opt("no", "autocast the update forwards in bf16 (Accelerate; weights, optimizer and "
                                     "rollout log-probs stay fp32)", choices=("no", "bf16"))
    on_nonfinite: str = opt("skip", "a NaN/inf loss or gradient: skip that minibatch's update and say so, or "
                                    "stop (the last checkpoint in OUT/ckpt is kept)", choices=("skip", "stop"))


@dataclass
class MonitorConfig:
    """Reward-hacking monitors and what to do when they fire."""

    window: int = opt(10, "RL steps in the sliding window of the proxy-vs-gold trend")
    kl_budget: float = opt(8.0, "alarm when mean KL to the reference exceeds this (nats/sequence)")
    length_drift: float = opt(1.0, "alarm when mean length moves more than this fraction from its start")
    repeat_drift: float = opt(0.15, "alarm when the share of responses repeating another prompt's answer word for "
                                    "word rises this much above its first step's (a canned answer for everything)")
    on_alarm: str = opt("warn", "warn (log only), stop (end training), or keep_best (continue; with --monitor."
                        "keep_best, end with the best-by-gold policy)", choices=("warn", "stop", "keep_best"))
    keep_best: bool = opt(False, "experiment option, uses the gold judge (which a real user does not have): on an "
                                 "alarm, end with the policy that scored best on gold during training")


@dataclass
class RLConfig:
    """The fields every RL stage's Config has; a stage adds its algorithm's group (and redefines `out`)."""

    out: str = opt("runs/default/rl", "output folder")
    seed: int = opt(0, "random seed")
    model: str = opt("runs/default/sft/model", "SFT model: the initial policy and the frozen reference")
    reward: str = opt("runs/default/reward", "reward-model folder, 'gold' (the world judge), or module:function")
    rollout: RolloutConfig = group(RolloutConfig)
    monitor: MonitorConfig = group(MonitorConfig)
    optim: UpdateConfig = group(UpdateConfig)
    lora: LoraConfig = group(LoraConfig)
    resume: bool = opt(False, "continue from OUT/ckpt if a complete checkpoint is there")
    report_to: str = report_to_option()


class UpdateGuard:
    """One optimizer step of an RL update, as the supervised Trainer takes it: the forward under Accelerate's
    autocast (`autocast()`), then `step` refuses a non-finite loss or gradient norm (skips the update, or
    stops with --optim.on_nonfinite=stop). Under several processes the loss check is agreed by all ranks
    before the backward, so that every rank skips or runs the same DDP collectives."""

    def __init__(self, cfg: UpdateConfig, stage: str, out: Path):
        from ..common import accelerator

        self.cfg, self.stage, self.out = cfg, stage, out
        self.acc = accelerator(cfg.mixed_precision)
        self.skipped = 0

    def autocast(self):
        return self.acc.autocast()

    def step(self, opt, loss: torch.Tensor, params: list, max_norm: float) -> bool:
        """Backward, clip and step; False (and no change to the weights) when the loss or gradient is NaN/inf."""
        opt.zero_grad(set_to_none=True)
        if not self._finite(loss):
            return self._skip("loss")
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(params, max_norm)
        if not torch.isfinite(norm):  # gradients are all-reduced, so every rank sees the same norm
            opt.zero_grad(set_to_none=True)
            return self._skip("gradient")
        opt.step()
        return True

    def _finite(self, loss: torch.Tensor) -> bool:
        bad = torch.tensor([float(not torch.isfinite(loss.detach()).all())], device=loss.device)
        if self.acc.num_processes > 1:
            bad = self.acc.reduce(bad, reduction="sum")
        return float(bad) == 0

    def _skip(self, what: str) -> bool:
        if self.cfg.on_nonfinite == "stop":
            raise StageError(f"{self.stage}: non-finite {what} in an update; the last checkpoint is kept in "
                             f"{self.out / 'ckpt'} (--optim.on_nonfinite=skip skips such updates)")
        if not self.skipped:
            say(f"{self.stage}: WARNING: non-finite {what} in an update; that minibatch's update is skipped. "
                "Further skips are counted in metrics.jsonl (skipped_updates), not printed. If they recur, "
                "lower the learning rate or check the reward for inf/NaN.")
        self.skipped += 1
        return False


def shaped_score(ro: Rollout, rcfg: RolloutConfig) -> torch.Tensor:
    """The sequence reward every RL stage optimises [B]: the ensemble combined as --rollout.ensemble says
    (a single model's spread is 0, so every form is its score), minus the EOS penalty for responses that
    never end."""
    mean, std, coef = ro.score, ro.score_std, rcfg.ensemble_coef
    score = {"mean": mean, "uwo": mean - coef * std**2, "std": mean - coef * std}[rcfg.ensemble]
    return score - rcfg.eos_penalty * (~ro.finished).float()


def load_prompts(rcfg: RolloutConfig, seed: int, out: Path) -> list[str]:
    from ..data.formats import load_prompts as load

    path = rcfg.prompts
    if path == "world":
        from ..world import export

        with main_process_first():  # the main process writes the built-in world's files, then the others read
            path = export(out / "world", seed=seed, size=rcfg.world_size)["rl"]
    prompts = [r.prompt for r in load(path)]
    if not prompts:
        raise StageError(f"{path}: no prompts")
    return prompts


def load_policy_and_ref(model_dir: str, lora_cfg=None):
    """Tokenizer, policy and frozen reference; with LoRA the reference is the policy with adapters off."""
    from ..data.tokenizer import load_tokenizer
    from ..model import lora
    from ..model.causal_lm import load_causal_lm

    tokenizer = load_tokenizer(model_dir)
    policy = lora.apply(load_causal_lm(model_dir), lora_cfg)
    if lora.is_lora(policy):
        return tokenizer, policy, lora.AdapterOff(policy)
    ref = load_causal_lm(model_dir)
    ref.eval().requires_grad_(False)
    return tokenizer, policy, ref


def sampling_params(rcfg: RolloutConfig) -> SamplingParams:
    return SamplingParams(max_new_tokens=rcfg.max_new_tokens, temperature=rcfg.temperature)


def save_checkpoint(out: Path, step: int, policy, tokenizer, state: checkpoint.Bundle, stream: BatchStream,
                    gen: torch.Generator, tracker: RLTracker, **extra) -> None:
    """OUT/ckpt after `step`: the policy (adapters only under LoRA), `state` (optimizers, value model), the
    prompt stream's position, the sampling generator, RNGs, the tracker (history, monitor, best policy) and
    `extra` (e.g. PPO's adaptive β). Written atomically (checkpoint.atomic_dir)."""
    if is_main_process():
        checkpoint.save_state(out / "ckpt", policy, tokenizer, state, None, step, stream.state(),
                              extra={"generator": gen.get_state(), "tracker": tracker.state(), **extra})


def resume(out: Path, policy, state: checkpoint.Bundle, stream: BatchStream, gen: torch.Generator,
           tracker: RLTracker) -> tuple[int, dict]:
    """Restore what `save_checkpoint` wrote; returns (steps done, extra), or (0, {}) when there is no complete
    checkpoint (training.resume_from, which also drops the metrics rows that will be redone)."""
    saved = resume_from(out / "ckpt", policy, state, None, stream, tracker.logger.path)
    if saved is None:
        return 0, {}
    gen.set_state(saved["extra"]["generator"])
    tracker.load(saved["extra"]["tracker"])
    return saved["step"], saved["extra"]


def seq_kl(ro: Rollout) -> float:
    """Mean over sequences of sum_t (log π − log π_ref): the k1 estimate of KL(π‖π_ref) in nats."""
    return float(((ro.logp - ro.ref_logp) * ro.response_mask).sum(-1).mean())


def batch_iter(n: int, size: int, gen: torch.Generator):
    perm = torch.randperm(n, generator=gen)
    for i in range(0, n, size):
        yield perm[i:i + size]


def train(cfg, algo, stage: str):
    """Run `algo` for algo.steps RL steps (from the last checkpoint with cfg.resume). Returns (out folder, the
    trained policy, its tokenizer); the stage saves the policy (lm.py save_final)."""
    set_threads()
    seed_everything(cfg.seed)
    out = prepare_out(cfg.out, cfg)
    t0 = time.time()
    prompts = load_prompts(cfg.rollout, cfg.seed, out)
    tokenizer, policy, ref = load_policy_and_ref(cfg.model, cfg.lora)
    reward = make_reward(cfg.reward)
    state = algo.setup(policy, ref, reward)
    tracker = RLTracker(out, cfg.monitor, stage)
    guard = UpdateGuard(cfg.optim, stage, out)
    stream = BatchStream(prompts, cfg.rollout.batch_prompts, cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    params = sampling_params(cfg.rollout)
    done, extra = resume(out, policy, state, stream, gen, tracker) if cfg.resume else (0, {})
    algo.load_extra_state(extra)
    say(f"{stage}: {len(prompts)} prompts x {algo.group_size} samples, reward={cfg.reward}, {algo.describe()}")
    for step in progress(range(done + 1, algo.steps + 1), desc=stage):
        batch = [p for p in stream.next() for _ in range(algo.group_size)]
        with algo.scoring():
            ro = collect(policy, ref, tokenizer, batch, params, reward, gen, cfg.rollout.temperature)
        ro, exp = algo.experience(ro, tokenizer.pad_token_id)
        metrics = algo.update(ro, exp, gen, guard)
        if tracker.step(step, ro, seq_kl(ro), metrics, policy):
            say(f"{stage}: stopping at step {step} on the overoptimisation alarm")
            break
        if algo.save_every and step % algo.save_every == 0:
            save_checkpoint(out, step, policy, tokenizer, state, stream, gen, tracker, **algo.extra_state())
    tracker.finalize(policy)
    summary = {**tracker.summary(), "skipped_updates": guard.skipped, "wall_s": round(time.time() - t0, 1)}
    write_json(out / "summary.json", summary)
    start, end = summary["start"], summary["end"]
    say(f"{stage}: proxy {fmt(start['proxy_reward'])} -> {fmt(end['proxy_reward'])}, gold {fmt(start['gold_reward'])} "
        f"-> {fmt(end['gold_reward'])}, KL {fmt(end['kl'])}, {summary['wall_s']}s")
    return out, policy, tokenizer
