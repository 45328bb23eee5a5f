"""The training loop pieces every stage shares: optimizer + warmup/cosine schedule, a resumable
shuffled batch stream, and one `Trainer` step that handles accumulation, clipping, non-finite
losses, metrics and checkpoints. Stages compose these instead of each owning a `fit` loop.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from accelerate.utils import send_to_device

from . import checkpoint
from .common import MetricsLogger, StageError, accelerator, dist_rank_size, is_main_process, say, wait_for_everyone
from .config import opt


@dataclass
class OptimConfig:
    """Optimisation: AdamW with linear warmup then cosine decay to `min_lr_ratio` x lr."""

    lr: float = opt(1e-3, "peak learning rate")
    min_lr_ratio: float = opt(0.1, "final learning rate as a fraction of the peak")
    warmup_steps: int = opt(50, "linear warmup steps")
    weight_decay: float = opt(0.1, "AdamW weight decay (not applied to norms and biases)")
    beta2: float = opt(0.95, "AdamW beta2")
    max_steps: int = opt(1000, "optimizer steps to train for (upper bound when early stopping)")
    batch_size: int = opt(32, "sequences per micro-batch")
    grad_accum: int = opt(1, "micro-batches accumulated per optimizer step")
    clip: float = opt(1.0, "gradient-norm clipping threshold (0 = off)")
    eval_every: int = opt(100, "evaluate held-out loss every N optimizer steps")
    save_every: int = opt(200, "write a resumable checkpoint every N optimizer steps")
    on_nonfinite: str = opt("stop", "what to do on a NaN/inf loss or gradient", choices=("stop", "skip"))
    mixed_precision: str = opt("no", "autocast the forward in bf16 or fp16 (Accelerate; weights and optimizer "
                                     "stay fp32; fp16 needs a GPU)", choices=("no", "bf16", "fp16"))
    fused: bool = opt(False, "fused AdamW: one kernel updates every tensor (same arithmetic as the default "
                             "foreach loop; faster on GPUs, about even on a small CPU)")
    compile: bool = opt(False, "torch.compile the training forward (opt-in: compiling costs tens of seconds "
                               "up front and pays off only on long runs of large models)")


def make_optimizer(model: torch.nn.Module, cfg: OptimConfig):
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (decay if p.dim() >= 2 else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    opt_ = torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, cfg.beta2), eps=1e-8,
                             **({"fused": True} if cfg.fused else {}))
    sched = torch.optim.lr_scheduler.LambdaLR(opt_, lambda s: lr_factor(s, cfg))
    return opt_, sched


def lr_factor(step: int, cfg: OptimConfig) -> float:
    if step < cfg.warmup_steps:
        return (step + 1) / max(1, cfg.warmup_steps)
    progress = (step - cfg.warmup_steps) / max(1, cfg.max_steps - cfg.warmup_steps)
    cosine = 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * cosine


class BatchStream:
    """Shuffled micro-batches over `items`, epoch after epoch, with a resumable position.

    The order of epoch e is a permutation seeded by (seed, e), so restoring {epoch, index} after a
    kill continues with exactly the batches an uninterrupted run would have seen next.

    Under N processes every rank walks the same order, takes a global batch of N x batch_size and keeps
    its contiguous slice: N processes at batch B see the batches one process at N x B would. (The last
    few items of an epoch, fewer than N, are skipped so that no rank gets an empty batch.)
    """

    def __init__(self, items: Sequence[Any], batch_size: int, seed: int, shuffle: bool = True,
                 rank: int | None = None, world_size: int | None = None):
        if not items:
            raise StageError("no training examples")
        self.items, self.batch_size, self.seed, self.shuffle = items, batch_size, seed, shuffle
        env_rank, env_world = dist_rank_size()
        self.rank = env_rank if rank is None else rank
        self.world_size = env_world if world_size is None else world_size
        self.epoch, self.index = 0, 0
        self._order = self._make_order()

    def _make_order(self) -> list[int]:
        order = list(range(len(self.items)))
        if self.shuffle:
            random.Random(self.seed * 1_000_003 + self.epoch).shuffle(order)
        return order

    def next(self) -> list[Any]:
        if len(self._order) - self.index < self.world_size:
            self.epoch, self.index = self.epoch + 1, 0
            self._order = self._make_order()
        chunk = self._order[self.index:self.index + self.batch_size * self.world_size]
        self.index += len(chunk)
        lo, hi = (len(chunk) * r // self.world_size for r in (self.rank, self.rank + 1))  # even split
        return [self.items[i] for i in chunk[lo:hi]]

    def state(self) -> dict:
        return {"epoch": self.epoch, "index": self.index}

    def load(self, state: dict) -> None:
        self.epoch, self.index = state["epoch"], state["index"]
        self._order = self._make_order()


def _row_step(line: str) -> float:
    try:
        return json.loads(line).get("step", 0)
    except json.JSONDecodeError:  # a row cut short by the kill
        return math.inf


def _drop_metrics_after(path: Path, after: float) -> None:
    """Forget metrics rows logged after the checkpoint by a killed run: those steps are redone on resume,
    and keeping both copies would give metrics.jsonl two rows per step."""
    if not path.exists() or not is_main_process():
        return
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    kept = list(lines)
    while kept and _row_step(kept[-1]) > after:  # only the trailing rows
        kept.pop()
    if len(kept) < len(lines):
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text("".join(line + "\n" for line in kept))
        os.replace(tmp, path)


def resume_from(ckpt: Path, model, optimizer, scheduler, stream: BatchStream | None,
                metrics: Path) -> dict | None:
    """Restore the complete checkpoint at `ckpt` (model, optimizer, scheduler, RNG, data position) and forget
    the metrics rows a killed run logged after it; returns its saved state. None when there is no complete
    checkpoint: every step is redone, so every row is forgotten."""
    path = checkpoint.recover(ckpt)
    if path is None:
        _drop_metrics_after(metrics, -math.inf)
        return None
    state = checkpoint.load_state(path, model, optimizer, scheduler)
    if stream is not None and state["data"]:
        stream.load(state["data"])
    _drop_metrics_after(metrics, state["step"])
    say(f"resumed from {path} at step {state['step']}")
    return state


class EarlyStopping:
    """The best weights by a held-out measure, and evaluations without improvement since (patience).

    `better(m, best)` says whether measure `m` improves on `best` (default: a loss lower by more than 1e-4).
    `state()` goes into a checkpoint's extra and `EarlyStopping.resumed(...)` restores it, so a resumed run
    keeps the best weights and the patience count from before the kill."""

    def __init__(self, model, first, step: int, patience: int, better: Callable | None = None):
        self.first = self.best = first
        self.best_step, self.best_state, self.bad = step, copy.deepcopy(model.state_dict()), 0
        self.patience, self.better = patience, better or (lambda m, best: m < best - 1e-4)

    @classmethod
    def resumed(cls, saved: dict, patience: int, better: Callable | None = None) -> EarlyStopping:
        es = cls.__new__(cls)
        es.first, es.best, es.best_step, es.bad = saved["first"], saved["best"], saved["best_step"], saved["bad"]
        es.best_state, es.patience = saved["state"], patience
        es.better = better or (lambda m, best: m < best - 1e-4)
        return es

    def update(self, model, m, step: int) -> None:
        if self.better(m, self.best):
            self.best, self.best_step, self.best_state, self.bad = m, step, copy.deepcopy(model.state_dict()), 0
        else:
            self.bad += 1

    @property
    def stop(self) -> bool:
        return bool(self.patience) and self.bad >= self.patience

    def state(self) -> dict:
        return {"first": self.first, "best": self.best, "best_step": self.best_step, "bad": self.bad,
                "state": self.best_state}


class Trainer:
    """One optimizer step at a time: `step(loss_fn, batches)` runs grad_accum micro-batches.

    `loss_fn(batch) -> (loss, metrics)`; losses are scaled by 1/grad_accum so k x 1 accumulation
    equals 1 x k on equal-sized micro-batches.

    Runs on Accelerate: the model and optimizer go through `prepare` (DDP/FSDP/DeepSpeed under a
    distributed launch, unchanged in one process), the forward under its autocast (`mixed_precision`;
    weights and optimizer state stay fp32), backward and clipping through it (fp16 loss scaling).
    `loss_fn` must run its forward through `trainer.wrapped`, whose forward is what syncs gradients.
    Only the main process writes checkpoints.
    """

    def __init__(self, model, cfg: OptimConfig, out: Path, tokenizer=None, stage: str = "",
                 save_fn: Callable[[Path], None] | None = None):
        self.model, self.cfg, self.out, self.tokenizer = model, cfg, Path(out), tokenizer
        self.acc = accelerator(cfg.mixed_precision)
        self.acc.free_memory()  # drop Accelerate's references to an earlier stage's model and optimizer
        optimizer, self.scheduler = make_optimizer(model, cfg)
        # The scheduler stays unprepared: Accelerate would step it once per process per optimizer step.
        self.wrapped, self.optimizer = self.acc.prepare(model, optimizer)
        if cfg.compile:  # the stages' training forward goes through `wrapped`; weights stay `model`'s
            self.wrapped = torch.compile(self.wrapped)
        self.logger = MetricsLogger(out, stage=stage)
        self.step_count, self.skipped = 0, 0
        self.resumed_extra: dict = {}  # the stage's own state saved with the checkpoint (see save_state)

    def resume(self, stream: BatchStream | None = None) -> bool:
        state = resume_from(self.out / "ckpt", self.model, self.optimizer, self.scheduler, stream, self.logger.path)
        if state is None:  # killed before its first checkpoint
            return False
        self.step_count = state["step"]
        self.skipped = state["extra"].get("skipped", 0)
        self.resumed_extra = state["extra"]
        return True

    def step(self, loss_fn: Callable, batches: list) -> dict:
        self.model.train()
        totals: dict[str, float] = {}
        for i, batch in enumerate(batches):
            # Gradients are all-reduced on the last micro-batch only.
            sync = contextlib.nullcontext() if i == len(batches) - 1 else self.acc.no_sync(self.wrapped)
            with sync:
                with self.acc.autocast():
                    loss, metrics = loss_fn(send_to_device(batch, self.acc.device))
                loss, nonfinite = self._rank_weighted(loss, metrics)
                if nonfinite:
                    return self._nonfinite("loss")
                self.acc.backward(loss / len(batches))
            for k, v in {"loss": loss.item(), **metrics}.items():
                totals[k] = totals.get(k, 0.0) + float(v) / len(batches)
        totals = self._across_ranks(totals)
        params = [p for p in self.model.parameters() if p.grad is not None]
        norm = self.acc.clip_grad_norm_(params, self.cfg.clip if self.cfg.clip > 0 else float("inf"))
        if norm is None:  # DeepSpeed clips inside its engine (configs/zero*.yaml) and reports no norm here
            norm = torch.tensor(float("nan"))
        elif not torch.isfinite(norm):
            return self._nonfinite("gradient")
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step_count += 1
        totals.update(grad_norm=float(norm), lr=self.scheduler.get_last_lr()[0])
        return totals

    def _rank_weighted(self, loss: torch.Tensor, metrics: dict) -> tuple[torch.Tensor, bool]:
        """This rank's loss scaled so DDP's gradient mean equals one process on the union batch, and
        whether any rank's loss is non-finite (all ranks then skip or stop together).

        A per-token mean (metrics["tokens"] reported) is weighted by this rank's share of the tokens:
        N·t_r/Σt · L_r averaged over N ranks is Σ t_r L_r / Σt. Other losses are weighted equally."""
        bad = float(not torch.isfinite(loss))
        if self.acc.num_processes == 1:
            return loss, bool(bad)
        tokens = float(metrics.get("tokens", 1.0))
        shared = self.acc.reduce(torch.tensor([tokens, bad], device=self.acc.device), reduction="sum")
        if shared[1] > 0:
            return loss, True
        return loss * (self.acc.num_processes * tokens / float(shared[0])), False

    def _across_ranks(self, totals: dict) -> dict:
        """Step metrics of the whole global batch: means over ranks (of the rank-weighted loss, so the
        loss is the union batch's), token counts summed."""
        if self.acc.num_processes == 1:
            return totals
        keys = sorted(totals)
        vals = self.acc.reduce(torch.tensor([totals[k] for k in keys], dtype=torch.float64,
                                            device=self.acc.device), reduction="sum")
        n = self.acc.num_processes
        return {k: float(v) if k == "tokens" else float(v) / n for k, v in zip(keys, vals)}

    def _nonfinite(self, what: str) -> dict:
        self.optimizer.zero_grad(set_to_none=True)
        if self.cfg.on_nonfinite == "skip":
            self.skipped += 1
            self.step_count += 1
            return {"skipped": 1}
        raise StageError(f"non-finite {what} at step {self.step_count + 1}; the last good checkpoint is "
                         f"kept in {self.out / 'ckpt'} (set --optim.on_nonfinite=skip to skip such batches)")

    def full_state_dict(self) -> dict | None:
        """The whole model's weights gathered through Accelerate (`get_state_dict`) when the launch shards the
        parameters (FSDP, DeepSpeed ZeRO-3), for the final save; None when every process holds them all (one
        process, DDP, ZeRO-1/2), where save_pretrained reads the model itself. A collective: all ranks call it."""
        from accelerate.utils import DistributedType

        kind = self.acc.distributed_type
        if kind == DistributedType.DEEPSPEED and self.acc.state.deepspeed_plugin.zero_stage == 3 \
                or kind == DistributedType.FSDP:
            return self.acc.get_state_dict(self.wrapped)
        return None

    def save_state(self, stream: BatchStream | None = None, extra: dict | None = None) -> None:
        """Checkpoint (main process; the others wait); `extra` (e.g. early-stopping state) comes back as
        `resumed_extra` after resume."""
        if is_main_process():
            checkpoint.save_state(self.out / "ckpt", self.model, self.tokenizer, self.optimizer,
                                  self.scheduler, self.step_count, stream.state() if stream else None,
                                  extra={"skipped": self.skipped, **(extra or {})})
        wait_for_everyone()
