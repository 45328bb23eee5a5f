"""SFT: rlhfkit's SFT step (`stages.sft.collate` + `_lm.lm_step` + `training.Trainer`) vs TRL `SFTTrainer`.

    python -m benchmarks.run --cases sft

Same tiny Llama (the `tiny` preset), the world's demonstrations in file order, loss on the assistant
tokens only on both sides (TRL: conversational prompt/completion rows with completion_only_loss, which
renders the same chat template), batch 16, constant LR. Throughput = non-pad tokens per second.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from . import common as C

LR = 5e-4


def sizes(ctx: C.Ctx) -> dict:
    return ctx.pick(smoke=dict(steps=3, batch=4, warmup=1, model="ci"),
                    quick=dict(steps=12, batch=16, warmup=2, model="tiny"),
                    full=dict(steps=40, batch=16, warmup=4, model="tiny"))


def run_rlhfkit(model, tok, convs, s: dict, out: Path) -> dict:
    from rlhfkit.data.chat import render_chat
    from rlhfkit.lm import lm_step
    from rlhfkit.stages.sft import collate
    from rlhfkit.training import BatchStream, Trainer

    out.mkdir(parents=True, exist_ok=True)
    examples = [render_chat(tok, m) for m in convs]  # as sft.load_examples
    stream = BatchStream(examples, s["batch"], seed=0, shuffle=False)
    trainer = Trainer(model, C.rlhfkit_optim(s["steps"], s["batch"], LR), out, tok, stage="sft")
    clock, losses, tokens = C.Clock(), [], []
    C.reset_peak_rss()
    while trainer.step_count < s["steps"]:  # sft.train_loop, without the held-out evaluations
        batches = [collate(stream.next(), tok.pad_token_id)]
        metrics = trainer.step(lambda b: lm_step(model, *b), batches)
        trainer.logger.log(trainer.step_count, **metrics)
        losses.append(metrics["loss"])
        tokens.append(int(batches[0][2].sum()))
        clock.tick()
    return {"rate": clock.rate(tokens, s["warmup"]), "losses": losses, "rss": C.peak_rss_mb(), "tokens": tokens}


def run_trl(model, tok, convs, s: dict, out: Path, tokens: list[int]) -> dict:
    import datasets
    import trl

    datasets.disable_progress_bars()
    rows = [{"prompt": m[:-1], "completion": m[-1:]} for m in convs]
    args = C.trl_args(trl.SFTConfig, out, s["steps"], s["batch"], LR, completion_only_loss=True, max_length=None,
                      packing=False, padding_free=False, logging_steps=10)
    trainer = C.recording(trl.SFTTrainer)(model=model, args=args, processing_class=tok,
                                          train_dataset=datasets.Dataset.from_list(rows))
    # Same rows in the same order and the same padding: the same token counts per step as rlhfkit's.
    return C.train_peer(trainer, tokens, s["warmup"])


def run(ctx: C.Ctx) -> list[dict]:
    s = sizes(ctx)
    tok = C.tokenizer(ctx)
    convs = C.conversations(ctx)[: s["steps"] * s["batch"]]
    base = C.build_lm(tok, s["model"])
    with tempfile.TemporaryDirectory() as tmp:
        ours, theirs = C.alternate(
            ctx.rounds, lambda: run_rlhfkit(C.twin(base), tok, convs, s, Path(tempfile.mkdtemp(dir=tmp))),
            lambda o: run_trl(C.twin(base), tok, convs, s, Path(tempfile.mkdtemp(dir=tmp)), o["tokens"]))
    ok, note = C.losses_agree(ours["losses"], theirs["losses"])
    return [C.row("sft", ours["rate"], theirs["rate"], "tokens/s", "≥ 1.3× TRL SFTTrainer", ok,
                  {"rlhfkit": ours["rss"], "peer": theirs["rss"]},
                  f"TRL {_version()} SFTTrainer; {s['model']} Llama, batch {s['batch']}, {s['steps']} steps "
                  f"({s['warmup']} untimed), best of {ctx.rounds} alternating rounds; {note}",
                  rates={"rlhfkit": ours["rates"], "peer": theirs["rates"]})]


def _version() -> str:
    import trl

    return trl.__version__
