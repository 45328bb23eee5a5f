"""The RL stages on several processes (`torchrun` / `accelerate launch`; DDP through Accelerate).

Each rank samples and scores its own share of a step's prompts. The rollouts are then gathered, so every
rank holds the whole batch and computes advantages (GAE, whitening, group baselines) over all of it, as
one process would. Each minibatch of the whole batch is split across the ranks, and each rank's mean loss
is scaled by its share of the minibatch's tokens (or sequences), so DDP's gradient average equals the
one-process minibatch gradient. Sampling draws one uniform per row of the whole batch per decode step, and
a rank uses its own rows' (`row_span`), so a row's tokens do not depend on how the batch is sharded.

So N processes at `--rollout.batch_prompts B` and minibatch M follow one process at N·B and N·M
(tests/test_distributed.py). In one process every function here is the identity.
"""

from __future__ import annotations

from dataclasses import fields, replace

import torch
import torch.nn.functional as F

from ..common import accelerator, dist_rank_size
from .rollout import Rollout


def distributed() -> bool:
    return dist_rank_size()[1] > 1


def row_span(n_local: int) -> tuple[int, int]:
    """(index of this rank's first row in the whole batch, rows in the whole batch)."""
    if not distributed():
        return 0, n_local
    acc = accelerator()
    counts = acc.gather(torch.tensor([n_local], device=acc.device)).tolist()
    return sum(counts[:acc.process_index]), sum(counts)


def ddp(model: torch.nn.Module) -> torch.nn.Module:
    """The module to run training forwards through: DDP-wrapped by Accelerate under a distributed launch (its
    backward all-reduces the gradients), the module itself in one process.

    FSDP and DeepSpeed are refused: their forwards are collectives, and each rank's decode loop runs as
    many steps as its own longest response, so sharded generation would deadlock."""
    if not distributed():
        return model
    from accelerate.utils import DistributedType

    from ..common import StageError

    acc = accelerator()
    if acc.distributed_type in (DistributedType.FSDP, DistributedType.DEEPSPEED):
        raise StageError(f"the RL stages run data-parallel (DDP) only, not {acc.distributed_type.value}: "
                         "launch them with configs/ddp.yaml or torchrun (and --lora.r to fit larger models)")
    return acc.prepare_model(model)


def shard(idx: torch.Tensor, units: torch.Tensor) -> tuple[torch.Tensor, float]:
    """This rank's rows of a minibatch `idx` of the whole batch, and the scale of its mean loss.

    `units` [len(idx)] counts what the loss averages over in each row (response tokens, or 1 per sequence):
    the scale is N·u_r/Σu, so the mean over ranks of the scaled losses is the whole minibatch's mean. A rank
    left without rows (a last minibatch smaller than N) computes its first row at scale 0, because every
    rank must join each DDP backward."""
    rank, n = dist_rank_size()
    if n == 1:
        return idx, 1.0
    lo, hi = len(idx) * rank // n, len(idx) * (rank + 1) // n
    mine = float(units[lo:hi].sum())
    acc = accelerator()
    total = float(acc.reduce(torch.tensor([mine], dtype=torch.float64, device=acc.device), reduction="sum"))
    if hi == lo:
        return idx[:1], 0.0
    return idx[lo:hi], n * mine / max(total, 1e-12)


def mean_over_ranks(sums: dict[str, float]) -> dict[str, float]:
    """Means over ranks of scaled per-rank metrics (`shard`'s scale times a rank's mean), i.e. the minibatch
    means of the whole batch."""
    if not distributed() or not sums:
        return sums
    keys = sorted(sums)
    acc = accelerator()
    vals = acc.reduce(torch.tensor([sums[k] for k in keys], dtype=torch.float64, device=acc.device), "sum")
    return {k: float(v) / dist_rank_size()[1] for k, v in zip(keys, vals)}


def gather_rollout(ro: Rollout, values: torch.Tensor | None, pad_id: int) -> tuple[Rollout, torch.Tensor | None]:
    """Every rank's rollout (and values [B, R]) concatenated in rank order, re-padded to common widths: prompts
    left-padded to the longest, responses right-padded to the longest, exactly as one process batching
    all the prompts would have laid them out."""
    if not distributed():
        return ro, values
    from accelerate.utils import gather_object

    mine = {f.name: _cpu(getattr(ro, f.name)) for f in fields(ro)}
    mine["values"] = _cpu(values)
    parts = gather_object([mine])
    P, R = max(p["prompt_len"] for p in parts), max(p["response_mask"].shape[1] for p in parts)
    merged = {f.name: _concat([_repad(f.name, p, P, R, pad_id) for p in parts], getattr(ro, f.name))
              for f in fields(ro) if f.name != "prompt_len"}
    values = _concat([_repad("values", p, P, R, pad_id) for p in parts], values)
    return replace(ro, prompt_len=P, **merged), values


def _cpu(x):
    return x.detach().cpu() if isinstance(x, torch.Tensor) else x


def _repad(name: str, part: dict, P: int, R: int, pad_id: int):
    x = part[name]
    if not isinstance(x, torch.Tensor) or x.dim() < 2:
        return x
    p, r = part["prompt_len"], part["response_mask"].shape[1]
    if name in ("sequences", "attention_mask"):  # [B, p + r]: the prompt part grows on the left
        fill = pad_id if name == "sequences" else 0
        prompt = F.pad(x[:, :p], (P - p, 0), value=fill)
        return torch.cat([prompt, F.pad(x[:, p:], (0, R - r), value=fill)], dim=1)
    return F.pad(x, (0, R - r), value=0)  # [B, r] response-aligned: masks, log-probs, values


def _concat(xs: list, like):
    """The ranks' parts joined, on the device this rank's own part (`like`) was on."""
    if xs[0] is None:
        return None
    if isinstance(xs[0], torch.Tensor):
        return torch.cat(xs).to(like.device)
    return [item for x in xs for item in x]
