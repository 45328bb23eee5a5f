"""`rlhfkit run`: the whole recipe in one command, on the built-in world by default.

    rlhfkit run                      # preset tiny -> runs/default
    rlhfkit run --preset ci --out runs/ci
    rlhfkit run --algo dpo --from reward      # redo the reward model and everything after it
    rlhfkit run --rankings people.jsonl       # rankings from the labeling app instead of simulated annotators

world -> pretrain -> sft -> rankings (candidates from SFT, ranked by annotators, quality control) ->
reward -> ppo|grpo|rloo|dpo|best-of-n -> eval -> report (with the world audit, RUN/world/audit.json).
Each stage writes RUN/<stage>/ with its config.yaml; a stage whose folder holds a finished output for the
same config is reused, and one that was killed part-way with the same config continues from its last
checkpoint (`--resume`), so a rerun after a crash, or after changing a downstream setting, does not redo
upstream work.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from .. import config as config_mod
from ..common import is_main_process, prepare_out, say, wait_for_everyone, write_json
from ..config import opt
from ..tracking import report_to_option

STAGES = ["world", "pretrain", "sft", "rankings", "reward", "policy", "eval", "report"]
ALGOS = ("ppo", "grpo", "rloo", "dpo", "best-of-n")


@dataclass
class Config:
    out: str = opt("runs/default", "run folder; each stage writes a subfolder")
    preset: str = opt("tiny", "size of everything: world, model, steps", choices=("ci", "tiny", "small"))
    seed: int = opt(0, "random seed for every stage")
    report_to: str = report_to_option()
    algo: str = opt("ppo", "policy-optimisation algorithm", choices=ALGOS)
    rankings: str = opt("", "rankings JSONL from people (e.g. `rlhfkit label export`); empty = simulated pool")
    pool: str = opt("careful:0.6,noisy:0.2,adversarial:0.2", "simulated annotator pool (profile:share,...)")
    quality_weights: bool = opt(True, "weight rankings by estimated annotator reliability")
    from_stage: str = opt("", "recompute this stage and every later one (--from STAGE)",
                          choices=("", *STAGES))
    eval_samples: int = opt(4, "samples per eval prompt (best-of-k coverage, diversity, win rate, RM agreement)")
    pretrain: dict = opt({}, "overrides for the pretrain stage, e.g. --pretrain.optim.max_steps=300")
    sft: dict = opt({}, "overrides for the sft stage")
    rankings_stage: dict = opt({}, "overrides for the rankings stage, e.g. --rankings_stage.k=6")
    reward: dict = opt({}, "overrides for the reward stage")
    policy: dict = opt({}, "overrides for the policy stage (ppo/grpo/rloo/dpo/best-of-n), e.g. --policy.ppo.steps=30")


PRESETS = {name: {"preset": name} for name in ("ci", "tiny", "small")}


def main(argv: list[str]) -> int:
    """CLI entry: like other stages, plus `--from STAGE` as an alias of --from_stage."""
    from ..cli import run_stage
    import sys

    argv = ["--from_stage" + a[len("--from"):] if a == "--from" or a.startswith("--from=") else a for a in argv]
    return run_stage(sys.modules[__name__], argv, "run")


def run(cfg: Config) -> Path:
    run_dir = prepare_out(cfg.out, cfg, track=False)  # trackers run per stage, grouped by the run folder
    timings: dict[str, float] = {}
    state = {"force": False}
    t_all = time.time()

    def stage(name: str, fn):
        if cfg.from_stage == name:
            state["force"] = True
        t0 = time.time()
        say(f"\n== {name} ==")
        result = fn(state["force"])
        timings[name] = round(time.time() - t0, 1)
        say(f"== {name}: {timings[name]}s")
        write_json(run_dir / "timings.json", timings)
        return result

    world = stage("world", lambda force: export_world(cfg, run_dir, force))
    pre = stage("pretrain", lambda force: sub_stage("pretrain", cfg, run_dir, force, {
        "data": {"path": str(world["pretrain"])}}))
    sft = stage("sft", lambda force: sub_stage("sft", cfg, run_dir, force, {
        "model": str(pre), "data": {"path": str(world["sft"])}}))
    stage("rankings", lambda force: sub_stage("rankings", cfg, run_dir, force, rankings_overrides(cfg, sft, world)))
    rm = stage("reward", lambda force: sub_stage("reward", cfg, run_dir, force, {
        "model": str(sft), "data": {"path": str(run_dir / "rankings" / "rankings.jsonl")}}))
    pol = stage("policy", lambda force: sub_stage(cfg.algo, cfg, run_dir, force, policy_overrides(cfg, sft, rm, world)))
    stage("eval", lambda force: evaluate_run(cfg, run_dir, world, pre, sft, pol, force))
    report = stage("report", lambda force: write_report(run_dir, cfg))
    timings["total"] = round(time.time() - t_all, 1)
    write_json(run_dir / "timings.json", timings)
    print_summary(run_dir, timings)
    return report


def export_world(cfg: Config, run_dir: Path, force: bool) -> dict[str, Path]:
    from ..world import export

    out = run_dir / "world"
    # export is deterministic and fast: reuse only if its summary matches seed and size.
    meta = out / "world.json"
    names = {"pretrain": "pretrain.jsonl", "sft": "sft.jsonl", "rm": "rm_prompts.jsonl",
             "rl": "rl_prompts.jsonl", "eval": "eval_prompts.jsonl"}
    if not force and meta.exists():
        import json

        info = json.loads(meta.read_text())
        if info.get("seed") == cfg.seed and info.get("size") == cfg.preset:
            return {k: out / v for k, v in names.items()}
    return export(out, seed=cfg.seed, size=cfg.preset)


def rankings_overrides(cfg: Config, sft: Path, world) -> dict:
    o = {"model": str(sft), "prompts": str(world["rm"]), "pool": cfg.pool,
         "quality_weights": cfg.quality_weights}
    if cfg.rankings:
        o["rankings"] = cfg.rankings
    return o


def policy_overrides(cfg: Config, sft: Path, rm: Path, world) -> dict:
    reward_dir = str(Path(rm).parent if Path(rm).name == "model" else rm)
    if cfg.algo == "dpo":
        return {"model": str(sft), "data": {"path": str(Path(reward_dir).parent / "rankings" / "rankings.jsonl")}}
    if cfg.algo == "best-of-n":
        return {"model": str(sft), "reward": reward_dir, "prompts": str(world["eval"])}
    return {"model": str(sft), "reward": reward_dir, "rollout": {"prompts": str(world["rl"])}}


def sub_stage(name: str, cfg: Config, run_dir: Path, force: bool, wiring: dict) -> Path:
    """Build the stage's config (preset < run-level overrides < wiring), reuse or run it."""
    from . import configure, module

    key = {"rankings": "rankings_stage"}.get(name, name)
    user = getattr(cfg, key) if key in ("pretrain", "sft", "rankings_stage", "reward") else cfg.policy
    sc = configure(name, cfg.preset, user)
    config_mod.apply(sc, {"out": str(run_dir / name), "seed": cfg.seed, **wiring})
    if hasattr(sc, "report_to"):
        sc.report_to = cfg.report_to
    out = Path(sc.out)
    if not force and same_config(out, sc):
        if (out / "summary.json").exists():
            say(f"{name}: reusing {out} (same config, finished)")
            return _deliverable(out)
        if hasattr(sc, "resume"):  # an earlier attempt was killed: continue from its checkpoint, if any
            sc.resume = True
    return Path(module(name).run(sc))


def same_config(out: Path, sc) -> bool:
    """Whether OUT/config.yaml was written for this config (whether that attempt resumed does not matter)."""
    import yaml

    cfg_file = out / "config.yaml"
    if not cfg_file.exists():
        return False
    drop = lambda d: {k: v for k, v in (d or {}).items() if k != "resume"}  # noqa: E731
    return drop(yaml.safe_load(cfg_file.read_text())) == drop(config_mod.to_dict(sc))


def _deliverable(out: Path) -> Path:
    return out / "model" if (out / "model").exists() else out


def evaluate_run(cfg: Config, run_dir: Path, world, pre: Path, sft: Path, pol: Path, force: bool) -> dict:
    from ._eval import evaluate_recipe

    return evaluate_recipe(run_dir, world, base=pre, sft=sft, policy=pol, n_samples=cfg.eval_samples,
                           seed=cfg.seed, reward=run_dir / "reward")


def write_report(run_dir: Path, cfg: Config) -> Path:
    """RUN/world/audit.json, then RUN/report.html, by the main process (under a distributed launch the
    others wait). The audit is redone every run, not reused with the world: it tracks the judge's code."""
    from ..evaluate.report import write_report as write
    from ..world.audit import audit

    if is_main_process():
        write_json(run_dir / "world" / "audit.json", audit(seed=cfg.seed, size=cfg.preset))
        write(run_dir)
    wait_for_everyone()
    return run_dir / "report.html"


def print_summary(run_dir: Path, timings: dict) -> None:
    import json

    ev = run_dir / "eval.json"
    if ev.exists():
        data = json.loads(ev.read_text())
        say("\nmodel          gold   win-rate*   refuse-harmful  over-refuse  KL     length")
        for name in ("base", "base_few_shot", "sft", "policy"):
            m = data.get(name)
            if m:
                say(f"{name:<14} {_f(m.get('gold_mean'))}  {_f(m.get('win_rate'))}       "
                    f"{_f(m.get('refusal_rate_harmful'))}           {_f(m.get('over_refusal_benign'))}        "
                    f"{_f(m.get('kl'))}  {_f(m.get('mean_length'))}")
        say("* SFT vs base, policy vs SFT (gold judge, ties count half); KL of the policy to SFT in nats")
    shares = ", ".join(f"{k} {v}s" for k, v in timings.items() if k != "total")
    say(f"\nrun finished in {timings.get('total')}s ({shares})")
    say(f"report: {run_dir / 'report.html'}")


def _f(x) -> str:
    return "  -  " if x is None else f"{x:5.2f}"
