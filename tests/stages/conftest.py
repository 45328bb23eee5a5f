"""Tiny stage inputs shared by the LoRA and architecture tests: SFT conversations, K-way rankings and RL
prompts as JSONL files, small enough that each stage runs a few steps in seconds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

TOPICS = ["cats", "dogs", "rain", "tea", "boats", "maps", "owls", "rice", "kites", "bees", "snow", "lamps"]
GOOD = "Sure! Here is a kind answer about {t}."
BAD = ["no", "whatever {t} {t}", "I refuse."]


def _write(path: Path, rows: list[dict]) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


@pytest.fixture(scope="session")
def tiny_texts() -> list[str]:
    """Every string in the tiny data (to train a tokenizer on)."""
    return ([f"What is {i} plus 1? It is {i + 1}." for i in range(24)]
            + [f"Tell me about {t}. " + GOOD.format(t=t) + " " + " ".join(b.format(t=t) for b in BAD)
               for t in TOPICS])


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> dict[str, str]:
    """{"sft", "rankings", "prompts"}: paths of JSONL files for `rlhfkit sft / reward / dpo / ppo`."""
    root = tmp_path_factory.mktemp("tiny_data")
    sft = [{"messages": [{"role": "user", "content": f"What is {i} plus 1?"},
                         {"role": "assistant", "content": f"It is {i + 1}."}]} for i in range(24)]
    rankings = [{"prompt": f"Tell me about {t}.", "responses": [BAD[0], GOOD.format(t=t), BAD[1].format(t=t), BAD[2]],
                 "ranking": [1, [2, 3], 0], "annotator": "a1"} for t in TOPICS]
    prompts = [{"prompt": f"Tell me about {t}."} for t in TOPICS[:8]]
    return {"sft": _write(root / "sft.jsonl", sft), "rankings": _write(root / "rankings.jsonl", rankings),
            "prompts": _write(root / "prompts.jsonl", prompts)}
