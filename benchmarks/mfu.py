"""Training MFU: achieved FLOP/s of a training step ÷ this machine's fp32 matmul peak, measured in the run.

    python -m benchmarks.run --cases mfu

rlhfkit's pretraining step (`stages.pretrain.pack` blocks + `_lm.lm_step` + `training.Trainer`) vs a plain
transformers `Trainer` on the same HF Llama computing its own loss ("HF eager"), for the `tiny` preset
(batch 16 × 256 tokens, as `rlhfkit pretrain --preset tiny`) and a ~27M-parameter Llama (batch 8 × 256).

FLOPs per step (Kaplan et al. 2020; PaLM appendix B): 6·N·tokens for the matmul parameters N (every
Linear, LM head included, embedding lookup excluded) plus 12·layers·d_model·T·tokens for attention
scores and values, forward and backward. The peak is the best fp32 matmul rate among a few square sizes,
with the same thread count, timed just before the case.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import torch

from . import common as C

LR = 1e-3


def sizes(ctx: C.Ctx) -> list[dict]:
    return ctx.pick(
        smoke=[dict(name="ci", model="ci", batch=2, T=32, steps=3, warmup=1)],
        quick=[dict(name="tiny", model="tiny", batch=16, T=256, steps=6, warmup=2),
               dict(name="27m", model=C.LM_27M, batch=8, T=256, steps=4, warmup=1)],
        full=[dict(name="tiny", model="tiny", batch=16, T=256, steps=20, warmup=4),
              dict(name="27m", model=C.LM_27M, batch=8, T=256, steps=10, warmup=2)])


def matmul_peak(sizes=(1024, 2048, 3072), reps: int = 5) -> float:
    """Best fp32 FLOP/s of square matmuls (2n³ FLOPs each)."""
    best = 0.0
    for n in sizes:
        a, b = torch.randn(n, n), torch.randn(n, n)
        a @ b
        for _ in range(reps):
            t = time.perf_counter()
            a @ b
            best = max(best, 2 * n**3 / (time.perf_counter() - t))
    return best


def step_flops(model, batch: int, T: int) -> float:
    cfg = model.config
    tokens = batch * T
    return 6 * C.matmul_params(model) * tokens + 12 * cfg.num_hidden_layers * cfg.hidden_size * T * tokens


def run_rlhfkit(model, tok, blocks, s: dict, out: Path) -> dict:
    from rlhfkit.lm import lm_step
    from rlhfkit.training import BatchStream, Trainer

    out.mkdir(parents=True, exist_ok=True)
    stream = BatchStream(list(blocks), s["batch"], seed=0, shuffle=False)
    trainer = Trainer(model, C.rlhfkit_optim(s["steps"], s["batch"], LR), out, tok, stage="pretrain")
    clock, losses = C.Clock(), []
    C.reset_peak_rss()
    while trainer.step_count < s["steps"]:  # pretrain.train_loop, without the held-out evaluations
        batches = [torch.stack(stream.next())]
        metrics = trainer.step(lambda b: lm_step(model, b, None), batches)
        trainer.logger.log(trainer.step_count, **metrics)
        losses.append(metrics["loss"])
        clock.tick()
    return {"rate": clock.rate([1.0] * s["steps"], s["warmup"]), "losses": losses, "rss": C.peak_rss_mb()}


def run_hf(model, tok, blocks, s: dict, out: Path) -> dict:
    import datasets
    from transformers import Trainer, TrainingArguments

    datasets.disable_progress_bars()
    data = datasets.Dataset.from_list([{"input_ids": b.tolist(), "labels": b.tolist()} for b in blocks])
    args = C.trl_args(TrainingArguments, out, s["steps"], s["batch"], LR, logging_steps=10)
    trainer = C.recording(Trainer)(model=model, args=args, train_dataset=data)
    return C.train_peer(trainer, [1.0] * s["steps"], s["warmup"])


def run(ctx: C.Ctx) -> list[dict]:
    import json

    from rlhfkit.stages.pretrain import pack

    tok = C.tokenizer(ctx)
    texts = [json.loads(line)["text"] for line in C.world(ctx)["pretrain"].read_text().splitlines()]
    rows = []
    for s in sizes(ctx):
        blocks = pack(tok, texts[:3000], s["T"])[: s["steps"] * s["batch"]]
        base = C.build_lm(tok, s["model"], context=s["T"])
        flops = step_flops(base, s["batch"], s["T"])
        peak = matmul_peak()
        with tempfile.TemporaryDirectory() as tmp:
            ours, theirs = C.alternate(
                ctx.rounds, lambda: run_rlhfkit(C.twin(base), tok, blocks, s, Path(tempfile.mkdtemp(dir=tmp))),
                lambda o: run_hf(C.twin(base), tok, blocks, s, Path(tempfile.mkdtemp(dir=tmp))))
        ok, note = C.losses_agree(ours["losses"], theirs["losses"])
        mfu = {k: 100 * v["rate"] * flops / peak for k, v in (("rlhfkit", ours), ("peer", theirs))}
        tps = {k: v["rate"] * s["batch"] * s["T"] for k, v in (("rlhfkit", ours), ("peer", theirs))}
        n = sum(p.numel() for p in base.parameters())
        rows.append(C.row(f"mfu-{s['name']}", mfu["rlhfkit"], mfu["peer"], "% of fp32 peak",
                          "≥ 55% of peak (HF eager ≈ 41%)" if s["name"] == "27m" else "", ok,
                          {"rlhfkit": ours["rss"], "peer": theirs["rss"]},
                          f"vs transformers Trainer (HF eager loss); {n / 1e6:.1f}M params, "
                          f"batch {s['batch']}×{s['T']}, "
                          f"{flops / 1e9:.1f} GFLOP/step; measured peak {peak / 1e9:.0f} GFLOP/s; "
                          f"{tps['rlhfkit']:,.0f} vs {tps['peer']:,.0f} tokens/s; {s['steps']} steps "
                          f"({s['warmup']} untimed), best of {ctx.rounds} alternating rounds; {note}",
                          rates={"rlhfkit": ours["rates"], "peer": theirs["rates"]}, peak_gflops=round(peak / 1e9, 1)))
    return rows
