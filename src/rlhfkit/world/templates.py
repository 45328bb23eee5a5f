"""Prompt templates that both format a prompt and parse it back, so the judge needs only the text.

`Template("What is {a} plus {b}?", a=NUMBER, b=NUMBER)` formats with `.format(a=3, b=4)` and parses
with `.parse("what is 3  plus 4?") -> {"a": "3", "b": "4"}` (case and spacing are forgiven, since
prompts may come back through a web form).
"""

from __future__ import annotations

import re

NUMBER = r"\d{1,2}"


def one_of(words) -> str:
    """A regex alternative of whole words, longest first so 'sea' never shadows 'seal'."""
    return "(?:" + "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True)) + ")"


_SLOT = re.compile(r"\{(\w+)\}")


def normalize(text: str) -> str:
    return " ".join(text.split())


class Template:
    """A prompt pattern with named slots, each slot given as a regex."""

    def __init__(self, text: str, **slots: str):
        self.text = text
        self.slots = slots  # slot name -> regex
        missing = set(_SLOT.findall(text)) - set(slots)
        if missing:
            raise ValueError(f"template {text!r}: no regex for slots {sorted(missing)}")
        parts, pos = [], 0
        for m in _SLOT.finditer(text):
            parts.append(_literal(text[pos : m.start()]))
            parts.append(f"(?P<{m.group(1)}>{slots[m.group(1)]})")
            pos = m.end()
        parts.append(_literal(text[pos:]))
        self._regex = re.compile("^" + "".join(parts) + r"\s*$", re.IGNORECASE)

    def format(self, **values) -> str:
        return self.text.format(**values)

    def parse(self, prompt: str) -> dict[str, str] | None:
        m = self._regex.match(normalize(prompt))
        return None if m is None else m.groupdict()


def _literal(s: str) -> str:
    # Spaces match any run of whitespace; everything else literally.
    return r"\s+".join(re.escape(piece) for piece in s.split(" "))
