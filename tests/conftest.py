"""Shared fixtures: a tiny byte-level BPE trained on world-like sentences and a `ci`-size Llama built from it.

Both are built once per session and saved to a temporary folder; tests load fresh copies from disk
(`tokenizer`, `lm`) so one test's edits (a chat template, a training step) never leak into another.

Tests run torch on one thread (OMP_NUM_THREADS=1 unless set, inherited by subprocesses): on a 2-core CI
box shared with other jobs, two OpenMP threads made ci-size pretraining ~20x slower (600-900 vs
15-19k tokens/s, measured back to back at load ~6), while one thread barely loses when the box is idle.
"""

from __future__ import annotations

import os
import random

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))

NAMES = ["Ada", "Bo", "Cy", "Dee", "Eli", "Fay", "Gus", "Hal"]
THINGS = ["apples", "boxes", "cats", "drums", "eggs", "maps", "owls", "pears"]
PLACES = ["the river", "the market", "school", "the hill", "the farm"]


def world_sentences(n: int = 400, seed: int = 0) -> list[str]:
    """Short templated sentences like the built-in world's: names, counts, places, simple arithmetic."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        a, b = rng.sample(NAMES, 2)
        x, y = rng.randint(0, 49), rng.randint(1, 9)
        thing, place = rng.choice(THINGS), rng.choice(PLACES)
        out.append(rng.choice([
            f"{a} has {x} {thing}. {b} gives {a} {y} more, so {a} has {x + y} {thing}.",
            f"{a} went to {place} with {b}. They saw {y} {thing} there.",
            f"What is {x} plus {y}? It is {x + y}.",
            f"{b} asked {a}: where are the {thing}? At {place}!",
        ]))
    return out


@pytest.fixture(scope="session")
def corpus() -> list[str]:
    return world_sentences()


@pytest.fixture(scope="session")
def tok_dir(tmp_path_factory, corpus):
    """A folder holding the fixture BPE tokenizer (vocab 300, the built-in chat template)."""
    from rlhfkit.data.tokenizer import train_bpe

    path = tmp_path_factory.mktemp("tokenizer")
    train_bpe(corpus, vocab_size=300, out=path)
    return path


@pytest.fixture
def tokenizer(tok_dir):
    """A fresh copy of the fixture tokenizer (safe to modify)."""
    from rlhfkit.data.tokenizer import load_tokenizer

    return load_tokenizer(tok_dir)


@pytest.fixture(scope="session")
def lm_dir(tmp_path_factory, tok_dir):
    """A folder holding a randomly initialised `ci` Llama (seed 0) and the fixture tokenizer."""
    from rlhfkit.data.tokenizer import load_tokenizer
    from rlhfkit.model import build_causal_lm

    tok = load_tokenizer(tok_dir)
    torch.manual_seed(0)
    model = build_causal_lm(tok, "ci", context=128)
    path = tmp_path_factory.mktemp("lm")
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


@pytest.fixture
def lm(lm_dir):
    """A fresh copy of the fixture `ci` Llama, in eval mode."""
    from rlhfkit.model import load_causal_lm

    return load_causal_lm(lm_dir).eval()
