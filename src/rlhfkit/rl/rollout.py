"""Rollouts: sample responses with the engine, then score them — the experience PPO/GRPO learn from."""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

import torch

from ..data.chat import render_prompt
from .engine import SamplingParams, forward_logprobs, generate
from .rewards import RewardFn, gold_scores


@dataclass
class Rollout:
    """One batch of experience. B = responses, P = prompt length, R = response length."""

    prompts: list[str]            # [B] prompt texts (repeated G times for group methods)
    responses: list[str]          # [B] decoded responses (no special tokens)
    sequences: torch.Tensor       # [B, P+R]
    attention_mask: torch.Tensor  # [B, P+R]
    response_mask: torch.Tensor   # [B, R] float, 1 on response tokens incl. EOS
    logp: torch.Tensor            # [B, R] log π_old(y_t) at the sampling temperature
    ref_logp: torch.Tensor        # [B, R] log π_ref(y_t)
    score: torch.Tensor           # [B] proxy reward (normalised RM score, ensemble mean)
    score_std: torch.Tensor       # [B] ensemble spread (0 for a single model)
    gold: torch.Tensor | None     # [B] gold judge score when the world applies
    finished: torch.Tensor        # [B] bool, EOS produced
    prompt_len: int

    @property
    def lengths(self) -> torch.Tensor:
        return self.response_mask.sum(-1)


@contextmanager
def eval_mode(model):
    """`model` in eval mode inside the block, back in its previous mode after (as `generate` does)."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


@torch.no_grad()
def collect(policy, ref, tokenizer, prompts: list[str], params: SamplingParams, reward: RewardFn,
            generator: torch.Generator, temperature: float) -> Rollout:
    """This process's share of a step's experience (the prompts it was given). The sampling generator is
    seeded afresh from `generator` at every call, so one draw is taken from `generator` per step whatever
    the responses' lengths, on every process alike (rl/distributed.py)."""
    from .distributed import row_span

    ids = [render_prompt(tokenizer, p) for p in prompts]
    sampler = torch.Generator().manual_seed(int(torch.randint(2**62, (1,), generator=generator)))
    with eval_mode(policy):  # the last update may have left it in train mode
        s = generate(policy, ids, params, tokenizer.eos_token_id, tokenizer.pad_token_id, sampler,
                     span=row_span(len(ids)))
        # Recompute log-probs with a full forward: the trainer's forward must give ratio 1 at the start
        # (incremental KV-cache decoding can differ in the last bits).
        mask = s.response_mask.float()
        logp, _ = forward_logprobs(policy, s.sequences, s.attention_mask, s.prompt_len, temperature)
        ref_logp, _ = forward_logprobs(ref, s.sequences, s.attention_mask, s.prompt_len, temperature)
    responses = [tokenizer.decode(r, skip_special_tokens=True).strip() for r in s.response_ids(tokenizer.eos_token_id)]
    score, std = reward(prompts, responses)
    finished = s.finished.cpu()
    return Rollout(prompts, responses, s.sequences, s.attention_mask, mask, logp * mask, ref_logp * mask,
                   score.float().cpu(), std.float().cpu(), gold_scores(prompts, responses, finished.tolist()),
                   finished, s.prompt_len)
