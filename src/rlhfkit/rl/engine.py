"""The sampling engine: the one place that generates text (PPO, GRPO, best-of-n, eval, labeling
candidates and chat all call it). It knows nothing about tokenization: ids in, ids out.

Batched prompts are left-padded so every row's next token sits in the last column, and each decode
step is one forward over the new tokens against a KV cache. Log-probs of the sampled tokens are returned
at the sampling temperature from the *unfiltered* distribution softmax(logits / T) — the same quantity
the trainers recompute with `forward_logprobs`, so the PPO ratio starts at exactly 1 (Huang et al.
2024, "N implementation details", detail on temperature).

Two decoders behind one sampling loop:
- `StaticDecoder` (Llama, Mistral, Qwen2: every built-in model): the model's own weights driven
  directly, q|k|v and gate|up fused into one matmul each, a KV cache preallocated once as
  [layers, B, kv_heads, P+R, head_dim] and written in place, RoPE tables computed once, no per-step
  mask building, and rows that have ended dropped from the batch once half of them have. HF's per-step
  work (a causal mask rebuilt, cache tensors concatenated, dozens of module calls) dominated decode
  time on small models; benchmarks/README.md has the figures.
- `HFDecoder`: any other causal LM, through its own forward and a `DynamicCache` (the reference path).

Sampling draws one uniform per batch row per step and inverts the CDF, so a row's tokens depend only
on the seed and its own logits: the two decoders, and runs with or without dropped rows, give the
same tokens from the same seed.
"""

from __future__ import annotations

import inspect
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


def _sample(logits: torch.Tensor, params: SamplingParams, u: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Next tokens [B] and their log-probs [B] under softmax(logits / T), unfiltered. logits [B, V] fp32
    (scaled in place); u [B, 1] float64 uniforms (None when greedy)."""
    scaled = logits.div_(max(params.temperature, 1e-6))
    lse = scaled.logsumexp(-1, keepdim=True)
    if params.greedy:
        tok = scaled.argmax(-1)
    else:
        filtered = params.top_k or params.top_p < 1.0
        probs = _filter(scaled, params.top_k, params.top_p).softmax(-1) if filtered else (scaled - lse).exp_()
        tok = _inverse_cdf(probs, u)
    return tok, scaled.gather(-1, tok[:, None])[:, 0] - lse[:, 0]


def _inverse_cdf(probs: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """One draw per row of probs [B, V] (unnormalised): the first token whose cumulative mass exceeds u·total.

    Exact inverse-CDF sampling from one uniform per row; `torch.multinomial` draws B·V exponentials
    instead, which on CPU cost more than the model's forward at batch 64. Float64 keeps the CDF exact
    enough for large vocabularies."""
    cdf = probs.double().cumsum_(-1)
    return torch.searchsorted(cdf, u * cdf[:, -1:], right=True)[:, 0].clamp_(max=probs.shape[-1] - 1)


def _uniforms(n: int, generator: torch.Generator | None, device) -> torch.Tensor:
    """n float64 uniforms [n, 1] drawn on the generator's device (a CPU generator can drive a GPU model, and the
    same seed then gives the same tokens on either), moved to `device`."""
    where = generator.device if generator is not None else device
    return torch.rand((n, 1), generator=generator, device=where, dtype=torch.float64).to(device)


@torch.no_grad()
def generate(model, prompts: list[list[int]], params: SamplingParams, eos_id: int, pad_id: int,
             generator: torch.Generator | None = None, span: tuple[int, int] | None = None) -> Samples:
    """Sample continuations for a batch of prompt id lists.

    `span` = (offset, total): these prompts are rows offset.. of a batch of `total` sharded across processes
    (rl/distributed.py); each step draws `total` uniforms and uses these rows', as one process would."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    ids, mask = left_pad(prompts, pad_id, device)
    B, P = ids.shape
    R = params.max_new_tokens
    offset, total = span or (0, B)
    decoder = StaticDecoder.build(model, B, P + R) or HFDecoder(model)
    tokens = torch.full((B, R), pad_id, dtype=torch.long, device=device)
    logps = torch.zeros((B, R), device=device)
    alive = torch.zeros((B, R), dtype=torch.long, device=device)
    done = torch.zeros(B, dtype=torch.bool, device=device)
    rows = torch.arange(B, device=device)  # the batch rows the decoder still computes, in its order
    logits = decoder.prefill(ids, mask)
    n = 0
    for t in range(R):
        # One uniform per batch row every step, whichever rows are still decoded: a row's draws do not
        # depend on which other rows have been dropped, so dropping finished rows changes no token.
        u = None if params.greedy else _uniforms(total, generator, device)[offset:offset + B]
        tok, logp = _sample(logits, params, None if u is None else u[rows])
        ended = done[rows]  # finished before this step: emit padding
        tok.masked_fill_(ended, pad_id)
        tokens[rows, t], logps[rows, t], alive[rows, t] = tok, logp.masked_fill_(ended, 0.0), (~ended).long()
        done[rows] = ended | (tok == eos_id)
        n = t + 1
        if t + 1 == R or bool(done.all()):
            break
        attend = (~ended).long()  # this token's attention-mask column (EOS itself is attended)
        running = ~done[rows]
        if decoder.can_drop and int(running.sum()) * 2 <= len(rows):  # drop finished rows once half are done
            keep = running.nonzero()[:, 0]
            decoder.keep(keep)
            rows, tok, attend = rows[keep], tok[keep], attend[keep]
        logits = decoder.step(tok, P + t, attend)
    model.train(was_training)
    response_mask = alive[:, :n]
    return Samples(
        sequences=torch.cat([ids, tokens[:, :n]], dim=1), attention_mask=torch.cat([mask, response_mask], dim=1),
        response_mask=response_mask, logprobs=logps[:, :n], finished=done, prompt_len=P,
    )


class HFDecoder:
    """Any causal LM through its own forward and a `DynamicCache` (the reference path)."""

    can_drop = False  # finished rows stay in the batch, masked

    def __init__(self, model):
        from transformers import DynamicCache

        self.model, self.cache = model, DynamicCache()
        # transformers >= 5.2x renamed `past_key_values` to `cache`; support both.
        # (A PEFT wrapper takes **kwargs: ask the model it wraps.)
        base = model.get_base_model() if hasattr(model, "get_base_model") else model
        self.kw = "cache" if "cache" in inspect.signature(base.forward).parameters else "past_key_values"

    def prefill(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        self.mask, self.pos = mask, positions(mask)[:, -1]
        out = self.model(input_ids=ids, attention_mask=mask, position_ids=positions(mask), use_cache=True,
                         **{self.kw: self.cache})
        return out.logits[:, -1, :].float()

    def step(self, tok: torch.Tensor, col: int, alive: torch.Tensor) -> torch.Tensor:
        self.mask = torch.cat([self.mask, alive[:, None]], dim=1)
        self.pos = self.pos + 1
        out = self.model(input_ids=tok[:, None], attention_mask=self.mask, position_ids=self.pos[:, None],
                         use_cache=True, **{self.kw: self.cache})
        return out.logits[:, -1, :].float()


_STATIC_TYPES = ("llama", "mistral", "qwen2")
_POSITION_ONLY_ROPE = ("default", "linear", "llama3")  # cos/sin depend on the position alone
_FUSE_MAX_PARAMS = 32_000_000  # per layer; above it a weight copy per call costs more than it saves


class StaticDecoder:
    """Decode a Llama-family model with its own weights and a preallocated KV cache.

    Mirrors transformers' `modeling_llama` op for op (RMSNorm, rotary embedding, attention with
    grouped KV heads, SwiGLU MLP, tied or untied head), so logits agree with `model(...)` to float
    rounding; `build` returns None for anything else (other architectures, LoRA-wrapped layers,
    sliding-window or length-dependent RoPE), and the caller falls back to `HFDecoder`.
    """

    can_drop = True  # `keep` shrinks the batch to the rows still decoding

    @classmethod
    def build(cls, model, batch: int, length: int) -> "StaticDecoder | None":
        cfg = getattr(model, "config", None)
        body = getattr(model, "model", None)
        # A PEFT wrapper's `.model` is the wrapped causal LM, not the decoder body: use the HF path.
        if cfg is None or getattr(cfg, "model_type", None) not in _STATIC_TYPES or body is None \
                or hasattr(model, "peft_config") or not hasattr(body, "embed_tokens"):
            return None
        rope = (getattr(cfg, "rope_parameters", None) or {}).get("rope_type", "default")
        window = getattr(cfg, "sliding_window", None)
        if getattr(cfg, "use_sliding_window", True) is False:
            window = None
        layer_types = set(getattr(cfg, "layer_types", None) or ["full_attention"])
        linear = (torch.nn.Linear,)
        ok = (rope in _POSITION_ONLY_ROPE and (window is None or window >= length)
              and layer_types == {"full_attention"} and type(getattr(model, "lm_head", None)) in linear
              and type(body.embed_tokens) is torch.nn.Embedding
              and all(type(getattr(layer.self_attn, n, None)) in linear for layer in body.layers
                      for n in ("q_proj", "k_proj", "v_proj", "o_proj"))
              and all(type(getattr(layer.mlp, n, None)) in linear for layer in body.layers
                      for n in ("gate_proj", "up_proj", "down_proj"))
              and not any(hasattr(layer.self_attn, "q_norm") for layer in body.layers))
        return cls(model, batch, length) if ok else None

    def __init__(self, model, batch: int, length: int):
        cfg, body = model.config, model.model
        self.model, self.body = model, body
        w = body.embed_tokens.weight
        attn = body.layers[0].self_attn
        self.H, self.Hkv, self.D = cfg.num_attention_heads, cfg.num_key_value_heads, attn.head_dim
        self.scale, self.eps = attn.scaling, body.norm.variance_epsilon
        self.fused = [self._fuse(layer) for layer in body.layers]
        # The static cache: every row writes column P + t at step t (left padding aligns the rows).
        self.k = torch.zeros((len(body.layers), batch, self.Hkv, length, self.D), dtype=w.dtype, device=w.device)
        self.v = torch.zeros_like(self.k)
        cos, sin = body.rotary_emb(self.k[0, :1, 0], torch.arange(length, device=w.device)[None])  # [1, length, D]
        half = self.D // 2
        # rotate_half(x) * sin == roll(x, D/2) * sin_signed with sin_signed = [-sin_1, sin_2]
        self.cos, self.sin = cos[0], torch.cat([-sin[0, :, :half], sin[0, :, half:]], -1)
        self.bias = None  # [B, length] additive attention mask: -inf on padding keys

    @staticmethod
    def _fuse(layer) -> tuple:
        """q|k|v and gate|up weights concatenated: two matmuls instead of five per layer. A copy per
        generate call (weights change between RL steps); layers too large to copy cheaply stay unfused."""
        a, m = layer.self_attn, layer.mlp
        if sum(p.numel() for p in layer.parameters()) > _FUSE_MAX_PARAMS:
            return None
        qkv = [a.q_proj, a.k_proj, a.v_proj]
        bias = None if a.q_proj.bias is None else torch.cat([x.bias for x in qkv])
        gu_bias = None if m.gate_proj.bias is None else torch.cat([m.gate_proj.bias, m.up_proj.bias])
        return (torch.cat([x.weight for x in qkv]), bias,
                torch.cat([m.gate_proj.weight, m.up_proj.weight]), gu_bias)

    def _norm(self, x: torch.Tensor, norm) -> torch.Tensor:
        if x.dtype == torch.float32:
            return F.rms_norm(x, (x.shape[-1],), norm.weight, self.eps)
        var = x.float().pow(2).mean(-1, keepdim=True)  # as LlamaRMSNorm: statistics in fp32
        return norm.weight * (x.float() * torch.rsqrt(var + self.eps)).to(x.dtype)

    def _layer(self, i: int, x: torch.Tensor, cos, sin, start: int, bias: torch.Tensor) -> torch.Tensor:
        layer, fused = self.body.layers[i], self.fused[i]
        a, m = layer.self_attn, layer.mlp
        B, S, _ = x.shape
        H, Hkv, D, end = self.H, self.Hkv, self.D, start + S
        h = self._norm(x, layer.input_layernorm)
        qkv = (F.linear(h, fused[0], fused[1]) if fused else
               torch.cat([a.q_proj(h), a.k_proj(h), a.v_proj(h)], -1)).view(B, S, H + 2 * Hkv, D).transpose(1, 2)
        qk = qkv[:, :H + Hkv]
        qk = qk * cos + qk.roll(D // 2, -1) * sin  # RoPE on the query and key heads at once
        self.k[i, :, :, start:end] = qk[:, H:]
        self.v[i, :, :, start:end] = qkv[:, H + Hkv:]
        o = F.scaled_dot_product_attention(qk[:, :H], self.k[i, :, :, :end], self.v[i, :, :, :end],
                                           attn_mask=bias, scale=self.scale, enable_gqa=H != Hkv)
        x = x + a.o_proj(o.transpose(1, 2).reshape(B, S, H * D))
        h = self._norm(x, layer.post_attention_layernorm)
        if fused:
            gate, up = F.linear(h, fused[2], fused[3]).chunk(2, -1)
        else:
            gate, up = m.gate_proj(h), m.up_proj(h)
        return x + m.down_proj(m.act_fn(gate) * up)

    def _forward(self, ids: torch.Tensor, pos: torch.Tensor, start: int, bias: torch.Tensor) -> torch.Tensor:
        """Logits [B, V] (fp32) after S new tokens ids [B, S] at positions pos [B, S], written to cache
        columns start..start+S-1; bias [B, 1, S, start+S] is the additive attention mask."""
        cos, sin = self.cos[pos][:, None], self.sin[pos][:, None]  # [B, 1, S, D]
        x = self.body.embed_tokens(ids)
        for i in range(len(self.fused)):
            x = self._layer(i, x, cos, sin, start, bias)
        return self.model.lm_head(self._norm(x[:, -1], self.body.norm)).float()

    def prefill(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        B, P = ids.shape
        dev, dtype = ids.device, self.k.dtype
        self.bias = torch.zeros((B, self.k.shape[3]), dtype=dtype, device=dev)
        self.bias[:, :P].masked_fill_(mask == 0, float("-inf"))
        # Causal, padding keys hidden; each token also sees itself, so the queries at pad positions (whose
        # outputs nothing reads) attend to something rather than producing NaN rows.
        causal = torch.ones((P, P), dtype=torch.bool, device=dev).tril()
        attend = (causal & (mask[:, None, :] != 0)) | torch.eye(P, dtype=torch.bool, device=dev)
        bias = torch.zeros((B, 1, P, P), dtype=dtype, device=dev).masked_fill_(~attend[:, None], float("-inf"))
        self.pos = positions(mask)[:, -1]
        return self._forward(ids, positions(mask), 0, bias)

    def keep(self, rows: torch.Tensor) -> None:
        """Continue with these batch rows only (finished rows dropped): one copy of the cache."""
        self.k, self.v = self.k[:, rows], self.v[:, rows]
        self.bias, self.pos = self.bias[rows], self.pos[rows]

    def step(self, tok: torch.Tensor, col: int, alive: torch.Tensor) -> torch.Tensor:
        # Generated columns stay visible after a row's EOS: that row's outputs are discarded, and this keeps
        # the mask fixed (no per-step update) and every attention row non-empty.
        self.pos = self.pos + 1
        return self._forward(tok[:, None], self.pos[:, None], col, self.bias[:, None, None, :col + 1])


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
