"""``surgelab``: one console script in front of the stages.

``surgelab <stage> <args...>`` runs ``python -m <stage> <args...>``; ``surgelab run`` is the
main job (theory + simulation + real-data validation in one report) and ``surgelab advise``
turns measurements into a learning-rate recommendation. Imports are lazy so that
``surgelab theory check`` never pays for torch.
"""

from __future__ import annotations

import importlib
import sys

__version__ = "0.1.0"

# command -> (module whose ``main(argv)`` handles it, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "theory": ("theory.__main__", "derive and check the closed forms (check, tex)"),
    "kernels": ("kernels.__main__", "Monte Carlo moment kernels (bench, info)"),
    "simulate": ("simulate.__main__", "quadratic-model simulations (surge, train, ...)"),
    "validate": ("validate.__main__", "real-network experiments (run, estimate, ...)"),
    "run": ("validate.pipeline", "the main job: theory + simulation + real data, one report"),
    "advise": ("validate.advise", "predict the best learning rate at a new batch size"),
}


def _usage() -> str:
    lines = [f"usage: surgelab <command> [args...]   (surgelab {__version__})", "", "commands:"]
    lines += [f"  {name:<9} {help_}" for name, (_, help_) in COMMANDS.items()]
    lines += ["", "Each command takes --help. Stages also run as `python -m <stage>`."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in {"-h", "--help", "help"}:
        print(_usage())
        return 0
    if argv[0] in {"-V", "--version"}:
        print(__version__)
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(
            f"surgelab: unknown command {name!r}; choose one of {', '.join(COMMANDS)}.",
            file=sys.stderr,
        )
        print(_usage(), file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[name][0])
    result = module.main(rest)
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
