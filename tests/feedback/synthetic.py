"""Synthetic annotators with known behaviour, for testing quality control without the world package.

Each item has latent candidate qualities s ~ N(0, 1); an annotator ranks by s + noise, sorted best
first, or (adversarial) worst first — everywhere, or only on one family ("targeted").
"""

from __future__ import annotations

import numpy as np

PROFILES = {  # name: (noise std, invert everywhere, invert on family "harmful")
    "careful": (0.25, False, False),
    "noisy": (1.2, False, False),
    "adversarial": (0.25, True, False),
    "targeted": (0.25, False, True),
    "lazy": None,   # ranks in the order shown (position bias)
    "long": None,   # ranks the longest response first (length bias)
}
FAMILIES = ("math", "facts", "harmful")


def make_records(profiles: list[str], n_items: int = 120, k: int = 4, redundancy: int = 3, seed: int = 0,
                 gold_every: int = 0) -> list[dict]:
    """Rankings of `n_items` items, each by `redundancy` distinct annotators drawn at random."""
    rng = np.random.default_rng(seed)
    names = [f"{p}-{i}" for i, p in enumerate(profiles)]
    records = []
    for u in range(n_items):
        s = rng.normal(size=k)
        family = FAMILIES[u % len(FAMILIES)]
        responses = [f"item {u} response {c}" + "." * int(rng.integers(0, 30)) for c in range(k)]
        for a in rng.choice(len(profiles), size=redundancy, replace=False):
            display = [int(x) for x in rng.permutation(k)]
            if profiles[a] == "lazy":
                ranking = list(display)
            elif profiles[a] == "long":
                ranking = [int(c) for c in np.argsort([-len(r) for r in responses], kind="stable")]
            else:
                noise, invert, targeted = PROFILES[profiles[a]]
                seen = s + rng.normal(scale=noise, size=k)
                if invert or (targeted and family == "harmful"):
                    seen = -seen
                ranking = [int(c) for c in np.argsort(-seen)]
            rec = {"prompt": f"prompt {u}", "responses": responses, "annotator": names[a], "family": family,
                   "ranking": ranking, "display_order": display}
            if gold_every and u % gold_every == 0:
                rec["gold_best"] = int(np.argmax(s))
            records.append(rec)
    return records
