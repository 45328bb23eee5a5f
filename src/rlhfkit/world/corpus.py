"""Pretraining documents about the built-in world: where a model learns language and the facts.

Pages about animals, people, towns and things; short stories; number, comparison and spelling
facts; lists; kindness notes; indirect questions ("Ben asked what 3 plus 4 is. Cora said that 3
plus 4 is 7."), which practise copying numbers and letters from a question (WORLD_NOTES lesson 3);
quiz pages that ask and answer in the SFT forms ("Question: What is 3 plus 4? Answer: 3 plus 4 is
7."), on training-side prompts only, so the skills the tasks need are learned in pretraining; and
FAQ pages where a question is followed by more questions. No chat format: answering in the
assistant's turn, concisely and safely, is what SFT teaches.
"""

from __future__ import annotations

import random

from rlhfkit.world import facts
from rlhfkit.world.facts import ANIMALS, HOME_PHRASE, PEOPLE, THINGS, article, hyphenate, number_word
from rlhfkit.world.safety import HARMFUL_VERBS
from rlhfkit.world.skills import MAX_COMPARE, MAX_OPERAND
from rlhfkit.world.quiz import quiz_page, quiz_questions
from rlhfkit.world.splits import is_eval_key
from rlhfkit.world.tasks import universe

ITEMS = ("apples", "coins", "stones", "shells", "eggs", "books", "cups", "flowers", "pears", "nuts")


def cap(s: str) -> str:
    return s[0].upper() + s[1:]


def _pronouns(p: facts.Person) -> tuple[str, str]:
    return (p.pronoun, "her") if p.pronoun == "she" else (p.pronoun, "his")


def _sizes(a: facts.Animal, rng: random.Random) -> str:
    b = rng.choice([x for x in ANIMALS.values() if x.name != a.name])
    word = "bigger" if a.size > b.size else "smaller"
    return f"The {a.name} is {word} than the {b.name}."


def animal_page(rng: random.Random) -> str:
    a = rng.choice(list(ANIMALS.values()))
    where, n = HOME_PHRASE[a.home], a.name
    mates = [x for x in facts.animals_where("home", a.home) if x != n]
    options = [
        rng.choice(
            [
                f"The {n} is {a.colour}.",
                f"The {n} is {article(a.colour)} {a.colour} animal.",
                f"The colour of the {n} is {a.colour}.",
            ]
        ),
        rng.choice(
            [f"The {n} lives {where}.", f"You can find the {n} {where}.", f"The home of the {n} is the {a.home}."]
        ),
        rng.choice(
            [
                f"The {n} eats {a.food}.",
                f"The favourite food of the {n} is {a.food}.",
                f"Every day the {n} looks for {a.food} to eat.",
            ]
        ),
        _sizes(a, rng),
        f"The {n} shares the {a.home} with the {rng.choice(mates)}.",
        rng.choice(
            [
                f"{cap(article(a.colour))} {a.colour} {n} is easy to see.",
                f"If you see {article(a.colour)} {a.colour} animal {where}, it may be the {n}.",
            ]
        ),
    ]
    body = options[:3] + rng.sample(options[3:], rng.randint(1, 3))
    rng.shuffle(body)
    return rng.choice([f"The {n}", f"All about the {n}", f"Animals of the {a.home}: the {n}"]) + "\n" + " ".join(body)


def person_page(rng: random.Random) -> str:
    p = rng.choice(list(PEOPLE.values()))
    she, her = _pronouns(p)
    pet = ANIMALS[p.pet]
    body = [
        rng.choice(
            [
                f"{p.name} is {article(p.job)} {p.job}.",
                f"{p.name} works as {article(p.job)} {p.job}.",
                f"{p.name} is the {p.job} of {p.town}.",
            ]
        ),
        rng.choice(
            [
                f"{p.name} lives in {p.town}.",
                f"{p.name}'s home is in {p.town}.",
                f"{p.name} has lived in {p.town} for many years.",
            ]
        ),
        rng.choice(
            [
                f"{p.name} has {article(p.pet)} {p.pet}.",
                f"{p.name}'s pet is {article(p.pet)} {p.pet}.",
                f"{cap(she)} takes care of {her} {p.pet} every day.",
            ]
        ),
        f"{cap(her)} {p.pet} is {pet.colour} and eats {pet.food}.",
        f"{p.town} is near the {facts.TOWN_NEAR[p.town]}.",
    ]
    keep = body[:3] + rng.sample(body[3:], rng.randint(0, 2))
    rng.shuffle(keep)
    return f"{p.name}\n" + " ".join(keep)


def town_page(rng: random.Random) -> str:
    town = rng.choice(facts.TOWNS)
    people = [p for p in PEOPLE.values() if p.town == town]
    names = _and([p.name for p in people])
    body = [f"{town} is a town near the {facts.TOWN_NEAR[town]}.", f"{names} live in {town}."]
    body += [f"In {town} you can meet {p.name}, the {p.job}." for p in rng.sample(people, min(2, len(people)))]
    return f"{town}\n" + " ".join(body)


def thing_page(rng: random.Random) -> str:
    t = rng.choice(list(THINGS.values()))
    body = [
        rng.choice([f"The {t.name} is {t.colour}.", f"The colour of the {t.name} is {t.colour}."]),
        rng.choice([f"The {t.name} is made of {t.material}.", f"People make the {t.name} out of {t.material}."]),
        rng.choice([f"A {t.name} is used for {t.use}.", f"People use the {t.name} for {t.use}."]),
    ]
    rng.shuffle(body)
    return f"The {t.name}\n" + " ".join(body)


def _and(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def list_page(rng: random.Random) -> str:
    lines = []
    for _ in range(rng.randint(2, 4)):
        kind = rng.choice(["home", "food", "colour", "town", "job", "material"])
        if kind in ("home", "food", "colour"):
            value = rng.choice(sorted({getattr(a, kind) for a in ANIMALS.values()}))
            names = facts.animals_where(kind, value)
            pred = {"home": f"live {HOME_PHRASE.get(value, '')}", "food": f"eat {value}", "colour": f"are {value}"}[
                kind
            ]
            if len(names) >= 2 and rng.random() < 0.5:
                pick = rng.sample(names, rng.randint(2, min(3, len(names))))
                lines.append(
                    f"{cap(number_word(len(pick)))} animals that {pred} are {_and(['the ' + x for x in pick])}."
                )
            else:
                lines.append(f"Animals that {pred}: {_and(['the ' + x for x in names])}.")
        elif kind == "town":
            town = rng.choice(facts.TOWNS)
            lines.append(f"People who live in {town}: {_and([p.name for p in PEOPLE.values() if p.town == town])}.")
        elif kind == "job":
            job = rng.choice(facts.JOBS)
            lines.append(f"The {job}s are {_and([p.name for p in PEOPLE.values() if p.job == job])}.")
        else:
            mat = rng.choice(sorted({t.material for t in THINGS.values()}))
            lines.append(
                f"Things made of {mat}: {_and(['the ' + t.name for t in THINGS.values() if t.material == mat])}."
            )
    return "Lists\n" + "\n".join(lines)


def _sum_fact(rng: random.Random, words: bool = False) -> tuple[str, int, int, int, str]:
    op = rng.choice(["plus", "minus"])
    a = rng.randint(0, MAX_OPERAND)
    b = rng.randint(0, MAX_OPERAND) if op == "plus" else rng.randint(0, a)
    c = a + b if op == "plus" else a - b
    if words:
        return f"{number_word(a)} {op} {number_word(b)} is {number_word(c)}", a, b, c, op
    return f"{a} {op} {b} is {c}", a, b, c, op


def math_page(rng: random.Random) -> str:
    lines = []
    for _ in range(rng.randint(5, 12)):
        text, a, b, c, op = _sum_fact(rng, words=rng.random() < 0.15)
        r = rng.random()
        if r < 0.6:
            lines.append(cap(text) + ".")
        elif op == "plus":
            lines.append(
                rng.choice(
                    [
                        f"If you add {a} and {b}, you get {c}.",
                        f"Adding {a} and {b} gives {c}.",
                        f"{a} and {b} make {c}.",
                    ]
                )
            )
        else:
            lines.append(
                rng.choice([f"If you take {b} away from {a}, you get {c}.", f"Taking {b} from {a} leaves {c}."])
            )
    title = rng.choice(["Sums", "Adding and taking away", "Number facts", "Maths practice"])
    return title + "\n" + "\n".join(lines)


def word_problem(rng: random.Random) -> str:
    p, q = rng.sample(list(PEOPLE.values()), 2)
    she, her = _pronouns(p)
    item = rng.choice(ITEMS)
    _, a, b, c, op = _sum_fact(rng)
    if op == "plus":
        return (
            f"{p.name} had {a} {item}. {q.name} gave {her if she == 'she' else 'him'} {b} more. "
            f"{a} plus {b} is {c}, so {p.name} had {c} {item}."
        )
    return f"{p.name} had {a} {item} and gave {b} to {q.name}. {a} minus {b} is {c}, so {she} had {c} {item} left."


def compare_page(rng: random.Random) -> str:
    lines = []
    for _ in range(rng.randint(4, 9)):
        a, b = rng.sample(range(MAX_COMPARE + 1), 2)
        x, y = max(a, b), min(a, b)
        r = rng.random()
        if r < 0.6:
            lines.append(
                rng.choice(
                    [
                        f"{x} is bigger than {y}.",
                        f"{y} is smaller than {x}.",
                        f"{x} is larger than {y}.",
                        f"{x} is more than {y}.",
                        f"{y} is less than {x}.",
                    ]
                )
            )
        elif r < 0.8:
            lines.append(
                rng.choice(
                    [f"Of {a} and {b}, the bigger number is {x}.", f"Of {a} and {b}, the smaller number is {y}."]
                )
            )
        else:
            p, q = rng.sample(list(PEOPLE), 2)
            item = rng.choice(ITEMS)
            winner = p if a > b else q
            lines.append(
                f"{p} had {a} {item} and {q} had {b} {item}. {x} is bigger than {y}, so {winner} had more {item}."
            )
    return rng.choice(["Bigger and smaller", "Comparing numbers", "Which is more"]) + "\n" + "\n".join(lines)


def spelling_page(rng: random.Random) -> str:
    lines = []
    for w in rng.sample(facts.WORDS, rng.randint(3, 7)):
        rev = w[::-1]
        options = [
            f"{w} is spelled {hyphenate(w)}.",
            f"The word {w} has {len(w)} letters.",
            f"{w} backwards is {hyphenate(rev)}.",
            f"{w} spelled backwards is {hyphenate(rev)}.",
            f"The letters of {w} are {hyphenate(w)}.",
            f"Read backwards, {hyphenate(w)} becomes {hyphenate(rev)}.",
            f"{w} has {number_word(len(w))} letters.",
        ]
        lines.append(" ".join(rng.sample(options, rng.randint(1, 3))))
    return rng.choice(["Spelling", "Words and letters", "Spelling practice"]) + "\n" + "\n".join(lines)


def indirect_questions(rng: random.Random) -> str:
    """Someone asks, someone else answers in reported speech: copying from a question, no chat."""
    lines = []
    for _ in range(rng.randint(2, 4)):
        p, q = rng.sample(list(PEOPLE), 2)
        kind = rng.choice(["sum", "compare", "spell", "colour", "home", "food", "pet"])
        if kind == "sum":
            text, *_ = _sum_fact(rng)
            lines.append(f"{p} asked {q} what {text.rsplit(' is ', 1)[0]} is. {q} said that {text}.")
        elif kind == "compare":
            a, b = rng.sample(range(MAX_COMPARE + 1), 2)
            lines.append(
                f"{p} wanted to know which is bigger, {a} or {b}. {q} said that {max(a, b)} is bigger "
                f"than {min(a, b)}."
            )
        elif kind == "spell":
            w = rng.choice(facts.WORDS)
            lines.append(
                rng.choice(
                    [
                        f"{p} asked how to spell {w} backwards. {q} wrote {hyphenate(w[::-1])}.",
                        f"{p} asked how to spell {w}. {q} said that {w} is spelled {hyphenate(w)}.",
                    ]
                )
            )
        else:
            a = rng.choice(list(ANIMALS.values()))
            o = rng.choice([x for x in PEOPLE.values() if x.name not in (p, q)])
            said = {
                "colour": f"the {a.name} is {a.colour}",
                "home": f"the {a.name} lives {HOME_PHRASE[a.home]}",
                "food": f"the {a.name} eats {a.food}",
                "pet": f"{o.name} has {article(o.pet)} {o.pet}",
            }[kind]
            asked = {
                "colour": f"what colour the {a.name} is",
                "home": f"where the {a.name} lives",
                "food": f"what the {a.name} eats",
                "pet": f"what pet {o.name} has",
            }[kind]
            lines.append(f"{p} asked {q} {asked}. {q} said that {said}.")
    return " ".join(lines)


def story(rng: random.Random) -> str:
    p = rng.choice(list(PEOPLE.values()))
    she, her = _pronouns(p)
    a = rng.choice(list(ANIMALS.values()))
    parts = [
        rng.choice(
            [
                f"One day {p.name} went to the {a.home} with {her} {p.pet}.",
                f"{p.name} the {p.job} walked from {p.town} to the {a.home}.",
            ]
        ),
        f"There {she} saw the {a.name}. The {a.name} was {a.colour} and was eating {a.food}.",
        rng.choice(
            [
                f"{p.name} did not hurt the {a.name}. {cap(she)} watched it quietly.",
                f"{cap(she)} was kind to the {a.name} and gave it some {a.food}.",
            ]
        ),
    ]
    if rng.random() < 0.6:
        parts.append(word_problem(rng))
    parts.append(
        rng.choice([f"Then {p.name} went home to {p.town}.", f"In the evening {she} went back to {p.town}."])
    )
    return " ".join(parts)


def kindness_page(rng: random.Random) -> str:
    a, b = rng.sample(list(ANIMALS), 2)
    p = rng.choice(list(PEOPLE.values()))
    verbs = rng.sample(HARMFUL_VERBS["animal"], 2)
    body = [
        "Be kind to animals.",
        f"Never {verbs[0]} an animal.",
        f"{cap(facts.gerund(verbs[1]))} animals is wrong.",
        f"If the {a} is hurt, ask a doctor for help.",
        f"Poison can make the {b} very sick.",
        "Taking someone's pet is stealing, and stealing is wrong.",
        f"Never {rng.choice(HARMFUL_VERBS['person'])} a person.",
        f"{cap(facts.gerund(rng.choice(HARMFUL_VERBS['person'])))} {p.name} would be wrong.",
        "Good people help each other.",
        f"{p.name} is always kind to {_pronouns(p)[1]} {p.pet}.",
    ]
    return "Being kind\n" + " ".join(rng.sample(body, rng.randint(3, 6)))


def faq_page(rng: random.Random, questions: dict[str, list[str]]) -> str:
    """Questions followed by more questions, never by their answers."""
    fams = rng.sample(sorted(questions), rng.randint(1, 3))
    qs = [rng.choice(questions[f]) for f in fams for _ in range(rng.randint(2, 4))]
    rng.shuffle(qs)
    title = rng.choice(
        [
            "Questions people ask",
            "Quiz",
            "Things children ask",
            "Frequently asked questions",
            "Questions for the class",
        ]
    )
    return title + "\n" + "\n".join(dict.fromkeys(qs))


DOCS = {  # generator -> share of documents
    animal_page: 0.11,
    person_page: 0.07,
    town_page: 0.02,
    thing_page: 0.04,
    story: 0.07,
    math_page: 0.09,
    word_problem: 0.02,
    compare_page: 0.06,
    spelling_page: 0.09,
    list_page: 0.07,
    faq_page: 0.04,
    kindness_page: 0.04,
    indirect_questions: 0.10,
    quiz_page: 0.18,
}
_FAQ_FAMILIES = ("arithmetic", "facts", "spelling", "compare", "listing", "describe", "benign")


def faq_questions() -> dict[str, list[str]]:
    """Training-side prompts for FAQ pages (eval keys never appear in the corpus, even as questions)."""
    out = {}
    for fam in _FAQ_FAMILIES:
        tasks = [t for t in universe(fam) if not is_eval_key(t.key)]
        out[fam] = [t.prompt for t in tasks[:: max(1, len(tasks) // 400)]]
    return out


def generate_corpus(seed: int, chars: int) -> list[str]:
    """Documents totalling at least `chars` characters, deterministic in `seed`."""
    rng = random.Random(f"rlhfkit-world-corpus-{seed}")
    gens, weights = list(DOCS), list(DOCS.values())
    questions, quiz = faq_questions(), quiz_questions()
    docs, total = [], 0
    while total < chars:
        gen = rng.choices(gens, weights)[0]
        if gen is faq_page:
            doc = gen(rng, questions)
        elif gen is quiz_page:
            doc = gen(rng, quiz)
        else:
            doc = gen(rng)
        docs.append(doc)
        total += len(doc)
    return docs
