"""What the RL stages (PPO, GRPO, RLOO) share: rollout/monitor config groups, prompt loading, the
policy + frozen reference, per-step monitoring, keeping the best-by-gold policy, and resumable
checkpoints (`save_checkpoint` / `resume`)."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import torch

from .. import checkpoint
from ..common import MetricsLogger, StageError, is_main_process, main_process_first, say
from ..config import opt
from ..rl.engine import SamplingParams
from ..rl.monitors import ADVICE, OveroptimizationMonitor, cross_prompt_repeats
from ..rl.rollout import Rollout
from ..training import BatchStream, resume_from


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
    on_alarm: str = opt("warn", "warn (log only), stop (end training), or keep_best (continue; save the best-by-gold "
                        "policy)", choices=("warn", "stop", "keep_best"))
    keep_best: bool = opt(True, "save the policy with the best gold reward (when gold is available)")


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


class RLTracker:
    """Per-step metrics, the overoptimisation monitor, and the best-by-gold policy."""

    def __init__(self, out: Path, mcfg: MonitorConfig, stage: str):
        self.logger = MetricsLogger(out, stage=stage)
        self.mcfg = mcfg
        self.monitor = OveroptimizationMonitor(mcfg.window, mcfg.kl_budget, mcfg.length_drift, mcfg.repeat_drift)
        self.best_gold, self.best_step, self.best_state = None, None, None
        self.history: list[dict] = []
        self.announced: set[str] = set()

    def step(self, step: int, ro: Rollout, kl_seq: float, metrics: dict, policy) -> bool:
        """Log one RL step; returns True when training should stop."""
        gold = float(ro.gold.mean()) if ro.gold is not None else None
        row = {"proxy_reward": float(ro.score.mean()), "gold_reward": gold, "kl": kl_seq,
               "response_length": float(ro.lengths.mean()), "finish_rate": float(ro.finished.float().mean()),
               "ensemble_std": float(ro.score_std.mean()),
               "repeated_answers": cross_prompt_repeats(ro.prompts, ro.responses), **metrics}
        alarm = self.monitor.update(step, row["proxy_reward"], gold, kl_seq, row["response_length"],
                                    row["repeated_answers"])
        row["alarm"] = alarm
        self.history.append(self.logger.log(step, **row))
        if gold is not None and self.mcfg.keep_best and (self.best_gold is None or gold > self.best_gold):
            self.best_gold, self.best_step = gold, step
            self.best_state = copy.deepcopy(policy.state_dict())
        if alarm:
            self._announce(step, alarm)
        return bool(alarm) and self.mcfg.on_alarm == "stop"

    def _announce(self, step: int, alarm: str) -> None:
        """Each kind of alarm is printed once, with what to do; every firing is in metrics.jsonl ("alarm")."""
        kind = self.monitor.alarms[-1]["kind"]
        if kind in self.announced:
            return
        self.announced.add(kind)
        say(f"step {step}: ALARM {alarm}. What to do: {ADVICE[kind]}. Later '{kind}' alarms are recorded in "
            f"metrics.jsonl and summary.json, not printed.")

    def state(self) -> dict:
        """Everything a resumed run needs to log, alarm and keep the best policy as an uninterrupted one."""
        return {"history": self.history, "monitor": dict(vars(self.monitor)), "best_gold": self.best_gold,
                "best_step": self.best_step, "best_state": self.best_state}

    def load(self, state: dict) -> None:
        self.history, self.best_gold, self.best_step = state["history"], state["best_gold"], state["best_step"]
        self.best_state = state["best_state"]
        vars(self.monitor).update(state["monitor"])
        self.announced = {a.get("kind") for a in self.monitor.alarms}  # printed before the restart

    def summary(self, last: int = 5) -> dict:
        tail = self.history[-last:] or [{}]

        def mean(key):
            vals = [r[key] for r in tail if r.get(key) is not None]
            return sum(vals) / len(vals) if vals else None

        first = self.history[0] if self.history else {}
        kinds = [a.get("kind") for a in self.monitor.alarms]
        return {"steps": len(self.history), "alarms": self.monitor.alarms,
                "alarm_counts": {k: kinds.count(k) for k in dict.fromkeys(kinds)},
                "start": {k: first.get(k) for k in ("proxy_reward", "gold_reward", "kl", "response_length")},
                "end": {k: mean(k) for k in ("proxy_reward", "gold_reward", "kl", "response_length", "entropy")},
                "best_gold": self.best_gold, "best_step": self.best_step}

    def finalize(self, policy) -> None:
        """Load the best-by-gold weights when asked (keep_best on alarm, or always with on_alarm=keep_best)."""
        use_best = self.mcfg.keep_best and self.best_state is not None and (
            self.mcfg.on_alarm == "keep_best" or self.monitor.alarms)
        if use_best:
            say(f"keeping the best-by-gold policy from step {self.best_step} (gold {self.best_gold:.3f})")
            policy.load_state_dict(self.best_state)


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


def fmt(x) -> str:
    """A summary figure for the log: None (not measured, or NaN: metrics.jsonl writes NaN as null) is n/a."""
    return "n/a" if x is None else f"{x:.3f}"


def seq_kl(ro: Rollout) -> float:
    """Mean over sequences of sum_t (log π − log π_ref): the k1 estimate of KL(π‖π_ref) in nats."""
    return float(((ro.logp - ro.ref_logp) * ro.response_mask).sum(-1).mean())


def batch_iter(n: int, size: int, gen: torch.Generator):
    perm = torch.randperm(n, generator=gen)
    for i in range(0, n, size):
        yield perm[i:i + size]
