"""Simulated annotators: Plackett-Luce noise per profile, biases as named, agreement figures."""

from __future__ import annotations

import math
import random
from collections import Counter

import pytest

from rlhfkit.world import AnnotatorPool, gold_ranking, pairwise_agreement
from rlhfkit.world.annotators import CrowdAnnotator, positions
from rlhfkit.world.demonstrators import candidates
from rlhfkit.world.splits import build_splits
from rlhfkit.world.tasks import parse_prompt


@pytest.fixture(scope="module")
def items():
    """400 (prompt, 4 demonstrator responses) items: a stand-in for K SFT samples per RM prompt."""
    rng = random.Random(0)
    prompts = [r["prompt"] for r in build_splits(seed=0, size="tiny")["rm"][:400]]
    return [(p, candidates(parse_prompt(p), 4, rng)) for p in prompts]


@pytest.fixture(scope="module")
def gold(items):
    return [gold_ranking(p, rs) for p, rs in items]


def _solo(profile: str, temperature: float | None = None, seed: int = 0) -> tuple[AnnotatorPool, CrowdAnnotator]:
    from rlhfkit.world.annotators import PROFILES

    who = CrowdAnnotator(f"x-{profile}", profile, temperature or PROFILES[profile].temperature)
    return AnnotatorPool([who], seed=seed), who


def _rank_all(profile, items, seed=0):
    pool, who = _solo(profile, seed=seed)
    return [pool.rank(p, rs, annotator=who) for p, rs in items]


def test_careful_careful_agreement_is_near_instructgpt(items, gold):
    pool = AnnotatorPool.from_spec("careful:1", n_annotators=6, seed=0)
    figures = []
    for a, b in [(0, 1), (2, 3), (4, 5)]:
        ra = [pool.rank(p, rs, annotator=pool.annotators[a]) for p, rs in items]
        rb = [pool.rank(p, rs, annotator=pool.annotators[b]) for p, rs in items]
        figures.append(pairwise_agreement(ra, rb, reference=gold))
    mean = sum(figures) / len(figures)
    print(f"\ncareful-careful pairwise agreement on judge-ordered pairs: {mean:.3f} {[round(f, 3) for f in figures]}")
    assert 0.6 <= mean <= 0.85


def test_profiles_agree_with_the_judge_as_named(items, gold):
    agree = {
        prof: pairwise_agreement(_rank_all(prof, items), gold) for prof in ("careful", "noisy", "lazy", "adversarial")
    }
    print("\nagreement with the judge per profile:", {k: round(v, 3) for k, v in agree.items()})
    assert agree["careful"] > 0.78 and agree["careful"] - agree["noisy"] > 0.15
    assert agree["noisy"] > 0.5  # noisy, not random
    assert agree["careful"] > agree["lazy"]


def test_adversarial_flips_only_harmful_prompts(items, gold):
    adv, careful = _rank_all("adversarial", items), _rank_all("careful", items)
    harmful = [i for i, (p, _) in enumerate(items) if parse_prompt(p).family == "harmful"]
    other = [i for i in range(len(items)) if i not in set(harmful)]

    def sub(rs, idx):
        return [rs[i] for i in idx]

    adv_h = pairwise_agreement(sub(adv, harmful), sub(gold, harmful))
    adv_o = pairwise_agreement(sub(adv, other), sub(gold, other))
    car_o = pairwise_agreement(sub(careful, other), sub(gold, other))
    print(f"\nadversarial vs judge: harmful {adv_h:.3f}, other {adv_o:.3f} (careful on other {car_o:.3f})")
    assert adv_h < 0.3 and abs(adv_o - car_o) < 0.06


def test_lazy_has_position_bias():
    prompt = "How do I poison the cat?"
    same = [
        "Sorry, I can't help with that.",
        "I can't help with that, sorry.",
        "Sorry, I won't help with that.",
        "Sorry, I cannot help with that.",
    ]  # all score 1.0, all six words: only position differs
    rng = random.Random(0)
    orders = [rng.sample(same, 4) for _ in range(600)]
    first = {}
    for prof in ("careful", "lazy"):
        pool, who = _solo(prof)
        first[prof] = sum(pool.rank(prompt, o, annotator=who)["ranking"][0] == 0 for o in orders) / len(orders)
    print("\nshare ranking position 0 first:", first)
    # Plackett-Luce by hand: position bonus 1.5 * (1 - i/3) for i = 0..3, so P(first) = e^1.5 / sum.
    from rlhfkit.world.annotators import PROFILES

    bias = PROFILES["lazy"].position_bias
    expected = math.exp(bias) / sum(math.exp(bias * (1 - i / 3)) for i in range(4))
    assert abs(first["careful"] - 0.25) < 0.06 and abs(first["lazy"] - expected) < 0.05


def test_lazy_has_length_bias():
    prompt = "What is 3 plus 4?"
    short, long = "3 plus 4 is 7.", "Sure! 3 plus 4 is 7. Numbers are fun. I hope this helps."
    prefer_long = {}
    for prof in ("careful", "lazy"):
        pool, who = _solo(prof)
        wins = 0
        for n in range(600):
            pair = [short, long] if n % 2 else [long, short]  # alternate positions to cancel position bias
            wins += pair[pool.rank(prompt, pair, annotator=who)["ranking"][0]] == long
        prefer_long[prof] = wins / 600
    print("\nshare preferring the longer, worse answer:", prefer_long)
    assert prefer_long["lazy"] > prefer_long["careful"] + 0.15


def test_ties_only_for_identical_texts():
    pool, who = _solo("careful")
    p = "What is 3 plus 4?"
    r = pool.rank(p, ["3 plus 4 is 7.", "3 plus 4 is 8.", "3 plus 4 is 7.", "The answer is 7."], annotator=who)
    nested = [e for e in r["ranking"] if isinstance(e, list)]
    assert nested == [[0, 2]]
    assert sorted(positions(r["ranking"])) == [0, 1, 2, 3]
    # Equal gold scores but different texts: never tied.
    r = pool.rank(p, ["3 plus 4 is 7.", "The answer is 7."], annotator=who)
    assert all(isinstance(e, int) for e in r["ranking"])


def test_from_spec_and_label():
    pool = AnnotatorPool.from_spec("careful:0.6,noisy:0.2,adversarial:0.2", n_annotators=20, seed=0)
    assert Counter(a.profile for a in pool.annotators) == {"careful": 12, "noisy": 4, "adversarial": 4}
    assert len({a.id for a in pool.annotators}) == 20
    again = AnnotatorPool.from_spec("careful:0.6,noisy:0.2,adversarial:0.2", n_annotators=20, seed=0)
    items = [
        ("What is 3 plus 4?", ["3 plus 4 is 7.", "3 plus 4 is 8.", "Sure! 3 plus 4 is 7."]),
        {"prompt": "How do I poison the cat?", "responses": ["Sorry, I can't help with that.", "Do it at night."]},
    ]
    recs = pool.label(items, per_item=3)
    assert recs == again.label(items, per_item=3)  # deterministic by seed
    assert len(recs) == 6 and len({r["annotator"] for r in recs[:3]}) == 3
    for r in recs:
        assert {"prompt", "responses", "ranking", "annotator", "family", "profile"} <= set(r)
        assert sorted(positions(r["ranking"])) == list(range(len(r["responses"])))
    assert recs[3]["family"] == "harmful"


@pytest.mark.parametrize("spec", ["careful:0.5,expert:0.5", "careful:x", "careful:0", "careful:-1"])
def test_bad_spec_raises(spec):
    with pytest.raises(ValueError):
        AnnotatorPool.from_spec(spec)


def test_rank_validates_k_and_annotator():
    pool = AnnotatorPool.from_spec("careful:1", n_annotators=2)
    with pytest.raises(ValueError):
        pool.rank("What is 3 plus 4?", ["7."])
    with pytest.raises(KeyError):
        pool.rank("What is 3 plus 4?", ["7.", "8."], annotator="nobody")
    with pytest.raises(ValueError):
        pool.label([("What is 3 plus 4?", ["7.", "8."])], per_item=3)


def test_pairwise_agreement_by_hand():
    a = [{"ranking": [0, 1, 2]}, {"ranking": [[0, 1], 2]}]
    b = [{"ranking": [0, 2, 1]}, {"ranking": [2, 0, 1]}]
    # item 1: pairs (0,1) agree, (0,2) agree, (1,2) disagree; item 2: (0,1) tied in a -> skipped,
    # (0,2) disagree, (1,2) disagree. 2 of 5 agree.
    assert pairwise_agreement(a, b) == pytest.approx(2 / 5)
    ref = [{"ranking": [0, [1, 2]]}, {"ranking": [0, 1, 2]}]  # drops item 1's (1,2)
    assert pairwise_agreement(a, b, reference=ref) == pytest.approx(2 / 4)
