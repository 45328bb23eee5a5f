"""The engine's fast decoder (`StaticDecoder`: own weights, preallocated KV cache, finished rows dropped) against
its reference decoder (the model's HF forward with a DynamicCache): same seed, same tokens, same log-probs —
for plain, grouped-query and biased-attention (Qwen2) models, with rows ending early. Also: the inverse-CDF
sampler draws from the right distribution, and models it does not cover fall back to the reference path.

Run: .venv/bin/python -m pytest tests/rl/test_engine_static.py -q
"""

from __future__ import annotations

from collections import Counter

import pytest
import torch

from rlhfkit.rl import engine
from rlhfkit.rl.engine import SamplingParams, forward_logprobs, generate

PROMPTS = [[1, 4, 40, 41, 42, 43, 44, 45, 2, 5], [1, 4, 50, 2, 5], [1, 4, 60, 61, 62, 2, 5], [1, 4, 70, 71, 2, 5],
           [1, 4, 80, 2, 5], [1, 4, 90, 91, 92, 93, 2, 5], [1, 4, 33, 2, 5], [1, 4, 34, 35, 2, 5]]
PAD, NO_EOS = 0, -1


def _gen(model, params, eos=NO_EOS, seed=0, reference=False, monkeypatch=None):
    if reference:
        monkeypatch.setattr(engine.StaticDecoder, "build", classmethod(lambda cls, *a: None))
    try:
        return generate(model, PROMPTS, params, eos_id=eos, pad_id=PAD, generator=torch.Generator().manual_seed(seed))
    finally:
        if reference:
            monkeypatch.undo()


def _frequent_token(model, params) -> int:
    """The token most rows produce at least once after their first two: as EOS, most rows end early and at
    different steps."""
    s = _gen(model, params)
    rows = Counter(t for row in s.responses.tolist() for t in set(row[2:]))
    return rows.most_common(1)[0][0]


def _drops_expected(s) -> bool:
    """Whether the engine's rule (drop finished rows once half of the batch has finished, unless all have)
    fires before the last step of this generation."""
    B, n = s.responses.shape
    end = torch.where(s.finished, s.response_mask.sum(1) - 1, torch.full_like(s.finished, n, dtype=torch.long))
    return any(B <= 2 * int((end <= t).sum()) < 2 * B for t in range(n - 1))


def _llama(**overrides):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = dict(vocab_size=120, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
               max_position_embeddings=128, tie_word_embeddings=True, pad_token_id=PAD)
    return LlamaForCausalLM(LlamaConfig(**{**cfg, **overrides})).eval()


def _qwen2():
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    return Qwen2ForCausalLM(Qwen2Config(vocab_size=120, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                                        num_key_value_heads=2, intermediate_size=128, max_position_embeddings=128,
                                        pad_token_id=PAD)).eval()


MODELS = {"llama": lambda: _llama(), "llama-gqa": lambda: _llama(num_key_value_heads=2),
          "llama-untied-rope-scaled": lambda: _llama(tie_word_embeddings=False,
                                                     rope_parameters={"rope_type": "linear", "factor": 2.0,
                                                                      "rope_theta": 10000.0}),
          "qwen2": _qwen2}
PARAMS = {"sample": SamplingParams(max_new_tokens=24, temperature=0.8),
          "topk-topp": SamplingParams(max_new_tokens=24, top_k=20, top_p=0.9),
          "greedy": SamplingParams(max_new_tokens=24, greedy=True)}


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("params", list(PARAMS.values()), ids=list(PARAMS))
def test_static_decoder_matches_reference(monkeypatch, name, params):
    model = MODELS[name]()
    assert engine.StaticDecoder.build(model, 2, 8) is not None  # the fast path is the one under test
    # Random tiny models decode greedily into one repeated token per row: no useful EOS there.
    eos = NO_EOS if params.greedy else _frequent_token(model, params)
    kept = []
    real_keep = engine.StaticDecoder.keep
    monkeypatch.setattr(engine.StaticDecoder, "keep",
                        lambda self, rows: (kept.append(len(rows)), real_keep(self, rows)))
    fast = _gen(model, params, eos)
    monkeypatch.undo()
    ref = _gen(model, params, eos, reference=True, monkeypatch=monkeypatch)
    if not params.greedy:  # rows end at various steps
        assert 0 < fast.finished.sum() and len(set(fast.response_mask.sum(1).tolist())) > 2
    assert bool(kept) == _drops_expected(fast)
    assert torch.equal(fast.sequences, ref.sequences)
    assert torch.equal(fast.attention_mask, ref.attention_mask) and torch.equal(fast.finished, ref.finished)
    torch.testing.assert_close(fast.logprobs, ref.logprobs, rtol=1e-4, atol=1e-5)
    # And the sampled log-probs are what a fresh full forward gives at the sampling temperature.
    with torch.no_grad():
        logp, _ = forward_logprobs(model, fast.sequences, fast.attention_mask, fast.prompt_len, params.temperature)
    m = fast.response_mask.bool()
    torch.testing.assert_close(logp[m], fast.logprobs[m], rtol=1e-4, atol=1e-4)


def test_dropping_rows_changes_no_draw(monkeypatch):
    """Rows are dropped once half have finished; every row's tokens are still those of the full-batch run."""
    model, params = _llama(), SamplingParams(max_new_tokens=24, temperature=0.8)
    eos = _frequent_token(model, params)
    fast = _gen(model, params, eos)
    assert _drops_expected(fast)
    monkeypatch.setattr(engine.StaticDecoder, "can_drop", False)
    full = _gen(model, params, eos)
    assert torch.equal(fast.sequences, full.sequences)
    # Log-probs agree to float rounding: a smaller batch may take another matmul kernel (bit-equal on some
    # CPUs, ~1e-7 apart on others).
    torch.testing.assert_close(fast.logprobs, full.logprobs, rtol=0, atol=1e-5)


def test_inverse_cdf_draws_the_distribution():
    probs = torch.tensor([[0.5, 0.0, 0.2, 0.3, 0.0], [0.0, 0.0, 0.0, 0.0, 2.0]])  # rows need not sum to 1
    n = 40_000
    g = torch.Generator().manual_seed(0)
    draws = torch.stack([engine._inverse_cdf(probs, torch.rand((2, 1), generator=g, dtype=torch.float64))
                         for _ in range(n)])
    counts = torch.bincount(draws[:, 0], minlength=5).double()
    expected = probs[0].double() * n
    assert counts[1] == 0 and counts[4] == 0  # zero-probability tokens are never drawn
    sigma = (expected * (1 - probs[0].double())).sqrt().clamp(min=1)
    assert ((counts - expected).abs() <= 4 * sigma).all(), (counts, expected)
    assert (draws[:, 1] == 4).all()


def test_other_architectures_use_the_reference_decoder():
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    gpt2 = GPT2LMHeadModel(GPT2Config(vocab_size=120, n_embd=32, n_layer=2, n_head=2, n_positions=64)).eval()
    assert engine.StaticDecoder.build(gpt2, 2, 8) is None
    s = generate(gpt2, PROMPTS[:3], SamplingParams(max_new_tokens=6), eos_id=NO_EOS, pad_id=PAD,
                 generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        logp, _ = forward_logprobs(gpt2, s.sequences, s.attention_mask, s.prompt_len)
    torch.testing.assert_close(logp, s.logprobs, rtol=1e-4, atol=1e-4)
    # A Llama whose context is shorter than a sliding window would need is still fine; a LoRA-style wrapped
    # projection is not a plain Linear, so the fast path steps aside.
    llama = _llama()
    llama.model.layers[0].self_attn.q_proj = torch.nn.Sequential(llama.model.layers[0].self_attn.q_proj)
    assert engine.StaticDecoder.build(llama, 2, 8) is None
