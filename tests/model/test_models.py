"""Models: the built Llama saves and reloads exactly, ScalarModel reads scores at the right token and
round-trips, and real architectures (GPT-2, Qwen2; tiny, built locally) load and generate through the same
path a hub id takes.

Run: .venv/bin/python -m pytest tests/model/test_models.py -q
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from rlhfkit.data.tokenizer import load_tokenizer
from rlhfkit.model import ScalarModel, build_causal_lm, load_causal_lm
from rlhfkit.model.scalar import last_token_index
from rlhfkit.rl.engine import SamplingParams
from rlhfkit.rl.text import encode_prompt, generate_text

PROMPTS = ["What is 4 plus 5?", "Where are the owls?", "Ada went to the river with Bo."]


def _batch(tokenizer, texts, side: str):
    tokenizer.padding_side = side
    enc = tokenizer(texts, padding=True, return_tensors="pt", add_special_tokens=False)
    return enc["input_ids"], enc["attention_mask"]


def test_build_save_from_pretrained_equal_logits(tokenizer, tmp_path):
    from transformers import AutoModelForCausalLM

    torch.manual_seed(1)
    model = build_causal_lm(tokenizer, "ci", context=64).eval()
    cfg = model.config
    assert (cfg.pad_token_id, cfg.bos_token_id, cfg.eos_token_id) == (
        tokenizer.pad_token_id, tokenizer.bos_token_id, tokenizer.eos_token_id)
    assert cfg.vocab_size == len(tokenizer) and cfg.max_position_embeddings == 64
    assert cfg.hidden_size == 64 and cfg.num_hidden_layers == 2
    model.save_pretrained(tmp_path)
    again = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    ids = torch.randint(0, len(tokenizer), (3, 20))
    with torch.no_grad():
        torch.testing.assert_close(again(ids).logits, model(ids).logits, rtol=0, atol=0)
    assert again.get_output_embeddings().weight.data_ptr() == again.get_input_embeddings().weight.data_ptr()
    with pytest.raises(ValueError, match="huge"):
        build_causal_lm(tokenizer, "huge")


def _scalar(lm, seed=0) -> ScalarModel:
    torch.manual_seed(seed)
    return ScalarModel.from_causal_lm(lm).eval()


def test_scalar_save_load(lm, tokenizer, tmp_path):
    model = _scalar(lm)
    model.norm_mean.fill_(0.3)
    model.norm_std.fill_(2.0)
    model.save(tmp_path / "rm", tokenizer)
    again = ScalarModel.load(tmp_path / "rm").eval()
    ids, attn = _batch(tokenizer, PROMPTS, "right")
    with torch.no_grad():
        torch.testing.assert_close(again(ids, attn), model(ids, attn), rtol=0, atol=0)
        torch.testing.assert_close(again.score(ids, attn), model.score(ids, attn), rtol=0, atol=0)
        torch.testing.assert_close(model.score(ids, attn), (model(ids, attn) - 0.3) / 2.0)
    assert load_tokenizer(tmp_path / "rm" / "backbone").chat_template == tokenizer.chat_template


def test_score_at_last_real_token_left_and_right_padding(lm, tokenizer):
    model = _scalar(lm)
    with torch.no_grad():
        alone = torch.stack([model(*_batch(tokenizer, [t], "right"))[0] for t in PROMPTS])
        left = model(*_batch(tokenizer, PROMPTS, "left"))
        right = model(*_batch(tokenizer, PROMPTS, "right"))
        torch.testing.assert_close(left, alone, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(right, alone, rtol=1e-4, atol=1e-5)
        # Reference: the head applied to the backbone's last hidden state of each unpadded sequence.
        for i, text in enumerate(PROMPTS):
            ids = torch.tensor([tokenizer.encode(text, add_special_tokens=False)])
            h = model.backbone(input_ids=ids).last_hidden_state[0, -1]
            torch.testing.assert_close(alone[i], model.head(h)[0], rtol=1e-4, atol=1e-5)
    assert alone.std() > 0  # distinct texts get distinct scores (so the comparison above means something)


def test_last_token_index():
    attn = torch.tensor([[1, 1, 1, 0, 0], [0, 0, 1, 1, 1], [1, 1, 1, 1, 1], [0, 1, 0, 0, 0]])
    assert last_token_index(attn).tolist() == [2, 4, 4, 1]


def test_head_init_std():
    class Body(nn.Module):
        config = type("C", (), {"hidden_size": 16})()

    torch.manual_seed(0)
    d = 20_000
    head = ScalarModel(Body(), hidden_size=d).head
    want = 1 / math.sqrt(d + 1)
    # Sample std of d normals is within ~1% at d = 20k; nn.Linear's default init would be off by sqrt(3).
    assert abs(head.weight.std().item() - want) / want < 0.03
    assert abs(head.weight.mean().item()) < 5 * want / math.sqrt(d)  # 5 standard errors
    assert torch.all(head.bias == 0)


def _real_models(tokenizer):
    from transformers import GPT2Config, GPT2LMHeadModel, Qwen2Config, Qwen2ForCausalLM

    ids = dict(bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    return {
        "gpt2": GPT2LMHeadModel(GPT2Config(vocab_size=len(tokenizer), n_positions=128, n_embd=32, n_layer=2,
                                           n_head=2, **ids)),
        "qwen2": Qwen2ForCausalLM(Qwen2Config(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64,
                                              num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                              max_position_embeddings=128, **ids)),
    }


@pytest.mark.parametrize("arch", ["gpt2", "qwen2"])
def test_real_architecture_load_and_generate(arch, tokenizer, tmp_path):
    """Save a tiny GPT-2 / Qwen2 with a tokenizer lacking a pad token and a chat template (like many hub
    models), then load both as a hub id would be and sample through `generate_text`."""
    torch.manual_seed(0)
    model = _real_models(tokenizer)[arch]
    tokenizer.pad_token = None
    tokenizer.chat_template = None
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    lm, tok = load_causal_lm(tmp_path), load_tokenizer(tmp_path)
    assert tok.pad_token_id == tok.eos_token_id and tok.chat_template
    params = SamplingParams(max_new_tokens=8, greedy=True)
    out = generate_text(lm, tok, PROMPTS, k=2, params=params, seed=0, batch_size=4)
    assert [len(row) for row in out] == [2] * len(PROMPTS)
    for prompt, row in zip(PROMPTS, out):
        assert {s.prompt for s in row} == {prompt}
        assert row[0].response == row[1].response  # greedy: the k copies agree
        assert 1 <= row[0].n_tokens <= 8 and row[0].finished == (row[0].n_tokens < 8)
        # Independent reference: HF generate (greedy, KV cache) on the prompt alone.
        ids = torch.tensor([encode_prompt(tok, prompt)])
        ref = lm.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=8, do_sample=False,
                          eos_token_id=tok.eos_token_id, pad_token_id=tok.eos_token_id)[0, ids.shape[1]:].tolist()
        if tok.eos_token_id in ref:
            ref = ref[:ref.index(tok.eos_token_id)]
        assert row[0].response == tok.decode(ref, skip_special_tokens=True)
    sampled = generate_text(lm, tok, PROMPTS[:1], k=3, params=SamplingParams(max_new_tokens=6), seed=1)
    assert len({s.response for s in sampled[0]}) > 1  # sampling at T=1 on a random model varies
