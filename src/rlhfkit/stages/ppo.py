"""Stage 4, RLHF with PPO: optimise the SFT policy against the reward model with a KL penalty to SFT.

    rlhfkit ppo --preset tiny --model runs/demo/sft/model --reward runs/demo/reward --out runs/demo/ppo

Per rollout batch: sample responses (engine), score them with the reward model, build per-token rewards
R_t = −β (log π − log π_ref) with the score added at the last token (Ziegler et al. 2019; Ouyang et al.
2022 eq. 2), compute GAE advantages, then run several epochs of clipped policy and value updates.

"The N Implementation Details of RLHF with PPO" (Huang et al. 2024), item by item:
- reward normalisation (RM scores have mean 0 / std 1 on SFT samples): done in the reward stage.
- value model initialised from the reward model, its own backbone: done (`--value_init`), the papers'
  default. `--ppo.share_value_backbone` puts a fresh value head on the policy's trunk instead (one
  forward, loss = policy loss + vf_coef × value loss, one optimizer), so no second backbone is held.
- per-token KL penalty with the score at the final token: done; KL estimator k1 (as the papers).
- adaptive KL controller (Ziegler et al.): done (`--ppo.kl_target`), error clipped to ±0.2.
- EOS trick (penalise responses that never end): done (`--rollout.eos_penalty`).
- reward-model ensembles: `--rollout.ensemble uwo` optimises mean − λ·variance (Coste et al. 2023).
- a NaN/inf loss or gradient skips that update and says so (`--optim.on_nonfinite`); `--optim.mixed_precision
  bf16` autocasts the update forwards, as the supervised Trainer does.
- log-probs at the sampling temperature, recomputed with a full forward: done.
- dropout disabled in policy, reference and value model: done (load_causal_lm).
- advantage whitening per batch: done; reward whitening: left out (scores are already normalised).
- clipped policy loss and clipped value loss, several epochs of shuffled minibatches: done.
- γ = 1, λ = 0.95: defaults.
- separate Adam for policy and value; gradient clipping: done.
- truncate at EOS and pad after it (no loss beyond EOS): done (response mask).
- memory: PPO holds policy, reference, value and reward. `--lora.r` makes the reference the policy with
  adapters off, `--ppo.share_value_backbone` drops the value backbone, and `--ppo.offload` (CUDA) keeps the
  reference and reward on the CPU except while scoring; peak memory of each: benchmarks/README.md.
- PPO-ptx (pretraining-loss mixing, InstructGPT): left out — on the built-in world the KL penalty
  keeps the policy close to SFT, and it doubles the step cost on a CPU.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from .. import checkpoint
from ..common import StageError, dist_rank_size, say
from ..config import group, opt
from ..losses import masked_mean, masked_whiten, ppo_clip, value_clip
from ..model.offload import compute_device, on_device, place
from ..model.scalar import ScalarModel
from ..rl import loop
from ..rl.advantages import gae, ppo_token_rewards
from ..rl.distributed import ddp, distributed, gather_rollout, mean_over_ranks, shard
from ..rl.engine import entropy_from_logits, forward_logprobs, positions
from ..rl.kl_control import kl_controller
from ..rl.loop import RLConfig, UpdateGuard, batch_iter, seq_kl, shaped_score
from ..rl.rollout import Rollout
from ..lm import save_final


@dataclass
class PPOConfig:
    """PPO updates."""

    steps: int = opt(60, "rollout batches (RL steps)")
    epochs: int = opt(4, "optimisation epochs over each rollout batch")
    minibatch: int = opt(16, "responses per minibatch")
    lr: float = opt(5e-5, "policy learning rate (WORLD_NOTES: 1e-4 stable, 3e-4 too high for tiny models)")
    value_lr: float = opt(1e-4, "value model learning rate")
    clip: float = opt(0.2, "policy ratio clip ε")
    value_clip: float = opt(0.2, "value clip range")
    gamma: float = opt(1.0, "discount γ")
    lam: float = opt(0.95, "GAE λ")
    kl_coef: float = opt(0.05, "initial KL penalty coefficient β")
    kl_target: float = opt(0.0, "target KL (nats/sequence) for the adaptive controller; 0 = fixed β")
    kl_horizon: float = opt(10000.0, "adaptive controller horizon (samples)")
    max_grad_norm: float = opt(1.0, "gradient clipping")
    share_value_backbone: bool = opt(False, "value head on the policy's own trunk (one backbone, two heads, one "
                                            "optimizer): no separate value model in memory")
    vf_coef: float = opt(0.1, "weight of the value loss added to the policy loss when the backbone is shared")
    offload: bool = opt(False, "on CUDA, keep the reference and reward models on the CPU except while scoring a "
                               "rollout; a no-op on CPU (every model is already there)")
    save_every: int = opt(10, "write a resumable checkpoint to OUT/ckpt every N steps (0 = never)")


@dataclass
class Config(RLConfig):
    out: str = opt("runs/default/ppo", "output folder")
    value_init: str = opt("", "initialise the value model from this reward-model folder (default: --reward "
                              "when it is a folder, else the policy)")
    ppo: PPOConfig = group(PPOConfig)


PRESETS = {
    "ci": {"rollout": {"world_size": "ci", "batch_prompts": 16, "max_new_tokens": 24},
           "ppo": {"steps": 4, "epochs": 2, "minibatch": 8, "save_every": 2}},
    # Measured on the built-in world (README, "Results"): lr 5e-5 / β 0.05 reached 8 nats of KL by step 38;
    # lr 2e-5 / β 0.1 keeps KL near 2 nats; β 0.2 did not stop the drift into refusing everything.
    "tiny": {"rollout": {"world_size": "tiny", "batch_prompts": 64, "max_new_tokens": 40},
             "ppo": {"steps": 60, "epochs": 4, "minibatch": 16, "lr": 2e-5, "kl_coef": 0.1}},
    "small": {"rollout": {"world_size": "small", "batch_prompts": 128, "max_new_tokens": 48},
              "ppo": {"steps": 200, "epochs": 4, "minibatch": 32}},
}


def load_value_model(cfg: Config, policy) -> ScalarModel:
    """The critic starts as the reward model (its first member for an ensemble), as in InstructGPT: from
    --value_init, else from --reward when that is a reward-model folder. Only without one does it start as
    a copy of the policy with a fresh head, and PPO says so."""
    import copy

    from ..model.reward_scorer import member_dirs

    for flag, cand in (("--value_init", cfg.value_init), ("--reward", cfg.reward)):
        if not cand or not Path(cand).is_dir():
            continue
        try:
            member = member_dirs(cand)[0]
        except FileNotFoundError as e:
            if flag == "--value_init":
                raise StageError(f"--value_init: {e}") from None
            continue
        say(f"ppo: value model initialised from the reward model in {member}")
        return ScalarModel.load(member)
    say("ppo: WARNING: the value model starts as a copy of the policy with a fresh, random head: no "
        "reward-model folder in --value_init or --reward (a module:function reward has none). Pass "
        "--value_init runs/NAME/reward for a critic that starts from the reward model.")
    return ScalarModel.from_causal_lm(copy.deepcopy(policy))


class PPO:
    """PPO as an rl.loop algorithm: a critic, per-token KL-penalised rewards, GAE, clipped updates."""

    group_size = 1

    def __init__(self, cfg: Config):
        self.cfg, self.p = cfg, cfg.ppo
        self.steps, self.save_every = self.p.steps, self.p.save_every

    def setup(self, policy, ref, reward) -> checkpoint.Bundle:
        p, cfg = self.p, self.cfg
        if p.share_value_backbone and distributed():
            raise StageError("--ppo.share_value_backbone runs in one process only; use --lora.r to save memory instead")
        self.value = ScalarModel.sharing(policy) if p.share_value_backbone else load_value_model(cfg, policy)
        if p.share_value_backbone and cfg.value_init:
            say("ppo: --value_init is ignored: a shared value head starts fresh on the policy's trunk")
        # Models used only to score rollouts (a LoRA reference is the policy itself, so it is not among them).
        self.frozen = [m for m in (ref, *getattr(reward, "members", [])) if isinstance(m, torch.nn.Module)]
        self.device = compute_device()
        if p.offload and self.device.type == "cpu":
            say("ppo: --ppo.offload has no effect here: there is no GPU, every model is already on the CPU")
        place([policy, self.value], self.device)
        place(self.frozen, "cpu" if p.offload else self.device)
        self.pol_opt, self.val_opt = optimizers(policy, self.value, p)
        # what updates run through (DDP-wrapped under several processes)
        self.trainees = (policy, self.value) if p.share_value_backbone else (ddp(policy), ddp(self.value))
        self.kl_ctl = kl_controller(p.kl_coef, p.kl_target or None, p.kl_horizon)
        return checkpoint.Bundle(policy_opt=self.pol_opt, value_opt=self.val_opt,
                                 value=self.value.head if p.share_value_backbone else self.value)

    def describe(self) -> str:
        return f"β={self.p.kl_coef}{' adaptive to ' + str(self.p.kl_target) if self.p.kl_target else ''}"

    def scoring(self):
        return on_device(self.frozen, self.device)  # with --ppo.offload they visit the GPU only for this

    def experience(self, ro: Rollout, pad_id: int):
        ro, old_values = gather_rollout(ro, rollout_values(self.value, ro), pad_id)  # every rank's
        adv, returns, kl_tok = advantages(ro, old_values, self.kl_ctl.value, self.cfg)
        return ro, (adv, returns, old_values, kl_tok)

    def update(self, ro: Rollout, exp, gen, guard: UpdateGuard) -> dict:
        adv, returns, old_values, kl_tok = exp
        metrics = update(*self.trainees, self.pol_opt, self.val_opt, ro, adv, returns, old_values, self.cfg, gen,
                         guard)
        metrics.update(kl_coef=self.kl_ctl.value, kl_per_token=float(masked_mean(kl_tok, ro.response_mask)))
        self.kl_ctl.update(seq_kl(ro), len(ro.prompts))
        return metrics

    def extra_state(self) -> dict:
        return {"kl_coef": self.kl_ctl.value}

    def load_extra_state(self, extra: dict) -> None:
        self.kl_ctl.value = extra.get("kl_coef", self.kl_ctl.value)


def run(cfg: Config) -> Path:
    out, policy, tokenizer = loop.train(cfg, PPO(cfg), "ppo")
    save_final(policy, tokenizer, out, stage="ppo")
    return out / "model"


def optimizers(policy, value: ScalarModel, p: PPOConfig):
    """Separate Adams for policy and value (Huang et al. 2024); one Adam with a value-head group when the
    backbone is shared (the trunk's parameters must be stepped once, by the joint loss)."""
    if p.share_value_backbone:
        groups = [{"params": list(policy.parameters()), "lr": p.lr},
                  {"params": list(value.head.parameters()), "lr": p.value_lr}]
        return torch.optim.Adam(groups, eps=1e-5), None
    return (torch.optim.Adam(policy.parameters(), lr=p.lr, eps=1e-5),
            torch.optim.Adam(value.parameters(), lr=p.value_lr, eps=1e-5))


@torch.no_grad()
def rollout_values(value: ScalarModel, ro: Rollout) -> torch.Tensor:
    """V(s) [B, R] at the state before each response token (0 past the response)."""
    P = ro.prompt_len
    return value.values(ro.sequences, ro.attention_mask)[:, P - 1:-1] * ro.response_mask


@torch.no_grad()
def advantages(ro: Rollout, values: torch.Tensor, kl_coef: float, cfg: Config):
    """Per-token rewards -> GAE advantages (whitened over the whole batch) and returns."""
    score = shaped_score(ro, cfg.rollout).to(ro.logp.device)  # ensemble objective and EOS penalty applied
    rewards, kl_tok = ppo_token_rewards(score, ro.logp, ro.ref_logp, ro.response_mask, kl_coef)
    adv, returns = gae(rewards, values, ro.response_mask, cfg.ppo.gamma, cfg.ppo.lam)
    adv = masked_whiten(adv, ro.response_mask) * ro.response_mask
    return adv, returns, kl_tok


def update(policy, value, pol_opt, val_opt, ro: Rollout, adv, returns, old_values, cfg: Config, gen,
           guard: UpdateGuard) -> dict:
    """Several epochs of shuffled minibatches of clipped policy and value updates. Under N processes a
    minibatch is N x --ppo.minibatch rows of the whole batch, split across the ranks (rl/distributed.py)."""
    p, P, T = cfg.ppo, ro.prompt_len, cfg.rollout.temperature
    policy.train(), value.train()
    sums: dict[str, float] = {}
    n = 0
    for _ in range(p.epochs):
        for idx in batch_iter(len(ro.prompts), p.minibatch * dist_rank_size()[1], gen):
            idx, w = shard(idx, ro.response_mask[idx].sum(-1))  # this rank's rows; its share of the tokens
            seq, attn, mask = ro.sequences[idx], ro.attention_mask[idx], ro.response_mask[idx]
            if val_opt is None:  # shared backbone: one forward feeds both heads, one step on the joint loss
                with guard.autocast():
                    logp, logits, v = logprobs_and_values(policy, value, seq, attn, P, T)
                    pg_loss, clipfrac, approx_kl = ppo_clip(logp, ro.logp[idx], adv[idx], mask, p.clip)
                    v_loss, v_clipfrac = value_clip(v.float(), old_values[idx], returns[idx], mask, p.value_clip)
                guard.step(pol_opt, w * (pg_loss + p.vf_coef * v_loss), _params(pol_opt), p.max_grad_norm)
            else:  # policy then value, so only one model's activations are alive at a time
                with guard.autocast():
                    logp, logits = forward_logprobs(policy, seq, attn, P, T)
                    pg_loss, clipfrac, approx_kl = ppo_clip(logp, ro.logp[idx], adv[idx], mask, p.clip)
                guard.step(pol_opt, w * pg_loss, _params(pol_opt), p.max_grad_norm)
                with guard.autocast():
                    v = value(seq, attn, per_token=True)[:, P - 1:-1].float()
                    v_loss, v_clipfrac = value_clip(v, old_values[idx], returns[idx], mask, p.value_clip)
                guard.step(val_opt, w * v_loss, _params(val_opt), p.max_grad_norm)
            with torch.no_grad():
                ent = masked_mean(entropy_from_logits(logits), mask)
            for k, val in dict(policy_loss=pg_loss, value_loss=v_loss, clipfrac=clipfrac, approx_kl=approx_kl,
                               value_clipfrac=v_clipfrac, entropy=ent).items():
                sums[k] = sums.get(k, 0.0) + w * float(val.detach())
            n += 1
    out = {k: v / max(n, 1) for k, v in mean_over_ranks(sums).items()}
    out["explained_variance"] = explained_variance(old_values, returns, ro.response_mask)
    out["skipped_updates"] = guard.skipped
    return out


def _params(opt) -> list:
    return [q for g in opt.param_groups for q in g["params"]]


def logprobs_and_values(policy, value: ScalarModel, seq, attn, P: int, T: float):
    """Response log-probs [B, R], logits [B, R, V] and values [B, R] from one pass of the shared trunk.

    The LM head is applied to the trunk's last hidden state, as a Llama/GPT-2 forward does (forward_logprobs'
    log-probs, to float rounding: tests/stages/test_ppo_memory.py); the value head reads the same states."""
    h = value.backbone(input_ids=seq, attention_mask=attn, position_ids=positions(attn)).last_hidden_state
    h = h[:, P - 1:-1]  # the states that predict each response token
    lm_head = (policy.get_base_model() if hasattr(policy, "get_base_model") else policy).get_output_embeddings()
    logits = lm_head(h).float() / max(T, 1e-6)
    logp = torch.log_softmax(logits, dim=-1).gather(-1, seq[:, P:, None]).squeeze(-1)
    return logp, logits, value.head(h).squeeze(-1)


def explained_variance(values, returns, mask) -> float:
    """1 − Var[returns − values] / Var[returns] over response tokens (1 = perfect value model)."""
    m = mask.bool()
    r, v = returns[m], values[m]
    var = r.var()
    return float(1 - (r - v).var() / var) if var > 0 else 0.0
