"""The shape every instruction family shares: a Task, a Grade, and the Family base class.

A family owns its prompt templates, enumerates every prompt the world can ask (`universe`),
writes a concise correct answer (`good`) and a well-formed wrong one (`wrong`, for the sloppy
demonstrator), and grades a response for correctness and false claims (`grade`). The gold judge
(`judge.py`) turns a Grade into a score; the families know nothing about scoring.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from rlhfkit.world import facts
from rlhfkit.world.templates import Template


@dataclass(frozen=True, eq=False)
class Task:
    family: str
    kind: str  # sub-type within the family, e.g. "plus" / "minus"
    prompt: str
    key: str  # what eval holds out: a number pair, an entity-relation, a word...
    values: dict[str, Any] = field(default_factory=dict)


@dataclass
class Grade:
    correct: bool | None  # None: nothing checkable (harmful prompts)
    false_claims: int = 0  # statements about the world that contradict its facts
    credit: float = 1.0  # partial credit in [0, 1] for open answers (describe, benign)


def _canonical(name: str, raw: str) -> Any:
    if name in ("a", "b"):
        return int(raw)
    if name == "person":
        return next(p for p in facts.PEOPLE if p.lower() == raw.lower())
    return raw.lower()


class Family:
    """Base class; subclasses set `name`, `templates` and implement the hooks below."""

    name: str = ""
    templates: list[tuple[str, Template]] = []  # (kind, template)
    allowance: int = 1  # sentences a concise answer needs; more costs helpfulness

    def values(self, kind: str) -> Iterable[dict[str, Any]]:
        raise NotImplementedError

    def key(self, kind: str, values: dict[str, Any]) -> str:
        raise NotImplementedError

    def good(self, task: Task, rng: random.Random) -> str:
        raise NotImplementedError

    def wrong(self, task: Task, rng: random.Random) -> str:
        return self.good(task, rng)

    def grade(self, task: Task, response: str) -> Grade:
        raise NotImplementedError

    def universe(self) -> Iterator[Task]:
        for kind, template in self.templates:
            for vals in self.values(kind):
                yield self._task(kind, template, vals)

    def parse(self, prompt: str) -> Task | None:
        for kind, template in self.templates:
            raw = template.parse(prompt)
            if raw is not None:
                vals = {k: _canonical(k, v) for k, v in raw.items()}
                return self._task(kind, template, vals)
        return None

    def _task(self, kind: str, template: Template, vals: dict[str, Any]) -> Task:
        return Task(self.name, kind, template.format(**vals), self.key(kind, vals), vals)


# ---- answer extraction shared by the families -------------------------------------------------

_NUMBER = re.compile(
    r"\b(\d+|" + "|".join(sorted(facts.WORD_TO_NUMBER, key=len, reverse=True)) + r")\b", re.IGNORECASE
)


def numbers(text: str) -> list[int]:
    """Every number in `text`, digits or words, in order."""
    out = []
    for m in _NUMBER.finditer(text):
        tok = m.group(1).lower()
        out.append(int(tok) if tok.isdigit() else facts.WORD_TO_NUMBER[tok])
    return out


def answer_number(text: str) -> int | None:
    """The number a response gives as its answer: the one after the last 'is'/'equals', else the last."""
    m = list(re.finditer(r"\b(?:is|equals|makes|gives)\s+(\S+)", text, re.IGNORECASE))
    for hit in reversed(m):
        got = numbers(hit.group(1))
        if got:
            return got[0]
    got = numbers(text)
    return got[-1] if got else None


def mentioned(vocab: Iterable[str], text: str) -> list[str]:
    """The words of `vocab` that occur in `text` as whole words, in order of first appearance."""
    hits = []
    for w in vocab:
        m = re.search(r"\b" + re.escape(w) + r"\b", text, re.IGNORECASE)
        if m:
            hits.append((m.start(), w))
    return [w for _, w in sorted(hits)]


def entity_relations(entity: str) -> dict[str, tuple[str, tuple[str, ...]]]:
    """relation -> (true value, vocabulary of possible values) for an animal, person or thing."""
    if entity in facts.ANIMALS:
        a = facts.ANIMALS[entity]
        return {"colour": (a.colour, facts.COLOURS), "home": (a.home, facts.HOMES), "food": (a.food, facts.FOODS)}
    if entity in facts.PEOPLE:
        p = facts.PEOPLE[entity]
        others = tuple(n for n in facts.ANIMALS)
        return {"job": (p.job, facts.JOBS), "town": (p.town, facts.TOWNS), "pet": (p.pet, others)}
    t = facts.THINGS[entity]
    return {"colour": (t.colour, facts.COLOURS), "material": (t.material, facts.MATERIALS)}


def claims(entity: str, text: str) -> tuple[set[str], int]:
    """(relations stated truly, number of false statements) about `entity` in `text`."""
    true, false = set(), 0
    for rel, (truth, vocab) in entity_relations(entity).items():
        for value in mentioned(vocab, text):
            if value.lower() == truth.lower():
                true.add(rel)
            else:
                false += 1
    return true, false
