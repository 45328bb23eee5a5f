"""Text in, text out over the engine: render prompts with the chat template, sample, decode.

`generate_text` is what eval, best-of-n, labeling candidates, `rlhfkit sample` and chat use; the RL
trainers call the engine directly because they need ids, masks and log-probs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..data.chat import render_prompt
from .engine import SamplingParams, generate


@dataclass
class TextSample:
    prompt: str
    response: str
    finished: bool      # the model ended its turn (EOS) within max_new_tokens
    n_tokens: int


def generate_text(model, tokenizer, prompts: list[str], k: int = 1, params: SamplingParams | None = None,
                  seed: int = 0, batch_size: int = 64, raw: bool = False) -> list[list[TextSample]]:
    """K samples per prompt -> [len(prompts)][k]. `raw=True` feeds prompts as plain text (base models,
    few-shot), without the chat template."""
    params = params or SamplingParams()
    # The generator must live where sampling happens (torch.multinomial on CUDA refuses a CPU one).
    gen = torch.Generator(device=next(model.parameters()).device).manual_seed(seed)
    flat = [p for p in prompts for _ in range(k)]
    out: list[TextSample] = []
    for i in range(0, len(flat), batch_size):
        chunk = flat[i:i + batch_size]
        ids = [encode_prompt(tokenizer, p, raw) for p in chunk]
        s = generate(model, ids, params, tokenizer.eos_token_id, tokenizer.pad_token_id, gen)
        for p, r, fin in zip(chunk, s.response_ids(tokenizer.eos_token_id), s.finished.tolist()):
            out.append(TextSample(p, tokenizer.decode(r, skip_special_tokens=True).strip(), bool(fin), len(r)))
    return [out[j * k:(j + 1) * k] for j in range(len(prompts))]


def encode_prompt(tokenizer, prompt: str, raw: bool = False) -> list[int]:
    if raw:
        bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
        return bos + tokenizer(prompt, add_special_tokens=False)["input_ids"]
    return render_prompt(tokenizer, prompt)
