"""Reward-hacking monitors: watch proxy vs gold reward, KL and length, and raise an alarm when a policy
starts exploiting its reward model (Gao et al. 2022: proxy keeps rising while the true reward falls).

Rules, each over a sliding window of RL steps:
- proxy rising while gold falls (least-squares slopes of opposite sign, both beyond `min_slope`),
- mean KL to the reference above `kl_budget` (nats per sequence),
- mean response length drifting more than `length_drift` (relative) from the first steps',
- the share of responses that are word for word an answer given to a *different* prompt in the same batch
  rising more than `repeat_drift` above its first step's: one canned answer for many questions (e.g. a
  refusal for everything) is a hack that needs no gold judge to be seen.
"""

from __future__ import annotations

from collections import defaultdict, deque
from dataclasses import dataclass, field


def cross_prompt_repeats(prompts: list[str], responses: list[str]) -> float:
    """Share of responses whose text (whitespace-trimmed) was also given to another prompt of the batch.
    Repeats within one prompt's group (GRPO/RLOO samples of the same question) do not count."""
    askers: dict[str, set[str]] = defaultdict(set)
    for p, r in zip(prompts, responses):
        askers[r.strip()].add(p)
    return sum(len(askers[r.strip()]) > 1 for r in responses) / max(len(responses), 1)


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
    repeat_drift: float = 0.15
    min_slope: float = 0.005
    proxy: deque = field(default_factory=deque)
    gold: deque = field(default_factory=deque)
    initial_length: float | None = None
    initial_repeats: float | None = None
    alarms: list = field(default_factory=list)

    def update(self, step: int, proxy: float, gold: float | None, kl: float, length: float,
               repeats: float = 0.0) -> str | None:
        for q, v in ((self.proxy, proxy), (self.gold, gold)):
            if v is not None:
                q.append(v)
                if len(q) > self.window:
                    q.popleft()
        if self.initial_length is None:
            self.initial_length, self.initial_repeats = max(length, 1.0), repeats
        kind, alarm = self._check(kl, length, repeats) or (None, None)
        if alarm:
            self.alarms.append({"step": step, "kind": kind, "alarm": alarm})
        return alarm

    def _check(self, kl: float, length: float, repeats: float) -> tuple[str, str] | None:
        """(kind, message) of the first rule that fires; kinds are the keys of ADVICE."""
        if len(self.gold) >= self.window:
            sp, sg = slope(list(self.proxy)), slope(list(self.gold))
            if sp > self.min_slope and sg < -self.min_slope:
                return "hacking", f"proxy reward rising ({sp:+.3f}/step) while gold falls ({sg:+.3f}/step)"
        if kl > self.kl_budget:
            return "kl", f"KL to reference {kl:.2f} nats exceeds the budget {self.kl_budget}"
        if self.initial_length and abs(length / self.initial_length - 1) > self.length_drift:
            return "length", f"response length drifted from {self.initial_length:.1f} to {length:.1f} tokens"
        if repeats - self.initial_repeats > self.repeat_drift:
            return "repeats", (f"{repeats:.0%} of responses repeat an answer given to another prompt (was "
                               f"{self.initial_repeats:.0%}): one canned answer for many questions")
        return None


ADVICE = {
    "hacking": "the policy is exploiting the reward model: stop earlier (fewer steps), raise the KL coefficient, "
               "or improve the reward model (more rankings, an ensemble with --rollout.ensemble uwo)",
    "kl": "the policy is moving far from the reference: raise the KL coefficient (PPO: --ppo.kl_coef, or "
          "--ppo.kl_target for an adaptive one), lower the learning rate, or raise --monitor.kl_budget if this "
          "distance is intended",
    "length": "response length is drifting (a reward model that likes long or short answers): raise the KL "
              "coefficient, or check the reward model's length bias",
    "repeats": "the policy gives one canned answer to many prompts (often a refusal for everything): raise the "
               "KL coefficient or check what the reward model pays for that answer",
}
