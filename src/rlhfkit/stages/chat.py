"""`rlhfkit chat`: talk to a model in the terminal, or compare several side by side.

    rlhfkit chat --model runs/demo/ppo/model
    rlhfkit chat --compare runs/demo/pretrain/model runs/demo/sft/model runs/demo/ppo/model
    echo "What colour is the fox?" | rlhfkit chat --compare A B     # one answer per model, then exit

Base vs SFT vs RLHF answers to the same prompt is the recipe's story on one screen. Each turn is a
fresh single-turn prompt (the built-in models are trained on single turns).
"""

from __future__ import annotations

import sys

USAGE = """usage: rlhfkit chat --model DIR | --compare DIR [DIR ...] [flags]

flags:
  --model DIR             chat with one model (folder or hub id)
  --compare DIR [DIR...]  show every model's answer to each prompt, side by side
  --temperature T         sampling temperature (default 0.7; 0 = greedy)
  --max-new-tokens N      response length limit (default 96)
  --seed S                sampling seed (default 0)
Type a prompt and press Enter; an empty line or Ctrl-D quits."""


def parse(argv: list[str]) -> dict:
    opts = {"models": [], "temperature": 0.7, "max_new_tokens": 96, "seed": 0}
    i = 0
    while i < len(argv):
        a = argv[i]
        if a in ("--model", "--compare"):
            i += 1
            while i < len(argv) and not argv[i].startswith("--"):
                opts["models"].append(argv[i])
                i += 1
            continue
        key = {"--temperature": ("temperature", float), "--max-new-tokens": ("max_new_tokens", int),
               "--seed": ("seed", int)}.get(a)
        if key is None or i + 1 >= len(argv):
            raise ValueError(f"unknown or incomplete flag '{a}'\n{USAGE}")
        try:
            opts[key[0]] = key[1](argv[i + 1])
        except ValueError:
            raise ValueError(f"{a}: expected a number, got '{argv[i + 1]}'") from None
        i += 2
    if not opts["models"]:
        raise ValueError(f"give --model DIR or --compare DIR [DIR ...]\n{USAGE}")
    return opts


def main(argv: list[str]) -> int:
    if "-h" in argv or "--help" in argv:
        print(f"{USAGE}\n\n{__doc__.strip()}")
        return 0
    opts = parse(argv)
    from ..data.tokenizer import load_tokenizer
    from ..model.causal_lm import load_causal_lm
    from ..rl.engine import SamplingParams
    from ..rl.text import generate_text

    models = [(m, load_tokenizer(m), load_causal_lm(m)) for m in opts["models"]]
    t = opts["temperature"]
    params = SamplingParams(opts["max_new_tokens"], max(t, 1e-6), greedy=t == 0)
    interactive = sys.stdin.isatty()
    turn = 0
    while True:
        if interactive:
            print("\nyou> ", end="", flush=True)
        line = sys.stdin.readline()
        if not line or not line.strip():
            return 0
        prompt = line.strip()
        for name, tok, model in models:
            (sample,), = generate_text(model, tok, [prompt], 1, params, seed=opts["seed"] + turn)
            tag = f"[{name}]" if len(models) > 1 else "assistant>"
            end = "" if sample.finished else "  [no end of turn]"
            print(f"{tag} {sample.response}{end}", flush=True)
        turn += 1
