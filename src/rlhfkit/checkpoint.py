"""Checkpoints: HF-format model folders plus trainer state, written atomically, for `--resume`.

Layout of a stage folder:
    OUT/model/            save_pretrained() output (+ tokenizer); loads with from_pretrained
    OUT/ckpt/             latest resumable state: model/ + trainer_state.pt (optimizer, scheduler,
                          RNG, step, data position) + COMPLETE marker
    OUT/config.yaml, OUT/metrics.jsonl

A folder is written under a temporary name and renamed into place, and carries a `COMPLETE` marker
last, so a kill during a save leaves the previous checkpoint intact and a half-written one is never
loaded.
"""

from __future__ import annotations

import os
import random
import shutil
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

MARKER = "COMPLETE"


def atomic_dir(final: str | Path, write: Callable[[Path], None]) -> Path:
    """Run `write(tmp_dir)`, mark it complete, then swap it in for `final` (old copy removed last)."""
    final = Path(final)
    tmp = final.with_name(final.name + ".tmp")
    old = final.with_name(final.name + ".old")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    write(tmp)
    (tmp / MARKER).write_text("ok")
    _fsync_dir(tmp)
    if final.exists():
        shutil.rmtree(old, ignore_errors=True)
        os.replace(final, old)
    os.replace(tmp, final)
    shutil.rmtree(old, ignore_errors=True)
    return final


def _fsync_dir(path: Path) -> None:
    for p in path.rglob("*"):
        if p.is_file():
            with open(p, "rb") as f:
                os.fsync(f.fileno())


def is_complete(path: str | Path) -> bool:
    return (Path(path) / MARKER).exists()


def recover(path: str | Path) -> Path | None:
    """The usable checkpoint at `path`: itself if complete, else a complete `.old` left by a kill."""
    path = Path(path)
    if is_complete(path):
        return path
    old = path.with_name(path.name + ".old")
    return old if is_complete(old) else None


def rng_state() -> dict[str, Any]:
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])


class Bundle:
    """Several stateful objects (optimizers, small modules) checkpointed as one, where `save_state` takes one
    optimizer: PPO's policy and value optimizers and its value model travel together. None parts are left out."""

    def __init__(self, **parts):
        self.parts = {k: v for k, v in parts.items() if v is not None}

    def state_dict(self) -> dict:
        return {k: v.state_dict() for k, v in self.parts.items()}

    def load_state_dict(self, state: dict) -> None:
        if state.keys() != self.parts.keys():
            raise RuntimeError(f"checkpoint holds {sorted(state)}, this run needs {sorted(self.parts)}: "
                               "it was written with other options")
        for k, v in self.parts.items():
            v.load_state_dict(state[k])


def save_model(model, tokenizer, out: str | Path, extra: Callable[[Path], None] | None = None,
               state_dict: dict | None = None) -> Path:
    """Save an HF model folder (safetensors) + tokenizer atomically; `state_dict` replaces the model's own
    weights (gathered ones, when the model is sharded across processes)."""

    def write(tmp: Path) -> None:
        model.save_pretrained(tmp, safe_serialization=True, state_dict=state_dict)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
        if extra is not None:
            extra(tmp)

    return atomic_dir(out, write)


def save_state(out: str | Path, model, tokenizer, optimizer, scheduler, step: int,
               data_state: dict | None = None, extra: dict | None = None) -> Path:
    """Save a resumable checkpoint folder: model + optimizer/scheduler/RNG/step/data position."""

    def write(tmp: Path) -> None:
        if hasattr(model, "save_pretrained"):
            model.save_pretrained(tmp / "model", safe_serialization=True)
        else:  # a plain module (the reward model: backbone + scalar head): its whole state dict
            from safetensors.torch import save_file

            (tmp / "model").mkdir()
            save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp / "model" / "model.safetensors"))
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp / "model")
        torch.save({
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict() if scheduler is not None else None,
            "rng": rng_state(),
            "step": step,
            "data": data_state or {},
            "extra": extra or {},
        }, tmp / "trainer_state.pt")

    return atomic_dir(out, write)


def saved_extra(ckpt: str | Path) -> dict | None:
    """The `extra` dict of the checkpoint a resume would use (None when there is none), without loading it."""
    path = recover(ckpt)
    return None if path is None else torch.load(path / "trainer_state.pt", weights_only=False)["extra"]


def load_state(ckpt: str | Path, model, optimizer, scheduler) -> dict:
    """Restore model weights, optimizer, scheduler and RNG from a checkpoint; returns the state dict."""
    from safetensors.torch import load_file

    path = recover(ckpt)
    if path is None:
        raise FileNotFoundError(f"{ckpt}: no complete checkpoint to resume from")
    adapter = path / "model" / "adapter_model.safetensors"
    if adapter.exists():  # a LoRA model saves only its adapters; the frozen base comes from --model
        _load_adapter(path, model, load_file(str(adapter)))
    else:
        _load_weights(path, model, load_file)
    state = torch.load(path / "trainer_state.pt", weights_only=False)
    optimizer.load_state_dict(state["optimizer"])
    if scheduler is not None and state["scheduler"] is not None:
        scheduler.load_state_dict(state["scheduler"])
    set_rng_state(state["rng"])
    return state


def _load_weights(path: Path, model, load_file) -> None:
    # save_pretrained shards big models (model-00001-of-0000N.safetensors): read every shard.
    shards = sorted((path / "model").glob("model*.safetensors"))
    if not shards:
        raise FileNotFoundError(f"{path / 'model'}: no model*.safetensors weights in the checkpoint")
    weights = {}
    for shard in shards:
        weights.update(load_file(str(shard)))
    missing, unexpected = model.load_state_dict(weights, strict=False)
    # Tied embeddings are saved once; anything else missing is a real mismatch.
    missing = [k for k in missing if "lm_head" not in k]
    if missing or unexpected:
        raise RuntimeError(f"{path}: checkpoint does not match the model (missing {missing[:3]}, "
                           f"unexpected {unexpected[:3]})")


def _load_adapter(path: Path, model, weights: dict) -> None:
    from peft import set_peft_model_state_dict

    if not hasattr(model, "peft_config"):
        raise RuntimeError(f"{path}: the checkpoint holds LoRA adapters but the model has none (set --lora.r)")
    result = set_peft_model_state_dict(model, weights)
    if result.unexpected_keys:
        raise RuntimeError(f"{path}: adapters do not match the model (unexpected {result.unexpected_keys[:3]})")
