"""LoRA (Hu et al. 2021) through peft: train low-rank adapters instead of every weight.

    rlhfkit sft --model runs/demo/pretrain/model --lora.r 8 --lora.alpha 16 --out runs/demo/sft

Each adapted linear layer computes W x + (α/r) B A x with A [r, in], B [out, r]; only A and B train, W stays
frozen, so the optimizer holds state for a few percent of the weights. Two uses beyond the memory saving:
- DPO and PPO take their frozen reference as the same network with the adapters switched off
  (`reference` / `AdapterOff`): no second copy in memory, and π_ref equals π at the start exactly, since
  peft initialises B to zero.
- A stage's deliverable is merged (W + (α/r) BA folded into W, `merged`) and saved as a plain HF folder,
  so the next stage loads it like any other model and never needs peft.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

from ..common import StageError, say
from ..config import opt


@dataclass
class LoraConfig:
    """LoRA adapters (r = 0 trains every weight)."""

    r: int = opt(0, "adapter rank; 0 = off (full fine-tuning)")
    alpha: float = opt(16.0, "scale α: the adapter update is (α/r)·BA")
    dropout: float = opt(0.0, "dropout on the adapter's input (training only)")
    target_modules: str = opt("all-linear", "comma-separated module names to adapt (e.g. q_proj,v_proj), or "
                                            "all-linear (every linear layer but the output head)")


def enabled(cfg: LoraConfig | None) -> bool:
    return cfg is not None and cfg.r > 0


def is_lora(model) -> bool:
    return hasattr(model, "peft_config") and hasattr(model, "disable_adapter")


def apply(model, cfg: LoraConfig | None, task: str | None = "CAUSAL_LM"):
    """Wrap `model` with fresh adapters (base weights frozen); the model itself when LoRA is off.

    `task` is peft's task type: CAUSAL_LM for a policy, None for a bare backbone (the reward model's body,
    whose head stays fully trainable outside the wrapper)."""
    if not enabled(cfg):
        if cfg is not None and cfg.r < 0:
            raise StageError(f"--lora.r must be >= 0, got {cfg.r}")
        return model
    from peft import LoraConfig as PeftLoraConfig
    from peft import get_peft_model

    names = cfg.target_modules.strip()
    targets = names if names == "all-linear" else [n.strip() for n in names.split(",") if n.strip()]
    peft_cfg = PeftLoraConfig(r=cfg.r, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout, target_modules=targets,
                              task_type=task)
    try:
        wrapped = get_peft_model(model, peft_cfg)
    except ValueError as e:  # e.g. a target name that matches no module of this architecture
        raise StageError(f"--lora.target_modules={cfg.target_modules}: {e}") from None
    trainable = sum(p.numel() for p in wrapped.parameters() if p.requires_grad)
    total = sum(p.numel() for p in wrapped.parameters())
    say(f"lora: r={cfg.r}, α={cfg.alpha} on {names}: {trainable:,} of {total:,} parameters train "
        f"({100 * trainable / max(total, 1):.2f}%)")
    return wrapped


def merged(model):
    """The plain model with the adapters folded into its weights (the model itself when not LoRA).

    The wrapper is consumed: its base layers are replaced in place, so call this once, at the end."""
    return model.merge_and_unload() if is_lora(model) else model


def reference(model):
    """Context in which `model` computes the reference: adapters off when it is LoRA, else unchanged
    (a full fine-tune keeps a separate frozen copy as its reference)."""
    return model.disable_adapter() if is_lora(model) else contextlib.nullcontext()


class AdapterOff:
    """Callable stand-in for a frozen reference model: the LoRA policy's forward with adapters disabled.

    Not an nn.Module, so nothing registers or optimises the shared weights twice."""

    def __init__(self, model):
        self.model = model

    def __call__(self, *args, **kwargs):
        with self.model.disable_adapter():
            return self.model(*args, **kwargs)

    def parameters(self):  # callers ask for the device through next(ref.parameters())
        return self.model.parameters()

    def eval(self):
        return self

    def requires_grad_(self, flag: bool = True):
        return self
