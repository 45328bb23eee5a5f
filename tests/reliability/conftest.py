"""Fixtures for the reliability tests: small data files in every format, and helpers that run `rlhfkit` as a
real subprocess (its own process group, so a SIGKILL reaches it and nothing it started survives).

Subprocesses get OMP_NUM_THREADS=1: the uninterrupted and the resumed runs must do the same arithmetic in
the same order to be compared weight for weight, and one thread also keeps a busy 2-core box responsive.
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
from typing import Callable

import pytest

RLHFKIT = [sys.executable, "-m", "rlhfkit.cli"]
INJECT = [sys.executable, str(Path(__file__).parent / "_inject.py")]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false",
       "PYTHONUNBUFFERED": "1"}
ENV.pop("RLHFKIT_DEBUG", None)

NAMES = ["Ada", "Bo", "Cy", "Dee", "Eli", "Fay"]
THINGS = ["apples", "boxes", "cats", "eggs", "maps"]


def text_records(n: int = 300, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        a, b, t = rng.choice(NAMES), rng.choice(NAMES), rng.choice(THINGS)
        x, y = rng.randint(0, 49), rng.randint(1, 9)
        out.append({"text": f"{a} had {x} {t}. {b} gave {a} {y} more, so {a} had {x + y} {t}."})
    return out


def sft_records(n: int = 160, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        x, y = rng.randint(0, 49), rng.randint(1, 9)
        if i % 2:
            out.append({"messages": [{"role": "user", "content": f"What is {x} plus {y}?"},
                                     {"role": "assistant", "content": f"{x} plus {y} is {x + y}."}]})
        else:
            out.append({"prompt": f"Add {y} to {x}.", "completion": f"It is {x + y}."})
    return out


def ranking_records(n_prompts: int = 24) -> list[dict]:
    """K = 2..4 rankings (one with a tie) and TRL pairwise rows, on distinct prompts."""
    rows = []
    for i in range(n_prompts):
        t = THINGS[i % len(THINGS)]
        good, bad = f"Here is a kind answer about {t} {i}.", ["no", f"{t} {t} {t}", "I refuse."]
        k = 2 + i % 3
        responses = [good, *bad[: k - 1]]
        ranking = list(range(k)) if k < 4 else [0, [1, 2], 3]
        rows.append({"prompt": f"Tell me about {t} number {i}.", "responses": responses, "ranking": ranking,
                     "annotator": f"a{i % 3}"})
        if i % 4 == 0:
            rows.append({"prompt": f"What of {t} {i}?", "chosen": good, "rejected": bad[2]})
    return rows


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory) -> Path:
    """text.jsonl, sft.jsonl and rankings.jsonl, all valid."""
    root = tmp_path_factory.mktemp("reliability_data")
    write_jsonl(root / "text.jsonl", text_records())
    write_jsonl(root / "sft.jsonl", sft_records())
    write_jsonl(root / "rankings.jsonl", ranking_records())
    return root


def spawn(args: list[str], log: Path, inject: tuple[str, int, str] | None = None) -> subprocess.Popen:
    """Start `rlhfkit ARGS` (or the fault-injecting runner) writing stdout+stderr to `log`."""
    cmd = RLHFKIT + args if inject is None else INJECT + [inject[0], str(inject[1]), inject[2], "--", *args]
    return subprocess.Popen(cmd, stdout=log.open("w"), stderr=subprocess.STDOUT, env=ENV,
                            start_new_session=True, cwd=Path(__file__).parents[2])


def kill(proc: subprocess.Popen) -> None:
    """SIGKILL the process group of `proc` and reap it."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def wait_until(pred: Callable[[], bool], proc: subprocess.Popen, log: Path, timeout: float = 240,
               poll: float = 0.005) -> None:
    """Poll `pred` until true; fail if `proc` exits first or `timeout` passes."""
    deadline = time.time() + timeout
    while not pred():
        if proc.poll() is not None:
            if pred():
                return
            raise AssertionError(f"process exited ({proc.returncode}) before the kill point:\n"
                                 f"{log.read_text()[-3000:]}")
        if time.time() > deadline:
            kill(proc)
            raise AssertionError(f"kill point not reached within {timeout} s:\n{log.read_text()[-3000:]}")
        time.sleep(poll)


def run_to_end(args: list[str], log: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    proc = spawn(args, log)
    try:
        rc = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill(proc)
        raise
    return subprocess.CompletedProcess(args, rc, log.read_text(), "")


def last_step(metrics: Path) -> int:
    """The step of the last complete line of a metrics.jsonl (0 when none)."""
    try:
        lines = metrics.read_bytes().split(b"\n")[:-1]
    except FileNotFoundError:
        return 0
    for line in reversed(lines):
        try:
            return int(json.loads(line)["step"])
        except (ValueError, KeyError):
            continue
    return 0
