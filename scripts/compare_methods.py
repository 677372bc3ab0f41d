# /// script
# requires-python = ">=3.10"
# dependencies = ["cld-hf"]
# ///
"""Compare CLD with the paper's baselines on one proxy run (the seed's Table 2 at small scale).

One proxy run records, in the same eval sweeps as the CLD losses, the training dynamics and
features the chosen methods read; every method then selects a coreset per fraction with the same
class budgets; the target model is trained on each coreset for several seeds. The output folder
is that of ``cld-hf run`` (this script calls the same ``run_experiment``): ``results.md`` holds
the accuracy table (fraction rows, method columns, mean ± std) and the selection-cost table
(seconds measured, bytes of the signals each method reads, the Appendix E formulas),
``plots/accuracy_vs_fraction.png`` the plot, ``selections.arrow`` every coreset.

    python scripts/compare_methods.py --dataset digits --fractions 0.1 0.3 0.5 --seeds 3 \\
        --output_dir compare_digits
    python scripts/compare_methods.py --dataset mnist1d --methods cld random el2n herding \\
        --proxy_epochs 12 --target_epochs 20 --output_dir compare_mnist1d --threads 1

Every option of ``cld-hf run`` is accepted (``--help``); ``--methods`` defaults here to the
methods cheap on a CPU (``cld_hf.app.comparison.DEFAULT_METHODS``).
"""

from __future__ import annotations

import logging
import sys


def make_parser():
    from transformers import HfArgumentParser

    from cld_hf import RecorderConfig
    from cld_hf.app.arguments import RunArguments
    from cld_hf.app.comparison import DEFAULT_METHODS

    parser = HfArgumentParser((RunArguments, RecorderConfig), description=__doc__)
    parser.set_defaults(methods=list(DEFAULT_METHODS))
    return parser


def main(argv: list[str] | None = None) -> int:
    run_args, recording = make_parser().parse_args_into_dataclasses(args=argv)
    from cld_hf.app.experiment import run_experiment

    command = " ".join(["python scripts/compare_methods.py", *(sys.argv[1:] if argv is None
                                                               else argv)])
    results = run_experiment(run_args, recording, command=command)
    print(results["table_markdown"])
    print("\nSelection cost (seconds measured; extra storage; Appendix E):\n")
    print(results["cost_markdown"])
    print(f"\n{results['seconds']:.0f} s; outputs in {run_args.output_dir}")
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    raise SystemExit(main())
