"""Experiment trackers (`--report_to`): every row a stage writes to metrics.jsonl also goes, under the same
names, to TensorBoard, Weights & Biases, MLflow or Trackio, through Accelerate's tracker classes
(`accelerate.tracking`), as `Accelerator(log_with=...)` would send it.

One stage = one tracker run, named after its output folder and grouped by the folder above it, so that
`rlhfkit run --report_to tensorboard` followed by `tensorboard --logdir runs/default` shows every stage of
the run; the stage's resolved config is logged as the run's hyperparameters. Trackers are optional
extras (`pip install rlhfkit[tensorboard]`, `[wandb]`, `[mlflow]`, `[trackio]`); wandb honours
WANDB_MODE=offline.
"""

from __future__ import annotations

import atexit
import importlib.util
from pathlib import Path

from .common import StageError, is_main_process
from .config import opt

# --report_to name -> the module it needs (and the extra that installs it)
TRACKERS = {"tensorboard": "tensorboard", "wandb": "wandb", "mlflow": "mlflow", "trackio": "trackio"}
_ACTIVE: list = []


def report_to_option():
    """The `report_to` field every training stage's Config (and `rlhfkit run`'s) has."""
    return opt("none", "send metrics.jsonl's rows to experiment trackers too: none, all (every installed one), or "
                       "a comma list of tensorboard, wandb, mlflow, trackio (pip install 'rlhfkit[NAME]')")


def names(report_to: str) -> list[str]:
    """'none' -> [], 'all' -> every installed tracker, 'a,b' -> [a, b] (each must be installed)."""
    wanted = [n.strip() for n in report_to.split(",") if n.strip() and n.strip() != "none"]
    if wanted == ["all"]:
        return [n for n, mod in TRACKERS.items() if importlib.util.find_spec(mod)]
    for n in wanted:
        if n not in TRACKERS:
            raise StageError(f"--report_to {n}: unknown tracker; choose from none, all, {', '.join(TRACKERS)}")
        if importlib.util.find_spec(TRACKERS[n]) is None:
            raise StageError(f"--report_to {n}: the {TRACKERS[n]} package is not installed; "
                             f"pip install 'rlhfkit[{n}]'")
    return wanted


def start(report_to: str, out: Path, config: dict) -> None:
    """Open one run per tracker for the stage writing to `out` (ends the previous stage's runs first)."""
    finish()
    if not is_main_process():
        return
    out = Path(out).resolve()
    run, group = f"{out.parent.name}/{out.name}", out.parent.name
    for name in names(report_to):
        tracker = _make(name, out, run, group)
        tracker.start()
        tracker.store_init_configuration(_flat(config))
        _ACTIVE.append(tracker)


def _make(name: str, out: Path, run: str, group: str):
    from accelerate import tracking

    if name == "tensorboard":  # events in OUT/tensorboard
        return tracking.TensorBoardTracker("tensorboard", str(out))
    if name == "wandb":  # accelerate passes run_name as wandb's project
        return tracking.WandBTracker("rlhfkit", name=run, group=group, dir=str(out))
    if name == "mlflow":
        return tracking.MLflowTracker(experiment_name="rlhfkit", logging_dir=str(out / "mlruns"), run_name=run,
                                      tags={"group": group})
    return tracking.TrackioTracker("rlhfkit", name=run, group=group)


def log(row: dict, step: int) -> None:
    """The numbers of a metrics.jsonl row (None, text and the step itself left out) to every open tracker."""
    if not _ACTIVE:
        return
    values = {k: float(v) for k, v in row.items()
              if k != "step" and isinstance(v, (int, float)) and not isinstance(v, bool)}
    for tracker in _ACTIVE:
        tracker.log(values, step=step)


def finish() -> None:
    while _ACTIVE:
        _ACTIVE.pop().finish()


atexit.register(finish)


def _flat(config: dict, prefix: str = "") -> dict:
    """Nested config -> {"group.field": value} with values a tracker accepts (bool, int, float, str)."""
    out = {}
    for k, v in config.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flat(v, key + "."))
        else:
            out[key] = v if isinstance(v, (bool, int, float, str)) else str(v)
    return out
