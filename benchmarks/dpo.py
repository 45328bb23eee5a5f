"""DPO: rlhfkit's DPO step (`stages.dpo.collate_pairs` + `dpo_loss` + `training.Trainer`) vs TRL `DPOTrainer`.

    python -m benchmarks.run --cases dpo

Both sides compute the frozen reference's log-probs once before training (rlhfkit always does;
TRL with `precompute_ref_log_probs=True`), so a step is one policy forward/backward over [chosen;
rejected]; that precomputation is outside the timed steps on both sides. Sigmoid loss, β 0.1, same
tiny Llama as policy and reference, pairs in file order, batch 16 pairs. Throughput = pairs per second.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from . import common as C

LR = 2e-4
BETA = 0.1


def sizes(ctx: C.Ctx) -> dict:
    return ctx.pick(smoke=dict(steps=3, batch=4, warmup=1, model="ci"),
                    quick=dict(steps=12, batch=16, warmup=2, model="tiny"),
                    full=dict(steps=40, batch=16, warmup=4, model="tiny"))


def run_rlhfkit(model, ref, tok, pairs, s: dict, out: Path) -> dict:
    from rlhfkit.stages import dpo
    from rlhfkit.training import BatchStream, Trainer

    out.mkdir(parents=True, exist_ok=True)
    cfg = dpo.Config(beta=BETA, loss="sigmoid")
    pad = tok.pad_token_id
    examples, _ = dpo.encode_pairs(tok, [(p, c, r, 1.0) for p, c, r in pairs], 256)
    C.reset_peak_rss()
    for e, (c, r) in zip(examples, dpo.compute_ref_logps(ref, examples, cfg.ref_batch_size, pad).tolist()):
        e.ref = (c, r)  # as dpo.attach_ref_logps, without the file cache
    stream = BatchStream(examples, s["batch"], seed=0, shuffle=False)
    trainer = Trainer(model, C.rlhfkit_optim(s["steps"], s["batch"], LR), out, tok, stage="dpo")
    clock, losses, units = C.Clock(), [], []
    while trainer.step_count < s["steps"]:  # dpo.train_loop, without the held-out evaluations
        batches = [dpo.collate_pairs(stream.next(), pad)]
        metrics = trainer.step(lambda b: dpo.dpo_loss(model, b, cfg), batches)
        trainer.logger.log(trainer.step_count, **metrics)
        losses.append(metrics["loss"])
        units.append(len(batches[0]["weight"]))
        clock.tick()
    return {"rate": clock.rate(units, s["warmup"]), "losses": losses, "rss": C.peak_rss_mb(), "units": units}


def run_trl(model, ref, tok, pairs, s: dict, out: Path, units: list[int]) -> dict:
    import datasets
    import trl

    datasets.disable_progress_bars()
    rows = [{"prompt": [{"role": "user", "content": p}], "chosen": [{"role": "assistant", "content": c}],
             "rejected": [{"role": "assistant", "content": r}]} for p, c, r in pairs]
    args = C.trl_args(trl.DPOConfig, out, s["steps"], s["batch"], LR, beta=BETA, loss_type=["sigmoid"],
                      precompute_ref_log_probs=True, precompute_ref_batch_size=32, max_length=None,
                      logging_steps=10)
    trainer = C.recording(trl.DPOTrainer)(model=model, ref_model=ref, args=args, processing_class=tok,
                                          train_dataset=datasets.Dataset.from_list(rows))
    return C.train_peer(trainer, units, s["warmup"])


def run(ctx: C.Ctx) -> list[dict]:
    import trl

    s = sizes(ctx)
    tok = C.tokenizer(ctx)
    pairs = C.preferences(ctx, s["steps"] * s["batch"])
    base = C.build_lm(tok, s["model"])
    with tempfile.TemporaryDirectory() as tmp:
        ours, theirs = C.alternate(
            ctx.rounds,
            lambda: run_rlhfkit(C.twin(base), C.twin(base).eval(), tok, pairs, s, Path(tempfile.mkdtemp(dir=tmp))),
            lambda o: run_trl(C.twin(base), C.twin(base).eval(), tok, pairs, s, Path(tempfile.mkdtemp(dir=tmp)),
                              o["units"]))
    ok, note = C.losses_agree(ours["losses"], theirs["losses"])
    return [C.row("dpo", ours["rate"], theirs["rate"], "pairs/s", "≥ 1.3× TRL DPOTrainer", ok,
                  {"rlhfkit": ours["rss"], "peer": theirs["rss"]},
                  f"TRL {trl.__version__} DPOTrainer (precompute_ref_log_probs); {s['model']} Llama, "
                  f"{s['batch']} pairs per step, {s['steps']} steps ({s['warmup']} untimed), "
                  f"best of {ctx.rounds} alternating rounds; {note}",
                  rates={"rlhfkit": ours["rates"], "peer": theirs["rates"]})]
