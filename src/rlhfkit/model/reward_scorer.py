"""Score (prompt, response) pairs with a trained reward model or ensemble: what PPO, best-of-n and eval call.

    scorer = load_reward("runs/demo/reward")           # one member or an ensemble folder
    mean, std = scorer.score_texts(prompts, responses)  # normalised rewards [B], ensemble spread [B]

A reward folder written by `rlhfkit reward` is either a single ScalarModel folder (`scalar.json` inside),
a stage folder holding one in `model/`, or a stage folder with `member_0 .. member_{N-1}`. Rewards are
normalised per member (mean 0 / std 1 on SFT samples, stored in scalar.json) before averaging, so the
spread across members is in the same units as the reward (Coste et al. 2023 penalise it in RL).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from ..data.chat import render_pair
from .causal_lm import context_length
from .scalar import ScalarModel


def encode(tokenizer, prompt: str, response: str, max_len: int) -> list[int]:
    """Chat-rendered ids of prompt + response; when too long keep the *end* (the score is read there)."""
    ids, _ = render_pair(tokenizer, prompt, response)
    return ids[-max_len:]


def collate(seqs: list[list[int]], pad_id: int, device=None) -> tuple[Tensor, Tensor]:
    """Right-pad to the longest: ids [B, T], attention mask [B, T]. The mask, not the pad id, marks
    real tokens, so tokenizers whose pad token is EOS are scored at the right place."""
    T = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), T), pad_id, dtype=torch.long)
    attn = torch.zeros((len(seqs), T), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, :len(s)] = torch.tensor(s, dtype=torch.long)
        attn[i, :len(s)] = 1
    return ids.to(device), attn.to(device)


@torch.no_grad()
def raw_scores(model: ScalarModel, seqs: list[list[int]], pad_id: int, batch_size: int = 64) -> Tensor:
    """Unnormalised scores [N] of id sequences, batched by similar length (sorted, then restored)."""
    device = next(model.parameters()).device
    was = model.training
    model.eval()
    order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]))
    out = torch.empty(len(seqs))
    for i in range(0, len(order), batch_size):
        idx = order[i:i + batch_size]
        ids, attn = collate([seqs[j] for j in idx], pad_id, device)
        out[idx] = model(ids, attn).float().cpu()
    model.train(was)
    return out


class RewardScorer:
    """One reward model or an ensemble, frozen (eval mode, no grad). `.tokenizer` renders inputs."""

    def __init__(self, members: list[ScalarModel], tokenizer, max_len: int | None = None):
        if not members:
            raise ValueError("a RewardScorer needs at least one model")
        self.members = [m.eval().requires_grad_(False) for m in members]
        self.tokenizer = tokenizer
        self.max_len = max_len or context_length(members[0])

    def __len__(self) -> int:
        return len(self.members)

    @property
    def device(self) -> torch.device:
        return next(self.members[0].parameters()).device

    def to(self, device) -> "RewardScorer":
        self.members = [m.to(device) for m in self.members]
        return self

    @torch.no_grad()
    def score_ids(self, input_ids: Tensor, attention_mask: Tensor) -> tuple[Tensor, Tensor]:
        """(mean [B], std [B]) of the members' normalised rewards; std is 0 for a single model.

        Population std (divide by N): the spread of these N members, not an estimate for unseen ones.
        """
        input_ids, attention_mask = input_ids.to(self.device), attention_mask.to(self.device)
        r = torch.stack([m.score(input_ids, attention_mask).float() for m in self.members])  # [M, B]
        return r.mean(0), r.std(0, correction=0)

    def __call__(self, prompts: list[str], responses: list[str]) -> tuple[Tensor, Tensor]:
        """A scorer is a reward function (rl.rewards.RewardFn) that also holds its models, so PPO can move
        them between devices (`--ppo.offload`)."""
        return self.score_texts(prompts, responses)

    @torch.no_grad()
    def score_texts(self, prompts: list[str], responses: list[str], batch_size: int = 64) -> tuple[Tensor, Tensor]:
        """(mean [B], std [B]) normalised rewards of each response to its prompt (on CPU)."""
        if len(prompts) != len(responses):
            raise ValueError(f"{len(prompts)} prompts but {len(responses)} responses; expected one each")
        seqs = [encode(self.tokenizer, p, r, self.max_len) for p, r in zip(prompts, responses)]
        mean, std = torch.empty(len(seqs)), torch.empty(len(seqs))
        order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]))
        for i in range(0, len(order), batch_size):
            idx = order[i:i + batch_size]
            ids, attn = collate([seqs[j] for j in idx], self.tokenizer.pad_token_id)
            m, s = self.score_ids(ids, attn)
            mean[idx], std[idx] = m.cpu(), s.cpu()
        return mean, std


def member_dirs(path: str | Path) -> list[Path]:
    """The ScalarModel folders inside a reward folder (see the module docstring for the layouts)."""
    path = Path(path)
    if (path / "scalar.json").exists():
        return [path]
    members = sorted(path.glob("member_*"), key=lambda p: int(p.name.split("_")[-1]))
    members = [m for m in members if (m / "scalar.json").exists()]
    if members:
        return members
    if (path / "model" / "scalar.json").exists():
        return [path / "model"]
    raise FileNotFoundError(f"{path}: no reward model here; expected scalar.json, member_*/ or model/ "
                            "(the output of `rlhfkit reward`)")


def load_reward(path: str | Path, device=None) -> RewardScorer:
    """Load a reward model or ensemble written by `rlhfkit reward` (frozen, on `device` or CPU)."""
    from ..data.tokenizer import load_tokenizer

    dirs = member_dirs(path)
    tokenizer = load_tokenizer(dirs[0] / "backbone")
    tokenizer.padding_side = "right"
    scorer = RewardScorer([ScalarModel.load(d) for d in dirs], tokenizer)
    return scorer.to(device) if device is not None else scorer
