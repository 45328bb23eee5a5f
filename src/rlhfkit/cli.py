"""`rlhfkit <command>`: one subcommand per stage and tool.

Stage modules (the registry in stages/__init__.py) expose `Config` (a documented dataclass), `PRESETS`
({name: overrides}) and `run(cfg) -> Path`; tool modules expose `main(argv) -> int`. Commands are imported lazily so
`rlhfkit --help` is instant and a missing stage says so instead of pretending.
"""

from __future__ import annotations

import importlib
import os
import sys

from .stages import STAGES

# command -> (module, one-line help): the recipe in one command, every registered stage, then the tools
COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("rlhfkit.stages.run", "the whole recipe: world -> pretrain -> SFT -> rankings -> RM -> RL -> eval -> report"),
    "world": ("rlhfkit.world.cli", "export the built-in task world's data; judge a response"),
    **STAGES,
    "eval": ("rlhfkit.evaluate.cli", "gold-judge evaluation of a model (and win rate vs another)"),
    "chat": ("rlhfkit.stages.chat", "interactive terminal chat; --compare models side by side"),
    "label": ("rlhfkit.feedback.cli", "the ranking web app and annotator quality control"),
    "report": ("rlhfkit.evaluate.report", "write a run's self-contained report.html"),
    "experiment": ("rlhfkit.stages.experiment", "experiments: sft-ablation, bad-labelers, overoptimization"),
}

# Tools that start without importing torch or transformers: the labeling server faces annotators and may run
# on a small machine without them (tests/test_cli.py checks).
LIGHT = {"label"}


def usage() -> str:
    lines = ["usage: rlhfkit <command> [--help] [flags]", "", "commands:"]
    lines += [f"  {name:<12} {help}" for name, (_, help) in COMMANDS.items()]
    lines += ["", "Stage flags: --config FILE.yaml, --preset ci|tiny|small, --out DIR, --group.field=value.",
              "`rlhfkit <command> --help` lists every flag with its default."]
    return "\n".join(lines)


def _import(command: str):
    module_name, _ = COMMANDS[command]
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name and module_name.startswith(e.name):
            return None
        raise


def run_stage(module, argv: list[str], prog: str) -> int:
    from . import config
    from .common import end_distributed, is_main_process

    presets = getattr(module, "PRESETS", {})
    if "-h" in argv or "--help" in argv:
        doc = (module.__doc__ or "").strip()
        print(f"usage: rlhfkit {prog} [flags]\n\n{doc}\n\nflags:\n{config.help_text(module.Config, presets)}")
        return 0
    cfg = config.parse(module.Config, argv, presets)
    out = module.run(cfg)
    end_distributed()  # on success only: after a failure on one rank a barrier would hang the others
    if out is not None and is_main_process():
        print(f"{prog}: done -> {out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0
    if argv[0] == "--version":
        from . import __version__

        print(__version__)
        return 0
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"rlhfkit: unknown command '{command}'\n\n{usage()}", file=sys.stderr)
        return 2
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if command not in LIGHT:
        _quiet_libraries()
    module = _import(command)
    if module is None or not (hasattr(module, "main") or hasattr(module, "run")):
        print(f"rlhfkit {command}: not built yet", file=sys.stderr)
        return 2
    from .config import ConfigError
    from .errors import StageError

    try:
        if hasattr(module, "main"):
            return int(module.main(rest) or 0)
        return run_stage(module, rest, command)
    except (ConfigError, StageError, ValueError, FileNotFoundError) as e:
        if os.environ.get("RLHFKIT_DEBUG"):
            raise
        print(f"rlhfkit {command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"\nrlhfkit {command}: interrupted (the last checkpoint is kept; rerun with --resume)",
              file=sys.stderr)
        return 130


def _quiet_libraries() -> None:
    try:
        import transformers

        transformers.utils.logging.disable_progress_bar()
        transformers.utils.logging.set_verbosity_error()
    except Exception:  # transformers absent or too old: nothing to quiet
        pass


if __name__ == "__main__":
    sys.exit(main())
