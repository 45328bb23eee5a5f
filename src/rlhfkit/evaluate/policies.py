"""Things that answer prompts, behind one interface: `Policy.generate(prompts, k, seed)`.

`HFPolicy` samples from a saved causal LM (chat template, or raw text / few-shot for base models);
`BestOfNPolicy` samples n and keeps the reward model's favourite; `load_policy(path)` picks the right
one from what a folder holds. `rlhfkit eval` and the report evaluate whatever `load_policy` returns.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch

from ..rl.engine import SamplingParams, Samples, generate
from ..rl.text import TextSample, encode_prompt

# Few-shot prompts (Brown et al. 2020, §2): demonstrations as plain Q/A text, then the question.
FEW_SHOT_Q, FEW_SHOT_A = "Question: ", "Answer:"
# A raw continuation is cut where the next demonstration would start: the base model's "end of turn".
FEW_SHOT_STOPS = ("\n\n", "\nQuestion:")


class Policy:
    """Something that answers prompts. `name` labels it in tables."""

    name: str = "policy"

    def generate(self, prompts: list[str], k: int, seed: int) -> list[list[TextSample]]:
        """k samples per prompt -> [len(prompts)][k] TextSample."""
        raise NotImplementedError


def few_shot_prefix(demos: list[tuple[str, str]]) -> str:
    """The text before the question: one `Question: q\\nAnswer: a\\n\\n` block per demonstration."""
    return "".join(f"{FEW_SHOT_Q}{q}\n{FEW_SHOT_A} {a}\n\n" for q, a in demos)


def cut_at_stop(text: str, stops: tuple[str, ...] = FEW_SHOT_STOPS) -> tuple[str, bool]:
    """(text up to the first stop sequence, whether one was found)."""
    hits = [i for i in (text.find(s) for s in stops) if i >= 0]
    return (text[:min(hits)], True) if hits else (text, False)


class HFPolicy(Policy):
    """Samples from a saved causal LM folder (HF format, tokenizer beside it).

    raw: feed prompts as plain text, without the chat template (base models).
    few_shot_prefix: text put before `Question: <prompt>\\nAnswer:` (implies raw); the continuation is
    cut at the next blank line / `Question:` and counts as finished when cut there.
    """

    def __init__(self, model_dir: str | Path, temperature: float = 1.0, max_new_tokens: int = 64,
                 raw: bool = False, few_shot_prefix: str = "", batch_size: int = 64, device: str | None = None):
        self.model_dir = Path(model_dir)
        self.temperature, self.max_new_tokens = temperature, max_new_tokens
        self.few_shot_prefix = few_shot_prefix
        self.raw = raw or bool(few_shot_prefix)
        self.batch_size = batch_size
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.name = self.model_dir.name if self.model_dir.name != "model" else self.model_dir.parent.name
        self._model = self._tokenizer = None

    def _load(self):
        if self._model is None:
            from ..data.tokenizer import load_tokenizer
            from ..model.causal_lm import load_causal_lm

            self._tokenizer = load_tokenizer(self.model_dir)
            self._model = load_causal_lm(self.model_dir).to(self.device).eval()
        return self._model, self._tokenizer

    @property
    def model(self):
        return self._load()[0]

    @property
    def tokenizer(self):
        return self._load()[1]

    @property
    def params(self) -> SamplingParams:
        if self.temperature == 0:  # greedy decoding (log-probs and KL at temperature 1)
            return SamplingParams(max_new_tokens=self.max_new_tokens, greedy=True)
        return SamplingParams(max_new_tokens=self.max_new_tokens, temperature=self.temperature)

    def with_few_shot(self, prefix: str) -> HFPolicy:
        """The same model (shared, not reloaded) prompted with a few-shot prefix."""
        other = HFPolicy(self.model_dir, self.temperature, self.max_new_tokens, True, prefix,
                         self.batch_size, self.device)
        other._model, other._tokenizer = self._model, self._tokenizer
        other.name = f"{self.name} ({prefix.count(FEW_SHOT_Q)}-shot)"
        return other

    def _text_prompts(self, prompts: list[str]) -> list[str]:
        if not self.few_shot_prefix:
            return prompts
        return [f"{self.few_shot_prefix}{FEW_SHOT_Q}{p}\n{FEW_SHOT_A}" for p in prompts]

    def _finish(self, prompt: str, s: TextSample) -> TextSample:
        """Map a sample of the rendered prompt back to the user's prompt (few-shot: cut at the stop)."""
        if not self.few_shot_prefix:
            return TextSample(prompt, s.response, s.finished, s.n_tokens)
        text, stopped = cut_at_stop(s.response)
        text = text.strip()
        n = len(self.tokenizer(text, add_special_tokens=False)["input_ids"]) if stopped else s.n_tokens
        return TextSample(prompt, text, s.finished or stopped, n)

    def generate(self, prompts: list[str], k: int, seed: int) -> list[list[TextSample]]:
        return self.rollout(prompts, k, seed)[0]

    def rollout(self, prompts: list[str], k: int, seed: int) -> tuple[list[list[TextSample]], list[Samples]]:
        """Samples and the engine's id batches (for KL). On CPU the texts equal `generate_text`'s for
        the same seed (same batching, same generator); the generator lives on the model's device
        because torch.multinomial on CUDA refuses a CPU generator."""
        model, tok = self._load()
        gen = torch.Generator(device=self.device).manual_seed(seed)
        flat = [p for p in prompts for _ in range(k)]
        texts = [t for t in self._text_prompts(prompts) for _ in range(k)]
        out, batches = [], []
        for i in range(0, len(flat), self.batch_size):
            ids = [encode_prompt(tok, t, self.raw) for t in texts[i:i + self.batch_size]]
            s = generate(model, ids, self.params, tok.eos_token_id, tok.pad_token_id, gen)
            batches.append(s)
            for p, r, fin in zip(flat[i:i + self.batch_size], s.response_ids(tok.eos_token_id),
                                 s.finished.tolist()):
                out.append(self._finish(p, TextSample(p, tok.decode(r, skip_special_tokens=True).strip(), bool(fin), len(r))))
        return [out[j * k:(j + 1) * k] for j in range(len(prompts))], batches


class BestOfNPolicy(Policy):
    """Best-of-n (Stiennon et al. 2020; Nakano et al. 2021): draw n from `base`, keep the response with
    the highest reward-model score. `scorer.score_texts(prompts, responses) -> (mean, std)`."""

    def __init__(self, base: HFPolicy, scorer, n: int):
        if n < 1:
            raise ValueError(f"best-of-n needs n >= 1, got {n}")
        self.base, self.scorer, self.n = base, scorer, n
        self.name = f"best-of-{n}"

    def generate(self, prompts: list[str], k: int, seed: int) -> list[list[TextSample]]:
        rows = self.base.generate(prompts, k * self.n, seed)  # [P][k*n]
        flat = [s for row in rows for s in row]
        mean, _ = self.scorer.score_texts([s.prompt for s in flat], [s.response for s in flat])
        scores = [float(x) for x in (mean.tolist() if hasattr(mean, "tolist") else mean)]
        out = []
        for j, row in enumerate(rows):
            base = j * k * self.n
            picks = []
            for g in range(k):
                idx = range(g * self.n, (g + 1) * self.n)
                picks.append(row[max(idx, key=lambda i: scores[base + i])])
            out.append(picks)
        return out

    @property
    def kl_bound(self) -> float:
        """Analytic KL(π_bon ‖ π) bound log n − (n−1)/n (nats per sequence)."""
        return math.log(self.n) - (self.n - 1) / self.n


def resolve_model_dir(path: str | Path) -> Path | None:
    """An HF model folder: `path` itself if it holds config.json, else `path/model` (a stage folder)."""
    p = Path(path)
    for cand in (p, p / "model"):
        if (cand / "config.json").is_file():
            return cand
    return None


def load_policy(path: str | Path, **kw) -> Policy:
    """A folder with config.json (or a stage folder with model/) -> HFPolicy; a folder with
    best_of_n.json {"model": dir, "reward": dir, "n": int} -> BestOfNPolicy (dirs relative to it).
    Extra keyword arguments (temperature, max_new_tokens, raw, ...) go to HFPolicy."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{p}: no such model folder")
    spec_file = p / "best_of_n.json"
    if spec_file.is_file():
        spec = json.loads(spec_file.read_text())
        missing = [key for key in ("model", "reward", "n") if key not in spec]
        if missing:
            raise ValueError(f"{spec_file}: missing {', '.join(missing)}; expected "
                             '{"model": dir, "reward": dir, "n": int}')
        from ..model.reward_scorer import load_reward  # written alongside; imported only when needed

        base = load_policy(_relative(p, spec["model"]), **kw)
        if not isinstance(base, HFPolicy):
            raise ValueError(f"{spec_file}: \"model\" must be a model folder, not another best-of-n policy")
        policy = BestOfNPolicy(base, load_reward(_relative(p, spec["reward"]), device=base.device), int(spec["n"]))
        policy.name = p.name if p.name else policy.name
        return policy
    model_dir = resolve_model_dir(p)
    if model_dir is None:
        raise FileNotFoundError(f"{p}: not a model folder (expected config.json, model/config.json or "
                                "best_of_n.json)")
    return HFPolicy(model_dir, **kw)


def _relative(base: Path, target: str) -> Path:
    t = Path(target)
    return t if t.is_absolute() or not (base / t).exists() else base / t
