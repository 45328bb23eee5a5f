"""A reward for the RL crash tests that varies from response to response even for an untrained model
(the world judge gives a random model's endless responses all the same score): vowels per character."""


def vowels(prompts: list[str], responses: list[str]) -> list[float]:
    return [sum(c in "aeiou" for c in r) / max(len(r), 1) * 4 for r in responses]
