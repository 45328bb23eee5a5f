"""Loading candidates from JSONL: good files load atomically, bad records are named file:line."""

from __future__ import annotations

import json

import pytest

from rlhfkit.feedback.candidates import CandidateError, add_from_jsonl


def write(path, lines):
    path.write_text("\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines) + "\n")
    return path


def test_records_load_with_optional_fields(store, tmp_path):
    f = write(tmp_path / "c.jsonl", [
        {"prompt": "2+2?", "responses": ["4", "5", "four"], "family": "math", "model": "sft", "gold_best": 0},
        "",
        {"prompt": "hi", "responses": ["a", "b"], "model": ["m1", "m2"], "extra": "kept out"},
    ])
    assert add_from_jsonl(store, f) == [1, 2]
    items = store.items()
    assert items[0]["family"] == "math" and items[0]["gold_best"] == 0 and items[0]["models"] == ["sft"] * 3
    assert items[1]["responses"] == ["a", "b"] and items[1]["models"] == ["m1", "m2"]
    assert items[1]["family"] == "" and items[1]["gold_best"] is None


@pytest.mark.parametrize("bad, message", [
    ("{oops", "not valid JSON"),
    ('["a list"]', "got a list, expected a JSON object"),
    ({"responses": ["a", "b"]}, '"prompt" missing or empty'),
    ({"prompt": "p", "responses": ["a"]}, '"responses" has 1 items, expected 2 to 9'),
    ({"prompt": "p", "responses": [str(i) for i in range(10)]}, "has 10 items, expected 2 to 9"),
    ({"prompt": "p", "responses": ["a", 3]}, "not all strings"),
    ({"prompt": "p", "responses": ["a", "b"], "family": 3}, '"family" is not a string'),
    ({"prompt": "p", "responses": ["a", "b"], "model": ["x"]}, "expected a string or a list of 2 strings"),
    ({"prompt": "p", "responses": ["a", "b"], "gold_best": 2}, '"gold_best" is 2, expected an index 0..1'),
])
def test_bad_record_is_reported_with_file_and_line_and_nothing_is_added(store, tmp_path, bad, message):
    f = write(tmp_path / "c.jsonl", [{"prompt": "ok", "responses": ["a", "b"]}, bad])
    with pytest.raises(CandidateError) as e:
        add_from_jsonl(store, f)
    assert f"{f}:2: " in str(e.value) and message in str(e.value)
    assert store.items() == []


def test_every_bad_line_is_listed(store, tmp_path):
    f = write(tmp_path / "c.jsonl", ["{", {"prompt": "ok", "responses": ["a", "b"]}, "[]"])
    with pytest.raises(CandidateError) as e:
        add_from_jsonl(store, f)
    assert f"{f}:1:" in str(e.value) and f"{f}:3:" in str(e.value)
