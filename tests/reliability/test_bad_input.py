"""Bad input, clear error, nothing half-done: every training stage given a malformed data file exits 2 with
`FILE:LINE: what; expected what` on stderr and no traceback, before writing a model, checkpoint or metrics;
`--data.skip_invalid` skips the bad records and says how many; an output folder that cannot be created
fails before any work starts.

    .venv/bin/python -m pytest tests/reliability/test_bad_input.py -q      (~40 s)

The matrix runs `rlhfkit.cli.main(argv)` in-process (the code path of the `rlhfkit` script minus process
start-up, so an escaping exception fails the test); a few cases also run as real subprocesses to check the
exit status and stderr of the installed command.
"""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from rlhfkit.cli import main

from .conftest import ENV, RLHFKIT, ranking_records, sft_records, text_records

# (stage, bad line, what the message must say). Each bad line is put at line 3 of an otherwise valid file.
BAD = {
    "pretrain": [
        ('{"text": ""}', '"text" is empty'),
        ('{"text": 5}', '"text" is a number'),
        ('{"txt": "hello"}', 'missing "text"'),
        ('["text"]', "expected a JSON object"),
        ('{"text": "a", "text": "b"}', "duplicate key"),
        ('{"text": NaN}', "NaN is not JSON"),
    ],
    "sft": [
        ('{"messages": [{"content": "hi"}, {"role": "assistant", "content": "yo"}]}', "no role"),
        ('{"messages": [{"role": "robot", "content": "hi"}, {"role": "assistant", "content": "yo"}]}',
         'unknown role "robot"'),
        ('{"messages": [{"role": "user", "content": "hi"}]}', "no assistant turn"),
        ('{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "  "}]}',
         "no assistant turn"),
        ('{"messages": []}', '"messages" is empty'),
        ('{"messages": [{"role": "user", "content": 3}, {"role": "assistant", "content": "x"}]}', "content"),
        ('{"prompt": "hi"}', 'missing "completion"'),
        ('{"prompt": "hi", "completion": "x", "messages": []}', "expected one form"),
    ],
    "rankings": [
        ('{"prompt": "p", "responses": ["a"], "ranking": [0]}', "has 1 item(s); expected 2 to 9"),
        ('{"prompt": "p", "responses": ["a","b","c","d","e","f","g","h","i","j"], '
         '"ranking": [0,1,2,3,4,5,6,7,8,9]}', "has 10 item(s); expected 2 to 9"),
        ('{"prompt": "p", "responses": ["a", "b", "c"], "ranking": [0, 0, 1]}', "duplicate index 0"),
        ('{"prompt": "p", "responses": ["a", "b", "c"], "ranking": [0, [1, 1], 2]}', "duplicate index 1"),
        ('{"prompt": "p", "responses": ["a", "b"], "ranking": [0, 2]}', "index 2 out of range"),
        ('{"prompt": "p", "responses": ["a", "b", "c"], "ranking": [0, 1]}', "missing index 2"),
        ('{"prompt": "p", "responses": ["a", "b"], "ranking": [0, true]}', "non-integer entry"),
        ('{"prompt": "p", "responses": ["a", "a"], "ranking": [0, 1]}', "identical"),
        ('{"prompt": "p", "chosen": "a", "rejected": "a"}', '"chosen" equals "rejected"'),
        ('{"prompt": "p", "responses": ["a", "b"], "ranking": [0, 1], "weight": -1}', '"weight" is -1'),
        ('{"prompt": "", "responses": ["a", "b"], "ranking": [0, 1]}', '"prompt" is empty'),
        ('{"prompt": "p", "responses": ["a", "b"]}', 'missing "ranking"'),
    ],
}
# Damage to the file itself, for every stage.
FILE_DAMAGE = ["truncated", "invalid-utf8"]
STAGES = ("pretrain", "sft", "reward", "dpo")


def valid_rows(stage: str) -> list[dict]:
    return {"pretrain": text_records, "sft": sft_records}.get(stage, ranking_records)()


def stage_argv(stage: str, data: str, out, lm_dir, extra=()) -> list[str]:
    argv = [stage, "--preset", "ci", "--data.path", str(data), "--out", str(out)]
    if stage == "pretrain":
        argv += ["--arch.context=32", "--vocab_size=300"]
    else:
        argv += ["--model", str(lm_dir)]
    if stage == "reward":
        argv += ["--gold=false"]
    return argv + list(extra)


def write_bad(path, stage: str, bad: str | None, damage: str | None = None) -> int:
    """A valid file of `stage`'s format with one bad line (or damage); returns the line number to report."""
    lines = [json.dumps(r).encode() for r in valid_rows(stage)[:20]]
    if bad is not None:
        lines.insert(2, bad.encode())
        path.write_bytes(b"\n".join(lines) + b"\n")
        return 3
    if damage == "truncated":  # a copy cut short mid-record, as by a full disk or an interrupted transfer
        path.write_bytes(b"\n".join(lines)[:-7])
        return len(lines)
    lines[2] = lines[2][:-3] + b"\xff\xfe" + lines[2][-3:]  # invalid UTF-8 inside line 3
    path.write_bytes(b"\n".join(lines) + b"\n")
    return 3


def assert_refused(capsys, rc: int, where: str, out, what: str = "expected") -> str:
    cap = capsys.readouterr()
    assert rc == 2, cap.out + cap.err
    assert "Traceback" not in cap.err + cap.out
    assert f"{where}:" in cap.err and what in cap.err, cap.err
    for left in ("model", "ckpt", "metrics.jsonl", "summary.json", "ref_logps.pt"):
        assert not (out / left).exists(), f"{left} written by a run that refused its input"
    return cap.err


def _cases():
    for stage in STAGES:
        rows = BAD["rankings" if stage in ("reward", "dpo") else stage]
        for i, (bad, msg) in enumerate(rows):
            yield pytest.param(stage, bad, None, msg, id=f"{stage}-bad{i}")
        for damage in FILE_DAMAGE:
            yield pytest.param(stage, None, damage, "expected", id=f"{stage}-{damage}")


@pytest.mark.parametrize("stage, bad, damage, message", list(_cases()))
def test_malformed_data_exits_2_naming_file_and_line(stage, bad, damage, message, tmp_path, lm_dir, capsys):
    data = tmp_path / "data.jsonl"
    line = write_bad(data, stage, bad, damage)
    out = tmp_path / "out"
    rc = main(stage_argv(stage, data, out, lm_dir))
    err = assert_refused(capsys, rc, f"{data}:{line}", out, message)
    if damage == "truncated":
        assert "truncated" in err
    if damage == "invalid-utf8":
        assert "invalid UTF-8" in err


@pytest.mark.parametrize("stage", ["sft", "dpo"])
def test_the_installed_command_exits_2_without_a_traceback(stage, tmp_path, lm_dir):
    """The real process: exit status 2, one `rlhfkit STAGE: error: FILE:LINE: ...` line, no traceback."""
    data = tmp_path / "data.jsonl"
    line = write_bad(data, stage, None, "invalid-utf8")
    argv = stage_argv(stage, data, tmp_path / "out", lm_dir)
    proc = subprocess.run(RLHFKIT + argv, capture_output=True, text=True, env=ENV, timeout=120)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    assert f"rlhfkit {stage}: error: {data}:{line}: invalid UTF-8" in proc.stderr


@pytest.mark.parametrize("stage", STAGES)
def test_empty_and_missing_files_are_named(stage, tmp_path, lm_dir, capsys):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n")
    rc = main(stage_argv(stage, empty, tmp_path / "out", lm_dir))
    assert_refused(capsys, rc, str(empty), tmp_path / "out", "no records")
    rc = main(stage_argv(stage, tmp_path / "absent.jsonl", tmp_path / "out2", lm_dir))
    assert_refused(capsys, rc, str(tmp_path / "absent.jsonl"), tmp_path / "out2", "no such file")


SKIP_REPORT = {"pretrain": "skipped {n} invalid records", "reward": "skipped {n} invalid records",
               "dpo": "'invalid_records': {n}", "sft": "skipped {n} invalid"}


@pytest.mark.parametrize("stage", [
    "pretrain", "reward", "dpo",
    "sft"])
def test_skip_invalid_skips_counts_and_trains(stage, tmp_path, lm_dir, capsys):
    bad = BAD["rankings" if stage in ("reward", "dpo") else stage]
    valid = ranking_records(10) if stage in ("reward", "dpo") else valid_rows(stage)
    lines = [json.dumps(r) for r in valid] + [b for b, _ in bad[:3]]
    data = tmp_path / "data.jsonl"
    data.write_bytes(("\n".join(lines) + "\n").encode() + b'{"text": "\xff"}\n')  # 4 bad records in all
    out = tmp_path / "out"
    rc = main(stage_argv(stage, data, out, lm_dir, ["--data.skip_invalid", "--optim.max_steps=2",
                                                    "--optim.batch_size=2", "--optim.eval_every=100"]))
    cap = capsys.readouterr()
    assert rc == 0, cap.out + cap.err
    assert SKIP_REPORT[stage].format(n=4) in cap.out, cap.out
    assert (out / "summary.json").exists()


def test_sft_counts_conversations_longer_than_the_context(tmp_path, lm_dir, capsys):
    rows = sft_records(40) + [{"prompt": "count: " + " ".join(str(i) for i in range(400)), "completion": "ok"}]
    data = tmp_path / "sft.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    rc = main(stage_argv("sft", data, tmp_path / "out", lm_dir, ["--optim.max_steps=1"]))
    cap = capsys.readouterr()
    assert rc == 0, cap.err
    assert "skipped 1 conversations longer than the context" in cap.out


@pytest.mark.parametrize("stage", STAGES)
def test_an_output_folder_that_cannot_be_made_fails_first(stage, tmp_path, lm_dir, capsys, data_dir):
    """`--out` below a regular file (root can write anywhere, so a read-only folder proves nothing in CI)."""
    blocker = tmp_path / "somefile"
    blocker.write_text("not a folder")
    data = data_dir / {"pretrain": "text.jsonl", "sft": "sft.jsonl"}.get(stage, "rankings.jsonl")
    rc = main(stage_argv(stage, data, blocker / "x", lm_dir))
    cap = capsys.readouterr()
    assert rc == 2 and "Traceback" not in cap.err
    assert f"{blocker / 'x'}: output folder is not writable" in cap.err, cap.err
    assert blocker.read_text() == "not a folder"
    assert cap.out == "", "work started before the output folder was checked"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_output_folder_fails_first(tmp_path, lm_dir, capsys, data_dir):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    rc = main(stage_argv("sft", data_dir / "sft.jsonl", ro / "x", lm_dir))
    assert rc == 2 and "output folder is not writable" in capsys.readouterr().err


@pytest.mark.parametrize("stage", ["sft"])
def test_a_missing_model_folder_is_a_clear_error(stage, tmp_path, data_dir, capsys):
    rc = main(stage_argv(stage, data_dir / "sft.jsonl", tmp_path / "out", tmp_path / "no-such-model"))
    cap = capsys.readouterr()
    assert rc == 2 and str(tmp_path / "no-such-model") in cap.err
