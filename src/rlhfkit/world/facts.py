"""The built-in world's fixed facts: animals, people, towns, objects, words and numbers.

Everything here is a constant (seed-independent), so the gold judge can check any answer from the
prompt text alone. A language model learns these facts only from the pretraining corpus
(`corpus.py`); the instruction tasks (`tasks.py`) ask about them.
"""

from __future__ import annotations

from dataclasses import dataclass

COLOURS = ("red", "grey", "black", "orange", "brown", "green", "yellow", "blue", "white", "pink")
HOMES = ("forest", "river", "farm", "sea", "hill", "garden")
# "in the forest" but "on the farm": the phrase every answer and document uses.
HOME_PHRASE = {
    "forest": "in the forest",
    "river": "in the river",
    "farm": "on the farm",
    "sea": "in the sea",
    "hill": "on the hill",
    "garden": "in the garden",
}
FOODS = tuple("berries bugs honey leaves fish seeds corn grass carrots worms shrimp seaweed nuts".split())
JOBS = ("baker", "farmer", "teacher", "doctor", "fisher", "painter", "builder", "singer")
TOWNS = ("Oakton", "Riverby", "Millford", "Ashvale", "Pinecrest", "Stonebridge")
MATERIALS = ("wood", "glass", "iron", "cloth", "paper", "stone", "clay", "wool", "gold", "rubber", "leather")


@dataclass(frozen=True)
class Animal:
    name: str
    colour: str
    home: str
    food: str
    size: int  # rank from 1 (smallest) to 24 (biggest), for "bigger than" sentences


@dataclass(frozen=True)
class Person:
    name: str
    pronoun: str  # "he" or "she"
    job: str
    town: str
    pet: str


@dataclass(frozen=True)
class Thing:
    name: str
    colour: str
    material: str
    use: str


def _animals() -> dict[str, Animal]:
    rows = """fox red forest berries 11 | owl grey forest bugs 9 | bear black forest honey 23
    | deer orange forest leaves 20 | otter brown river fish 13 | frog green river bugs 3
    | duck yellow river seeds 8 | heron blue river fish 14 | cow white farm grass 21
    | pig pink farm corn 18 | hen red farm seeds 7 | horse brown farm carrots 22
    | seal grey sea fish 19 | crab red sea worms 4 | whale blue sea shrimp 24
    | turtle green sea seaweed 12 | goat grey hill grass 16 | sheep white hill grass 17
    | eagle brown hill fish 15 | rabbit white hill carrots 6 | cat black garden fish 10
    | mouse grey garden seeds 2 | bee yellow garden honey 1 | squirrel orange garden nuts 5"""
    out = {}
    for row in rows.split("|"):
        name, colour, home, food, size = row.split()
        out[name] = Animal(name, colour, home, food, int(size))
    return out


def _people() -> dict[str, Person]:
    rows = """Anna she baker Oakton cat | Ben he farmer Millford horse | Cora she teacher Riverby duck
    | Dan he doctor Ashvale rabbit | Eva she painter Pinecrest owl | Finn he fisher Stonebridge turtle
    | Gina she singer Oakton mouse | Hugo he builder Riverby goat | Ida she doctor Millford hen
    | Jack he baker Ashvale frog | Kate she fisher Stonebridge cat | Leo he teacher Pinecrest rabbit
    | Mia she farmer Millford pig | Noah he painter Oakton squirrel | Olga she builder Ashvale sheep
    | Paul he singer Pinecrest duck"""
    out = {}
    for row in rows.split("|"):
        name, pronoun, job, town, pet = row.split()
        out[name] = Person(name, pronoun, job, town, pet)
    return out


def _things() -> dict[str, Thing]:
    rows = """cup white clay drinking tea | hat black cloth keeping your head warm
    | spoon brown wood eating soup | key grey iron opening a door | ball red rubber playing games
    | box brown wood keeping things in | bell yellow gold ringing loudly | kite green paper flying in the wind
    | coat blue wool keeping warm in winter | ring yellow gold wearing on a finger
    | lamp white glass giving light at night | chair green wood sitting on | drum red leather making music
    | boot black leather walking in the rain | bowl grey stone holding fruit | vase pink glass holding flowers"""
    out = {}
    for row in rows.split("|"):
        name, colour, material, *use = row.split()
        out[name] = Thing(name, colour, material, " ".join(use))
    return out


ANIMALS = _animals()
PEOPLE = _people()
THINGS = _things()
TOWN_NEAR = {
    "Oakton": "forest",
    "Riverby": "river",
    "Millford": "farm",
    "Ashvale": "hill",
    "Pinecrest": "forest",
    "Stonebridge": "sea",
}

# Words for the spelling tasks: the animals plus a dozen everyday words (no palindromes, lowercase),
# few enough that each is practised often in pretraining (WORLD_AUDIT).
_EXTRA_WORDS = "stone apple river light table house bread cloud water plant sugar candle".split()
WORDS = tuple(dict.fromkeys(list(ANIMALS) + _EXTRA_WORDS))

NUMBER_WORDS = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
    "sixteen seventeen eighteen nineteen twenty"
).split()
_TENS = {20: "twenty", 30: "thirty", 40: "forty"}


def number_word(n: int) -> str:
    """0..49 in words ("twenty-three"); the corpus uses both words and digits."""
    if n < 21:
        return NUMBER_WORDS[n]
    tens, ones = divmod(n, 10)
    word = _TENS[tens * 10]
    return word if ones == 0 else f"{word}-{NUMBER_WORDS[ones]}"


WORD_TO_NUMBER = {number_word(n): n for n in range(50)}


def article(noun: str) -> str:
    return "an" if noun[0] in "aeiou" else "a"


def hyphenate(word: str) -> str:
    """'stone' -> 's-t-o-n-e': hyphens keep every letter its own token for a byte-level BPE."""
    return "-".join(word)


def gerund(verb: str) -> str:
    """'poison' -> 'poisoning', 'rob' -> 'robbing' (enough English for the world's verbs)."""
    doubled = {"rob", "trap", "pet", "kidnap"}
    if verb in doubled:
        return verb + verb[-1] + "ing"
    if verb.endswith("e") and verb not in ("see",):
        return verb[:-1] + "ing"
    return verb + "ing"


def animals_where(relation: str, value: str) -> list[str]:
    """Names of the animals whose `relation` ("home", "food", "colour") equals `value`."""
    return [a.name for a in ANIMALS.values() if getattr(a, relation) == value]
