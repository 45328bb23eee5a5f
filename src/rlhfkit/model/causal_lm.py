"""Causal LMs: a standard transformers Llama built from a small preset (so the tiny default and real
models share every later line of code), or any causal LM loaded by hub id / local folder / GGUF file."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from ..common import from_pretrained
from ..config import opt


@dataclass
class ModelConfig:
    """Model to start from: a preset size built from scratch, or a pretrained model."""

    size: str = opt("tiny", "architecture preset when building from scratch",
                     choices=("ci", "tiny", "small", "medium"))
    context: int = opt(256, "context length (max positions) when building from scratch")
    dropout: float = opt(0.0, "attention dropout when building from scratch")


# hidden, layers, heads, mlp. tiny ≈ 1.2M params at vocab 1024 (WORLD_NOTES: ~13k tok/s on 2 cores).
MODEL_PRESETS = {
    "ci": dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=256),
    "tiny": dict(hidden_size=128, num_hidden_layers=4, num_attention_heads=4, intermediate_size=512),
    "small": dict(hidden_size=256, num_hidden_layers=6, num_attention_heads=8, intermediate_size=1024),
    "medium": dict(hidden_size=512, num_hidden_layers=8, num_attention_heads=8, intermediate_size=2048),
}


def build_causal_lm(tokenizer, size: str = "tiny", context: int = 256, dropout: float = 0.0):
    """A fresh LlamaForCausalLM sized by preset, with pad/bos/eos ids taken from `tokenizer`."""
    from transformers import LlamaConfig, LlamaForCausalLM

    if size not in MODEL_PRESETS:
        raise ValueError(f"unknown model size '{size}'; choose one of {', '.join(MODEL_PRESETS)}")
    config = LlamaConfig(
        vocab_size=len(tokenizer), max_position_embeddings=context, tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, attention_dropout=dropout, rms_norm_eps=1e-5,
        **MODEL_PRESETS[size],
    )
    return LlamaForCausalLM(config)


def load_causal_lm(name_or_path: str | Path, dtype: torch.dtype | None = None, gguf_file: str | None = None):
    """Load any causal LM by hub id or local folder (or a GGUF file inside it) with dropout off."""
    from transformers import AutoModelForCausalLM

    kwargs = {"gguf_file": gguf_file} if gguf_file else {}
    if dtype is not None:
        kwargs["dtype"] = dtype
    model = from_pretrained(AutoModelForCausalLM, name_or_path, **kwargs)
    disable_dropout(model)
    return model


def disable_dropout(model: torch.nn.Module) -> None:
    """RLHF practice (Huang et al. 2024, detail 'disable dropout'): log-probs must be deterministic."""
    for m in model.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
    cfg = getattr(model, "config", None)
    for key in ("attention_dropout", "hidden_dropout", "resid_pdrop", "embd_pdrop", "attn_pdrop"):
        if cfg is not None and hasattr(cfg, key):
            setattr(cfg, key, 0.0)


def context_length(model) -> int:
    cfg = model.config
    return int(getattr(cfg, "max_position_embeddings", None) or getattr(cfg, "n_positions", 1024))


def count_params(model) -> int:
    return sum(p.numel() for p in model.parameters())
