"""Render conversations to token ids with a loss mask over assistant tokens — for any chat template.

The mask is found by rendering the conversation prefix by prefix: tokens added by an assistant turn
(the difference between `template(messages[:i], add_generation_prompt=True)` and
`template(messages[:i+1])`) are the only ones that carry loss. This works for the built-in template
and for real models' own templates, so SFT, DPO and reward stages share one rendering.
"""

from __future__ import annotations


def _ids(tokenizer, messages: list[dict], gen_prompt: bool) -> list[int]:
    out = tokenizer.apply_chat_template(messages, tokenize=True, add_generation_prompt=gen_prompt)
    if isinstance(out, dict) or hasattr(out, "keys"):  # transformers 5 returns a BatchEncoding
        out = out["input_ids"]
    return list(out)


def render_chat(tokenizer, messages: list[dict]) -> tuple[list[int], list[int]]:
    """Return (input_ids, loss_mask) where loss_mask[t] = 1 exactly on assistant-written tokens."""
    ids = _ids(tokenizer, messages, gen_prompt=False)
    mask = [0] * len(ids)
    for i, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        start = len(_ids(tokenizer, messages[:i], gen_prompt=True)) if i else 0
        end = len(_ids(tokenizer, messages[: i + 1], gen_prompt=False))
        for t in range(start, min(end, len(ids))):
            mask[t] = 1
    return ids, mask


def render_prompt(tokenizer, prompt: str | list[dict]) -> list[int]:
    """Token ids of a user prompt (or a conversation) followed by the assistant's turn header."""
    messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt
    return _ids(tokenizer, messages, gen_prompt=True)


def render_pair(tokenizer, prompt: str | list[dict], response: str) -> tuple[list[int], int]:
    """Ids of prompt + response (ending with the turn's end token) and where the response starts."""
    messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)
    ids, mask = render_chat(tokenizer, messages + [{"role": "assistant", "content": response}])
    start = len(render_prompt(tokenizer, messages))
    return ids, start
