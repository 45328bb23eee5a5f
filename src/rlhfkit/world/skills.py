"""Skill families with exactly checkable answers: arithmetic, compare (numbers) and spelling.

Answers restate the question ("3 plus 4 is 7.", "fox backwards is x-o-f."), which the pretraining
corpus practises, so a small model can copy operands and letters from the prompt. The grader reads
each content sentence as one of the family's statement forms and binds it to the asked operands or
word: "5 plus 2 is 7." answers nothing about 3 plus 4, and a sentence with numbers that is no known
form ("7 7 7.") is an unreadable claim. Every statement must be about the task and true.
"""

from __future__ import annotations

import random
import re

from rlhfkit.world import facts
from rlhfkit.world.family import NUM, Family, Grade, Task, mentioned, numbers, sentence_form, to_int
from rlhfkit.world.templates import NUMBER, Template, one_of

MAX_OPERAND = 9  # arithmetic operands 0..9: each pair is seen often in pretraining (WORLD_AUDIT)
MAX_COMPARE = 49  # compare numbers 0..49
# How often an answer takes the bare form ("The answer is 7.") instead of restating the question: the
# judge gives it slightly less credit (judge.RESTATE), which people prefer and which practises copying.
BARE = 0.1


def states_number(sentence: str) -> bool:
    """Whether a sentence says a number ("7", "seven"); "one" alone is no number ("That was an easy one.")."""
    return any(w != "one" for w in re.findall(r"\d+|[a-z]+", sentence.lower()) if w.isdigit() or w in facts.WORD_TO_NUMBER)


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
        return f"The answer is {c}." if rng.random() < BARE else f"{a} {task.kind} {b} is {c}."

    def good(self, task, rng):
        return self._say(task, self.truth(task), rng)

    def wrong(self, task, rng):
        c = self.truth(task)
        return self._say(task, max(0, c + rng.choice([-2, -1, 1, 2])) if c > 1 else c + rng.randint(1, 2), rng)

    _FORMS = (
        rf"(?:so )?{NUM} (plus|minus) {NUM} (?:is|equals|makes) {NUM}",
        rf"(?:if you )?(add)(?:ing)? {NUM} and {NUM},? (?:you get|gives|makes) {NUM}",
        rf"{NUM} and {NUM} (make)s? {NUM}",
        rf"(?:if you )?(take) {NUM} away from {NUM},? (?:you get|leaves) {NUM}",
        rf"(taking) {NUM} from {NUM} leaves {NUM}",
        rf"(?:the answer is|it is|that is|it makes) {NUM}",
    )

    def statement(self, sentence: str) -> tuple[str | None, int | None, int | None, int] | None:
        """(op, a, b, result) for 'a op b is c' forms, (None, None, None, c) for 'The answer is c'."""
        m = sentence_form(sentence, *self._FORMS)
        if m is None:
            return None
        g = [x for x in m.groups() if x is not None]
        if len(g) == 1:
            return None, None, None, to_int(g[0])
        if g[0].lower() == "add":
            return "plus", to_int(g[1]), to_int(g[2]), to_int(g[3])
        if g[2].lower() == "make":  # "3 and 4 make 7"
            return "plus", to_int(g[0]), to_int(g[1]), to_int(g[3])
        if g[0].lower() in ("take", "taking"):
            return "minus", to_int(g[2]), to_int(g[1]), to_int(g[3])
        return g[1].lower(), to_int(g[0]), to_int(g[2]), to_int(g[3])

    def grade(self, task, sentences):
        a, b, truth = task.values["a"], task.values["b"], self.truth(task)
        asked = {(task.kind, a, b), (None, None, None)} | ({("plus", b, a)} if task.kind == "plus" else set())
        said = [self.statement(s) for s in sentences if states_number(s)]
        ok = bool(said) and all(st is not None and st[:3] in asked and st[3] == truth for st in said)
        return Grade(correct=ok)


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
        return f"The {task.kind} number is {x}." if rng.random() < BARE else f"{x} is {task.kind} than {y}."

    def good(self, task, rng):
        return self._say(task, self.truth(task), rng)

    def wrong(self, task, rng):
        a, b = task.values["a"], task.values["b"]
        return self._say(task, a + b - self.truth(task), rng)

    def stratum(self, task):
        return "first" if self.truth(task) == task.values["a"] else "second"

    _CMP = "(bigger|larger|greater|more|smaller|less|fewer)"

    def statement(self, sentence: str) -> tuple[int, str, int | None] | None:
        """(x, 'bigger'|'smaller', y or None): "x is bigger than y", "The bigger number is x"."""
        m = sentence_form(sentence, rf"{NUM} is (?:the )?{self._CMP}(?: number)?(?: than {NUM})?")
        if m:
            return to_int(m.group(1)), self._WORDS[m.group(2).lower()], m.group(3) and to_int(m.group(3))
        m = sentence_form(sentence, rf"(?:of {NUM} and {NUM},? )?the {self._CMP} (?:number |one )?is {NUM}",
                          rf"(?:of {NUM} and {NUM},? )?the (answer) is {NUM}")
        if m:
            pair = m.group(1) and {to_int(m.group(1)), to_int(m.group(2))}
            way = self._WORDS.get(m.group(3).lower(), "answer")  # "The answer is 45." answers what was asked
            return to_int(m.group(4)), way, pair or None  # type: ignore[return-value]
        return None

    def grade(self, task, sentences):
        a, b = task.values["a"], task.values["b"]

        def right(st) -> bool:
            x, way, other = st
            if x not in (a, b) or a == b:
                return False
            if isinstance(other, set):  # "Of a and b, the bigger number is x"
                if other != {a, b}:
                    return False
                other = None
            way = task.kind if way == "answer" else way
            if other is None and way != task.kind:  # "The smaller number is 3" does not answer "bigger"
                return False
            if other is not None and other != a + b - x:
                return False
            return x == (max(a, b) if way == "bigger" else min(a, b))

        said = [self.statement(s) for s in sentences if states_number(s)]
        ok = bool(said) and all(st is not None and right(st) for st in said)
        # Two choices, so a coin flip must not pay: a wrong pick states a false order and a false answer
        # (two false claims: -0.5 - 0.6, clipped to -1.0, against +1.0 when right; expected 0).
        return Grade(correct=ok, false_claims=0 if ok or not said else 2)


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
            bare = rng.random() < BARE
            return f"It is spelled {facts.hyphenate(ans)}." if bare else f"{w} is spelled {facts.hyphenate(ans)}."
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

    def grade(self, task, sentences):
        text, truth = " ".join(sentences), self.truth(task)
        plain = _HYPHENATED.sub(" ", text)
        # Bound to the asked word: naming another word of the spelling tasks answers another task.
        if any(w != task.values["word"] for w in mentioned(facts.WORDS, plain)):
            return Grade(correct=False)
        if task.kind == "count":
            said = numbers(plain)
            return Grade(correct=bool(said) and all(n == truth for n in said) and "letter" in plain.lower())
        spelled = ["".join(s.lower().split("-")) for s in _HYPHENATED.findall(text)]
        if task.kind == "spell":  # "The letters of fox are f-o-x." names the word once, spelled
            return Grade(correct=bool(spelled) and all(s == truth for s in spelled))
        # backwards: "Read backwards, f-o-x becomes x-o-f." spells the word forwards first
        said = [s for s in spelled if s != task.values["word"]] if len(spelled) > 1 else spelled
        return Grade(correct=bool(said) and all(s == truth for s in said))
