"""Rollouts are taken in eval mode: a policy the last update left in train mode, with dropout that train mode
would apply, gives the log-probs of an eval-mode forward, and goes back to the mode it was in.

Run: .venv/bin/python -m pytest tests/rl/test_rollout.py -q
"""

from __future__ import annotations

import pytest
import torch

from rlhfkit.model import build_causal_lm
from rlhfkit.rl.engine import SamplingParams, forward_logprobs
from rlhfkit.rl.rollout import collect

PROMPTS = ["What is 4 plus 5?", "Where are the owls?", "Ada went to the river with Bo."]


def _length_reward(prompts, responses):
    r = torch.tensor([len(x) / 10.0 for x in responses])
    return r, torch.zeros_like(r)


@pytest.mark.parametrize("training", [True, False])
def test_collect_is_eval_mode_and_restores_the_mode(tokenizer, training):
    torch.manual_seed(0)
    policy = build_causal_lm(tokenizer, "ci", context=64, dropout=0.5).train(training)  # dropout on in train mode
    ref = build_causal_lm(tokenizer, "ci", context=64).eval()
    ro = collect(policy, ref, tokenizer, PROMPTS, SamplingParams(max_new_tokens=8), _length_reward,
                 torch.Generator().manual_seed(0), temperature=0.7)
    assert policy.training is training
    with torch.no_grad():
        logp, _ = forward_logprobs(policy.eval(), ro.sequences, ro.attention_mask, ro.prompt_len, 0.7)
        ref_logp, _ = forward_logprobs(ref, ro.sequences, ro.attention_mask, ro.prompt_len, 0.7)
    assert torch.equal(ro.logp, logp * ro.response_mask)
    assert torch.equal(ro.ref_logp, ref_logp * ro.response_mask)
