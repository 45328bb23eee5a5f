"""`rlhfkit <command>`: the command list, every command's --help, and errors that are one line, not tracebacks.

Run: .venv/bin/python -m pytest tests/test_cli.py -q
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rlhfkit import cli

RLHFKIT = Path(sys.executable).parent / "rlhfkit"
ENV = {**os.environ, "TOKENIZERS_PARALLELISM": "false"}
ENV.pop("RLHFKIT_DEBUG", None)


def _run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([str(RLHFKIT), *args], capture_output=True, text=True, timeout=timeout, env=ENV)


def _flags(cls, prefix: str = "") -> list[str]:
    """Every `--group.field` flag a Config dataclass accepts."""
    out = []
    for f in dataclasses.fields(cls):
        value = getattr(cls(), f.name)
        if dataclasses.is_dataclass(value):
            out += _flags(type(value), f"{prefix}{f.name}.")
        else:
            out.append(f"--{prefix}{f.name}")
    return out


def _module_or_skip(command: str):
    module_name = cli.COMMANDS[command][0]
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name and module_name.startswith(e.name):
            pytest.skip(f"{module_name} is not built yet")
        raise


def test_top_level_help_lists_every_command():
    assert RLHFKIT.exists(), "the rlhfkit console script is not installed in the venv"
    res = _run("--help")
    assert res.returncode == 0, res.stderr
    for name, (_, help_line) in cli.COMMANDS.items():
        assert f"  {name} " in res.stdout
        assert help_line in res.stdout


def test_unknown_command_exits_2():
    res = _run("pretrian")
    assert res.returncode == 2
    assert "unknown command 'pretrian'" in res.stderr and "Traceback" not in res.stderr
    assert "pretrain" in res.stderr  # the usage with the real command names follows


def test_bad_flag_is_one_line_not_a_traceback():
    res = _run("pretrain", "--optim.lrr=1", "--out", "/nonexistent/never-written")
    assert res.returncode == 2
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("rlhfkit pretrain: error:") and "optim.lrr" in lines[0] and "lr" in lines[0]
    assert not Path("/nonexistent/never-written").exists()


@pytest.mark.parametrize("argv,key", [
    (["--optim.max_steps=abc"], "optim.max_steps"),
    (["--resume=maybe"], "resume"),
    (["--arch.size=huge"], "arch.size"),
    (["--preset", "gigantic"], "preset"),
])
def test_bad_values_in_process(capsys, argv, key):
    assert cli.main(["pretrain", *argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and key in err and "Traceback" not in err


@pytest.mark.parametrize("command", list(cli.COMMANDS))
def test_every_command_help(command, capsys):
    module = _module_or_skip(command)
    try:
        rc = cli.main([command, "--help"])
    except SystemExit as e:  # argparse-based tools exit from --help
        rc = e.code or 0
    out = capsys.readouterr().out
    assert rc == 0
    assert out.strip(), f"{command} --help printed nothing"
    if hasattr(module, "main"):
        return
    assert hasattr(module, "Config") and hasattr(module, "run"), f"{command}: a stage needs Config and run"
    for flag in _flags(module.Config):
        assert f"{flag} " in out, f"{command} --help does not mention {flag}"
    for preset in getattr(module, "PRESETS", {}):
        assert preset in out


@pytest.mark.parametrize("command", list(cli.COMMANDS))
def test_stage_presets_parse(command):
    """Every preset of every stage is a valid override set for its Config (typos fail here, not mid-run)."""
    module = _module_or_skip(command)
    if not hasattr(module, "Config"):
        pytest.skip(f"{command} is a tool without presets")
    from rlhfkit.config import parse

    for name in getattr(module, "PRESETS", {}):
        parse(module.Config, ["--preset", name], module.PRESETS)


def test_missing_module_says_not_built_yet(monkeypatch, capsys):
    monkeypatch.setitem(cli.COMMANDS, "ghost", ("rlhfkit.stages.no_such_stage", "not here"))
    assert cli.main(["ghost", "--help"]) == 2
    assert "rlhfkit ghost: not built yet" in capsys.readouterr().err


def test_broken_import_inside_a_module_is_not_hidden(monkeypatch, tmp_path):
    """A stage that exists but imports something missing must raise, not claim 'not built yet'."""
    pkg = tmp_path / "fakepkg_cli_test"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "stage.py").write_text("import definitely_missing_dependency_xyz\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(cli.COMMANDS, "broken", ("fakepkg_cli_test.stage", "broken"))
    with pytest.raises(ModuleNotFoundError, match="definitely_missing_dependency_xyz"):
        cli.main(["broken"])


def test_version(capsys):
    from rlhfkit import __version__

    assert cli.main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == __version__


def test_label_starts_without_torch_or_transformers(tmp_path):
    """The labeling tool faces annotators and may run where torch is absent: `rlhfkit label` (help, init, adding
    an annotator) must not import torch or transformers."""
    code = (
        "import sys\nfrom rlhfkit.cli import main\n"
        f"db = {str(tmp_path / 'l.db')!r}\n"
        "assert main(['label', '--help']) == 0\n"
        "assert main(['label', 'init', '--db', db]) == 0\n"
        "assert main(['label', 'annotator', '--db', db, '--name', 'ada']) == 0\n"
        "heavy = sorted(m for m in ('torch', 'transformers') if m in sys.modules)\n"
        "print('HEAVY', heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "HEAVY []" in out.stdout, out.stdout[-500:]
