"""LoRA: merged export reloads with the adapted model's logits; SFT trains only adapters; DPO and PPO take
their reference from the same model with adapters off (no second copy), so it equals the base exactly.

Run: .venv/bin/python -m pytest tests/stages/test_lora.py -q
"""

from __future__ import annotations

import json

import torch

from rlhfkit.config import parse
from rlhfkit.model import lora
from rlhfkit.model.causal_lm import load_causal_lm

IDS = torch.tensor([[1, 7, 8, 9, 10, 11, 12, 13], [1, 20, 21, 22, 23, 24, 25, 26]])


def _logits(model) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=IDS).logits.float()


def _plain_folder(path) -> bool:
    return (path / "config.json").exists() and not (path / "adapter_config.json").exists()


def test_merged_folder_reloads_with_the_adapted_logits(lm_dir, tokenizer, tmp_path):
    from rlhfkit.lm import save_final

    model = lora.apply(load_causal_lm(lm_dir), lora.LoraConfig(r=4, alpha=8))
    torch.manual_seed(1)
    for name, p in model.named_parameters():
        if "lora_B" in name:  # peft starts B at zero (adapted == base); give the adapters an effect
            torch.nn.init.normal_(p, std=0.05)
    adapted = _logits(model)
    base = _logits(load_causal_lm(lm_dir))
    out = save_final(model, tokenizer, tmp_path)
    assert _plain_folder(out)
    reloaded = _logits(load_causal_lm(out))
    assert (adapted - base).abs().max() > 1e-2  # the adapters matter, so equality below is not trivial
    torch.testing.assert_close(reloaded, adapted, rtol=0, atol=1e-5)


def test_sft_with_lora_trains_adapters_and_saves_them_merged(lm_dir, tiny_data, tmp_path, monkeypatch):
    from rlhfkit.stages import sft

    seen = {}
    real_merged = lora.merged

    def spy(model):  # the adapted model's logits just before the stage merges it for saving
        seen["trainable"] = sorted({n.split(".")[-3] for n, p in model.named_parameters() if p.requires_grad})
        seen["logits"] = _logits(model)
        return real_merged(model)

    monkeypatch.setattr(lora, "merged", spy)
    cfg = parse(sft.Config, ["--model", str(lm_dir), "--data.path", tiny_data["sft"], "--out", str(tmp_path / "sft"),
                             "--optim.max_steps=4", "--optim.eval_every=2", "--optim.batch_size=4",
                             "--optim.lr=1e-2", "--optim.warmup_steps=1", "--patience=0", "--lora.r=4"])
    out = sft.run(cfg)
    assert _plain_folder(out)
    assert seen["trainable"] == ["lora_A", "lora_B"]
    reloaded, base = load_causal_lm(out), load_causal_lm(lm_dir)
    torch.testing.assert_close(_logits(reloaded), seen["logits"], rtol=0, atol=1e-5)
    w, w0 = reloaded.state_dict(), base.state_dict()
    assert torch.equal(w["model.embed_tokens.weight"], w0["model.embed_tokens.weight"])  # not adapted
    assert not torch.equal(w["model.layers.0.self_attn.q_proj.weight"], w0["model.layers.0.self_attn.q_proj.weight"])


def test_dpo_with_lora_uses_the_base_with_adapters_off_as_reference(lm_dir, tiny_data, tmp_path, monkeypatch):
    from rlhfkit.data.tokenizer import load_tokenizer
    from rlhfkit.model import causal_lm
    from rlhfkit.stages import dpo

    loads = []
    real_load = causal_lm.load_causal_lm
    monkeypatch.setattr(causal_lm, "load_causal_lm", lambda *a, **k: loads.append(a) or real_load(*a, **k))
    cfg = parse(dpo.Config, ["--preset", "ci", "--model", str(lm_dir), "--data.path", tiny_data["rankings"],
                             "--out", str(tmp_path / "dpo"), "--data.val_fraction=0.25", "--optim.max_steps=3",
                             "--optim.eval_every=3", "--lora.r=4", "--lora.target_modules=q_proj,v_proj"],
                dpo.PRESETS)
    out = dpo.run(cfg)
    assert len(loads) == 1  # the policy only: the reference is not a second copy
    monkeypatch.undo()
    # The cached reference log-probs are the base model's.
    train, val, _ = dpo.load_examples(cfg, load_tokenizer(lm_dir), 128)
    base_ref = dpo.compute_ref_logps(load_causal_lm(lm_dir), train + val, 32, load_tokenizer(lm_dir).pad_token_id)
    torch.testing.assert_close(torch.load(tmp_path / "dpo" / "ref_logps.pt")["logps"], base_ref, rtol=0, atol=1e-5)
    rows = [json.loads(line) for line in (tmp_path / "dpo" / "metrics.jsonl").read_text().splitlines()]
    # π == π_ref at the start (to float rounding: the reference pass batches the pairs differently) ...
    assert abs(rows[0]["val_margin"]) < 1e-5
    assert rows[-1]["step"] == 3 and abs(rows[-1]["val_margin"]) > 1e-3  # ... and training moves π away
    assert _plain_folder(out)


def test_ppo_with_lora_starts_at_zero_kl_and_saves_merged(lm_dir, tiny_data, tmp_path, monkeypatch):
    from rlhfkit.stages import ppo

    def reward(prompts, responses):  # longer answers score higher: any signal will do
        r = torch.tensor([len(x) / 10.0 for x in responses])
        return r, torch.zeros_like(r)

    monkeypatch.setattr("rlhfkit.rl.loop.make_reward", lambda spec: reward)
    cfg = parse(ppo.Config, ["--preset", "ci", "--model", str(lm_dir), "--rollout.prompts", tiny_data["prompts"],
                             "--out", str(tmp_path / "ppo"), "--reward=length", "--ppo.steps=2",
                             "--rollout.batch_prompts=8", "--rollout.max_new_tokens=8", "--ppo.lr=1e-2",
                             "--lora.r=4"], ppo.PRESETS)
    out = ppo.run(cfg)
    rows = [json.loads(line) for line in (tmp_path / "ppo" / "metrics.jsonl").read_text().splitlines()]
    assert abs(rows[0]["kl"]) < 1e-6  # the reference is the policy with its (zero-initialised) adapters off
    assert rows[-1]["kl"] != 0.0  # ... and stays the base while the adapters train
    assert _plain_folder(out)


def test_sft_with_lora_resumes_from_an_adapter_checkpoint(lm_dir, tiny_data, tmp_path):
    from rlhfkit.stages import sft

    argv = ["--model", str(lm_dir), "--data.path", tiny_data["sft"], "--out", str(tmp_path / "sft"),
            "--optim.eval_every=2", "--optim.save_every=2", "--optim.batch_size=4", "--patience=0", "--lora.r=4"]
    sft.run(parse(sft.Config, argv + ["--optim.max_steps=2"]))
    assert (tmp_path / "sft" / "ckpt" / "model" / "adapter_model.safetensors").exists()  # adapters only
    sft.run(parse(sft.Config, argv + ["--optim.max_steps=4", "--resume"]))
    steps = [json.loads(line)["step"] for line in (tmp_path / "sft" / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4]


def test_reward_with_lora_saves_a_plain_backbone(lm_dir, tiny_data, tmp_path):
    from rlhfkit.model.reward_scorer import load_reward
    from rlhfkit.stages import reward

    cfg = parse(reward.Config, ["--preset", "ci", "--model", str(lm_dir), "--data.path", tiny_data["rankings"],
                                "--out", str(tmp_path / "rm"), "--optim.max_steps=3", "--optim.eval_every=3",
                                "--data.val_fraction=0.25", "--gold=false", "--lora.r=4"], reward.PRESETS)
    out = reward.run(cfg)
    assert _plain_folder(out / "model" / "backbone")
    mean, _ = load_reward(out).score_texts(["Tell me about cats."] * 2, ["Sure!", "no"])
    assert torch.isfinite(mean).all()
    # The saved weights are the kept (step-3) ones with the adapters folded in: every adapted linear layer
    # moved away from the base, everything LoRA does not touch (embeddings, norms) is the base's, bit for bit.
    from safetensors.torch import load_file

    assert json.loads((out / "model" / "train_summary.json").read_text())["best_step"] > 0
    saved, base = load_file(str(out / "model" / "backbone" / "model.safetensors")), load_causal_lm(lm_dir).state_dict()
    for key, w in saved.items():
        w0 = base[f"model.{key}"]
        if key.endswith("proj.weight"):
            assert (w - w0).abs().max() > 1e-4, key
        else:
            assert torch.equal(w, w0), key
