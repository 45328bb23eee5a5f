"""rlhfkit.rl.kl_control against Ziegler et al. 2019 §2.2, stepped by hand and with the formula written out.

Run: .venv/bin/python -m pytest tests/rl/test_kl_control.py -q
"""

import random

import pytest

from rlhfkit.rl.kl_control import AdaptiveKL, FixedKL, kl_controller


def ziegler_step(beta: float, kl: float, target: float, n_steps: int, horizon: float) -> float:
    """One controller step as in the paper and in lm-human-preferences / TRL's AdaptiveKLController:

        e = clip(KL/target - 1, -0.2, 0.2)          (the paper's (KL - target)/target)
        β ← β (1 + e · n_steps/horizon)

    The paper fixes K_β = 0.1 per step; the code (and this project) uses K_β = n_steps/horizon, horizon
    counted in episodes (10^4 by default), so the step size scales with the batch.
    """
    e = min(max(kl / target - 1.0, -0.2), 0.2)
    return beta * (1.0 + e * n_steps / horizon)


def test_fixed_kl_never_moves():
    c = FixedKL(0.05)
    for kl in (0.0, 1.0, 100.0, -3.0):
        assert c.update(kl, 64) == 0.05
    assert c.value == 0.05


def test_adaptive_kl_sequence_by_hand():
    c = AdaptiveKL(init=0.1, target=2.0, horizon=1000)
    steps = [
        # (KL, n_steps, β after): e = clip(KL/2 - 1, ±0.2), K = n/1000
        (3.0, 100, 0.102),  # e = 0.5 -> +0.2 (clipped above); 0.1 · (1 + 0.2·0.1) = 0.1 · 1.02
        (2.2, 100, 0.10302),  # e = 0.1;  0.102 · 1.01
        (-0.4, 100, 0.1009596),  # e = -1.2 -> -0.2 (clipped below; k1 KL can be negative); 0.10302 · 0.98
        (1.8, 100, 0.099950004),  # e = -0.1; 0.1009596 · 0.99
        (2.0, 100, 0.099950004),  # on target: e = 0, no change
        (2.4, 50, 0.10094950404),  # e = 0.2 exactly (the edge); K = 0.05: · 1.01
        (0.0, 500, 0.090854553636),  # e = -1 -> -0.2, K = 0.5: · (1 - 0.1) = · 0.9
    ]
    for kl, n, expected in steps:
        returned = c.update(kl, n)
        assert c.value == pytest.approx(expected, rel=1e-12)
        assert returned == c.value


def test_adaptive_kl_matches_paper_formula_over_many_steps():
    rng = random.Random(0)
    c = AdaptiveKL(init=0.2, target=6.0, horizon=10_000)
    beta = 0.2
    for _ in range(200):
        kl, n = rng.uniform(-2.0, 15.0), rng.choice([64, 256, 512])
        beta = ziegler_step(beta, kl, 6.0, n, 10_000)
        c.update(kl, n)
        assert c.value == pytest.approx(beta, rel=1e-12)


def test_adaptive_kl_moves_toward_target():
    up, down = AdaptiveKL(0.1, target=1.0, horizon=100), AdaptiveKL(0.1, target=1.0, horizon=100)
    for _ in range(5):  # repeated high KL keeps raising β, repeated low KL keeps lowering it
        before = up.value
        assert up.update(2.0, 10) > before
        before = down.value
        assert down.update(0.5, 10) < before


def test_kl_controller_factory_and_validation():
    assert isinstance(kl_controller(0.2), FixedKL)
    c = kl_controller(0.2, target=3.0, horizon=500)
    assert isinstance(c, AdaptiveKL) and (c.value, c.target, c.horizon) == (0.2, 3.0, 500.0)
    assert kl_controller(0.2, target=3.0).horizon == 10_000  # lm-human-preferences' default, in episodes
    with pytest.raises(ValueError):
        AdaptiveKL(0.1, target=0.0, horizon=10)
    with pytest.raises(ValueError):
        AdaptiveKL(0.1, target=1.0, horizon=0)
