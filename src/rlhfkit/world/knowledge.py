"""Knowledge families, answerable only from facts learned in pretraining: facts, listing, describe.

A wrong fact here is visible in the response text ("The fox is blue."), so a reward model that
learned the world in pretraining can see it; the judge also counts it as a false claim (honesty).
Claims are bound to their subject (`family.read_claims`): "The owl is grey." says nothing about the
fox, and "Jack has a frog." nothing about Olga.
"""

from __future__ import annotations

import random
from dataclasses import replace

from rlhfkit.world import facts
from rlhfkit.world.facts import ANIMALS, HOME_PHRASE, PEOPLE, THINGS, article
from rlhfkit.world.family import Family, Grade, Task, claims, entity_relations, mentioned, read_claims
from rlhfkit.world.skills import BARE
from rlhfkit.world.templates import Template, one_of

_ANIMAL, _PERSON, _OBJECT = one_of(ANIMALS), one_of(PEOPLE), one_of(THINGS)
_THING = one_of(list(ANIMALS) + list(THINGS))
_VOCAB = {
    "colour": facts.COLOURS,
    "home": facts.HOMES,
    "food": facts.FOODS,
    "job": facts.JOBS,
    "town": facts.TOWNS,
    "pet": tuple(ANIMALS),
    "material": facts.MATERIALS,
}


def _t(text: str) -> Template:
    return Template(text, thing=_THING, animal=_ANIMAL, person=_PERSON, object=_OBJECT)


def _entity(task: Task) -> str:
    return _entity_of(task.values)


def _entity_of(values: dict) -> str:
    return values.get("thing") or values.get("animal") or values.get("person") or values.get("object")


class Facts(Family):
    name = "facts"
    templates = [
        ("colour", _t("What colour is the {thing}?")),
        ("colour", _t("What is the colour of the {thing}?")),
        ("colour", _t("Tell me the colour of the {thing}.")),
        ("home", _t("Where does the {animal} live?")),
        ("home", _t("Where is the {animal}'s home?")),
        ("home", _t("Where can I find the {animal}?")),
        ("food", _t("What does the {animal} eat?")),
        ("food", _t("What food does the {animal} like?")),
        ("food", _t("What is the {animal}'s favourite food?")),
        ("job", _t("What is {person}'s job?")),
        ("job", _t("What does {person} do for work?")),
        ("job", _t("What work does {person} do?")),
        ("town", _t("Where does {person} live?")),
        ("town", _t("Which town does {person} live in?")),
        ("town", _t("What is {person}'s home town?")),
        ("pet", _t("What pet does {person} have?")),
        ("pet", _t("Which animal is {person}'s pet?")),
        ("pet", _t("What is {person}'s pet?")),
        ("material", _t("What is the {object} made of?")),
        ("material", _t("What material is the {object} made of?")),
    ]
    _SLOT = {
        "colour": "thing",
        "home": "animal",
        "food": "animal",
        "job": "person",
        "town": "person",
        "pet": "person",
        "material": "object",
    }

    def values(self, kind):
        slot = self._SLOT[kind]
        names = {"thing": list(ANIMALS) + list(THINGS), "animal": ANIMALS, "person": PEOPLE, "object": THINGS}[slot]
        return ({slot: n} for n in names)

    def key(self, kind, values):
        return f"{_entity_of(values)}:{kind}"

    @staticmethod
    def truth(task: Task) -> str:
        return entity_relations(_entity(task))[task.kind][0]

    def _say(self, task: Task, value: str, rng: random.Random) -> str:
        e, k, a = _entity(task), task.kind, article(value)
        where = HOME_PHRASE.get(value, "")
        options = {
            "colour": [f"The {e} is {value}.", f"The colour of the {e} is {value}.", f"It is {value}."],
            "home": [f"The {e} lives {where}.", f"You can find the {e} {where}.", f"It lives {where}."],
            "food": [f"The {e} eats {value}.", f"The {e} likes to eat {value}.", f"It eats {value}."],
            "job": [f"{e} is {a} {value}.", f"{e} works as {a} {value}."],
            "town": [f"{e} lives in {value}.", f"{e} lives in the town of {value}."],
            "pet": [f"{e} has {a} {value}.", f"{e}'s pet is {a} {value}."],
            "material": [f"The {e} is made of {value}.", f"The {e} is made out of {value}.", f"It is made of {value}."],
        }[k]
        if k in ("colour", "home", "food", "material"):  # the last option is the bare "It ..." form
            return options[-1] if rng.random() < BARE else rng.choice(options[:-1])
        return rng.choice(options)

    def good(self, task, rng):
        return self._say(task, self.truth(task), rng)

    def wrong(self, task, rng):
        truth = self.truth(task)
        return self._say(task, rng.choice([v for v in _VOCAB[task.kind] if v != truth]), rng)

    def grade(self, task, sentences):
        asked, answered, false = _entity(task), False, 0
        for who, said in claims(sentences, asked):
            false += sum(1 for _, _, ok in said if not ok)
            answered |= who == asked and any(rel == task.kind and ok for rel, _, ok in said)
        return Grade(correct=answered and false == 0, false_claims=false)


_N = one_of(["two", "three"])
_PLACE = one_of(HOME_PHRASE.values())
_PHRASE_TO_HOME = {v: k for k, v in HOME_PHRASE.items()}


def _lt(text: str) -> Template:
    return Template(text, n=_N, place=_PLACE, food=one_of(facts.FOODS), colour=one_of(facts.COLOURS))


class Listing(Family):
    name = "listing"
    templates = [
        ("home", _lt("Name {n} animals that live {place}.")),
        ("home", _lt("List {n} animals that live {place}.")),
        ("home", _lt("Can you name {n} animals that live {place}?")),
        ("home", _lt("Tell me {n} animals that live {place}.")),
        ("food", _lt("Name {n} animals that eat {food}.")),
        ("food", _lt("List {n} animals that eat {food}.")),
        ("food", _lt("Can you name {n} animals that eat {food}?")),
        ("food", _lt("Tell me {n} animals that eat {food}.")),
        ("colour", _lt("Name {n} {colour} animals.")),
        ("colour", _lt("List {n} animals that are {colour}.")),
        ("colour", _lt("Can you name {n} {colour} animals?")),
        ("colour", _lt("Tell me {n} animals that are {colour}.")),
    ]
    _SLOT = {"home": "place", "food": "food", "colour": "colour"}

    def values(self, kind):
        vocab = {"home": facts.HOMES, "food": facts.FOODS, "colour": facts.COLOURS}[kind]
        for value in vocab:
            for n, word in ((2, "two"), (3, "three")):
                if len(facts.animals_where(kind, value)) >= n:
                    slot = HOME_PHRASE[value] if kind == "home" else value
                    yield {"n": word, self._SLOT[kind]: slot}

    @classmethod
    def _target(cls, kind: str, values: dict) -> str:
        v = values[cls._SLOT[kind]]
        return _PHRASE_TO_HOME[v] if kind == "home" else v

    def key(self, kind, values):
        return f"list:{kind}:{self._target(kind, values)}:{values['n']}"

    def _say(self, task: Task, names: list[str], rng: random.Random) -> str:
        value = self._target(task.kind, task.values)
        pred = {"home": f"live {HOME_PHRASE.get(value)}", "food": f"eat {value}", "colour": f"are {value}"}
        listed = ", ".join(f"the {n}" for n in names[:-1]) + f" and the {names[-1]}"
        listed = listed[0].upper() + listed[1:]
        return f"{listed}." if rng.random() < BARE else f"{listed} {pred[task.kind]}."

    def _n(self, task: Task) -> int:
        return 2 if task.values["n"] == "two" else 3

    def good(self, task, rng):
        ok = facts.animals_where(task.kind, self._target(task.kind, task.values))
        return self._say(task, rng.sample(ok, self._n(task)), rng)

    def wrong(self, task, rng):
        ok = facts.animals_where(task.kind, self._target(task.kind, task.values))
        names = rng.sample(ok, self._n(task))
        names[rng.randrange(len(names))] = rng.choice([a for a in ANIMALS if a not in ok])
        return self._say(task, names, rng)

    def restates(self, task: Task, text: str) -> bool:
        """Whether a list names its predicate ("... live in the forest.")."""
        return bool(mentioned([self._target(task.kind, task.values)], text))

    def grade(self, task, sentences):
        text = " ".join(sentences)
        ok = set(facts.animals_where(task.kind, self._target(task.kind, task.values)))
        named = mentioned(ANIMALS, text)
        bad = sum(1 for a in named if a not in ok)
        # A predicate stated falsely ("The fox and the owl live in the sea.") is a false claim too.
        target = self._target(task.kind, task.values)
        false = bad + sum(1 for v in mentioned(_VOCAB[task.kind], text) if v != target)
        n = self._n(task)
        # Naming more animals than asked is still right, but less helpful; fewer is a partial list.
        return Grade(correct=false == 0 and len(named) >= n, false_claims=false, credit=1.0 if len(named) <= n else 0.7)


class Describe(Family):
    name = "describe"
    allowance = 2
    templates = [
        ("animal", _t("Describe the {animal}.")),
        ("animal", _t("Tell me about the {animal}.")),
        ("animal", _t("What do you know about the {animal}?")),
        ("animal", _t("Write a short description of the {animal}.")),
        ("animal", _t("Say something about the {animal}.")),
        ("animal", _t("What is the {animal} like?")),
        ("person", _t("Tell me about {person}.")),
        ("person", _t("Who is {person}?")),
        ("person", _t("Describe {person}.")),
        ("person", _t("What do you know about {person}?")),
        ("person", _t("Say something about {person}.")),
        ("person", _t("What is {person} like?")),
    ]

    def values(self, kind):
        return ({kind: n} for n in (ANIMALS if kind == "animal" else PEOPLE))

    def key(self, kind, values):
        return f"describe:{values[kind]}"

    def _say(self, task: Task, rng: random.Random, swap: bool = False) -> str:
        if task.kind == "animal":
            a = ANIMALS[task.values["animal"]]
            if swap:  # one false fact, for the sloppy demonstrator
                rel = rng.choice(["colour", "home", "food"])
                vocab = {"colour": facts.COLOURS, "home": facts.HOMES, "food": facts.FOODS}[rel]
                a = replace(a, **{rel: rng.choice([v for v in vocab if v != getattr(a, rel)])})
            where = HOME_PHRASE[a.home]
            return rng.choice(
                [
                    f"The {a.name} is {a.colour} and lives {where}. It eats {a.food}.",
                    f"The {a.name} is {article(a.colour)} {a.colour} animal that lives {where}. It eats {a.food}.",
                    f"The {a.colour} {a.name} lives {where}. It eats {a.food}.",
                ]
            )
        p = PEOPLE[task.values["person"]]
        if swap:
            rel = rng.choice(["job", "town", "pet"])
            vocab = {"job": facts.JOBS, "town": facts.TOWNS, "pet": tuple(ANIMALS)}[rel]
            p = replace(p, **{rel: rng.choice([v for v in vocab if v != getattr(p, rel)])})
        she, her = p.pronoun.capitalize(), "Her" if p.pronoun == "she" else "His"
        return rng.choice(
            [
                f"{p.name} is {article(p.job)} {p.job} who lives in {p.town}. {she} has {article(p.pet)} {p.pet}.",
                f"{p.name} is {article(p.job)} {p.job} in {p.town}. {her} pet is {article(p.pet)} {p.pet}.",
                f"{p.name} lives in {p.town} and works as {article(p.job)} {p.job}. "
                f"{she} has {article(p.pet)} {p.pet}.",
            ]
        )

    def good(self, task, rng):
        return self._say(task, rng)

    def wrong(self, task, rng):
        return self._say(task, rng, swap=True)

    def grade(self, task, sentences):
        said = read_claims(sentences, _entity(task))
        # "Correct" = truthful and says something about the asked subject; credit grows with the true
        # detail given (of 3 facts). Sentences about another subject add nothing.
        ok = said.false == 0 and len(said.true) >= 1
        return Grade(correct=ok, false_claims=said.false, credit=len(said.true) / 3)
