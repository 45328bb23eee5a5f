"""KL-penalty coefficient controllers for PPO: a fixed β, or β adapted toward a target KL.

The ppo stage reads `controller.value` as β for `ppo_token_rewards` and calls `update` once per batch.
"""

from __future__ import annotations


class FixedKL:
    """A constant KL coefficient β."""

    def __init__(self, value: float):
        self.value = float(value)

    def update(self, current_kl: float, n_steps: int) -> float:
        return self.value


class AdaptiveKL:
    """Proportional controller that steers the measured KL(π‖π_ref) toward `target` (Ziegler et al. 2019 §2.2).

        e_t = clip(KL_t / target - 1, -0.2, 0.2)
        β_{t+1} = β_t (1 + K_β e_t),  K_β = n_steps / horizon

    `n_steps` is the number of samples (episodes) in the batch that measured KL_t; `horizon` sets how many
    samples it takes to correct an error (10^4, the default of lm-human-preferences, the paper's code; the paper
    writes K_β = 0.1 per step). The clip bounds each step's change.
    """

    def __init__(self, init: float, target: float, horizon: float):
        if target <= 0 or horizon <= 0:
            raise ValueError("target and horizon must be positive")
        self.value, self.target, self.horizon = float(init), float(target), float(horizon)

    def update(self, current_kl: float, n_steps: int) -> float:
        error = min(max(float(current_kl) / self.target - 1.0, -0.2), 0.2)
        self.value *= 1.0 + error * n_steps / self.horizon
        return self.value


def kl_controller(init: float, target: float | None = None, horizon: float = 10_000) -> FixedKL | AdaptiveKL:
    """FixedKL(init) when `target` is None, else AdaptiveKL(init, target, horizon)."""
    return FixedKL(init) if target is None else AdaptiveKL(init, target, horizon)
