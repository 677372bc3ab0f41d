"""``cld-hf run``: the whole job on a built-in or saved dataset, from proxy training to results."""

from __future__ import annotations

import argparse
import sys

EPILOG = """\
examples:
  cld-hf run                                        # scikit-learn digits, a few minutes on CPU
  cld-hf run --dataset mnist1d --fractions 0.1 0.3 0.5 --seeds 3
  cld-hf run --methods cld random forgetting el2n aum herding kcenter grand   # the baselines too
  cld-hf run --label-noise 0.2 --output-dir noisy   # what CLD does with flipped labels
  cld-hf run --dataset path/to/saved_dataset --model path/to/model --proxy-epochs 30
  cld-hf run --push-to-hub me/digits-cld-10pct      # also push coreset + proxy (needs a token)

writes to --output-dir: trajectories/ (the loss store, with the signals the --methods read),
scored/, coreset-cld-<pct>pct/, selections.arrow (every method's coreset per fraction and seed),
proxy_model/, hub/ (both repos with their cards, as a push would send them), results.json,
results.md (the accuracy table and the selection-cost table) and plots/.
"""


def register(subparsers) -> None:
    from transformers import HfArgumentParser

    from ..recording.config import RecorderConfig
    from .arguments import RunArguments

    parent = HfArgumentParser((RunArguments, RecorderConfig), add_help=False)
    subparsers.add_parser(
        "run",
        parents=[parent],
        help="the whole job: proxy + CLD scores + coresets + target accuracy table",
        description="Split a stratified query set, train a proxy model with Trainer + "
        "CLDCallback (recording in the same sweeps the signals the --methods need), select one "
        "coreset per method and fraction with the same class budgets (CLD, random and the "
        "baselines of cld_hf.baselines), train the target on each (several seeds) and print a "
        "table like the paper's Table 2 and the selection cost of each method. Defaults: "
        "scikit-learn's digits, a small ResNet built from a config, --methods cld random.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    ).set_defaults(func=run)


def run(args) -> int:
    import dataclasses

    from ..recording.config import RecorderConfig
    from .arguments import RunArguments
    from .experiment import run_experiment

    run_args, config = (cls(**{f.name: getattr(args, f.name) for f in dataclasses.fields(cls)})
                        for cls in (RunArguments, RecorderConfig))
    results = run_experiment(run_args, config)
    print(results["table_markdown"])
    print("\nSelection cost (seconds measured; extra storage; Appendix E):\n")
    print(results["cost_markdown"])
    print(f"\nproxy test accuracy {100 * results['proxy_test_accuracy']:.2f}%; "
          f"{results['seconds']:.0f} s; outputs in {args.output_dir}")
    for failed in results.get("failed_steps", []):
        print(f"cld-hf run: error: the {failed['step']} step failed: {failed['error']} "
              f"(the results are saved in {args.output_dir})", file=sys.stderr)
    return 1 if results.get("failed_steps") else 0
