"""Tokenizers: train a byte-level BPE for the built-in world, or load any model's own tokenizer.

The trained tokenizer splits digits into single tokens (arithmetic needs digit-level access, WORLD_NOTES
lesson 3) and is wrapped as a `PreTrainedTokenizerFast` with explicit special tokens and a chat template,
so every later stage renders conversations the same way for the tiny default and for real models.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable

BOS, EOS, PAD = "<|bos|>", "<|end|>", "<|pad|>"
ROLE_TOKENS = ["<|system|>", "<|user|>", "<|assistant|>"]
SPECIAL_TOKENS = [PAD, BOS, EOS, *ROLE_TOKENS]

# Each turn is `<|role|> content<|end|>`; `<|end|>` is EOS, so generation stops at the end of a turn.
# The space keeps a word the same token at the start of a turn as inside text (" Ben", not "Ben"), so
# a model can copy a name from the question into its answer. Generated text is stripped (rl/text.py).
# Documented default for models that ship without a chat template too (see `ensure_chat_template`).
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}"
    "{{ '<|' + m['role'] + '|> ' + m['content'] + eos_token }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>' }}{% endif %}"
)


def train_bpe(texts: Iterable[str], vocab_size: int = 1024, out: str | Path | None = None):
    """Train a byte-level BPE (single-digit tokens) on `texts`; returns a PreTrainedTokenizerFast."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(texts, trainer=trainer)
    fast = wrap(tok)
    if out is not None:
        fast.save_pretrained(out)
    return fast


def wrap(tok):
    from transformers import PreTrainedTokenizerFast

    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=BOS, eos_token=EOS, pad_token=PAD,
        additional_special_tokens=ROLE_TOKENS, padding_side="left",
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def load_tokenizer(name_or_path: str | Path):
    """Load a tokenizer (local folder, hub id, or GGUF file `dir/x.gguf` / `org/name/x.gguf`, which
    transformers rebuilds from the file's metadata), with a pad token and a chat template guaranteed."""
    from transformers import AutoTokenizer

    from ..common import from_pretrained, split_gguf

    tok = from_pretrained(AutoTokenizer, name_or_path)
    if split_gguf(name_or_path)[1] is not None:
        drop_tokens_past_vocab(tok)
    return ensure_chat_template(tok)


def drop_tokens_past_vocab(tok) -> None:
    """Remove added tokens whose ids lie past the file's vocabulary (the model's embedding rows).

    transformers (5.24) builds a GGUF byte-level tokenizer through GPT2Tokenizer, whose default
    unk/bos/eos "<|endoftext|>" becomes a new token when the file's vocabulary lacks it (ours; Llama 3's
    too): a 300-token file loaded as 301 tokens, and text containing "<|endoftext|>" encoded to id 300,
    which the model cannot embed. Every token the file lists is in the backend's base vocabulary, so an
    added token at or past its size is such a leftover."""
    from tokenizers import Tokenizer

    backend = tok.backend_tokenizer
    size = backend.get_vocab_size(with_added_tokens=False)
    spec = json.loads(backend.to_str())
    kept = [t for t in spec["added_tokens"] if t["id"] < size]
    if len(kept) < len(spec["added_tokens"]):
        spec["added_tokens"] = kept
        tok._tokenizer = Tokenizer.from_str(json.dumps(spec))  # the wrapper reads all token state from it


def ensure_chat_template(tok):
    """Give models without a template the documented default; pad with EOS when no pad token exists."""
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    if not getattr(tok, "chat_template", None):
        tok.chat_template = CHAT_TEMPLATE
    tok.padding_side = "left"
    return tok
