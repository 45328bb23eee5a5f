"""Property tests of the config parser (`rlhfkit.config.parse`): for any argv and any config file, the result
is a config whose every field has its declared type (and round-trips through config.yaml), or a ConfigError
that names the offending key, file or argument. Never another exception: the CLI prints ConfigError as a
one-line error, and anything else as a traceback.

    .venv/bin/python -m pytest tests/reliability/test_config_fuzz.py -q      (~20 s)
"""

from __future__ import annotations

import math
import tempfile
import types
import typing
from dataclasses import dataclass, fields, is_dataclass
from pathlib import Path
from typing import Optional

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rlhfkit.config import ConfigError, group, opt, parse, save
from rlhfkit.stages import dpo, pretrain, run


@dataclass
class Inner:
    """A group with every scalar type."""

    lr: float = opt(1e-3, "a float")
    steps: int = opt(10, "an int")
    mode: str = opt("a", "a choice", choices=("a", "b"))
    flag: bool = opt(False, "a bool")


@dataclass
class Every:
    """Every kind of field the stage configs use."""

    out: str = opt("x", "a string")
    seed: int = opt(0, "an int")
    maybe: Optional[int] = opt(None, "an optional int")
    ns: list[int] = opt([1, 2], "a list of ints")
    extra: dict = opt({}, "a free-form mapping")
    inner: Inner = group(Inner)


PRESETS = {"p": {"seed": 3, "inner": {"mode": "b"}}}
CLASSES = [(Every, PRESETS), (pretrain.Config, pretrain.PRESETS), (dpo.Config, dpo.PRESETS),
           (run.Config, getattr(run, "PRESETS", {}))]


def dotted_keys(cls) -> list[str]:
    """Every flag name of a config class (`seed`, `optim.lr`, ...)."""
    out = []
    for f in fields(cls):
        default = getattr(cls(), f.name)
        out += [f.name] + ([f"{f.name}.{k}" for k in dotted_keys(type(default))] if is_dataclass(default) else [])
    return out


# Real keys of every class (so values meet their types), near-misses, and junk.
KEYS = sorted({k for cls, _ in CLASSES for k in dotted_keys(cls)} | {
    "inner.nope", "seed.x", "extra.a.b", "pretrain.optim.lr", "Seed", "in-ner.lr", "optim-lr", "", "."})
VALUES = ["", "0", "-1", "1_000", "1.5", "2.0", "1e400", "-1e400", "nan", "inf", "-inf", "true", "no", "None",
          "null", "a", "b", "ci", "[1, 2]", "1,2", ",", "{a: 1}", "a: [", "{", "- x", "1" * 5000, "0x10", "\x00",
          "é"]

values = st.one_of(st.sampled_from(VALUES), st.sampled_from(VALUES), st.text(max_size=20))
keys = st.one_of(st.sampled_from(KEYS), st.sampled_from(KEYS), st.text(max_size=12))
flag = st.one_of(
    st.builds(lambda k, v: [f"--{k}={v}"], keys, values),
    st.builds(lambda k, v: [f"--{k}", v], keys, values),
    st.builds(lambda k: [f"--{k}"], keys),
    st.builds(lambda v: ["--preset", v], st.one_of(st.sampled_from(["p", "ci", "tiny", "nope", ""]), st.text())),
    st.builds(lambda v: [v], values),  # a stray positional
)
argvs = st.lists(flag, max_size=5).map(lambda parts: [a for p in parts for a in p])

scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.integers(min_value=10**300, max_value=10**400),
                    st.floats(), st.text(max_size=10), st.sampled_from(VALUES))
yaml_values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                            st.dictionaries(keys, inner, max_size=3)), max_leaves=8)
yaml_docs = st.one_of(
    st.dictionaries(keys, yaml_values, max_size=5).map(lambda d: yaml.safe_dump(d).encode()),
    st.builds(lambda k, v: f"{k}: {v}\n".encode(), keys, values),  # hand-written, possibly invalid, YAML
    st.binary(max_size=40),                                     # not even text
    st.just(b"\xff\xfe: 1\n"), st.just(b"- 1\n- 2\n"), st.just(b"a: [\n"), st.just(b""),
)


def _flatten(obj, prefix: str = "") -> list[str]:
    if not isinstance(obj, dict):
        return []
    out = []
    for k, v in obj.items():
        out += [f"{prefix}{k}", str(k)] + _flatten(v, f"{prefix}{k}.")
    return out


def _typed(value, tp) -> bool:
    """Whether a parsed value has the field's declared type."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return value is None or any(_typed(value, a) for a in typing.get_args(tp) if a is not type(None))
    if origin in (list, tuple):
        (inner, *_) = typing.get_args(tp) or (str,)
        return isinstance(value, list) and all(_typed(v, inner) for v in value)
    if tp is dict or origin is dict:
        return isinstance(value, dict)
    if tp is float:
        return isinstance(value, float) and math.isfinite(value)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, tp)


def check_config(cfg) -> None:
    hints = typing.get_type_hints(type(cfg))
    for f in fields(cfg):
        value = getattr(cfg, f.name)
        if is_dataclass(value):
            check_config(value)
            continue
        assert _typed(value, hints[f.name]), f"{f.name} = {value!r} is not a {hints[f.name]}"
        choices = f.metadata.get("choices")
        assert not choices or value in choices, f"{f.name} = {value!r} not in {choices}"


def roundtrip(cls, cfg, tmp: Path) -> None:
    """A parsed config written as config.yaml parses back to itself (`--config RUN/config.yaml` works)."""
    save(cfg, tmp / "config.yaml")
    assert parse(cls, ["--config", str(tmp / "config.yaml")]) == cfg


def _parse_or_named_error(cls, presets, argv: list[str], tmp: Path, mentions: list[str]) -> None:
    try:
        cfg = parse(cls, argv, presets)
    except ConfigError as e:
        msg = str(e)
        mentions = [m for m in mentions if m] + [f"'{m}'" for m in mentions]  # '' quoted is still named
        assert any(m in msg for m in mentions), f"error {msg!r} names none of {mentions}"
        return
    assert isinstance(cfg, cls)
    check_config(cfg)
    roundtrip(cls, cfg, tmp)


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cfgfuzz")


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(which=st.integers(0, len(CLASSES) - 1), argv=argvs)
def test_flags_give_a_typed_config_or_a_config_error_naming_the_key(which, argv, scratch):
    cls, presets = CLASSES[which]
    mentions = [a[2:].partition("=")[0] for a in argv if a.startswith("--")] + argv + ["preset"]
    with tempfile.TemporaryDirectory(dir=scratch) as tmp:
        _parse_or_named_error(cls, presets, argv, Path(tmp), mentions)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(which=st.integers(0, len(CLASSES) - 1), doc=yaml_docs, argv=argvs)
def test_config_files_give_a_typed_config_or_a_config_error_naming_the_key(which, doc, argv, scratch):
    cls, presets = CLASSES[which]
    with tempfile.TemporaryDirectory(dir=scratch) as tmp:
        path = Path(tmp) / "in.yaml"
        path.write_bytes(doc)
        try:
            loaded = yaml.safe_load(doc)
        except Exception:  # noqa: BLE001 - any unreadable file: the message must name the file
            loaded = None
        mentions = ([str(path)] + _flatten(loaded) + [a[2:].partition("=")[0] for a in argv if a.startswith("--")]
                    + argv + ["preset"])
        _parse_or_named_error(cls, presets, ["--config", str(path), *argv], Path(tmp), mentions)


@pytest.mark.parametrize("argv, named", [
    (["--config", "{dir}"], "{dir}"),                          # a folder, not a file
    (["--config", "{dir}/latin1.yaml"], "latin1.yaml"),        # not UTF-8
    (["--config", "{dir}/huge.yaml"], "inner.lr"),             # an int too large for a float
    (["--config", "{dir}/digits.yaml"], "digits.yaml"),        # an int too long for Python to read
    (["--extra", "a: ["], "extra"),                            # a mapping flag that is not YAML
    (["--inner.lr=nan"], "inner.lr"),                          # not a usable learning rate
    (["--inner.lr=-inf"], "inner.lr"),
])
def test_found_by_fuzzing(tmp_path, argv, named):
    """Inputs that once escaped as IsADirectoryError, UnicodeDecodeError, OverflowError, a yaml ParserError,
    ValueError (int max str digits), or were silently accepted (a NaN learning rate trains to NaN and fails
    much later)."""
    (tmp_path / "latin1.yaml").write_bytes("out: caf\xe9\n".encode("latin-1"))
    (tmp_path / "huge.yaml").write_text("inner:\n  lr: 1" + "0" * 400 + "\n")
    (tmp_path / "digits.yaml").write_text("seed: " + "1" * 5000 + "\n")
    argv = [a.format(dir=tmp_path) for a in argv]
    with pytest.raises(ConfigError, match="expected|not|config") as e:
        parse(Every, argv)
    assert named.format(dir=tmp_path) in str(e.value)


def test_every_field_of_every_stage_config_survives_the_roundtrip(tmp_path):
    """Defaults and every preset of the real stage configs are typed and round-trip through config.yaml."""
    for cls, presets in CLASSES:
        for name in [None, *presets]:
            cfg = parse(cls, [] if name is None else ["--preset", name], presets)
            check_config(cfg)
            roundtrip(cls, cfg, tmp_path)
