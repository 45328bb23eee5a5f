"""What every stage shares: seeding, the Accelerator, metrics logging, progress bars, output folders.

Stages run under Accelerate so the same code is one CPU process by default and DDP/FSDP/DeepSpeed when
started with `accelerate launch` or `torchrun`; only the main process writes files or shows progress.
"""

from __future__ import annotations

import json
import math
import os
import random
import sys
import time
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch

from .errors import StageError  # noqa: F401  (re-exported: stages import it from here)


def split_gguf(name_or_path) -> tuple[str, str | None]:
    """(where, gguf_file) for `from_pretrained(where, gguf_file=...)`: a local `dir/x.gguf` gives
    (dir, "x.gguf"); a hub `org/name/x.gguf` (any string ending in .gguf that is not a local path) gives
    ("org/name", "x.gguf"); anything else is a folder or hub id, returned as is with None.

    A .gguf string that looks local (absolute, ./ or ~, fewer than three parts, or its folder exists
    here) but names no file is a StageError, not a hub lookup that would fail far less clearly."""
    text = str(name_or_path)
    if not text.endswith(".gguf"):
        return text, None
    path, parts = Path(text).expanduser(), text.split("/")
    if path.is_file():
        return str(path.parent), path.name
    if path.is_absolute() or text.startswith((".", "~")) or len(parts) < 3 or path.parent.exists():
        raise StageError(f"{text}: no such GGUF file")
    return "/".join(parts[:2]), "/".join(parts[2:])


def from_pretrained(cls, name_or_path, **kwargs):
    """`cls.from_pretrained` for a hub id, a local folder or a GGUF file (see `split_gguf`), with a
    missing folder or unknown hub id reported as a StageError naming it (transformers raises OSError with
    a long hint; offline machines reach the hub branch too)."""
    where, gguf_file = split_gguf(name_or_path)
    if gguf_file is not None:
        _require_gguf(name_or_path)
        kwargs["gguf_file"] = gguf_file
    try:
        return cls.from_pretrained(where, **kwargs)
    except OSError as e:
        what = "file" if gguf_file else "folder"
        exists = Path(where, gguf_file or "").exists()
        here = f"a {what} here" if exists else f"no {what} here and not loadable from the hub"
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise StageError(f"{name_or_path}: cannot load a {cls.__name__.removeprefix('Auto')} ({here}): {first}") from e


def _require_gguf(name_or_path) -> None:
    """transformers reads GGUF files with the `gguf` package, an optional dependency: say how to get it."""
    import importlib.util

    if importlib.util.find_spec("gguf") is None:
        raise StageError(f"{name_or_path}: reading a GGUF file needs the gguf package "
                         "(pip install gguf, or rlhfkit's gguf extra)")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def set_threads() -> None:
    """Use every core for intra-op work (torch picks physical cores; small CPUs benefit from all)."""
    n = os.cpu_count() or 1
    if "OMP_NUM_THREADS" not in os.environ and torch.get_num_threads() < n:
        torch.set_num_threads(n)


_ACCELERATOR = None


def accelerator(mixed_precision: str | None = None):
    """The process-wide Accelerator (one CPU process unless launched distributed); `mixed_precision`
    None keeps the current one ("no" when there is none yet).

    Rebuilt when a stage asks for another precision (`rlhfkit run` chains stages in one process): only
    Accelerate's precision state is reset, the process group it joined is kept."""
    global _ACCELERATOR
    if _ACCELERATOR is not None and mixed_precision not in (None, _ACCELERATOR.mixed_precision):
        from accelerate.state import AcceleratorState

        AcceleratorState._reset_state(reset_partial_state=False)
        _ACCELERATOR = None
    if _ACCELERATOR is None:
        from accelerate import Accelerator

        mixed_precision = mixed_precision or "no"
        _ACCELERATOR = Accelerator(mixed_precision=mixed_precision, cpu=not torch.cuda.is_available())
        if mixed_precision != "no" and not _ACCELERATOR.native_amp:
            say(f"warning: {mixed_precision} autocast is not supported on {_ACCELERATOR.device.type}; "
                "training runs in fp32")
    return _ACCELERATOR


def is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def dist_rank_size() -> tuple[int, int]:
    """(rank, number of processes) of this launch, read from torchrun's / accelerate's environment."""
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


def wait_for_everyone() -> None:
    """Barrier across processes (nothing to wait for in a single process)."""
    if dist_rank_size()[1] > 1:
        accelerator().wait_for_everyone()


def end_distributed() -> None:
    """Leave the process group once a stage is done under torchrun / accelerate launch (a group left to
    interpreter teardown can abort the process after the work is saved)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def main_process_first():
    """Context: the main process runs the block first (e.g. writes shared files), then the others.

    Through `accelerator()`: a bare PartialState() on a CPU machine does not join the process group."""
    return accelerator().main_process_first()


def prepare_out(out: str | Path, cfg: Any | None = None, track: bool = True) -> Path:
    """Create the output folder, fail early if it is unwritable, and write `config.yaml` beside outputs.

    Unless the stage resumes (`cfg.resume`), a previous attempt's `summary.json` (the mark of a finished
    stage, which `rlhfkit run` trusts when the config matches) and `metrics.jsonl` are removed first: a
    killed rerun must not leave an old summary beside the new config, nor append to the old curves.
    With `track`, the previous stage's tracker runs end and this stage's start (`--report_to`)."""
    from . import config as config_mod

    path = Path(out)
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".write_test{dist_rank_size()[0]}"  # one per rank: ranks share the folder
        probe.write_text("ok")
        probe.unlink()
    except OSError as e:
        raise StageError(f"{path}: output folder is not writable ({e.strerror})") from None
    if is_main_process() and not getattr(cfg, "resume", False):
        for name in ("summary.json", "metrics.jsonl"):
            (path / name).unlink(missing_ok=True)
    if cfg is not None and is_main_process():
        config_mod.save(cfg, path / "config.yaml")
    if cfg is not None and track:  # this stage's tracker runs, if --report_to asks (tracking.py)
        from . import tracking

        tracking.start(getattr(cfg, "report_to", "none"), path, config_mod.to_dict(cfg))
    return path


class MetricsLogger:
    """Appends one JSON object per call to `DIR/metrics.jsonl` (rank 0 only); NaN/inf become null."""

    def __init__(self, out_dir: str | Path, name: str = "metrics.jsonl", stage: str | None = None):
        self.path = Path(out_dir) / name
        self.stage = stage
        self.t0 = time.time()

    def log(self, step: int, **values: Any) -> dict:
        row = {"step": step, "time": round(time.time() - self.t0, 3)}
        for k, v in values.items():
            if isinstance(v, torch.Tensor):
                v = v.item()
            if isinstance(v, float) and not math.isfinite(v):
                v = None
            row[k] = v
        if is_main_process():
            with self.path.open("a") as f:
                f.write(json.dumps(row) + "\n")
            from . import tracking

            tracking.log(row, step)  # the same row, under the same names, to --report_to's trackers
        return row


def read_jsonl(path: str | Path) -> list[dict]:
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def write_json(path: str | Path, obj: Any) -> None:
    """Atomic JSON write (temp file + rename), by the main process only (ranks hold the same results)."""
    if not is_main_process():
        return
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=str))
    os.replace(tmp, path)


def progress(iterable: Iterable | None = None, total: int | None = None, desc: str = "", **kw):
    """A tqdm bar on the main process only (and not when stderr is not a terminal in CI logs)."""
    from tqdm.auto import tqdm

    # Bars only on a terminal (or RLHFKIT_PROGRESS=1): redrawn bars make CI logs unreadable.
    wanted = sys.stderr.isatty() or os.environ.get("RLHFKIT_PROGRESS") == "1"
    disable = not is_main_process() or not wanted
    return tqdm(iterable, total=total, desc=desc, disable=disable, dynamic_ncols=True,
                mininterval=1.0, file=sys.stderr, **kw)


def say(msg: str) -> None:
    if is_main_process():
        print(msg, flush=True)


def check_finite(loss: torch.Tensor, step: int, what: str = "loss") -> bool:
    """True if finite; the caller decides to skip (counted) or stop with StageError."""
    return bool(torch.isfinite(loss).all())
