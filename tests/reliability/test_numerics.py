"""Numerics: a NaN loss or gradient injected at step k stops the stage with a StageError naming step k and
leaves the last good checkpoint intact (on_nonfinite=stop), or is skipped, counted and leaves the weights
untouched (on_nonfinite=skip); whitening and group normalisation stay finite for one sample, all-equal
rewards and empty masks.

    .venv/bin/python -m pytest tests/reliability/test_numerics.py -q      (~20 s)
"""

from __future__ import annotations

import json
import math

import pytest
import torch

from rlhfkit import checkpoint, losses
from rlhfkit.cli import main
from rlhfkit.common import StageError
from rlhfkit.config import parse
from rlhfkit.rl.advantages import group_advantages
from rlhfkit.stages import pretrain
from rlhfkit.training import OptimConfig, Trainer


def inject(monkeypatch, at: dict[int, str]) -> None:
    """Make `Trainer.step` number k (1-based) see a NaN loss (`at[k] == "loss"`) or a finite loss whose
    gradient is NaN (`"gradient"`: d/dp sqrt(0 * |p|^2) = inf * 0)."""
    real = Trainer.step

    def step(self, loss_fn, batches):
        kind = at.get(self.step_count + 1)
        if kind is None:
            return real(self, loss_fn, batches)

        def poisoned(batch):
            loss, metrics = loss_fn(batch)
            if kind == "loss":
                return loss * float("nan"), metrics
            p = next(self.model.parameters())
            return loss + torch.sqrt((p * 0).pow(2).sum()), metrics

        return real(self, poisoned, batches)

    monkeypatch.setattr(Trainer, "step", step)


def _argv(data_dir, out, *extra) -> list[str]:
    return ["--preset", "ci", "--data.path", str(data_dir / "text.jsonl"), "--arch.context=32", "--vocab_size=300",
            "--optim.max_steps=12", "--optim.save_every=4", "--optim.eval_every=100", "--optim.batch_size=8",
            "--out", str(out), *extra]


def _finite(state: dict) -> bool:
    return all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())


@pytest.mark.parametrize("kind", ["loss", "gradient"])
def test_stop_names_the_step_and_keeps_the_last_good_checkpoint(kind, data_dir, tmp_path, monkeypatch, capsys):
    from safetensors.torch import load_file

    out = tmp_path / "run"
    inject(monkeypatch, {7: kind})
    rc = main(["pretrain", *_argv(data_dir, out)])  # the CLI path: StageError -> exit 2, one line
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err
    assert f"non-finite {kind} at step 7" in err and str(out / "ckpt") in err, err
    state = torch.load(out / "ckpt" / "trainer_state.pt", weights_only=False)
    assert checkpoint.is_complete(out / "ckpt") and state["step"] == 4  # the save at step 8 never happened
    assert _finite(load_file(str(out / "ckpt" / "model" / "model.safetensors")))
    assert not (out / "model").exists() and not (out / "summary.json").exists()
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(1, 7))

    monkeypatch.undo()  # the last good checkpoint is usable: resume finishes the run
    cfg = parse(pretrain.Config, _argv(data_dir, out, "--resume"), pretrain.PRESETS)
    pretrain.run(cfg)
    assert json.loads((out / "summary.json").read_text())["steps"] == 12
    assert "resumed from" in capsys.readouterr().out


def test_skip_counts_the_bad_steps_and_finishes(data_dir, tmp_path, monkeypatch):
    out = tmp_path / "run"
    inject(monkeypatch, {5: "loss", 9: "gradient"})
    cfg = parse(pretrain.Config, _argv(data_dir, out, "--optim.on_nonfinite=skip"), pretrain.PRESETS)
    pretrain.run(cfg)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == 12 and summary["skipped_batches"] == 2
    assert math.isfinite(summary["val_loss"])
    rows = {r["step"]: r for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines())}
    assert sorted(rows) == list(range(1, 13))
    assert rows[5].get("skipped") == 1 and rows[9].get("skipped") == 1 and "skipped" not in rows[6]
    assert torch.load(out / "ckpt" / "trainer_state.pt", weights_only=False)["extra"]["skipped"] == 2


@pytest.mark.parametrize("bad_micro_batch", [0, 1])
def test_a_skipped_step_changes_nothing(lm, tmp_path, bad_micro_batch):
    """With accumulation, a NaN in any micro-batch drops the whole step: no weight, moment or grad changes."""
    trainer = Trainer(lm, OptimConfig(on_nonfinite="skip", grad_accum=2, warmup_steps=1), tmp_path)
    ids = torch.randint(0, lm.config.vocab_size, (2, 2, 12))

    def loss_fn(batch):
        out = lm(input_ids=batch, labels=batch).loss
        return out, {}

    trainer.step(loss_fn, list(ids))  # one good step so AdamW has moments
    before = {k: v.clone() for k, v in lm.state_dict().items()}
    moments = {k: v.clone() for k, v in trainer.optimizer.state_dict()["state"][0].items()}
    calls = []

    def half_bad(batch):
        loss, m = loss_fn(batch)
        calls.append(1)
        return (loss * float("nan") if len(calls) - 1 == bad_micro_batch else loss), m

    assert trainer.step(half_bad, list(ids)) == {"skipped": 1}
    assert trainer.skipped == 1 and trainer.step_count == 2
    assert all(torch.equal(before[k], v) for k, v in lm.state_dict().items())
    assert all(torch.equal(moments[k], v) for k, v in trainer.optimizer.state_dict()["state"][0].items())
    assert all(p.grad is None for p in lm.parameters())


def test_stop_raises_stage_error_in_process(lm, tmp_path):
    trainer = Trainer(lm, OptimConfig(), tmp_path)
    with pytest.raises(StageError, match="non-finite loss at step 1"):
        trainer.step(lambda b: (torch.tensor(float("inf"), requires_grad=True), {}), [None])


# ---------------------------------------------------------------------------------------------- whitening


@pytest.mark.parametrize("x, mask", [
    ([[5.0]], [[1]]),                                              # one sample
    ([[7.0, 7.0, 7.0], [7.0, 7.0, 7.0]], [[1, 1, 1], [1, 1, 0]]),  # all equal
    ([[1.0, 2.0]], [[0, 0]]),                                      # nothing selected
])
def test_masked_whiten_degenerate_batches_are_finite(x, mask):
    x, mask = torch.tensor(x), torch.tensor(mask, dtype=torch.float32)
    centred = losses.masked_whiten(x, mask)
    assert torch.equal(centred, torch.zeros_like(centred))  # nothing to scale: centred values, 0 off the mask
    kept = losses.masked_whiten(x, mask, shift_mean=False)  # rewards: scaled, mean kept
    assert torch.isfinite(kept).all()
    assert torch.allclose(kept, x * mask if mask.sum() else torch.zeros_like(x))


def test_masked_whiten_scale_is_the_sample_std():
    x = torch.tensor([[1.0, 2.0, 3.0, 100.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0]])
    out = losses.masked_whiten(x, mask)
    assert torch.allclose(out, torch.tensor([[-1.0, 0.0, 1.0, 0.0]]))  # mean 2, unbiased std 1


@pytest.mark.parametrize("rewards, g, kind", [
    ([3.0, 4.0, 5.0], 1, "grpo"),           # one sample per prompt
    ([2.0, 2.0, 2.0, -1.0, -1.0, -1.0], 3, "grpo"),  # all equal in each group
    ([2.0, 2.0, 2.0, 2.0], 2, "rloo"),
    ([2.0, 2.0, 2.0, 2.0], 4, "grpo"),
])
def test_group_advantages_of_degenerate_groups_are_zero(rewards, g, kind):
    adv = group_advantages(torch.tensor(rewards), g, kind)
    assert torch.isfinite(adv).all() and torch.equal(adv, torch.zeros_like(adv))
    assert torch.isfinite(group_advantages(torch.tensor(rewards), g, kind, scale_std=True)).all()


def test_reward_normalisation_with_one_or_identical_references(lm_dir, tokenizer):
    """The reward stage's mean-0/std-1 shift: one reference response, or all scoring the same, keeps std 1."""
    from rlhfkit.model.causal_lm import load_causal_lm
    from rlhfkit.model.reward_scorer import encode
    from rlhfkit.model.scalar import ScalarModel
    from rlhfkit.stages.reward import normalise

    model = ScalarModel.from_causal_lm(load_causal_lm(lm_dir)).eval()
    one = [encode(tokenizer, "What is 2 plus 2?", "4", 64)]
    for refs in (one, one * 5):
        stats = normalise(model, refs, tokenizer.pad_token_id)
        assert stats["std"] == 1.0 and math.isfinite(stats["mean"])
        ids = torch.tensor([refs[0]])
        score = model.score(ids, torch.ones_like(ids))
        assert torch.isfinite(score).all() and abs(float(score.detach())) < 1e-4


def test_ranking_loss_with_all_zero_weights_is_finite():
    scores, pairs = torch.tensor([1.0, 2.0, 3.0]), torch.tensor([[0, 1], [1, 2]])
    assert torch.isfinite(losses.ranking_loss(scores, pairs, torch.tensor([0, 0]), torch.zeros(2)))
