"""Stage 4 alternative, DPO: fit the policy to preferences directly, no reward model, no sampling.

    rlhfkit dpo --preset tiny --model runs/demo/sft/model --data.path runs/demo/rankings/rankings.jsonl \
        --out runs/demo/dpo [--loss ipo|cdpo] [--beta 0.1]

Direct Preference Optimization (Rafailov et al. 2023): with the implicit reward r(x, y) = β log π(y|x)/π_ref(y|x),
the Bradley-Terry likelihood of the labels becomes a loss on the policy alone (eq. 7). Variants: `ipo` (Azar et al.
2023, on length-averaged log-probs as TRL does) and `cdpo` (conservative DPO, labels flipped with probability
`label_smoothing`, Mitchell 2023). The losses themselves live in `rlhfkit.losses`.

Data: K-way rankings are expanded to their C(K,2) pairs (ties and pairs of identical texts skipped; each pair keeps
its record's `weight`); TRL's {"prompt", "chosen", "rejected"} rows load as K=2 rankings. Prompts, not records,
are split between train and held-out, so two annotators' rankings of one prompt never straddle the split.

The reference is the starting model, frozen: its sequence log-probs never change, so they are computed once before
training, saved to OUT/ref_logps.pt (with a fingerprint of the data and model) and reused on `--resume`; the
reference model is then freed. Held-out metrics follow TRL's names: preference accuracy (implicit reward of chosen
> rejected; an exact tie counts 1/2, so the untrained policy scores 0.5) and the mean reward margin.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .. import losses as L
from ..common import (StageError, is_main_process, progress, prepare_out, say, seed_everything, set_threads,
                      wait_for_everyone, write_json)
from ..config import group, opt
from ..tracking import report_to_option
from ..model import lora
from ..model.lora import LoraConfig
from ..rl.engine import positions
from ..training import BatchStream, OptimConfig, Trainer
from ..lm import save_final

LOSSES = ("sigmoid", "ipo", "cdpo")


@dataclass
class DataConfig:
    """Preferences."""

    path: str = opt("runs/default/rankings/rankings.jsonl",
                    "K-way rankings or pairwise prompt/chosen/rejected JSONL / dataset folder / hub id")
    val_fraction: float = opt(0.1, "fraction of prompts held out for preference accuracy")
    skip_invalid: bool = opt(False, "skip malformed records (counted) instead of stopping")


@dataclass
class DPOOptimConfig(OptimConfig):
    """Optimisation: AdamW, warmup, cosine decay (defaults = tiny preset; real models want ~1e-6, Rafailov+ 2023)."""

    lr: float = opt(2e-4, "peak learning rate")
    warmup_steps: int = opt(20, "linear warmup steps")
    max_steps: int = opt(300, "optimizer steps to train for")
    batch_size: int = opt(16, "preference pairs per micro-batch (each is two sequences)")
    eval_every: int = opt(25, "measure held-out loss / preference accuracy every N optimizer steps")
    save_every: int = opt(100, "write a resumable checkpoint every N optimizer steps")


@dataclass
class Config:
    out: str = opt("runs/default/dpo", "output folder (model/, ref_logps.pt, metrics.jsonl, summary.json)")
    seed: int = opt(0, "random seed")
    model: str = opt("runs/default/sft/model", "SFT model: the policy starts from it and the frozen reference is it")
    loss: str = opt("sigmoid", "sigmoid = DPO, ipo = IPO (length-averaged log-probs), cdpo = conservative DPO",
                    choices=LOSSES)
    beta: float = opt(0.1, "β: strength of the implicit KL constraint (IPO: τ, target margin 1/(2β))")
    label_smoothing: float = opt(0.1, "cdpo only: probability that a preference label is flipped")
    ref_batch_size: int = opt(32, "pairs per forward pass when computing reference log-probs and held-out metrics")
    resume: bool = opt(False, "continue from OUT/ckpt (and reuse OUT/ref_logps.pt) if present")
    report_to: str = report_to_option()
    data: DataConfig = group(DataConfig)
    optim: DPOOptimConfig = group(DPOOptimConfig)
    lora: LoraConfig = group(LoraConfig)


PRESETS = {
    "ci": {"optim": {"max_steps": 30, "batch_size": 8, "lr": 5e-4, "warmup_steps": 3, "eval_every": 10,
                     "save_every": 15}},
    # lr 2e-4 drifted 22.7 nats from SFT and lost to it (win rate 0.43); 3e-5 won 0.62 at KL 1.5 (README).
    "tiny": {"optim": {"max_steps": 300, "batch_size": 16, "lr": 3e-5, "warmup_steps": 20, "eval_every": 25,
                       "save_every": 100}},
    "small": {"optim": {"max_steps": 1000, "batch_size": 32, "lr": 1e-4, "warmup_steps": 50, "eval_every": 100,
                        "save_every": 250}},
}


@dataclass
class PairExample:
    """One preference pair, tokenised: prompt+chosen and prompt+rejected ids and where each response starts."""

    chosen: list[int]
    chosen_start: int
    rejected: list[int]
    rejected_start: int
    weight: float = 1.0
    ref: tuple[float, float] = field(default=(0.0, 0.0))  # reference sequence log-probs (chosen, rejected)


# ---------------------------------------------------------------------------------------------- data


def expand_pairs(rankings) -> tuple[list[tuple[str, str, str, float]], dict]:
    """(prompt, chosen, rejected, weight) for every strict pair of every ranking, and counts of what was skipped."""
    pairs, skipped = [], {"ties": 0, "identical": 0, "zero_weight": 0}
    for r in rankings:
        for w, l, tie in r.pairs():
            if tie:
                skipped["ties"] += 1
            elif r.responses[w] == r.responses[l]:
                skipped["identical"] += 1  # no signal: the loss is constant in the policy
            elif r.weight == 0:
                skipped["zero_weight"] += 1
            else:
                pairs.append((r.prompt, r.responses[w], r.responses[l], r.weight))
    return pairs, skipped


def split_by_prompt(pairs: list, val_fraction: float, seed: int) -> tuple[list, list]:
    """(train, held-out) with every pair of a prompt on one side; at least one prompt held out."""
    prompts = sorted({p[0] for p in pairs})
    random.Random(seed).shuffle(prompts)
    if len(prompts) < 2:
        raise StageError(f"need preferences on at least 2 prompts to hold some out, found {len(prompts)}")
    held = set(prompts[:max(1, int(round(len(prompts) * val_fraction)))])
    return [p for p in pairs if p[0] not in held], [p for p in pairs if p[0] in held]


def encode_pairs(tokenizer, pairs, max_len: int) -> tuple[list[PairExample], int]:
    """Render each pair with the chat template; drop (and count) pairs longer than the context."""
    from ..data.chat import render_pair

    out, too_long = [], 0
    for prompt, chosen, rejected, weight in pairs:
        c, cs = render_pair(tokenizer, prompt, chosen)
        r, rs = render_pair(tokenizer, prompt, rejected)
        if max(len(c), len(r)) > max_len:
            too_long += 1
            continue
        out.append(PairExample(c, cs, r, rs, weight))
    return out, too_long


def collate_pairs(batch: list[PairExample], pad_id: int) -> dict[str, torch.Tensor]:
    """Chosen rows then rejected rows, right-padded: ids/attn/mask [2B, T] (mask = response tokens, aligned
    with ids), weight [B], ref [B, 2]."""
    seqs = [(e.chosen, e.chosen_start) for e in batch] + [(e.rejected, e.rejected_start) for e in batch]
    T = max(len(ids) for ids, _ in seqs)
    ids = torch.full((len(seqs), T), pad_id, dtype=torch.long)
    attn = torch.zeros((len(seqs), T), dtype=torch.long)
    mask = torch.zeros((len(seqs), T), dtype=torch.long)
    for i, (x, start) in enumerate(seqs):
        ids[i, :len(x)] = torch.tensor(x)
        attn[i, :len(x)] = 1
        mask[i, start:len(x)] = 1
    return {"ids": ids, "attn": attn, "mask": mask,
            "weight": torch.tensor([e.weight for e in batch], dtype=torch.float32),
            "ref": torch.tensor([e.ref for e in batch], dtype=torch.float32)}


# ---------------------------------------------------------------------------------------------- log-probs, loss


def sequence_logps(model, ids: torch.Tensor, attn: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """log π(y|x) = Σ over response tokens of log π(y_t | x, y_<t)  -> [N] (the prompt is masked out)."""
    logits = model(input_ids=ids, attention_mask=attn, position_ids=positions(attn)).logits
    return L.masked_sum(L.token_logprobs(logits, ids), mask, dim=1)


@torch.no_grad()
def compute_ref_logps(model, examples: list[PairExample], batch_size: int, pad_id: int) -> torch.Tensor:
    """Reference sequence log-probs [N, 2] (chosen, rejected), one pass over the data."""
    model.eval()
    rows = []
    for i in range(0, len(examples), batch_size):
        b = collate_pairs(examples[i:i + batch_size], pad_id)
        rows.append(torch.stack(sequence_logps(model, b["ids"], b["attn"], b["mask"]).chunk(2), dim=1))
    return torch.cat(rows).float()


def fingerprint(model_dir: str, examples: list[PairExample]) -> str:
    """What the cached reference log-probs depend on: the reference model's folder and the exact token ids."""
    h = hashlib.sha256(str(Path(model_dir).resolve()).encode())
    for e in examples:
        h.update(json.dumps([e.chosen, e.chosen_start, e.rejected, e.rejected_start]).encode())
    return h.hexdigest()


def _read_cache(path: Path) -> dict | None:
    """OUT/ref_logps.pt, or None when absent or unreadable (then it is recomputed)."""
    if not path.exists():
        return None
    try:
        return torch.load(path)
    except (RuntimeError, EOFError, OSError, ValueError) as e:
        say(f"dpo: {path} is unreadable ({type(e).__name__}); recomputing")
        return None


def attach_ref_logps(cfg: Config, out: Path, examples: list[PairExample], pad_id: int, policy=None) -> str:
    """Fill `example.ref` from OUT/ref_logps.pt when resuming with the same data and model, else compute and
    save it. Returns "reused" or "computed". A LoRA `policy` is its own reference with adapters off (no
    second model is loaded)."""
    from ..model.causal_lm import load_causal_lm

    path, key = out / "ref_logps.pt", fingerprint(cfg.model, examples)
    cached = _read_cache(path) if cfg.resume else None
    if cached is not None and cached.get("fingerprint") == key:
        ref, how = cached["logps"], "reused"
    else:
        if cached is not None:
            say("dpo: OUT/ref_logps.pt was made from other data or another model; recomputing")
        t0 = time.time()
        # A full fine-tune loads a frozen copy, freed on return: only these numbers are needed from it.
        ref_model = policy if lora.is_lora(policy) else load_causal_lm(cfg.model)
        with lora.reference(ref_model):
            ref = compute_ref_logps(ref_model, examples, cfg.ref_batch_size, pad_id)
        if is_main_process():
            tmp = path.with_name(path.name + ".tmp")  # a kill mid-write leaves only the .tmp behind
            torch.save({"fingerprint": key, "logps": ref}, tmp)
            os.replace(tmp, path)
        wait_for_everyone()
        how = "computed"
        say(f"dpo: reference log-probs of {len(examples)} pairs in {time.time() - t0:.1f}s -> {path}")
    for e, (c, r) in zip(examples, ref.tolist()):
        e.ref = (c, r)
    return how


def pair_losses(cfg: Config, pi_w, pi_l, ref_w, ref_l, len_w, len_l):
    """Per-pair loss [B] and implicit rewards (chosen [B], rejected [B]) for the configured loss.

    The `rlhfkit.losses` functions return a batch mean; vmap evaluates them one pair at a time so pairs can be
    weighted. IPO sees length-averaged log-probs (TRL's choice, agreed with the IPO authors).
    """
    if cfg.loss == "ipo":
        pi_w, pi_l, ref_w, ref_l = pi_w / len_w, pi_l / len_l, ref_w / len_w, ref_l / len_l

        def fn(a, b, c, d):
            return L.ipo(a, b, c, d, beta=cfg.beta)
    else:
        smoothing = cfg.label_smoothing if cfg.loss == "cdpo" else 0.0

        def fn(a, b, c, d):
            return L.dpo_sigmoid(a, b, c, d, beta=cfg.beta, label_smoothing=smoothing)
    return torch.func.vmap(fn)(pi_w, pi_l, ref_w, ref_l)


def dpo_loss(model, batch: dict, cfg: Config) -> tuple[torch.Tensor, dict]:
    """Weighted mean loss over the pairs of one micro-batch, and TRL-named metrics."""
    logps = sequence_logps(model, batch["ids"], batch["attn"], batch["mask"])
    pi_w, pi_l = logps.chunk(2)
    len_w, len_l = batch["mask"].sum(1).clamp(min=1).float().chunk(2)
    ref_w, ref_l = batch["ref"].unbind(1)
    per_pair, r_w, r_l = pair_losses(cfg, pi_w, pi_l, ref_w, ref_l, len_w, len_l)
    w = batch["weight"]
    loss = (w * per_pair).sum() / w.sum()
    margin = r_w - r_l
    accuracy = (margin > 0).float() + 0.5 * (margin == 0).float()
    return loss, {"accuracy": accuracy.mean().item(), "margin": margin.mean().item(),
                  "chosen_reward": r_w.mean().item(), "rejected_reward": r_l.mean().item(),
                  "logps_chosen": pi_w.mean().item(), "logps_rejected": pi_l.mean().item()}


@torch.no_grad()
def evaluate(model, batches: list[dict], cfg: Config) -> dict:
    """Held-out loss, preference accuracy, reward margin and implicit rewards, averaged over pairs."""
    from accelerate.utils import send_to_device

    was = model.training
    model.eval()
    totals, count = {}, 0
    for b in batches:
        n = b["weight"].shape[0]
        loss, m = dpo_loss(model, send_to_device(b, next(model.parameters()).device), cfg)
        for k, v in {"loss": loss.item(), **m}.items():
            totals[k] = totals.get(k, 0.0) + v * n
        count += n
    model.train(was)
    return {f"val_{k}": v / count for k, v in totals.items()}


# ---------------------------------------------------------------------------------------------- the stage


def load_examples(cfg: Config, tokenizer, max_len: int) -> tuple[list[PairExample], list[PairExample], dict]:
    from ..data.formats import load_rankings

    rankings = load_rankings(cfg.data.path, skip_invalid=cfg.data.skip_invalid)
    pairs, stats = expand_pairs(rankings)
    if len(pairs) < 2:
        raise StageError(f"{cfg.data.path}: need at least 2 strict preference pairs, found {len(pairs)} "
                         f"(skipped: {stats})")
    train, val = split_by_prompt(pairs, cfg.data.val_fraction, cfg.seed)
    train_ex, long_t = encode_pairs(tokenizer, train, max_len)
    val_ex, long_v = encode_pairs(tokenizer, val, max_len)
    stats.update(records=len(rankings), invalid_records=getattr(rankings, "skipped", 0), too_long=long_t + long_v)
    if not train_ex or not val_ex:
        raise StageError(f"{cfg.data.path}: no usable pairs left for training or held-out "
                         f"({len(train_ex)} / {len(val_ex)}; {long_t + long_v} longer than the context)")
    return train_ex, val_ex, stats


def run(cfg: Config) -> Path:
    from ..data.tokenizer import load_tokenizer
    from ..model.causal_lm import context_length, load_causal_lm

    if cfg.beta <= 0:
        raise StageError(f"beta must be > 0, got {cfg.beta}")
    if not 0 <= cfg.label_smoothing < 0.5:
        raise StageError(f"label_smoothing must be in [0, 0.5), got {cfg.label_smoothing}")
    set_threads()
    seed_everything(cfg.seed)
    out = prepare_out(cfg.out, cfg)
    t0 = time.time()
    tokenizer = load_tokenizer(cfg.model)
    model = lora.apply(load_causal_lm(cfg.model), cfg.lora)
    train, val, stats = load_examples(cfg, tokenizer, context_length(model))
    pad = tokenizer.pad_token_id
    ref_cache = attach_ref_logps(cfg, out, train + val, pad, policy=model)
    say(f"dpo ({cfg.loss}, β={cfg.beta}): {len(train)} train / {len(val)} held-out pairs; skipped {stats}")
    val_batches = [collate_pairs(val[i:i + cfg.ref_batch_size], pad) for i in range(0, len(val), cfg.ref_batch_size)]
    stream = BatchStream(train, cfg.optim.batch_size, cfg.seed)
    trainer = Trainer(model, cfg.optim, out, tokenizer, stage="dpo")
    if cfg.resume:
        trainer.resume(stream)
    summary = train_loop(trainer, stream, val_batches, cfg, pad)
    summary.update(loss=cfg.loss, beta=cfg.beta, train_pairs=len(train), val_pairs=len(val), data=stats,
                   ref_logps=ref_cache, wall_s=round(time.time() - t0, 1))
    save_final(model, tokenizer, out, trainer.full_state_dict(), stage="dpo")
    write_json(out / "summary.json", summary)
    say(f"dpo: held-out preference accuracy {summary['first']['val_accuracy']:.3f} -> "
        f"{summary['final']['val_accuracy']:.3f}, margin {summary['final']['val_margin']:.3f}, {summary['wall_s']}s")
    return out / "model"


def train_loop(trainer: Trainer, stream: BatchStream, val_batches: list[dict], cfg: Config, pad: int) -> dict:
    ocfg, model = cfg.optim, trainer.model
    final = evaluate(model, val_batches, cfg)
    first = final if trainer.step_count == 0 else _logged_step0(trainer.out) or final
    if trainer.step_count == 0:
        trainer.logger.log(0, **first)
    bar = progress(total=ocfg.max_steps, initial=trainer.step_count, desc="dpo")
    while trainer.step_count < ocfg.max_steps:
        batches = [collate_pairs(stream.next(), pad) for _ in range(ocfg.grad_accum)]
        metrics = trainer.step(lambda b: dpo_loss(trainer.wrapped, b, cfg), batches)
        step = trainer.step_count
        if step % ocfg.eval_every == 0 or step == ocfg.max_steps:
            final = evaluate(model, val_batches, cfg)
            metrics.update(final)
        trainer.logger.log(step, epoch=stream.epoch + stream.index / len(stream.items), **metrics)
        if step % ocfg.save_every == 0:
            trainer.save_state(stream)
        bar.update(1)
    bar.close()
    return {"first": first, "final": final, "steps": trainer.step_count, "skipped_batches": trainer.skipped}


def _logged_step0(out: Path) -> dict | None:
    """The held-out metrics of the untrained policy, as logged by the run being resumed."""
    from ..common import read_jsonl

    path = out / "metrics.jsonl"
    rows = read_jsonl(path) if path.exists() else []
    row = next((r for r in rows if r.get("step") == 0 and "val_loss" in r), None)
    return {k: v for k, v in row.items() if k.startswith("val_")} if row else None
