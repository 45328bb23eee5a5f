"""`rlhfkit dpo`: pair expansion, masking, weighting, the cached reference, and that training learns preferences.

Run: .venv/bin/python -m pytest tests/stages/test_dpo.py -q
"""

import json
import math

import pytest
import torch

from rlhfkit.data.formats import Ranking
from rlhfkit.data.tokenizer import train_bpe
from rlhfkit.model.causal_lm import build_causal_lm, load_causal_lm
from rlhfkit.stages import dpo

TOPICS = ["cats", "dogs", "rain", "tea", "boats", "maps", "owls", "rice", "kites", "bees", "snow", "lamps",
          "frogs", "pears", "stars", "drums", "ships", "clay", "moss", "wolves"]
GOOD = "Sure! Here is a kind and helpful answer about {t}."
BAD = ["no", "whatever {t} {t}", "I refuse."]


def _records() -> list[dict]:
    """One K=4 ranking per topic: the helpful answer first, two bad ones tied, the curt one last; plus TRL rows."""
    rows = []
    for t in TOPICS:
        rows.append({"prompt": f"Tell me about {t}.", "responses": [BAD[0], GOOD.format(t=t), BAD[1].format(t=t),
                                                                     BAD[2]],
                     "ranking": [1, [2, 3], 0], "annotator": "a1"})
        rows.append({"prompt": f"What do you know of {t}?", "chosen": GOOD.format(t=t), "rejected": BAD[2]})
    return rows


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """(sft model dir, rankings path): a ci-size Llama from scratch and a synthetic preference file."""
    root = tmp_path_factory.mktemp("dpo")
    texts = [json.dumps(r) for r in _records()] * 3
    tok = train_bpe(texts, vocab_size=300)
    torch.manual_seed(0)
    model = build_causal_lm(tok, "ci")
    model.save_pretrained(root / "sft")
    tok.save_pretrained(root / "sft")
    data = root / "rankings.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in _records()))
    return root / "sft", data


def _cfg(world, out, preset="ci", **kw) -> dpo.Config:
    from rlhfkit.config import apply

    cfg = apply(dpo.Config(), dpo.PRESETS[preset])
    cfg.model, cfg.data.path, cfg.out = str(world[0]), str(world[1]), str(out)
    cfg.data.val_fraction = 0.25
    return apply(cfg, kw)


def test_expand_pairs_skips_ties_and_identical_and_keeps_weight():
    r = Ranking("p", ["a", "b", "c", "a"], [1, [0, 2], 3], weight=2.5)  # 0 and 3 are the same text
    pairs, skipped = dpo.expand_pairs([r])
    # C(4,2) = 6 pairs: one tie (0,2) and one between identical texts (0,3) are dropped
    assert sorted((c, r_) for _, c, r_, _ in pairs) == [("b", "a"), ("b", "a"), ("b", "c"), ("c", "a")]
    assert {w for *_, w in pairs} == {2.5}
    assert skipped == {"ties": 1, "identical": 1, "zero_weight": 0}


def test_split_keeps_each_prompt_on_one_side():
    pairs = [(f"p{i % 7}", "a", "b", 1.0) for i in range(50)]
    train, val = dpo.split_by_prompt(pairs, 0.3, seed=1)
    assert {p[0] for p in train}.isdisjoint({p[0] for p in val})
    assert len(train) + len(val) == 50 and val


def test_sequence_logps_sum_response_tokens_only(world):
    """Padded batch log-probs == per-sequence sums computed unpadded, token by token, over the response only."""
    from rlhfkit.data.tokenizer import load_tokenizer

    tok, model = load_tokenizer(world[0]), load_causal_lm(world[0])
    pairs = [("Tell me about tea.", GOOD.format(t="tea"), "no", 1.0), ("Hi?", "I refuse.", "whatever", 1.0)]
    examples, _ = dpo.encode_pairs(tok, pairs, 256)
    batch = dpo.collate_pairs(examples, tok.pad_token_id)
    got = dpo.sequence_logps(model, batch["ids"], batch["attn"], batch["mask"])
    seqs = [(e.chosen, e.chosen_start) for e in examples] + [(e.rejected, e.rejected_start) for e in examples]
    with torch.no_grad():
        for value, (ids, start) in zip(got, seqs):
            logp = model(input_ids=torch.tensor([ids])).logits[0].log_softmax(-1)
            want = sum(logp[t - 1, ids[t]].item() for t in range(start, len(ids)))
            assert value.item() == pytest.approx(want, abs=1e-4)
    # the response of each rendering is the text (after the template's space) plus the end-of-turn token,
    # nothing of the prompt
    assert tok.decode(examples[0].rejected[examples[0].rejected_start:]) == " no" + tok.eos_token


def test_record_weights_weight_the_pairs(world):
    """dpo_loss over pairs weighted (3, 1) == (3 x loss_a + loss_b) / 4, each computed alone."""
    from rlhfkit.data.tokenizer import load_tokenizer

    tok, model = load_tokenizer(world[0]), load_causal_lm(world[0])
    pairs = [("Tell me about tea.", GOOD.format(t="tea"), "no", 3.0), ("Hi?", "I refuse.", "whatever", 1.0)]
    examples, _ = dpo.encode_pairs(tok, pairs, 256)
    for e, ref in zip(examples, [(-40.0, -9.0), (-20.0, -25.0)]):  # any fixed reference, so h != 0
        e.ref = ref
    cfg = dpo.Config(beta=0.1)
    both, _ = dpo.dpo_loss(model, dpo.collate_pairs(examples, tok.pad_token_id), cfg)
    a, _ = dpo.dpo_loss(model, dpo.collate_pairs(examples[:1], tok.pad_token_id), cfg)
    b, _ = dpo.dpo_loss(model, dpo.collate_pairs(examples[1:], tok.pad_token_id), cfg)
    assert both.item() == pytest.approx((3 * a.item() + b.item()) / 4, rel=1e-5)
    assert abs(a.item() - b.item()) > 1e-2  # so the weighting is visible


def test_pair_losses_are_the_losses_functions_per_pair():
    from rlhfkit import losses as L

    g = torch.Generator().manual_seed(0)
    pi_w, pi_l, ref_w, ref_l = torch.randn(4, 3, generator=g).unbind(0)
    cfg = dpo.Config(beta=0.5)
    ones = torch.ones(3)
    per_pair, _, _ = dpo.pair_losses(cfg, pi_w, pi_l, ref_w, ref_l, ones, ones)
    assert per_pair.mean().item() == pytest.approx(L.dpo_sigmoid(pi_w, pi_l, ref_w, ref_l, 0.5)[0].item())
    one = L.dpo_sigmoid(pi_w[1:2], pi_l[1:2], ref_w[1:2], ref_l[1:2], 0.5)[0]
    assert per_pair[1].item() == pytest.approx(one.item())
    # cdpo and ipo pick the other functions (ipo on length-averaged log-probs)
    cfg.loss, cfg.label_smoothing = "cdpo", 0.2
    lens = torch.tensor([2.0, 3.0, 4.0])
    assert dpo.pair_losses(cfg, pi_w, pi_l, ref_w, ref_l, ones, ones)[0].mean().item() == pytest.approx(
        L.dpo_sigmoid(pi_w, pi_l, ref_w, ref_l, 0.5, 0.2)[0].item())
    cfg.loss = "ipo"
    assert dpo.pair_losses(cfg, pi_w, pi_l, ref_w, ref_l, lens, ones)[0].mean().item() == pytest.approx(
        L.ipo(pi_w / lens, pi_l, ref_w / lens, ref_l, 0.5)[0].item())


def test_ci_run_learns_the_preferences_and_caches_the_reference(world, tmp_path, monkeypatch):
    calls = []
    real = dpo.compute_ref_logps
    monkeypatch.setattr(dpo, "compute_ref_logps", lambda *a, **k: calls.append(1) or real(*a, **k))
    out = tmp_path / "dpo"
    model_dir = dpo.run(_cfg(world, out))
    summary = json.loads((out / "summary.json").read_text())
    first, final = summary["first"], summary["final"]
    # before training the policy is the reference: every margin is exactly 0
    assert first["val_accuracy"] == 0.5 and first["val_loss"] == pytest.approx(math.log(2), abs=1e-5)
    assert final["val_accuracy"] > 0.8, summary
    assert final["val_loss"] < first["val_loss"] - 0.05 and final["val_margin"] > 0
    assert summary["data"]["ties"] == len(TOPICS) and summary["ref_logps"] == "computed" and len(calls) == 1
    assert load_causal_lm(model_dir) is not None
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["step"] == 30 and "val_margin" in rows[-1] and "accuracy" in rows[-1]

    # resume: the cached reference log-probs are reused, not recomputed
    stamp = (out / "ref_logps.pt").stat().st_mtime_ns
    dpo.run(_cfg(world, out, resume=True, optim={"max_steps": 40}))
    summary = json.loads((out / "summary.json").read_text())
    assert len(calls) == 1 and summary["ref_logps"] == "reused" and summary["steps"] == 40
    assert (out / "ref_logps.pt").stat().st_mtime_ns == stamp
    assert summary["first"]["val_accuracy"] == 0.5  # read back from the first run's step-0 row


@pytest.mark.parametrize("loss", ["ipo", "cdpo"])
def test_variants_train(world, tmp_path, loss):
    out = tmp_path / loss
    dpo.run(_cfg(world, out, loss=loss, optim={"max_steps": 15}))
    s = json.loads((out / "summary.json").read_text())
    assert s["loss"] == loss and s["final"]["val_accuracy"] > 0.6
    assert s["final"]["val_loss"] < s["first"]["val_loss"]
