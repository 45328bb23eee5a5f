"""The built-in task world: a small world of facts to pretrain on, instruction families with
verifiable answers, demonstrators of mixed quality, a gold judge and simulated annotators.

    rlhfkit world export --out runs/world --size tiny

Pure Python (stdlib only), deterministic by seed. See export.py for the files it writes.
"""

from rlhfkit.world.annotators import AnnotatorPool, gold_ranking, pairwise_agreement
from rlhfkit.world.export import export
from rlhfkit.world.judge import Judgement, is_refusal, judge, reward_fn
from rlhfkit.world.tasks import FAMILIES, parse_prompt

__all__ = [
    "export",
    "judge",
    "Judgement",
    "reward_fn",
    "is_refusal",
    "AnnotatorPool",
    "FAMILIES",
    "parse_prompt",
    "pairwise_agreement",
    "gold_ranking",
]
