"""The built-in simulated annotator pool run through the real store and quality control: the
adversarial annotators (careful except on harmful prompts) are flagged and the careful ones not."""

from __future__ import annotations

import numpy as np
import pytest

from rlhfkit.feedback.store import Store

pytest.importorskip("rlhfkit.world.annotators", reason="the world package (simulated annotators) is not importable yet")

from rlhfkit.feedback.simulate import simulate, world_items  # noqa: E402

SPEC, SEEDS = "careful:0.6,noisy:0.2,adversarial:0.2", (0, 1, 2)


def test_world_items_have_distinct_candidates_and_valid_gold():
    items = world_items(16, k=4, seed=0)
    assert len({it["family"] for it in items}) == 8
    for it in items:
        assert 2 <= len(it["responses"]) <= 4 and len(set(it["responses"])) == len(it["responses"])
        assert it["gold_best"] is None or 0 <= it["gold_best"] < len(it["responses"])
    assert any(it["gold_best"] is not None for it in items)


def test_adversarial_annotators_are_flagged_and_careful_ones_are_not(tmp_path, record_property):
    tp = fp = fn = 0
    careful_agreement = []
    for seed in SEEDS:
        store = Store.open(tmp_path / f"sim{seed}.db")
        out = simulate(store, SPEC, n_annotators=10, redundancy=3, seed=seed, n_items=400)
        report, profiles = out["report"], out["profiles"]
        # Everything went through the store: every item ranked by exactly `redundancy` annotators.
        assert report["n_records"] == 400 * 3 and report["n_items"] == 400
        assert sorted(profiles.values()).count("adversarial") == 2
        for name, stats in report["annotators"].items():
            bad = profiles[name] == "adversarial"
            tp += bad and stats["suspected_adversarial"]
            fn += bad and not stats["suspected_adversarial"]
            fp += (not bad) and stats["suspected_adversarial"]
            if profiles[name] == "careful":
                assert not stats["suspected_adversarial"], (seed, name, stats["flags"])
                assert "negative_reliability" not in stats["flags"] and "low_reliability" not in stats["flags"]
        careful_agreement.append(out["summary"]["agreement_by_profile_pair"]["careful-careful"])
        rel = out["summary"]["reliability_by_profile"]
        assert rel["careful"] > rel["noisy"]
    precision, recall = tp / max(tp + fp, 1), tp / max(tp + fn, 1)
    record_property("adversarial_precision", precision)
    record_property("adversarial_recall", recall)
    record_property("careful_careful_agreement", float(np.mean(careful_agreement)))
    print(f"\nadversarial detection over seeds {SEEDS}: precision {precision:.2f}, recall {recall:.2f}; "
          f"careful-careful pairwise agreement {np.mean(careful_agreement):.3f}")
    assert recall == 1.0 and precision == 1.0
    # The world's careful annotators are tuned to agree on ~73% of pairs (InstructGPT's figure).
    assert 0.6 < np.mean(careful_agreement) < 0.85


def test_adversarial_rankings_get_zero_weight_on_harmful_prompts(tmp_path):
    from rlhfkit.feedback.export import export_records

    store = Store.open(tmp_path / "w.db")
    out = simulate(store, SPEC, n_annotators=10, redundancy=3, seed=1, n_items=400)
    records = export_records(store)  # weighted by the same quality code
    adv = {n for n, p in out["profiles"].items() if p == "adversarial"}
    harmful_adv = [r["weight"] for r in records if r["annotator"] in adv and r["family"] == "harmful"]
    careful = [r["weight"] for r in records if out["profiles"][r["annotator"]] == "careful"]
    assert harmful_adv and max(harmful_adv) == 0.0
    assert np.mean(careful) > 0.5
