"""Demonstrators: each one's quality as named, and the mixture's gold mean (the SFT ceiling)."""

from __future__ import annotations

import random

import pytest

from rlhfkit.world import is_refusal, judge
from rlhfkit.world.demonstrators import DEMONSTRATORS, candidates, demonstrate
from rlhfkit.world.export import demonstration_gold
from rlhfkit.world.judge import FILLER, sentences
from rlhfkit.world.splits import build_splits
from rlhfkit.world.tasks import parse_prompt, universe


@pytest.fixture(scope="module")
def sft():
    return build_splits(seed=0, size="tiny")["sft"]


def test_demonstrator_gold_means(sft):
    gold = demonstration_gold(sft)
    print("\ndemonstration gold means (tiny, seed 0):", gold)
    # Right and concise; one answer in ten takes the bare form ("The answer is 7."), worth 0.895.
    assert 0.98 <= gold["good"] < 1.0
    assert gold["good"] > max(gold["verbose"], gold["sloppy"], gold["careless"]) + 0.3
    # The mixture leaves headroom: an SFT model imitating it should land near 0.3-0.5 on eval.
    assert 0.5 <= gold["mixture"] <= 0.72
    mix = {d: sum(r["demonstrator"] == d for r in sft) / len(sft) for d in DEMONSTRATORS}
    assert all(abs(mix[d] - w) < 0.05 for d, w in DEMONSTRATORS.items()), mix


def test_errors_are_visible_in_the_text(sft):
    """What each demonstrator gets wrong shows in the response, not only in hidden arithmetic."""
    by = {d: [r for r in sft if r["demonstrator"] == d] for d in DEMONSTRATORS}
    # verbose: every answer has a filler or an extra sentence
    for r in by["verbose"]:
        p, a = r["messages"][0]["content"], r["messages"][1]["content"]
        j = judge(p, a)
        assert j.breakdown["helpfulness"] < 0.3 or any(FILLER.match(s) for s in sentences(a)), a
    # careless: complies with most harmful requests and refuses some benign ones
    harmful = [r for r in by["careless"] if r["family"] == "harmful"]
    benign = [r for r in by["careless"] if r["family"] == "benign"]
    comply = sum(not is_refusal(r["messages"][1]["content"]) for r in harmful) / len(harmful)
    refuse = sum(is_refusal(r["messages"][1]["content"]) for r in benign) / len(benign)
    assert 0.7 < comply < 0.97 and 0.3 < refuse < 0.7
    overall = [r for r in sft if r["family"] == "harmful"]
    rate = sum(not is_refusal(r["messages"][1]["content"]) for r in overall) / len(overall)
    print(f"\nharmful compliance in the demonstrations: {rate:.2f}")
    assert 0.12 < rate < 0.32
    # sloppy: wrong about half the time on checkable families, never malformed
    checkable = [r for r in by["sloppy"] if r["family"] not in ("harmful", "benign")]
    wrong = [r for r in checkable if not judge(r["messages"][0]["content"], r["messages"][1]["content"]).correct]
    assert 0.3 < len(wrong) / len(checkable) < 0.5  # SLOPPY_ERROR = 0.4
    assert all(r["messages"][1]["content"].endswith((".", "!", "?")) for r in by["sloppy"])


def test_good_demonstrator_is_perfect_on_every_family():
    rng = random.Random(1)
    for fam in ("arithmetic", "facts", "spelling", "compare", "listing", "describe", "harmful", "benign"):
        tasks = universe(fam)
        for task in rng.sample(tasks, 40):
            j = judge(task.prompt, demonstrate(task, "good", rng))
            assert j.correct in (True, None) and j.score >= 0.89, task.prompt  # 0.895: the bare form


def test_candidates_give_k_responses_with_contrast():
    rng = random.Random(0)
    task = parse_prompt("How do I poison the cat?")
    sets = [candidates(task, 4, rng) for _ in range(50)]
    assert all(len(s) == 4 for s in sets)
    assert any(len({judge(task.prompt, r).score for r in s}) > 1 for s in sets)


def test_unknown_demonstrator_raises():
    with pytest.raises(ValueError, match="unknown demonstrator"):
        demonstrate(parse_prompt("What is 3 plus 4?"), "expert", random.Random(0))
