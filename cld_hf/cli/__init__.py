"""The ``cld-hf`` command line: ``cld-hf <subcommand> [options]``.

Each subcommand is a module with two functions: ``register(subparsers)`` adds its parser and
sets ``func=run``; ``run(args) -> int`` does the work (heavy imports inside). Subcommands are
registered lazily: ``cld-hf --help`` lists them from :data:`SUBCOMMANDS` without importing any,
and ``cld-hf <cmd> ...`` imports only ``<cmd>``'s module. The library's own subcommands live in
``cld_hf/cli/``; ``run`` and ``plot`` belong to the application (``cld_hf/app/``), which the
library never imports. ``main(argv)`` returns the exit code, so the CLI is testable without a
subprocess.

Exit codes: 0 success; 1 the work failed; 2 a bad argument (argparse's own checks, and every
value a subcommand rejects before working: :class:`~cld_hf.cli.common.UsageError`). Either way
the message is one line, ``cld-hf <subcommand>: error: ...``, naming the option, the value and
the fix.

Logging: warnings only for ``cld-hf run`` (its progress display says where the job is), info
logs of cld-hf for the other subcommands; ``cld-hf -v <subcommand>`` logs cld-hf at DEBUG level.
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
    "attribute": ("cld_hf.cli.attribute",
                  "top-k CLD_inf1 influencers of query samples, from a store"),
    "study": ("cld_hf.app.cli_study",
              "the paper's studies: lds, seed-stability, fraction-sweep, brittleness"),
}

EPILOG = """\
examples:
  cld-hf run                                  # the whole job on scikit-learn's digits
  cld-hf score STORE_DIR --dataset TRAIN_DIR -o scored/
  cld-hf select scored/ --fraction 0.1 -o coreset/
  cld-hf inspect scored/
  cld-hf attribute STORE_DIR -k 10 -o influencers.arrow
  cld-hf study lds                            # one of the paper's appendix studies
  cld-hf <subcommand> --help                  # options and examples of one subcommand
  cld-hf -v <subcommand> ...                  # with cld-hf's debug logs

exit codes: 0 done; 1 the work failed (one line says why); 2 a bad argument (one line names it).
"""


class CLIArgumentParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one line, ``<prog>: error: <message> (see <prog>
    --help)``, exit code 2.

    Examples
    --------
    >>> import contextlib, io
    >>> parser = CLIArgumentParser(prog="cld-hf demo")
    >>> _ = parser.add_argument("--n", type=int)
    >>> err = io.StringIO()
    >>> with contextlib.redirect_stderr(err):
    ...     try:
    ...         parser.parse_args(["--n", "x"])
    ...     except SystemExit as exc:
    ...         print(exc.code)
    2
    >>> print(err.getvalue().strip())
    cld-hf demo: error: argument --n: invalid int value: 'x' (see cld-hf demo --help)
    """

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def make_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; with ``command``, only that subcommand's module is imported and registered
    (the others are listed by name and help).

    Examples
    --------
    >>> make_parser().prog
    'cld-hf'
    """
    parser = CLIArgumentParser(
        prog="cld-hf",
        description="CLD coresets (Correlation of Loss Differences) for the Hugging Face stack.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"cld-hf {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="log cld-hf at DEBUG level (cld-hf run: its info logs too)")
    subparsers = parser.add_subparsers(dest="command", metavar="<subcommand>",
                                       parser_class=CLIArgumentParser)
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        if name == command:
            importlib.import_module(module_name).register(subparsers)
        else:
            subparsers.add_parser(name, help=help_text, add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit code (bad arguments raise ``SystemExit(2)``, as argparse
    does, with one line on stderr).

    Examples
    --------
    >>> main([])  # no subcommand: prints the help, exits 0  # doctest: +ELLIPSIS
    usage: cld-hf ...
    0
    """
    from .common import CommandError, UsageError

    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    parser = make_parser(command if command in SUBCOMMANDS else None)
    args, extra = parser.parse_known_args(argv)
    sub = _subparser(parser, args.command)
    if extra:
        (sub or parser).error(f"unrecognized arguments: {' '.join(extra)}")
    if args.command is None:
        parser.print_help()
        return 0
    args._cli_argv = argv
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    package = logging.getLogger("cld_hf")
    saved = package.level
    quiet = args.command == "run"
    package.setLevel(logging.DEBUG if args.verbose else logging.WARNING if quiet else logging.INFO)
    try:
        return int(args.func(args) or 0)
    except UsageError as err:
        sub.error(str(err).strip())
    except (CommandError, ValueError, OSError, TypeError, KeyError) as err:
        # StoreIntegrityError is a ValueError; PermissionError, NotADirectoryError are OSErrors
        message = (str(err).strip() or type(err).__name__).splitlines()[0]
        print(f"cld-hf {args.command}: error: {message}", file=sys.stderr)
        return 1
    finally:
        package.setLevel(saved)


def _subparser(parser, command):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices.get(command)
    return None
