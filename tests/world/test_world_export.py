"""Export: determinism, disjoint splits with held-out keys, record formats, corpus hygiene, speed."""

from __future__ import annotations

import hashlib
import json
import re
import time

import pytest

from rlhfkit.world import export, judge
from rlhfkit.world.corpus import generate_corpus
from rlhfkit.world.facts import ANIMALS, COLOURS
from rlhfkit.world.splits import SIZES, build_splits, is_eval_key, quotas
from rlhfkit.world.tasks import FAMILIES, parse_prompt


def _digest(paths) -> dict[str, str]:
    return {k: hashlib.sha256(p.read_bytes()).hexdigest() for k, p in paths.items()}


@pytest.fixture(scope="module")
def ci_world(tmp_path_factory):
    return export(tmp_path_factory.mktemp("w0"), seed=0, size="ci")


def _read(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_same_seed_is_byte_identical_and_other_seeds_differ(ci_world, tmp_path):
    again = export(tmp_path / "again", seed=0, size="ci")
    assert _digest(again) == _digest(ci_world)
    other = _digest(export(tmp_path / "other", seed=1, size="ci"))
    for name in ("pretrain", "sft", "rm", "rl", "eval"):
        assert other[name] != _digest(ci_world)[name], name


def test_records_carry_the_shared_formats(ci_world):
    for r in _read(ci_world["pretrain"]):
        assert set(r) == {"text"} and r["text"]
    for r in _read(ci_world["sft"]):
        roles = [m["role"] for m in r["messages"]]
        assert roles == ["user", "assistant"] and all(m["content"] for m in r["messages"])
        assert r["family"] in FAMILIES and r["demonstrator"] in ("good", "verbose", "sloppy", "careless")
    for split in ("rm", "rl", "eval"):
        recs = _read(ci_world[split])
        assert all(set(r) == {"prompt", "family", "id"} for r in recs)
        assert all(parse_prompt(r["prompt"]).family == r["family"] for r in recs)
        assert len({r["id"] for r in recs}) == len(recs)


def test_world_json_counts_match_the_files(ci_world):
    summary = json.loads(ci_world["world"].read_text())
    assert summary["seed"] == 0 and summary["size"] == "ci"
    for split in ("sft", "rm", "rl", "eval"):
        recs = _read(ci_world[split])
        assert summary["counts"][split]["total"] == len(recs)
        for fam in FAMILIES:
            assert summary["counts"][split].get(fam, 0) == sum(r["family"] == fam for r in recs)
    size = SIZES["ci"]
    assert (
        len(_read(ci_world["sft"])),
        len(_read(ci_world["rm"])),
        len(_read(ci_world["rl"])),
        len(_read(ci_world["eval"])),
    ) == (size.sft, size.rm, size.rl, size.eval)
    assert 0.98 <= summary["demonstration_gold"]["good"] < 1.0  # one answer in ten in the bare form (0.895)


def test_splits_are_disjoint_and_eval_holds_out_keys():
    s = build_splits(seed=3, size="tiny")
    texts = {
        split: {(r["messages"][0]["content"] if split == "sft" else r["prompt"]) for r in recs}
        for split, recs in s.items()
    }
    for a in texts:
        for b in texts:
            if a < b:
                assert not texts[a] & texts[b], (a, b)
    eval_keys = {parse_prompt(p).key for p in texts["eval"]}
    train_keys = {parse_prompt(p).key for split in ("sft", "rm", "rl") for p in texts[split]}
    assert eval_keys and not eval_keys & train_keys  # unseen number pairs, words, facts, entities
    assert all(is_eval_key(k) for k in eval_keys)
    # Prompt sets hold distinct prompts; eval covers every family.
    for split in ("rm", "rl", "eval"):
        assert len(texts[split]) == len(s[split])
    assert {r["family"] for r in s["eval"]} == set(FAMILIES)


def test_eval_is_stratified_by_family():
    counts = {}
    for r in build_splits(seed=0, size="tiny")["eval"]:
        counts[r["family"]] = counts.get(r["family"], 0) + 1
    assert max(counts.values()) - min(counts.values()) <= 12, counts


def test_quotas_respect_caps_and_total():
    q = quotas(100, {"a": 0.5, "b": 0.3, "c": 0.2}, {"a": 10, "b": 1000, "c": 1000})
    assert q == {"a": 10, "b": 54, "c": 36}
    assert sum(quotas(7, {"a": 1, "b": 1, "c": 1}, {"a": 9, "b": 9, "c": 9}).values()) == 7


def test_corpus_has_no_chat_format_and_no_prompt_answer_pairs():
    docs = generate_corpus(seed=0, chars=400_000)
    text = "\n".join(docs)
    for marker in ("<|", "user:", "assistant:", "User:", "Assistant:"):
        assert marker not in text
    s = build_splits(seed=0, size="ci")
    for r in s["sft"]:
        prompt, answer = r["messages"][0]["content"], r["messages"][1]["content"]
        for sep in (" ", "\n"):
            assert prompt + sep + answer not in text
    # Eval keys never appear in the corpus as questions either.
    for r in s["eval"]:
        assert r["prompt"] not in text


def test_corpus_teaches_what_the_tasks_need():
    docs = generate_corpus(seed=0, chars=400_000)
    text = "\n".join(docs)
    assert " plus " in text and " minus " in text and " is spelled " in text and " backwards is " in text
    assert " is bigger than " in text and " asked " in text  # copying operands from a question
    assert re.search(r"\b[a-z](-[a-z]){3,}\b", text)  # letters spelled apart
    # Every animal's facts are stated, and never contradicted.
    for a in ANIMALS.values():
        assert f"the {a.name} is {a.colour}" in text.lower() or f"{a.colour} {a.name}" in text.lower()
        assert f"the {a.name} eats {a.food}" in text.lower() or f"food of the {a.name} is {a.food}" in text.lower()
        for other in COLOURS:
            if other != a.colour:
                assert f"the {a.name} is {other}." not in text.lower()
    # FAQ pages: a question followed by more questions.
    assert any(
        lines[0]
        in (
            "Quiz",
            "Questions people ask",
            "Things children ask",
            "Frequently asked questions",
            "Questions for the class",
        )
        and all(x.endswith("?") or x.endswith(".") for x in lines[1:])
        and sum(x.endswith("?") for x in lines[1:]) >= 2
        for lines in (d.splitlines() for d in docs)
    )


@pytest.mark.parametrize("size,lo,hi", [("ci", 150_000, 250_000), ("tiny", 2_500_000, 3_500_000)])
def test_corpus_size_and_speed(size, lo, hi):
    t = time.perf_counter()
    docs = generate_corpus(seed=0, chars=SIZES[size].corpus_chars)
    build_splits(seed=0, size=size)
    assert time.perf_counter() - t < 10.0
    assert lo <= sum(len(d) for d in docs) <= hi


def test_sft_demonstrations_are_judgeable():
    """Every demonstration's prompt is one the judge knows (it raises otherwise), under the family the record
    names; the good demonstrator's answers get full credit (0.895 for the bare form one in ten takes)."""
    s = build_splits(seed=0, size="ci")
    good = 0
    for r in s["sft"]:
        j = judge(r["messages"][0]["content"], r["messages"][1]["content"])
        assert j.family == r["family"], r
        if r["demonstrator"] == "good":
            good += 1
            assert j.correct in (True, None) and j.score >= 0.89, (r, j)
    assert good >= 10
