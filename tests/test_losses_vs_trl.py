"""rlhfkit.losses / rl.advantages against TRL 1.16's own trainer code paths (TRL is a test-only reference).

Each test builds a minimal TRL trainer around a tiny locally built Llama and a character tokenizer, lets
TRL compute its loss or advantages, and recomputes the same quantity with rlhfkit from the model outputs.
TRL's methods used here (`_compute_loss`, `_generate_and_score_completions`) are internal: if a TRL
upgrade moves them, update the call, not the expectation.

Run: .venv/bin/python -m pytest tests/test_losses_vs_trl.py -q
"""

import pytest
import torch

trl = pytest.importorskip("trl")
datasets = pytest.importorskip("datasets")
from tokenizers import Tokenizer, models, pre_tokenizers  # noqa: E402
from transformers import (  # noqa: E402
    LlamaConfig,
    LlamaForCausalLM,
    LlamaForSequenceClassification,
    PreTrainedTokenizerFast,
)

from rlhfkit import losses as L  # noqa: E402
from rlhfkit.rl.advantages import group_advantages  # noqa: E402

datasets.disable_progress_bars()
VOCAB = {"<pad>": 0, "<eos>": 1, **{c: i + 2 for i, c in enumerate("abcdefghijklmnopqrstuvwxyz ")}}
COMMON = dict(report_to=[], use_cpu=True, bf16=False, logging_strategy="no", save_strategy="no", seed=0)


@pytest.fixture(scope="module")
def tokenizer():
    tk = Tokenizer(models.WordLevel(VOCAB, unk_token="<pad>"))
    tk.pre_tokenizer = pre_tokenizers.Split("", "isolated")  # one token per character
    return PreTrainedTokenizerFast(tokenizer_object=tk, pad_token="<pad>", eos_token="<eos>")


def tiny_llama(seed: int, cls=LlamaForCausalLM, **extra):
    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=len(VOCAB), hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
        num_key_value_heads=2, max_position_embeddings=64, pad_token_id=0, eos_token_id=1, bos_token_id=1, **extra,
    )  # fmt: skip
    return cls(cfg)


PREFS = [
    {"prompt": "ab", "chosen": "cde", "rejected": "f"},
    {"prompt": "xyz q", "chosen": "r", "rejected": "st"},
    {"prompt": "hello", "chosen": "world", "rejected": "there"},
]


def _dpo_trainer(tmp_path, tokenizer, loss_type: str):
    args = trl.DPOConfig(
        output_dir=str(tmp_path), per_device_train_batch_size=3, beta=0.3, loss_type=[loss_type], **COMMON
    )
    ds = datasets.Dataset.from_list(PREFS)
    trainer = trl.DPOTrainer(
        model=tiny_llama(0), ref_model=tiny_llama(1), args=args, train_dataset=ds, processing_class=tokenizer
    )
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(len(PREFS))])
    return trainer, batch


def _sequence_logps(model, batch):
    """Sum of rlhfkit token log-probs over each completion; TRL stacks the batch as [chosen; rejected]."""
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    logp = L.token_logprobs(logits, batch["input_ids"])  # aligned with input_ids, like completion_mask
    return (logp * batch["completion_mask"]).sum(-1).chunk(2)


def _grads(model):
    return [p.grad.clone() for p in model.parameters() if p.grad is not None]


def test_dpo_sigmoid_matches_trl(tmp_path, tokenizer):
    trainer, batch = _dpo_trainer(tmp_path, tokenizer, "sigmoid")
    model = trainer.model
    model.zero_grad()
    trl_loss = trainer._compute_loss(model, batch, return_outputs=False)
    trl_loss.backward()
    trl_grads = _grads(model)

    model.zero_grad()
    pi_w, pi_l = _sequence_logps(model, batch)
    with torch.no_grad():
        ref_w, ref_l = _sequence_logps(trainer.ref_model, batch)
    loss, chosen_r, rejected_r = L.dpo_sigmoid(pi_w, pi_l, ref_w, ref_l, beta=0.3)
    loss.backward()

    assert loss.item() == pytest.approx(trl_loss.item(), abs=1e-5)
    assert abs(loss.item() - 0.6931) > 1e-3  # the two models differ, so this is not the trivial log 2
    for ours, theirs in zip(_grads(model), trl_grads):
        torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-6)
    # TRL logs the same implicit rewards β(log π - log π_ref)
    margins = trainer._metrics["train"]["rewards/margins"][-1]
    assert (chosen_r - rejected_r).mean().item() == pytest.approx(margins, abs=1e-5)


def test_ipo_matches_trl_with_length_averaged_logps(tmp_path, tokenizer):
    trainer, batch = _dpo_trainer(tmp_path, tokenizer, "ipo")
    with torch.no_grad():
        trl_loss = trainer._compute_loss(trainer.model, batch, return_outputs=False)
        lengths = batch["completion_mask"].sum(-1).chunk(2)
        pi_w, pi_l = _sequence_logps(trainer.model, batch)
        ref_w, ref_l = _sequence_logps(trainer.ref_model, batch)
        n_w, n_l = lengths
        loss, _, _ = L.ipo(pi_w / n_w, pi_l / n_l, ref_w / n_w, ref_l / n_l, beta=0.3)
    assert loss.item() == pytest.approx(trl_loss.item(), rel=1e-5)


def test_bradley_terry_matches_trl_reward_trainer(tmp_path, tokenizer):
    rows = [
        {"chosen": "good answer", "rejected": "bad", "margin": 0.5},
        {"chosen": "yes", "rejected": "no no", "margin": 0.0},
        {"chosen": "abc", "rejected": "xyz", "margin": 2.0},
    ]
    args = trl.RewardConfig(
        output_dir=str(tmp_path), per_device_train_batch_size=3, center_rewards_coefficient=0.01, **COMMON
    )
    model = tiny_llama(0, LlamaForSequenceClassification, num_labels=1)
    trainer = trl.RewardTrainer(
        model=model, args=args, train_dataset=datasets.Dataset.from_list(rows), processing_class=tokenizer
    )
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(3)])
    with torch.no_grad():
        trl_loss = trainer.compute_loss(trainer.model, dict(batch))
        r = trainer.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.squeeze(-1)
    r_w, r_l = r.chunk(2)
    ours = L.bradley_terry(r_w, r_l, margin=batch["margin"]) + 0.01 * L.center_rewards(r_w, r_l)
    assert ours.item() == pytest.approx(trl_loss.item(), abs=1e-6)


# ---------------------------------------------------------------------------------------------- GRPO / RLOO

G = 4
PROMPTS = ["ab", "cd", "ef"]
REWARDS = torch.tensor([1.0, 2.0, 4.0, 0.5, 3.0, 3.0, 3.0, 3.0, -1.0, 0.0, 2.0, 7.0])  # one group is constant


def _fixed_rewards(prompts, completions, **kwargs):
    assert len(completions) == len(REWARDS)
    return REWARDS.tolist()


def _rollout(trainer_cls, config_cls, tmp_path, tokenizer, **config):
    args = config_cls(
        output_dir=str(tmp_path), per_device_train_batch_size=len(REWARDS), num_generations=G,
        max_completion_length=3, beta=0.0, **COMMON, **config,
    )  # fmt: skip
    ds = datasets.Dataset.from_list([{"prompt": p} for p in PROMPTS])
    trainer = trainer_cls(
        model=tiny_llama(0), reward_funcs=_fixed_rewards, args=args, train_dataset=ds, processing_class=tokenizer
    )
    with torch.no_grad():
        out = trainer._generate_and_score_completions([{"prompt": p} for p in PROMPTS for _ in range(G)])
    return trainer, out


def test_grpo_advantages_match_trl(tmp_path, tokenizer):
    _, out = _rollout(trl.GRPOTrainer, trl.GRPOConfig, tmp_path, tokenizer)
    torch.testing.assert_close(group_advantages(REWARDS, G, "grpo"), out["advantages"])
    _, out = _rollout(trl.GRPOTrainer, trl.GRPOConfig, tmp_path, tokenizer, scale_rewards="none")
    torch.testing.assert_close(group_advantages(REWARDS, G, "grpo", scale_std=False), out["advantages"])


def test_rloo_advantages_match_trl(tmp_path, tokenizer):
    _, out = _rollout(trl.RLOOTrainer, trl.RLOOConfig, tmp_path, tokenizer)
    torch.testing.assert_close(group_advantages(REWARDS, G, "rloo"), out["advantages"])


@pytest.mark.parametrize(
    "trl_loss_type,level,is_kl", [("grpo", "seq", False), ("bnpo", "token", False), ("grpo", "seq", True)]
)
def test_grpo_loss_matches_trl(tmp_path, tokenizer, trl_loss_type, level, is_kl):
    """TRL's GRPO loss (clipped, with its k3 KL term) vs grpo_loss, off-policy so that clipping is active."""
    trainer, out = _rollout(
        trl.GRPOTrainer, trl.GRPOConfig, tmp_path, tokenizer,
        loss_type=trl_loss_type, temperature=0.7, use_bias_correction_kl=is_kl,
    )  # fmt: skip
    prompt_ids, completion_ids = out["prompt_ids"], out["completion_ids"]  # prompts are left-padded
    ids = torch.cat([prompt_ids, completion_ids], 1)
    attn = torch.cat([out["prompt_mask"], out["completion_mask"]], 1)
    mask = out["completion_mask"]
    with torch.no_grad():
        logits = trainer.model(input_ids=ids, attention_mask=attn).logits
        logp = L.token_logprobs(logits, ids, temperature=0.7)[:, prompt_ids.size(1) :]
    g = torch.Generator().manual_seed(0)
    old = logp + 0.5 * torch.randn(logp.shape, generator=g)  # ratios far enough from 1 to clip
    ref = logp + 0.5 * torch.randn(logp.shape, generator=g)
    # TRL reads β at init to decide whether to build a reference model; set it after, and hand it ref log-probs.
    trainer.beta = 0.04
    inputs = {**out, "old_per_token_logps": old, "ref_per_token_logps": ref}
    trainer.model.eval()  # eval mode: TRL skips its gradient-accumulation rescaling
    with torch.no_grad():
        trl_loss = trainer._compute_loss(trainer.model, inputs)
    ours, clipfrac, _ = L.grpo_loss(
        logp, old, out["advantages"], mask, ref_logp=ref, kl_coef=0.04, level=level, kl_importance_weight=is_kl
    )
    assert clipfrac.item() > 0.1
    assert ours.item() == pytest.approx(trl_loss.item(), abs=1e-5)


def _logps(model, out, temperature=1.0):
    """rlhfkit's per-token log-probs [B, R] of TRL's completions (prompts left-padded, completions right-padded)."""
    ids = torch.cat([out["prompt_ids"], out["completion_ids"]], 1)
    attn = torch.cat([out["prompt_mask"], out["completion_mask"]], 1)
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=attn).logits
    return L.token_logprobs(logits, ids, temperature=temperature)[:, out["prompt_ids"].size(1):]


def test_dr_grpo_matches_trl(tmp_path, tokenizer):
    """Dr. GRPO (TRL loss_type "dr_grpo", scale_rewards "none"): unscaled group advantages and the token sum over a
    constant B x max_completion_length — rlhfkit's `--grpo.loss_type dr_grpo` (level "constant")."""
    trainer, out = _rollout(
        trl.GRPOTrainer, trl.GRPOConfig, tmp_path, tokenizer, loss_type="dr_grpo", scale_rewards="none",
    )  # fmt: skip
    from rlhfkit.rl.loop import RolloutConfig
    from rlhfkit.stages.grpo import GRPO, GroupConfig

    algo = GRPO(GroupConfig(loss_type="dr_grpo", group_size=G), RolloutConfig(max_new_tokens=3))
    assert not algo.scale_std and algo.level == "constant"
    torch.testing.assert_close(group_advantages(REWARDS, G, "grpo", scale_std=algo.scale_std), out["advantages"])
    logp = _logps(trainer.model, out)
    old = logp + 0.5 * torch.randn(logp.shape, generator=torch.Generator().manual_seed(0))
    trainer.model.eval()
    with torch.no_grad():
        trl_loss = trainer._compute_loss(trainer.model, {**out, "old_per_token_logps": old})
    ours, clipfrac, _ = L.grpo_loss(logp, old, out["advantages"], out["completion_mask"], level="constant", max_len=3)
    assert clipfrac.item() > 0.1
    assert ours.item() == pytest.approx(trl_loss.item(), abs=1e-6)
    # and it is not the length-normalised GRPO loss on the same batch (completions have different lengths)
    seq = L.grpo_loss(logp, old, out["advantages"], out["completion_mask"], level="seq")[0]
    assert abs(seq.item() - trl_loss.item()) > 1e-3


def test_rloo_matches_trl(tmp_path, tokenizer):
    """RLOO with the KL penalty in the reward (TRL's RLOOTrainer, β 0.05): rlhfkit's advantages (stages/rloo.py
    RLOO.advantages: score − β·Σ(log π_old − log π_ref), leave-one-out) and sequence-level loss (losses.rloo_loss)
    equal TRL's on the same completions, off-policy so that the clip is active."""
    from rlhfkit.rl.rollout import Rollout
    from rlhfkit.rl.loop import RolloutConfig
    from rlhfkit.stages.rloo import RLOO, RLOOConfig

    args = trl.RLOOConfig(
        output_dir=str(tmp_path), per_device_train_batch_size=len(REWARDS), num_generations=G,
        max_completion_length=3, beta=0.0, **COMMON,
    )  # fmt: skip
    ds = datasets.Dataset.from_list([{"prompt": p} for p in PROMPTS])
    trainer = trl.RLOOTrainer(
        model=tiny_llama(0), reward_funcs=_fixed_rewards, args=args, train_dataset=ds, processing_class=tokenizer
    )
    # TRL loads a reference by hub id when β > 0 at init; set β after, with a reference that differs from the
    # policy so that the KL term is not 0.
    trainer.beta, trainer.ref_model = 0.05, tiny_llama(1).eval()
    trl.trainer.add_fused_lm_head(trainer.ref_model, temperature=trainer.temperature)  # as TRL's init does
    with torch.no_grad():
        out = trainer._generate_and_score_completions([{"prompt": p} for p in PROMPTS for _ in range(G)])
    mask = out["completion_mask"].float()
    logp, ref = _logps(trainer.model, out), _logps(trainer.ref_model, out)
    B = len(REWARDS)
    ro = Rollout(prompts=[""] * B, responses=[""] * B, sequences=None, attention_mask=None, response_mask=mask,
                 logp=logp * mask, ref_logp=ref * mask, score=REWARDS, score_std=torch.zeros(B), gold=None,
                 finished=torch.ones(B, dtype=torch.bool), prompt_len=0)
    algo = RLOO(RLOOConfig(group_size=G, kl_coef=0.05), RolloutConfig())
    adv = algo.advantages(ro, RolloutConfig(eos_penalty=0.0))
    assert ((logp - ref) * mask).sum(-1).abs().max() > 0.1  # the KL term is really there
    torch.testing.assert_close(adv, out["advantages"], atol=1e-5, rtol=1e-5)
    old = logp + 0.3 * torch.randn(logp.shape, generator=torch.Generator().manual_seed(0))
    trainer.model.eval()
    with torch.no_grad():
        trl_loss = trainer._compute_loss(trainer.model, {**out, "old_logps": (old * mask).sum(-1)})
    ours, clipfrac = L.rloo_loss(logp, old, adv, mask, clip=args.epsilon)
    assert clipfrac.item() > 0.1
    assert ours.item() == pytest.approx(trl_loss.item(), abs=1e-5)


def test_rloo_advantages_equal_a_hand_loop():
    """Leave-one-out by hand: A_i = r_i − (Σ_j r_j − r_i)/(k − 1), per group, with plain floats."""
    r = REWARDS.tolist()
    expected = []
    for g in range(0, len(r), G):
        group = r[g:g + G]
        expected += [x - (sum(group) - x) / (G - 1) for x in group]
    torch.testing.assert_close(group_advantages(REWARDS, G, "rloo"), torch.tensor(expected))
