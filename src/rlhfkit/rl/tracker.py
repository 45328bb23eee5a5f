"""Per-step bookkeeping of an RL run: metrics.jsonl rows, the reward-hacking monitor (each alarm kind printed
once, with what to do), the best-by-gold policy when asked for, and the run's summary."""

from __future__ import annotations

import copy
from pathlib import Path

from ..common import MetricsLogger, say
from .monitors import ADVICE, OveroptimizationMonitor, cross_prompt_repeats
from .rollout import Rollout


class RLTracker:
    """Per-step metrics, the overoptimisation monitor, and the best-by-gold policy."""

    def __init__(self, out: Path, mcfg, stage: str):
        self.logger = MetricsLogger(out, stage=stage)
        self.mcfg = mcfg
        self.monitor = OveroptimizationMonitor(mcfg.window, mcfg.kl_budget, mcfg.length_drift, mcfg.repeat_drift)
        self.best_gold, self.best_step, self.best_state = None, None, None
        self.history: list[dict] = []
        self.announced: set[str] = set()

    def step(self, step: int, ro: Rollout, kl_seq: float, metrics: dict, policy) -> bool:
        """Log one RL step; returns True when training should stop."""
        gold = float(ro.gold.mean()) if ro.gold is not None else None
        row = {"proxy_reward": float(ro.score.mean()), "gold_reward": gold, "kl": kl_seq,
               "response_length": float(ro.lengths.mean()), "finish_rate": float(ro.finished.float().mean()),
               "ensemble_std": float(ro.score_std.mean()),
               "repeated_answers": cross_prompt_repeats(ro.prompts, ro.responses), **metrics}
        alarm = self.monitor.update(step, row["proxy_reward"], gold, kl_seq, row["response_length"],
                                    row["repeated_answers"])
        row["alarm"] = alarm
        self.history.append(self.logger.log(step, **row))
        if gold is not None and self.mcfg.keep_best and (self.best_gold is None or gold > self.best_gold):
            self.best_gold, self.best_step = gold, step
            self.best_state = copy.deepcopy(policy.state_dict())
        if alarm:
            self._announce(step, alarm)
        return bool(alarm) and self.mcfg.on_alarm == "stop"

    def _announce(self, step: int, alarm: str) -> None:
        """Each kind of alarm is printed once, with what to do; every firing is in metrics.jsonl ("alarm")."""
        kind = self.monitor.alarms[-1]["kind"]
        if kind in self.announced:
            return
        self.announced.add(kind)
        say(f"step {step}: ALARM {alarm}. What to do: {ADVICE[kind]}. Later '{kind}' alarms are recorded in "
            f"metrics.jsonl and summary.json, not printed.")

    def state(self) -> dict:
        """Everything a resumed run needs to log, alarm and keep the best policy as an uninterrupted one."""
        return {"history": self.history, "monitor": dict(vars(self.monitor)), "best_gold": self.best_gold,
                "best_step": self.best_step, "best_state": self.best_state}

    def load(self, state: dict) -> None:
        self.history, self.best_gold, self.best_step = state["history"], state["best_gold"], state["best_step"]
        self.best_state = state["best_state"]
        vars(self.monitor).update(state["monitor"])
        self.announced = {a.get("kind") for a in self.monitor.alarms}  # printed before the restart

    def summary(self, last: int = 5) -> dict:
        tail = self.history[-last:] or [{}]

        def mean(key):
            vals = [r[key] for r in tail if r.get(key) is not None]
            return sum(vals) / len(vals) if vals else None

        first = self.history[0] if self.history else {}
        kinds = [a.get("kind") for a in self.monitor.alarms]
        return {"steps": len(self.history), "alarms": self.monitor.alarms,
                "alarm_counts": {k: kinds.count(k) for k in dict.fromkeys(kinds)},
                "start": {k: first.get(k) for k in ("proxy_reward", "gold_reward", "kl", "response_length")},
                "end": {k: mean(k) for k in ("proxy_reward", "gold_reward", "kl", "response_length", "entropy")},
                "best_gold": self.best_gold, "best_step": self.best_step}

    def finalize(self, policy) -> None:
        """Load the best-by-gold weights when asked (keep_best on alarm, or always with on_alarm=keep_best)."""
        use_best = self.mcfg.keep_best and self.best_state is not None and (
            self.mcfg.on_alarm == "keep_best" or self.monitor.alarms)
        if use_best:
            say(f"keeping the best-by-gold policy from step {self.best_step} (gold {self.best_gold:.3f})")
            policy.load_state_dict(self.best_state)


def fmt(x) -> str:
    """A summary figure for the log: None (not measured, or NaN: metrics.jsonl writes NaN as null) is n/a."""
    return "n/a" if x is None else f"{x:.3f}"
