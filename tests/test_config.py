"""`rlhfkit.config`: defaults, priority (defaults < preset < YAML < flags), flag forms, errors, round-trip.

Run: .venv/bin/python -m pytest tests/test_config.py -q
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import yaml

from rlhfkit.config import ConfigError, apply, group, help_text, load_yaml, opt, parse, save, split_flags


@dataclass
class Optim:
    """Optimisation."""

    lr: float = opt(1e-3, "peak learning rate")
    max_steps: int = opt(100, "steps")
    schedule: str = opt("cosine", "schedule", choices=("cosine", "linear"))


@dataclass
class Cfg:
    out: str = opt("runs/x", "output folder")
    seed: int = opt(0, "seed")
    resume: bool = opt(False, "resume")
    tag: str | None = opt(None, "optional tag")
    sizes: list[int] = opt([1, 2], "a list")
    stages: dict = opt({"pretrain": {"optim": {"lr": 0.5}}}, "per-stage overrides")
    optim: Optim = group(Optim)


PRESETS = {"fast": {"seed": 1, "optim": {"max_steps": 5, "lr": 0.1}}}


def test_defaults():
    cfg = parse(Cfg, [])
    assert cfg == Cfg()
    assert (cfg.out, cfg.seed, cfg.resume, cfg.tag, cfg.sizes) == ("runs/x", 0, False, None, [1, 2])
    assert (cfg.optim.lr, cfg.optim.max_steps, cfg.optim.schedule) == (1e-3, 100, "cosine")


def test_priority_preset_then_yaml_then_flags(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"seed": 2, "optim": {"lr": 0.2}}))
    cfg = parse(Cfg, ["--optim.lr=0.3", "--config", str(path), "--preset", "fast"], PRESETS)
    # Flag beats YAML beats preset beats default, whatever the order on the command line.
    assert cfg.optim.lr == 0.3
    assert cfg.seed == 2
    assert cfg.optim.max_steps == 5
    assert cfg.optim.schedule == "cosine"
    cfg = parse(Cfg, ["--preset", "fast", "--config", str(path)], PRESETS)
    assert (cfg.optim.lr, cfg.seed) == (0.2, 2)
    cfg = parse(Cfg, ["--preset=fast"], PRESETS)
    assert (cfg.optim.lr, cfg.seed, cfg.optim.max_steps) == (0.1, 1, 5)


def test_flag_forms_equal():
    a = parse(Cfg, ["--seed=1", "--resume=true"])
    b = parse(Cfg, ["--seed", "1", "--resume", "true"])
    c = parse(Cfg, ["--seed", "1", "--resume"])  # bare flag = true
    d = parse(Cfg, ["--resume", "--seed", "1"])  # bare flag followed by another flag
    assert a == b == c == d
    assert a.seed == 1 and a.resume is True
    assert parse(Cfg, ["--resume=no"]).resume is False
    assert parse(Cfg, ["--optim.max-steps=7"]).optim.max_steps == 7  # dashes accepted for underscores


def test_split_flags():
    flags, pos = split_flags(["x", "--a=1", "--b", "2", "--c", "--d=", "--e"])
    assert flags == {"a": "1", "b": "2", "c": "true", "d": "", "e": "true"}
    assert pos == ["x"]


def test_unknown_key_names_key_and_allowed():
    with pytest.raises(ConfigError) as e:
        parse(Cfg, ["--optim.lrr=1"])
    msg = str(e.value)
    assert "optim.lrr" in msg
    for key in ("lr", "max_steps", "schedule"):
        assert key in msg
    with pytest.raises(ConfigError, match="seeed") as e:
        parse(Cfg, ["--seeed=1"])
    assert "optim" in str(e.value) and "resume" in str(e.value)
    with pytest.raises(ConfigError, match="seed"):  # a dotted path below a plain field
        parse(Cfg, ["--seed.x=1"])


def test_unknown_key_in_yaml(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("optim:\n  lr: 0.1\n  warmup: 3\n")
    with pytest.raises(ConfigError, match="optim.warmup"):
        parse(Cfg, ["--config", str(path)])


@pytest.mark.parametrize("argv,key", [
    (["--seed=abc"], "seed"),
    (["--optim.max_steps=1.5"], "optim.max_steps"),
    (["--optim.lr=fast"], "optim.lr"),
    (["--resume=maybe"], "resume"),
    (["--seed"], "seed"),  # a bare flag on a non-bool field is 'true', not an integer
])
def test_wrong_type_names_key(argv, key):
    with pytest.raises(ConfigError) as e:
        parse(Cfg, argv)
    assert str(e.value).startswith(key + ":")


def test_yaml_types_checked(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("seed: true\n")  # YAML bool for an int field
    with pytest.raises(ConfigError, match="seed"):
        parse(Cfg, ["--config", str(path)])
    path.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_yaml(path)
    with pytest.raises(ConfigError, match="not found"):
        load_yaml(tmp_path / "missing.yaml")


def test_choices_enforced():
    assert parse(Cfg, ["--optim.schedule=linear"]).optim.schedule == "linear"
    with pytest.raises(ConfigError) as e:
        parse(Cfg, ["--optim.schedule=step"])
    assert "optim.schedule" in str(e.value) and "cosine" in str(e.value) and "linear" in str(e.value)


def test_preset_unknown():
    with pytest.raises(ConfigError, match="nope.*fast"):
        parse(Cfg, ["--preset", "nope"], PRESETS)


def test_positional_rejected():
    with pytest.raises(ConfigError, match="stray"):
        parse(Cfg, ["stray"])


def test_list_and_optional_fields():
    assert parse(Cfg, ["--sizes=3,4,5"]).sizes == [3, 4, 5]
    assert parse(Cfg, ["--sizes="]).sizes == []
    with pytest.raises(ConfigError, match="sizes"):
        parse(Cfg, ["--sizes=1,x"])
    assert parse(Cfg, ["--tag=hello"]).tag == "hello"
    assert parse(Cfg, ["--tag=none"]).tag is None
    assert apply(Cfg(), {"sizes": [7, 8]}).sizes == [7, 8]


def test_dict_field_dotted_paths():
    cfg = parse(Cfg, ["--stages.pretrain.optim.max_steps=5", "--stages.sft.seed=3"])
    assert cfg.stages == {"pretrain": {"optim": {"lr": 0.5, "max_steps": "5"}}, "sft": {"seed": "3"}}
    # The dotted value is kept as given and type-checked when the stage applies it to its own config.
    assert apply(Optim(), cfg.stages["pretrain"]["optim"]).max_steps == 5
    # Mutating one config's nested dict must not change the defaults of the next.
    assert Cfg().stages == {"pretrain": {"optim": {"lr": 0.5}}}
    with pytest.raises(ConfigError, match="lr"):
        parse(Cfg, ["--stages.pretrain.optim.lr.x=1"])


def test_mutable_defaults_not_shared():
    a, b = Cfg(), Cfg()
    a.sizes.append(9)
    a.stages["pretrain"]["optim"]["lr"] = 9
    assert b.sizes == [1, 2] and b.stages["pretrain"]["optim"]["lr"] == 0.5


def test_save_load_round_trip(tmp_path):
    cfg = parse(Cfg, ["--preset", "fast", "--tag=t", "--sizes=4", "--resume",
                      "--stages.sft.optim.lr=0.01", "--optim.schedule=linear"], PRESETS)
    save(cfg, tmp_path / "config.yaml")
    assert load_yaml(tmp_path / "config.yaml")["optim"]["schedule"] == "linear"
    again = parse(Cfg, ["--config", str(tmp_path / "config.yaml")])
    assert again == cfg
    assert again != Cfg()


def test_help_text_lists_every_field():
    text = help_text(Cfg, PRESETS)
    for flag in ("--out", "--seed", "--resume", "--tag", "--sizes", "--stages", "--optim.lr",
                 "--optim.max_steps", "--optim.schedule", "--config", "--preset"):
        assert flag in text
    assert "peak learning rate" in text and "fast" in text and "one of: cosine, linear" in text
