"""rlhfkit.rl.bon: best-of-n KL against brute-force enumeration of all n-tuples, and the analytic formula.

Run: .venv/bin/python -m pytest tests/rl/test_bon.py -q
"""

import itertools
import math

import pytest
import torch

from rlhfkit.rl.bon import bon_kl_analytic, bon_kl_exact, bon_kl_from_samples


def brute_force_bon_kl(probs, rewards, n):
    """Enumerate every n-tuple of draws, keep the first draw with the highest reward, and measure KL."""
    m = len(probs)
    p_bon = [0.0] * m
    for draws in itertools.product(range(m), repeat=n):
        weight = math.prod(probs[i] for i in draws)
        best = max(rewards[i] for i in draws)
        chosen = next(i for i in draws if rewards[i] == best)
        p_bon[chosen] += weight
    return sum(q * math.log(q / p) for q, p in zip(p_bon, probs) if q > 0)


@pytest.mark.parametrize(
    "probs,rewards",
    [
        ([0.1, 0.2, 0.3, 0.4], [3.0, 1.0, 2.0, 0.0]),  # distinct rewards
        ([0.1, 0.2, 0.3, 0.4], [1.0, 2.0, 1.0, 0.0]),  # a tie between two atoms
        ([0.5, 0.25, 0.25, 0.0], [0.0, 0.0, 0.0, 5.0]),  # all tied, plus a zero-probability atom
        ([0.05, 0.6, 0.15, 0.2], [2.0, -1.0, 2.0, 2.0]),  # three-way tie at the top
    ],
)
@pytest.mark.parametrize("n", [1, 2, 3])
def test_exact_equals_brute_force_enumeration(probs, rewards, n):
    assert bon_kl_exact(probs, rewards, n) == pytest.approx(brute_force_bon_kl(probs, rewards, n), abs=1e-12)


def test_analytic_formula_values():
    assert bon_kl_analytic(1) == 0.0
    assert bon_kl_analytic(2) == pytest.approx(math.log(2) - 0.5)
    assert bon_kl_analytic(16) == pytest.approx(math.log(16) - 15 / 16)


def test_exact_approaches_analytic_with_many_small_atoms():
    n = 8
    gaps = []
    for m in (10, 100, 10_000):
        probs = torch.full((m,), 1.0 / m)
        gaps.append(bon_kl_analytic(n) - bon_kl_exact(probs, torch.randn(m), n))
    assert all(g >= -1e-12 for g in gaps)
    assert gaps[0] > gaps[1] > gaps[2]
    assert gaps[2] < 2e-3


def test_analytic_is_an_upper_bound():
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        m = int(torch.randint(2, 30, (1,), generator=g))
        probs = torch.softmax(3 * torch.randn(m, generator=g), 0)
        rewards = torch.randint(0, 5, (m,), generator=g).float()  # many ties
        for n in (2, 4, 32):
            assert bon_kl_exact(probs, rewards, n) <= bon_kl_analytic(n) + 1e-12


def test_from_samples_accounts_for_repeats():
    samples = ["a", "b", "a", "c", "a", "d"]
    rewards = [1.0, 3.0, 1.0, 0.0, 1.0, 2.0]
    # an independent reference: best-of-n over draws of sample *indices*, measured on the string distribution
    n = 3
    idx_p = [1 / 6] * 6
    p_bon_idx = [0.0] * 6
    for draws in itertools.product(range(6), repeat=n):
        best = max(rewards[i] for i in draws)
        p_bon_idx[next(i for i in draws if rewards[i] == best)] += math.prod(idx_p[i] for i in draws)
    by_text, empirical = {}, {}
    for i, s in enumerate(samples):
        by_text[s] = by_text.get(s, 0.0) + p_bon_idx[i]
        empirical[s] = empirical.get(s, 0.0) + 1 / 6
    expected = sum(q * math.log(q / empirical[s]) for s, q in by_text.items() if q > 0)
    assert bon_kl_from_samples(samples, rewards, n) == pytest.approx(expected, abs=1e-12)
    # all-distinct samples of the same size give a larger KL than a collapsed policy
    distinct = bon_kl_from_samples([str(i) for i in range(6)], rewards, n)
    assert distinct > bon_kl_from_samples(samples, rewards, n)
    assert bon_kl_from_samples(["x"] * 10, [1.0] * 10, 4) == 0.0
