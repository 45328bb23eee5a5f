"""Stage 3a, ranking data for the reward model: K SFT samples per RM prompt, ranked by annotators.

    rlhfkit rankings --preset tiny --model runs/demo/sft/model --out runs/demo/rankings
    rlhfkit rankings --rankings export.jsonl --out runs/demo/rankings   # human rankings (labeling app)

By default the K responses are sampled from the SFT model at temperature ~1 (WORLD_NOTES lesson 1: a
reward model needs different responses to compare) and ranked by the built-in world's simulated
annotator pool, each item by `per_item` annotators (redundancy measures agreement, as InstructGPT's
labelers did). With `--rankings FILE` the sampling and simulation are skipped: the file is validated
and copied. With `--quality_weights` each ranking gets a weight from annotator quality control
(`rlhfkit.feedback.quality`: Crowd-BT reliability), which the reward stage's loss honours.

Writes OUT/candidates.jsonl ({prompt, responses, family}), OUT/rankings.jsonl (K-way records with
annotator, profile, family, weight), OUT/quality.json (with quality weights) and OUT/summary.json
(counts, share of identical candidate pairs, label agreement with the gold judge per profile).
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

from ..common import StageError, prepare_out, say, seed_everything, set_threads, write_json
from ..config import opt
from ..data.formats import load_prompts, load_rankings, write_jsonl


@dataclass
class Config:
    out: str = opt("runs/default/rankings", "output folder")
    seed: int = opt(0, "random seed (sampling, annotator pool)")
    model: str = opt("runs/default/sft/model", "SFT model that writes the candidate responses")
    prompts: str = opt("world", "RM prompts JSONL ({prompt, family?, id?}); 'world' = the built-in world's "
                                "RM prompts, exported into OUT/world")
    world_size: str = opt("tiny", "built-in world size when prompts is 'world'", choices=("ci", "tiny", "small"))
    max_prompts: int = opt(0, "use only the first N prompts (0 = all)")
    k: int = opt(4, "responses per prompt (InstructGPT ranked 4 to 9)")
    temperature: float = opt(1.0, "sampling temperature (~1 keeps the candidates diverse)")
    top_p: float = opt(1.0, "nucleus sampling threshold (1 = off)")
    max_new_tokens: int = opt(64, "longest response sampled, in tokens")
    batch_size: int = opt(64, "sequences sampled in parallel")
    pool: str = opt("careful:0.6,noisy:0.2,adversarial:0.2", "simulated annotator pool: profile:fraction,... "
                                                             "(profiles: careful, noisy, lazy, adversarial)")
    n_annotators: int = opt(20, "annotators in the simulated pool")
    per_item: int = opt(1, "annotators who rank each prompt's candidates (2+ measures agreement)")
    rankings: str = opt("", "existing rankings JSONL (e.g. the labeling app's export): validate and copy "
                            "instead of sampling and simulating")
    quality_weights: bool = opt(False, "weight each ranking by its annotator's estimated reliability "
                                       "(rlhfkit.feedback.quality) and write OUT/quality.json")


PRESETS = {
    # Three annotators per item: quality control needs overlap to tell reliable annotators from the rest
    # (with one ranking per item every annotator looks equally reliable).
    "ci": {"world_size": "ci", "k": 4, "max_new_tokens": 48, "n_annotators": 10, "per_item": 3},
    "tiny": {"world_size": "tiny", "k": 4, "max_new_tokens": 64, "n_annotators": 20, "per_item": 3},
    "small": {"world_size": "small", "k": 6, "max_new_tokens": 64, "n_annotators": 40, "per_item": 3},
}


def sample_candidates(cfg: Config, prompts: list) -> list[dict]:
    """K samples from the SFT model per prompt -> [{prompt, responses, family, id, finished}]."""
    import torch

    from ..data.tokenizer import load_tokenizer
    from ..model.causal_lm import load_causal_lm
    from ..rl.engine import SamplingParams
    from ..rl.text import generate_text

    tokenizer = load_tokenizer(cfg.model)
    model = load_causal_lm(cfg.model).to("cuda" if torch.cuda.is_available() else "cpu").eval()
    params = SamplingParams(max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature, top_p=cfg.top_p)
    samples = generate_text(model, tokenizer, [p.prompt for p in prompts], cfg.k, params, cfg.seed, cfg.batch_size)
    return [{"prompt": p.prompt, "responses": [s.response for s in ss], "family": p.family, "id": p.id,
             "finished": [s.finished for s in ss]} for p, ss in zip(prompts, samples)]


def simulate(cfg: Config, candidates: list[dict]) -> list[dict]:
    """Rank each candidate set with the world's annotator pool; candidates whose K responses are all
    identical are skipped (no preference to learn, and the data format rejects them)."""
    from ..world.annotators import AnnotatorPool

    pool = AnnotatorPool.from_spec(cfg.pool, cfg.n_annotators, cfg.seed)
    usable = [c for c in candidates if len(set(c["responses"])) > 1]
    records = pool.label(usable, per_item=cfg.per_item)
    for r in records:
        r["weight"] = 1.0
    return records


def load_human(path: str) -> tuple[list[dict], list[dict]]:
    """Validate a rankings file; returns (records, candidates derived from them)."""
    records = []
    for r in load_rankings(path):
        d = r.to_dict()
        d["weight"] = r.weight
        records.append(d)
    seen = {}
    for d in records:
        seen.setdefault((d["prompt"], tuple(d["responses"])), {"prompt": d["prompt"], "responses": d["responses"],
                                                              "family": d.get("family")})
    return records, list(seen.values())


def add_quality_weights(records: list[dict], out: Path) -> list[dict]:
    try:
        from ..feedback.quality import apply_weights, assess
    except ImportError:
        raise StageError("--quality_weights needs rlhfkit.feedback.quality, which is not installed") from None
    report = assess(records)
    write_json(out / "quality.json", {k: v for k, v in report.items() if k != "weights"})
    flagged = ", ".join(report["flagged"]) or "none"
    say(f"rankings: annotator quality control flagged {flagged}")
    return apply_weights(records, report)


def identical_fraction(candidates: list[dict]) -> float:
    """Share of the C(K,2) response pairs per prompt that are the same text (lesson 1's collapse gauge)."""
    same = total = 0
    for c in candidates:
        rs = c["responses"]
        for i in range(len(rs)):
            for j in range(i + 1, len(rs)):
                same += rs[i] == rs[j]
                total += 1
    return same / total if total else float("nan")


def gold_ties(candidates: list[dict]) -> dict | None:
    """Per family: share of distinct response pairs shown to annotators that the gold judge scores
    equally (pairs whose labels can only be noise). None when the prompts are not the world's."""
    try:
        from ..world.judge import judge
    except ImportError:
        return None
    ties, total = Counter(), Counter()
    for c in candidates:
        try:
            gold = {x: judge(c["prompt"], x).score for x in set(c["responses"])}
        except (ValueError, KeyError):
            continue
        xs, fam = sorted(gold), str(c.get("family") or "-")
        for i in range(len(xs)):
            for j in range(i + 1, len(xs)):
                total[fam] += 1
                ties[fam] += gold[xs[i]] == gold[xs[j]]
    if not total:
        return None
    out = {f: {"tie_fraction": round(ties[f] / total[f], 4), "n_pairs": total[f]} for f in sorted(total)}
    out["all"] = {"tie_fraction": round(sum(ties.values()) / sum(total.values()), 4), "n_pairs": sum(total.values())}
    return out


def gold_agreement(records: list[dict]) -> dict | None:
    """Per annotator profile: share of pairs the gold judge orders strictly that the label orders the
    same way (tied labels count ½). None when the prompts are not the world's."""
    try:
        from ..world.judge import judge
    except ImportError:
        return None
    agree, total, cache = defaultdict(float), Counter(), {}
    for r in records:
        try:
            gold = [cache.setdefault((r["prompt"], x), judge(r["prompt"], x).score) for x in r["responses"]]
        except (ValueError, KeyError):
            continue
        level = {i: n for n, t in enumerate(r["ranking"]) for i in (t if isinstance(t, list) else [t])}
        prof = str(r.get("profile") or r.get("annotator") or "-")
        for i in range(len(gold)):
            for j in range(i + 1, len(gold)):
                if gold[i] == gold[j]:
                    continue
                total[prof] += 1
                if level[i] == level[j]:
                    agree[prof] += 0.5
                else:
                    agree[prof] += (level[i] < level[j]) == (gold[i] > gold[j])
    if not total:
        return None
    out = {p: {"agreement": round(agree[p] / total[p], 4), "n_pairs": total[p]} for p in sorted(total)}
    out["all"] = {"agreement": round(sum(agree.values()) / sum(total.values()), 4), "n_pairs": sum(total.values())}
    return out


def summarise(candidates: list[dict], records: list[dict], source: str) -> dict:
    finished = [f for c in candidates for f in c.get("finished", [])]
    return {
        "source": source, "n_prompts": len(candidates), "n_rankings": len(records),
        "k": dict(Counter(len(c["responses"]) for c in candidates)),
        "identical_pair_fraction": round(identical_fraction(candidates), 4),
        "finished_fraction": round(sum(finished) / len(finished), 4) if finished else None,
        "rankings_per_profile": dict(Counter(str(r.get("profile") or "-") for r in records)),
        "rankings_per_family": dict(Counter(str(r.get("family") or "-") for r in records)),
        "mean_weight": round(sum(r.get("weight", 1.0) for r in records) / max(len(records), 1), 4),
        "gold_agreement": gold_agreement(records),
        "gold_ties": gold_ties(candidates),
    }


def run(cfg: Config) -> Path:
    set_threads()
    seed_everything(cfg.seed)
    out, t0 = prepare_out(cfg.out, cfg), time.time()
    if cfg.rankings:
        records, candidates = load_human(cfg.rankings)
        source = cfg.rankings
    else:
        if not 2 <= cfg.k <= 9:
            raise StageError(f"--k must be 2 to 9 (a ranking's size), got {cfg.k}")
        path = cfg.prompts
        if path == "world":
            from ..world import export

            path = export(out / "world", seed=cfg.seed, size=cfg.world_size)["rm"]
        prompts = load_prompts(path)
        prompts = prompts[:cfg.max_prompts] if cfg.max_prompts else prompts
        say(f"rankings: sampling {cfg.k} responses for each of {len(prompts)} prompts from {cfg.model}")
        candidates = sample_candidates(cfg, prompts)
        records = simulate(cfg, candidates)
        source = f"simulated pool {cfg.pool}"
        if not records:
            raise StageError("every prompt's K samples were identical: nothing to rank (raise the temperature "
                             "or use a less overfit SFT model)")
    if cfg.quality_weights:
        records = add_quality_weights(records, out)
    write_jsonl(out / "candidates.jsonl", candidates)
    write_jsonl(out / "rankings.jsonl", records)
    summary = summarise(candidates, records, source)
    summary["wall_s"] = round(time.time() - t0, 1)
    write_json(out / "summary.json", summary)
    g = (summary["gold_agreement"] or {}).get("all")
    say(f"rankings: {len(records)} rankings of {len(candidates)} prompts; identical candidate pairs "
        f"{summary['identical_pair_fraction']:.1%}" + (f"; labels agree with gold {g['agreement']:.3f}" if g else "")
        + f"; {summary['wall_s']}s")
    return out
