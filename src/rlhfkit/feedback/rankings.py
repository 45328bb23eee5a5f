"""The K-way ranking format shared by the store, export and quality control.

A ranking lists indices best -> worst; a nested list is a tie, e.g. [2, [0, 3], 1]. Helpers here
validate one and turn it into rank positions or pairwise judgements (pure Python: the web app
imports this module).
"""

from __future__ import annotations

from typing import Any

MIN_K, MAX_K = 2, 9


class RankingError(ValueError):
    """A ranking that is not a permutation of 0..K-1 (message says what was expected)."""


def normalize_ranking(ranking: Any, k: int) -> list[int | list[int]]:
    """Check `ranking` covers each of 0..k-1 exactly once; one-element tie groups become plain ints."""
    if not isinstance(ranking, list) or not ranking:
        raise RankingError(f"ranking: expected a list of the indices 0..{k - 1}, best first")
    out: list[int | list[int]] = []
    seen: list[int] = []
    for entry in ranking:
        group = entry if isinstance(entry, list) else [entry]
        if not group:
            raise RankingError("ranking: empty tie group; expected a list of two or more indices")
        for i in group:
            if not isinstance(i, int) or isinstance(i, bool):
                raise RankingError(f"ranking: {i!r} is not an integer index; expected 0..{k - 1}")
            if not 0 <= i < k:
                raise RankingError(f"ranking: index {i} out of range; expected 0..{k - 1}")
            if i in seen:
                raise RankingError(f"ranking: index {i} appears twice; expected each of 0..{k - 1} once")
            seen.append(i)
        out.append(list(group) if len(group) > 1 else group[0])
    if len(seen) != k:
        missing = sorted(set(range(k)) - set(seen))
        raise RankingError(f"ranking: missing indices {missing}; expected each of 0..{k - 1} once")
    return out


def rank_positions(ranking: list[int | list[int]], k: int) -> list[float]:
    """positions[i] = place of candidate i (0 = best); tied candidates share their mean place."""
    pos = [0.0] * k
    place = 0
    for entry in ranking:
        group = entry if isinstance(entry, list) else [entry]
        mean = place + (len(group) - 1) / 2
        for i in group:
            pos[i] = mean
        place += len(group)
    return pos


def pairwise(ranking: list[int | list[int]], k: int) -> list[tuple[int, int, int]]:
    """(i, j, y) for every untied pair i < j: y = 1 if i is ranked above j, else 0."""
    pos = rank_positions(ranking, k)
    return [(i, j, int(pos[i] < pos[j])) for i in range(k) for j in range(i + 1, k) if pos[i] != pos[j]]
