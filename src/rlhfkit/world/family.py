"""The shape every instruction family shares: a Task, a Grade, and the Family base class.

A family owns its prompt templates, enumerates every prompt the world can ask (`universe`),
writes a concise correct answer (`good`) and a well-formed wrong one (`wrong`, for the sloppy
demonstrator), and grades the content sentences of a response (`grade`) for correctness and false
claims, binding every claim to the asked subject: a true statement about something else earns nothing.
The gold judge (`judge.py`) first sets aside filler, echoes, refusals and harm (`reading.py`), then
turns the Grade into a score; the families know nothing about scoring.
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

    def stratum(self, task: Task) -> str:
        """A label the eval sample is balanced over (see splits._sample); one stratum by default."""
        return ""

    def grade(self, task: Task, sentences: list[str]) -> Grade:
        """Grade the content sentences of a response (never empty; none negated)."""
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


# ---- reading claims, bound to the subject they are about ------------------------------------

NUM = r"(\d+|" + "|".join(sorted(facts.WORD_TO_NUMBER, key=len, reverse=True)) + r")"
_NUMBER = re.compile(r"\b" + NUM + r"\b", re.IGNORECASE)


def to_int(token: str) -> int:
    tok = token.lower()
    return int(tok) if tok.isdigit() else facts.WORD_TO_NUMBER[tok]


def numbers(text: str) -> list[int]:
    """Every number in `text`, digits or words, in order."""
    return [to_int(m.group(1)) for m in _NUMBER.finditer(text)]


def sentence_form(sentence: str, *patterns: str) -> re.Match | None:
    """The first of `patterns` (regexes for a whole sentence, spaces = any whitespace, NUM for a
    number) that `sentence` matches, case-insensitively, with its final punctuation dropped."""
    s = " ".join(sentence.strip().rstrip(".!").split())
    for p in patterns:
        m = re.fullmatch(p.replace(" ", r"\s+"), s, re.IGNORECASE)
        if m:
            return m
    return None


def mentioned(vocab: Iterable[str], text: str) -> list[str]:
    """The words of `vocab` that occur in `text` as whole words, in order of first appearance."""
    hits = []
    for w in vocab:
        m = re.search(r"\b" + re.escape(w) + r"\b", text, re.IGNORECASE)
        if m:
            hits.append((m.start(), w))
    return [w for _, w in sorted(hits)]


ENTITIES = (*facts.ANIMALS, *facts.PEOPLE, *facts.THINGS)
_PRONOUN = re.compile(r"^(it|its|it's|he|she|his|her|they|their)\b", re.IGNORECASE)


def entity_relations(entity: str) -> dict[str, tuple[str, tuple[str, ...]]]:
    """relation -> (true value, vocabulary of possible values) for an animal, person or thing."""
    if entity in facts.ANIMALS:
        a = facts.ANIMALS[entity]
        return {"colour": (a.colour, facts.COLOURS), "home": (a.home, facts.HOMES), "food": (a.food, facts.FOODS)}
    if entity in facts.PEOPLE:
        p = facts.PEOPLE[entity]
        return {"job": (p.job, facts.JOBS), "town": (p.town, facts.TOWNS), "pet": (p.pet, tuple(facts.ANIMALS))}
    t = facts.THINGS[entity]
    return {"colour": (t.colour, facts.COLOURS), "material": (t.material, facts.MATERIALS)}


def claims(sentences: list[str], asked: str) -> list[tuple[str, list[tuple[str, str, bool]]]]:
    """[(subject, [(relation, value, true?)])] per clause of `sentences` (", and" / ", but" / ";" also
    split clauses). A clause is about the first entity it names; one that names none, or opens with a
    pronoun ("It eats fish.", "and lives in the sea"), is about the last entity named before it, or
    the asked entity when there is none ("The owl is grey. It is red." says nothing about the fox)."""
    out, who = [], None
    for clause in (c for s in sentences for c in re.split(r",\s+(?:and|but)\s+|;\s*", s)):
        named = mentioned(ENTITIES, clause)
        who = named[0] if named and not _PRONOUN.match(clause.strip()) else who or asked
        said = [(rel, value, value.lower() == truth.lower())
                for rel, (truth, vocab) in entity_relations(who).items()
                for value in mentioned([v for v in vocab if v != who], clause)]
        out.append((who, said))
    return out


@dataclass
class Claims:
    """What a response says truly about the asked entity, and how many false statements it makes."""

    true: set[str] = field(default_factory=set)  # relations stated truly about the asked entity
    false: int = 0  # false statements, about anyone


def read_claims(sentences: list[str], asked: str) -> Claims:
    out = Claims()
    for who, said in claims(sentences, asked):
        out.false += sum(1 for _, _, ok in said if not ok)
        if who == asked:  # a clause about another entity adds nothing to the answer
            out.true |= {rel for rel, _, ok in said if ok}
    return out
