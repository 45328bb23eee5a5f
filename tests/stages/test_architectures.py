"""Real architectures by path: small Llama, GPT-2 and Qwen2 models built here (offline), saved with their own
tokenizer, and taken through sft -> reward -> dpo -> ppo -> grpo for two steps each — the code path a hub
id takes. GPT-2's tokenizer ships no chat template and no pad token (it gets the documented default and
pads with EOS); the Qwen2 one brings its own ChatML template, which rendering and the loss mask follow.

Run: .venv/bin/python -m pytest tests/stages/test_architectures.py -q
"""

from __future__ import annotations

import json

import pytest
import torch

from rlhfkit.config import parse
from rlhfkit.data.chat import render_chat
from rlhfkit.data.tokenizer import CHAT_TEMPLATE, load_tokenizer

CHATML = ("{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>' + '\n' }}"
          "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")


def _bpe(texts: list[str], specials: list[str]):
    """A byte-level BPE trained on the tiny data, as the `tokenizers` library builds GPT-2's and Qwen2's."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(texts * 3, trainers.BpeTrainer(
        vocab_size=300, special_tokens=specials, show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    return PreTrainedTokenizerFast(tokenizer_object=tok)


def _gpt2(tok_dir, texts):
    from transformers import GPT2Config, GPT2LMHeadModel

    tok = _bpe(texts, ["<|endoftext|>"])
    tok.bos_token = tok.eos_token = "<|endoftext|>"  # GPT-2's: no pad token, no chat template
    cfg = GPT2Config(vocab_size=len(tok), n_positions=128, n_embd=32, n_layer=2, n_head=2,
                     bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    return tok, GPT2LMHeadModel(cfg)


def _qwen2(tok_dir, texts):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    tok = _bpe(texts, ["<|endoftext|>", "<|im_start|>", "<|im_end|>"])
    tok.eos_token, tok.pad_token = "<|im_end|>", "<|endoftext|>"  # Qwen2's: no BOS, ChatML template
    tok.chat_template = CHATML
    cfg = Qwen2Config(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                      tie_word_embeddings=True, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    return tok, Qwen2ForCausalLM(cfg)


def _llama(tok_dir, texts):
    from rlhfkit.model import build_causal_lm

    tok = load_tokenizer(tok_dir)
    return tok, build_causal_lm(tok, "ci", context=128)


@pytest.fixture(scope="module", params=["llama", "gpt2", "qwen2"])
def arch(request, tmp_path_factory, tok_dir, tiny_texts):
    """(name, folder) of a randomly initialised model of that architecture saved with its tokenizer."""
    torch.manual_seed(0)
    tok, model = {"llama": _llama, "gpt2": _gpt2, "qwen2": _qwen2}[request.param](tok_dir, tiny_texts)
    path = tmp_path_factory.mktemp(request.param)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return request.param, path


def test_tokenizer_template_and_loss_mask(arch):
    name, path = arch
    tok = load_tokenizer(path)
    assert tok.pad_token is not None
    # GPT-2 ships none and gets the default; the project's BPE carries the same; Qwen2 keeps its own.
    assert tok.chat_template == (CHATML if name == "qwen2" else CHAT_TEMPLATE)
    ids, mask = render_chat(tok, [{"role": "user", "content": "What is 3 plus 1?"},
                                  {"role": "assistant", "content": "It is 4."}])
    target = tok.decode([i for i, m in zip(ids, mask) if m])
    assert target.lstrip().startswith("It is 4.") and tok.eos_token in target  # the answer and its end token, no prompt


def _run(module, argv: list[str]):
    return module.run(parse(module.Config, argv, getattr(module, "PRESETS", {})))


def test_every_stage_runs_from_a_saved_model(arch, tiny_data, tmp_path):
    from rlhfkit.model.causal_lm import load_causal_lm
    from rlhfkit.model.reward_scorer import load_reward
    from rlhfkit.stages import dpo, grpo, ppo, reward, sft

    name, path = arch
    sft_out = _run(sft, ["--model", str(path), "--data.path", tiny_data["sft"], "--out", str(tmp_path / "sft"),
                         "--optim.max_steps=2", "--optim.eval_every=2", "--optim.batch_size=4", "--patience=0"])
    rm_out = _run(reward, ["--preset", "ci", "--model", str(sft_out), "--data.path", tiny_data["rankings"],
                           "--out", str(tmp_path / "rm"), "--optim.max_steps=2", "--optim.eval_every=2",
                           "--data.val_fraction=0.25", "--gold=false"])
    dpo_out = _run(dpo, ["--preset", "ci", "--model", str(sft_out), "--data.path", tiny_data["rankings"],
                         "--out", str(tmp_path / "dpo"), "--optim.max_steps=2", "--optim.eval_every=2",
                         "--data.val_fraction=0.25"])
    rl = ["--model", str(sft_out), "--reward", str(rm_out), "--rollout.prompts", tiny_data["prompts"],
          "--rollout.batch_prompts=4", "--rollout.max_new_tokens=6"]
    ppo_out = _run(ppo, ["--preset", "ci", *rl, "--out", str(tmp_path / "ppo"), "--ppo.steps=2", "--ppo.epochs=1",
                         "--ppo.minibatch=4"])
    grpo_out = _run(grpo, ["--preset", "ci", *rl, "--out", str(tmp_path / "grpo"), "--grpo.steps=2",
                           "--grpo.group_size=2"])
    for out in (sft_out, dpo_out, ppo_out, grpo_out):
        model = load_causal_lm(out)
        assert model.config.model_type == name
        assert all(torch.isfinite(p).all() for p in model.parameters())
    sft_rows = [json.loads(line) for line in (tmp_path / "sft" / "metrics.jsonl").read_text().splitlines()]
    assert sft_rows[-1]["step"] == 2 and sft_rows[-1]["tokens"] > 0
    ppo_rows = [json.loads(line) for line in (tmp_path / "ppo" / "metrics.jsonl").read_text().splitlines()]
    assert len(ppo_rows) == 2 and all(r["response_length"] > 0 for r in ppo_rows)
    mean, _ = load_reward(rm_out).score_texts(["Tell me about cats."] * 2, ["Sure!", "no"])
    assert torch.isfinite(mean).all()
