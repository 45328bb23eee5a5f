"""Peak memory of PPO's memory options, each in its own process so each peak is the option's own.

    python -m benchmarks.run --cases memory

PPO holds a policy, a reference, a value model and a reward model. The options measured, by `rlhfkit ppo` for a
few steps on the tiny preset Llama and on a ~27M-parameter Llama (common.LM_27M), with a reward model of the
same size (the value model is initialised from it, as by default):

- `default`: four models; policy and value each with gradients and Adam state;
- `share_value_backbone`: a value head on the policy's trunk (`--ppo.share_value_backbone`): no value model;
- `lora_ref`: LoRA r=8 (`--lora.r 8`): the reference is the policy with adapters off, and only adapters train;
- `both`: the two together.

ratio = default peak ÷ the option's peak (> 1: the option saves memory). `--ppo.offload` moves models only on
CUDA (on a CPU they already live in RAM), so it is not measured here. The best-by-gold snapshot is switched off
(`--monitor.keep_best=false`): it holds one more copy of the policy whatever the option.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from . import common as C

OPTIONS = {
    "default": [],
    "share_value_backbone": ["--ppo.share_value_backbone"],
    "lora_ref": ["--lora.r=8"],
    "both": ["--ppo.share_value_backbone", "--lora.r=8"],
}
HELD = {
    "default": "policy + Adam, reference, value + Adam, reward",
    "share_value_backbone": "policy + value head + one Adam, reference, reward",
    "lora_ref": "policy with adapters + Adam on adapters (reference = adapters off), value + Adam, reward",
    "both": "policy with adapters + value head + Adam on adapters and head, reward",
}


def sizes(ctx: C.Ctx) -> list[dict]:
    return ctx.pick(
        smoke=[dict(name="ci", model="ci", prompts=4, tokens=8, steps=1, minibatch=4)],
        quick=[dict(name="tiny", model="tiny", prompts=16, tokens=24, steps=1, minibatch=8),
               dict(name="27m", model=C.LM_27M, prompts=16, tokens=24, steps=1, minibatch=8)],
        full=[dict(name="tiny", model="tiny", prompts=32, tokens=32, steps=2, minibatch=16),
              dict(name="27m", model=C.LM_27M, prompts=32, tokens=32, steps=2, minibatch=16)])


def models(ctx: C.Ctx, s: dict) -> tuple[Path, Path, int]:
    """(policy folder, reward folder, parameters per model), built once per run: fresh weights, since memory
    does not depend on what the weights are."""
    from rlhfkit.model.scalar import ScalarModel

    tok = C.tokenizer(ctx)
    root = ctx.workdir / f"memory-{s['name']}"
    policy, reward = root / "policy", root / "reward"
    lm = C.build_lm(tok, s["model"], seed=0)
    if not (policy / "config.json").exists():
        lm.save_pretrained(policy)
        tok.save_pretrained(policy)
        ScalarModel.from_causal_lm(C.build_lm(tok, s["model"], seed=1)).save(reward, tok)
    return policy, reward, sum(p.numel() for p in lm.parameters())


def run_option(flags: list[str], policy: Path, reward: Path, prompts: Path, s: dict, threads: int) -> dict:
    """`rlhfkit ppo` with `flags` in a fresh interpreter (this module's __main__); its peak RSS and wall time."""
    with tempfile.TemporaryDirectory() as tmp:
        result = Path(tmp) / "result.json"
        argv = ["--model", str(policy), "--reward", str(reward), "--rollout.prompts", str(prompts),
                "--out", str(Path(tmp) / "ppo"), f"--rollout.batch_prompts={s['prompts']}",
                f"--rollout.max_new_tokens={s['tokens']}", f"--ppo.steps={s['steps']}", "--ppo.epochs=1",
                f"--ppo.minibatch={s['minibatch']}", "--monitor.keep_best=false", *flags]
        env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "TRANSFORMERS_VERBOSITY": "error",
               **({"OMP_NUM_THREADS": str(threads)} if threads else {})}
        proc = subprocess.run([sys.executable, "-m", "benchmarks.memory", str(result), *argv], env=env,
                              cwd=Path(__file__).parent.parent, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"rlhfkit ppo {' '.join(flags)} failed:\n{(proc.stderr or proc.stdout)[-2000:]}")
        return json.loads(result.read_text())


def run(ctx: C.Ctx) -> list[dict]:
    prompts = C.world(ctx)["rl"]
    rows = []
    for s in sizes(ctx):
        policy, reward, n = models(ctx, s)
        got = {name: run_option(flags, policy, reward, prompts, s, ctx.threads) for name, flags in OPTIONS.items()}
        base = got["default"]["peak"]
        for name, r in got.items():
            flags = " ".join(OPTIONS[name]) or "(defaults)"
            rows.append(C.row(
                f"memory-{s['name']}-{name}", r["peak"], base, "MB peak RSS", "", None, r["peak"],
                f"rlhfkit ppo {flags}; peer = the default's peak; {n / 1e6:.1f}M-param Llama policy and reward; "
                f"holds {HELD[name]}; {s['steps']} steps × {s['prompts']} prompts × ≤{s['tokens']} new tokens, "
                f"1 epoch, minibatch {s['minibatch']}; RSS after imports {r['floor']:.0f} MB; "
                f"ppo wall {r['wall']:.0f}s", higher_is_faster=False, floor_mb=r["floor"]))
    return rows


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def _child(result: str, argv: list[str]) -> None:
    """One option: import everything first (so `floor` is the interpreter + libraries), then run the stage."""
    import peft  # noqa: F401  (imported by every option, so the floors are equal)
    import transformers  # noqa: F401

    from rlhfkit.config import parse
    from rlhfkit.stages import ppo

    floor, t0 = _rss_mb(), time.time()
    ppo.run(parse(ppo.Config, argv, ppo.PRESETS))
    Path(result).write_text(json.dumps({"peak": C.peak_rss_mb(), "floor": floor, "wall": time.time() - t0}))


if __name__ == "__main__":
    _child(sys.argv[1], sys.argv[2:])
