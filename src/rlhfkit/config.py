"""Config dataclasses -> command-line flags, YAML files and presets.

Every stage declares one dataclass whose fields carry their help text once (cleanrl style):

    @dataclass
    class OptimConfig:
        lr: float = opt(3e-4, "peak learning rate")

Nested groups go one level deep (`optim`, `data`, `rollout`). A run is configured, in increasing
priority, by: dataclass defaults < `--preset NAME` < `--config FILE.yaml` < `--group.field=value`.
Unknown keys and wrong types are errors that name the key and what is allowed.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import types
import typing
from dataclasses import MISSING, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any

import yaml


class ConfigError(ValueError):
    """A bad key or value in a config file or on the command line."""


def opt(default: Any, help: str, choices: tuple | None = None) -> Any:
    """A documented config field. Mutable defaults (lists, dicts) are deep-copied per instance."""
    meta = {"help": help, "choices": choices}
    if isinstance(default, (list, dict)):
        # Deep: dotted overrides (`--stages.pretrain.optim.lr`) mutate nested dicts in place.
        return field(default_factory=lambda d=default: copy.deepcopy(d), metadata=meta)
    return field(default=default, metadata=meta)


def group(cls: type, help: str = "") -> Any:
    """A nested config group (one level deep)."""
    return field(default_factory=cls, metadata={"help": help or (cls.__doc__ or "").strip()})


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Convert `value` (from YAML or a CLI string) to type `tp`, or raise ConfigError naming `key`."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null", "")):
            return None
        return _coerce(value, args[0], key)
    if origin in (list, tuple):
        (inner, *_) = typing.get_args(tp) or (str,)
        if isinstance(value, str):
            value = [v for v in value.split(",") if v != ""]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {_short(value)}")
        return [_coerce(v, inner, key) for v in value]
    if origin is dict or tp is dict:
        if isinstance(value, str):
            try:
                value = yaml.safe_load(value)
            except (yaml.YAMLError, ValueError, RecursionError):  # ValueError: a 5000-digit int
                raise ConfigError(f"{key}: expected a YAML mapping, got {_short(value)}") from None
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {_short(value)}")
        return dict(value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "1", "yes", "on"):
            return True
        if isinstance(value, str) and value.lower() in ("false", "0", "no", "off"):
            return False
        raise ConfigError(f"{key}: expected true or false, got {_short(value)}")
    if tp is int:
        if isinstance(value, bool):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        if isinstance(value, int):
            return value
        try:
            return int(str(value).replace("_", ""))
        except ValueError:
            raise ConfigError(f"{key}: expected an integer, got {_short(value)}") from None
    if tp is float:
        if isinstance(value, bool):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        try:
            number = float(value)
        except (TypeError, ValueError, OverflowError):  # OverflowError: a YAML int beyond float range
            raise ConfigError(f"{key}: expected a number, got {_short(value)}") from None
        if not math.isfinite(number):  # a NaN/inf rate or coefficient only fails much later, as NaN weights
            raise ConfigError(f"{key}: expected a finite number, got {_short(value)}")
        return number
    if tp is str:
        if isinstance(value, (dict, list)):
            raise ConfigError(f"{key}: expected a string, got {_short(value)}")
        return str(value)
    return value


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _check_choice(f: dataclasses.Field, value: Any, key: str) -> None:
    choices = f.metadata.get("choices")
    if choices and value not in choices:
        raise ConfigError(f"{key}: {_short(value)} is not one of {', '.join(map(str, choices))}")


def apply(cfg: Any, overrides: dict[str, Any], where: str = "") -> Any:
    """Apply a nested {field: value} mapping (or dotted keys) to dataclass `cfg`, type-checked."""
    hints = _hints(type(cfg))
    by_name = {f.name: f for f in fields(cfg)}
    for raw_key, value in overrides.items():
        key, _, rest = str(raw_key).partition(".")
        name = key.replace("-", "_")
        full = f"{where}{raw_key}"
        if name not in by_name:
            allowed = ", ".join(sorted(by_name))
            raise ConfigError(f"unknown key '{full}'; allowed keys here: {allowed}")
        current = getattr(cfg, name)
        if is_dataclass(current):
            sub = {rest: value} if rest else value
            if not isinstance(sub, dict):
                raise ConfigError(f"{full}: is a group; expected a mapping or --{full}.FIELD=VALUE")
            apply(current, sub, where=f"{where}{key}.")
            continue
        if rest and isinstance(current, dict):  # free-form mapping (e.g. per-stage overrides)
            _set_path(current, rest, value)
            continue
        if rest:
            raise ConfigError(f"unknown key '{full}': '{key}' is not a group")
        new = _coerce(value, hints[name], full)
        _check_choice(by_name[name], new, full)
        setattr(cfg, name, new)
    return cfg


def _set_path(mapping: dict, dotted: str, value: Any) -> None:
    *parents, last = dotted.split(".")
    for part in parents:
        mapping = mapping.setdefault(part, {})
        if not isinstance(mapping, dict):
            raise ConfigError(f"{dotted}: '{part}' already holds a value, not a mapping")
    mapping[last] = value


def to_dict(cfg: Any) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def save(cfg: Any, path: str | Path) -> None:
    """Write the resolved config as YAML (the file `--config` reads back)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))


def load_yaml(path: str | Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except OSError as e:  # a folder, no permission, ...
        raise ConfigError(f"{path}: cannot read config file ({e.strerror or e})") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text (byte {e.start}); expected a YAML file") from None
    except (yaml.YAMLError, ValueError, RecursionError) as e:  # ValueError: an int of > 4300 digits
        raise ConfigError(f"{path}: not valid YAML ({_short(str(e), 200)})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of config keys at the top level")
    return data


def split_flags(argv: list[str]) -> tuple[dict[str, str], list[str]]:
    """Parse `--key=value`, `--key value` and bare `--flag` (true) into a dict; also positionals."""
    flags: dict[str, str] = {}
    positionals: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg.startswith("--"):
            key, eq, value = arg[2:].partition("=")
            if not eq:
                if i + 1 < len(argv) and not argv[i + 1].startswith("--"):
                    value, i = argv[i + 1], i + 1
                else:
                    value = "true"
            flags[key] = value
        else:
            positionals.append(arg)
        i += 1
    return flags, positionals


def parse(cls: type, argv: list[str], presets: dict[str, dict] | None = None) -> Any:
    """Build a `cls` config from argv: --preset, --config FILE.yaml, then --group.field overrides."""
    flags, positionals = split_flags(argv)
    if positionals:
        raise ConfigError(f"unexpected argument '{positionals[0]}'; flags look like --group.field=value")
    cfg = cls()
    presets = presets or {}
    preset = flags.pop("preset", None)
    if preset is not None:
        if preset not in presets:
            raise ConfigError(f"--preset: unknown preset '{preset}'; choose one of {', '.join(presets)}")
        apply(cfg, presets[preset])
        if "preset" in {f.name for f in fields(cfg)}:
            cfg.preset = preset
    config_file = flags.pop("config", None)
    if config_file:
        apply(cfg, load_yaml(config_file))
    apply(cfg, flags)
    return cfg


def help_text(cls: type, presets: dict[str, dict] | None = None) -> str:
    """One line per flag: name, type, default and its help, generated from the dataclass."""
    lines = ["  --config FILE.yaml      read settings from a YAML file (a run's config.yaml works)"]
    if presets:
        lines.append(f"  --preset NAME           start from a preset: {', '.join(presets)}")
    lines += _field_lines(cls(), "")
    return "\n".join(lines)


def _field_lines(cfg: Any, prefix: str) -> list[str]:
    out: list[str] = []
    hints = _hints(type(cfg))
    for f in fields(cfg):
        value = getattr(cfg, f.name)
        if is_dataclass(value):
            out.append(f"\n  {f.name}: {f.metadata.get('help', '')}")
            out += _field_lines(value, f"{prefix}{f.name}.")
            continue
        tp = getattr(hints[f.name], "__name__", str(hints[f.name])).replace("typing.", "")
        flag = f"--{prefix}{f.name} {tp.upper() if tp != 'bool' else '[BOOL]'}"
        choices = f.metadata.get("choices")
        extra = f" (one of: {', '.join(map(str, choices))})" if choices else ""
        out.append(f"  {flag:<32} {f.metadata.get('help', '')}{extra} [default: {value!r}]")
    return out


__all__ = ["ConfigError", "opt", "group", "apply", "parse", "save", "load_yaml", "to_dict",
           "help_text", "split_flags", "dataclass"]
