"""rlhfkit.rl.kl_control: the adaptive KL coefficient moves the right way and clips its step.

Run: .venv/bin/python -m pytest tests/rl/test_kl_control.py -q
"""

import pytest

from rlhfkit.rl.kl_control import AdaptiveKL, FixedKL, kl_controller


def test_fixed_kl_never_moves():
    c = FixedKL(0.05)
    for kl in (0.0, 1.0, 100.0):
        assert c.update(kl, 64) == 0.05
    assert c.value == 0.05


def test_adaptive_kl_proportional_step():
    c = AdaptiveKL(init=0.1, target=6.0, horizon=10_000)
    c.update(6.6, n_steps=512)  # error = 6.6/6 - 1 = 0.1
    assert c.value == pytest.approx(0.1 * (1 + 0.1 * 512 / 10_000))
    c = AdaptiveKL(init=0.1, target=6.0, horizon=10_000)
    c.update(6.0, n_steps=512)  # on target: no change
    assert c.value == pytest.approx(0.1)


def test_adaptive_kl_moves_toward_target_and_clips():
    up = AdaptiveKL(0.1, target=1.0, horizon=100)
    up.update(50.0, n_steps=10)  # KL far above target: error clipped to +0.2
    assert up.value == pytest.approx(0.1 * (1 + 0.2 * 10 / 100))
    down = AdaptiveKL(0.1, target=1.0, horizon=100)
    down.update(0.0, n_steps=10)  # KL far below: error clipped to -0.2
    assert down.value == pytest.approx(0.1 * (1 - 0.2 * 10 / 100))
    # repeated high KL keeps raising β, repeated low KL keeps lowering it
    for _ in range(5):
        before = up.value
        assert up.update(2.0, 10) > before
        before = down.value
        assert down.update(0.5, 10) < before


def test_kl_controller_factory_and_validation():
    assert isinstance(kl_controller(0.2), FixedKL)
    c = kl_controller(0.2, target=3.0, horizon=500)
    assert isinstance(c, AdaptiveKL) and (c.target, c.horizon) == (3.0, 500.0)
    with pytest.raises(ValueError):
        AdaptiveKL(0.1, target=0.0, horizon=10)
