"""Checkpoints: atomic folder swaps survive a failed write, recovery picks a complete copy, trainer state
(optimizer, scheduler, RNG) round-trips exactly, and a resumed batch stream continues where it stopped.

Run: .venv/bin/python -m pytest tests/test_checkpoint.py -q
"""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch

from rlhfkit import checkpoint
from rlhfkit.training import BatchStream, OptimConfig, Trainer, make_optimizer


def _write(text: str, fail: bool = False):
    def write(tmp):
        (tmp / "a.txt").write_text(text)
        if fail:
            raise RuntimeError("disk full")
        (tmp / "b.txt").write_text(text)
    return write


def test_atomic_dir_keeps_old_on_failure(tmp_path):
    final = tmp_path / "ckpt"
    checkpoint.atomic_dir(final, _write("v1"))
    assert checkpoint.is_complete(final) and (final / "b.txt").read_text() == "v1"
    with pytest.raises(RuntimeError, match="disk full"):
        checkpoint.atomic_dir(final, _write("v2", fail=True))
    assert checkpoint.is_complete(final)
    assert (final / "a.txt").read_text() == "v1" and (final / "b.txt").read_text() == "v1"
    assert checkpoint.recover(final) == final
    checkpoint.atomic_dir(final, _write("v3"))  # a leftover .tmp does not block the next save
    assert (final / "a.txt").read_text() == "v3"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]


def test_recover_prefers_complete(tmp_path):
    final = tmp_path / "ckpt"
    assert checkpoint.recover(final) is None
    old = tmp_path / "ckpt.old"
    checkpoint.atomic_dir(old, _write("old"))  # a complete previous copy (a kill between the two renames)
    final.mkdir()
    (final / "a.txt").write_text("half")  # an incomplete folder without the marker
    assert checkpoint.recover(final) == old
    (old / checkpoint.MARKER).unlink()
    assert checkpoint.recover(final) is None
    (final / checkpoint.MARKER).write_text("ok")
    assert checkpoint.recover(final) == final


def _train(model, opt, sched, steps: int, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        ids = torch.randint(0, model.config.vocab_size, (2, 12), generator=g)
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        opt.step()
        sched.step()
        opt.zero_grad()


def _assert_equal_state(a, b, path: str = "") -> None:
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and torch.equal(a, b), path
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for k in a:
            _assert_equal_state(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_equal_state(x, y, f"{path}[{i}]")
    else:
        assert a == b, path


def test_save_load_state_exact(lm_dir, tokenizer, tmp_path):
    from rlhfkit.model import load_causal_lm

    cfg = OptimConfig(lr=1e-2, warmup_steps=2, max_steps=10)
    model = load_causal_lm(lm_dir)
    opt, sched = make_optimizer(model, cfg)
    _train(model, opt, sched, 3, seed=0)
    random.seed(5)
    np.random.seed(5)
    torch.manual_seed(5)
    checkpoint.save_state(tmp_path / "ckpt", model, tokenizer, opt, sched, step=3, data_state={"epoch": 1},
                          extra={"skipped": 2})
    expect_rng = (random.random(), np.random.rand(), torch.rand(3))

    fresh = load_causal_lm(lm_dir)
    opt2, sched2 = make_optimizer(fresh, cfg)
    state = checkpoint.load_state(tmp_path / "ckpt", fresh, opt2, sched2)
    assert (state["step"], state["data"], state["extra"]) == (3, {"epoch": 1}, {"skipped": 2})
    assert (random.random(), np.random.rand()) == expect_rng[:2]
    assert torch.equal(torch.rand(3), expect_rng[2])
    _assert_equal_state(opt2.state_dict(), opt.state_dict())
    assert len(opt2.state_dict()["state"]) == len(list(model.parameters()))
    assert sched2.state_dict() == sched.state_dict() and sched2.get_last_lr() == sched.get_last_lr()
    for (n, p), (_, q) in zip(model.named_parameters(), fresh.named_parameters()):
        assert torch.equal(p, q), n
    # Continuing both gives identical weights: nothing the next step depends on was lost.
    _train(model, opt, sched, 2, seed=1)
    _train(fresh, opt2, sched2, 2, seed=1)
    for (n, p), (_, q) in zip(model.named_parameters(), fresh.named_parameters()):
        assert torch.equal(p, q), n


def test_load_state_missing_checkpoint(lm, tmp_path):
    opt, sched = make_optimizer(lm, OptimConfig())
    with pytest.raises(FileNotFoundError, match="no complete checkpoint"):
        checkpoint.load_state(tmp_path / "ckpt", lm, opt, sched)


def test_batch_stream_order():
    items = list(range(10))
    a, b = BatchStream(items, 3, seed=1), BatchStream(items, 3, seed=1)
    seq_a = [a.next() for _ in range(8)]
    assert seq_a == [b.next() for _ in range(8)]
    # Each epoch (4 batches: 3+3+3+1) is a permutation of the items; epochs are shuffled differently.
    epoch0, epoch1 = sum(seq_a[:4], []), sum(seq_a[4:8], [])
    assert sorted(epoch0) == items == sorted(epoch1) and epoch0 != epoch1
    assert [len(x) for x in seq_a[:4]] == [3, 3, 3, 1]
    other = BatchStream(items, 3, seed=2)
    assert [other.next() for _ in range(4)] != seq_a[:4]


def test_trainer_resume_continues_stream(lm_dir, tokenizer, tmp_path):
    """Save after 6 batches (mid second epoch), resume in a new Trainer: the next batches are exactly those
    an uninterrupted stream yields."""
    from rlhfkit.model import load_causal_lm

    items = list(range(10))
    reference = BatchStream(items, 3, seed=7)
    expected = [reference.next() for _ in range(12)]

    cfg = OptimConfig(max_steps=20, warmup_steps=1)
    model = load_causal_lm(lm_dir)
    trainer = Trainer(model, cfg, tmp_path, tokenizer, stage="test")
    stream = BatchStream(items, 3, seed=7)
    seen = [stream.next() for _ in range(6)]
    trainer.step_count = 6
    trainer.skipped = 1
    trainer.save_state(stream)
    seen.append(stream.next())  # progress after the checkpoint is lost by the kill

    new = Trainer(load_causal_lm(lm_dir), cfg, tmp_path, tokenizer, stage="test")
    new_stream = BatchStream(items, 3, seed=7)
    assert new.resume(new_stream)
    assert (new.step_count, new.skipped) == (6, 1)
    resumed = seen[:6] + [new_stream.next() for _ in range(6)]
    assert resumed == expected
    assert not Trainer(load_causal_lm(lm_dir), cfg, tmp_path / "elsewhere", tokenizer).resume(new_stream)


def test_load_state_reads_sharded_weights(lm_dir, tokenizer, tmp_path):
    """Big models are saved in shards (model-0000k-of-0000n.safetensors); resume must read them all."""
    from rlhfkit.model import load_causal_lm

    model = load_causal_lm(lm_dir)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.5)
    opt, sched = make_optimizer(model, OptimConfig())
    ckpt = checkpoint.save_state(tmp_path / "ckpt", model, tokenizer, opt, sched, step=1)
    (ckpt / "model" / "model.safetensors").unlink()
    model.save_pretrained(ckpt / "model", max_shard_size="100KB")
    assert len(list((ckpt / "model").glob("model-*.safetensors"))) > 1
    fresh = load_causal_lm(lm_dir)
    checkpoint.load_state(ckpt, fresh, *make_optimizer(fresh, OptimConfig()))
    for (n, p), (_, q) in zip(model.named_parameters(), fresh.named_parameters()):
        assert torch.equal(p, q), n


def test_resume_drops_metrics_logged_after_the_checkpoint(lm_dir, tokenizer, tmp_path):
    from rlhfkit.model import load_causal_lm

    trainer = Trainer(load_causal_lm(lm_dir), OptimConfig(), tmp_path, tokenizer)
    (tmp_path / "metrics.jsonl").write_text("".join(f'{{"step": {s}}}\n' for s in [1, 2, 3]))
    trainer.step_count = 3
    trainer.save_state()
    with (tmp_path / "metrics.jsonl").open("a") as f:
        f.write('{"step": 4}\n{"step": 5}\n{"st')  # the killed run got two steps further, then died mid-row
    assert Trainer(load_causal_lm(lm_dir), OptimConfig(), tmp_path, tokenizer).resume()
    steps = [json.loads(line)["step"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3]
