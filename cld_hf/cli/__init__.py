"""The ``cld-hf`` command line: ``cld-hf <subcommand> [options]``.

Each subcommand is a module with two functions: ``register(subparsers)`` adds its parser and
sets ``func=run``; ``run(args) -> int`` does the work (heavy imports inside). Subcommands are
registered lazily: ``cld-hf --help`` lists them from :data:`SUBCOMMANDS` without importing any,
and ``cld-hf <cmd> ...`` imports only ``<cmd>``'s module. The library's own subcommands live in
``cld_hf/cli/``; ``run`` and ``plot`` belong to the application (``cld_hf/app/``), which the
library never imports. ``main(argv)`` returns the exit code, so the CLI is testable without a
subprocess.

Exit codes: 0 success, 1 the work failed (the message says why), 2 bad arguments.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from .. import __version__

# Subcommand -> (module, one-line help), in the order --help lists them. A visible dict.
SUBCOMMANDS = {
    "run": ("cld_hf.app.cli_run", "the whole job: proxy + CLD scores + coresets + accuracy table"),
    "score": ("cld_hf.cli.score", "score a recorded loss-trajectory store by CLD"),
    "select": ("cld_hf.cli.select", "select a class-balanced coreset from a scored dataset"),
    "inspect": ("cld_hf.cli.inspect", "summarise or verify a store, a scored dataset or a coreset"),
    "plot": ("cld_hf.app.cli_plot", "plot score distributions, trajectories, accuracy"),
    "push": ("cld_hf.cli.push", "push a coreset, its scores and the proxy model to the Hub"),
}

EPILOG = """\
examples:
  cld-hf run                                  # the whole job on scikit-learn's digits
  cld-hf score STORE_DIR --dataset TRAIN_DIR -o scored/
  cld-hf select scored/ --fraction 0.1 -o coreset/
  cld-hf inspect scored/
  cld-hf <subcommand> --help                  # options and examples of one subcommand
"""


def make_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; with ``command``, only that subcommand's module is imported and registered
    (the others are listed by name and help).

    Examples
    --------
    >>> make_parser().prog
    'cld-hf'
    """
    parser = argparse.ArgumentParser(
        prog="cld-hf",
        description="CLD coresets (Correlation of Loss Differences) for the Hugging Face stack.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"cld-hf {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level")
    subparsers = parser.add_subparsers(dest="command", metavar="<subcommand>")
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        if name == command:
            importlib.import_module(module_name).register(subparsers)
        else:
            subparsers.add_parser(name, help=help_text, add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit code.

    Examples
    --------
    >>> main([])  # no subcommand: prints the help, exits 0  # doctest: +ELLIPSIS
    usage: cld-hf ...
    0
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    parser = make_parser(command if command in SUBCOMMANDS else None)
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
    except (ValueError, OSError, TypeError, KeyError) as err:
        # StoreIntegrityError is a ValueError; PermissionError, NotADirectoryError are OSErrors
        message = str(err).strip() or type(err).__name__
        print(f"cld-hf {args.command}: error: {message}", file=sys.stderr)
        return 1


