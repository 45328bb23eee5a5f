"""GGUF files as `--model`: the fixture Llama written as a real GGUF (F32, and F16 / Q8_0 to prove the
dequantization) loads through transformers' own `gguf_file` support with the original model's logits and
the original tokenizer's ids, saves as a normal HF folder with no quantization config, and a stage runs
from it end to end. Hub ids of the form `org/name/file.gguf` are only parsed here (offline).

Run: .venv/bin/python -m pytest tests/model/test_gguf.py -q
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from rlhfkit.checkpoint import save_model
from rlhfkit.common import StageError, split_gguf
from rlhfkit.config import parse
from rlhfkit.data.tokenizer import load_tokenizer
from rlhfkit.model.causal_lm import detach_quantizer, load_causal_lm

from .gguf_writer import write_gguf

# Largest logit difference allowed against the original fp32 model, per storage type (measured: F32 0,
# F16 2.5e-4, Q8_0 6.9e-3 on the fixture model).
TOLERANCE = {"F32": 1e-5, "F16": 1e-3, "Q8_0": 1.5e-2}
# Largest weight error as a fraction of the tensor's largest |weight|: F16 rounds to 11 significant bits;
# Q8_0 rounds to 1/127 of its 32-value block's max (half a step: 1/254), with an F16 scale (+1/2048).
WEIGHT_ERROR = {"F32": 0.0, "F16": 2**-11, "Q8_0": 1 / 254 + 1 / 2048}
TEXTS = ["What is 4 plus 5? It is 9.", "Ada has 12 apples. Bo gives Ada 3 more, so Ada has 15 apples.",
         "  two spaces, tabs\tand\nnew lines!", "café, naïve, 東京 and emoji 🙂",
         "Where are the owls? At the hill!"]
CHAT = [{"role": "user", "content": "What is 7 plus 2?"}, {"role": "assistant", "content": "It is 9."}]


@pytest.fixture(scope="module")
def gguf_files(tmp_path_factory, lm_dir) -> dict[str, Path]:
    """{storage type: path} of the fixture Llama written as a GGUF file (each in its own folder)."""
    root = tmp_path_factory.mktemp("gguf")
    return {q: write_gguf(lm_dir, root / f"tiny-{q.lower()}.gguf", q) for q in TOLERANCE}


def _ids(tokenizer) -> torch.Tensor:
    """Real text plus random ids over the whole vocabulary (special tokens included)."""
    text = tokenizer(TEXTS[:2], padding=True, return_tensors="pt")["input_ids"][:, :12]
    rand = torch.randint(0, len(tokenizer), (2, 12), generator=torch.Generator().manual_seed(0))
    return torch.cat([text, rand])


def _logits(model, ids) -> torch.Tensor:
    with torch.no_grad():
        return model.eval()(input_ids=ids).logits


@pytest.mark.parametrize("name, expected", [
    ("org/name/file.gguf", ("org/name", "file.gguf")),
    ("org/name/sub/file.Q4_K_M.gguf", ("org/name", "sub/file.Q4_K_M.gguf")),
    ("gpt2", ("gpt2", None)),
    ("org/name", ("org/name", None)),
    ("runs/sft/model", ("runs/sft/model", None)),
])
def test_split_gguf_hub_and_plain_names(name, expected):
    assert split_gguf(name) == expected


def test_split_gguf_local_files(tmp_path, monkeypatch):
    (tmp_path / "x.gguf").write_bytes(b"GGUF")
    assert split_gguf(tmp_path / "x.gguf") == (str(tmp_path), "x.gguf")
    monkeypatch.chdir(tmp_path)
    assert split_gguf("x.gguf") == (".", "x.gguf")
    (tmp_path / "a" / "b").mkdir(parents=True)
    for missing in [tmp_path / "y.gguf", "y.gguf", "./org/name/y.gguf", "a/b/y.gguf"]:
        with pytest.raises(StageError, match=f"^{missing}: no such GGUF file$"):
            split_gguf(missing)


def test_missing_gguf_package_is_a_clear_error(gguf_files, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "gguf" else real(name, *a))
    with pytest.raises(StageError, match=r"needs the gguf package \(pip install gguf"):
        load_causal_lm(gguf_files["F32"])


@pytest.mark.parametrize("qtype", list(TOLERANCE))
def test_gguf_model_has_the_original_weights_and_logits(gguf_files, lm, tokenizer, qtype):
    model = load_causal_lm(gguf_files[qtype])
    assert getattr(model, "hf_quantizer", None) is None and not getattr(model, "is_quantized", False)
    assert getattr(model.config, "quantization_config", None) is None
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    for key in ("vocab_size", "hidden_size", "num_hidden_layers", "pad_token_id", "bos_token_id",
                "eos_token_id", "tie_word_embeddings", "max_position_embeddings"):
        assert getattr(model.config, key) == getattr(lm.config, key), key
    loaded, original = model.state_dict(), lm.state_dict()
    assert loaded.keys() == original.keys()
    for name, w in original.items():  # q/k un-permuted, each weight within its storage type's rounding
        assert (loaded[name] - w).abs().max() <= WEIGHT_ERROR[qtype] * w.abs().max(), name
    ids = _ids(tokenizer)
    diff = (_logits(model, ids) - _logits(lm, ids)).abs().max().item()
    assert diff <= TOLERANCE[qtype]
    if qtype != "F32":
        assert diff > 0  # the file really holds rounded weights, so the bound above is not vacuous


def test_gguf_tokenizer_encodes_like_the_original(gguf_files, tokenizer):
    tok = load_tokenizer(gguf_files["F32"])
    assert len(tok) == len(tokenizer) and tok.get_vocab() == tokenizer.get_vocab()
    assert (tok.pad_token, tok.bos_token, tok.eos_token) == (tokenizer.pad_token, tokenizer.bos_token,
                                                            tokenizer.eos_token)
    assert tok.chat_template == tokenizer.chat_template and tok.padding_side == "left"
    assert tok("hi <|endoftext|>")["input_ids"] == tokenizer("hi <|endoftext|>")["input_ids"]  # not a token
    for text in TEXTS:
        ids = tokenizer(text)["input_ids"]
        assert tok(text)["input_ids"] == ids, text
        assert tok.decode(ids) == text
    chat = tokenizer.apply_chat_template(CHAT, tokenize=False)
    assert tok.apply_chat_template(CHAT, tokenize=False) == chat
    assert tok(chat, add_special_tokens=False)["input_ids"] == tokenizer(chat, add_special_tokens=False)["input_ids"]


def test_saved_gguf_model_is_a_plain_hf_folder(gguf_files, tmp_path):
    from transformers import AutoModelForCausalLM

    model, tok = load_causal_lm(gguf_files["Q8_0"]), load_tokenizer(gguf_files["Q8_0"])
    out = save_model(model, tok, tmp_path / "model")
    assert "quantization_config" not in json.loads((out / "config.json").read_text())
    again = AutoModelForCausalLM.from_pretrained(out)
    assert getattr(again, "hf_quantizer", None) is None
    ids = _ids(tok)
    torch.testing.assert_close(_logits(again, ids), _logits(model, ids), rtol=0, atol=0)
    assert load_tokenizer(out)(TEXTS)["input_ids"] == tok(TEXTS)["input_ids"]


def test_detach_quantizer_makes_a_plain_gguf_load_saveable(gguf_files, tmp_path):
    """What `load_causal_lm` guards against: transformers' own GGUF load may leave a quantizer attached."""
    from transformers import AutoModelForCausalLM

    path = gguf_files["F32"]
    raw = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name)
    if getattr(raw, "hf_quantizer", None) is None:
        pytest.skip("this transformers version attaches no quantizer to a GGUF load")
    with pytest.raises(ValueError, match="not serializable"):
        raw.save_pretrained(tmp_path / "refused")
    detach_quantizer(raw)
    raw.save_pretrained(tmp_path / "saved")
    assert "quantization_config" not in json.loads((tmp_path / "saved" / "config.json").read_text())
    ids = torch.arange(20).view(2, 10)
    torch.testing.assert_close(_logits(AutoModelForCausalLM.from_pretrained(tmp_path / "saved"), ids),
                               _logits(raw, ids), rtol=0, atol=0)


def test_sft_runs_from_a_gguf_file(gguf_files, lm, tokenizer, tmp_path):
    from rlhfkit.stages import sft

    data = tmp_path / "sft.jsonl"
    data.write_text("".join(json.dumps({"messages": [{"role": "user", "content": f"What is {i} plus 1?"},
                                                     {"role": "assistant", "content": f"It is {i + 1}."}]}) + "\n"
                            for i in range(12)))
    argv = ["--preset", "ci", "--model", str(gguf_files["F32"]), "--data.path", str(data),
            "--out", str(tmp_path / "sft"), "--optim.max_steps=2", "--optim.batch_size=4", "--optim.eval_every=2",
            "--optim.warmup_steps=1", "--optim.lr=1e-2", "--patience=0"]
    out = sft.run(parse(sft.Config, argv, sft.PRESETS))
    assert "quantization_config" not in json.loads((out / "config.json").read_text())
    trained = load_causal_lm(out)  # a plain folder: no gguf_file anywhere
    ids = _ids(tokenizer)
    assert (_logits(trained, ids) - _logits(lm, ids)).abs().max() > 1e-3  # it trained from the GGUF weights
    assert load_tokenizer(out)(TEXTS)["input_ids"] == tokenizer(TEXTS)["input_ids"]


def test_reward_runs_from_a_gguf_file(gguf_files, tmp_path):
    """The reward stage reads the model's context length through the same GGUF-aware loader."""
    from rlhfkit.stages import reward

    data = tmp_path / "rankings.jsonl"
    data.write_text("".join(json.dumps({"prompt": f"What is {i} plus 1?", "chosen": f"It is {i + 1}.",
                                        "rejected": "no"}) + "\n" for i in range(12)))
    argv = ["--preset", "ci", "--model", str(gguf_files["F32"]), "--data.path", str(data),
            "--out", str(tmp_path / "rm"), "--optim.max_steps=2", "--optim.batch_size=4"]
    reward.run(parse(reward.Config, argv, reward.PRESETS))
    assert (tmp_path / "rm" / "summary.json").exists()
