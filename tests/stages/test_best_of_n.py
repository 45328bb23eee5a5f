"""`rlhfkit best-of-n`: the chosen sample, the reward-vs-n curve, the KL numbers and the policy file.

Run: .venv/bin/python -m pytest tests/stages/test_best_of_n.py -q
"""

import json

import pytest
import torch

from rlhfkit.common import StageError
from rlhfkit.data.tokenizer import train_bpe
from rlhfkit.model import ScalarModel
from rlhfkit.model.causal_lm import build_causal_lm
from rlhfkit.rl.bon import bon_kl_analytic, bon_kl_from_samples
from rlhfkit.rl.engine import SamplingParams
from rlhfkit.stages import best_of_n as bon

world = pytest.importorskip("rlhfkit.world")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """(sft dir, eval prompts path, reward-model dir): random ci-size models on a tokenizer of the world's text."""
    root = tmp_path_factory.mktemp("bon")
    paths = world.export(root / "world", seed=0, size="ci")
    texts = [json.dumps(json.loads(line)) for line in paths["sft"].read_text().splitlines()]
    tok = train_bpe(texts, vocab_size=300)
    torch.manual_seed(0)
    lm = build_causal_lm(tok, "ci")
    lm.save_pretrained(root / "sft")
    tok.save_pretrained(root / "sft")
    ScalarModel.from_causal_lm(build_causal_lm(tok, "ci")).save(root / "rm", tok)
    return root / "sft", paths["eval"], root / "rm"


def _cfg(setup, out, **kw) -> bon.Config:
    from rlhfkit.config import apply

    cfg = apply(bon.Config(), bon.PRESETS["ci"])
    cfg.model, cfg.prompts, cfg.reward, cfg.out = str(setup[0]), str(setup[1]), str(setup[2]), str(out)
    cfg.max_prompts, cfg.max_new_tokens = 8, 16
    return apply(cfg, kw)


def _rows(out):
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_measure_matches_a_brute_force_loop_and_the_bon_functions():
    g = torch.Generator().manual_seed(0)
    responses = [[f"r{int(x)}" for x in torch.randint(0, 5, (8,), generator=g)] for _ in range(3)]  # repeats
    proxy = torch.tensor([[float(r[1:]) + 0.1 * j for j, r in enumerate(row)] for row in responses])
    gold = -proxy + torch.randn(3, 8, generator=g)
    rows = bon.measure(responses, proxy, gold, [1, 4, 8])
    for row in rows:
        n = row["n"]
        best = [max(range(n), key=lambda j: (proxy[i, j].item(), -j)) for i in range(3)]  # highest, first on ties
        assert row["proxy_reward"] == pytest.approx(sum(proxy[i, j].item() for i, j in enumerate(best)) / 3)
        assert row["gold_reward"] == pytest.approx(sum(gold[i, j].item() for i, j in enumerate(best)) / 3)
        assert row["kl_analytic"] == bon_kl_analytic(n)
        want = sum(bon_kl_from_samples(responses[i], proxy[i].tolist(), n) for i in range(3)) / 3
        assert row["kl_samples"] == pytest.approx(want)
    assert rows[0]["kl_samples"] == 0.0 and rows[-1]["kl_samples"] > rows[1]["kl_samples"] > 0
    with pytest.raises(ValueError):
        bon.measure(responses, proxy, None, [9])


def _letters(prompts, responses):
    """A known reward: how many vowels a response has."""
    r = torch.tensor([float(sum(c in "aeiou" for c in resp)) for resp in responses])
    return r, torch.zeros_like(r)


def test_run_with_a_known_reward(setup, tmp_path, monkeypatch):
    monkeypatch.setattr(bon, "make_reward", lambda spec: _letters)
    out = tmp_path / "bon"
    assert bon.run(_cfg(setup, out, n=4)) == out
    spec = json.loads((out / "best_of_n.json").read_text())
    assert spec == {"model": str(setup[0]), "reward": str(setup[2]), "n": 4, "temperature": 1.0,
                    "max_new_tokens": 16}
    rows = _rows(out)
    assert [r["n"] for r in rows] == [1, 2, 4, 8] and [r["step"] for r in rows] == [1, 2, 4, 8]
    proxy = [r["proxy_reward"] for r in rows]
    assert proxy == sorted(proxy) and proxy[-1] > proxy[0] + 0.5, proxy
    assert [r["kl_analytic"] for r in rows] == [bon_kl_analytic(n) for n in (1, 2, 4, 8)]
    # the recorded chosen reward is the best of each prompt's first n samples, rescored here
    samples = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    by_prompt = {}
    for s in samples:
        by_prompt.setdefault(s["prompt"], []).append(s)
    for row in by_prompt.values():
        # the reward; a response cut off at the token limit gets min(its reward, the prompt's lowest finished
        # one) less the EOS penalty (1.0)
        r = [_letters([], [s["response"]])[0].item() for s in row]
        low = min([x for x, s in zip(r, row) if s["finished"]], default=float("inf"))
        assert [s["proxy_reward"] for s in row] == [x if s["finished"] else min(x, low) - 1.0 for x, s in zip(r, row)]
    assert len(by_prompt) == 8 and all(len(v) == 8 for v in by_prompt.values())
    best4 = sum(max(s["proxy_reward"] for s in v[:4]) for v in by_prompt.values()) / 8
    assert rows[2]["proxy_reward"] == pytest.approx(best4)
    kl8 = sum(bon_kl_from_samples([s["response"] for s in v], [s["proxy_reward"] for s in v], 8)
              for v in by_prompt.values()) / 8
    assert rows[3]["kl_samples"] == pytest.approx(kl8)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["gold_available"] and rows[0]["gold_reward"] is not None  # the world's eval prompts


def test_run_with_a_reward_model_folder(setup, tmp_path):
    from rlhfkit.model.reward_scorer import load_reward

    out = tmp_path / "bon"
    bon.run(_cfg(setup, out, max_prompts=4, ns=[1, 4], n=4))
    samples = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    want, _ = load_reward(setup[2]).score_texts([s["prompt"] for s in samples], [s["response"] for s in samples])
    want = [w - (0.0 if s["finished"] else 1.0) for w, s in zip(want.tolist(), samples)]  # the EOS penalty
    assert [s["proxy_reward"] for s in samples] == pytest.approx(want, abs=1e-5)
    rows = _rows(out)
    assert rows[1]["proxy_reward"] >= rows[0]["proxy_reward"]


def test_gold_reward_is_the_judge(setup, tmp_path, monkeypatch):
    """reward 'gold' with a stand-in policy whose answers the judge grades differently (the random ci model's
    gibberish all scores -1): the demonstration, a refusal, or gibberish, drawn at random per sample."""
    from rlhfkit.rl.text import TextSample

    demos = [json.loads(line)["messages"] for line in (setup[1].parent / "sft.jsonl").read_text().splitlines()]
    answers = {m[0]["content"]: m[-1]["content"] for m in demos}
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in list(answers)[:12]))

    def fake_generate(model, tokenizer, prompts, k=1, params=None, seed=0, batch_size=64, raw=False):
        g = torch.Generator().manual_seed(seed)
        pool = lambda p: [answers[p], "I cannot help with that.", "the the cat"]  # noqa: E731
        return [[TextSample(p, pool(p)[int(torch.randint(0, 3, (1,), generator=g))], True, 5) for _ in range(k)]
                for p in prompts]

    monkeypatch.setattr("rlhfkit.rl.text.generate_text", fake_generate)
    out = tmp_path / "gold"
    bon.run(_cfg(setup, out, reward="gold", prompts=str(prompts), max_prompts=0, samples=16))
    rows = _rows(out)
    assert all(r["gold_reward"] == r["proxy_reward"] for r in rows)
    gold = [r["gold_reward"] for r in rows]
    assert gold == sorted(gold) and gold[-1] > gold[0] + 0.3, gold
    samples = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == 12 * 16
    for s in samples:
        assert s["gold_reward"] == pytest.approx(world.judge(s["prompt"], s["response"], s["finished"]).score, abs=1e-6)
    # three distinct answers per prompt: the sampled KL is bounded by log 3, far below the analytic bound
    assert all(r["kl_samples"] <= 1.0986 + 1e-6 for r in rows) and rows[-1]["kl_analytic"] > 1.0986


def test_gold_needs_world_prompts(setup, tmp_path):
    prompts = tmp_path / "p.jsonl"
    prompts.write_text('{"prompt": "not a world prompt"}\n')
    with pytest.raises(StageError, match="world"):
        bon.run(_cfg(setup, tmp_path / "x", reward="gold", prompts=str(prompts)))


def test_generate_best_of_n_returns_the_highest_reward_sample(setup):
    from rlhfkit.data.tokenizer import load_tokenizer
    from rlhfkit.model.causal_lm import load_causal_lm
    from rlhfkit.rl.text import generate_text

    tok, lm = load_tokenizer(setup[0]), load_causal_lm(setup[0])
    params, prompts = SamplingParams(max_new_tokens=12), ["Describe the cat.", "Describe the dog."]
    picked = bon.generate_best_of_n(lm, tok, _letters, prompts, 5, params, seed=3)
    every = generate_text(lm, tok, prompts, k=5, params=params, seed=3)  # same seed: the same 5 samples
    for p, row in zip(picked, every):
        assert p.response == max(row, key=lambda s: _letters([], [s.response])[0].item()).response


def test_a_reward_model_never_prefers_an_unfinished_response():
    """The reward model scores the cut-off text higher, yet the finished response is picked (the EOS trick,
    as RL applies it): best-of-n never returns an unfinished response when a finished one exists."""
    from rlhfkit.rl.text import TextSample
    from rlhfkit.stages.best_of_n import score

    row = [TextSample("p", "cut off mid-sen", False, 48), TextSample("p", "Done.", True, 2),
           TextSample("p", "also cut", False, 48)]
    rm = {"cut off mid-sen": 0.9, "Done.": 0.2, "also cut": 0.5}

    def reward(prompts, responses):
        return torch.tensor([rm[r] for r in responses]), torch.zeros(len(responses))

    assert score(reward, [row]).argmax().item() == 0  # without the penalty the truncated one wins
    scores = score(reward, [row], eos_penalty=1.0)
    # unfinished: min(r, 0.2) − 1, the 0.2 being the lowest finished score of the prompt
    assert scores.argmax().item() == 1 and scores[0].tolist() == pytest.approx([-0.8, 0.2, -0.8])


def test_never_unfinished_when_a_finished_one_exists_whatever_the_scores():
    """Property over random reward-model scores (spread far wider than the penalty) and finish flags."""
    from rlhfkit.rl.text import TextSample
    from rlhfkit.stages.best_of_n import score

    g = torch.Generator().manual_seed(0)
    for _ in range(200):
        n = int(torch.randint(2, 7, (1,), generator=g))
        done = (torch.rand(n, generator=g) < 0.4).tolist()
        rm = (5 * torch.randn(n, generator=g)).tolist()
        row = [TextSample("p", str(i), d, 8) for i, d in enumerate(done)]
        picked = score(lambda p, r: (torch.tensor([rm[int(x)] for x in r]), torch.zeros(len(r))), [row],
                       eos_penalty=0.1)[0].argmax().item()
        if any(done):
            assert done[picked]
            assert rm[picked] == max(x for x, d in zip(rm, done) if d)  # the best finished one
        else:
            assert rm[picked] == max(rm)  # all cut off: the order among them is kept
