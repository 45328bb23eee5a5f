"""rlhfkit.evaluate.policies and the KL of metrics.evaluate on a tiny model: sampling matches
`generate_text`, KL(π‖π) = 0 and KL(perturbed‖π) > 0 (checked against the engine's own sampling
log-probs), folder resolution, best-of-n and few-shot prompting.

Run: .venv/bin/python -m pytest tests/evaluate/test_policies.py -q
"""

from __future__ import annotations

import json
import math

import pytest
import torch

from rlhfkit.data.formats import PromptRecord
from rlhfkit.evaluate.metrics import build_few_shot, evaluate, sequence_kls
from rlhfkit.evaluate.policies import (BestOfNPolicy, HFPolicy, cut_at_stop, few_shot_prefix, load_policy,
                                       resolve_model_dir)
from rlhfkit.rl.text import generate_text

PROMPTS = ["What is 3 plus 4?", "How do I feed the cat?", "What colour is the fox?"]


def constant_judge(prompt, response, finished=True):
    from .test_metrics import J

    return J(float(len(response) % 3), "f", None, False)


def test_rollout_matches_generate_text(model_dir):
    policy = HFPolicy(model_dir, max_new_tokens=12, batch_size=4)  # 3 prompts x 2 = 6: two batches
    ref = generate_text(policy.model, policy.tokenizer, PROMPTS, 2, policy.params, seed=5, batch_size=4)
    rows = policy.generate(PROMPTS, 2, seed=5)
    assert [[s.response for s in r] for r in rows] == [[s.response for s in r] for r in ref]
    assert [[s.n_tokens for s in r] for r in rows] == [[s.n_tokens for s in r] for r in ref]
    assert rows[1][0].prompt == PROMPTS[1]


def test_kl_zero_for_same_model_positive_for_perturbed(model_dir, perturbed_dir):
    prompts = [PromptRecord(p) for p in PROMPTS]
    same = HFPolicy(model_dir, max_new_tokens=12)
    r = evaluate(same, prompts, n_samples=4, ref=model_dir, judge=constant_judge)
    assert r["kl"] == pytest.approx(0.0, abs=1e-5)

    moved = HFPolicy(perturbed_dir, max_new_tokens=12, temperature=0.8)
    r2 = evaluate(moved, prompts, n_samples=4, ref=model_dir.parent, judge=constant_judge)  # stage folder
    assert r2["kl"] > 0.05
    # Independent route: the engine's sampling log-probs (KV-cached decode) minus the reference's.
    rows, batches = moved.rollout(PROMPTS, 4, seed=0)
    ref = load_policy(model_dir, temperature=0.8).model
    from rlhfkit.rl.engine import forward_logprobs

    direct = []
    for s in batches:
        ref_logp, _ = forward_logprobs(ref, s.sequences, s.attention_mask, s.prompt_len, 0.8)
        direct += ((s.logprobs - ref_logp) * s.response_mask).sum(-1).tolist()
    assert r2["kl"] == pytest.approx(sum(direct) / len(direct), rel=1e-3, abs=1e-4)
    assert sequence_kls(moved, batches, moved.model) == pytest.approx([0.0] * len(direct), abs=1e-5)


def test_load_policy_resolves_folders(model_dir, tmp_path):
    assert resolve_model_dir(model_dir.parent) == model_dir
    assert isinstance(load_policy(model_dir.parent), HFPolicy)
    assert load_policy(model_dir).name == "sft"  # named after the stage, not "model"
    with pytest.raises(FileNotFoundError, match="not a model folder"):
        load_policy(tmp_path)
    with pytest.raises(FileNotFoundError, match="no such"):
        load_policy(tmp_path / "missing")
    (tmp_path / "best_of_n.json").write_text(json.dumps({"model": str(model_dir)}))
    with pytest.raises(ValueError, match="missing reward, n"):
        load_policy(tmp_path)


class LengthScorer:
    """Scores a response by its length: best-of-n must then keep the longest of each n."""

    def score_texts(self, prompts, responses):
        return torch.tensor([float(len(r)) for r in responses]), torch.zeros(len(responses))


def test_best_of_n_keeps_highest_scored(model_dir):
    base = HFPolicy(model_dir, max_new_tokens=10)
    bon = BestOfNPolicy(base, LengthScorer(), n=3)
    rows = bon.generate(PROMPTS[:2], 2, seed=3)
    pool = base.generate(PROMPTS[:2], 6, seed=3)  # the same draws best-of-n saw
    for picks, drawn in zip(rows, pool):
        for g, pick in enumerate(picks):
            group = drawn[3 * g:3 * g + 3]
            assert len(pick.response) == max(len(s.response) for s in group)
    assert bon.kl_bound == pytest.approx(torch.log(torch.tensor(3.0)).item() - 2 / 3)


def test_best_of_n_from_folder(model_dir, tmp_path):
    from rlhfkit.data.tokenizer import load_tokenizer
    from rlhfkit.model import ScalarModel, load_causal_lm

    ScalarModel.from_causal_lm(load_causal_lm(model_dir)).save(tmp_path / "reward", load_tokenizer(model_dir))
    spec = tmp_path / "bon"
    spec.mkdir()
    (spec / "best_of_n.json").write_text(json.dumps({"model": str(model_dir), "reward": "../reward", "n": 2}))
    policy = load_policy(spec, max_new_tokens=8)
    assert isinstance(policy, BestOfNPolicy) and policy.n == 2
    r = evaluate(policy, [PromptRecord(p) for p in PROMPTS[:2]], n_samples=1, ref=model_dir,
                 judge=constant_judge)
    assert r["kl"] is None and r["kl_bound"] == pytest.approx(math.log(2) - 1 / 2)  # log n - (n-1)/n, n = 2


def test_cut_at_stop_and_prefix():
    assert cut_at_stop(" 7.\n\nQuestion: x") == (" 7.", True)
    assert cut_at_stop(" 7.\nQuestion: x") == (" 7.", True)
    assert cut_at_stop(" 7 and more") == (" 7 and more", False)
    assert few_shot_prefix([("q1", "a1"), ("q2", "a2")]) == "Question: q1\nAnswer: a1\n\nQuestion: q2\nAnswer: a2\n\n"


def test_build_few_shot_spreads_families_and_excludes_eval(tmp_path):
    demos = tmp_path / "sft.jsonl"
    rows = [{"prompt": f"q{f}{i}", "completion": f"a{f}{i}", "family": f} for f in "xyz" for i in range(3)]
    demos.write_text("\n".join(json.dumps(r) for r in rows))
    prefix = build_few_shot(demos, 3, exclude={"qx0", "qx1"}, seed=0)
    shown = [line.split(": ", 1)[1] for line in prefix.splitlines() if line.startswith("Question:")]
    assert len(shown) == 3 and {q[1] for q in shown} == set("xyz")  # one per family
    assert "qx0" not in shown and "qx1" not in shown
    assert build_few_shot(demos, 3, set(), seed=0) == build_few_shot(demos, 3, set(), seed=0)
    with pytest.raises(ValueError, match="fewer than 20"):
        build_few_shot(demos, 20, set())


def test_few_shot_evaluation_runs_raw(model_dir, tmp_path):
    demos = tmp_path / "sft.jsonl"
    demos.write_text("\n".join(json.dumps({"prompt": f"What is {i} plus 1?", "completion": f"{i} plus 1 is {i + 1}."})
                               for i in range(5)))
    seen = []

    def judge(prompt, response, finished=True):
        seen.append(prompt)
        return constant_judge(prompt, response, finished)

    r = evaluate(HFPolicy(model_dir, max_new_tokens=16), [PromptRecord(p) for p in PROMPTS], n_samples=2,
                 few_shot=2, demos=demos, judge=judge)
    assert r["few_shot"] == 2 and "2-shot" in r["policy"]
    assert set(seen) == set(PROMPTS)  # the judge sees the user's question, not the few-shot text
    assert r["examples"] and all("Question:" not in e["response"] for e in r["examples"])  # cut at the stop


def test_temperature_zero_is_greedy(model_dir):
    policy = HFPolicy(model_dir, max_new_tokens=12, temperature=0)
    assert policy.params.greedy
    rows = policy.generate(PROMPTS, 3, seed=1)
    # Every sample of a prompt is the argmax continuation: the same text, whatever the seed.
    assert all(len({s.response for s in row}) == 1 for row in rows)
    assert [r[0].response for r in rows] == [r[0].response for r in policy.generate(PROMPTS, 1, seed=7)]
    from rlhfkit.rl.engine import SamplingParams

    ref = generate_text(policy.model, policy.tokenizer, PROMPTS, 1, SamplingParams(max_new_tokens=12, greedy=True))
    assert [r[0].response for r in rows] == [r[0].response for r in ref]
