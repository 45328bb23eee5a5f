"""Tests for rlhfkit.data.formats: every format loads, every malformed record names its file and line.

Run: .venv/bin/python -m pytest tests/data/test_formats.py -q
"""

from __future__ import annotations

import json
import math
from itertools import combinations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rlhfkit.data.formats import (
    Conversation, DataError, PromptRecord, Ranking, load_pairs, load_prompts, load_rankings,
    load_sft, load_text, ranking_from_scores, write_jsonl,
)

LOADERS = [load_text, load_sft, load_pairs, load_rankings, load_prompts]


def write_lines(path, lines):
    path.write_text("".join(json.dumps(x) + "\n" if not isinstance(x, str) else x + "\n" for x in lines),
                    encoding="utf-8")
    return path


# ---------------------------------------------------------------- valid files


def test_text_and_prompts_load(tmp_path):
    p = write_lines(tmp_path / "t.jsonl", [{"text": "once upon"}, "", {"text": "a time", "src": "x"}])
    assert load_text(p) == ["once upon", "a time"]
    p = write_lines(tmp_path / "p.jsonl", [{"prompt": "add 2+2", "family": "math", "id": "m1"},
                                          {"prompt": "hello", "lang": "en"}])
    assert load_prompts(p) == [PromptRecord("add 2+2", "math", "m1", {}),
                               PromptRecord("hello", None, "2", {"lang": "en"})]  # id = line number


def test_sft_both_forms(tmp_path):
    msgs = [{"role": "system", "content": ""}, {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "hello"}]
    p = write_lines(tmp_path / "s.jsonl", [{"messages": msgs, "source": "a"},
                                          {"prompt": "q", "completion": "a", "n": 1}])
    convs = load_sft(p)
    assert convs[0] == Conversation(msgs, {"source": "a"})
    assert convs[1] == Conversation([{"role": "user", "content": "q"},
                                     {"role": "assistant", "content": "a"}], {"n": 1})
    write_jsonl(tmp_path / "out.jsonl", convs)
    assert load_sft(tmp_path / "out.jsonl") == convs


def test_rankings_accept_kway_and_pairwise_in_one_file(tmp_path):
    p = write_lines(tmp_path / "r.jsonl", [
        {"prompt": "p", "responses": ["a", "b", "c", "d"], "ranking": [2, [0, 3], 1],
         "annotator": "ann1", "weight": 0.5, "family": "math", "batch": 7},
        {"prompt": "q", "chosen": "good", "rejected": "bad", "annotator": "ann2"},
    ])
    r1, r2 = load_rankings(p)
    assert r1 == Ranking("p", ["a", "b", "c", "d"], [[2], [0, 3], [1]], "ann1", 0.5, "math",
                         {"batch": 7})
    assert r2 == Ranking("q", ["good", "bad"], [[0], [1]], "ann2")
    assert r2.pairs() == [(0, 1, False)]
    # InstructGPT: a K=4 ranking gives C(4,2)=6 comparisons; response 2 beats all, 0~3 tie.
    assert sorted(r1.pairs()) == sorted([(2, 0, False), (2, 3, False), (2, 1, False), (0, 3, True),
                                         (0, 1, False), (3, 1, False)])
    assert r1.to_dict()["ranking"] == [2, [0, 3], 1]
    with pytest.raises(DataError, match=r"r\.jsonl:1: .*expected a pair"):
        load_pairs(p)
    assert load_pairs(p, skip_invalid=True) == [r2]


def test_crlf_bom_and_blank_lines_keep_line_numbers(tmp_path):
    p = tmp_path / "b.jsonl"
    p.write_bytes(b'\xef\xbb\xbf{"text": "a"}\r\n\r\n   \n{"text": 5}\r\n')
    with pytest.raises(DataError) as e:
        load_text(p)
    assert str(e.value) == f'{p}:4: "text" is a number; expected a string'


def test_ranking_from_scores_hand_example():
    r = ranking_from_scores("p", ["a", "b", "c", "d"], [0.1, 0.9, 0.5, 0.9], annotator="rm")
    assert r.ranking == [[1, 3], [2], [0]] and r.annotator == "rm"
    assert r.to_dict()["ranking"] == [[1, 3], 2, 0]
    with pytest.raises(DataError):
        ranking_from_scores("p", ["a", "b"], [1.0, math.nan])


# ---------------------------------------------------------------- malformed records


RANK = {"prompt": "p", "responses": ["a", "b", "c", "d"], "ranking": [0, 1, 2, 3]}
BAD = [  # (loader, bad line, expected message fragment)
    (load_text, "{not json", "invalid JSON at column 2"),
    (load_text, '{"text": "a", "text": "b"}', 'duplicate key "text"'),
    (load_text, '{"text": NaN}', "NaN is not JSON"),
    (load_text, "[1, 2]", "line is an array; expected a JSON object"),
    (load_text, {"txt": "a"}, 'missing "text"; expected a string'),
    (load_text, {"text": "  "}, '"text" is empty; expected a non-empty string'),
    (load_sft, {"messages": [{"role": "bot", "content": "x"}]}, 'unknown role "bot"'),
    (load_sft, {"messages": [{"role": "user"}]}, '"messages"[0] has no content'),
    (load_sft, {"messages": [{"role": "user", "content": "x"}]}, "no assistant turn"),
    (load_sft, {"messages": []}, '"messages" is empty'),
    (load_sft, {"messages": "hi"}, '"messages" is a string'),
    (load_sft, {"prompt": "q"}, 'missing "completion"'),
    (load_sft, {"messages": [], "prompt": "q"}, "has both"),
    (load_pairs, {"prompt": "p", "chosen": "x", "rejected": "x"}, '"chosen" equals "rejected"'),
    (load_pairs, {"prompt": "p", "chosen": 1, "rejected": "x"}, '"chosen" is a number'),
    (load_pairs, {"chosen": "x", "rejected": "y"}, 'missing "prompt"'),
    (load_rankings, {**RANK, "responses": ["a"], "ranking": [0]}, "has 1 item(s); expected 2 to 9"),
    (load_rankings, {**RANK, "responses": list("abcdefghij"), "ranking": list(range(10))},
     "has 10 item(s); expected 2 to 9"),
    (load_rankings, {**RANK, "ranking": [0, 1, 2, 2]},
     '"ranking" has duplicate index 2; expected each of 0..3 exactly once'),
    (load_rankings, {**RANK, "ranking": [0, 1, 2]}, '"ranking" is missing index 3'),
    (load_rankings, {**RANK, "ranking": [0, 1, 2, 4]}, '"ranking" has index 4 out of range'),
    (load_rankings, {**RANK, "ranking": [0, 1, 2, -3]}, "index -3 out of range"),
    (load_rankings, {**RANK, "ranking": [0, 1, 2, 3.0]}, "non-integer entry 3.0"),
    (load_rankings, {**RANK, "ranking": [0, 1, 2, True]}, "non-integer entry true"),
    (load_rankings, {**RANK, "ranking": [0, [1, [2]], 3]}, "non-integer entry [2]"),
    (load_rankings, {**RANK, "ranking": [0, 1, [], 2, 3]}, '"ranking"[2] is an empty tie'),
    (load_rankings, {**RANK, "ranking": "0123"}, '"ranking" is a string'),
    (load_rankings, {**RANK, "responses": ["a", 2, "c", "d"]}, '"responses"[1] is a number'),
    (load_rankings, {**RANK, "responses": ["a"] * 4}, "all responses are identical"),
    (load_rankings, {**RANK, "weight": -1}, '"weight" is -1; expected a finite number >= 0'),
    (load_rankings, {**RANK, "annotator": 3}, '"annotator" is a number'),
    (load_rankings, {k: v for k, v in RANK.items() if k != "ranking"}, 'missing "ranking"'),
    (load_rankings, {k: v for k, v in RANK.items() if k != "responses"}, 'missing "responses"'),
    (load_rankings, {**RANK, "responses": {"a": 1}}, '"responses" is an object'),
    (load_rankings, {**RANK, "weight": "heavy"}, '"weight" is "heavy"'),
    (load_pairs, {"prompt": "p", "chosen": "x", "rejected": "y", "responses": ["x", "y"]},
     'has both "responses"/"ranking" and "chosen"/"rejected"'),
    (load_rankings, {"prompt": "p"}, 'no "responses"/"ranking" or "chosen"/"rejected"'),
    (load_prompts, {"prompt": ""}, '"prompt" is empty'),
    (load_prompts, {"prompt": "x", "id": [1]}, '"id" is [1]'),
    (load_prompts, {"prompt": "x", "id": "1"}, 'id "1" repeats line 1; expected unique ids'),
]
GOOD = {load_text: {"text": "ok"}, load_sft: {"prompt": "q", "completion": "a"},
        load_pairs: {"prompt": "p", "chosen": "x", "rejected": "y"}, load_rankings: RANK,
        load_prompts: {"prompt": "x", "id": "1"}}


@pytest.mark.parametrize("loader,bad,fragment", BAD,
                         ids=[f"{b[0].__name__}-{i}" for i, b in enumerate(BAD)])
def test_malformed_record_names_file_and_line(tmp_path, loader, bad, fragment):
    p = write_lines(tmp_path / "data.jsonl", [GOOD[loader], "", bad, GOOD[loader] | {"id": "9"}])
    with pytest.raises(DataError) as e:
        loader(p)
    msg = str(e.value)
    assert msg.startswith(f"{p}:3: ") and fragment in msg and "; expected" in msg, msg
    assert isinstance(e.value, ValueError)
    # skip_invalid drops exactly that record and says why
    got = loader(p, skip_invalid=True)
    assert len(got) == 2 and got.skipped == 1 and got.errors == [msg]


def test_invalid_utf8_and_truncated_last_line(tmp_path):
    p = tmp_path / "u.jsonl"
    p.write_bytes(b'{"text": "a"}\n{"text": "caf\xe9"}\n')
    with pytest.raises(DataError, match=r"u\.jsonl:2: invalid UTF-8 at byte 14 "):
        load_text(p)
    p.write_bytes(b'{"text": "a"}\n{"text": "b"}\n{"text": "interrupt')
    with pytest.raises(DataError, match=r"u\.jsonl:3: invalid JSON .*truncated\?\); expected"):
        load_text(p)


def test_empty_file_and_nothing_valid(tmp_path):
    p = tmp_path / "e.jsonl"
    p.write_text("\n\n")
    with pytest.raises(DataError, match=r"e\.jsonl: no records; expected at least one"):
        load_rankings(p)
    write_lines(p, [{"text": 1}, {"text": 2}])
    with pytest.raises(DataError, match=r"no valid records \(2 invalid, first: .*e\.jsonl:1: "):
        load_text(p, skip_invalid=True)
    with pytest.raises(FileNotFoundError):
        load_text(tmp_path / "missing.jsonl")


def test_write_jsonl_is_atomic(tmp_path):
    p = write_jsonl(tmp_path / "sub" / "x.jsonl", ["old"])

    def records():
        yield "new"
        raise RuntimeError("crash mid-write")

    with pytest.raises(RuntimeError):
        write_jsonl(p, records())
    assert load_text(p) == ["old"]  # the old file is intact
    assert [f.name for f in p.parent.iterdir()] == ["x.jsonl"]  # and no temp file is left


# ---------------------------------------------------------------- datasets folders


def test_save_to_disk_folder_loads_through_same_loader(tmp_path):
    datasets = pytest.importorskip("datasets")
    rows = [{"prompt": "p", "responses": ["a", "b", "c"], "ranking": [[1], [0, 2]], "annotator": "x"},
            {"prompt": "q", "responses": ["d", "e", "f"], "ranking": [[2], [1], [0]], "annotator": "y"}]
    datasets.Dataset.from_list(rows).save_to_disk(str(tmp_path / "ds"))
    assert load_rankings(tmp_path / "ds") == load_rankings(rows)
    assert load_rankings(tmp_path / "ds")[0].pairs() == [(1, 0, False), (1, 2, False), (0, 2, True)]
    bad = rows + [{"prompt": "r", "responses": ["a", "b", "c"], "ranking": [[0], [0]], "annotator": "z"}]
    datasets.DatasetDict({"train": datasets.Dataset.from_list(bad)}).save_to_disk(str(tmp_path / "dd"))
    with pytest.raises(DataError, match=r"dd:3: \"ranking\" has duplicate index 0"):
        load_rankings(tmp_path / "dd")


# ---------------------------------------------------------------- properties

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 12) | st.text(max_size=5)
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=4), kids, max_size=3),
    max_leaves=10)
KEYS = ["text", "prompt", "completion", "messages", "chosen", "rejected", "responses", "ranking",
        "annotator", "weight", "family", "id", "role", "content"]
generic = st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=3), json_values, max_size=5)


def maybe(valid):
    """Mostly a valid value, sometimes any JSON value, so both the happy and the error paths run."""
    return st.floats(0, 1).flatmap(lambda u: json_values if u > 0.9 else valid)


words = st.text(min_size=1, max_size=4)
extras = {"weight": maybe(st.floats(0, 5)), "annotator": maybe(words), "family": maybe(words),
          "note": json_values}
message = st.fixed_dictionaries({"role": maybe(st.sampled_from(["user", "assistant", "system", "bot"])),
                                 "content": maybe(words)})


@st.composite
def kway(draw):
    responses = draw(st.lists(st.text(max_size=3), min_size=draw(st.sampled_from([1, 2])), max_size=10))
    order = draw(st.permutations(range(len(responses))))
    tiers = [[i] if draw(st.booleans()) else [i, j] for i, j in zip(order, order[1:])]
    ranking = draw(maybe(st.sampled_from([order, [t if len(t) > 1 else t[0] for t in tiers]])))
    return {"prompt": draw(maybe(words)), "responses": draw(maybe(st.just(responses))),
            "ranking": ranking}


ROWS = {
    load_text: st.fixed_dictionaries({"text": maybe(words)}, optional={"src": json_values}),
    load_sft: st.fixed_dictionaries({"messages": maybe(st.lists(message, max_size=3))})
    | st.fixed_dictionaries({"prompt": maybe(words), "completion": maybe(words)}),
    load_pairs: st.fixed_dictionaries({"prompt": maybe(words), "chosen": maybe(st.text(max_size=2)),
                                       "rejected": maybe(st.text(max_size=2))}, optional=extras),
    load_rankings: kway(),
    load_prompts: st.fixed_dictionaries({"prompt": maybe(words)},
                                        optional={"id": maybe(words | st.integers()), **extras}),
}
ROWS[load_rankings] = ROWS[load_rankings] | ROWS[load_pairs]
ROWS[load_pairs] = ROWS[load_rankings]
cases = st.sampled_from(LOADERS).flatmap(
    lambda loader: st.tuples(st.just(loader), st.lists(
        st.floats(0, 1).flatmap(lambda u: generic if u > 0.8 else ROWS[loader]),
        min_size=1, max_size=3)))
# database=None: keep hypothesis from writing a .hypothesis/ folder into the repository
FAST = settings(max_examples=300, deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])


@FAST
@given(cases, st.booleans())
def test_arbitrary_objects_give_records_or_data_error(tmp_path, case, skip):
    loader, rows = case
    p = write_lines(tmp_path / "h.jsonl", rows)
    try:
        got = loader(p, skip_invalid=skip)
    except DataError as e:
        assert str(e).startswith(str(p))
        return
    assert 1 <= len(got) <= len(rows) and len(got) + got.skipped == len(rows)
    write_jsonl(tmp_path / "again.jsonl", got)  # whatever loads, writes back and reloads the same
    assert loader(tmp_path / "again.jsonl") == got


@FAST
@given(st.lists(st.binary(max_size=30) | st.sampled_from([b'{"text": "a"}', b'{"prompt": "p"}', b"\n"]),
                max_size=4), st.sampled_from(LOADERS))
def test_arbitrary_bytes_give_records_or_data_error(tmp_path, chunks, loader):
    p = tmp_path / "b.jsonl"
    p.write_bytes(b"".join(chunks))
    try:
        loader(p)
    except DataError:
        pass


@st.composite
def rankings(draw):
    k = draw(st.integers(2, 9))
    responses = draw(st.lists(st.text(max_size=6), min_size=k, max_size=k, unique=True))
    order = draw(st.permutations(range(k)))
    cuts = sorted(draw(st.sets(st.integers(1, k - 1))))  # tier boundaries in the permutation
    tiers = [list(order[a:b]) for a, b in zip([0] + cuts, cuts + [k])]
    return Ranking(draw(st.text(min_size=1, max_size=6).filter(str.strip)), responses, tiers,
                   annotator=draw(st.none() | st.text(max_size=4)),
                   weight=draw(st.sampled_from([1.0, 0.0, 0.25, 3.0])),
                   family=draw(st.none() | st.sampled_from(["math", "code"])),
                   meta=draw(st.dictionaries(st.sampled_from(["batch", "time", "x"]), json_values,
                                             max_size=2)))


@FAST
@given(st.lists(rankings(), min_size=1, max_size=4))
def test_rankings_round_trip_and_give_all_pairs(tmp_path, rs):
    write_jsonl(tmp_path / "r.jsonl", rs)
    assert load_rankings(tmp_path / "r.jsonl") == rs
    for r in rs:
        tier_of = {i: t for t, tier in enumerate(r.ranking) for i in tier}
        pairs = r.pairs()
        assert len(pairs) == r.k * (r.k - 1) // 2
        # independent reference: every unordered pair once; the better tier wins; same tier = tie
        assert {frozenset(p[:2]) for p in pairs} == {frozenset(c) for c in combinations(range(r.k), 2)}
        for w, l, tie in pairs:
            assert tie == (tier_of[w] == tier_of[l]) and tier_of[w] <= tier_of[l]


@FAST
@given(st.lists(st.integers(-3, 3), min_size=2, max_size=9))
def test_ranking_from_scores_orders_by_score(scores):
    r = ranking_from_scores("p", [f"r{i}" for i in range(len(scores))], scores)
    for w, l, tie in r.pairs():
        assert scores[w] == scores[l] if tie else scores[w] > scores[l]
