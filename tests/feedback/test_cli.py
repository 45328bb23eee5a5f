"""`rlhfkit label ...` end to end: init, add, annotator, export, quality, serve, and --help."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time

import httpx
import pytest

from rlhfkit.feedback.cli import build_parser, main
from rlhfkit.feedback.store import Store

from .helpers import free_port
from .synthetic import make_records

TOKEN = re.compile(r"admin token \(shown once, keep it\): (\S+)")


def test_init_add_annotator_export_quality(tmp_path, capsys):
    db, cands = tmp_path / "labels.db", tmp_path / "c.jsonl"
    assert main(["init", "--db", str(db)]) == 0
    admin = TOKEN.search(capsys.readouterr().out).group(1)
    assert Store(db).authenticate(admin).is_admin
    assert main(["init", "--db", str(db)]) == 0
    assert "admin token" not in capsys.readouterr().out  # only printed while there is no admin

    cands.write_text("".join(json.dumps({"prompt": f"q{i}", "responses": ["a", "bb", "ccc"], "family": "math"}) + "\n"
                             for i in range(4)))
    assert main(["add", "--db", str(db), "--from", str(cands)]) == 0
    assert "added 4 prompts" in capsys.readouterr().out
    assert main(["annotator", "--db", str(db), "--name", "ann"]) == 0
    tok = capsys.readouterr().out.split(": ")[1].strip()
    store = Store(db)
    who = store.authenticate(tok)
    while (a := store.next_assignment(who.id, 1)) is not None:
        store.submit_ranking(who.id, a.id, [a.responses.index(t) for t in ("ccc", "a", "bb")])

    out = tmp_path / "rankings.jsonl"
    assert main(["export", "--db", str(db), "--out", str(out)]) == 0
    recs = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(recs) == 4 and all(r["ranking"] == [2, 0, 1] and "weight" in r for r in recs)
    assert main(["export", "--db", str(db), "--out", str(out), "--no-weights"]) == 0
    assert all("weight" not in json.loads(x) for x in out.read_text().splitlines())


def test_quality_prints_a_table_and_writes_report_and_weights(tmp_path, capsys):
    data, report, weighted = tmp_path / "r.jsonl", tmp_path / "q.json", tmp_path / "w.jsonl"
    records = make_records(["careful"] * 4 + ["adversarial"], n_items=60, seed=1)
    data.write_text("".join(json.dumps(r) + "\n" for r in records))
    assert main(["quality", "--data", str(data), "--out", str(report), "--weighted-out", str(weighted),
                 "--min-pairs", "20"]) == 0
    out = capsys.readouterr().out
    assert "Krippendorff's alpha (interval" in out and "flagged: adversarial-4" in out
    assert json.loads(report.read_text())["suspected_adversarial"] == ["adversarial-4"]
    w = [json.loads(x) for x in weighted.read_text().splitlines()]
    assert all(r["weight"] == 0.0 for r in w if r["annotator"] == "adversarial-4")


def test_errors_are_reported_without_a_traceback(tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "p", "responses": ["a"]}\n')
    assert main(["add", "--db", str(tmp_path / "x.db"), "--from", str(bad)]) == 2
    assert f"{bad}:1:" in capsys.readouterr().err
    rk = tmp_path / "r.jsonl"
    rk.write_text('{"prompt": "p", "responses": ["a", "b"], "ranking": [0, 0]}\n')
    assert main(["quality", "--data", str(rk)]) == 2
    assert f"{rk}:1: ranking: index 0 appears twice" in capsys.readouterr().err


def test_every_subcommand_documents_every_flag(capsys):
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert set(sub.choices) >= {"init", "add", "serve", "annotator", "export", "quality"}
    for name, p in sub.choices.items():
        assert main([name, "--help"]) == 0
        text = capsys.readouterr().out
        for action in p._actions:
            if action.option_strings and action.dest != "help":
                assert action.help, f"{name} {action.option_strings} has no help"
                assert action.option_strings[-1] in text


def test_serve_prints_the_admin_token_and_answers_http(tmp_path):
    port = free_port()
    code = (f"import sys; from rlhfkit.feedback.cli import main; "
            f"sys.exit(main(['serve', '--db', {str(tmp_path / 'l.db')!r}, '--port', '{port}', '--redundancy', '2']))")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        token = TOKEN.search(proc.stdout.readline()).group(1)
        deadline = time.time() + 20
        while True:
            try:
                r = httpx.post(f"http://127.0.0.1:{port}/api/login", json={"token": token})
                break
            except httpx.TransportError:
                assert time.time() < deadline and proc.poll() is None, "server did not come up"
                time.sleep(0.1)
        assert r.json() == {"name": "admin", "is_admin": True}
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_simulate_subcommand(tmp_path, capsys):
    pytest.importorskip("rlhfkit.world.annotators", reason="the world package is not importable yet")
    db = tmp_path / "sim.db"
    assert main(["simulate", "--db", str(db), "--items", "40", "--annotators", "6", "--redundancy", "2"]) == 0
    out = capsys.readouterr().out
    assert "Krippendorff's alpha" in out and '"precision"' in out
    assert len(Store(db).ranking_rows()) == 80
