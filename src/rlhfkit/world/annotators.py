"""Simulated human annotators who rank K responses, noisily, from the gold judge's scores.

    pool = AnnotatorPool.from_spec("careful:0.6,noisy:0.2,adversarial:0.2", n_annotators=20, seed=0)
    pool.label([(prompt, [r1, r2, r3, r4])], per_item=2)   # -> K-way ranking records

Each annotator draws a full ranking from a Plackett-Luce model (Plackett 1975; Luce 1959):
    P(ranking) = prod_j exp(u_(j)) / sum_{l >= j} exp(u_(l)),   u_i = s_i / T + biases,
sampled exactly with the Gumbel-max trick: order by u_i + Gumbel noise. s_i is the gold score,
T the annotator's temperature. Profiles:
  careful      low T; two careful annotators agree on ~73% of pairs the judge orders (the
               inter-annotator agreement InstructGPT and Stiennon et al. 2020 report)
  noisy        high T
  lazy         medium T plus a bonus for the first positions and for longer responses
  adversarial  careful, except that on harmful prompts it prefers compliance (negated scores)
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from rlhfkit.world.judge import judge
from rlhfkit.world.tasks import parse_prompt


@dataclass(frozen=True)
class Profile:
    temperature: float
    position_bias: float = 0.0  # utility bonus for the first position, falling linearly to 0 at the last
    length_bias: float = 0.0  # utility bonus per unit of (words / mean words - 1)
    adversarial: bool = False


# Temperatures are on the judge's score scale ([-1, 1]); careful's was tuned with
# tests/world/test_annotators.py so careful-careful agreement lands near 0.73.
PROFILES = {
    "careful": Profile(temperature=0.4),
    "noisy": Profile(temperature=2.0),
    "lazy": Profile(temperature=0.6, position_bias=1.5, length_bias=1.5),
    "adversarial": Profile(temperature=0.4, adversarial=True),
}


@dataclass(frozen=True)
class CrowdAnnotator:
    """One simulated crowd worker of the built-in world (a profile: careful, noisy, adversarial, ...); a person's
    account in the labeling app is feedback/store.py LabelerAccount."""

    id: str
    profile: str
    temperature: float  # the profile's temperature, jittered per person

    def utilities(self, prompt: str, responses: list[str]) -> list[float]:
        prof = PROFILES[self.profile]
        task = parse_prompt(" ".join(prompt.split()))
        scores = [judge(prompt, r).score for r in responses]
        if prof.adversarial and task.family == "harmful":
            scores = [-s for s in scores]
        k = len(responses)
        words = [len(r.split()) for r in responses]
        mean_words = max(1.0, sum(words) / k)
        return [
            s / self.temperature + prof.position_bias * (1 - i / (k - 1)) + prof.length_bias * (w / mean_words - 1)
            for i, (s, w) in enumerate(zip(scores, words))
        ]


def _gumbel(rng: random.Random) -> float:
    return -math.log(-math.log(rng.random() or 1e-300))


def _group_identical(responses: list[str]) -> list[list[int]]:
    groups: dict[str, list[int]] = {}
    for i, r in enumerate(responses):
        groups.setdefault(r, []).append(i)
    return list(groups.values())


def _ranking(order: list[list[int]]) -> list[Any]:
    """Groups best->worst as the shared format: a bare index, or a nested list for a tie."""
    return [g[0] if len(g) == 1 else list(g) for g in order]


class AnnotatorPool:
    def __init__(self, annotators: list[CrowdAnnotator], seed: int = 0):
        if not annotators:
            raise ValueError("an annotator pool needs at least one annotator")
        self.annotators = annotators
        self._by_id = {a.id: a for a in annotators}
        self.rng = random.Random(f"rlhfkit-annotators-{seed}")

    @classmethod
    def from_spec(cls, spec: str, n_annotators: int = 20, seed: int = 0) -> AnnotatorPool:
        """`spec` like "careful:0.6,noisy:0.2,adversarial:0.2" (fractions of the pool)."""
        fractions = parse_spec(spec)
        total = sum(fractions.values())
        share = {p: f / total * n_annotators for p, f in fractions.items()}
        counts = {p: int(s) for p, s in share.items()}
        for p in sorted(share, key=lambda p: counts[p] - share[p])[: n_annotators - sum(counts.values())]:
            counts[p] += 1  # largest remainder, so the counts sum to n_annotators
        profiles = [p for p in fractions for _ in range(counts[p])]
        rng = random.Random(f"rlhfkit-annotator-pool-{seed}")
        rng.shuffle(profiles)  # ids carry no hint of the profile
        people = [
            CrowdAnnotator(f"ann-{i:02d}", p, PROFILES[p].temperature * math.exp(rng.gauss(0, 0.2)))
            for i, p in enumerate(profiles)
        ]
        return cls(people, seed)

    def get(self, annotator: str | CrowdAnnotator | None, rng: random.Random) -> CrowdAnnotator:
        if annotator is None:
            return rng.choice(self.annotators)
        if isinstance(annotator, CrowdAnnotator):
            return annotator
        if annotator not in self._by_id:
            raise KeyError(f"no annotator {annotator!r} in the pool")
        return self._by_id[annotator]

    def rank(
        self,
        prompt: str,
        responses: list[str],
        annotator: str | CrowdAnnotator | None = None,
        rng: random.Random | None = None,
    ) -> dict:
        """One K-way ranking record; identical responses are tied, nothing else is."""
        if not 2 <= len(responses) <= 9:
            raise ValueError(f"rank needs 2 to 9 responses, got {len(responses)}")
        rng = rng or self.rng
        who = self.get(annotator, rng)
        u = who.utilities(prompt, responses)
        groups = _group_identical(responses)
        noisy = [u[g[0]] + _gumbel(rng) for g in groups]  # Gumbel-max = a Plackett-Luce sample
        order = [groups[j] for j in sorted(range(len(groups)), key=lambda j: -noisy[j])]
        return {
            "prompt": prompt,
            "responses": list(responses),
            "ranking": _ranking(order),
            "annotator": who.id,
            "family": parse_prompt(" ".join(prompt.split())).family,
            "profile": who.profile,
        }

    def label(self, items: Iterable, per_item: int = 1) -> list[dict]:
        """Rank each (prompt, responses) item (or {"prompt", "responses"} dict) by `per_item`
        distinct annotators."""
        if not 1 <= per_item <= len(self.annotators):
            raise ValueError(f"per_item must be 1..{len(self.annotators)}, got {per_item}")
        out = []
        for item in items:
            prompt, responses = (item["prompt"], item["responses"]) if isinstance(item, dict) else item
            for who in self.rng.sample(self.annotators, per_item):
                out.append(self.rank(prompt, responses, annotator=who))
        return out


def parse_spec(spec: str) -> dict[str, float]:
    out = {}
    for part in spec.split(","):
        name, _, frac = part.strip().partition(":")
        if name not in PROFILES:
            raise ValueError(f"unknown annotator profile {name!r} in {spec!r}; choose from {sorted(PROFILES)}")
        try:
            out[name] = float(frac) if frac else 1.0
        except ValueError:
            raise ValueError(f"bad fraction {frac!r} for {name!r} in {spec!r}") from None
        if out[name] < 0:
            raise ValueError(f"negative fraction for {name!r} in {spec!r}")
    if sum(out.values()) <= 0:
        raise ValueError(f"annotator spec {spec!r} has no positive fraction")
    return out


def gold_ranking(prompt: str, responses: list[str]) -> dict:
    """The judge's own ranking (equal scores tied), as a record from annotator "gold"."""
    scores = [judge(prompt, r).score for r in responses]
    levels = sorted(set(scores), reverse=True)
    order = [[i for i, s in enumerate(scores) if s == lv] for lv in levels]
    return {
        "prompt": prompt,
        "responses": list(responses),
        "ranking": _ranking(order),
        "annotator": "gold",
        "family": parse_prompt(" ".join(prompt.split())).family,
    }


def positions(ranking: list[Any]) -> dict[int, int]:
    """response index -> rank level (0 best); tied responses share a level."""
    out = {}
    for level, entry in enumerate(ranking):
        for i in entry if isinstance(entry, list) else [entry]:
            out[i] = level
    return out


def pairwise_agreement(rankings_a: list[dict], rankings_b: list[dict], reference: list[dict] | None = None) -> float:
    """Fraction of response pairs that two aligned lists of rankings order the same way.
    Pairs tied in either are skipped; with `reference` (e.g. gold rankings) only pairs it orders
    strictly count. NaN when no pair counts."""
    if len(rankings_a) != len(rankings_b) or (reference is not None and len(reference) != len(rankings_a)):
        raise ValueError("ranking lists must be aligned item by item")
    agree = total = 0
    for n, (ra, rb) in enumerate(zip(rankings_a, rankings_b)):
        pa, pb = positions(ra["ranking"]), positions(rb["ranking"])
        pr = positions(reference[n]["ranking"]) if reference is not None else None
        for i in pa:
            for j in pa:
                if i >= j or pa[i] == pa[j] or pb[i] == pb[j] or (pr is not None and pr[i] == pr[j]):
                    continue
                total += 1
                agree += (pa[i] < pa[j]) == (pb[i] < pb[j])
    return agree / total if total else float("nan")
