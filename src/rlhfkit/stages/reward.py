"""Stage 3, the reward model: learn a scalar r(x, y) from K-way human rankings, InstructGPT style.

    rlhfkit reward --preset tiny --model runs/demo/sft/model \
        --data.path runs/demo/rankings/rankings.jsonl --out runs/demo/reward [--ensemble 3]

The model is the SFT checkpoint with its LM head swapped for a linear head read at the last token of
prompt+response (`ScalarModel`). A ranking of K responses gives C(K,2) comparisons; all of a prompt's
comparisons sit in one batch element and each response is scored once per step (Ouyang et al. 2022
§3.5: shuffling the pairs as independent examples overfits and costs K-1 forward passes per response).
Loss: Bradley-Terry averaged per ranking (`losses.ranking_loss`; ties, per-ranking weights, margins) or
Plackett-Luce on the whole ranking (`--loss pl`). Training keeps the weights with the best held-out
loss (or accuracy), then shifts/scales the score so SFT samples on the RM prompts have mean 0 and std 1
(Stiennon et al. 2020), stored in `scalar.json`.

Writes OUT/model/ (or OUT/member_0..N-1/ for `--ensemble N`; load either with
`rlhfkit.model.reward_scorer.load_reward(OUT)`), OUT/eval.json (held-out accuracy overall, per family and
per annotator profile, against the gold judge, calibration), OUT/metrics.jsonl and OUT/config.yaml.
"""

from __future__ import annotations

import json
import random
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from .. import checkpoint
from .. import losses as L
from ..common import (StageError, from_pretrained, is_main_process, progress, prepare_out, read_jsonl, say,
                      seed_everything, set_threads, wait_for_everyone, write_json)
from ..config import group, opt
from ..tracking import report_to_option
from ..data.formats import Ranking, load_rankings
from ..evaluate.reward_metrics import accuracy, by_group, calibration, gold_accuracy, gold_scores, profile_of
from ..model import lora
from ..model.lora import LoraConfig
from ..model.reward_scorer import collate, encode, raw_scores
from ..model.scalar import ScalarModel
from ..training import BatchStream, EarlyStopping, OptimConfig, Trainer


@dataclass
class DataConfig:
    """Rankings and the reference responses for normalisation."""

    path: str = opt("runs/default/rankings/rankings.jsonl",
                    "K-way rankings or prompt/chosen/rejected pairs: JSONL / dataset folder / hub id")
    reference: str = opt("auto", "responses normalised to mean 0 / std 1: a JSONL of {prompt, responses} or "
                                 "{prompt, response}; 'auto' = candidates.jsonl beside the rankings if present, "
                                 "else the training responses; 'train' = the training responses")
    val_fraction: float = opt(0.15, "fraction of prompts held out for evaluation (all rankings of a prompt together)")
    max_len: int = opt(0, "truncate prompt+response to this many tokens, keeping the end (0 = model context)")
    skip_invalid: bool = opt(False, "skip malformed records (counted) instead of stopping")


@dataclass
class Config:
    out: str = opt("runs/default/reward", "output folder")
    seed: int = opt(0, "random seed (member i uses seed+i for head init and data order)")
    model: str = opt("runs/default/sft/model", "causal LM to start from: the SFT checkpoint (folder or hub id)")
    loss: str = opt("bt", "bt = Bradley-Terry on all C(K,2) pairs; pl = Plackett-Luce on the full ranking",
                    choices=("bt", "pl"))
    margin: float = opt(0.0, "BT margin per rank step: a pair g tiers apart must be won by margin*g (Llama 2 "
                             "eq. 2); a record's own 'margin' key (TRL's column) takes precedence")
    center_rewards_coefficient: float = opt(0.0, "weight of mean((r_w + r_l)^2), TRL's reward centring (0 = off)")
    ensemble: int = opt(1, "train N members (different seeds and data order) for mean/spread scoring")
    patience: int = opt(4, "stop after this many evaluations without a better held-out score (0 = never)")
    select: str = opt("loss", "held-out metric that picks the kept weights", choices=("loss", "accuracy"))
    gold: bool = opt(True, "also measure accuracy against the built-in world's gold judge where it applies")
    resume: bool = opt(False, "reuse finished ensemble members and continue the interrupted one from OUT/ckpt")
    report_to: str = report_to_option()
    data: DataConfig = group(DataConfig)
    lora: LoraConfig = group(LoraConfig)
    # batch_size counts prompts (each with all its rankings); save_every is unused: a run takes minutes.
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(
        lr=3e-4, warmup_steps=5, max_steps=300, batch_size=16, eval_every=25),
        metadata={"help": "Optimisation (batch_size = prompts per micro-batch, each with all its rankings)."})


PRESETS = {
    "ci": {"optim": {"max_steps": 40, "batch_size": 8, "lr": 1e-3, "eval_every": 10, "save_every": 20}},
    "tiny": {"optim": {"max_steps": 300, "batch_size": 16, "lr": 3e-4, "eval_every": 25}},
    "small": {"optim": {"max_steps": 800, "batch_size": 32, "lr": 1e-4, "eval_every": 50}},
}


# ---------------------------------------------------------------------------------------------- batches


@dataclass
class Item:
    """One prompt with all its rankings (one per annotator): one batch element."""

    prompt: str
    rankings: list[Ranking]


@dataclass
class Batch:
    """Rankings of B prompts. N unique responses are scored once; P pairs index into those N scores."""

    keys: list[tuple[str, str]]  # [N] (prompt, response)
    pairs: Tensor                # [P, 2] (winner, loser) rows into keys
    tie: Tensor                  # [P] bool
    group: Tensor                # [P] which ranking each pair came from (the loss averages per ranking)
    weight: Tensor               # [P] the ranking's weight
    margin: Tensor               # [P]
    rows: list[list[int]]        # [R] per ranking: rows of its K responses (Plackett-Luce)
    rankings: list[Ranking] = field(default_factory=list)  # [R]


def pair_margin(r: Ranking, a: int, b: int, per_step: float) -> float:
    if "margin" in r.meta:  # TRL's pairwise "margin" column
        return float(r.meta["margin"])
    tier = {i: t for t, members in enumerate(r.ranking) for i in members}
    return per_step * (tier[b] - tier[a])


def make_batch(items: list[Item], margin: float = 0.0) -> Batch:
    """Expand each ranking into its C(K,2) pairs; identical (prompt, response) share one score row."""
    rows: dict[tuple[str, str], int] = {}
    pairs, tie, grp, weight, marg, per_ranking, rankings = [], [], [], [], [], [], []
    for item in items:
        for r in item.rankings:
            idx = [rows.setdefault((r.prompt, resp), len(rows)) for resp in r.responses]
            for a, b, is_tie in r.pairs():
                pairs.append((idx[a], idx[b]))
                tie.append(is_tie)
                grp.append(len(rankings))
                weight.append(r.weight)
                marg.append(0.0 if is_tie else pair_margin(r, a, b, margin))
            per_ranking.append(idx)
            rankings.append(r)
    return Batch(list(rows), torch.tensor(pairs, dtype=torch.long).view(-1, 2), torch.tensor(tie, dtype=torch.bool),
                 torch.tensor(grp, dtype=torch.long), torch.tensor(weight), torch.tensor(marg), per_ranking, rankings)


def group_items(rankings: list[Ranking]) -> list[Item]:
    by_prompt: dict[str, list[Ranking]] = defaultdict(list)
    for r in rankings:
        by_prompt[r.prompt].append(r)
    return [Item(p, rs) for p, rs in by_prompt.items()]


def split_items(items: list[Item], val_fraction: float, seed: int) -> tuple[list[Item], list[Item]]:
    """Held-out split by prompt, so no held-out prompt's responses were seen in training."""
    order = list(items)
    random.Random(seed).shuffle(order)
    if not 0 < val_fraction < 1:
        raise StageError(f"--data.val_fraction must be in (0, 1): held-out prompts drive evaluation and "
                         f"early stopping; got {val_fraction}")
    n_val = max(1, round(len(order) * val_fraction))
    if len(order) - n_val < 1:
        raise StageError(f"{len(order)} prompt(s) cannot be split into train and held-out; need at least 2")
    return order[n_val:], order[:n_val]


# ---------------------------------------------------------------------------------------------- losses


def rm_loss(scores: Tensor, b: Batch, cfg: Config) -> Tensor:
    """The reward-model loss of a batch, from the scores [N] of its unique responses."""
    if cfg.loss == "pl":
        nll = torch.stack([L.plackett_luce_tiers(scores[torch.tensor(rows, device=scores.device)], r.ranking)
                           for rows, r in zip(b.rows, b.rankings)])
        w = torch.tensor([r.weight for r in b.rankings], device=scores.device)
        loss = (w * nll).sum() / w.sum()
    else:
        loss = L.ranking_loss(scores, b.pairs, b.group, b.weight, b.tie, b.margin if b.margin.any() else None)
    if cfg.center_rewards_coefficient:
        loss = loss + cfg.center_rewards_coefficient * L.center_rewards(scores[b.pairs[:, 0]], scores[b.pairs[:, 1]])
    return loss


def train_step(model: ScalarModel, b: Batch, cache: dict, pad_id: int, cfg: Config):
    """One forward over the batch's unique responses, then the loss over all their pairs."""
    device = next(model.parameters()).device
    ids, attn = collate([cache[k] for k in b.keys], pad_id, device)
    b = _to(b, device)
    scores = model(ids, attn)  # [N]
    loss = rm_loss(scores, b, cfg)
    with torch.no_grad():
        d = (scores[b.pairs[:, 0]] - scores[b.pairs[:, 1]])[~b.tie]
        acc = ((d > 0).float() + 0.5 * (d == 0).float()).mean() if len(d) else torch.tensor(float("nan"))
    return loss, {"accuracy": acc.item(), "margin": d.mean().item() if len(d) else 0.0, "rows": len(b.keys)}


def _to(b: Batch, device) -> Batch:
    return Batch(b.keys, b.pairs.to(device), b.tie.to(device), b.group.to(device), b.weight.to(device),
                 b.margin.to(device), b.rows, b.rankings)


# ---------------------------------------------------------------------------------------------- evaluation


def evaluate(scores: Tensor, b: Batch, cfg: Config, gold: dict | None) -> dict:
    """Held-out metrics from the scores [N] of a batch's unique responses (tied labels are left out)."""
    d = (scores[b.pairs[:, 0]] - scores[b.pairs[:, 1]])
    strict = ~b.tie
    rk = [b.rankings[g] for g in b.group[strict].tolist()]
    out = {"loss": round(float(rm_loss(scores, b, cfg)), 4), "accuracy": round(accuracy(d[strict]), 4),
           "n_pairs": int(strict.sum()), "n_tied_labels": int(b.tie.sum()),
           "by_family": by_group([r.family or "-" for r in rk], d[strict]),
           "by_profile": by_group([profile_of(r) for r in rk], d[strict]),
           "calibration": calibration(d[strict])}
    if gold:
        out["gold"] = gold_accuracy(scores, b, gold)
    return out


# ---------------------------------------------------------------------------------------------- training


def train_member(i: int, cfg: Config, train: list[Item], val: Batch, cache: dict, tokenizer, out: Path, device):
    """Train member i; returns the model holding its best held-out weights and a summary."""
    from ..model.causal_lm import load_causal_lm

    ocfg, pad = cfg.optim, tokenizer.pad_token_id
    seed_everything(cfg.seed + i)
    model = ScalarModel.from_causal_lm(load_causal_lm(cfg.model)).to(device)
    model.backbone = lora.apply(model.backbone, cfg.lora, task=None)  # adapters in the body; the head trains fully
    stream = BatchStream(train, ocfg.batch_size, cfg.seed + i)
    trainer = Trainer(model, ocfg, out, tokenizer, stage="reward")

    def held_out() -> tuple[float, float]:
        s = raw_scores(model, [cache[k] for k in val.keys], pad)
        d = s[val.pairs[:, 0]] - s[val.pairs[:, 1]]
        return float(rm_loss(s, val, cfg)), accuracy(d[~val.tie])

    def better(m, best):
        return m[0] < best[0] - 1e-4 if cfg.select == "loss" else (m[1], -m[0]) > (best[1], -best[0])

    if cfg.resume and (checkpoint.saved_extra(out / "ckpt") or {}).get("member") == i and trainer.resume(stream):
        es = EarlyStopping.resumed(trainer.resumed_extra["early_stop"], cfg.patience, better)
    else:
        if cfg.resume:  # this member starts over: forget whatever a killed attempt of it logged
            _drop_member_rows(trainer.logger.path, i)
        es = EarlyStopping(model, held_out(), 0, cfg.patience, better)
    bar = progress(total=ocfg.max_steps, desc=f"reward[{i}]")
    while trainer.step_count < ocfg.max_steps:
        batches = [make_batch(stream.next(), cfg.margin) for _ in range(ocfg.grad_accum)]
        metrics = trainer.step(lambda b: train_step(trainer.wrapped, b, cache, pad, cfg), batches)
        step = trainer.step_count
        if step % ocfg.eval_every == 0 or step == ocfg.max_steps:
            m = held_out()
            metrics.update(val_loss=m[0], val_accuracy=m[1])
            es.update(model, m, step)
        trainer.logger.log(step, member=i, epoch=stream.epoch + stream.index / len(stream.items), **metrics)
        if step % ocfg.save_every == 0:
            trainer.save_state(stream, extra={"member": i, "early_stop": es.state()})
        bar.update(1)
        if es.stop:
            say(f"reward[{i}]: held-out {cfg.select} stopped improving; early stop at step {step}")
            break
    bar.close()
    model.load_state_dict(es.best_state)
    model.backbone = lora.merged(model.backbone)  # saved as a plain backbone folder
    return model, {"first_val_loss": es.first[0], "first_val_accuracy": es.first[1], "best_val_loss": es.best[0],
                   "best_val_accuracy": es.best[1], "best_step": es.best_step, "steps": trainer.step_count}


def _drop_member_rows(path: Path, member: int) -> None:
    if path.exists() and is_main_process():
        keep = [line for line in path.read_text().splitlines() if json.loads(line).get("member", -1) < member]
        path.write_text("".join(line + "\n" for line in keep))


def finished_member(cfg: Config, where: Path, device) -> tuple[ScalarModel, dict] | None:
    """With --resume, a member whose folder was completely written by an earlier attempt, and its summary."""
    if not (cfg.resume and checkpoint.is_complete(where) and (where / "train_summary.json").exists()):
        return None
    say(f"reward: reusing the finished member in {where}")
    return ScalarModel.load(where).to(device), json.loads((where / "train_summary.json").read_text())


def normalise(model: ScalarModel, reference: list[list[int]], pad_id: int) -> dict:
    """Set norm_mean/norm_std so the reference responses score mean 0, std 1 (population std)."""
    raw = raw_scores(model, reference, pad_id)
    std = float(raw.std(correction=0)) if len(raw) > 1 else 1.0
    model.norm_mean.fill_(float(raw.mean()))
    model.norm_std.fill_(std if std > 1e-6 else 1.0)
    return {"mean": float(model.norm_mean), "std": float(model.norm_std), "n": len(raw)}


def reference_keys(cfg: Config, train: list[Item]) -> tuple[list[tuple[str, str]], str]:
    ref = cfg.data.reference
    if ref == "auto":
        beside = Path(cfg.data.path).parent / "candidates.jsonl"
        ref = str(beside) if Path(cfg.data.path).is_file() and beside.exists() else "train"
    # Duplicates are kept: a response sampled twice is twice as likely under the SFT policy.
    if ref == "train":  # each distinct response set once, however many annotators ranked it
        sets = dict.fromkeys((r.prompt, tuple(r.responses)) for it in train for r in it.rankings)
        return [(p, x) for p, responses in sets for x in responses], ref
    keys = []
    for row in read_jsonl(ref):
        responses = row["responses"] if "responses" in row else [row["response"]]
        keys += [(row["prompt"], x) for x in responses]
    return keys, ref


def load_data(cfg: Config) -> tuple[list[Item], list[Item]]:
    rankings = load_rankings(cfg.data.path, skip_invalid=cfg.data.skip_invalid)
    if rankings.skipped:
        say(f"reward: skipped {rankings.skipped} invalid records (first: {rankings.errors[0]})")
    train, val = split_items(group_items(rankings), cfg.data.val_fraction, cfg.seed)
    # A zero weight (e.g. an annotator quality control judged adversarial) carries no training signal.
    dropped = sum(1 for it in train for r in it.rankings if r.weight == 0)
    train = [Item(it.prompt, kept) for it in train if (kept := [r for r in it.rankings if r.weight > 0])]
    if dropped:
        say(f"reward: {dropped} training rankings have weight 0 and are left out")
    if not train:
        raise StageError(f"{cfg.data.path}: no training rankings with a positive weight")
    return train, val


def _device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def run(cfg: Config) -> Path:
    from transformers import AutoConfig

    from ..data.tokenizer import load_tokenizer

    set_threads()
    out, t0, device = prepare_out(cfg.out, cfg), time.time(), _device()
    if cfg.ensemble < 1:
        raise StageError(f"--ensemble must be >= 1, got {cfg.ensemble}")
    tokenizer = load_tokenizer(cfg.model)
    max_len = cfg.data.max_len or int(getattr(from_pretrained(AutoConfig, cfg.model), "max_position_embeddings", 1024))
    train, val_items = load_data(cfg)
    ref_keys, ref_name = reference_keys(cfg, train)
    val = make_batch(val_items, cfg.margin)
    train_keys = {(r.prompt, x) for it in train for r in it.rankings for x in r.responses}
    cache = {k: encode(tokenizer, *k, max_len) for k in train_keys | set(val.keys) | set(ref_keys)}
    n_rank = sum(len(it.rankings) for it in train)
    say(f"reward: {len(train)} train prompts ({n_rank} rankings) / {len(val_items)} held-out prompts "
        f"({len(val.rankings)} rankings, {len(val.pairs)} pairs); loss {cfg.loss}, {cfg.ensemble} member(s)")
    gold = gold_scores(val.keys) if cfg.gold else None
    members, vals, norms = [], [], []
    for i in range(cfg.ensemble):
        where = out / ("model" if cfg.ensemble == 1 else f"member_{i}")
        model, summary = finished_member(cfg, where, device) or (None, None)
        if model is None:
            model, summary = train_member(i, cfg, train, val, cache, tokenizer, out, device)
            summary["norm"] = normalise(model, [cache[k] for k in ref_keys], tokenizer.pad_token_id)
            if is_main_process():
                checkpoint.atomic_dir(where, lambda tmp, m=model, s=dict(summary): _save_member(tmp, m, s, tokenizer,
                                                                                                out))
            wait_for_everyone()
        s = raw_scores(model, [cache[k] for k in val.keys], tokenizer.pad_token_id)
        summary["eval"] = evaluate(s, val, cfg, gold)
        members.append(summary)
        vals.append((s - model.norm_mean.cpu()) / model.norm_std.cpu())
        norms.append(float(model.norm_std))
        del model
    report = build_report(cfg, members, vals, norms, val, gold)
    report.update(data=cfg.data.path, reference=ref_name, n_train_prompts=len(train), n_val_prompts=len(val_items),
                  n_train_rankings=n_rank, n_val_rankings=len(val.rankings), wall_s=round(time.time() - t0, 1))
    write_json(out / "eval.json", report)
    write_json(out / "summary.json", {k: v for k, v in report.items() if not isinstance(v, (dict, list))})
    print_report(report)
    return out


def _save_member(tmp: Path, model: ScalarModel, summary: dict, tokenizer, out: Path) -> None:
    from ..model.card import write_card

    model.save(tmp, tokenizer)
    (tmp / "train_summary.json").write_text(json.dumps(summary, default=float))
    write_card(tmp, "reward", out, figures=summary)


def build_report(cfg: Config, members: list[dict], vals: list[Tensor], norms: list[float], val: Batch,
                 gold: dict | None) -> dict:
    """eval.json: headline scalars, the final model's metrics (the ensemble mean for N > 1), each member's."""
    if cfg.ensemble == 1:
        m = members[0]["eval"]
    else:
        stacked = torch.stack(vals)  # [M, N] normalised held-out scores
        # Evaluate the mean the scorer returns, rescaled by the members' mean std back to the BT scale
        # their P(win) = σ(r_w - r_l) was trained on (ranking unchanged), so calibration stays meaningful.
        m = evaluate(stacked.mean(0) * (sum(norms) / len(norms)), val, cfg, gold)
        m["ensemble_std_mean"] = round(float(stacked.std(0, correction=0).mean()), 4)
    g = m.get("gold") or {}
    return {"accuracy": m["accuracy"], "gold_accuracy": g.get("accuracy"), "label_gold_agreement":
            g.get("label_agreement"), "ece": m["calibration"]["ece"], "val_loss": m["loss"],
            "n_val_pairs": m["n_pairs"], "ensemble": cfg.ensemble, "best_steps": [x["best_step"] for x in members],
            "calibration": m["calibration"], "model": m, "members": members}


def print_report(report: dict) -> None:
    m = report["model"]
    g = m.get("gold")
    say(f"reward: held-out accuracy {m['accuracy']:.3f} on {m['n_pairs']} labelled pairs"
        + (f"; vs gold judge {g['accuracy']:.3f} on {g['n_pairs']} pairs (labels agree with gold "
           f"{g['label_agreement']:.3f})" if g else "") + f"; ECE {m['calibration']['ece']:.3f}")
    for fam, v in m["by_family"].items():
        gf = g["by_family"].get(fam, {}) if g else {}
        gtxt = f"  gold {gf['accuracy']:.3f} ({gf['n_pairs']})" if gf else ""
        say(f"  family {fam:<14} accuracy {v['accuracy']:.3f} ({v['n_pairs']} pairs){gtxt}")
    for prof, v in m["by_profile"].items():
        say(f"  profile {prof:<13} accuracy {v['accuracy']:.3f} ({v['n_pairs']} pairs)")
    say(f"reward: {len(report['members'])} member(s), {report['wall_s']}s")
