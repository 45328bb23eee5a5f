"""Stage 2, supervised fine-tuning: teach the pretrained model the assistant format from demonstrations.

    rlhfkit sft --preset tiny --model runs/demo/pretrain/model --out runs/demo/sft

Loss only on assistant tokens (the prompt is context, not a target). Held-out loss is measured every
`eval_every` steps and training stops when it stops improving (`patience`), keeping the best weights:
WORLD_NOTES lesson 1 — an SFT model trained to zero loss collapses diversity, and the reward model
then has nothing to compare.

`--data.pack` packs each batch's conversations into fewer rows (block-diagonal attention, positions
restarting per conversation; tests/stages/test_sft_packing.py checks the logits equal each conversation
alone): the same batches and loss, without computing the padding.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from ..common import (StageError, dist_rank_size, main_process_first, progress, prepare_out, say, seed_everything,
                      set_threads, write_json)
from ..config import group, opt
from ..tracking import report_to_option
from ..model import lora
from ..model.lora import LoraConfig
from ..model.causal_lm import context_length, load_causal_lm
from ..training import BatchStream, EarlyStopping, OptimConfig, Trainer
from ..lm import evaluate_lm, lm_step, save_final


@dataclass
class DataConfig:
    """Demonstrations."""

    path: str = opt("world", "SFT JSONL (messages or prompt/completion) / dataset folder / hub id; "
                             "'world' = the built-in world's demonstrations")
    world_size: str = opt("tiny", "built-in world size when path is 'world'", choices=("ci", "tiny", "small"))
    val_fraction: float = opt(0.1, "fraction of conversations held out for validation loss")
    skip_invalid: bool = opt(False, "skip malformed records (counted) instead of stopping")
    pack: bool = opt(False, "pack each batch's conversations into fewer rows (attention and positions kept "
                            "per conversation): the same loss with less padding")


@dataclass
class Config:
    out: str = opt("runs/default/sft", "output folder")
    seed: int = opt(0, "random seed")
    model: str = opt("runs/default/pretrain/model", "pretrained model to fine-tune (folder or hub id)")
    patience: int = opt(3, "stop after this many evaluations without a better held-out loss (0 = never)")
    resume: bool = opt(False, "continue from OUT/ckpt if a complete checkpoint is there")
    report_to: str = report_to_option()
    data: DataConfig = group(DataConfig)
    optim: OptimConfig = group(OptimConfig)
    lora: LoraConfig = group(LoraConfig)


PRESETS = {
    "ci": {"data": {"world_size": "ci"}, "optim": {"max_steps": 60, "batch_size": 16, "lr": 1e-3,
                                                    "warmup_steps": 5, "eval_every": 20, "save_every": 30}},
    # tiny: held-out loss still fell at step 400 on world v2 (best at 600-675 of 1200 with early stopping)
    "tiny": {"data": {"world_size": "tiny"}, "optim": {"max_steps": 700, "batch_size": 16, "lr": 5e-4,
                                                        "warmup_steps": 20, "eval_every": 25, "save_every": 100}},
    "small": {"data": {"world_size": "small"}, "optim": {"max_steps": 1500, "batch_size": 32, "lr": 3e-4,
                                                          "warmup_steps": 50, "eval_every": 100, "save_every": 250}},
}


def load_examples(cfg: Config, tokenizer, max_len: int, out: Path) -> list[tuple[list[int], list[int]]]:
    from ..data.chat import render_chat
    from ..data.formats import load_sft

    path = cfg.data.path
    if path == "world":
        from ..world import export

        path = export(out / "world", seed=cfg.seed, size=cfg.data.world_size)["sft"]
    convs = load_sft(path, skip_invalid=cfg.data.skip_invalid)
    if getattr(convs, "skipped", 0):
        say(f"sft: skipped {convs.skipped} invalid records (first: {convs.errors[0]})")
    examples, too_long = [], 0
    for c in convs:
        ids, mask = render_chat(tokenizer, c.messages)
        if len(ids) > max_len:
            too_long += 1
            continue
        examples.append((ids, mask))
    if too_long:
        say(f"sft: skipped {too_long} conversations longer than the context ({max_len} tokens)")
    if len(examples) < 2:
        raise StageError(f"{path}: need at least 2 usable conversations, found {len(examples)}")
    return examples


def collate(batch: list[tuple[list[int], list[int]]], pad_id: int):
    """Right-pad to the longest: ids [B, T], loss mask [B, T], attention mask [B, T]."""
    T = max(len(ids) for ids, _ in batch)
    ids = torch.full((len(batch), T), pad_id, dtype=torch.long)
    mask = torch.zeros((len(batch), T), dtype=torch.long)
    attn = torch.zeros((len(batch), T), dtype=torch.long)
    for i, (x, m) in enumerate(batch):
        ids[i, :len(x)] = torch.tensor(x)
        mask[i, :len(m)] = torch.tensor(m)
        attn[i, :len(x)] = 1
    return ids, mask, attn


def collate_packed(batch: list[tuple[list[int], list[int]]], pad_id: int):
    """The batch's conversations packed first-fit-decreasing into rows no longer than the longest one:
    ids, loss mask, attention mask and segment ids [R, T] (R <= B). Same tokens and targets as `collate`,
    so the same loss; `lm_step` keeps each conversation's attention and positions to itself."""
    T = max(len(ids) for ids, _ in batch)
    rows: list[list[int]] = []
    used: list[int] = []  # tokens already in each row
    for i in sorted(range(len(batch)), key=lambda i: -len(batch[i][0])):
        n = len(batch[i][0])
        r = next((r for r, u in enumerate(used) if u + n <= T), None)
        if r is None:
            rows.append([i])
            used.append(n)
        else:
            rows[r].append(i)
            used[r] += n
    ids, mask, attn = (torch.full((len(rows), T), v, dtype=torch.long) for v in (pad_id, 0, 0))
    seg = torch.zeros((len(rows), T), dtype=torch.long)
    for r, members in enumerate(rows):
        at = 0
        for k, j in enumerate(members, 1):
            x, m = batch[j]
            ids[r, at:at + len(x)], mask[r, at:at + len(m)] = torch.tensor(x), torch.tensor(m)
            attn[r, at:at + len(x)], seg[r, at:at + len(x)] = 1, k
            at += len(x)
    return ids, mask, attn, seg


def run(cfg: Config) -> Path:
    from ..data.tokenizer import load_tokenizer

    set_threads()
    seed_everything(cfg.seed)
    out = prepare_out(cfg.out, cfg)
    t0 = time.time()
    tokenizer = load_tokenizer(cfg.model)
    model = lora.apply(load_causal_lm(cfg.model), cfg.lora)
    with main_process_first():  # the main process writes the built-in world's files, then the others read
        examples = load_examples(cfg, tokenizer, context_length(model), out)
    random.Random(cfg.seed).shuffle(examples)
    n_val = max(1, int(len(examples) * cfg.data.val_fraction))
    val, train = examples[:n_val], examples[n_val:]
    val_batches = [collate(val[i:i + 64], tokenizer.pad_token_id) for i in range(0, len(val), 64)]
    stream = BatchStream(train, cfg.optim.batch_size, cfg.seed)
    trainer = Trainer(model, cfg.optim, out, tokenizer, stage="sft")
    if cfg.resume:
        trainer.resume(stream)
    say(f"sft: {len(train)} train / {len(val)} held-out conversations")
    summary = train_loop(trainer, stream, val_batches, model, tokenizer, cfg)
    summary["wall_s"] = round(time.time() - t0, 1)
    save_final(model, tokenizer, out, trainer.full_state_dict(), stage="sft")
    write_json(out / "summary.json", summary)
    say(f"sft: best held-out loss {summary['best_val_loss']:.3f} at step {summary['best_step']} "
        f"({summary['epochs']:.1f} epochs), {summary['wall_s']}s")
    return out / "model"


def train_loop(trainer: Trainer, stream: BatchStream, val_batches, model, tokenizer, cfg: Config) -> dict:
    """Train until max_steps or early stop; leaves the best-by-held-out-loss weights in `model`."""
    ocfg = cfg.optim
    saved = trainer.resumed_extra.get("early_stop")
    if saved:  # resumed: keep the best weights and patience count from before the kill
        es = EarlyStopping.resumed(saved, cfg.patience)
    else:
        es = EarlyStopping(model, evaluate_lm(model, val_batches), trainer.step_count, cfg.patience)
    bar = progress(total=ocfg.max_steps, initial=trainer.step_count, desc="sft")
    while trainer.step_count < ocfg.max_steps:
        make = collate_packed if cfg.data.pack else collate
        batches = [make(stream.next(), tokenizer.pad_token_id) for _ in range(ocfg.grad_accum)]
        metrics = trainer.step(lambda b: lm_step(trainer.wrapped, *b), batches)
        step = trainer.step_count
        if step % ocfg.eval_every == 0 or step == ocfg.max_steps:
            val = evaluate_lm(model, val_batches)
            metrics.update(val_loss=val)
            es.update(model, val, step)
        trainer.logger.log(step, epoch=stream.epoch + stream.index / len(stream.items), **metrics)
        if step % ocfg.save_every == 0:
            trainer.save_state(stream, extra={"early_stop": es.state()})
        bar.update(1)
        if es.stop:
            say(f"sft: held-out loss stopped improving; early stop at step {step}")
            break
    bar.close()
    model.load_state_dict(es.best_state)
    epochs = trainer.step_count * ocfg.batch_size * ocfg.grad_accum * dist_rank_size()[1] / len(stream.items)
    return {"first_val_loss": es.first, "best_val_loss": es.best, "best_step": es.best_step,
            "steps": trainer.step_count, "epochs": epochs, "skipped_batches": trainer.skipped,
            "val_ppl": math.exp(min(es.best, 50))}
