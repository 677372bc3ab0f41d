"""The ``cld-hf`` command line: ``cld-hf <subcommand> [options]``.

Each subcommand lives in ``cld_hf/commands/<name>.py`` with two functions:
``register(subparsers)`` adds its parser (light imports only, so ``--help`` is fast) and sets
``func=run``; ``run(args) -> int`` does the work (heavy imports inside). ``main(argv)`` returns
the exit code, which makes the CLI testable without a subprocess.

Exit codes: 0 success, 1 the work failed (the message says why), 2 bad arguments.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from . import __version__

# Subcommands, in the order --help lists them. A visible dict, not a lookup by name.
SUBCOMMANDS = ("run", "score", "select", "inspect", "plot", "push")

EPILOG = """\
examples:
  cld-hf run                                  # the whole job on scikit-learn's digits
  cld-hf score STORE_DIR --dataset TRAIN_DIR -o scored/
  cld-hf select scored/ --fraction 0.1 -o coreset/
  cld-hf inspect scored/
  cld-hf <subcommand> --help                  # options and examples of one subcommand
"""


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cld-hf",
        description="CLD coresets (Correlation of Loss Differences) for the Hugging Face stack.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"cld-hf {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level")
    subparsers = parser.add_subparsers(dest="command", metavar="<subcommand>")
    for name in SUBCOMMANDS:
        try:
            module = importlib.import_module(f".commands.{name}", __package__)
        except ModuleNotFoundError as err:
            if err.name != f"{__package__}.commands.{name}":
                raise
            continue  # not built yet
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit code.

    Examples
    --------
    >>> main([])  # no subcommand: prints the help, exits 0  # doctest: +ELLIPSIS
    usage: cld-hf ...
    0
    """
    parser = make_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if args.command is None:
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError, FileExistsError, TypeError) as err:
        print(f"cld-hf {args.command}: error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
