"""Reward sources for RL and best-of-n, all as `fn(prompts, responses) -> (reward [B], spread [B])`:

- a reward-model folder (one member or an ensemble; spread = ensemble std, Coste et al. 2023),
- `gold`: the built-in world's judge (for measurement and "RL with the true reward" baselines),
- `module.path:function`: any Python function `f(prompts, responses) -> list[float]`, imported as
  `uvicorn app:app` imports: the current directory comes first on the import path.
"""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path
from typing import Callable

import torch

RewardFn = Callable[[list[str], list[str]], tuple[torch.Tensor, torch.Tensor]]


def make_reward(spec: str) -> RewardFn:
    if spec == "gold":
        from ..world import reward_fn

        return _plain(reward_fn)
    if ":" in spec and not Path(spec).exists():
        module, _, name = spec.partition(":")
        if os.getcwd() not in sys.path:  # `python -m` puts it there; a console script or runner does not
            sys.path.insert(0, os.getcwd())
        try:
            fn = getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError) as e:
            raise ValueError(f"reward '{spec}': cannot import {name} from {module} ({e})") from None
        return _plain(fn)
    if not Path(spec).exists():
        raise FileNotFoundError(f"reward '{spec}': no such reward-model folder (or use 'gold' / 'module:function')")
    from ..model.reward_scorer import load_reward

    return load_reward(spec)  # callable as a RewardFn; `.members` are its models


def _plain(fn) -> RewardFn:
    def wrapped(prompts: list[str], responses: list[str]):
        r = torch.tensor([float(x) for x in fn(prompts, responses)])
        return r, torch.zeros_like(r)

    return wrapped


def gold_scores(prompts: list[str], responses: list[str], finished: list[bool] | None = None) -> torch.Tensor | None:
    """The world judge's scores, or None when the prompts are not the built-in world's."""
    try:
        from ..world import judge
    except ImportError:
        return None
    out = []
    try:
        for i, (p, r) in enumerate(zip(prompts, responses)):
            out.append(_judge(judge, p, r, None if finished is None else finished[i]))
    except ValueError:  # a prompt the world does not know: no gold available
        return None
    return torch.tensor(out)


def _judge(judge, prompt: str, response: str, finished: bool | None) -> float:
    if finished is None:
        return judge(prompt, response).score
    try:
        return judge(prompt, response, finished=finished).score
    except TypeError:
        return judge(prompt, response).score
