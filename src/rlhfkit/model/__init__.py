"""Models: a Llama-style causal LM built from a preset or loaded with from_pretrained, and a
scalar-head model (reward / value) on the same backbones."""

from .causal_lm import MODEL_PRESETS, ModelConfig, build_causal_lm, load_causal_lm
from .scalar import ScalarModel

__all__ = ["MODEL_PRESETS", "ModelConfig", "build_causal_lm", "load_causal_lm", "ScalarModel"]
