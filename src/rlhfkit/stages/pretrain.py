"""Stage 1, pretraining: train a byte-level BPE and a causal LM from scratch on `{"text"}` documents.

    rlhfkit pretrain --preset tiny --out runs/demo/pretrain
    rlhfkit pretrain --data.path corpus.jsonl --model gpt2 --out runs/cpt   # continue pretraining

Documents are packed into fixed-length blocks (`<|bos|>doc<|end|><|bos|>doc...`); attention crosses
document boundaries inside a block, as in GPT-style pretraining. A base model trained this way
continues documents: it does not answer instructions until SFT (stage 2).

Resume: the data order of each epoch is a permutation seeded by (seed, epoch); the checkpoint stores
{epoch, index} of the batch stream, so `--resume` continues with exactly the next unseen block.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import torch

from ..common import StageError, prepare_out, say, seed_everything, set_threads, write_json
from ..config import group, opt
from ..tracking import report_to_option
from ..model.causal_lm import ModelConfig, build_causal_lm, count_params, load_causal_lm
from ..training import BatchStream, OptimConfig, Trainer
from ..lm import evaluate_lm, lm_step, save_final


@dataclass
class DataConfig:
    """Training text."""

    path: str = opt("world", "text JSONL / saved dataset folder / hub id; 'world' = the built-in world")
    world_size: str = opt("tiny", "built-in world size when path is 'world'", choices=("ci", "tiny", "small"))
    val_fraction: float = opt(0.02, "fraction of blocks held out for validation loss")
    skip_invalid: bool = opt(False, "skip malformed records (counted) instead of stopping")


@dataclass
class Config:
    out: str = opt("runs/default/pretrain", "output folder (model/, ckpt/, metrics.jsonl, config.yaml)")
    seed: int = opt(0, "random seed (data order, init, world)")
    model: str = opt("", "continue pretraining this model (hub id or folder); empty = build from scratch")
    tokenizer: str = opt("", "reuse this tokenizer (folder or hub id); empty = train a BPE on the data")
    vocab_size: int = opt(1024, "BPE vocabulary size when training a tokenizer")
    resume: bool = opt(False, "continue from OUT/ckpt if a complete checkpoint is there")
    report_to: str = report_to_option()
    arch: ModelConfig = group(ModelConfig)
    data: DataConfig = group(DataConfig)
    optim: OptimConfig = group(OptimConfig)


PRESETS = {
    "ci": {"arch": {"size": "ci", "context": 256}, "vocab_size": 512, "data": {"world_size": "ci"},
           "optim": {"max_steps": 120, "batch_size": 16, "lr": 3e-3, "warmup_steps": 10,
                     "eval_every": 60, "save_every": 60}},
    "tiny": {"arch": {"size": "tiny", "context": 256}, "data": {"world_size": "tiny"},
             # 800 steps: the model learns to copy names, words and operands from a question between
             # steps 400 and 800 (world v2 probe); at 400 it answers the right form about the wrong subject.
             "optim": {"max_steps": 800, "batch_size": 16, "lr": 2e-3, "warmup_steps": 30,
                       "eval_every": 200, "save_every": 200}},
    "small": {"arch": {"size": "small", "context": 256}, "vocab_size": 2048, "data": {"world_size": "small"},
              "optim": {"max_steps": 3000, "batch_size": 32, "lr": 1e-3, "warmup_steps": 100,
                        "eval_every": 250, "save_every": 500}},
}


def load_texts(cfg: Config, out: Path) -> list[str]:
    from ..data.formats import load_text

    path = cfg.data.path
    if path == "world":
        from ..world import export

        path = export(out / "world", seed=cfg.seed, size=cfg.data.world_size)["pretrain"]
    texts = load_text(path, skip_invalid=cfg.data.skip_invalid)
    if getattr(texts, "skipped", 0):
        say(f"skipped {texts.skipped} invalid records")
    return list(texts)


def get_tokenizer(cfg: Config, texts: list[str], out: Path):
    from ..data.tokenizer import load_tokenizer, train_bpe

    if cfg.tokenizer:
        return load_tokenizer(cfg.tokenizer)
    if cfg.model:
        return load_tokenizer(cfg.model)
    return train_bpe(texts, vocab_size=cfg.vocab_size, out=out / "tokenizer")


def pack(tokenizer, texts: list[str], block: int) -> torch.Tensor:
    """Concatenate bos + doc + eos and cut into [N, block] rows (the remainder is dropped)."""
    bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    stream: list[int] = []
    for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]:
        stream += bos + ids + [tokenizer.eos_token_id]
    n = len(stream) // block
    if n < 2:
        raise StageError(f"only {len(stream)} tokens of text: need at least {2 * block} for one training "
                         f"and one validation block of {block}")
    return torch.tensor(stream[: n * block]).view(n, block)


def unigram_loss(train: torch.Tensor, val: torch.Tensor, vocab: int) -> float:
    """Cross-entropy (nats/token) of a unigram model (add-one) fitted on train, scored on val."""
    counts = Counter(train.flatten().tolist())
    total = train.numel() + vocab
    return -sum(math.log((counts.get(t, 0) + 1) / total) for t in val.flatten().tolist()) / val.numel()


def run(cfg: Config) -> Path:
    set_threads()
    seed_everything(cfg.seed)
    out = prepare_out(cfg.out, cfg)
    t0 = time.time()
    texts = load_texts(cfg, out)
    tokenizer = get_tokenizer(cfg, texts, out)
    model = load_causal_lm(cfg.model) if cfg.model else build_causal_lm(
        tokenizer, cfg.arch.size, cfg.arch.context, cfg.arch.dropout)
    blocks = pack(tokenizer, texts, cfg.arch.context if not cfg.model else min(cfg.arch.context, 1024))
    n_val = max(1, int(len(blocks) * cfg.data.val_fraction))
    gen = torch.Generator().manual_seed(cfg.seed)
    perm = torch.randperm(len(blocks), generator=gen)
    val, train = blocks[perm[:n_val]], blocks[perm[n_val:]]
    baseline = unigram_loss(train, val, len(tokenizer))
    say(f"pretrain: {len(texts)} docs, {train.numel():,} train tokens, {count_params(model):,} params, "
        f"unigram baseline {baseline:.3f} nats/token")
    stream = BatchStream(list(train), cfg.optim.batch_size, cfg.seed)
    trainer = Trainer(model, cfg.optim, out, tokenizer, stage="pretrain")
    if cfg.resume:
        trainer.resume(stream)
    summary = train_loop(trainer, stream, [val], model, cfg)
    summary.update(unigram_loss=baseline, train_tokens=int(train.numel()), params=count_params(model),
                   wall_s=round(time.time() - t0, 1), tokens_per_s=summary["tokens_seen"] / max(1e-9, summary["train_s"]))
    save_final(model, tokenizer, out, trainer.full_state_dict(), stage="pretrain")
    write_json(out / "summary.json", summary)
    say(f"pretrain: val loss {summary['val_loss']:.3f} (unigram {baseline:.3f}), "
        f"{summary['tokens_per_s']:.0f} tokens/s, {summary['wall_s']}s")
    return out / "model"


def train_loop(trainer: Trainer, stream: BatchStream, val_batches, model, cfg: Config) -> dict:
    from ..common import progress

    ocfg = cfg.optim
    tokens_seen, t_train = 0, time.time()
    val_loss = evaluate_lm(model, val_batches)
    bar = progress(total=ocfg.max_steps, initial=trainer.step_count, desc="pretrain")
    while trainer.step_count < ocfg.max_steps:
        batches = [torch.stack(stream.next()) for _ in range(ocfg.grad_accum)]
        metrics = trainer.step(lambda b: lm_step(trainer.wrapped, b, None), batches)
        tokens_seen += sum(b.numel() for b in batches)
        step = trainer.step_count
        if step % ocfg.eval_every == 0 or step == ocfg.max_steps:
            val_loss = evaluate_lm(model, val_batches)
            metrics.update(val_loss=val_loss, val_ppl=math.exp(min(val_loss, 50)))
        trainer.logger.log(step, **metrics)
        if step % ocfg.save_every == 0:
            trainer.save_state(stream)
        bar.update(1)
        bar.set_postfix(loss=f"{metrics.get('loss', float('nan')):.3f}", val=f"{val_loss:.3f}")
    bar.close()
    return {"val_loss": val_loss, "val_ppl": math.exp(min(val_loss, 50)), "steps": trainer.step_count,
            "tokens_seen": tokens_seen, "train_s": time.time() - t_train, "skipped_batches": trainer.skipped}
