"""The `rlhfkit dpo` stage's whole loss path against TRL 1.16's DPOTrainer (TRL is a test-only reference).

tests/test_losses_vs_trl.py checks `losses.dpo_sigmoid` on TRL's own batches. This checks what the stage adds
around it: chat-template rendering of prompt/response (`render_pair`), the response mask, padding, sequence
log-probs and the reference log-probs cached before training. TRL tokenises the same conversational rows with
the same chat template; both must then give the same token ids, the same loss and the same gradients.
`DPOTrainer._compute_loss` is internal: if a TRL upgrade moves it, update the call, not the expectation.

Run: .venv/bin/python -m pytest tests/test_dpo_vs_trl.py -q
"""

import copy

import pytest
import torch

trl = pytest.importorskip("trl")
datasets = pytest.importorskip("datasets")

from rlhfkit.data.tokenizer import train_bpe  # noqa: E402
from rlhfkit.model.causal_lm import build_causal_lm  # noqa: E402
from rlhfkit.stages import dpo  # noqa: E402

datasets.disable_progress_bars()
PREFS = [
    ("What is 2+3?", "2+3 = 5.", "It is 7, I think."),
    ("Name a colour.", "Blue.", "I cannot help with that request."),
    ("Say hi politely.", "Hello there, nice to meet you!", "hi"),
]
BETA = 0.3


@pytest.fixture(scope="module")
def setup():
    tok = train_bpe([" ".join(p) for p in PREFS] * 4, vocab_size=300)
    torch.manual_seed(0)
    ref = build_causal_lm(tok, "ci").eval()
    policy = copy.deepcopy(ref)
    with torch.no_grad():  # move the policy off the reference so the loss is not the trivial log 2
        for p in policy.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return tok, policy, ref


def _trl(tmp_path, tok, policy, ref, loss_type):
    # bf16=False: TRL defaults to bf16 where supported and then runs the reference under bf16 autocast
    args = trl.DPOConfig(output_dir=str(tmp_path), per_device_train_batch_size=len(PREFS), beta=BETA,
                         loss_type=[loss_type], bf16=False, report_to=[], use_cpu=True,
                         logging_strategy="no", save_strategy="no", seed=0)
    rows = [{"prompt": [{"role": "user", "content": p}], "chosen": [{"role": "assistant", "content": c}],
             "rejected": [{"role": "assistant", "content": r}]} for p, c, r in PREFS]
    trainer = trl.DPOTrainer(model=copy.deepcopy(policy), ref_model=copy.deepcopy(ref), args=args,
                             train_dataset=datasets.Dataset.from_list(rows), processing_class=tok)
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(len(PREFS))])
    return trainer, batch


def _ours(tok, policy, ref, **cfg):
    examples, _ = dpo.encode_pairs(tok, [(p, c, r, 1.0) for p, c, r in PREFS], 256)
    ref_logps = dpo.compute_ref_logps(ref, examples, 2, tok.pad_token_id)  # 2 < 3: the cache is built in chunks
    for e, (c, r) in zip(examples, ref_logps.tolist()):
        e.ref = (c, r)
    batch = dpo.collate_pairs(examples, tok.pad_token_id)
    model = copy.deepcopy(policy)
    loss, metrics = dpo.dpo_loss(model, batch, dpo.Config(beta=BETA, **cfg))
    loss.backward()
    return batch, loss, metrics, model


def _grads(model):
    return [p.grad for p in model.parameters() if p.grad is not None]


# TRL 1.16's "sigmoid" ignores label_smoothing and it has no plain conservative-DPO type, so cdpo has no TRL
# counterpart here; tests/stages/test_dpo.py checks it picks dpo_sigmoid with the smoothing.
@pytest.mark.parametrize("loss", ["sigmoid", "ipo"])
def test_stage_loss_matches_trl_dpo_trainer(tmp_path, setup, loss):
    tok, policy, ref = setup
    trainer, trl_batch = _trl(tmp_path, tok, policy, ref, loss)
    batch, ours, metrics, model = _ours(tok, policy, ref, loss=loss)

    # identical tokens and response masks (TRL right-pads [chosen; rejected] the same way)
    T = trl_batch["input_ids"].shape[1]
    assert batch["ids"].shape[1] == T
    assert torch.equal(batch["ids"] * batch["attn"], trl_batch["input_ids"] * trl_batch["attention_mask"])
    assert torch.equal(batch["mask"], trl_batch["completion_mask"])

    trainer.model.zero_grad()
    theirs = trainer._compute_loss(trainer.model, trl_batch, return_outputs=False)
    theirs.backward()
    assert ours.item() == pytest.approx(theirs.item(), abs=1e-5)
    assert abs(ours.item() - 0.6931) > 1e-3
    ours_g, theirs_g = _grads(model), _grads(trainer.model)
    # zip stops at the shorter list: every parameter must have a gradient on both sides
    assert len(ours_g) == len(theirs_g) == len(list(model.parameters())) > 0
    for a, b in zip(ours_g, theirs_g):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
    if loss == "sigmoid":  # the logged implicit-reward margin and accuracy too (TRL files them under its mode)
        logged = trainer._metrics["train" if trainer.model.training else "eval"]
        assert metrics["margin"] == pytest.approx(logged["rewards/margins"][-1], abs=1e-5)
        assert metrics["accuracy"] == pytest.approx(logged["rewards/accuracies"][-1])
