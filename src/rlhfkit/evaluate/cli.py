"""`rlhfkit eval`: gold-judge evaluation of a model on held-out prompts (and win rate vs another).

    rlhfkit eval --model runs/NAME/ppo --vs runs/NAME/sft --ref runs/NAME/sft --n 4
    rlhfkit eval --model runs/NAME/pretrain --few-shot 3 --demos runs/NAME/world/sft.jsonl --json

Prints a table, or with --json exactly one JSON object on stdout (progress goes to stderr).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

DESCRIPTION = """Sample responses to held-out prompts, score them with the built-in world's gold judge, and
report gold mean (overall and per family), refusal rates, length, finish rate, diversity, instruction
following, KL to a reference model (--ref) and the gold win rate against another model (--vs)."""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="rlhfkit eval", description=DESCRIPTION)
    p.add_argument("--model", required=True, metavar="DIR",
                   help="model folder (config.json), stage folder holding model/, or best-of-n folder "
                        "(best_of_n.json)")
    p.add_argument("--vs", metavar="DIR", help="second model: report the gold win rate of --model against it "
                   "(same prompts, sample by sample, ties count half)")
    p.add_argument("--ref", metavar="DIR", help="reference model for Monte-Carlo KL(model || ref) on the "
                   "model's own samples (nats per sequence; model folders only)")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--prompts", metavar="JSONL", help="eval prompts ({'prompt', 'family', 'id'} per line)")
    src.add_argument("--world-size", choices=("ci", "tiny", "small"), default=None,
                     help="export the built-in world of this size to a temporary folder and use its eval "
                          "prompts (default when --prompts is not given: ci)")
    p.add_argument("--world-seed", type=int, default=0, help="seed of the exported world (use the run's seed so "
                   "its held-out eval prompts are the ones the run held out; default 0)")
    p.add_argument("--n", type=int, default=4, metavar="N", help="samples per prompt (default 4)")
    p.add_argument("--few-shot", type=int, default=0, metavar="K",
                   help="prompt the model as a base model with K Q/A demonstrations (needs --demos, or the "
                        "world's sft.jsonl when using --world-size)")
    p.add_argument("--demos", metavar="JSONL", help="SFT demonstrations to draw few-shot examples from")
    p.add_argument("--temperature", type=float, default=1.0, help="sampling temperature (default 1.0; KL "
                   "is measured at this temperature); 0 = greedy decoding (use --n 1)")
    p.add_argument("--max-new-tokens", type=int, default=64, help="response length limit (default 64)")
    p.add_argument("--raw", action="store_true", help="feed prompts as plain text, without the chat template")
    p.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    p.add_argument("--limit", type=int, default=None, metavar="N", help="evaluate only the first N prompts")
    p.add_argument("--reward", metavar="DIR", help="a reward model folder (rlhfkit reward's OUT): also report how "
                   "often it orders the samples of a prompt as the gold judge does, per family")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    return p


def _check(args) -> None:
    for name in ("n", "limit", "max_new_tokens"):
        v = getattr(args, name)
        if v is not None and v < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {v}")
    if args.few_shot < 0:
        raise ValueError(f"--few-shot must be >= 0, got {args.few_shot}")
    if args.temperature < 0:
        raise ValueError(f"--temperature must be >= 0 (0 = greedy), got {args.temperature}")
    if args.few_shot and not args.demos and args.prompts:
        raise ValueError("--few-shot needs --demos sft.jsonl (or --world-size to use the world's demos)")


def _prompts_and_demos(args, tmp: Path):
    from ..data.formats import load_prompts

    demos = args.demos
    path = args.prompts
    if path is None:
        from ..world import export

        paths = export(tmp / "world", seed=args.world_seed, size=args.world_size or "ci")
        path = paths["eval"]
        demos = demos or paths["sft"]
    records = list(load_prompts(path))
    return records[:args.limit] if args.limit else records, demos


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help (0) or a usage error (2, message already printed)
        return int(e.code or 0)
    from ..common import StageError
    from .metrics import evaluate
    from ..model.reward_scorer import load_reward
    from .policies import load_policy

    try:
        _check(args)
        kw = dict(temperature=args.temperature, max_new_tokens=args.max_new_tokens, raw=args.raw)
        with tempfile.TemporaryDirectory(prefix="rlhfkit-eval-") as tmp:
            policy = load_policy(args.model, **kw)  # fail on a bad folder before exporting a world
            vs = load_policy(args.vs, **kw) if args.vs else None
            records, demos = _prompts_and_demos(args, Path(tmp))
            print(f"eval: {getattr(policy, 'name', args.model)} on {len(records)} prompts x {args.n} samples",
                  file=sys.stderr)
            reward = load_reward(args.reward) if args.reward else None
            result = evaluate(policy, records, n_samples=args.n, seed=args.seed, ref=args.ref, vs=vs,
                              few_shot=args.few_shot, demos=demos, reward=reward)
    except (ValueError, FileNotFoundError, StageError, OSError) as e:
        print(f"rlhfkit eval: error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(result) if args.json else format_table(result))
    return 0


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.3f}"
    return str(v)


SUMMARY_KEYS = ("gold_mean", "win_rate", "vs_gold_mean", "kl", "kl_bound", "refusal_rate_harmful",
                "over_refusal_benign", "refusal_rate_other", "instruction_following", "finish_rate",
                "mean_length")


def format_table(r: dict) -> str:
    """A plain-text summary: headline metrics, diversity, then one row per family."""
    lines = [f"model: {r.get('policy')}   prompts: {r.get('n_prompts')}   samples/prompt: {r.get('n_samples')}"]
    lines += [f"  {k:<24}{_fmt(r.get(k))}" for k in SUMMARY_KEYS if k in r and (r[k] is not None or k == "kl")]
    for k, v in (r.get("diversity") or {}).items():
        lines.append(f"  {k:<24}{_fmt(v)}")
    rm = (r.get("rm_gold_agreement") or {}).get("by_family") or {}
    if r.get("rm_gold_agreement"):
        lines.append(f"  {'rm_gold_agreement':<24}{_fmt(r['rm_gold_agreement']['accuracy'])}")
    lines += ["", f"  {'family':<14}{'gold':>8}{'accuracy':>10}{'best-of-k':>11}{'copy':>8}{'refusal':>9}"
              + (f"{'RM~gold':>9}" if rm else "") + f"{'n':>6}"]
    for fam, m in (r.get("per_family") or {}).items():
        best = next((v for k, v in m.items() if k.startswith("best_of_")), None)
        lines.append(f"  {fam:<14}{_fmt(m.get('gold_mean')):>8}{_fmt(m.get('accuracy')):>10}{_fmt(best):>11}"
                     f"{_fmt(m.get('copy_rate')):>8}{_fmt(m.get('refusal')):>9}"
                     + (f"{_fmt((rm.get(fam) or {}).get('accuracy')):>9}" if rm else "") + f"{m.get('n', 0):>6}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
