"""The sampling engine: returned log-probs equal a fresh forward pass at the sampling temperature, masks stop
at EOS, seeds reproduce, top_k=1 is greedy, and left padding does not change a prompt's continuation.

Run: .venv/bin/python -m pytest tests/rl/test_engine.py -q
"""

from __future__ import annotations

import pytest
import torch

from rlhfkit.rl.engine import SamplingParams, Samples, entropy_from_logits, forward_logprobs, generate

# Prompts of different lengths, so the batch is left-padded.
PROMPTS = [[1, 4, 40, 41, 42, 43, 44, 45, 2, 5], [1, 4, 50, 2, 5], [1, 4, 60, 61, 62, 2, 5], [1, 4, 70, 71, 2, 5]]
PAD = 0
NO_EOS = 299  # an id these tests never use as EOS, for runs whose length must not depend on sampling


def _gen(lm, params, eos=NO_EOS, seed=0, prompts=PROMPTS) -> Samples:
    return generate(lm, prompts, params, eos_id=eos, pad_id=PAD, generator=torch.Generator().manual_seed(seed))


def _eos_mid_sequence(lm, params) -> int:
    """A token sampled at step 3 of row 0: used as EOS, row 0 then ends early while others run on."""
    first = _gen(lm, params)
    return int(first.responses[0, 3])


def _check_masks(s: Samples, eos: int) -> None:
    R = s.responses.shape[1]
    for row, mask, fin in zip(s.responses.tolist(), s.response_mask.tolist(), s.finished.tolist()):
        end = row.index(eos) + 1 if eos in row else R
        assert mask == [1] * end + [0] * (R - end)
        assert fin == (eos in row)
        assert row[end:] == [PAD] * (R - end)
    assert torch.equal(s.attention_mask[:, s.prompt_len:], s.response_mask)
    assert torch.all(s.logprobs[s.response_mask == 0] == 0)


@pytest.mark.parametrize("temperature", [0.7, 1.0])
def test_forward_logprobs_match_sampling(lm, temperature):
    params = SamplingParams(max_new_tokens=10, temperature=temperature)
    eos = _eos_mid_sequence(lm, params)
    s = _gen(lm, params, eos=eos)
    assert s.finished[0] and s.response_mask[0].sum() <= 4  # early EOS happened
    assert not s.finished.all()
    _check_masks(s, eos)
    with torch.no_grad():
        logp, logits = forward_logprobs(lm, s.sequences, s.attention_mask, s.prompt_len, temperature)
    m = s.response_mask.bool()
    assert logp.shape == s.logprobs.shape and logits.shape[:2] == s.logprobs.shape
    torch.testing.assert_close(logp[m], s.logprobs[m], rtol=1e-4, atol=1e-4)
    # And against each row run alone, unpadded, without cache.
    for i, prompt in enumerate(PROMPTS):
        resp = s.responses[i][m[i]].tolist()
        ids = torch.tensor([prompt + resp])
        with torch.no_grad():
            ref = torch.log_softmax(lm(ids).logits[0, len(prompt) - 1:-1] / temperature, -1)
        ref = ref.gather(-1, torch.tensor(resp)[:, None]).squeeze(-1)
        torch.testing.assert_close(s.logprobs[i][m[i]], ref, rtol=1e-4, atol=1e-4)


def test_temperature_changes_logprobs(lm):
    s = _gen(lm, SamplingParams(max_new_tokens=5, temperature=1.0))
    with torch.no_grad():
        hot, _ = forward_logprobs(lm, s.sequences, s.attention_mask, s.prompt_len, 0.5)
    assert not torch.allclose(hot, s.logprobs, atol=1e-3)  # the comparison above is temperature-sensitive


def test_seed_reproducible(lm):
    params = SamplingParams(max_new_tokens=12, temperature=1.0)
    a, b, c = _gen(lm, params, seed=3), _gen(lm, params, seed=3), _gen(lm, params, seed=4)
    assert torch.equal(a.sequences, b.sequences) and torch.equal(a.logprobs, b.logprobs)
    assert not torch.equal(a.sequences, c.sequences)
    assert torch.equal(a.sequences[:, :a.prompt_len], c.sequences[:, :c.prompt_len])


def test_top_k_1_is_greedy(lm):
    greedy = _gen(lm, SamplingParams(max_new_tokens=10, greedy=True))
    top1 = _gen(lm, SamplingParams(max_new_tokens=10, top_k=1), seed=9)
    assert torch.equal(greedy.sequences, top1.sequences)
    torch.testing.assert_close(greedy.logprobs, top1.logprobs)
    tiny_p = _gen(lm, SamplingParams(max_new_tokens=10, top_p=1e-6), seed=9)
    assert torch.equal(greedy.sequences, tiny_p.sequences)


def test_left_padding_same_greedy_continuation(lm):
    params = SamplingParams(max_new_tokens=12, greedy=True)
    eos = int(_gen(lm, params).responses[1, 5])  # make one row stop early in the batch
    batch = _gen(lm, params, eos=eos)
    assert batch.prompt_len == max(map(len, PROMPTS))
    ids = batch.response_ids()
    for i, prompt in enumerate(PROMPTS):
        alone = _gen(lm, params, eos=eos, prompts=[prompt])
        assert alone.prompt_len == len(prompt)
        assert ids[i] == alone.response_ids()[0]
        # Independent reference: transformers' own greedy decoding.
        x = torch.tensor([prompt])
        ref = lm.generate(x, attention_mask=torch.ones_like(x), max_new_tokens=12, do_sample=False,
                          eos_token_id=eos, pad_token_id=PAD)[0, len(prompt):].tolist()
        assert ids[i] == ref[:len(ids[i])] and (len(ids[i]) == len(ref) or ref[len(ids[i])] == PAD)


def test_response_ids_drops_eos_and_padding(lm):
    params = SamplingParams(max_new_tokens=8)
    eos = _eos_mid_sequence(lm, params)
    s = _gen(lm, params, eos=eos)
    with_eos, without = s.response_ids(), s.response_ids(eos_id=eos)
    for w, wo, fin in zip(with_eos, without, s.finished.tolist()):
        assert PAD not in w
        assert (w[-1] == eos and wo == w[:-1]) if fin else (wo == w and len(w) == 8)


def test_entropy_from_logits():
    logits = torch.tensor([[[0.0, 0.0, 0.0, 0.0], [10.0, -10.0, -10.0, -10.0]]])
    ent = entropy_from_logits(logits)
    torch.testing.assert_close(ent[0, 0], torch.log(torch.tensor(4.0)))
    assert ent[0, 1] < 1e-6
