"""--report_to: a stage's metrics.jsonl rows reach the tracker under the same names (read back with
TensorBoard's own event reader), the resolved config is logged as hyperparameters, and a tracker that is not
installed is a clear error naming the extra."""

from __future__ import annotations

import json

import pytest

from rlhfkit import stages, tracking
from rlhfkit.common import StageError

pytest.importorskip("tensorboard")


def _scalars(folder) -> dict[str, dict[int, float]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder))
    acc.Reload()
    return {tag: {e.step: e.value for e in acc.Scalars(tag)} for tag in acc.Tags()["scalars"]}


def test_sft_with_tensorboard_logs_what_metrics_jsonl_holds(lm_dir, tmp_path):
    data = tmp_path / "sft.jsonl"
    data.write_text("".join(json.dumps({"messages": [{"role": "user", "content": f"What is {i} plus 1?"},
                                                     {"role": "assistant", "content": f"It is {i + 1}."}]}) + "\n"
                            for i in range(24)))
    out = tmp_path / "sft"
    cfg = stages.configure("sft", "ci", {"out": out, "model": lm_dir, "data.path": data, "optim.max_steps": 4,
                                         "optim.eval_every": 2, "report_to": "tensorboard"})
    stages.module("sft").run(cfg)
    tracking.finish()  # flush, as the CLI does at exit
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    logged = _scalars(out / "tensorboard")
    assert len(rows) == 4
    for row in rows:
        for key, value in row.items():
            if key == "step" or not isinstance(value, (int, float)) or isinstance(value, bool):
                continue
            assert logged[key][row["step"]] == pytest.approx(value, rel=1e-6), key  # float32 in the event file
    assert {"loss", "lr", "grad_norm", "val_loss"} <= set(logged)
    hparams = list((out / "tensorboard").glob("*/hparams.yml"))
    assert hparams and "optim.lr" in hparams[0].read_text()


def test_report_to_names_and_errors(monkeypatch):
    assert tracking.names("none") == [] and tracking.names("tensorboard") == ["tensorboard"]
    assert "tensorboard" in tracking.names("all")
    with pytest.raises(StageError, match="unknown tracker"):
        tracking.names("neptune")
    monkeypatch.setitem(tracking.TRACKERS, "wandb", "no_such_module_xyz")
    with pytest.raises(StageError, match=r"pip install 'rlhfkit\[wandb\]'"):
        tracking.names("wandb")
