"""Run `rlhfkit` with a SIGKILL injected at one exact point of a checkpoint write (used by
test_crash_resume.py: a kill from outside cannot hit a window of a few microseconds on purpose).

    python tests/reliability/_inject.py POINT N TARGET -- pretrain --preset ci ...

POINT is where, inside `rlhfkit.checkpoint.atomic_dir`, the process kills itself:
    mid-write        after the model files, before trainer_state.pt (the .tmp folder is half-written)
    before-swap      .tmp complete and marked, nothing renamed yet
    between-renames  the old copy moved to .old, the new one not yet renamed into place (needs an old copy)
    before-cleanup   the new copy in place, .old not yet removed
N is which save of folder TARGET (`ckpt` or `model`) in this process is hit (1-based).
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
from pathlib import Path

POINTS = ("mid-write", "before-swap", "between-renames", "before-cleanup")


def _die() -> None:
    sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def install(point: str, n: int, target: str) -> None:
    from rlhfkit import checkpoint

    if point not in POINTS:
        raise SystemExit(f"unknown kill point {point!r}; expected one of {POINTS}")
    real_atomic, real_replace, real_rmtree, real_save = (checkpoint.atomic_dir, os.replace, shutil.rmtree,
                                                         checkpoint.torch.save)
    saves = {"n": 0}

    def atomic_dir(final, write):
        final = Path(final)
        if final.name != target:
            return real_atomic(final, write)
        saves["n"] += 1
        if saves["n"] != n:
            return real_atomic(final, write)
        had_final, replaced = final.exists(), []

        def replace(src, dst):
            replaced.append((Path(src).name, Path(dst).name))
            if point == "before-swap" and len(replaced) == 1:
                _die()
            if point == "between-renames" and Path(src).name.endswith(".tmp") and had_final:
                _die()
            return real_replace(src, dst)

        def rmtree(path, *a, **kw):
            if point == "before-cleanup" and Path(path).name.endswith(".old") and \
                    any(d == final.name for _, d in replaced):
                _die()
            return real_rmtree(path, *a, **kw)

        def save(*a, **kw):
            if point == "mid-write":
                _die()
            return real_save(*a, **kw)

        checkpoint.os.replace, checkpoint.shutil.rmtree, checkpoint.torch.save = replace, rmtree, save
        try:
            if point == "mid-write" and target == "model":  # model folders have no torch.save: die after write
                return real_atomic(final, lambda tmp: (write(tmp), _die()))
            return real_atomic(final, write)
        finally:
            checkpoint.os.replace, checkpoint.shutil.rmtree, checkpoint.torch.save = (real_replace, real_rmtree,
                                                                                      real_save)

    checkpoint.atomic_dir = atomic_dir


if __name__ == "__main__":
    point, n, target, sep, *argv = sys.argv[1:]
    assert sep == "--", "usage: _inject.py POINT N TARGET -- rlhfkit-args..."
    install(point, int(n), target)
    from rlhfkit.cli import main

    sys.exit(main(argv))
