"""Causal LMs: a standard transformers Llama built from a small preset (so the tiny default and real
models share every later line of code), or any causal LM loaded by hub id / local folder / GGUF file
(dequantized on load: see `load_causal_lm`)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import torch

from ..common import from_pretrained, split_gguf
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


def load_causal_lm(name_or_path: str | Path, dtype: torch.dtype | None = None):
    """Load any causal LM with dropout off: a hub id, a local folder, or a GGUF file (`dir/x.gguf`, or
    `org/name/x.gguf` on the hub), whose weights are dequantized to plain tensors on load so the model
    trains and `save_pretrained` writes a normal HF folder."""
    from transformers import AutoModelForCausalLM

    gguf = split_gguf(name_or_path)[1] is not None
    kwargs = _dequantize_gguf() if gguf else {}
    if dtype is not None:
        kwargs["dtype"] = dtype
    model = from_pretrained(AutoModelForCausalLM, name_or_path, **kwargs)
    if gguf:
        detach_quantizer(model)
    disable_dropout(model)
    return model


def _dequantize_gguf() -> dict:
    """from_pretrained options that unpack every GGUF weight at load time. transformers 5.x loads GGUF
    through a quantizer (GgufConfig) that may keep quantized blocks packed where a kernel exists, which
    neither trains nor saves; `dequantize=True` asks for dense tensors. Versions without GgufConfig
    (4.x) always dequantized."""
    try:
        from transformers import GgufConfig
    except ImportError:
        return {}
    return {"quantization_config": GgufConfig(dequantize=True)}


def detach_quantizer(model) -> None:
    """Drop what a GGUF load leaves on a model whose weights are already dense, so `save_pretrained`
    writes a normal HF folder that loads back without `gguf_file`.

    Observed with transformers 5.24 on a llama GGUF: a plain `gguf_file=` load leaves
    `model.hf_quantizer` (GgufHfQuantizer, not serializable), `config.quantization_config` (GgufConfig)
    and `is_quantized=True`, and `save_pretrained` raises "The model is quantized with gguf and is not
    serializable". With `GgufConfig(dequantize=True)` (`_dequantize_gguf`) transformers removes all three
    itself, so this is then a no-op; it stays for versions or paths that leave them attached."""
    quantizer = getattr(model, "hf_quantizer", None)
    if quantizer is not None:
        quantizer.remove_quantization_config(model)


def disable_dropout(model: torch.nn.Module) -> None:
    """Turn every dropout in `model` off, in train mode too. RLHF practice (Huang et al. 2024, detail
    'disable dropout'): log-probs must be deterministic, or the PPO ratio is not 1 before the first update.

    transformers takes a dropout rate from three places, and this zeroes each of them:
    - `nn.Dropout` modules (`p`): GPT-2's `drop` (embd_pdrop), `attn_dropout`, `resid_dropout` (attn_pdrop,
      resid_pdrop; its SDPA path reads `attn_dropout.p`) and `mlp.dropout`.
    - rates copied from the config when a module is built: Llama, Mistral, Qwen2 and Gemma attention keep
      `self.attention_dropout` and pass it to the attention function in train mode. Any int/float attribute
      of a module whose name contains "dropout", "pdrop" or "layerdrop" is zeroed.
    - the config itself (same names, sub-configs too), for code that reads it at forward time (Falcon's
      `dropout_add`, GPT-Neo's attention) and for modules built from it later (a value head).
    LoRA adapter dropout is applied after this (model/lora.py) and is left as configured."""
    from transformers import PretrainedConfig

    def zero_rates(obj) -> None:
        for key, value in list(vars(obj).items()):
            if isinstance(value, PretrainedConfig):
                zero_rates(value)
            elif _RATE.search(key) and isinstance(value, (int, float)) and not isinstance(value, bool):
                setattr(obj, key, 0.0)

    for m in model.modules():
        if isinstance(m, torch.nn.modules.dropout._DropoutNd):  # Dropout, Dropout1d..3d, AlphaDropout
            m.p = 0.0
        zero_rates(m)  # its float attributes and its `config`, when it holds one


_RATE = re.compile(r"dropout|pdrop|layerdrop")


def context_length(model) -> int:
    cfg = model.config
    return int(getattr(cfg, "max_position_embeddings", None) or getattr(cfg, "n_positions", 1024))


def count_params(model) -> int:
    return sum(p.numel() for p in model.parameters())
