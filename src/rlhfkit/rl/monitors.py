"""Reward-hacking monitors: watch proxy vs gold reward, KL and length, and raise an alarm when a policy
starts exploiting its reward model (Gao et al. 2022: proxy keeps rising while the true reward falls).

Rules, each over a sliding window of RL steps:
- proxy rising while gold falls (least-squares slopes of opposite sign, both beyond `min_slope`),
- mean KL to the reference above `kl_budget` (nats per sequence),
- mean response length drifting more than `length_drift` (relative) from the first steps'.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field


def slope(ys: list[float]) -> float:
    n = len(ys)
    if n < 2:
        return 0.0
    mx, my = (n - 1) / 2, sum(ys) / n
    den = sum((i - mx) ** 2 for i in range(n))
    return sum((i - mx) * (y - my) for i, y in enumerate(ys)) / den


@dataclass
class OveroptimizationMonitor:
    window: int = 10
    kl_budget: float = 10.0
    length_drift: float = 1.0
    min_slope: float = 0.005
    proxy: deque = field(default_factory=deque)
    gold: deque = field(default_factory=deque)
    initial_length: float | None = None
    alarms: list = field(default_factory=list)

    def update(self, step: int, proxy: float, gold: float | None, kl: float, length: float) -> str | None:
        for q, v in ((self.proxy, proxy), (self.gold, gold)):
            if v is not None:
                q.append(v)
                if len(q) > self.window:
                    q.popleft()
        if self.initial_length is None:
            self.initial_length = max(length, 1.0)
        alarm = self._check(kl, length)
        if alarm:
            self.alarms.append({"step": step, "alarm": alarm})
        return alarm

    def _check(self, kl: float, length: float) -> str | None:
        if len(self.gold) >= self.window:
            sp, sg = slope(list(self.proxy)), slope(list(self.gold))
            if sp > self.min_slope and sg < -self.min_slope:
                return f"proxy reward rising ({sp:+.3f}/step) while gold falls ({sg:+.3f}/step)"
        if kl > self.kl_budget:
            return f"KL to reference {kl:.2f} nats exceeds the budget {self.kl_budget}"
        if self.initial_length and abs(length / self.initial_length - 1) > self.length_drift:
            return f"response length drifted from {self.initial_length:.1f} to {length:.1f} tokens"
        return None
