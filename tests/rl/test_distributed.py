"""rl/distributed.py in one process, and what it refuses. (Two processes: tests/test_distributed.py.)"""

from __future__ import annotations

import pytest
import torch

from rlhfkit.rl import distributed as D


def test_one_process_is_the_identity():
    idx = torch.tensor([3, 1, 2])
    assert D.row_span(5) == (0, 5)
    got, w = D.shard(idx, torch.ones(3))
    assert got is idx and w == 1.0
    assert D.mean_over_ranks({"a": 2.0}) == {"a": 2.0}
    model = torch.nn.Linear(2, 2)
    assert D.ddp(model) is model


def test_repad_lays_a_rank_out_as_one_batch_would():
    """A rank's rows re-padded to the whole batch's widths: prompt grown on the left, response on the right."""
    part = {"prompt_len": 2, "response_mask": torch.ones(1, 1), "sequences": torch.tensor([[7, 8, 9]]),
            "attention_mask": torch.tensor([[1, 1, 1]]), "logp": torch.tensor([[-0.5]])}
    assert D._repad("sequences", part, P=4, R=3, pad_id=0).tolist() == [[0, 0, 7, 8, 9, 0, 0]]
    assert D._repad("attention_mask", part, P=4, R=3, pad_id=0).tolist() == [[0, 0, 1, 1, 1, 0, 0]]
    assert D._repad("logp", part, P=4, R=3, pad_id=0).tolist() == [[-0.5, 0.0, 0.0]]


def test_sharded_launches_are_refused(monkeypatch):
    """FSDP / DeepSpeed forwards are collectives; ranks' decode loops differ in length, so RL refuses them."""
    from accelerate.utils import DistributedType

    from rlhfkit.common import StageError, accelerator

    monkeypatch.setattr(D, "distributed", lambda: True)
    monkeypatch.setattr(type(accelerator()), "distributed_type", property(lambda self: DistributedType.FSDP))
    with pytest.raises(StageError, match="DDP"):
        D.ddp(torch.nn.Linear(2, 2))
