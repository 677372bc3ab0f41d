# /// script
# requires-python = ">=3.10"
# dependencies = ["cld-hf"]
# ///
"""Render the two Hub cards of a short default ``cld-hf run`` into a folder the README includes.

Runs ``cld-hf run`` (scikit-learn's digits, a short schedule) in a scratch directory, then copies
``<run>/hub/dataset/README.md`` and ``<run>/hub/model/README.md`` (the cards exactly as a push
would send them) to ``--output``:

    scripts/figures/cards/coreset_dataset_card.md
    scripts/figures/cards/proxy_model_card.md

    python scripts/render_cards.py                       # -> scripts/figures/cards/
    python scripts/render_cards.py --output scripts/figures/cards --body-only   # without the YAML header
    python scripts/render_cards.py --dataset mnist1d --seeds 2      # other `cld-hf run` options

The run's output folder is ``cld_run`` inside the scratch directory, so the command the cards
record reads ``cld-hf run --output-dir cld_run ...``, without a machine-specific path.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

SHORT_RUN = ["--seeds", "1", "--no-plots"]
"""The default run with one seed and no plots: under a minute on two CPU cores."""

CARDS = {"dataset": "coreset_dataset_card.md", "model": "proxy_model_card.md"}


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="render_cards.py", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", default="scripts/figures/cards",
                        help="folder of the two cards (default: scripts/figures/cards)")
    parser.add_argument("--run-dir", default=None,
                        help="keep the run here instead of a scratch directory removed after")
    parser.add_argument("--body-only", action="store_true",
                        help="drop the YAML front matter (for including the cards in a page)")
    parser.epilog = (f"Any other option goes to `cld-hf run`, after the short schedule "
                     f"{' '.join(SHORT_RUN)} (so it overrides it).")
    return parser


def strip_front_matter(text: str) -> str:
    """The card without its ``---`` YAML header.

    >>> strip_front_matter("---\\ntags: [a]\\n---\\n# Title\\n")
    '# Title\\n'
    """
    if text.startswith("---\n"):
        end = text.find("\n---\n", 4)
        if end != -1:
            return text[end + 5:].lstrip("\n")
    return text


def main(argv: list[str] | None = None) -> int:
    args, extra = make_parser().parse_known_args(argv)
    from cld_hf.cli import main as cld_hf

    output = Path(args.output).resolve()
    scratch = Path(args.run_dir).resolve() if args.run_dir else Path(tempfile.mkdtemp())
    scratch.mkdir(parents=True, exist_ok=True)
    cwd = Path.cwd()
    try:
        os.chdir(scratch)
        code = cld_hf(["run", "--output-dir", "cld_run", "--overwrite-output-dir",
                       *SHORT_RUN, *[a for a in extra if a != "--"]])
        if code != 0:
            print(f"render_cards.py: error: cld-hf run exited {code}", file=sys.stderr)
            return code
        output.mkdir(parents=True, exist_ok=True)
        for repo, name in CARDS.items():
            text = (scratch / "cld_run" / "hub" / repo / "README.md").read_text()
            (output / name).write_text(strip_front_matter(text) if args.body_only else text)
            print(output / name)
    finally:
        os.chdir(cwd)
        if not args.run_dir:
            shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
