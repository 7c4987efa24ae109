"""``python -m validate <command>``: real-network experiments.

Commands are looked up in :data:`SUBCOMMANDS` and imported only when used (so ``validate
presets`` never pays for torch or Ray). Each entry names a handler — a module, or
``"module:attribute"`` — that exposes ``add_arguments(parser)`` and ``run(args) -> int``.
Adding a command is one line here plus that module. A handler whose module is not installed
(yet) is left out of the listing and reported as unavailable.

User errors (an unknown preset or workload, missing data, a resumed store with another
configuration) print one line to stderr and exit with status 2, without a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
from typing import Any

#: command -> (handler: "module" or "module:attribute", one-line help)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "run": ("validate.sweep_cli", "sweep a preset grid with the paper's protocol and fit the laws"),
    "estimate": (
        "validate.estimate_cli",
        "estimate B_noise / the theory's quantities directly at checkpoints",
    ),
    "bench": ("validate.sweep_cli:BENCH", "time the batched engine against single-model training"),
    "presets": ("validate.sweep_cli:PRESETS", "list the sweep presets"),
}


def _available(spec: str) -> bool:
    module = spec.split(":")[0]
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


def _handler(spec: str) -> Any:
    module, _, attr = spec.partition(":")
    mod = importlib.import_module(module)
    return getattr(mod, attr) if attr else mod


def _usage() -> str:
    lines = ["usage: python -m validate <command> [args...]", "", "commands:"]
    for name, (spec, help_) in SUBCOMMANDS.items():
        if _available(spec):
            lines.append(f"  {name:<9} {help_}")
    lines += ["", "Each command takes --help."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Dispatch ``argv`` (default ``sys.argv[1:]``) to a subcommand; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv:  # no command: a usage error, like the other stages
        print(_usage(), file=sys.stderr)
        print("validate: error: give a command", file=sys.stderr)
        return 2
    if argv[0] in {"-h", "--help", "help"}:
        print(_usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in SUBCOMMANDS or not _available(SUBCOMMANDS[name][0]):
        known = [n for n, (s, _) in SUBCOMMANDS.items() if _available(s)]
        why = "is not available in this install" if name in SUBCOMMANDS else "is unknown"
        print(
            f"validate: command {name!r} {why}; choose one of {', '.join(known)}", file=sys.stderr
        )
        return 2
    spec, help_ = SUBCOMMANDS[name]
    handler = _handler(spec)
    parser = argparse.ArgumentParser(prog=f"python -m validate {name}", description=help_)
    handler.add_arguments(parser)
    try:
        args = parser.parse_args(rest)
    except SystemExit as e:  # argparse: --help (0) or a usage error (2)
        return int(e.code or 0)
    try:
        return int(handler.run(args) or 0)
    except (ValueError, FileNotFoundError) as e:
        # ValueError: bad preset / workload / option, ConfigMismatchError, checksum mismatch;
        # FileNotFoundError: a dataset that is not where it was looked for.
        print(f"validate {name}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
