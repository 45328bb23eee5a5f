"""SFT packing (`--data.pack`): several conversations per row with block-diagonal attention and positions
restarting per conversation must compute exactly what the conversations compute alone — no attention
or loss across conversations — with fewer rows than right-padding."""

from __future__ import annotations

import json

import torch

from rlhfkit.config import parse
from rlhfkit.data.chat import render_chat
from rlhfkit.stages import sft
from rlhfkit.lm import lm_step, segment_attention


def _examples(tokenizer, n: int = 7) -> list[tuple[list[int], list[int]]]:
    # One long conversation, the rest short: the short ones share rows.
    convs = [[{"role": "user", "content": "What is " + " plus ".join(["2"] * (1 + i % 2)) + "?"},
              {"role": "assistant", "content": f"It is {2 * (1 + i % 2)}." + " Yes." * (12 if i == 0 else i % 2)}]
             for i in range(n)]
    return [render_chat(tokenizer, c) for c in convs]


def test_segment_positions_and_mask_by_hand():
    mask, pos = segment_attention(torch.tensor([[1, 1, 2, 2, 2, 0]]))
    assert pos.tolist() == [[0, 1, 0, 1, 2, 0]]
    allowed = (mask[0, 0] == 0).int().tolist()
    assert allowed == [[1, 0, 0, 0, 0, 0],
                       [1, 1, 0, 0, 0, 0],
                       [0, 0, 1, 0, 0, 0],
                       [0, 0, 1, 1, 0, 0],
                       [0, 0, 1, 1, 1, 0],
                       [0, 0, 0, 0, 0, 1]]  # padding attends only to itself


def test_packed_rows_hold_every_conversation_once_and_fewer_rows(tokenizer):
    batch = _examples(tokenizer)
    ids, mask, attn, seg = sft.collate_packed(batch, tokenizer.pad_token_id)
    assert ids.shape[0] < len(batch) and ids.shape[1] == max(len(x) for x, _ in batch)
    found = sorted(ids[r][seg[r] == k].tolist() for r in range(ids.shape[0]) for k in range(1, int(seg[r].max()) + 1))
    assert found == sorted(x for x, _ in batch)
    assert int(mask.sum()) == sum(sum(m) for _, m in batch) and bool((attn == (seg > 0)).all())


def test_packed_loss_and_gradients_equal_unpacked(lm, tokenizer):
    batch = _examples(tokenizer)
    losses, grads = [], []
    for collate in (sft.collate, sft.collate_packed):
        lm.zero_grad()
        loss, metrics = lm_step(lm, *collate(batch, tokenizer.pad_token_id))
        loss.backward()
        losses.append(loss.detach())
        grads.append(torch.cat([p.grad.flatten() for p in lm.parameters() if p.grad is not None]))
    torch.testing.assert_close(losses[1], losses[0], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-4, atol=1e-6)


def test_packed_logits_equal_each_conversation_alone(lm, tokenizer):
    batch = _examples(tokenizer, 5)
    ids, _, _, seg = sft.collate_packed(batch, tokenizer.pad_token_id)
    mask4, pos = segment_attention(seg)
    with torch.no_grad():
        packed = lm(input_ids=ids, attention_mask=mask4, position_ids=pos).logits
        for r in range(ids.shape[0]):
            for k in range(1, int(seg[r].max()) + 1):
                x = ids[r][seg[r] == k]
                alone = lm(input_ids=x[None]).logits[0]
                torch.testing.assert_close(packed[r][seg[r] == k], alone, rtol=1e-4, atol=1e-5)


def test_sft_stage_with_packing_trains(lm_dir, tmp_path):
    rows = [{"messages": [{"role": "user", "content": f"What is {i} plus 1?"},
                          {"role": "assistant", "content": f"It is {i + 1}." + " Yes." * (i % 4)}]} for i in range(24)]
    data = tmp_path / "sft.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "out"
    sft.run(parse(sft.Config, ["--model", str(lm_dir), "--data.path", str(data), "--out", str(out), "--data.pack",
                               "--optim.max_steps=6", "--optim.eval_every=3", "--optim.batch_size=8",
                               "--optim.lr=3e-3", "--optim.warmup_steps=1", "--patience=0"]))
    losses = [json.loads(line)["loss"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert losses[-1] < losses[0]
