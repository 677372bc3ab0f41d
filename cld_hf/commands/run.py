"""``cld-hf run``: the whole job on a built-in or saved dataset, from proxy training to results."""

from __future__ import annotations

import argparse

EPILOG = """\
examples:
  cld-hf run                                        # scikit-learn digits, a few minutes on CPU
  cld-hf run --dataset mnist1d --fractions 0.1 0.3 0.5 --seeds 3
  cld-hf run --label-noise 0.2 --output-dir noisy   # what CLD does with flipped labels
  cld-hf run --dataset path/to/saved_dataset --model path/to/model --proxy-epochs 30
  cld-hf run --push-to-hub me/digits-cld-10pct      # also push coreset + proxy (needs a token)

writes to --output-dir: trajectories/ (the loss store), scored/, coreset-cld-<pct>pct/,
proxy_model/, hub/ (both repos with their cards, as a push would send them), results.json,
results.md (the table) and plots/.
"""


def register(subparsers) -> None:
    from transformers import HfArgumentParser

    from ..experiment import RunArguments

    parent = HfArgumentParser(RunArguments, add_help=False)
    subparsers.add_parser(
        "run",
        parents=[parent],
        help="the whole job: proxy + CLD scores + coresets + target accuracy table",
        description="Split a stratified query set, train a proxy model with Trainer + "
        "CLDCallback, score, select the CLD coreset and a random class-balanced coreset per "
        "fraction, train the target on each (several seeds) and print a table like the "
        "paper's Table 2. Defaults: scikit-learn's digits, a small ResNet built from a config.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    ).set_defaults(func=run)


def run(args) -> int:
    import dataclasses

    from ..experiment import RunArguments, run_experiment

    fields = {f.name: getattr(args, f.name) for f in dataclasses.fields(RunArguments)}
    results = run_experiment(RunArguments(**fields))
    print(results["table_markdown"])
    print(f"\nproxy test accuracy {100 * results['proxy_test_accuracy']:.2f}%; "
          f"{results['seconds']:.0f} s; outputs in {args.output_dir}")
    return 0
