"""GRPO: the `rlhfkit grpo` step (rollout.collect + GRPO.experience + GRPO.update + RLTracker) vs TRL
`GRPOTrainer` (HF `generate` on CPU, no vLLM).

    python -m benchmarks.run --cases grpo

Same tiny Llama as policy and frozen reference, the world's RL prompts, the world's gold judge as the
reward function on both sides, G responses per prompt, the same response length limit, temperature 1,
β = 0.04 (k3 KL in the loss), clip 0.2, per-sequence loss averaging (TRL loss_type "grpo"), std-scaled
group advantages, one pass over each rollout in minibatches, Adam (no decay), clip-norm 1. An RL step is
one rollout plus its updates on both sides; the first is untimed. Throughput = generated tokens per second
(responses that end early are cheaper, so tokens, not responses, are counted).

The two sides sample different tokens, so their losses cannot be compared step by step. Instead, on TRL's
last minibatch, rlhfkit's loss path (`forward_logprobs` + `losses.grpo_loss`) must reproduce TRL's loss.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch

from . import common as C

LR = 5e-5
BETA = 0.04


def sizes(ctx: C.Ctx) -> dict:
    return ctx.pick(smoke=dict(steps=2, prompts=2, group=2, new=4, minibatch=2, warmup=1, model="ci"),
                    quick=dict(steps=4, prompts=4, group=8, new=32, minibatch=16, warmup=1, model="tiny"),
                    full=dict(steps=8, prompts=16, group=8, new=40, minibatch=32, warmup=1, model="tiny"))


def run_rlhfkit(folder: str, tok, prompts: list[str], s: dict, out: Path) -> dict:
    from rlhfkit.rl.loop import UpdateGuard, load_policy_and_ref, sampling_params, seq_kl
    from rlhfkit.rl.tracker import RLTracker
    from rlhfkit.rl.rewards import make_reward
    from rlhfkit.rl.rollout import collect
    from rlhfkit.stages import grpo
    from rlhfkit.training import BatchStream

    out.mkdir(parents=True, exist_ok=True)
    _, policy, ref = load_policy_and_ref(folder)
    cfg = grpo.Config(out=str(out))
    cfg.rollout.batch_prompts, cfg.rollout.max_new_tokens, cfg.rollout.temperature = s["prompts"], s["new"], 1.0
    cfg.rollout.eos_penalty = 0.0  # TRL has no EOS penalty
    g = cfg.grpo
    g.group_size, g.minibatch, g.lr, g.kl_coef, g.clip, g.loss_type = (
        s["group"], s["minibatch"], LR, BETA, 0.2, "grpo")
    reward = make_reward("gold")
    algo = grpo.GRPO(g, cfg.rollout)
    algo.setup(policy, ref, reward)  # Adam(lr, eps 1e-5), as rl.loop.train
    tracker, guard = RLTracker(out, cfg.monitor, "grpo"), UpdateGuard(cfg.optim, "grpo", out)
    stream = BatchStream(prompts, s["prompts"], seed=0, shuffle=False)
    gen, params = torch.Generator().manual_seed(0), sampling_params(cfg.rollout)
    clock, tokens = C.Clock(), []
    C.reset_peak_rss()
    for step in range(1, s["steps"] + 1):  # the body of rl.loop.train
        batch = [p for p in stream.next() for _ in range(g.group_size)]
        with algo.scoring():
            ro = collect(policy, ref, tok, batch, params, reward, gen, cfg.rollout.temperature)
        ro, adv = algo.experience(ro, tok.pad_token_id)
        metrics = algo.update(ro, adv, gen, guard)
        tracker.step(step, ro, seq_kl(ro), metrics, policy)
        tokens.append(float(ro.response_mask.sum()))
        clock.tick()
    return {"rate": clock.rate(tokens, s["warmup"]), "rss": C.peak_rss_mb(), "len": sum(tokens) / len(tokens)}


def _trl_class(per_rollout: int):
    import trl
    from transformers import TrainerCallback

    class BenchGRPO(trl.GRPOTrainer):
        """Records each rollout's generated tokens and the last minibatch the loss saw."""

        def _generate_and_score_completions(self, inputs):
            out = super()._generate_and_score_completions(inputs)
            self.bench_tokens.append(float(out["completion_mask"].sum()))
            return out

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            self.bench_last = dict(inputs)
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)

    class RolloutClock(TrainerCallback):
        def __init__(self, clock):
            self.clock = clock

        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step % per_rollout == 0:  # an RL step = one rollout and its minibatch updates
                self.clock.tick()

    return BenchGRPO, RolloutClock


def run_trl(folder: str, tok, prompts: list[str], s: dict, out: Path) -> dict:
    import datasets
    import trl

    from rlhfkit.world import reward_fn

    datasets.disable_progress_bars()
    per_rollout = s["prompts"] * s["group"] // s["minibatch"]
    rows = [{"prompt": [{"role": "user", "content": p}]} for p in prompts]
    args = C.trl_args(trl.GRPOConfig, out, s["steps"] * per_rollout, s["minibatch"], LR, num_generations=s["group"],
                      steps_per_generation=per_rollout, max_completion_length=s["new"], temperature=1.0, top_k=0,
                      top_p=1.0, beta=BETA, epsilon=0.2, loss_type="grpo", scale_rewards="group", num_iterations=1,
                      shuffle_dataset=False, weight_decay=0.0, adam_beta2=0.999, adam_epsilon=1e-5, logging_steps=10)
    cls, callback = _trl_class(per_rollout)
    clock = C.Clock()
    C.reset_peak_rss()
    trainer = cls(model=folder, reward_funcs=reward_fn, args=args, processing_class=tok,
                  train_dataset=datasets.Dataset.from_list(rows), callbacks=[callback(clock)])
    trainer.bench_tokens = []
    C.quiet(trainer)
    trainer.train()
    return {"rate": clock.rate(trainer.bench_tokens, s["warmup"]), "rss": C.peak_rss_mb(), "trainer": trainer,
            "len": sum(trainer.bench_tokens) / len(trainer.bench_tokens)}


def shared_batch_check(trainer, s: dict) -> tuple[bool, str]:
    """rlhfkit's loss on TRL's last minibatch (same model, same old/ref log-probs and advantages) vs TRL's,
    with TRL's advantages and again with a spread of made-up ones: when every reward in a group ties (an
    untrained model's answers all score alike) the advantages are 0, the policy never moves, and both losses
    are 0 whatever the code computes."""
    from rlhfkit import losses as L
    from rlhfkit.rl.engine import forward_logprobs

    b = trainer.bench_last
    model = trainer.model.eval()
    P = b["prompt_ids"].shape[1]
    ids = torch.cat([b["prompt_ids"], b["completion_ids"]], 1)
    attn = torch.cat([b["prompt_mask"], b["completion_mask"]], 1)
    mask = b["completion_mask"].float()
    spread = torch.linspace(-0.5, 1.0, len(b["advantages"]))  # [B], mean ≠ 0
    with torch.no_grad():
        logp, _ = forward_logprobs(model, ids, attn, P, 1.0)
        pairs = []
        for adv in (b["advantages"], spread):
            theirs = float(trainer._compute_loss(model, {**b, "advantages": adv}))
            ours, _, _ = L.grpo_loss(logp, b["old_per_token_logps"], adv, mask, 0.2,
                                     ref_logp=b["ref_per_token_logps"], kl_coef=BETA, level="seq")
            pairs.append((float(ours), theirs))
    ok = all(abs(o - t) <= 1e-4 * max(1.0, abs(t)) for o, t in pairs)
    (o, t), (so, st) = pairs
    return ok, (f"loss on TRL's last minibatch: rlhfkit {o:.6f} vs TRL {t:.6f}; "
                f"with made-up advantages {so:.6f} vs {st:.6f}")


def run(ctx: C.Ctx) -> list[dict]:
    import trl

    s = sizes(ctx)
    tok = C.tokenizer(ctx)
    prompts = C.rl_prompts(ctx)[: s["steps"] * s["prompts"]]
    with tempfile.TemporaryDirectory() as tmp:
        # TRL builds its reference from the policy's folder, so both sides load the model from one.
        folder = Path(tmp) / "model"
        C.build_lm(tok, s["model"]).save_pretrained(folder)
        tok.save_pretrained(folder)
        ours, theirs = C.alternate(
            ctx.rounds, lambda: run_rlhfkit(str(folder), tok, prompts, s, Path(tempfile.mkdtemp(dir=tmp))),
            lambda o: run_trl(str(folder), tok, prompts, s, Path(tempfile.mkdtemp(dir=tmp))))
        ok, note = shared_batch_check(theirs["trainer"], s)
    return [C.row("grpo", ours["rate"], theirs["rate"], "tokens/s", "≥ 2× TRL GRPOTrainer", ok,
                  {"rlhfkit": ours["rss"], "peer": theirs["rss"]},
                  f"TRL {trl.__version__} GRPOTrainer (HF generate); {s['model']} Llama, {s['prompts']} prompts × "
                  f"G={s['group']}, ≤{s['new']} new tokens (mean {ours['len'] / (s['prompts'] * s['group']):.1f} vs "
                  f"{theirs['len'] / (s['prompts'] * s['group']):.1f}), minibatch {s['minibatch']}, {s['steps']} RL "
                  f"steps ({s['warmup']} untimed), gold-judge reward, best of {ctx.rounds} alternating rounds; {note}",
                  rates={"rlhfkit": ours["rates"], "peer": theirs["rates"]})]
