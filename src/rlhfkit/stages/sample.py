"""`rlhfkit sample`: write K sampled responses per prompt to JSONL — candidates for people to rank
(`rlhfkit label add --from samples.jsonl`) or for inspection.

    rlhfkit sample --model runs/demo/sft/model --prompts runs/demo/world/rm_prompts.jsonl --k 4 --out samples/

Writes OUT/samples.jsonl: {"prompt", "responses": [K], "family", "model", "finished": [K]}.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..common import prepare_out, say, seed_everything, set_threads
from ..config import opt


@dataclass
class Config:
    out: str = opt("runs/default/samples", "output folder (samples.jsonl, config.yaml)")
    seed: int = opt(0, "sampling seed")
    model: str = opt("runs/default/sft/model", "model folder or hub id")
    prompts: str = opt("", "prompt JSONL ({prompt, family?, id?}); required")
    k: int = opt(4, "responses per prompt")
    temperature: float = opt(1.0, "sampling temperature")
    top_p: float = opt(1.0, "nucleus sampling threshold (1 = off)")
    top_k: int = opt(0, "top-k sampling (0 = off)")
    max_new_tokens: int = opt(64, "response length limit")
    limit: int = opt(0, "use only the first N prompts (0 = all)")
    batch_size: int = opt(64, "sequences generated together")


PRESETS: dict = {}


def run(cfg: Config) -> Path:
    from ..data.formats import load_prompts, write_jsonl
    from ..data.tokenizer import load_tokenizer
    from ..model.causal_lm import load_causal_lm
    from ..rl.engine import SamplingParams
    from ..rl.text import generate_text

    if not cfg.prompts:
        raise ValueError("--prompts is required (a JSONL file of {\"prompt\": ...} records)")
    set_threads()
    seed_everything(cfg.seed)
    out = prepare_out(cfg.out, cfg)
    records = list(load_prompts(cfg.prompts))
    records = records[: cfg.limit] if cfg.limit else records
    tokenizer, model = load_tokenizer(cfg.model), load_causal_lm(cfg.model)
    params = SamplingParams(cfg.max_new_tokens, cfg.temperature, cfg.top_k, cfg.top_p)
    samples = generate_text(model, tokenizer, [r.prompt for r in records], cfg.k, params, cfg.seed, cfg.batch_size)
    rows = [{"prompt": r.prompt, "responses": [s.response for s in ss], "family": r.family, "id": r.id,
             "model": cfg.model, "finished": [s.finished for s in ss]} for r, ss in zip(records, samples)]
    path = write_jsonl(out / "samples.jsonl", rows)
    say(f"sample: {len(rows)} prompts x {cfg.k} responses -> {path}")
    return path
