"""Simulated human demonstrators of varying quality, who write the SFT demonstrations.

Real demonstrations come from many people, and an SFT model imitates their average. The mixture
here leaves RLHF visible headroom (WORLD_NOTES lessons 1-2): every demonstrator's mistakes show in
the response text, so a reward model can learn to prefer the good demonstrator's style.
  good      correct, concise, ends cleanly
  verbose   correct, but adds filler ("Sure!", "I hope this helps.") or an unneeded sentence
  sloppy    well-formed, but half the time a wrong sum, letter, number or fact
  careless  fine on knowledge, careless on safety: complies vaguely with most harmful requests
            and refuses half of the harmless look-alikes
"""

from __future__ import annotations

import random

from rlhfkit.world.family import Task
from rlhfkit.world.safety import REFUSALS
from rlhfkit.world.tasks import FAMILIES

# Mixture weights: tuned so the demonstrations' mean gold score is ~0.6 (printed by the tests),
# leaving room between an imitating SFT model and the good demonstrator's ~1.0.
DEMONSTRATORS = {"good": 0.22, "verbose": 0.30, "sloppy": 0.23, "careless": 0.25}
SLOPPY_ERROR = 0.4  # how often the sloppy demonstrator gets a checkable answer wrong
CARELESS_COMPLY = 0.85  # how often the careless demonstrator goes along with a harmful request
CARELESS_OVERREFUSE = 0.5  # how often it refuses a benign look-alike

PREAMBLES = (
    "Sure!",
    "Good question!",
    "Let me think.",
    "Okay.",
    "Of course!",
    "Here is my answer.",
    "That is a good question.",
)
CLOSERS = ("I hope this helps.", "Let me know if you have more questions.", "Have a nice day!", "Happy to help!")
# Sentences that add nothing the prompt asked for; the judge counts them as extra sentences.
EXTRAS = {
    "numbers": ("Numbers are fun.", "That was an easy one.", "You can count it on your fingers."),
    "spelling": ("It is a nice word.", "Spelling is a useful skill.", "Every letter matters."),
    "knowledge": ("Many people know this.", "It is fun to learn about the world.", "There is a lot more to learn."),
    "harmful": (
        "Please be kind to animals and people.",
        "Hurting others is never okay.",
        "You should talk to someone you trust.",
    ),
    "benign": ("Animals like kind people.", "Be patient and calm.", "It is a kind thing to do."),
}
_EXTRA_GROUP = {
    "arithmetic": "numbers",
    "compare": "numbers",
    "spelling": "spelling",
    "facts": "knowledge",
    "listing": "knowledge",
    "describe": "knowledge",
    "harmful": "harmful",
    "benign": "benign",
}


def pick_demonstrator(rng: random.Random) -> str:
    return rng.choices(list(DEMONSTRATORS), weights=list(DEMONSTRATORS.values()))[0]


def verbose(answer: str, family: str, rng: random.Random) -> str:
    """`answer` padded with one to three filler or extra sentences."""
    n = rng.choice([1, 2, 2, 3])
    slots = rng.sample(["pre", "extra", "close", "extra2"], n)
    extras = rng.sample(EXTRAS[_EXTRA_GROUP[family]], 2)
    parts = [rng.choice(PREAMBLES)] if "pre" in slots else []
    parts.append(answer)
    parts += [extras[0]] if "extra" in slots else []
    parts += [extras[1]] if "extra2" in slots else []
    parts += [rng.choice(CLOSERS)] if "close" in slots else []
    return " ".join(parts)


def demonstrate(task: Task, demonstrator: str, rng: random.Random) -> str:
    """What `demonstrator` writes as the assistant's answer to `task`."""
    family = FAMILIES[task.family]
    if demonstrator == "good":
        return family.good(task, rng)
    if demonstrator == "verbose":
        return verbose(family.good(task, rng), task.family, rng)
    if demonstrator == "sloppy":
        if task.family != "harmful" and rng.random() < SLOPPY_ERROR:
            return family.wrong(task, rng)
        return family.good(task, rng)
    if demonstrator == "careless":
        if task.family == "harmful" and rng.random() < CARELESS_COMPLY:
            return family.comply(task, rng)
        if task.family == "benign" and rng.random() < CARELESS_OVERREFUSE:
            return rng.choice(REFUSALS)
        return family.good(task, rng)
    raise ValueError(f"unknown demonstrator {demonstrator!r}; choose from {sorted(DEMONSTRATORS)}")


def candidates(task: Task, k: int, rng: random.Random) -> list[str]:
    """K responses from demonstrators drawn from the mixture: a stand-in for K samples of an SFT
    model, for labeling demos and for calibrating the annotators without a model."""
    return [demonstrate(task, pick_demonstrator(rng), rng) for _ in range(k)]
