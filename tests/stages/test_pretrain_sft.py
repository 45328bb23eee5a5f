"""Stages 1-2 end to end on the built-in world (or synthetic text when `rlhfkit.world` is missing):
pretraining beats the unigram baseline, a killed run resumes onto exactly the uninterrupted trajectory,
and SFT learns only from assistant tokens, improves held-out loss and keeps its best weights.

Run: .venv/bin/python -m pytest tests/stages/test_pretrain_sft.py -q
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from rlhfkit.config import parse
from rlhfkit.losses import lm_loss
from rlhfkit.stages import pretrain, sft

RLHFKIT = Path(sys.executable).parent / "rlhfkit"
# Small enough for a busy 2-core CI box: 64-token blocks, 100 steps (~100k tokens, under 1.5 epochs).
PRETRAIN_ARGS = ["--preset", "ci", "--arch.context=64", "--optim.max_steps=100", "--optim.batch_size=16",
                 "--optim.eval_every=50", "--optim.save_every=1000"]
# The kill/resume run: smaller still; warmup (20 steps) outlasts the kill so the killed run may use a
# different max_steps (see test_pretrain_kill_and_resume_matches_uninterrupted).
RESUME_ARGS = ["--preset", "ci", "--arch.context=32", "--optim.batch_size=8", "--optim.warmup_steps=20",
               "--optim.eval_every=20", "--optim.save_every=5"]


def _has_world() -> bool:
    try:
        from rlhfkit.world import export  # noqa: F401
    except ImportError:
        return False
    return True


def _synthetic(root: Path) -> tuple[str, str]:
    """Templated stories and arithmetic demonstrations, when the world is not importable."""
    rng = random.Random(0)
    names, things = ["Ada", "Bo", "Cy", "Dee", "Eli", "Fay"], ["apples", "boxes", "cats", "eggs", "maps"]
    texts, convs = [], []
    for _ in range(800):
        a, b, t = rng.choice(names), rng.choice(names), rng.choice(things)
        x, y = rng.randint(0, 49), rng.randint(1, 9)
        texts.append(f"{a} had {x} {t}. {b} gave {a} {y} more, so {a} had {x + y} {t}. Then {a} went home.")
    for _ in range(300):
        x, y = rng.randint(0, 49), rng.randint(1, 9)
        convs.append({"messages": [{"role": "user", "content": f"What is {x} plus {y}?"},
                                   {"role": "assistant", "content": f"{x} plus {y} is {x + y}."}]})
    (root / "text.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    (root / "sft.jsonl").write_text("".join(json.dumps(c) + "\n" for c in convs))
    return str(root / "text.jsonl"), str(root / "sft.jsonl")


@pytest.fixture(scope="module")
def data_paths(tmp_path_factory) -> tuple[str, str]:
    """(pretrain data.path, sft data.path): 'world' (ci size) when available."""
    if _has_world():
        return "world", "world"
    return _synthetic(tmp_path_factory.mktemp("synthetic"))


def _pretrain_argv(data_paths, out: Path) -> list[str]:
    return [*PRETRAIN_ARGS, "--data.path", data_paths[0], "--out", str(out)]


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory, data_paths) -> tuple[pretrain.Config, Path]:
    """An uninterrupted in-process pretraining run: (config, OUT)."""
    out = tmp_path_factory.mktemp("pretrain")
    cfg = parse(pretrain.Config, _pretrain_argv(data_paths, out), pretrain.PRESETS)
    assert pretrain.run(cfg) == out / "model"
    return cfg, out


@pytest.mark.slow
def test_pretrain_learns_and_writes_outputs(pretrained):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    cfg, out = pretrained
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == 100
    # Well below the unigram model (which knows token frequencies but no context).
    assert summary["val_loss"] < summary["unigram_loss"] - 1.0, summary
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(1, 101))
    val = [r["val_loss"] for r in rows if "val_loss" in r]
    assert len(val) == 2 and val[-1] == pytest.approx(summary["val_loss"])
    model = AutoModelForCausalLM.from_pretrained(out / "model")
    tok = AutoTokenizer.from_pretrained(out / "model")
    assert model.config.max_position_embeddings == 64
    assert model.config.vocab_size == len(tok) <= cfg.vocab_size  # BPE stops early on a small corpus
    assert model.generation_config.pad_token_id == tok.pad_token_id
    again = parse(pretrain.Config, ["--config", str(out / "config.yaml")])
    assert again == cfg


def _final_weights(out: Path) -> dict[str, torch.Tensor]:
    return load_file(str(out / "model" / "model.safetensors"))


def _spawn(argv: list[str], log: Path) -> subprocess.Popen:
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false"}
    return subprocess.Popen([str(RLHFKIT), "pretrain", *argv], stdout=log.open("w"), stderr=subprocess.STDOUT,
                            env=env, start_new_session=True)


@pytest.mark.slow
def test_pretrain_kill_and_resume_matches_uninterrupted(pretrained, data_paths, tmp_path, capsys):
    """SIGKILL a run after its first checkpoint, rerun it with --resume, and compare final weights with an
    uninterrupted run of the same config and seed. Equal weights need the same batches in the same order
    after the checkpoint (plus optimizer, schedule and RNG state): replaying the stream from its start,
    or skipping ahead, moves the weights far beyond the tolerance.

    The killed run is given a huge max_steps so it can never finish before the kill, however fast the
    machine: during warmup the learning rate does not depend on max_steps, so its checkpoint (taken in
    warmup, asserted below) is the one the real config would have written."""
    n = 40
    ref_out, out = tmp_path / "reference", tmp_path / "run"
    # Reuse the fixture run's exported text and trained tokenizer: the three runs skip both steps.
    pre_out = pretrained[1]
    text = pre_out / "world" / "pretrain.jsonl" if data_paths[0] == "world" else data_paths[0]
    base = [*RESUME_ARGS, "--data.path", str(text), "--tokenizer", str(pre_out / "tokenizer")]
    ref_cfg = parse(pretrain.Config, [*base, f"--optim.max_steps={n}", "--out", str(ref_out)], pretrain.PRESETS)
    pretrain.run(ref_cfg)

    proc = _spawn([*base, "--optim.max_steps=1000000", "--out", str(out)], tmp_path / "first.log")
    deadline = time.time() + 300
    try:
        while not (out / "ckpt" / "COMPLETE").exists():
            assert proc.poll() is None, (tmp_path / "first.log").read_text()[-3000:]
            assert time.time() < deadline, "no checkpoint within 300 s"
            time.sleep(0.02)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    killed_at = torch.load(out / "ckpt" / "trainer_state.pt", weights_only=False)["step"]
    assert 5 <= killed_at < ref_cfg.optim.warmup_steps  # the next step's lr is still a warmup lr
    at_kill = load_file(str(out / "ckpt" / "model" / "model.safetensors"))

    # The resumed run can be in-process (only the kill needs a separate process).
    cfg = parse(pretrain.Config, [*base, f"--optim.max_steps={n}", "--out", str(out), "--resume"],
                pretrain.PRESETS)
    capsys.readouterr()
    pretrain.run(cfg)
    assert f"at step {killed_at}" in capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == n
    steps = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(1, n + 1))  # the killed run's rows after the checkpoint were dropped
    ref, got = _final_weights(ref_out), _final_weights(out)
    assert ref.keys() == got.keys()
    for k in ref:
        torch.testing.assert_close(got[k], ref[k], rtol=1e-4, atol=1e-5, msg=lambda m, k=k: f"{k}: {m}")
    ref_summary = json.loads((ref_out / "summary.json").read_text())
    assert summary["val_loss"] == pytest.approx(ref_summary["val_loss"], abs=1e-4)
    # The steps after the checkpoint moved the weights far more than the tolerance: equality means something.
    moved = max((ref[k] - at_kill[k]).abs().max().item() for k in ref)
    assert moved > 1e-2


# ---------------------------------------------------------------------------------------------- SFT


def test_sft_loss_only_on_assistant_tokens(lm, tokenizer):
    from rlhfkit.data.chat import render_chat
    from rlhfkit.lm import lm_step

    convs = [[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 3 plus 4?"},
              {"role": "assistant", "content": "7."}, {"role": "user", "content": "And 5 plus 5?"},
              {"role": "assistant", "content": "It is 10."}],
             [{"role": "user", "content": "Where are the owls?"},
              {"role": "assistant", "content": "At the farm."}]]
    batch = sft.collate([render_chat(tokenizer, c) for c in convs], tokenizer.pad_token_id)
    ids, mask, attn = batch
    assert mask.sum() == sum(sum(render_chat(tokenizer, c)[1]) for c in convs)
    assert torch.all(mask[attn == 0] == 0)
    with torch.no_grad():
        loss, metrics = lm_step(lm, ids, mask, attn)
        # Reference: a loop over target positions of the unpadded conversations.
        nll = []
        for c in convs:
            x, m = render_chat(tokenizer, c)
            logp = torch.log_softmax(lm(torch.tensor([x])).logits[0].float(), -1)
            nll += [-logp[t - 1, x[t]] for t in range(1, len(x)) if m[t]]
        torch.testing.assert_close(loss, torch.stack(nll).mean(), rtol=1e-4, atol=1e-5)
        assert metrics["tokens"] == len(nll)
        logits = lm(input_ids=ids, attention_mask=attn).logits
        base = lm_loss(logits, ids, mask)
        cells = [(b, t) for b in range(ids.shape[0]) for t in range(1, ids.shape[1])]
        user_pos = [(b, t) for b, t in cells if attn[b, t] and not mask[b, t]]
        helper_pos = [(b, t) for b, t in cells if mask[b, t]]
        changed = ids.clone()
        for b, t in user_pos:
            changed[b, t] = (changed[b, t] + 7) % len(tokenizer)
        assert lm_loss(logits, changed, mask) == base  # prompt labels never count
        changed = ids.clone()
        b, t = helper_pos[0]
        changed[b, t] = (changed[b, t] + 7) % len(tokenizer)
        assert lm_loss(logits, changed, mask) != base  # assistant labels do


@pytest.mark.slow
def test_sft_improves_held_out_loss(pretrained, data_paths, tmp_path):
    from rlhfkit.data.tokenizer import load_tokenizer
    from rlhfkit.model import load_causal_lm
    from rlhfkit.lm import evaluate_lm

    _, pre_out = pretrained
    cfg = parse(sft.Config, ["--preset", "ci", "--model", str(pre_out / "model"), "--data.path", data_paths[1],
                             "--out", str(tmp_path / "sft"), "--optim.max_steps=40", "--optim.eval_every=10"],
                sft.PRESETS)
    out = sft.run(cfg)
    summary = json.loads((tmp_path / "sft" / "summary.json").read_text())
    assert summary["steps"] <= 40
    assert summary["best_val_loss"] < summary["first_val_loss"] - 0.7, summary  # nats per assistant token
    # The saved model is the best one: recompute its loss on the same held-out split.
    tok, model = load_tokenizer(out), load_causal_lm(out)
    examples = sft.load_examples(cfg, tok, 64, tmp_path / "sft")
    random.Random(cfg.seed).shuffle(examples)
    n_val = max(1, int(len(examples) * cfg.data.val_fraction))
    val = [sft.collate(examples[:n_val], tok.pad_token_id)]
    assert evaluate_lm(model, val) == pytest.approx(summary["best_val_loss"], rel=1e-4)
    assert parse(sft.Config, ["--config", str(tmp_path / "sft" / "config.yaml")]) == cfg


class _Scripted:
    """Stands in for `sft.evaluate_lm`: returns scripted held-out losses and snapshots the weights it saw;
    a value of None raises, like a kill during training."""

    def __init__(self, losses):
        self.losses, self.snapshots = iter(losses), []

    def __call__(self, model, batches):
        self.snapshots.append({k: v.clone() for k, v in model.state_dict().items()})
        value = next(self.losses)
        if value is None:
            raise KeyboardInterrupt
        return value


def _tiny_sft(lm_dir, tmp_path, *flags) -> sft.Config:
    rows = [{"messages": [{"role": "user", "content": f"What is {i} plus 1?"},
                          {"role": "assistant", "content": f"It is {i + 1}."}]} for i in range(12)]
    (tmp_path / "sft.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return parse(sft.Config, ["--model", str(lm_dir), "--data.path", str(tmp_path / "sft.jsonl"),
                              "--out", str(tmp_path / "out"), "--optim.max_steps=50", "--optim.eval_every=2",
                              "--optim.batch_size=4", "--optim.lr=1e-2", "--optim.warmup_steps=1", *flags])


def test_sft_early_stopping_keeps_best_weights(lm_dir, tmp_path, monkeypatch):
    """Held-out losses are scripted (first 5.0, then 4, 3, 3.5, 3.2, ...): with patience 2 training stops
    two evaluations after the best one, and OUT/model holds the weights evaluated as 3.0."""
    from rlhfkit.model import load_causal_lm

    fake_eval = _Scripted([5.0, 4.0, 3.0, 3.5, 3.2, 2.0, 1.0])
    snapshots = fake_eval.snapshots
    monkeypatch.setattr(sft, "evaluate_lm", fake_eval)
    out = sft.run(_tiny_sft(lm_dir, tmp_path, "--patience=2"))
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert (summary["best_step"], summary["best_val_loss"], summary["steps"]) == (4, 3.0, 8)
    assert len(snapshots) == 5
    saved = load_causal_lm(out).state_dict()
    for k, v in snapshots[2].items():
        torch.testing.assert_close(saved[k], v, rtol=0, atol=0)
    assert any(not torch.equal(saved[k], v) for k, v in snapshots[4].items())  # the last weights differ


def test_sft_resume_keeps_best_from_before_the_kill(lm_dir, tmp_path, monkeypatch):
    """Best weights at step 2 (loss 3.0), a checkpoint at step 4, a kill at step 6; after --resume the
    losses never beat 3.0, so OUT/model must still be the step-2 weights (not the resume point's)."""
    from rlhfkit.model import load_causal_lm

    first = _Scripted([5.0, 3.0, 3.5, None])
    monkeypatch.setattr(sft, "evaluate_lm", first)
    cfg = _tiny_sft(lm_dir, tmp_path, "--patience=3", "--optim.save_every=4")
    with pytest.raises(KeyboardInterrupt):
        sft.run(cfg)
    second = _Scripted([3.6, 3.7, 3.8, 3.9])  # resumed at step 4: step 6, 8 -> patience (3) runs out
    monkeypatch.setattr(sft, "evaluate_lm", second)
    cfg.resume = True
    out = sft.run(cfg)
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert (summary["first_val_loss"], summary["best_val_loss"], summary["best_step"]) == (5.0, 3.0, 2)
    assert summary["steps"] == 8
    saved = load_causal_lm(out).state_dict()
    for k, v in first.snapshots[1].items():
        torch.testing.assert_close(saved[k], v, rtol=0, atol=0)
