"""What every benchmark case shares: the run context, fixtures (world data, tokenizer, models), step clocks
for both sides, per-side peak memory, TRL's common settings, and the result row.

Fixtures are built once per `benchmarks.run` invocation in its work folder and reused by the case
subprocesses, so a case's time is spent on the thing it measures.
"""

from __future__ import annotations

import copy
import json
import time
from dataclasses import dataclass
from pathlib import Path

import torch

VOCAB = 1024  # the pretrain stage's default BPE size

# A ~27M-parameter Llama (27.8M at vocab 1024): the yardstick for training MFU.
LM_27M = dict(hidden_size=512, num_hidden_layers=8, num_attention_heads=8, intermediate_size=1536)


@dataclass
class Ctx:
    """One case's run: `mode` picks the sizes (smoke < quick < full); fixtures live under `workdir`;
    `threads` is the torch thread count asked for (0 = torch's default)."""

    mode: str
    workdir: Path
    threads: int = 0

    def pick(self, smoke, quick, full):
        return {"smoke": smoke, "quick": quick, "full": full}[self.mode]

    @property
    def rounds(self) -> int:
        """How many times each side of a training case runs (alternating); the best round counts."""
        return self.pick(1, 2, 3)


# ---------------------------------------------------------------------------------------------- fixtures


def world(ctx: Ctx) -> dict[str, Path]:
    """The built-in world's files (size `tiny`: 2000 demonstrations, 1500 RL prompts), exported once."""
    from rlhfkit.world import export

    out = ctx.workdir / "world"
    names = {"pretrain": "pretrain.jsonl", "sft": "sft.jsonl", "rl": "rl_prompts.jsonl"}
    if not (out / "world.json").exists():
        export(out, seed=0, size="tiny")
    return {k: out / v for k, v in names.items()}


def tokenizer(ctx: Ctx):
    """A byte-level BPE trained on the world's pretraining text, as `rlhfkit pretrain` makes it."""
    from rlhfkit.data.tokenizer import load_tokenizer, train_bpe

    path = ctx.workdir / "tokenizer"
    if not (path / "tokenizer.json").exists():
        texts = [json.loads(line)["text"] for line in world(ctx)["pretrain"].read_text().splitlines()]
        train_bpe(texts[:4000], vocab_size=VOCAB, out=path)
    return load_tokenizer(path)


def conversations(ctx: Ctx) -> list[list[dict]]:
    """The world's SFT demonstrations (single-turn user/assistant), in file order."""
    rows = [json.loads(line) for line in world(ctx)["sft"].read_text().splitlines()]
    return [r["messages"] for r in rows]


def preferences(ctx: Ctx, n: int) -> list[tuple[str, str, str]]:
    """n (prompt, chosen, rejected) with distinct prompts: chosen is the prompt's demonstration, rejected the
    next prompt's (a fluent answer to the wrong question), so lengths are realistic."""
    seen, items = set(), []
    for msgs in conversations(ctx):
        prompt, answer = msgs[-2]["content"], msgs[-1]["content"]
        if prompt not in seen:
            seen.add(prompt)
            items.append((prompt, answer))
    items = items[:n + 1]
    return [(p, c, items[i + 1][1]) for i, (p, c) in enumerate(items[:-1])][:n]


def rl_prompts(ctx: Ctx) -> list[str]:
    return [json.loads(line)["prompt"] for line in world(ctx)["rl"].read_text().splitlines()]


def build_lm(tok, size: str | dict = "tiny", seed: int = 0, context: int = 256):
    """A fresh Llama: a `rlhfkit.model` preset name or a dict of LlamaConfig sizes (e.g. LM_27M)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from rlhfkit.model.causal_lm import build_causal_lm

    torch.manual_seed(seed)
    if isinstance(size, str):
        return build_causal_lm(tok, size, context=context)
    cfg = LlamaConfig(vocab_size=len(tok), max_position_embeddings=context, tie_word_embeddings=True,
                      pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                      rms_norm_eps=1e-5, **size)
    return LlamaForCausalLM(cfg)


def twin(model):
    """An independent copy with identical weights: each side trains its own."""
    return copy.deepcopy(model)


def matmul_params(model) -> int:
    """Parameters that take part in matmuls (every Linear, the LM head included; embedding lookups excluded)."""
    return sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))


# ---------------------------------------------------------------------------------------------- measuring


def reset_peak_rss() -> None:
    """Reset this process's peak RSS (Linux: writing 5 to clear_refs resets VmHWM), so each side of a case
    reports its own peak; a no-op elsewhere."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def peak_rss_mb() -> float:
    """Peak resident memory since the last reset (VmHWM), or the process's lifetime peak where unsupported."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    import resource

    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


class Clock:
    """Step-end timestamps. Throughput counts only the steps after `warmup` and the time between the end of
    step `warmup` and the end of the last one, so everything a step does (data, logging, the optimizer)
    is timed, and one-off setup is not."""

    def __init__(self):
        self.ends: list[float] = []

    def tick(self) -> None:
        self.ends.append(time.perf_counter())

    def rate(self, units: list[float], warmup: int) -> float:
        """Units per second over steps warmup+1..n; units[i] = work done by step i."""
        if len(self.ends) <= warmup or len(units) != len(self.ends):
            raise ValueError(f"{len(self.ends)} steps timed, {len(units)} unit counts, warmup {warmup}")
        start = self.ends[warmup - 1] if warmup else self.ends[0]
        done = units[warmup:] if warmup else units[1:]
        return sum(done) / max(self.ends[-1] - start, 1e-9)


def alternate(rounds: int, ours, theirs) -> tuple[dict, dict]:
    """Run ours(), theirs(), ours(), ... `rounds` times each, so both sides see the same load on a shared
    machine. Returns each side's first result (its losses) with the best "rate" and the largest "rss"."""
    results: dict[str, list[dict]] = {"ours": [], "theirs": []}
    for _ in range(rounds):
        results["ours"].append(ours())
        results["theirs"].append(theirs(results["ours"][0]))
    out = []
    for runs in results.values():
        best = dict(runs[0])
        best.update(rate=max(r["rate"] for r in runs), rss=max(r["rss"] for r in runs),
                    rates=[round(r["rate"], 3) for r in runs])
        out.append(best)
    return out[0], out[1]


def hf_clock(clock: Clock):
    """A transformers TrainerCallback that ticks `clock` at every optimizer step's end."""
    from transformers import TrainerCallback

    class _Tick(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            clock.tick()

    return _Tick()


def recording(trainer_cls):
    """`trainer_cls` with every training loss kept (detached) in `.bench_losses`: TRL logs losses rounded
    and averaged over logging steps, too coarse to check that two trainers agree."""

    class Recording(trainer_cls):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            out = super().compute_loss(model, inputs, return_outputs=return_outputs,
                                       num_items_in_batch=num_items_in_batch)
            if model.training:
                self.bench_losses.append((out[0] if return_outputs else out).detach())
            return out

    Recording.__name__ = trainer_cls.__name__
    return Recording


def trl_args(config_cls, out: Path, steps: int, batch_size: int, lr: float, **kw):
    """TRL/transformers settings that make its trainer do the same math as rlhfkit's `Trainer`: AdamW
    (β2 0.95, ε 1e-8, decay 0.1 on matrices), constant LR, clip 1.0, fp32, no gradient checkpointing,
    data in order; no saving, reporting or progress bars. `kw` adds or overrides settings."""
    settings = dict(
        output_dir=str(out), per_device_train_batch_size=batch_size, max_steps=steps, learning_rate=lr,
        lr_scheduler_type="constant", warmup_steps=0, weight_decay=0.1, adam_beta1=0.9, adam_beta2=0.95,
        adam_epsilon=1e-8, max_grad_norm=1.0, bf16=False, fp16=False, activation_checkpointing=False, use_cpu=True,
        report_to=[], save_strategy="no", train_sampling_strategy="sequential", disable_tqdm=True, seed=0,
        dataloader_num_workers=0)
    return config_cls(**{**settings, **kw})


def train_peer(trainer, units: list[float], warmup: int) -> dict:
    """Train a `recording` peer trainer quietly, ticking a `Clock` at every optimizer step. Returns its rate
    (`Clock.rate(units, warmup)`), per-step losses and the peak RSS of training. The clock is read here, after
    `train()`, so no caller can read it before the steps it times have run."""
    clock = Clock()
    trainer.add_callback(hf_clock(clock))
    trainer.bench_losses = []
    quiet(trainer)
    reset_peak_rss()
    trainer.train()
    rss = peak_rss_mb()
    return {"rate": clock.rate(units, warmup), "losses": [float(x) for x in trainer.bench_losses], "rss": rss}


def quiet(trainer):
    """Drop transformers' stdout printer (it prints the log dict every logging step)."""
    from transformers.trainer_callback import PrinterCallback

    trainer.remove_callback(PrinterCallback)
    return trainer


def rlhfkit_optim(steps: int, batch_size: int, lr: float):
    """The rlhfkit OptimConfig matching `trl_args`: constant LR (no warmup, min ratio 1)."""
    from rlhfkit.training import OptimConfig

    return OptimConfig(lr=lr, min_lr_ratio=1.0, warmup_steps=0, weight_decay=0.1, beta2=0.95, max_steps=steps,
                       batch_size=batch_size, clip=1.0, eval_every=10**9, save_every=10**9)


# ---------------------------------------------------------------------------------------------- results


def losses_agree(ours: list[float], theirs: list[float], rtol: float = 2e-3) -> tuple[bool, str]:
    """Final losses equal within rtol (relative, floor 1 nat); the note gives both and the worst step."""
    theirs = [float(x) for x in theirs]
    if not ours or len(ours) != len(theirs):
        return False, f"loss trajectories differ in length ({len(ours)} vs {len(theirs)})"
    worst = max(abs(a - b) for a, b in zip(ours, theirs))
    ok = abs(ours[-1] - theirs[-1]) <= rtol * max(1.0, abs(theirs[-1]))
    return ok, (f"final loss {ours[-1]:.5f} vs {theirs[-1]:.5f} (tolerance {rtol:g} relative); "
                f"largest per-step gap {worst:.2e} over {len(ours)} steps")


def row(case: str, rlhfkit: float | None, peer: float | None, unit: str, goal: str, losses_match: bool | None,
        peak_rss_mb: float | dict | None, notes: str, higher_is_faster: bool = True, **extra) -> dict:
    """One result row; ratio > 1 means rlhfkit is faster (for time units, peer / rlhfkit)."""
    ratio = None
    if rlhfkit and peer:
        ratio = round(rlhfkit / peer if higher_is_faster else peer / rlhfkit, 3)
    return {"case": case, "rlhfkit": _round(rlhfkit), "peer": _round(peer), "unit": unit, "ratio": ratio,
            "goal": goal, "losses_match": losses_match, "peak_rss_mb": peak_rss_mb, "notes": notes, **extra}


def _round(x):
    return None if x is None else round(float(x), 3 if abs(x) < 100 else 1)
