"""`rlhfkit.stages.rankings`: SFT samples ranked by the simulated pool, human rankings validated and copied,
quality weights, and the summary's identical-pair share and gold agreement.

Run: .venv/bin/python -m pytest tests/stages/test_rankings.py -q
"""

import json
import random
import sys

import pytest

from rlhfkit.config import apply
from rlhfkit.data.formats import DataError, load_rankings, write_jsonl
from rlhfkit.stages import rankings

world = pytest.importorskip("rlhfkit.world")
from rlhfkit.world.demonstrators import verbose  # noqa: E402
from rlhfkit.world.splits import build_splits  # noqa: E402
from rlhfkit.world.tasks import FAMILIES, parse_prompt  # noqa: E402


def _read(path):
    return [json.loads(line) for line in open(path)]


def _cfg(tmp_path, **kw) -> rankings.Config:
    cfg = apply(rankings.Config(), rankings.PRESETS["ci"])
    return apply(cfg, {"out": str(tmp_path / "rk"), **kw})


def _world_candidates(n: int, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    out = []
    for rec in build_splits(seed, "ci")["rm"][:n]:
        task = parse_prompt(rec["prompt"])
        fam = FAMILIES[task.family]
        good = fam.good(task, rng)
        out.append({"prompt": rec["prompt"], "family": task.family,
                    "responses": [good, verbose(good, task.family, rng), fam.wrong(task, rng), "no no no no"]})
    return out


def test_identical_fraction_by_hand():
    cands = [{"responses": ["a", "a", "b"]}, {"responses": ["x", "y", "x", "x"]}]
    assert rankings.identical_fraction(cands) == pytest.approx((1 + 3) / (3 + 6))


def test_gold_agreement_by_hand():
    prompt = "What is 3 plus 4?"
    good, wrong, chatty = "3 plus 4 is 7.", "3 plus 4 is 9.", "Sure! 3 plus 4 is 7. I hope this helps."
    g = [world.judge(prompt, r).score for r in (good, wrong, chatty)]
    assert g[0] > g[2] > g[1]  # the judge orders them strictly: good > chatty > wrong
    records = [
        {"prompt": prompt, "responses": [good, wrong, chatty], "ranking": [1, 0, 2], "profile": "noisy"},
        {"prompt": prompt, "responses": [good, wrong, chatty], "ranking": [[0, 1], 2], "profile": "careful"},
        {"prompt": "not a world prompt", "responses": ["a", "b"], "ranking": [0, 1], "profile": "careful"},
    ]
    got = rankings.gold_agreement(records)
    # noisy: (good,wrong) flipped, (good,chatty) right, (wrong,chatty) flipped -> 1/3.
    assert got["noisy"] == {"agreement": pytest.approx(1 / 3, abs=1e-4), "n_pairs": 3}
    # careful: good~wrong tied (½), good>chatty right, wrong>chatty flipped -> 1.5/3; the unknown prompt is skipped.
    assert got["careful"] == {"agreement": 0.5, "n_pairs": 3}
    assert got["all"]["n_pairs"] == 6


def test_samples_from_sft_and_simulated_pool(tmp_path, lm_dir):
    prompts = tmp_path / "prompts.jsonl"
    write_jsonl(prompts, build_splits(0, "ci")["rm"][:5])
    cfg = _cfg(tmp_path, model=str(lm_dir), prompts=str(prompts), k=3, max_new_tokens=6,
               pool="careful:0.5,noisy:0.5", n_annotators=4, per_item=2)
    out = rankings.run(cfg)
    cands, recs = _read(out / "candidates.jsonl"), _read(out / "rankings.jsonl")
    assert len(cands) == 5 and all(len(c["responses"]) == 3 and len(c["finished"]) == 3 for c in cands)
    assert {c["family"] for c in cands} <= set(FAMILIES)
    assert len(recs) == 2 * sum(len(set(c["responses"])) > 1 for c in cands)
    for r in recs:
        assert {"annotator", "profile", "family", "weight"} <= set(r) and r["profile"] in ("careful", "noisy")
        assert r["weight"] == 1.0
    by_prompt = {}
    for r in recs:
        by_prompt.setdefault(r["prompt"], set()).add(r["annotator"])
    assert all(len(a) == 2 for a in by_prompt.values())  # two distinct annotators per item
    assert len(load_rankings(out / "rankings.jsonl")) == len(recs)  # the reward stage's loader accepts them
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_prompts"] == 5 and summary["n_rankings"] == len(recs)
    assert summary["k"] == {"3": 5}
    # Same seed, same files.
    again = rankings.run(_cfg(tmp_path, **{**vars(cfg), "out": str(tmp_path / "again")}))
    assert _read(again / "rankings.jsonl") == recs


def test_human_rankings_are_validated_and_copied(tmp_path):
    src = tmp_path / "export.jsonl"
    rows = [{"prompt": "p1", "responses": ["a", "b", "c"], "ranking": [2, [0, 1]], "annotator": "ann",
             "display_order": [1, 0, 2]},
            {"prompt": "p2", "chosen": "yes", "rejected": "no", "weight": 0.5}]
    write_jsonl(src, rows)
    out = rankings.run(_cfg(tmp_path, rankings=str(src)))
    recs = _read(out / "rankings.jsonl")
    assert recs[0]["ranking"] == [2, [0, 1]] and recs[0]["display_order"] == [1, 0, 2] and recs[0]["weight"] == 1.0
    assert recs[1]["responses"] == ["yes", "no"] and recs[1]["weight"] == 0.5
    assert [c["prompt"] for c in _read(out / "candidates.jsonl")] == ["p1", "p2"]
    write_jsonl(src, [{"prompt": "p", "responses": ["a", "b"], "ranking": [0, 0]}])
    with pytest.raises(DataError, match="duplicate index 0"):
        rankings.run(_cfg(tmp_path, rankings=str(src)))


def test_quality_weights(tmp_path, monkeypatch):
    quality = pytest.importorskip("rlhfkit.feedback.quality")
    pool = world.AnnotatorPool.from_spec("careful:0.6,adversarial:0.4", n_annotators=5, seed=0)
    records = pool.label(_world_candidates(40), per_item=2)
    src = tmp_path / "sim.jsonl"
    write_jsonl(src, records)
    out = rankings.run(_cfg(tmp_path, rankings=str(src), quality_weights=True))
    recs = _read(out / "rankings.jsonl")
    expected = quality.apply_weights(records, quality.assess(records))
    assert [r["weight"] for r in recs] == [e["weight"] for e in expected]
    assert all(0 <= r["weight"] <= 1 for r in recs) and len({r["weight"] for r in recs}) > 1
    # What the weights are for, independent of the quality code: on harmful prompts (where the adversarial
    # profile flips its rankings) every adversarial ranking weighs less than every careful one.
    by_profile = {p: [r["weight"] for r, src_r in zip(recs, records) if src_r["profile"] == p
                      and src_r["family"] == "harmful"] for p in ("careful", "adversarial")}
    assert by_profile["adversarial"] and by_profile["careful"], by_profile
    assert max(by_profile["adversarial"]) < min(by_profile["careful"]), by_profile
    assert "annotators" in json.loads((out / "quality.json").read_text())
    monkeypatch.setitem(sys.modules, "rlhfkit.feedback.quality", None)  # module missing -> a clear error
    with pytest.raises(Exception, match="quality"):
        rankings.run(_cfg(tmp_path, rankings=str(src), quality_weights=True, out=str(tmp_path / "x")))


def test_gold_ties_counts_equal_gold_scores_per_family():
    from rlhfkit.stages.rankings import gold_ties

    cands = [
        # right / right (tie), right / wrong, right / wrong: 1 tie of 3 distinct pairs; the duplicate is one text
        {"prompt": "What is 3 plus 4?", "family": "arithmetic",
         "responses": ["3 plus 4 is 7.", "If you add 3 and 4, you get 7.", "3 plus 4 is 8.", "3 plus 4 is 8."]},
        # two wrong answers (tie): 1 of 1
        {"prompt": "Spell fox backwards.", "family": "spelling", "responses": ["x-o-f-f.", "fox backwards is o-x-f."]},
        {"prompt": "not a world prompt", "family": "other", "responses": ["a", "b"]},
    ]
    out = gold_ties(cands)
    assert out["arithmetic"] == {"tie_fraction": round(1 / 3, 4), "n_pairs": 3}
    assert out["spelling"] == {"tie_fraction": 1.0, "n_pairs": 1}
    assert "other" not in out and out["all"] == {"tie_fraction": 0.5, "n_pairs": 4}
