"""Reward model: rlhfkit's reward step (`stages.reward.make_batch` + `train_step` + `training.Trainer`) vs TRL
`RewardTrainer`, on pairwise preferences.

    python -m benchmarks.run --cases reward

One tiny Llama body serves both: rlhfkit wraps it in a `ScalarModel` (linear head with a bias that the
Bradley-Terry loss never moves), TRL gets it as `LlamaForSequenceClassification` with the same head
weights. Pairs in file order, batch 16 pairs (32 sequences), constant LR. Throughput = pairs per second.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch

from . import common as C

LR = 3e-4


def sizes(ctx: C.Ctx) -> dict:
    return ctx.pick(smoke=dict(steps=3, batch=4, warmup=1, model="ci"),
                    quick=dict(steps=12, batch=16, warmup=2, model="tiny"),
                    full=dict(steps=40, batch=16, warmup=4, model="tiny"))


def models(base):
    """(rlhfkit ScalarModel, TRL sequence classifier) with the same body and head weights."""
    from transformers import LlamaForSequenceClassification

    from rlhfkit.model.scalar import ScalarModel

    torch.manual_seed(0)  # the head's initialisation: every call gives the same pair
    ours = ScalarModel.from_causal_lm(C.twin(base))
    cfg = base.config.__class__(**{**base.config.to_dict(), "num_labels": 1})
    theirs = LlamaForSequenceClassification(cfg)
    theirs.model.load_state_dict(ours.backbone.state_dict())
    with torch.no_grad():
        theirs.score.weight.copy_(ours.head.weight)
    return ours, theirs


def run_rlhfkit(model, tok, pairs, s: dict, out: Path) -> dict:
    from rlhfkit.data.formats import load_rankings
    from rlhfkit.model.reward_scorer import encode
    from rlhfkit.stages import reward
    from rlhfkit.training import BatchStream, Trainer

    out.mkdir(parents=True, exist_ok=True)
    cfg = reward.Config()
    items = reward.group_items(load_rankings([{"prompt": p, "chosen": c, "rejected": r} for p, c, r in pairs]))
    keys = {(r.prompt, x) for it in items for r in it.rankings for x in r.responses}
    cache = {k: encode(tok, *k, 256) for k in keys}  # as reward.run: every text tokenised once, up front
    stream = BatchStream(items, s["batch"], seed=0, shuffle=False)
    trainer = Trainer(model, C.rlhfkit_optim(s["steps"], s["batch"], LR), out, tok, stage="reward")
    clock, losses, units = C.Clock(), [], []
    C.reset_peak_rss()
    while trainer.step_count < s["steps"]:  # reward.train_member, without the held-out evaluations
        batches = [reward.make_batch(stream.next(), cfg.margin)]
        metrics = trainer.step(lambda b: reward.train_step(model, b, cache, tok.pad_token_id, cfg), batches)
        trainer.logger.log(trainer.step_count, member=0, **metrics)
        losses.append(metrics["loss"])
        units.append(len(batches[0].pairs))
        clock.tick()
    return {"rate": clock.rate(units, s["warmup"]), "losses": losses, "rss": C.peak_rss_mb(), "units": units}


def run_trl(model, tok, pairs, s: dict, out: Path, units: list[int]) -> dict:
    import datasets
    import trl

    datasets.disable_progress_bars()
    rows = [{"prompt": [{"role": "user", "content": p}], "chosen": [{"role": "assistant", "content": c}],
             "rejected": [{"role": "assistant", "content": r}]} for p, c, r in pairs]
    args = C.trl_args(trl.RewardConfig, out, s["steps"], s["batch"], LR, center_rewards_coefficient=None,
                      max_length=None, logging_steps=10)
    trainer = C.recording(trl.RewardTrainer)(model=model, args=args, processing_class=tok,
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
            ctx.rounds, lambda: run_rlhfkit(models(base)[0], tok, pairs, s, Path(tempfile.mkdtemp(dir=tmp))),
            lambda o: run_trl(models(base)[1], tok, pairs, s, Path(tempfile.mkdtemp(dir=tmp)), o["units"]))
    ok, note = C.losses_agree(ours["losses"], theirs["losses"])
    return [C.row("reward", ours["rate"], theirs["rate"], "pairs/s", "≥ 1.3× TRL RewardTrainer", ok,
                  {"rlhfkit": ours["rss"], "peer": theirs["rss"]},
                  f"TRL {trl.__version__} RewardTrainer; {s['model']} Llama, {s['batch']} pairs per step, "
                  f"{s['steps']} steps ({s['warmup']} untimed), best of {ctx.rounds} alternating rounds; {note}",
                  rates={"rlhfkit": ours["rates"], "peer": theirs["rates"]})]
