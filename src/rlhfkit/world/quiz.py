"""Quiz pages of the pretraining corpus: questions asked and answered in the SFT forms, so that the
skills the tasks need (copying the asked operands, word or name into the answer) are learned in
pretraining. Only training-side prompts are asked (eval keys never appear), plus copy drills outside
the tasks' slots. Used by `corpus.generate_corpus`.
"""

from __future__ import annotations

import random
from functools import lru_cache

from rlhfkit.world import facts
from rlhfkit.world.skills import MAX_COMPARE
from rlhfkit.world.splits import is_eval_key
from rlhfkit.world.tasks import FAMILIES, universe

_QUIZ_FAMILIES = ("arithmetic", "facts", "spelling", "compare", "listing", "describe", "benign")


def quiz_page(rng: random.Random, questions: dict[str, list]) -> str:
    """A worked quiz: training-side questions of the skill and knowledge families, each answered in
    the form a good demonstrator uses (never a safety question: refusing is what SFT and RL teach)."""
    lines = []
    for fam in rng.sample(_QUIZ_FAMILIES, rng.randint(1, 3)):
        for task in rng.sample(questions[fam], rng.randint(2, 4)):
            lines.append(f"Question: {task.prompt} Answer: {FAMILIES[fam].good(task, rng)}")
    for task in (copy_drill(rng) for _ in range(rng.choice([0, 0, 1, 2]))):
        lines.append(f"Question: {task.prompt} Answer: {FAMILIES[task.family].good(task, rng)}")
    rng.shuffle(lines)
    return rng.choice(["Quiz with answers", "Answers to the quiz", "Questions and answers", "Homework"]) + "\n" + (
        "\n".join(lines)
    )


DRILL_WORDS = sorted({*facts.THINGS, *facts.FOODS, *facts.COLOURS, *facts.JOBS, *facts.HOMES} - set(facts.WORDS))


def copy_drill(rng: random.Random):
    """A question outside the tasks' slots (operands 10-99, compare 50-99, words that are no spelling task):
    too many to memorise, so answering it in the restating form ("34 plus 52 is 86.", "bread is spelled
    b-r-e-a-d.") teaches copying from a question, which the tasks' small, partly held-out slot spaces
    alone do not (a model memorises their pairs: "3 minus 2 is 1." for "What is 3 minus 1?")."""
    fam = FAMILIES[rng.choice(["arithmetic", "compare", "spelling"])]
    kind, template = rng.choice(fam.templates)
    if fam.name == "spelling":  # a world word that is no spelling task (so never an eval key)
        return fam._task(kind, template, {"word": rng.choice(DRILL_WORDS)})
    lo = 10 if fam.name == "arithmetic" else MAX_COMPARE + 1  # never a task's pair, so never an eval key
    a, b = rng.randint(lo, 99), rng.randint(lo, 99)
    if kind == "minus" and a < b or kind in ("bigger", "smaller") and a == b:
        a, b = b + 1, a
    return fam._task(kind, template, {"a": a, "b": b})


@lru_cache(maxsize=1)
def quiz_questions() -> dict[str, list]:
    """Training-side tasks per family for quiz pages (eval keys never appear, asked or answered)."""
    return {fam: [t for t in universe(fam) if not is_eval_key(t.key)] for fam in _QUIZ_FAMILIES}
