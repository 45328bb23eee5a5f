"""Keep frozen models off the accelerator while they are idle: PPO's reference and reward models are used
only to score a rollout, so they wait on the CPU through the policy/value updates and visit the GPU for
scoring (`rlhfkit ppo --ppo.offload`).

    with on_device([ref, *reward.members], compute_device()):
        rollout = collect(...)            # scored on the GPU; back on the CPU after the block

On a CPU-only machine every model already lives where it is computed, so nothing moves.
"""

from __future__ import annotations

import contextlib
from typing import Iterable, Iterator

import torch


def compute_device() -> torch.device:
    """Where the RL stages compute: the GPU when there is one (one process: rollouts are not sharded)."""
    # With its index ("cuda:0"), so it compares equal to the device a parameter reports.
    return torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else torch.device("cpu")


def device_of(model) -> torch.device:
    return next(model.parameters()).device


def place(models: Iterable, device: torch.device | str) -> None:
    """Move each model to `device` (in place, as nn.Module.to does)."""
    for m in models:
        m.to(device)


@contextlib.contextmanager
def on_device(models: Iterable, device: torch.device | str) -> Iterator[None]:
    """The models visit `device` for the block and go back to where each was, even if the block raises.

    Models already on `device` are not touched, so on a CPU-only machine this is a no-op. The CUDA caching
    allocator keeps the freed blocks for the next phase's activations and optimizer state (no empty_cache)."""
    device = torch.device(device)
    moved = [(m, device_of(m)) for m in models]
    moved = [(m, home) for m, home in moved if home != device]
    for m, _ in moved:
        m.to(device)
    try:
        yield
    finally:
        for m, home in moved:
            m.to(home)
