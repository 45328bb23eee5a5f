"""Language-model steps shared by pretraining and SFT (`lm_step`, packed-row attention, held-out loss), and the
final save every training stage ends with (`save_final`)."""

from __future__ import annotations

from pathlib import Path

import torch

from . import checkpoint
from .common import StageError, is_main_process, wait_for_everyone
from .losses import lm_loss
from .model import lora
from .rl.engine import positions


def lm_step(model, ids: torch.Tensor, mask: torch.Tensor | None, attention_mask: torch.Tensor | None = None,
            segments: torch.Tensor | None = None):
    """(loss, metrics) for a batch of ids [B, T]; `mask` [B, T] marks target tokens (None = all).

    `segments` [B, T] (packed rows: 1, 2, ... per sequence, 0 for padding) makes attention block-diagonal
    and restarts positions at each sequence, so a packed row computes what its sequences would alone."""
    device = next(model.parameters()).device  # the Trainer may have moved the model to a GPU
    ids = ids.to(device)
    attention_mask = torch.ones_like(ids) if attention_mask is None else attention_mask.to(device)
    mask = None if mask is None else mask.to(device)
    target = attention_mask if mask is None else mask
    if segments is None:
        attn, pos = attention_mask, positions(attention_mask)
    else:
        attn, pos = segment_attention(segments.to(device))
    logits = model(input_ids=ids, attention_mask=attn, position_ids=pos).logits
    loss = lm_loss(logits, ids, target)
    return loss, {"tokens": float(target[:, 1:].sum())}


def segment_attention(seg: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Additive 4-D mask [B, 1, T, T] (a token sees earlier tokens of its own segment) and position ids
    [B, T] restarting at 0 in each segment, from segment ids [B, T] (0 = padding)."""
    T = seg.shape[1]
    causal = torch.ones(T, T, dtype=torch.bool, device=seg.device).tril()
    same = (seg[:, :, None] == seg[:, None, :]) & (seg[:, None, :] > 0)
    allowed = (same & causal) | torch.eye(T, dtype=torch.bool, device=seg.device)  # padding sees itself: no NaN
    mask = torch.zeros(allowed.shape, dtype=torch.float32, device=seg.device)
    mask = mask.masked_fill(~allowed, torch.finfo(torch.float32).min)[:, None]
    starts = torch.ones_like(seg, dtype=torch.bool)
    starts[:, 1:] = seg[:, 1:] != seg[:, :-1]
    idx = torch.arange(T, device=seg.device).expand_as(seg)
    first = torch.where(starts, idx, torch.zeros_like(idx)).cummax(dim=1).values  # start of each token's segment
    return mask, (idx - first) * (seg > 0)


@torch.no_grad()
def evaluate_lm(model, batches) -> float:
    """Mean held-out loss per target token over `batches` (tensors, or (ids, mask, attn) tuples)."""
    was = model.training
    model.eval()
    total, count = 0.0, 0.0
    for b in batches:
        for chunk in _chunks(b, 32):
            ids, mask, attn = chunk if isinstance(chunk, tuple) else (chunk, None, None)
            loss, m = lm_step(model, ids, mask, attn)
            total += loss.item() * m["tokens"]
            count += m["tokens"]
    model.train(was)
    return total / max(count, 1.0)


def _chunks(batch, size: int):
    if isinstance(batch, tuple):
        n = batch[0].shape[0]
        for i in range(0, n, size):
            yield tuple(t[i:i + size] for t in batch)
    else:
        for i in range(0, batch.shape[0], size):
            yield batch[i:i + size]


def save_final(model, tokenizer, out: Path, state_dict: dict | None = None, stage: str = "") -> Path:
    """The stage's deliverable: OUT/model, an HF folder that from_pretrained loads (LoRA adapters merged
    in, so the next stage needs no peft), with a model card (README.md, model/card.py) when `stage` is named.
    Written by the main process only; the others wait for it. `state_dict`: the gathered weights of a
    sharded model (Trainer.full_state_dict), saved instead of the model's own (which are this rank's shards)."""
    from .model.card import write_card

    if state_dict is not None and lora.is_lora(model):
        raise StageError("LoRA under FSDP / ZeRO-3 is not supported yet: launch LoRA runs with DDP (configs/ddp.yaml)")
    model = lora.merged(model)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.bos_token_id = tokenizer.bos_token_id
    if is_main_process():
        card = (lambda tmp: write_card(tmp, stage, out)) if stage else None
        checkpoint.save_model(model, tokenizer, out / "model", extra=card, state_dict=state_dict)
    wait_for_everyone()
    return out / "model"
