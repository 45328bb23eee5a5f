"""The sampling engine: the one place that generates text (PPO, GRPO, best-of-n, eval, labeling
candidates and chat all call it). It knows nothing about tokenization: ids in, ids out.

Batched prompts are left-padded so every row's next token sits in the last column; a KV cache makes
each decode step one forward over B new tokens. Log-probs of the sampled tokens are returned at the
sampling temperature from the *unfiltered* distribution softmax(logits / T) — the same quantity the
trainers recompute with `forward_logprobs`, so the PPO ratio starts at exactly 1 (Huang et al. 2024,
"N implementation details", detail on temperature).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class SamplingParams:
    max_new_tokens: int = 64
    temperature: float = 1.0
    top_k: int = 0          # 0 = off
    top_p: float = 1.0      # 1.0 = off
    greedy: bool = False


@dataclass
class Samples:
    """A batch of generations. B = batch, P = padded prompt length, R = generated length."""

    sequences: torch.Tensor       # [B, P+R] left-padded prompt + response (pad after EOS)
    attention_mask: torch.Tensor  # [B, P+R] 1 on real prompt tokens and on response tokens up to EOS
    response_mask: torch.Tensor   # [B, R]   1 on generated tokens up to and including EOS
    logprobs: torch.Tensor        # [B, R]   log p_T(token) at the sampling temperature (0 where masked)
    finished: torch.Tensor        # [B]      bool, True when EOS was produced
    prompt_len: int               # P

    @property
    def responses(self) -> torch.Tensor:
        return self.sequences[:, self.prompt_len:]

    def response_ids(self, eos_id: int | None = None) -> list[list[int]]:
        """Per-row generated ids without padding (EOS dropped when eos_id is given)."""
        out = []
        for row, m in zip(self.responses.tolist(), self.response_mask.tolist()):
            ids = [t for t, k in zip(row, m) if k]
            if eos_id is not None and ids and ids[-1] == eos_id:
                ids = ids[:-1]
            out.append(ids)
        return out


def left_pad(prompts: list[list[int]], pad_id: int, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    P = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), P), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), P), dtype=torch.long)
    for i, p in enumerate(prompts):
        if p:
            ids[i, P - len(p):] = torch.tensor(p)
            mask[i, P - len(p):] = 1
    return ids.to(device), mask.to(device)


def positions(attention_mask: torch.Tensor) -> torch.Tensor:
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


def _filter(logits: torch.Tensor, top_k: int, top_p: float) -> torch.Tensor:
    if top_k and top_k < logits.shape[-1]:
        kth = logits.topk(top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        cum = sorted_logits.softmax(-1).cumsum(-1)
        drop = cum - sorted_logits.softmax(-1) > top_p  # keep the smallest set reaching top_p
        sorted_logits = sorted_logits.masked_fill(drop, float("-inf"))
        logits = torch.full_like(logits, float("-inf")).scatter(-1, order, sorted_logits)
    return logits


@torch.no_grad()
def generate(model, prompts: list[list[int]], params: SamplingParams, eos_id: int, pad_id: int,
             generator: torch.Generator | None = None) -> Samples:
    """Sample continuations for a batch of prompt id lists."""
    from transformers import DynamicCache

    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    ids, mask = left_pad(prompts, pad_id, device)
    B, P = ids.shape
    cache = DynamicCache()
    cache_kw = _cache_kwarg(model)
    out = model(input_ids=ids, attention_mask=mask, position_ids=positions(mask),
                use_cache=True, **{cache_kw: cache})
    logits = out.logits[:, -1, :].float()
    pos = positions(mask)[:, -1]
    tokens, logps = [], []
    done = torch.zeros(B, dtype=torch.bool, device=device)
    alive = torch.ones(B, dtype=torch.long, device=device)
    for _ in range(params.max_new_tokens):
        scaled = logits / max(params.temperature, 1e-6)
        logp_all = F.log_softmax(scaled, dim=-1)
        if params.greedy:
            tok = scaled.argmax(-1)
        else:
            probs = _filter(scaled, params.top_k, params.top_p).softmax(-1)
            tok = torch.multinomial(probs, 1, generator=generator).squeeze(-1)
        tok = torch.where(done, torch.full_like(tok, pad_id), tok)
        alive = (~done).long()
        tokens.append(tok)
        logps.append(logp_all.gather(-1, tok[:, None]).squeeze(-1) * alive)
        done = done | (tok == eos_id)
        mask = torch.cat([mask, alive[:, None]], dim=1)
        if done.all():
            break
        pos = pos + 1
        out = model(input_ids=tok[:, None], attention_mask=mask, position_ids=pos[:, None],
                    use_cache=True, **{cache_kw: cache})
        logits = out.logits[:, -1, :].float()
    model.train(was_training)
    response = torch.stack(tokens, dim=1)
    response_mask = mask[:, P:]
    return Samples(
        sequences=torch.cat([ids, response], dim=1), attention_mask=mask,
        response_mask=response_mask, logprobs=torch.stack(logps, dim=1),
        finished=done, prompt_len=P,
    )


def _cache_kwarg(model) -> str:
    # transformers >= 5.2x renamed `past_key_values` to `cache`; support both.
    import inspect

    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def forward_logprobs(model, sequences: torch.Tensor, attention_mask: torch.Tensor, prompt_len: int,
                     temperature: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-probs [B, R] of the response tokens under `model` at `temperature`, and logits [B, R, V].

    Position t of the response is predicted by the logits at P + t - 1.
    """
    out = model(input_ids=sequences, attention_mask=attention_mask, position_ids=positions(attention_mask))
    logits = out.logits[:, prompt_len - 1:-1, :].float() / max(temperature, 1e-6)
    logp = F.log_softmax(logits, dim=-1).gather(-1, sequences[:, prompt_len:, None]).squeeze(-1)
    return logp, logits


def entropy_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """Per-token entropy [B, R] of softmax(logits)."""
    logp = F.log_softmax(logits, dim=-1)
    return -(logp.exp() * logp).sum(-1)
