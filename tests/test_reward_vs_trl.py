"""`rlhfkit reward`'s loss path against TRL 1.16's `RewardTrainer.compute_loss` (TRL is a test-only reference).

One tiny Llama serves both: TRL gets it as `LlamaForSequenceClassification`; rlhfkit wraps the same body
and score weights in a `ScalarModel`. The same conversational preferences go through TRL's own dataset
preparation and collator and through rlhfkit's `make_batch` / `train_step`; tokens and losses must match.

Run: .venv/bin/python -m pytest tests/test_reward_vs_trl.py -q
"""

import pytest
import torch

trl = pytest.importorskip("trl")
datasets = pytest.importorskip("datasets")
from transformers import LlamaForSequenceClassification  # noqa: E402

from rlhfkit.data.formats import load_rankings  # noqa: E402
from rlhfkit.model.reward_scorer import encode  # noqa: E402
from rlhfkit.model.scalar import ScalarModel  # noqa: E402
from rlhfkit.stages import reward  # noqa: E402

datasets.disable_progress_bars()
ROWS = [
    {"prompt": "What is 3 plus 4?", "chosen": "3 plus 4 is 7.", "rejected": "It is 9.", "margin": 0.5},
    {"prompt": "Spell cat backwards.", "chosen": "tac", "rejected": "cat cat cat", "margin": 0.0},
    {"prompt": "Where are the owls?", "chosen": "At the farm!", "rejected": "no", "margin": 2.0},
]


def _trl_and_ours(tmp_path, tokenizer, lm, center):
    seqcls = LlamaForSequenceClassification(lm.config.__class__(**{**lm.config.to_dict(), "num_labels": 1}))
    seqcls.model.load_state_dict(lm.model.state_dict())
    torch.manual_seed(1)
    torch.nn.init.normal_(seqcls.score.weight, std=0.5)
    args = trl.RewardConfig(output_dir=str(tmp_path), per_device_train_batch_size=3, report_to=[], use_cpu=True,
                            logging_strategy="no", save_strategy="no", center_rewards_coefficient=center)
    convo = [{"prompt": [{"role": "user", "content": r["prompt"]}],
              "chosen": [{"role": "assistant", "content": r["chosen"]}],
              "rejected": [{"role": "assistant", "content": r["rejected"]}], "margin": r["margin"]} for r in ROWS]
    trainer = trl.RewardTrainer(model=seqcls, args=args, train_dataset=datasets.Dataset.from_list(convo),
                                processing_class=tokenizer)
    ours = ScalarModel(seqcls.model)  # the same body object ...
    ours.head.weight.data.copy_(seqcls.score.weight.data)  # ... and the same score weights (TRL's has no bias)
    return trainer, ours


@pytest.mark.parametrize("center", [None, 0.01])
def test_bt_loss_matches_trl_reward_trainer(tmp_path, tokenizer, lm, center):
    trainer, ours = _trl_and_ours(tmp_path, tokenizer, lm, center)
    examples = [trainer.train_dataset[i] for i in range(len(ROWS))]
    batch = trainer.data_collator(examples)
    with torch.no_grad():
        trl_loss = trainer.compute_loss(trainer.model, dict(batch))

    cfg = reward.Config(center_rewards_coefficient=center or 0.0)
    items = reward.group_items(load_rankings(ROWS))  # TRL's pairwise rows, margins kept as metadata
    b = reward.make_batch(items)
    cache = {k: encode(tokenizer, *k, 128) for k in b.keys}
    # Same tokens as TRL's own preparation (chat template applied to prompt + response).
    assert sorted(map(tuple, cache.values())) == sorted(tuple(e[c]) for e in examples for c in ("chosen_ids",
                                                                                                 "rejected_ids"))
    with torch.no_grad():
        our_loss, metrics = reward.train_step(ours.eval(), b, cache, tokenizer.pad_token_id, cfg)
    assert b.margin.tolist() == [r["margin"] for r in ROWS]
    assert our_loss.item() == pytest.approx(trl_loss.item(), abs=1e-5)
    assert metrics["accuracy"] == pytest.approx(trainer._metrics["train"]["accuracy"][-1])
