"""`load_causal_lm` turns dropout off for real: a model whose config asks for dropout everywhere gives bitwise
identical logits in train mode, run to run and against eval mode, for every architecture the project loads.
transformers 5.x attention copies `config.attention_dropout` when it is built, so zeroing the config
after loading is not enough (the bug this guards against).

Run: .venv/bin/python -m pytest tests/model/test_dropout.py -q
"""

from __future__ import annotations

import pytest
import torch

from rlhfkit.model import load_causal_lm

VOCAB = 64
LLAMA_LIKE = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, max_position_embeddings=64)
# config class, shape, every dropout knob that config has
ARCHS = {
    "llama": ("LlamaConfig", LLAMA_LIKE, ("attention_dropout",)),
    "mistral": ("MistralConfig", LLAMA_LIKE, ("attention_dropout",)),
    "qwen2": ("Qwen2Config", LLAMA_LIKE, ("attention_dropout",)),
    "gemma": ("GemmaConfig", dict(LLAMA_LIKE, head_dim=8), ("attention_dropout",)),
    "gpt2": ("GPT2Config", dict(n_embd=32, n_layer=2, n_head=2, n_positions=64, bos_token_id=0, eos_token_id=0),
             ("attn_pdrop", "resid_pdrop", "embd_pdrop", "summary_first_dropout")),
}


@pytest.mark.parametrize("arch", list(ARCHS))
def test_no_dropout_in_train_mode(arch, tmp_path):
    import transformers

    name, shape, knobs = ARCHS[arch]
    cfg = getattr(transformers, name)(vocab_size=VOCAB, **shape, **{k: 0.5 for k in knobs})
    assert {k for k in vars(cfg) if "drop" in k} == set(knobs)  # no knob of this config left at its default
    torch.manual_seed(0)
    transformers.AutoModelForCausalLM.from_config(cfg).save_pretrained(tmp_path)

    model = load_causal_lm(tmp_path).train()
    assert all(getattr(model.config, k) == 0 for k in knobs)  # for code that reads the config at forward time
    ids = torch.randint(0, VOCAB, (2, 12), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        first, second = model(ids).logits, model(ids).logits
        evaluated = model.eval()(ids).logits
    assert torch.equal(first, second)
    assert torch.equal(first, evaluated)
