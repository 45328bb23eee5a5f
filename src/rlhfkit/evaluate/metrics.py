"""Gold-judge evaluation of a policy on held-out prompts: what `rlhfkit eval` and the report show.

    rlhfkit eval --model runs/NAME/ppo --vs runs/NAME/sft --ref runs/NAME/sft

`evaluate(policy, prompts)` samples `n_samples` responses per prompt, scores each with the world's gold
judge and returns plain JSON-able numbers: gold mean (overall and per family), refusal rates on
harmful and benign look-alike prompts, length, finish rate, diversity, instruction following, and —
when asked — Monte-Carlo KL to a reference model and the gold win rate against another policy.
"""

from __future__ import annotations

import inspect
import itertools
import random
import statistics
import time
from collections import defaultdict
from itertools import combinations
from pathlib import Path
from typing import Callable

import torch

from ..data.formats import PromptRecord
from ..rl.text import TextSample
from .policies import BestOfNPolicy, HFPolicy, Policy, few_shot_prefix, resolve_model_dir

HARMFUL, BENIGN = "harmful", "benign"  # the world's safety families (rlhfkit.world.safety)


def default_judge() -> Callable:
    from .. import world

    judge = world.judge
    return judge.judge if inspect.ismodule(judge) else judge  # before world/__init__ re-exports it


def _judge_call(judge: Callable) -> Callable[[TextSample], object]:
    """Pass `finished` to judges that accept it: an answer cut at the token limit is unfinished."""
    try:
        takes_finished = "finished" in inspect.signature(judge).parameters
    except (TypeError, ValueError):
        takes_finished = False
    if takes_finished:
        return lambda s: judge(s.prompt, s.response, finished=s.finished)
    return lambda s: judge(s.prompt, s.response)


def judge_rows(rows: list[list[TextSample]], judge: Callable | None = None) -> list[list[object]]:
    call = _judge_call(judge or default_judge())
    return [[call(s) for s in row] for row in rows]


# ---------------------------------------------------------------- per-sample measures


def follows_instructions(sample: TextSample, j) -> bool:
    """An attempt to answer in assistant format. The judge's own flag wins when it has one
    (breakdown["answered"]); else: ended its turn, non-empty, ends a sentence, and does not read as a
    document continuation (starting mid-sentence, or asking questions of its own)."""
    flag = (getattr(j, "breakdown", None) or {}).get("answered")
    if flag is not None:
        return bool(flag)
    text = sample.response.strip()
    if not sample.finished or not text or text[-1] not in ".!":
        return False
    return not text[0].islower() and "?" not in text


def distinct_n(texts: list[str], n: int) -> float | None:
    """Distinct-n (Li et al. 2016): unique word n-grams / all word n-grams over `texts`."""
    grams = [tuple(w[i:i + n]) for w in (t.split() for t in texts) for i in range(len(w) - n + 1)]
    return len(set(grams)) / len(grams) if grams else None


def diversity(rows: list[list[TextSample]]) -> dict:
    """Distinct-1/2 within each prompt's samples, averaged over prompts; fraction of identical pairs."""
    d1 = [x for row in rows if (x := distinct_n([s.response for s in row], 1)) is not None]
    d2 = [x for row in rows if (x := distinct_n([s.response for s in row], 2)) is not None]
    pairs = [a.response == b.response for row in rows for a, b in combinations(row, 2)]
    return {"distinct_1": _mean(d1), "distinct_2": _mean(d2),
            "identical_pairs": _mean([float(p) for p in pairs])}


def win_rate(scores: list[float], other: list[float]) -> float | None:
    """Fraction of paired samples where `scores` beats `other`; ties count half."""
    if len(scores) != len(other):
        raise ValueError(f"win rate needs paired samples, got {len(scores)} and {len(other)}")
    if not scores:
        return None
    return sum(1.0 if a > b else 0.5 if a == b else 0.0 for a, b in zip(scores, other)) / len(scores)


def _mean(xs: list[float]) -> float | None:
    return float(sum(xs) / len(xs)) if xs else None


# ---------------------------------------------------------------- KL to a reference model


@torch.no_grad()
def sequence_kls(policy: HFPolicy, batches: list, ref_model) -> list[float]:
    """Per-sequence Monte-Carlo KL(π‖π_ref) on the policy's own samples y ~ π:
        KL ≈ Σ_t [log π(y_t | y_<t) − log π_ref(y_t | y_<t)]   (the k1 estimator, summed over tokens)
    Both log-probs at the sampling temperature, recomputed with the same forward (no cache drift)."""
    from ..rl.engine import forward_logprobs

    out: list[float] = []
    device = next(ref_model.parameters()).device
    for s in batches:
        seq, attn, mask = s.sequences.to(device), s.attention_mask.to(device), s.response_mask.to(device)
        logp, _ = forward_logprobs(policy.model, seq, attn, s.prompt_len, policy.temperature)
        ref_logp, _ = forward_logprobs(ref_model, seq, attn, s.prompt_len, policy.temperature)
        out += ((logp - ref_logp) * mask).sum(-1).tolist()  # [B]
    return out


def load_ref(ref, policy: HFPolicy):
    """The reference causal LM for `ref` (a model / stage folder or an HFPolicy), on the policy's device."""
    if isinstance(ref, HFPolicy):
        return ref.model
    from ..model.causal_lm import load_causal_lm

    model_dir = resolve_model_dir(ref)
    if model_dir is None:
        raise FileNotFoundError(f"{ref}: reference is not a model folder (expected config.json or model/)")
    model = load_causal_lm(model_dir).to(policy.device).eval()
    if model.get_output_embeddings().weight.shape[0] != policy.model.get_output_embeddings().weight.shape[0]:
        raise ValueError(f"{ref}: reference vocabulary differs from the policy's; KL needs a shared tokenizer")
    return model


# ---------------------------------------------------------------- few-shot prompting of base models


def build_few_shot(demos: str | Path, k: int, exclude: set[str], seed: int = 0) -> str:
    """A K-demonstration prefix from SFT demos (first user turn, first assistant reply), drawn round-robin
    over families so a base model sees each answer format; prompts in `exclude` are never shown."""
    from ..data.formats import load_sft

    by_family: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for conv in load_sft(demos):
        user = next((m["content"] for m in conv.messages if m["role"] == "user"), None)
        reply = next((m["content"] for m in conv.messages if m["role"] == "assistant"), None)
        if user and reply and " ".join(user.split()) not in exclude:
            by_family[str(conv.meta.get("family", ""))].append((user, reply))
    if sum(map(len, by_family.values())) < k:
        raise ValueError(f"{demos}: fewer than {k} usable demonstrations for a {k}-shot prompt")
    rng = random.Random(seed)
    pools = [rng.sample(v, len(v)) for _, v in sorted(by_family.items())]
    rng.shuffle(pools)
    picked: list[tuple[str, str]] = []
    while len(picked) < k:
        for pool in pools:
            if pool and len(picked) < k:
                picked.append(pool.pop())
    return few_shot_prefix(picked)


# ---------------------------------------------------------------- the evaluation


def evaluate(policy: Policy, prompts: list[PromptRecord] | list[str], n_samples: int = 4, seed: int = 0,
             ref=None, vs: Policy | None = None, few_shot: int = 0, demos: str | Path | None = None,
             judge: Callable | None = None, n_examples: int = 8, reward: Callable | None = None) -> dict:
    """Sample `n_samples` per prompt and summarise gold-judge metrics (see the module docstring).

    ref: a model folder (or HFPolicy) for KL(policy‖ref) — HF policies only, else kl is None.
    vs: a policy to compare against, sample by sample on the same prompts (ties count half).
    few_shot / demos: prompt a base model with K Q/A demonstrations from an SFT JSONL file.
    judge: judge(prompt, response[, finished]) -> Judgement; the world's gold judge by default.
    reward: a reward model scorer: also report how often it orders the samples as the judge does.
    """
    records = [p if isinstance(p, PromptRecord) else PromptRecord(p) for p in prompts]
    if not records:
        raise ValueError("no prompts to evaluate")
    if n_samples < 1:
        raise ValueError(f"n_samples must be >= 1, got {n_samples}")
    texts = [r.prompt for r in records]
    t0 = time.time()
    if few_shot:
        if not isinstance(policy, HFPolicy) or demos is None:
            raise ValueError("few-shot evaluation needs a model folder and a demos file (sft.jsonl)")
        policy = policy.with_few_shot(build_few_shot(demos, few_shot, {" ".join(t.split()) for t in texts}, seed))
    kls = None
    if ref is not None and isinstance(policy, HFPolicy):
        rows, batches = policy.rollout(texts, n_samples, seed)
        kls = sequence_kls(policy, batches, load_ref(ref, policy))
    else:
        rows = policy.generate(texts, n_samples, seed)
    judged = judge_rows(rows, judge)
    result = summarize(records, rows, judged, n_examples)
    if reward is not None:
        result["rm_gold_agreement"] = rm_gold_agreement(records, rows, judged, reward)
    result.update(policy=getattr(policy, "name", type(policy).__name__), n_prompts=len(records),
                  n_samples=n_samples, seed=seed, few_shot=few_shot)
    result["kl"] = _mean(kls) if kls is not None else None
    result["kl_stderr"] = statistics.stdev(kls) / len(kls) ** 0.5 if kls and len(kls) > 1 else None
    if isinstance(policy, BestOfNPolicy):
        result["kl_bound"] = policy.kl_bound  # best-of-n has no per-token policy; report its bound
    result["win_rate"] = result["vs_gold_mean"] = None
    if vs is not None:
        other = judge_rows(vs.generate(texts, n_samples, seed), judge)
        mine = [j.score for row in judged for j in row]
        theirs = [j.score for row in other for j in row]
        result["win_rate"] = win_rate(mine, theirs)
        result["vs_gold_mean"] = _mean(theirs)
        result["vs"] = getattr(vs, "name", type(vs).__name__)
    result["seconds"] = round(time.time() - t0, 2)
    return result


def summarize(records: list[PromptRecord], rows: list[list[TextSample]], judged: list[list],
              n_examples: int = 8) -> dict:
    """The gold metrics of already-judged samples ([P][k] samples and Judgements)."""
    # (family, sample, judgement) per sample; the prompt file's family wins over the judge's
    flat = [(r.family or getattr(j, "family", None) or "unknown", s, j)
            for r, row, jrow in zip(records, rows, judged) for s, j in zip(row, jrow)]
    per: dict[str, list] = defaultdict(list)
    for f, _, j in flat:
        per[f].append(j)
    per_family = {name: family_metrics(name, records, rows, judged) for name in sorted(per)}

    def refusal(names: set[str]) -> float | None:
        return _mean([float(bool(j.refused)) for f, _, j in flat if f in names])

    return {
        "gold_mean": _mean([j.score for _, _, j in flat]),
        "per_family": per_family,
        "refusal_rate_harmful": refusal({HARMFUL}),
        "over_refusal_benign": refusal({BENIGN}),
        "refusal_rate_other": refusal(set(per) - {HARMFUL, BENIGN}),  # e.g. refusing arithmetic
        "mean_length": _mean([float(s.n_tokens) for _, s, _ in flat]),
        "finish_rate": _mean([float(s.finished) for _, s, _ in flat]),
        "instruction_following": _mean([float(follows_instructions(s, j)) for _, s, j in flat]),
        "diversity": diversity(rows),
        "examples": examples(records, rows, judged, n_examples),
    }


def rm_gold_agreement(records, rows, judged, reward: Callable) -> dict | None:
    """How often a reward model orders two samples of the same held-out prompt as the gold judge does, over
    the pairs of distinct responses the judge scores differently (a reward-model tie counts half); overall
    and per family. `reward(prompts, responses) -> (scores, spread)`, as rlhfkit's reward scorers."""
    flat = [(i, s.response) for i, row in enumerate(rows) for s in row]
    if not flat:
        return None
    scores = reward([records[i].prompt for i, _ in flat], [r for _, r in flat])[0].tolist()
    by: dict[str, list[float]] = defaultdict(list)
    k = 0
    for i, row in enumerate(rows):
        seen: dict[str, tuple[float, float]] = {}
        for s, j in zip(row, judged[i]):
            seen.setdefault(s.response, (scores[k], j.score))
            k += 1
        fam = records[i].family or judged[i][0].family
        pairs = [(a, b) for a, b in itertools.combinations(seen.values(), 2) if a[1] != b[1]]  # (rm, gold)
        by[fam] += [0.5 if a[0] == b[0] else float((a[0] > b[0]) == (a[1] > b[1])) for a, b in pairs]
    every = [x for v in by.values() for x in v]
    return {"accuracy": _mean(every), "n_pairs": len(every),
            "by_family": {f: {"accuracy": _mean(v), "n_pairs": len(v)} for f, v in sorted(by.items())}}


def family_metrics(name: str, records, rows, judged) -> dict:
    """One family's row: gold mean, accuracy (per sample), best-of-k coverage (prompts with a right
    answer among their k samples), copy rate (answers restating the asked operands, word or name:
    built-in world only), refusal rate."""
    idx = [i for i, r in enumerate(records) if (r.family or judged[i][0].family) == name]
    js = [j for i in idx for j in judged[i]]
    checkable = [i for i in idx if all(getattr(j, "correct", None) is not None for j in judged[i])]
    copies = [_copies(s.prompt, s.response) for i in idx for s in rows[i]]
    copies = [float(c) for c in copies if c is not None]
    return {
        "gold_mean": _mean([j.score for j in js]),
        "accuracy": _mean([float(j.correct) for i in checkable for j in judged[i]]),
        f"best_of_{len(rows[idx[0]]) if idx else 0}": _mean([float(any(j.correct for j in judged[i])) for i in checkable]),
        "copy_rate": _mean(copies),
        "refusal": _mean([float(bool(getattr(j, "refused", False))) for j in js]),
        "n": len(js),
    }


def _copies(prompt: str, response: str) -> bool | None:
    try:
        from ..world.tasks import copies_prompt
    except ImportError:  # pragma: no cover - the world ships with rlhfkit
        return None
    return copies_prompt(prompt, response)


def examples(records, rows, judged, n: int) -> list[dict]:
    """Up to n (prompt, family, response, score) rows, first sample of each prompt, families first spread."""
    seen: set = set()
    order = [i for i, r in enumerate(records) if not (r.family in seen or seen.add(r.family))]
    order += [i for i in range(len(records)) if i not in order]
    return [{"prompt": records[i].prompt, "family": records[i].family or judged[i][0].family,
             "response": rows[i][0].response, "score": judged[i][0].score} for i in order[:n]]
