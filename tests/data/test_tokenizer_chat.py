"""Tokenizer training and chat rendering: BPE round-trip, digit splitting, special tokens, and the assistant
loss mask for the built-in template and for a different (ChatML-style) template.

Run: .venv/bin/python -m pytest tests/data/test_tokenizer_chat.py -q
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rlhfkit.data.chat import render_chat, render_pair, render_prompt
from rlhfkit.data.tokenizer import BOS, EOS, PAD, ROLE_TOKENS, SPECIAL_TOKENS, ensure_chat_template

CHATML = ("{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>\n' }}"
          "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")

CONV = [
    {"role": "system", "content": "You are a careful helper."},
    {"role": "user", "content": "Ada has 12 apples. Bo gives her 7. How many?"},
    {"role": "assistant", "content": "Ada has 19 apples."},
    {"role": "user", "content": "And if she eats 3?"},
    {"role": "assistant", "content": " Then 16, because 19 - 3 = 16!"},
]

TEXTS = [
    "Ada has 12 apples.",
    "What is 4096 + 17? It is 4113.",
    "  leading spaces, trailing  ",
    "a , b . c ! d ? (e) [f] {g} \"h\" 'i' — j… k",
    "tabs\tand\nnew\n\nlines\r\n",
    "ünïcödé, 日本語, Ελληνικά, emoji 🙂🚀 and 𝔘𝔫𝔦",
    "don't won't it's",
    "x=1;y=2;print(x+y)  # code",
    "",
]


def enc(tok, text: str) -> list[int]:
    return tok.encode(text, add_special_tokens=False)


@pytest.mark.parametrize("text", TEXTS)
def test_round_trip(tokenizer, text):
    assert tokenizer.decode(enc(tokenizer, text)) == text


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=40))
def test_round_trip_any_text(tok_dir, text):
    from rlhfkit.data.tokenizer import load_tokenizer

    tok = _cached(tok_dir, load_tokenizer)
    if any(s in text for s in SPECIAL_TOKENS):
        return
    assert tok.decode(enc(tok, text)) == text


_CACHE: dict = {}


def _cached(path, load):
    if path not in _CACHE:
        _CACHE[path] = load(path)
    return _CACHE[path]


def test_digits_are_single_tokens(tokenizer):
    for text in ["1234567890", "x 4096 y", "3.14159", "-42", "2024-01-31"]:
        digits = [c for c in text if c.isdigit()]
        pieces = [tokenizer.decode([i]) for i in enc(tokenizer, text)]
        assert [p for p in pieces if any(c.isdigit() for c in p)] == digits, pieces


def test_special_tokens(tokenizer):
    assert tokenizer.convert_tokens_to_ids(SPECIAL_TOKENS) == list(range(len(SPECIAL_TOKENS)))
    assert (tokenizer.pad_token, tokenizer.bos_token, tokenizer.eos_token) == (PAD, BOS, EOS)
    assert (tokenizer.pad_token_id, tokenizer.bos_token_id, tokenizer.eos_token_id) == (0, 1, 2)
    for i, s in enumerate(SPECIAL_TOKENS):
        assert enc(tokenizer, s) == [i]
        assert enc(tokenizer, f"ab{s}cd") == enc(tokenizer, "ab") + [i] + enc(tokenizer, "cd")
    assert len(tokenizer) == 300
    assert tokenizer.padding_side == "left"
    assert tokenizer.decode(enc(tokenizer, f"hi{EOS}"), skip_special_tokens=True) == "hi"


def _reference(tok, messages):
    """Built-in template by hand: bos, then <|role|>, " " + content, <|end|> per turn; loss on the
    assistant's " " + content + <|end|> (the space makes a turn's first word the same token as in text)."""
    ids, mask = [tok.bos_token_id], [0]
    for m in messages:
        role = tok.convert_tokens_to_ids(f"<|{m['role']}|>")
        body = enc(tok, " " + m["content"]) + [tok.eos_token_id]
        ids += [role] + body
        mask += [0] + [int(m["role"] == "assistant")] * len(body)
    return ids, mask


def test_render_chat_mask_multi_turn(tokenizer):
    ids, mask = render_chat(tokenizer, CONV)
    assert (ids, mask) == _reference(tokenizer, CONV)
    # The masked tokens decode to exactly the assistant turns, each closed by the end token.
    masked = tokenizer.decode([t for t, k in zip(ids, mask) if k])
    assert masked == " " + CONV[2]["content"] + EOS + " " + CONV[4]["content"] + EOS


def test_render_prompt_and_pair(tokenizer):
    prompt, response = "What is 4 plus 5?", "It is 9."
    p_ids = render_prompt(tokenizer, prompt)
    user, assistant = tokenizer.convert_tokens_to_ids(ROLE_TOKENS[1:])
    assert p_ids == [tokenizer.bos_token_id, user] + enc(tokenizer, " " + prompt) + [tokenizer.eos_token_id, assistant]
    ids, start = render_pair(tokenizer, prompt, response)
    assert start == len(p_ids)
    assert ids[:start] == p_ids
    assert ids[start:] == enc(tokenizer, " " + response) + [tokenizer.eos_token_id]
    # A conversation prompt: the response starts after the whole history's assistant header.
    ids, start = render_pair(tokenizer, CONV[:4], "Then 16.")
    assert ids[:start] == render_prompt(tokenizer, CONV[:4])
    assert tokenizer.decode(ids[start:]) == " Then 16." + EOS


def _chatml(tokenizer):
    tokenizer.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
    tokenizer.chat_template = CHATML
    return tokenizer


def test_render_chat_with_chatml_template(tokenizer):
    """Another template: the prefix method must find the assistant tokens without knowing the format."""
    tok = _chatml(tokenizer)
    ids, mask = render_chat(tok, CONV)
    ref_ids, ref_mask = [], []
    for m in CONV:  # special tokens split the text, so turns tokenize independently
        head = enc(tok, f"<|im_start|>{m['role']}\n")
        body = enc(tok, m["content"] + "<|im_end|>\n")
        ref_ids += head + body
        ref_mask += [0] * len(head) + [int(m["role"] == "assistant")] * len(body)
    assert ids == ref_ids
    assert mask == ref_mask
    masked = tok.decode([t for t, k in zip(ids, mask) if k])
    assert masked == CONV[2]["content"] + "<|im_end|>\n" + CONV[4]["content"] + "<|im_end|>\n"
    ids, start = render_pair(tok, "Hi?", "Hello.")
    assert tok.decode(ids[:start]) == "<|im_start|>user\nHi?<|im_end|>\n<|im_start|>assistant\n"
    assert tok.decode(ids[start:]) == "Hello.<|im_end|>\n"


def test_ensure_chat_template_defaults(tokenizer):
    tokenizer.chat_template = None
    tokenizer.pad_token = None
    tokenizer.padding_side = "right"
    tok = ensure_chat_template(tokenizer)
    assert tok.pad_token == EOS and tok.pad_token_id == tok.eos_token_id
    assert tok.padding_side == "left"
    assert render_chat(tok, CONV) == _reference(tok, CONV)


def test_saved_tokenizer_reloads_identically(tokenizer, tmp_path):
    from rlhfkit.data.tokenizer import load_tokenizer

    tokenizer.save_pretrained(tmp_path)
    again = load_tokenizer(tmp_path)
    assert render_chat(again, CONV) == render_chat(tokenizer, CONV)
    assert again.chat_template == tokenizer.chat_template
    for text in TEXTS:
        assert enc(again, text) == enc(tokenizer, text)
