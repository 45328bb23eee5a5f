"""Write a saved HF Llama folder (weights + byte-level BPE tokenizer) as a GGUF file, the way llama.cpp's
`convert_hf_to_gguf.py` does for the keys transformers reads back: llama architecture metadata, tensors
under GGUF names with q/k rows permuted for llama.cpp's rotary layout, and a "gpt2" tokenizer (tokens,
token types, merges, special ids, chat template). Test-only: real users get their GGUF files from
llama.cpp or the hub.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file

# HF name inside `model.layers.N.` -> GGUF name inside `blk.N.`
LAYER_TENSORS = {
    "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down", "input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm",
}
# llama.cpp token types
NORMAL, CONTROL, USER_DEFINED = 1, 3, 4


def permute(w: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp's q/k permutation (convert_hf_to_gguf.py LlamaModel.permute): HF's rotate-half pairs
    (i, i + d/2) become adjacent rows (2i, 2i + 1); transformers undoes it on load."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def gguf_tensors(model_dir: Path, config: dict) -> dict[str, np.ndarray]:
    """The model's weights as {GGUF name: float32 array}; `output.weight` only when untied."""
    hf = load_file(str(model_dir / "model.safetensors"))
    heads = config["num_attention_heads"]
    kv_heads = config.get("num_key_value_heads") or heads
    out = {"token_embd.weight": hf["model.embed_tokens.weight"], "output_norm.weight": hf["model.norm.weight"]}
    if "lm_head.weight" in hf and not config.get("tie_word_embeddings"):
        out["output.weight"] = hf["lm_head.weight"]
    for i in range(config["num_hidden_layers"]):
        for hf_name, gguf_name in LAYER_TENSORS.items():
            w = hf[f"model.layers.{i}.{hf_name}.weight"]
            if gguf_name in ("attn_q", "attn_k"):
                w = permute(w, heads if gguf_name == "attn_q" else kv_heads)
            out[f"blk.{i}.{gguf_name}.weight"] = w
    return {k: v.astype(np.float32) for k, v in out.items()}


def add_tokenizer(writer, model_dir: Path) -> None:
    """The folder's `tokenizer.json` as llama.cpp's "gpt2" tokenizer metadata."""
    spec = json.loads((model_dir / "tokenizer.json").read_text())
    config = json.loads((model_dir / "tokenizer_config.json").read_text())
    vocab = dict(spec["model"]["vocab"])
    added = {t["content"]: t for t in spec["added_tokens"]}
    vocab.update({content: t["id"] for content, t in added.items()})
    tokens = [tok for tok, _ in sorted(vocab.items(), key=lambda kv: kv[1])]
    assert [vocab[t] for t in tokens] == list(range(len(tokens))), "vocabulary ids must be dense"
    types = [(CONTROL if added[t]["special"] else USER_DEFINED) if t in added else NORMAL for t in tokens]
    merges = [m if isinstance(m, str) else " ".join(m) for m in spec["model"]["merges"]]
    writer.add_tokenizer_model("gpt2")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges)
    for key, add in (("bos_token", writer.add_bos_token_id), ("eos_token", writer.add_eos_token_id),
                     ("pad_token", writer.add_pad_token_id)):
        add(vocab[config[key]])
    writer.add_add_bos_token(False)
    template = model_dir / "chat_template.jinja"  # where transformers 5 saves it (4.x: tokenizer_config)
    chat_template = template.read_text() if template.exists() else config.get("chat_template")
    if chat_template:
        writer.add_chat_template(chat_template)


def write_gguf(model_dir: str | Path, path: str | Path, qtype: str = "F32") -> Path:
    """Write `model_dir` (a saved LlamaForCausalLM + tokenizer) to `path`; `qtype` F32, F16 or Q8_0
    stores the 2-D weights that way (norms stay F32, as llama.cpp keeps them)."""
    import gguf

    model_dir, path = Path(model_dir), Path(path)
    config = json.loads((model_dir / "config.json").read_text())
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("rlhfkit-test")
    writer.add_context_length(config["max_position_embeddings"])
    writer.add_embedding_length(config["hidden_size"])
    writer.add_block_count(config["num_hidden_layers"])
    writer.add_feed_forward_length(config["intermediate_size"])
    writer.add_head_count(config["num_attention_heads"])
    writer.add_head_count_kv(config.get("num_key_value_heads") or config["num_attention_heads"])
    writer.add_rope_freq_base(float((config.get("rope_parameters") or config)["rope_theta"]))  # 5.x or 4.x
    writer.add_layer_norm_rms_eps(config["rms_norm_eps"])
    writer.add_vocab_size(config["vocab_size"])
    add_tokenizer(writer, model_dir)
    quant = gguf.GGMLQuantizationType[qtype]
    for name, w in gguf_tensors(model_dir, config).items():
        if w.ndim == 2 and quant != gguf.GGMLQuantizationType.F32:
            writer.add_tensor(name, gguf.quants.quantize(w, quant), raw_dtype=quant)
        else:
            writer.add_tensor(name, w)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
