"""A scalar-head model for rewards and values: a causal-LM backbone plus a linear head giving one
value per token. Rewards are read at the last non-pad token of prompt+response.

Saved as `DIR/backbone/` (HF folder) + `DIR/head.safetensors` + `DIR/scalar.json` (normalisation
constants: reward = (raw - mean) / std, set after training on SFT samples as Stiennon et al. 2020 do).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from torch import nn


class ScalarModel(nn.Module):
    def __init__(self, backbone: nn.Module, hidden_size: int | None = None):
        super().__init__()
        self.backbone = backbone  # the base model (e.g. LlamaModel), not the LM head wrapper
        d = hidden_size or backbone.config.hidden_size
        self.head = nn.Linear(d, 1)
        # InstructGPT/Stiennon-style init: N(0, 1/sqrt(d+1)), bias 0.
        nn.init.normal_(self.head.weight, std=1.0 / math.sqrt(d + 1))
        nn.init.zeros_(self.head.bias)
        self.register_buffer("norm_mean", torch.zeros(()), persistent=False)
        self.register_buffer("norm_std", torch.ones(()), persistent=False)

    @property
    def config(self):
        return self.backbone.config

    @classmethod
    def from_causal_lm(cls, lm: nn.Module) -> "ScalarModel":
        """Take the transformer body of a causal LM (drop its LM head). A LoRA model has its adapters merged
        in place (pass a copy) and every weight made trainable again."""
        if hasattr(lm, "merge_and_unload"):
            lm = lm.merge_and_unload().requires_grad_(True)
        return cls(body_of(lm), lm.config.hidden_size)

    @classmethod
    def sharing(cls, policy: nn.Module) -> "ScalarModel":
        """A value head on the policy's own trunk (PPO `--ppo.share_value_backbone`): no second backbone in
        memory; its parameters are the policy's plus the head, so train it with one optimizer and one loss."""
        return cls(body_of(policy), policy.config.hidden_size)

    def values(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Per-token raw values [B, T]."""
        pos = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
        out = self.backbone(input_ids=input_ids, attention_mask=attention_mask, position_ids=pos)
        return self.head(out.last_hidden_state).squeeze(-1)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, per_token: bool = False) -> torch.Tensor:
        """Raw score [B] at the last non-pad token (works with left or right padding); with `per_token`, the
        values [B, T] (for PPO's value model run through a DDP wrapper, which calls forward)."""
        values = self.values(input_ids, attention_mask)
        if per_token:
            return values
        idx = last_token_index(attention_mask)
        return values.gather(1, idx[:, None]).squeeze(1)

    def score(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Normalised reward [B]."""
        return (self(input_ids, attention_mask) - self.norm_mean) / self.norm_std

    def save(self, out: str | Path, tokenizer=None) -> None:
        from safetensors.torch import save_file

        out = Path(out)
        self.backbone.save_pretrained(out / "backbone", safe_serialization=True)
        if tokenizer is not None:
            tokenizer.save_pretrained(out / "backbone")
        save_file({k: v.contiguous() for k, v in self.head.state_dict().items()}, str(out / "head.safetensors"))
        (out / "scalar.json").write_text(json.dumps(
            {"norm_mean": float(self.norm_mean), "norm_std": float(self.norm_std)}))

    @classmethod
    def load(cls, path: str | Path) -> "ScalarModel":
        from safetensors.torch import load_file
        from transformers import AutoModel

        path = Path(path)
        backbone = AutoModel.from_pretrained(str(path / "backbone"))
        model = cls(backbone)
        model.head.load_state_dict(load_file(str(path / "head.safetensors")))
        meta = json.loads((path / "scalar.json").read_text())
        model.norm_mean.fill_(meta["norm_mean"])
        model.norm_std.fill_(meta["norm_std"])
        return model


def body_of(lm: nn.Module) -> nn.Module:
    """The transformer body of a causal LM (Llama's `.model`, GPT-2's `.transformer`), through a peft
    wrapper: its adapters stay in the body, active."""
    if hasattr(lm, "get_base_model"):  # PeftModel; its `.model` would be the whole causal LM
        lm = lm.get_base_model()
    return getattr(lm, "model", None) or getattr(lm, "transformer", None) or lm.base_model


def last_token_index(attention_mask: torch.Tensor) -> torch.Tensor:
    """Index of the last attended token per row [B] (left- or right-padded)."""
    T = attention_mask.shape[1]
    positions = torch.arange(T, device=attention_mask.device).expand_as(attention_mask)
    return (positions * attention_mask.long()).argmax(dim=1)
