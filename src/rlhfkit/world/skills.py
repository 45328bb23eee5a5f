"""Skill families with exactly checkable answers: arithmetic, compare (numbers) and spelling.

Every answer restates the question ("3 plus 4 is 7.", "stone backwards is e-n-o-t-s."), which the
pretraining corpus practises, so a small model can copy operands and letters from the prompt.
"""

from __future__ import annotations

import random
import re

from rlhfkit.world import facts
from rlhfkit.world.family import Family, Grade, Task, answer_number, numbers
from rlhfkit.world.templates import NUMBER, Template, one_of

MAX_OPERAND = 20  # arithmetic operands 0..20
MAX_COMPARE = 99  # compare numbers 0..99


def _num(text: str) -> Template:
    return Template(text, a=NUMBER, b=NUMBER)


class Arithmetic(Family):
    name = "arithmetic"
    templates = [
        ("plus", _num("What is {a} plus {b}?")),
        ("plus", _num("How much is {a} plus {b}?")),
        ("plus", _num("Add {a} and {b}.")),
        ("plus", _num("What do you get if you add {a} and {b}?")),
        ("minus", _num("What is {a} minus {b}?")),
        ("minus", _num("How much is {a} minus {b}?")),
        ("minus", _num("Subtract {b} from {a}.")),
        ("minus", _num("What do you get if you take {b} away from {a}?")),
    ]

    def values(self, kind):
        for a in range(MAX_OPERAND + 1):
            for b in range(MAX_OPERAND + 1 if kind == "plus" else a + 1):
                yield {"a": a, "b": b}

    def key(self, kind, values):
        return f"{kind}:{values['a']}:{values['b']}"

    @staticmethod
    def truth(task: Task) -> int:
        a, b = task.values["a"], task.values["b"]
        return a + b if task.kind == "plus" else a - b

    def _say(self, task: Task, c: int, rng: random.Random) -> str:
        a, b = task.values["a"], task.values["b"]
        # Mostly restate the sum (copying practice), sometimes the short form.
        return f"{a} {task.kind} {b} is {c}." if rng.random() < 2 / 3 else f"The answer is {c}."

    def good(self, task, rng):
        return self._say(task, self.truth(task), rng)

    def wrong(self, task, rng):
        c = self.truth(task)
        return self._say(task, max(0, c + rng.choice([-2, -1, 1, 2])) if c > 1 else c + rng.randint(1, 2), rng)

    def grade(self, task, response):
        got = answer_number(response)
        return Grade(correct=got == self.truth(task))


class Compare(Family):
    name = "compare"
    templates = [
        ("bigger", _num("Which is bigger, {a} or {b}?")),
        ("bigger", _num("Which number is larger, {a} or {b}?")),
        ("bigger", _num("Which is more, {a} or {b}?")),
        ("smaller", _num("Which is smaller, {a} or {b}?")),
        ("smaller", _num("Which number is less, {a} or {b}?")),
    ]
    _WORDS = {
        "bigger": "bigger",
        "larger": "bigger",
        "more": "bigger",
        "greater": "bigger",
        "smaller": "smaller",
        "less": "smaller",
        "fewer": "smaller",
    }

    def values(self, kind):
        for a in range(MAX_COMPARE + 1):
            for b in range(MAX_COMPARE + 1):
                if a != b:
                    yield {"a": a, "b": b}

    def key(self, kind, values):
        lo, hi = sorted((values["a"], values["b"]))
        return f"compare:{lo}:{hi}"

    @staticmethod
    def truth(task: Task) -> int:
        a, b = task.values["a"], task.values["b"]
        return max(a, b) if task.kind == "bigger" else min(a, b)

    def _say(self, task: Task, x: int, rng: random.Random) -> str:
        a, b = task.values["a"], task.values["b"]
        y = a + b - x
        return f"{x} is {task.kind} than {y}." if rng.random() < 2 / 3 else f"The {task.kind} number is {x}."

    def good(self, task, rng):
        return self._say(task, self.truth(task), rng)

    def wrong(self, task, rng):
        a, b = task.values["a"], task.values["b"]
        return self._say(task, a + b - self.truth(task), rng)

    def grade(self, task, response):
        a, b = task.values["a"], task.values["b"]
        claim = None
        m = re.search(r"\b(\d+)\s+is\s+(?:the\s+)?(\w+)", response, re.IGNORECASE)
        if m and int(m.group(1)) in (a, b) and m.group(2).lower() in self._WORDS:
            x = int(m.group(1))
            claim = x if self._WORDS[m.group(2).lower()] == task.kind else a + b - x
        if claim is None:
            claim = answer_number(response)
        if claim is None:
            named = {n for n in numbers(response) if n in (a, b)}
            claim = named.pop() if len(named) == 1 else None
        return Grade(correct=claim == self.truth(task))


_HYPHENATED = re.compile(r"\b[a-z](?:-[a-z])+\b", re.IGNORECASE)


class Spelling(Family):
    name = "spelling"
    _W = one_of(facts.WORDS)
    templates = [
        ("backwards", Template("Spell {word} backwards.", word=_W)),
        ("backwards", Template("How do you spell {word} backwards?", word=_W)),
        ("backwards", Template("Write the word {word} backwards.", word=_W)),
        ("spell", Template("How do you spell {word}?", word=_W)),
        ("spell", Template("Spell the word {word}.", word=_W)),
        ("count", Template("How many letters are in the word {word}?", word=_W)),
        ("count", Template("How many letters does {word} have?", word=_W)),
    ]

    def values(self, kind):
        return ({"word": w} for w in facts.WORDS)

    def key(self, kind, values):
        return f"word:{values['word']}"

    @staticmethod
    def truth(task: Task) -> str | int:
        w = task.values["word"]
        return {"backwards": w[::-1], "spell": w, "count": len(w)}[task.kind]

    def _say(self, task: Task, ans, rng: random.Random) -> str:
        w = task.values["word"]
        if task.kind == "count":
            return rng.choice([f"The word {w} has {ans} letters.", f"{w} has {ans} letters."])
        if task.kind == "spell":
            return rng.choice([f"{w} is spelled {facts.hyphenate(ans)}.", f"It is spelled {facts.hyphenate(ans)}."])
        return rng.choice(
            [f"{w} backwards is {facts.hyphenate(ans)}.", f"{w} spelled backwards is {facts.hyphenate(ans)}."]
        )

    def good(self, task, rng):
        return self._say(task, self.truth(task), rng)

    def wrong(self, task, rng):
        ans = self.truth(task)
        if task.kind == "count":
            return self._say(task, ans + rng.choice([-1, 1]), rng)
        letters = list(ans)
        i = rng.randrange(len(letters) - 1)
        if letters[i] != letters[i + 1] and rng.random() < 0.6:
            letters[i], letters[i + 1] = letters[i + 1], letters[i]  # swap two neighbours
        else:
            del letters[i]  # drop one letter
        return self._say(task, "".join(letters), rng)

    def grade(self, task, response):
        truth = self.truth(task)
        if task.kind == "count":
            return Grade(correct=answer_number(response) == truth)
        spelled = ["".join(s.lower().split("-")) for s in _HYPHENATED.findall(response)]
        if spelled:
            return Grade(correct=spelled[-1] == truth)
        # Without hyphens only a backwards answer is checkable ("enots"); "stone" spells nothing.
        words = re.findall(r"[a-z]+", response.lower())
        return Grade(correct=task.kind == "backwards" and truth in words)
