"""Quality control: agreement statistics against hand-computed and published values, the Crowd-BT
EM against a loop implementation and its own generative model, and flags on synthetic annotators
with known behaviour (careful, noisy, adversarial everywhere or only on the 'harmful' family)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from rlhfkit.feedback.agreement import alpha_from_units, spearman
from rlhfkit.feedback.crowd_bt import fit_crowd_bt, log_posterior
from rlhfkit.feedback.quality import QualityConfig, apply_weights, assess, format_table, parse_records

from .synthetic import make_records


def rec(annotator, ranking, prompt="p", k=3, **kw):
    return {"prompt": prompt, "responses": [f"r{i}" + "x" * i for i in range(k)], "ranking": ranking,
            "annotator": annotator, **kw}


def test_alpha_matches_krippendorffs_published_example():
    # Krippendorff (2011) "Computing Krippendorff's alpha-reliability", 4 coders x 12 units, with gaps.
    rows = [[1, 2, 3, 3, 2, 1, 4, 1, 2, None, None, None],
            [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, None, 3],
            [None, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, None],
            [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, None]]
    units = [[v for v in col if v is not None] for col in zip(*rows)]
    assert alpha_from_units(units, "nominal") == pytest.approx(0.743, abs=5e-4)
    assert alpha_from_units(units, "ordinal") == pytest.approx(0.815, abs=5e-4)
    assert alpha_from_units(units, "interval") == pytest.approx(0.849, abs=5e-4)


def test_alpha_on_rank_positions_by_hand():
    same = assess([rec("a", [0, 1, 2]), rec("b", [0, 1, 2])])
    assert same["alpha"]["value"] == pytest.approx(1.0)
    # Reversed: units (0,2), (1,1), (2,0); o_02 = o_20 = 2, o_11 = 2, n_c = 2 each, n = 6;
    # alpha = 1 - (n-1) * (2*4 + 2*4) / (sum_{c!=k} n_c n_k (c-k)^2 = 48) = 1 - 5*16/48.
    rev = assess([rec("a", [0, 1, 2]), rec("b", [2, 1, 0])])
    assert rev["alpha"]["value"] == pytest.approx(1 - 5 * 16 / 48)


def test_agreement_consensus_and_gold_by_hand():
    records = [rec("a", [0, 1, 2], gold_best=0), rec("b", [0, 1, 2], gold_best=0),
               rec("c", [0, 1, 2], gold_best=0), rec("d", [2, 1, 0], gold_best=0),
               rec("a", [1, [0, 2]], prompt="q")]
    report = assess(records)
    per = report["annotators"]
    # d vs the mean of a, b, c: all three pairs disagree. a vs mean of b, c, d: (2/3, 1, 4/3) -> agrees.
    assert per["d"]["loo_agreement"] == 0.0 and per["d"]["loo_pairs"] == 3
    assert per["a"]["loo_agreement"] == 1.0 and per["a"]["loo_pairs"] == 3  # item q has one ranker only
    pairs = {(p["a"], p["b"]): p for p in report["pairwise_agreement"]}
    assert pairs[("a", "b")]["agreement"] == 1.0 and pairs[("a", "d")]["agreement"] == 0.0
    assert pairs[("a", "d")]["n_pairs"] == 3
    assert per["a"]["gold_accuracy"] == 1.0 and per["d"]["gold_accuracy"] == 0.0
    # Ties count half toward gold accuracy: gold 0 tied with 2, below 1 -> (0 + 0.5) / 2.
    tie = assess([rec("a", [1, [0, 2]], gold_best=0), rec("b", [0, 1, 2], gold_best=0)])
    assert tie["annotators"]["a"]["gold_accuracy"] == 0.25


def test_spearman_by_hand():
    assert spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    # ranks (0,1,2,3) vs (1,0,3,2): d^2 sum = 4, rho = 1 - 6*4/(4*15) = 0.6
    assert spearman([10, 20, 30, 40], [2, 1, 4, 3]) == pytest.approx(0.6)
    assert math.isnan(spearman([1, 1, 1], [1, 2, 3]))


def _loop_log_posterior(scores, eta, pairs, obs_pair, obs_group, y, l2):
    """Independent reference: enumerate each pair's true order explicitly."""
    total = 0.0
    for p, (i, j) in enumerate(pairs):
        terms = []
        for z in (1, 0):
            prior = 1 / (1 + math.exp(-(scores[i] - scores[j]))) if z else 1 / (1 + math.exp(scores[i] - scores[j]))
            lik = prior
            for n in np.flatnonzero(obs_pair == p):
                lik *= eta[obs_group[n]] if y[n] == z else 1 - eta[obs_group[n]]
            terms.append(lik)
        total += math.log(sum(terms))
    return total - 0.5 * l2 * float(np.dot(scores, scores))


def _model_data(etas, n_items=150, k=4, per_item=3, seed=0):
    """Judgements drawn from the Crowd-BT model itself, one group per annotator."""
    rng = np.random.default_rng(seed)
    pairs, obs_pair, obs_group, y = [], [], [], []
    true_s = rng.normal(scale=1.5, size=n_items * k)
    for u in range(n_items):
        annots = rng.choice(len(etas), size=per_item, replace=False)
        for i, j in itertools.combinations(range(u * k, u * k + k), 2):
            z = rng.random() < 1 / (1 + np.exp(-(true_s[i] - true_s[j])))
            pairs.append((i, j))
            for a in annots:
                obs_pair.append(len(pairs) - 1)
                obs_group.append(a)
                y.append(int(z if rng.random() < etas[a] else not z))
    return (np.array(pairs), np.array(obs_pair), np.array(obs_group), np.array(y, float), n_items * k)


def test_log_posterior_matches_a_loop_and_em_never_decreases_it():
    etas = np.array([0.95, 0.9, 0.85, 0.7, 0.3, 0.1])
    pairs, op, og, y, c = _model_data(etas, n_items=12)
    rng = np.random.default_rng(1)
    s, eta = rng.normal(size=c), rng.uniform(0.1, 0.9, size=len(etas))
    assert log_posterior(s, eta, pairs, op, og, y, 0.3) == pytest.approx(_loop_log_posterior(s, eta, pairs, op, og, y, 0.3))
    fit = fit_crowd_bt(pairs, op, og, y, np.arange(len(etas)), c, len(etas), family_prior=0.0, max_iter=60)
    hist = np.array(fit.objective)
    assert len(hist) > 5 and np.all(np.diff(hist) >= -1e-8), "EM must not decrease the log posterior"


def test_em_recovers_known_reliabilities_including_negative_ones():
    etas = np.array([0.95, 0.92, 0.9, 0.9, 0.88, 0.7, 0.6, 0.2, 0.1])
    pairs, op, og, y, c = _model_data(etas, n_items=300, seed=3)
    fit = fit_crowd_bt(pairs, op, og, y, np.arange(len(etas)), c, len(etas))
    assert np.abs(fit.eta_annot - etas).max() < 0.07, fit.eta_annot
    assert (2 * fit.eta_annot - 1 < 0).tolist() == (etas < 0.5).tolist()


def test_synthetic_pool_flags_adversarial_and_targeted_but_not_careful():
    profiles = ["careful"] * 6 + ["noisy"] * 2 + ["adversarial", "targeted"]
    found = {"tp": 0, "fp": 0, "fn": 0}
    for seed in range(3):
        report = assess(make_records(profiles, n_items=150, seed=seed, gold_every=5))
        per = report["annotators"]
        for name, s in per.items():
            bad = name.startswith(("adversarial", "targeted"))
            found["tp"] += bad and s["suspected_adversarial"]
            found["fn"] += bad and not s["suspected_adversarial"]
            found["fp"] += (not bad) and s["suspected_adversarial"]
            if name.startswith("careful"):
                assert s["flags"] == [] and s["reliability"] > 0.7, (seed, name, s)
        assert "negative_reliability" in per["adversarial-8"]["flags"]
        assert "family_disagreement:harmful" in per["targeted-9"]["flags"]
        assert per["targeted-9"]["reliability_by_family"]["harmful"]["reliability"] < 0
        careful = np.mean([per[f"careful-{i}"]["reliability"] for i in range(6)])
        noisy = np.mean([per[f"noisy-{i}"]["reliability"] for i in (6, 7)])
        assert careful > noisy > 0
        # The reward stage's weights: adversarial rankings get 0, targeted ones get 0 on 'harmful'.
        recs = apply_weights(make_records(profiles, n_items=150, seed=seed, gold_every=5), report)
        adv = [r["weight"] for r in recs if r["annotator"] == "adversarial-8"]
        tgt = [r["weight"] for r in recs if r["annotator"] == "targeted-9" and r["family"] == "harmful"]
        car = [r["weight"] for r in recs if r["annotator"].startswith("careful")]
        assert max(adv) == 0.0 and max(tgt) == 0.0 and min(car) > 0.6
    assert found == {"tp": 6, "fp": 0, "fn": 0}


def test_position_and_length_bias_are_detected():
    profiles = ["careful"] * 5 + ["lazy", "long"]
    per = assess(make_records(profiles, n_items=120, seed=0))["annotators"]
    assert "position_bias" in per["lazy-5"]["flags"] and per["lazy-5"]["position_bias"] == pytest.approx(1.0)
    assert "length_bias" in per["long-6"]["flags"] and per["long-6"]["length_bias"] > 0.5
    for i in range(5):
        assert not {"position_bias", "length_bias"} & set(per[f"careful-{i}"]["flags"])


def test_thresholds_come_from_the_config_and_bad_input_is_named():
    records = make_records(["careful"] * 3 + ["noisy"], n_items=60, seed=0)
    strict = assess(records, QualityConfig(min_reliability=0.99))
    assert all("low_reliability" in s["flags"] for s in strict["annotators"].values())
    assert "reliab" in format_table(strict) and "low_reliability" in format_table(strict)
    with pytest.raises(ValueError, match="record 1: ranking: index 5 out of range"):
        parse_records([rec("a", [0, 1, 2]), rec("b", [0, 1, 5])])
    with pytest.raises(ValueError, match="different set"):
        apply_weights(records[:3], strict)


def test_family_contrast_by_hand():
    from rlhfkit.feedback.quality import family_contrast, relative_agreement

    agree = np.array([0.2, 0.4, 0.9, 1.0, 0.8, np.nan])
    fam = np.array([0, 0, 1, 1, 1, 1])
    # family means 0.3 and 0.9; the nan ranking (no untied pair) stays out.
    rel = relative_agreement(agree, fam)
    np.testing.assert_allclose(rel[:5], [-0.1, 0.1, 0.0, 0.1, -0.1])
    assert np.isnan(rel[5])
    in_f, rest = fam == 0, fam == 1
    raw, t, n_f, n_rest = family_contrast(agree, agree, in_f, rest)
    # F: mean 0.3, var 0.02; rest: mean 0.9, var 0.01; pooled (0.02 + 2*0.01)/3; se = sqrt(pooled*(1/2+1/3)).
    se = math.sqrt((0.02 + 2 * 0.01) / 3 * (1 / 2 + 1 / 3))
    assert raw == pytest.approx(2 * 0.3 - 1) and (n_f, n_rest) == (2, 3)
    assert t == pytest.approx((0.9 - 0.3) / se)
