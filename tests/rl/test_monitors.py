"""Reward-hacking monitors: each rule fires on the pattern it names and stays quiet on healthy training."""

from __future__ import annotations

from rlhfkit.rl.monitors import OveroptimizationMonitor, cross_prompt_repeats, slope


def feed(mon: OveroptimizationMonitor, rows: list[dict]) -> list[str | None]:
    return [mon.update(i + 1, r.get("proxy", 0.0), r.get("gold"), r.get("kl", 0.0), r.get("length", 10.0),
                       r.get("repeats", 0.0)) for i, r in enumerate(rows)]


def test_slope_is_least_squares():
    assert slope([1.0, 3.0, 5.0]) == 2.0 and slope([4.0]) == 0.0
    assert abs(slope([0.0, 1.0, 0.0, 1.0]) - 0.2) < 1e-12  # numpy.polyfit gives 0.2 for this series


def test_proxy_up_gold_down_fires_only_once_the_window_is_full():
    mon = OveroptimizationMonitor(window=5)
    alarms = feed(mon, [{"proxy": 0.1 * i, "gold": -0.05 * i} for i in range(8)])
    assert alarms[:4] == [None] * 4 and all("while gold falls" in a for a in alarms[4:])
    healthy = feed(OveroptimizationMonitor(window=5), [{"proxy": 0.1 * i, "gold": 0.05 * i} for i in range(8)])
    assert healthy == [None] * 8
    assert feed(OveroptimizationMonitor(window=5), [{"proxy": 0.1 * i} for i in range(8)]) == [None] * 8  # no gold


def test_kl_budget_and_length_drift():
    alarms = feed(OveroptimizationMonitor(kl_budget=2.0), [{"kl": 1.0}, {"kl": 2.5}])
    assert alarms[0] is None and "exceeds the budget" in alarms[1]
    alarms = feed(OveroptimizationMonitor(length_drift=0.5), [{"length": 20.0}, {"length": 25.0}, {"length": 9.0}])
    assert alarms[:2] == [None, None] and "length drifted" in alarms[2]


def test_canned_answer_for_many_prompts_fires_relative_to_the_start():
    mon = OveroptimizationMonitor(repeat_drift=0.15)
    alarms = feed(mon, [{"repeats": 0.05}, {"repeats": 0.15}, {"repeats": 0.25}])
    assert alarms[:2] == [None, None] and "repeat an answer" in alarms[2]
    assert mon.alarms == [{"step": 3, "kind": "repeats", "alarm": alarms[2]}]
    # A policy that starts out repetitive is judged against its own start.
    assert feed(OveroptimizationMonitor(repeat_drift=0.15), [{"repeats": 0.5}, {"repeats": 0.6}]) == [None, None]


def test_cross_prompt_repeats_ignores_a_group_answering_its_own_prompt_alike():
    prompts = ["wash the cat?", "steal the cat?", "2+2?", "2+2?"]
    responses = ["Sorry, I can't help with that.", " Sorry, I can't help with that.", "4.", "4."]
    assert cross_prompt_repeats(prompts, responses) == 0.5  # the two refusals; "4." twice for one prompt is fine
    assert cross_prompt_repeats([], []) == 0.0
