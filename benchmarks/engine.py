"""Rollout engine: `rlhfkit.rl.engine.generate` vs HF `model.generate`, sampling 64 new tokens per prompt.

    python -m benchmarks.run --cases engine

Same model (the `tiny` preset; `small` too in full mode), the world's RL prompts rendered with the chat
template (left-padded, lengths differ), temperature 1, no top-k/top-p, EOS disabled on both sides so
every row decodes exactly 64 tokens. The two alternate, several rounds, and each side's best round
counts (the machine is shared; the best round is the least disturbed). Throughput = generated tokens/s.

"losses match" here means: rlhfkit's fast decoder draws exactly the tokens of its reference decoder (HF
forward + DynamicCache) from the same seed, with log-probs within 1e-4. An extra row times that
reference decoder, i.e. the engine before the static cache.
"""

from __future__ import annotations

import os
import time

import torch

from . import common as C

NEW = 64


def sizes(ctx: C.Ctx) -> dict:
    return ctx.pick(smoke=dict(batches=[2], new=4, rounds=2, models=["ci"]),
                    quick=dict(batches=[8, 32, 64], new=NEW, rounds=5, models=["tiny"]),
                    full=dict(batches=[8, 32, 64], new=NEW, rounds=5, models=["tiny", "small"]))


def _ours(model, prompts, new: int, reference: bool = False, eos: int = -1, pad: int = 0, drop: bool = True):
    from rlhfkit.rl import engine

    params = engine.SamplingParams(max_new_tokens=new, temperature=1.0)
    build, can_drop = engine.StaticDecoder.build, engine.StaticDecoder.can_drop
    if reference:  # force the HF-forward decoder
        engine.StaticDecoder.build = classmethod(lambda cls, *a: None)
    engine.StaticDecoder.can_drop = drop
    try:
        return engine.generate(model, prompts, params, eos_id=eos, pad_id=pad,
                               generator=torch.Generator().manual_seed(0))
    finally:
        engine.StaticDecoder.build, engine.StaticDecoder.can_drop = build, can_drop


def _hf(model, ids, mask, new: int, eos: int | None = None, pad: int = 0):
    with torch.no_grad():
        out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=new, do_sample=True, top_k=0,
                             top_p=1.0, temperature=1.0, pad_token_id=pad, eos_token_id=eos)
    assert eos is not None or out.shape[1] == ids.shape[1] + new, "HF generate stopped early"
    return out


def _best(fn, rounds: int) -> tuple[float, float]:
    """(best seconds, peak RSS MB) of `rounds` calls after one warm-up call."""
    fn()
    C.reset_peak_rss()
    best = float("inf")
    for _ in range(rounds):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best, C.peak_rss_mb()


def same_draws(model, prompts, new: int, eos: int = -1, pad: int = 0) -> tuple[bool, str]:
    fast, ref = _ours(model, prompts, new, eos=eos, pad=pad), _ours(model, prompts, new, True, eos, pad)
    same = torch.equal(fast.sequences, ref.sequences)
    gap = float((fast.logprobs - ref.logprobs).abs().max())
    return same and gap < 1e-4, f"same seed: {'identical' if same else 'DIFFERENT'} tokens vs the reference decoder, " \
                                f"log-prob gap {gap:.1e}"


def run(ctx: C.Ctx) -> list[dict]:
    from rlhfkit.data.chat import render_prompt
    from rlhfkit.rl.engine import left_pad

    s = sizes(ctx)
    tok = C.tokenizer(ctx)
    texts = C.rl_prompts(ctx)
    rows = []
    for size in s["models"]:
        model = C.build_lm(tok, size).eval()
        model.generation_config.eos_token_id = None  # decode all `new` tokens
        n = sum(p.numel() for p in model.parameters())
        for B in s["batches"]:
            prompts = [render_prompt(tok, t) for t in texts[:B]]
            ids, mask = left_pad(prompts, 0)
            ok, note = same_draws(model, prompts[:8], min(s["new"], 16))
            best = {"rlhfkit": (float("inf"), 0.0), "peer": (float("inf"), 0.0)}
            for _ in range(s["rounds"]):  # alternate, so both sides see the same machine load
                for side, fn in (("rlhfkit", lambda: _ours(model, prompts, s["new"])),
                                 ("peer", lambda: _hf(model, ids, mask, s["new"]))):
                    t, rss = _best(fn, 1)
                    best[side] = (min(best[side][0], t), max(best[side][1], rss))
            tps = {k: B * s["new"] / v[0] for k, v in best.items()}
            rows.append(C.row(f"engine-{size}@{B}", tps["rlhfkit"], tps["peer"], "tokens/s",
                              "≥ 3× HF generate at batch 32" if B == 32 else "", ok,
                              {k: v[1] for k, v in best.items()},
                              f"{size} Llama ({n / 1e6:.2f}M params), batch {B}, prompt {ids.shape[1]} tokens padded, "
                              f"{s['new']} new; ms/step {1e3 * best['rlhfkit'][0] / s['new']:.2f} vs "
                              f"{1e3 * best['peer'][0] / s['new']:.2f}; best of {s['rounds']}; {note}"))
        rows.append(reference_row(ctx, s, model, size, tok, texts))
    if os.environ.get("RLHFKIT_BENCH_SFT_MODEL"):
        rows.append(eos_row(ctx, s, os.environ["RLHFKIT_BENCH_SFT_MODEL"], texts))
    return rows


def eos_row(ctx, s, folder: str, texts: list[str]) -> dict:
    """A GRPO-like rollout from a trained SFT model (8 prompts × 8 samples, ≤ 48 tokens): rows end at EOS at
    different steps, so dropping finished rows pays; HF `generate` stops only when every row has ended."""
    from rlhfkit.data.chat import render_prompt
    from rlhfkit.data.tokenizer import load_tokenizer
    from rlhfkit.model.causal_lm import load_causal_lm
    from rlhfkit.rl.engine import left_pad

    tok, model = load_tokenizer(folder), load_causal_lm(folder).eval()
    eos, pad, new = tok.eos_token_id, tok.pad_token_id, 48
    prompts = [render_prompt(tok, t) for t in texts[:8] for _ in range(8)]
    ids, mask = left_pad(prompts, pad)
    ok, note = same_draws(model, prompts, new, eos, pad)
    sides = {"rlhfkit": lambda: _ours(model, prompts, new, eos=eos, pad=pad),
             "no-drop": lambda: _ours(model, prompts, new, eos=eos, pad=pad, drop=False),
             "peer": lambda: _hf(model, ids, mask, new, eos, pad)}
    best = {k: float("inf") for k in sides}
    for _ in range(s["rounds"]):
        for k, fn in sides.items():
            best[k] = min(best[k], _best(fn, 1)[0])
    sample = _ours(model, prompts, new, eos=eos, pad=pad)
    n_tok = float(sample.response_mask.sum())
    return C.row("engine-sft@64-eos", n_tok / best["rlhfkit"], n_tok / best["peer"], "tokens/s", "", ok, None,
                 f"{folder}: 8 prompts × 8 samples, ≤{new} new, mean length {n_tok / 64:.1f}, "
                 f"{float(sample.finished.float().mean()):.0%} ended; {best['rlhfkit']:.3f}s vs HF {best['peer']:.3f}s "
                 f"({best['no-drop']:.3f}s without dropping finished rows); best of {s['rounds']}; {note}")


def reference_row(ctx, s, model, size, tok, texts) -> dict:
    """The engine's reference decoder (HF forward + DynamicCache: the decode path before the static cache,
    with today's sampler)."""
    from rlhfkit.data.chat import render_prompt
    from rlhfkit.rl.engine import left_pad

    B = 32 if 32 in s["batches"] else s["batches"][0]
    prompts = [render_prompt(tok, t) for t in texts[:B]]
    ids, mask = left_pad(prompts, 0)
    best = {"rlhfkit": float("inf"), "peer": float("inf")}
    for _ in range(s["rounds"]):
        best["rlhfkit"] = min(best["rlhfkit"], _best(lambda: _ours(model, prompts, s["new"], reference=True), 1)[0])
        best["peer"] = min(best["peer"], _best(lambda: _hf(model, ids, mask, s["new"]), 1)[0])
    tps = {k: B * s["new"] / v for k, v in best.items()}
    return C.row(f"engine-{size}@{B}-reference-decoder", tps["rlhfkit"], tps["peer"], "tokens/s", "", None, None,
                 f"rlhfkit's reference decoder (HF forward + DynamicCache: the decode path before the static "
                 f"cache, today's sampler) vs HF generate; ms/step {1e3 * best['rlhfkit'] / s['new']:.2f} vs "
                 f"{1e3 * best['peer'] / s['new']:.2f}")
