"""`rlhfkit experiment NAME`: the experiments the recipe raises, each a small driver over the stages of a
finished `rlhfkit run` folder, writing RUN/experiments/NAME.json (shown in the run's report).

    rlhfkit experiment sft-ablation     --run runs/default
    rlhfkit experiment bad-labelers     --run runs/default [--fractions 0,0.1,0.2,0.4] [--algo ppo]
    rlhfkit experiment overoptimization --run runs/default [--ns 1,2,4,8,16,32,64] [--kl-coefs 0.2,0.05,0.01]

- sft-ablation: why SFT comes before RL — rankings, reward model and PPO started from the *base* model
  instead of SFT (same budget), compared on gold reward.
- bad-labelers: the crowd-sourcing risk — the recipe with a share of adversarial annotators (who prefer
  harmful compliance), with and without quality-control weights; harmful-compliance rate and gold score.
- overoptimization: gold vs proxy reward against sqrt(KL) for best-of-n and for PPO at several KL
  coefficients, with Gao et al. (2022)'s functional forms fitted: best-of-n R(d) = d(α − βd), RL
  R(d) = d(α − β log d), d = sqrt(KL).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from .. import config as config_mod
from ..common import say, write_json

USAGE = __doc__.split("\n\n")[1] + """

flags:
  --run DIR            a finished `rlhfkit run` folder (default runs/default)
  --preset NAME        stage presets to use (default: the run's preset)
  --algo NAME          bad-labelers: policy algorithm, ppo or best-of-n (default ppo)
  --fractions LIST     bad-labelers: adversarial shares (default 0,0.1,0.2,0.4)
  --ns LIST            overoptimization: best-of-n sizes (default 1,2,4,8,16,32,64)
  --kl-coefs LIST      overoptimization: PPO KL coefficients (default 0.2,0.05,0.01)
  --seed N             seed (default 0)"""


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0
    name, rest = argv[0], argv[1:]
    flags, extra = config_mod.split_flags(rest)
    if extra or name not in EXPERIMENTS:
        raise ValueError(f"unknown experiment '{name}'; choose one of {', '.join(EXPERIMENTS)}\n{USAGE}")
    run_dir = Path(flags.pop("run", "runs/default"))
    if not (run_dir / "sft" / "model").exists():
        raise FileNotFoundError(f"{run_dir}: not a finished run (run `rlhfkit run --out {run_dir}` first)")
    preset = flags.pop("preset", None) or _run_preset(run_dir)
    result = EXPERIMENTS[name](run_dir, preset, int(flags.pop("seed", 0)), flags)
    path = run_dir / "experiments" / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, result)
    say(json.dumps(result.get("summary", {}), indent=2))
    say(f"experiment {name}: -> {path}")
    return 0


def _run_preset(run_dir: Path) -> str:
    import yaml

    return yaml.safe_load((run_dir / "config.yaml").read_text()).get("preset", "tiny")


def stage(name: str, preset: str, seed: int, wiring: dict) -> Path:
    """Run one stage with its preset plus `wiring` (dotted overrides, as on the command line); returns its
    deliverable."""
    from . import configure, module

    return Path(module(name).run(configure(name, preset, {"seed": seed, **wiring})))


def _eval(run_dir: Path, policy: Path, vs: Path | None, seed: int) -> dict:
    from ..data.formats import load_prompts
    from ..evaluate.metrics import evaluate
    from ..evaluate.policies import load_policy

    prompts = list(load_prompts(run_dir / "world" / "eval_prompts.jsonl"))
    kw = dict(temperature=1.0, max_new_tokens=48)
    r = evaluate(load_policy(policy, **kw), prompts, 2, seed, vs=load_policy(vs, **kw) if vs else None,
                 n_examples=0)
    return {k: r.get(k) for k in ("gold_mean", "win_rate", "refusal_rate_harmful", "over_refusal_benign",
                                  "mean_length", "per_family")}


def _rm_eval(reward_dir: Path) -> dict:
    ev = json.loads((reward_dir / "eval.json").read_text()) if (reward_dir / "eval.json").exists() else {}
    return {k: ev.get(k) for k in ("accuracy", "gold_accuracy")}


def sft_ablation(run_dir: Path, preset: str, seed: int, flags: dict) -> dict:
    exp, world = run_dir / "experiments" / "sft-ablation", run_dir / "world"
    out = {}
    for start in ("base", "sft"):
        model = run_dir / ("pretrain" if start == "base" else "sft") / "model"
        d = exp / start
        stage("rankings", preset, seed, {"out": d / "rankings", "model": model, "prompts": world / "rm_prompts.jsonl"})
        stage("reward", preset, seed, {"out": d / "reward", "model": model,
                                       "data.path": d / "rankings" / "rankings.jsonl"})
        pol = stage("ppo", preset, seed, {"out": d / "ppo", "model": model, "reward": d / "reward",
                                          "rollout.prompts": world / "rl_prompts.jsonl"})
        cands = json.loads((d / "rankings" / "summary.json").read_text())
        out[start] = {"reward_model": _rm_eval(d / "reward"), "candidates": cands.get("identical_pairs"),
                      "policy": _eval(run_dir, pol, run_dir / "sft" / "model", seed)}
    summary = {s: {"rm_gold_accuracy": out[s]["reward_model"].get("gold_accuracy"),
                   "policy_gold_mean": out[s]["policy"]["gold_mean"]} for s in out}
    return {"summary": summary, "details": out}


def bad_labelers(run_dir: Path, preset: str, seed: int, flags: dict) -> dict:
    fractions = [float(x) for x in flags.get("fractions", "0,0.1,0.2,0.4").split(",")]
    algo = flags.get("algo", "ppo")
    exp, world, sft = run_dir / "experiments" / "bad-labelers", run_dir / "world", run_dir / "sft" / "model"
    rows = []
    for frac in fractions:
        pool = f"careful:{1 - frac:.2f},adversarial:{frac:.2f}" if frac else "careful:1.0"
        d0 = exp / f"adv{frac:.2f}"
        for qc in (False, True):
            # Same seed: the same candidates and labels; only the quality-control weights differ.
            d = d0 / ("qc" if qc else "no_qc")
            stage("rankings", preset, seed, {"out": d / "rankings", "model": sft, "prompts": world / "rm_prompts.jsonl",
                                             "pool": pool, "quality_weights": qc})
            stage("reward", preset, seed, {"out": d / "reward", "model": sft,
                                           "data.path": d / "rankings" / "rankings.jsonl"})
            wiring = ({"rollout.prompts": world / "rl_prompts.jsonl"} if algo == "ppo"
                      else {"prompts": world / "eval_prompts.jsonl"})
            pol = stage(algo, preset, seed, {"out": d / algo, "model": sft, "reward": d / "reward", **wiring})
            ev = _eval(run_dir, pol, sft, seed)
            rows.append({"adversarial": frac, "quality_weights": qc, "reward_model": _rm_eval(d / "reward"),
                         "harmful_compliance": None if ev["refusal_rate_harmful"] is None
                         else 1 - ev["refusal_rate_harmful"], **ev})
    return {"summary": [{k: r[k] for k in ("adversarial", "quality_weights", "harmful_compliance", "gold_mean")}
                        for r in rows], "details": rows}


def fit_gao(d: np.ndarray, r: np.ndarray, kind: str) -> dict | None:
    """Least-squares fit of Gao et al.'s forms (through the origin): bon d(α−βd), rl d(α−β log d)."""
    keep = d > 1e-6
    if keep.sum() < 2:
        return None
    d, r = d[keep], r[keep]
    second = d * d if kind == "bon" else d * np.log(d)
    X = np.stack([d, -second], axis=1)
    (alpha, beta), *_ = np.linalg.lstsq(X, r, rcond=None)
    return {"alpha": float(alpha), "beta": float(beta)}


def overoptimization(run_dir: Path, preset: str, seed: int, flags: dict) -> dict:
    ns = [int(x) for x in flags.get("ns", "1,2,4,8,16,32,64").split(",")]
    coefs = [float(x) for x in flags.get("kl-coefs", flags.get("kl_coefs", "0.2,0.05,0.01")).split(",")]
    exp, world = run_dir / "experiments" / "overoptimization", run_dir / "world"
    sft, rm = run_dir / "sft" / "model", run_dir / "reward"
    bon_dir = stage("best-of-n", preset, seed, {"out": exp / "best-of-n", "model": sft, "reward": rm, "ns": ns,
                                                "n": max(ns), "prompts": world / "eval_prompts.jsonl"})
    bon = [json.loads(line) for line in (Path(bon_dir) / "metrics.jsonl").read_text().splitlines()]
    result = {"best_of_n": bon, "ppo": {}}
    d = np.sqrt([r.get("kl_analytic") or 0.0 for r in bon])
    for key in ("gold_reward", "proxy_reward"):
        vals = np.array([r.get(key) if r.get(key) is not None else np.nan for r in bon], dtype=float)
        if np.isfinite(vals).all():
            result[f"best_of_n_fit_{key}"] = fit_gao(d, vals - vals[0], "bon")
    for coef in coefs:
        out = exp / f"ppo_kl{coef}"
        stage("ppo", preset, seed, {"out": out, "model": sft, "reward": rm, "rollout.prompts": world / "rl_prompts.jsonl",
                                    "ppo.kl_coef": coef})
        rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
        curve = [{k: r.get(k) for k in ("step", "kl", "proxy_reward", "gold_reward")} for r in rows]
        dk = np.sqrt(np.clip([r["kl"] or 0 for r in curve], 0, None))
        gold = np.array([r["gold_reward"] if r["gold_reward"] is not None else np.nan for r in curve])
        fit = fit_gao(dk, gold - gold[0], "rl") if np.isfinite(gold).all() else None
        result["ppo"][str(coef)] = {"curve": curve, "fit_gold": fit}
    result["summary"] = {"best_of_n": [{k: r.get(k) for k in ("n", "proxy_reward", "gold_reward", "kl_analytic", "kl_samples")} for r in bon],
                         "ppo_final": {c: v["curve"][-1] for c, v in result["ppo"].items()}}
    return result


EXPERIMENTS = {"sft-ablation": sft_ablation, "bad-labelers": bad_labelers, "overoptimization": overoptimization}

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
