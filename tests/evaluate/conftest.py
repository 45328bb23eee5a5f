"""Fixtures: a ~150k-parameter causal LM with its own BPE tokenizer, saved as an HF model folder, and a
perturbed copy of it (for KL). Built once per session; every test here stays fast on 2 cores."""

from __future__ import annotations

import pytest
import torch

TEXTS = ["What is 3 plus 4? 3 plus 4 is 7.", "The fox is red and lives in the forest.",
         "Sorry, I can't help with that.", "How do I feed the cat? Give the cat some fish."] * 20


def world_or_skip():
    """The world's gold judge, or skip: the world is another module and may be absent."""
    world = pytest.importorskip("rlhfkit.world", reason="rlhfkit.world (gold judge) is not importable")
    return world


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory):
    from rlhfkit.checkpoint import save_model
    from rlhfkit.data.tokenizer import train_bpe
    from rlhfkit.model import build_causal_lm

    torch.manual_seed(0)
    tok = train_bpe(TEXTS, vocab_size=300)
    model = build_causal_lm(tok, "ci", context=128)
    return save_model(model, tok, tmp_path_factory.mktemp("models") / "sft" / "model")


@pytest.fixture(scope="session")
def perturbed_dir(model_dir, tmp_path_factory):
    """The same model with Gaussian noise on every weight: a policy that moved away from its reference."""
    from rlhfkit.checkpoint import save_model
    from rlhfkit.data.tokenizer import load_tokenizer
    from rlhfkit.model import load_causal_lm

    model = load_causal_lm(model_dir)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    return save_model(model, load_tokenizer(model_dir), tmp_path_factory.mktemp("models") / "ppo" / "model")
