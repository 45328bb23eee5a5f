"""Stage 4 alternative, best-of-n: sample n responses from the SFT model and keep the one the reward model
scores highest (Nakano et al. 2021, WebGPT's "rejection sampling"; Gao et al. 2022's baseline for RL).

    rlhfkit best-of-n --preset tiny --model runs/demo/sft/model --reward runs/demo/reward --out runs/demo/best-of-n
    rlhfkit best-of-n --reward gold ...          # the world's judge as the reward: a "true reward" ceiling

Best-of-n is a policy, not a training run. `run` writes OUT/best_of_n.json — {"model", "reward", "n",
"temperature", "max_new_tokens"}, what evaluation loads as a policy (`generate_best_of_n` samples from it) —
and measures, on the eval (or RL) prompts, for each n in `ns`:
  - the mean proxy reward of the chosen response, and its mean gold reward when the prompts are the world's,
  - KL(π_bon ‖ π): the analytic log n - (n-1)/n, an upper bound (Gao et al. 2022; Beirami et al. 2024), and a
    plug-in estimate from the samples that counts repeated responses (`rlhfkit.rl.bon.bon_kl_from_samples`).
Sampling happens once, `samples` responses per prompt (default: the largest n); the policy for a smaller n takes
the *first n* of each prompt's samples, so the n curve uses nested sets — each n is an unbiased best-of-n
draw, and the chosen reward cannot drop as n grows. The KL estimate uses all samples of a prompt as its empirical
π, so it cannot exceed log(samples) and is biased low for n close to `samples`: raise `samples` to tighten it.
Outputs: best_of_n.json, summary.json, metrics.jsonl (one row per n, step = n), samples.jsonl.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch

from ..common import MetricsLogger, StageError, prepare_out, say, seed_everything, set_threads, write_json
from ..config import opt
from ..tracking import report_to_option
from ..rl.bon import bon_kl_analytic, bon_kl_from_samples
from ..rl.engine import SamplingParams
from ..rl.rewards import gold_scores, make_reward


@dataclass
class Config:
    out: str = opt("runs/default/best-of-n", "output folder (best_of_n.json, summary.json, metrics.jsonl)")
    seed: int = opt(0, "random seed (sampling)")
    report_to: str = report_to_option()
    model: str = opt("runs/default/sft/model", "the policy that is sampled (the SFT model)")
    reward: str = opt("runs/default/reward", "reward-model folder (one or an ensemble), 'gold' = the world's "
                      "judge, or module:function")
    n: int = opt(16, "n of the best-of-n policy written to best_of_n.json")
    ns: list[int] = opt([1, 2, 4, 8, 16], "values of n to measure (reward and KL per n)")
    samples: int = opt(0, "responses sampled per prompt (0 = the largest n); more tightens the KL estimate")
    temperature: float = opt(1.0, "sampling temperature")
    max_new_tokens: int = opt(48, "response length limit (tokens)")
    prompts: str = opt("world", "prompt JSONL / dataset folder; 'world' = the built-in world's prompts")
    world_split: str = opt("eval", "which world prompts when prompts is 'world'", choices=("eval", "rl"))
    world_size: str = opt("tiny", "built-in world size when prompts is 'world'", choices=("ci", "tiny", "small"))
    max_prompts: int = opt(0, "measure on at most this many prompts (0 = all)")
    batch_size: int = opt(64, "sequences per generation batch")
    eos_penalty: float = opt(1.0, "a response that never ends scores below every finished response to its prompt, "
                             "minus this (0 = off), so best-of-n never prefers a truncated response")


PRESETS = {
    "ci": {"world_size": "ci", "max_prompts": 16, "ns": [1, 2, 4, 8], "n": 8, "max_new_tokens": 32},
    "tiny": {"world_size": "tiny", "max_prompts": 128, "ns": [1, 2, 4, 8, 16], "n": 16},
    "small": {"world_size": "small", "max_prompts": 256, "ns": [1, 2, 4, 8, 16, 32], "n": 16, "samples": 64},
}


def select_best(rewards: torch.Tensor, n: int) -> torch.Tensor:
    """Index [P] of the highest reward among the first n samples of each prompt (rewards [P, N]; ties: first)."""
    return rewards[:, :n].argmax(dim=1)


def measure(responses: list[list[str]], proxy: torch.Tensor, gold: torch.Tensor | None, ns: list[int],
            n_tokens: torch.Tensor | None = None) -> list[dict]:
    """One row per n: mean proxy / gold reward of the chosen response, analytic and sampled KL, length.

    responses [P][N] texts, proxy and gold [P, N] rewards of each, n_tokens [P, N] response lengths.
    """
    P, N = proxy.shape
    rows = []
    for n in sorted(ns):
        if not 1 <= n <= N:
            raise ValueError(f"n={n} needs 1 <= n <= {N} samples per prompt")
        best = select_best(proxy, n)
        pick = torch.arange(P), best
        kl = [bon_kl_from_samples(responses[i], proxy[i].tolist(), n) for i in range(P)]
        row = {"n": n, "proxy_reward": proxy[pick].mean().item(),
               "gold_reward": None if gold is None else gold[pick].mean().item(),
               "kl_analytic": bon_kl_analytic(n), "kl_samples": sum(kl) / P}
        if n_tokens is not None:
            row["mean_tokens"] = n_tokens[pick].float().mean().item()
        rows.append(row)
    return rows


def generate_best_of_n(model, tokenizer, reward_fn, prompts: list[str], n: int, params: SamplingParams,
                       seed: int = 0, batch_size: int = 64):
    """Sample with the best-of-n policy: one TextSample per prompt, the highest-reward of n (what eval calls)."""
    from ..rl.text import generate_text

    samples = generate_text(model, tokenizer, prompts, k=n, params=params, seed=seed, batch_size=batch_size)
    rewards = score(reward_fn, samples)
    return [samples[i][j] for i, j in enumerate(select_best(rewards, n).tolist())]


def score(reward_fn, samples, eos_penalty: float = 0.0) -> torch.Tensor:
    """Rewards [P, N] of samples [P][N] from `fn(prompts, responses) -> (reward, spread)`. With `eos_penalty`
    > 0 a response that never ends (the reward model cannot see that it was cut off) scores
    min(r, lowest finished r of its prompt) − eos_penalty: below every finished response of the same
    prompt, so best-of-n never picks a truncated response when a finished one exists."""
    flat = [s for row in samples for s in row]
    reward, _ = reward_fn([s.prompt for s in flat], [s.response for s in flat])
    r = torch.as_tensor(reward, dtype=torch.float32).view(len(samples), -1)
    if eos_penalty <= 0:
        return r
    finished = torch.tensor([[s.finished for s in row] for row in samples])
    lowest_finished = torch.where(finished, r, torch.full_like(r, float("inf"))).min(-1, keepdim=True).values
    return torch.where(finished, r, torch.minimum(r, lowest_finished) - eos_penalty)


def load_prompt_list(cfg: Config, out: Path) -> list[str]:
    from ..data.formats import load_prompts

    path = cfg.prompts
    if path == "world":
        from ..world import export

        path = export(out / "world", seed=cfg.seed, size=cfg.world_size)[cfg.world_split]
    prompts = [r.prompt for r in load_prompts(path)]
    return prompts[:cfg.max_prompts] if cfg.max_prompts > 0 else prompts


def _check(cfg: Config) -> int:
    if cfg.n < 1 or not cfg.ns or min(cfg.ns) < 1:
        raise StageError(f"n and every value of ns must be >= 1 (n={cfg.n}, ns={cfg.ns})")
    largest = max(cfg.ns)
    if cfg.samples and cfg.samples < largest:
        raise StageError(f"samples={cfg.samples} is fewer than the largest n in ns ({largest})")
    return cfg.samples or largest


def run(cfg: Config) -> Path:
    from ..data.tokenizer import load_tokenizer
    from ..model.causal_lm import load_causal_lm
    from ..rl.text import generate_text

    N = _check(cfg)
    set_threads()
    seed_everything(cfg.seed)
    out = prepare_out(cfg.out, cfg)
    t0 = time.time()
    spec = {"model": cfg.model, "reward": cfg.reward, "n": cfg.n, "temperature": cfg.temperature,
            "max_new_tokens": cfg.max_new_tokens}
    write_json(out / "best_of_n.json", spec)
    prompts = load_prompt_list(cfg, out)
    if not prompts:
        raise StageError(f"{cfg.prompts}: no prompts")
    if cfg.reward == "gold" and gold_scores(prompts, [""] * len(prompts)) is None:  # fail before sampling
        raise StageError("reward 'gold' needs the built-in world's prompts; these are not")
    tokenizer, model = load_tokenizer(cfg.model), load_causal_lm(cfg.model)
    params = SamplingParams(max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature)
    say(f"best-of-n: sampling {N} responses for each of {len(prompts)} prompts")
    samples = generate_text(model, tokenizer, prompts, k=N, params=params, seed=cfg.seed, batch_size=cfg.batch_size)
    flat = [s for row in samples for s in row]
    gold = gold_scores([s.prompt for s in flat], [s.response for s in flat], [s.finished for s in flat])
    gold = None if gold is None else gold.view(len(prompts), N)
    if cfg.reward == "gold":
        proxy = gold  # the judge with `finished`, so truncated responses are penalised as in eval
    else:
        proxy = score(make_reward(cfg.reward), samples, cfg.eos_penalty)
    lengths = torch.tensor([[s.n_tokens for s in row] for row in samples])
    ns = sorted(set(cfg.ns) | ({cfg.n} if cfg.n <= N else set()))  # the written policy's n is measured too
    rows = measure([[s.response for s in row] for row in samples], proxy, gold, ns, lengths)
    logger = MetricsLogger(out, stage="best-of-n")
    for row in rows:
        logger.log(row["n"], **row)
    _write_samples(out, samples, proxy, gold)
    summary = {"policy": spec, "prompts": len(prompts), "samples_per_prompt": N, "gold_available": gold is not None,
               "mean_reward_all_samples": proxy.mean().item(), "by_n": rows, "wall_s": round(time.time() - t0, 1)}
    write_json(out / "summary.json", summary)
    for row in rows:
        gold_txt = "" if row["gold_reward"] is None else f", gold {row['gold_reward']:.3f}"
        say(f"best-of-{row['n']}: proxy {row['proxy_reward']:.3f}{gold_txt}, KL {row['kl_analytic']:.2f} "
            f"(bound) / {row['kl_samples']:.2f} (from samples)")
    return out


def _write_samples(out: Path, samples, proxy: torch.Tensor, gold: torch.Tensor | None) -> None:
    from ..data.formats import write_jsonl

    rows = [{"prompt": s.prompt, "response": s.response, "index": j, "finished": s.finished,
             "proxy_reward": proxy[i, j].item(), "gold_reward": None if gold is None else gold[i, j].item()}
            for i, row in enumerate(samples) for j, s in enumerate(row)]
    write_jsonl(out / "samples.jsonl", rows)
