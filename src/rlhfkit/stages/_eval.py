"""The evaluation step of `rlhfkit run`: base, base few-shot, SFT and the final policy on the held-out
eval prompts with the gold judge -> RUN/eval.json, plus side-by-side answers -> RUN/samples.json."""

from __future__ import annotations

from pathlib import Path

from ..common import say, write_json


def evaluate_recipe(run_dir: Path, world: dict, base: Path, sft: Path, policy: Path, n_samples: int = 4,
                    seed: int = 0, max_new_tokens: int = 48, temperature: float = 1.0, few_shot: int = 3,
                    reward: Path | None = None) -> dict:
    from ..data.formats import load_prompts
    from ..evaluate.metrics import evaluate
    from ..evaluate.policies import load_policy

    prompts = list(load_prompts(world["eval"]))
    kw = dict(temperature=temperature, max_new_tokens=max_new_tokens)
    base_p, sft_p = load_policy(base, **kw), load_policy(sft, **kw)
    pol_p = load_policy(policy if Path(policy).name == "model" else Path(policy), **kw)
    results = {}
    n_base = min(n_samples, 2)  # the base model rambles to the token limit: 2 samples tell its story
    say("eval: base model (chat template)")
    results["base"] = evaluate(base_p, prompts, n_base, seed, vs=None)
    say(f"eval: base model, {few_shot}-shot prompt")
    results["base_few_shot"] = evaluate(base_p, prompts, n_base, seed, few_shot=few_shot, demos=world["sft"])
    say("eval: SFT (win rate vs base" + (", reward model's agreement with gold on its samples)" if reward else ")"))
    results["sft"] = evaluate(sft_p, prompts, n_samples, seed, vs=base_p, reward=_reward(reward))
    say("eval: final policy (win rate and KL vs SFT)")
    results["policy"] = evaluate(pol_p, prompts, n_samples, seed, ref=sft, vs=sft_p)
    write_json(run_dir / "eval.json", results)
    write_json(run_dir / "samples.json", side_by_side(prompts, base_p, sft_p, pol_p, seed))
    return results


def _reward(path: Path | None):
    if path is None or not Path(path).is_dir():
        return None
    from ..model.reward_scorer import load_reward

    return load_reward(path)


def side_by_side(prompts, base_p, sft_p, pol_p, seed: int, per_family: int = 2) -> list[dict]:
    """A few prompts per family answered by base, SFT and the final policy (one sample each)."""
    from ..world import judge

    picked, counts = [], {}
    for r in prompts:
        if counts.get(r.family, 0) < per_family:
            counts[r.family] = counts.get(r.family, 0) + 1
            picked.append(r)
    texts = [r.prompt for r in picked]
    answers = {name: [row[0].response for row in p.generate(texts, 1, seed)]
               for name, p in (("base", base_p), ("sft", sft_p), ("policy", pol_p))}
    rows = []
    for i, r in enumerate(picked):
        row = {"prompt": r.prompt, "family": r.family}
        for name in answers:
            row[name] = answers[name][i]
            row[f"{name}_score"] = round(judge(r.prompt, answers[name][i]).score, 3)
        rows.append(row)
    return rows
