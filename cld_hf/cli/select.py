"""``cld-hf select``: a scored dataset -> a class-balanced coreset (``save_to_disk``)."""

from __future__ import annotations

import argparse

from .common import (
    RUN_INFO_FILE,
    SAVED_DATASET_OUTPUTS,
    UsageError,
    add_dataset_output_arguments,
    check_output_dir,
    fraction_type,
    positive_int,
    read_run_info,
    quiet_datasets,
    remove_outputs,
    write_json,
)

EPILOG = """\
examples:
  cld-hf select out/scored --fraction 0.1 -o out/coreset-10pct
  cld-hf select out/scored --size 500 --balance proportional -o out/coreset-500
  cld-hf select out/scored --fraction 0.3 --indices-only -o out/idx   # sample_index + scores
  cld-hf select out/scored --fraction 0.1 --strategy noise_adaptive --store out/trajectories \
      -o out/coreset-na                   # drop the suspected-noise tail, then sample
"""


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "select",
        help="select a class-balanced coreset from a scored dataset",
        description="Keep the highest-CLD samples of each class (Algorithm 1, lines 17-18) and "
        "save the coreset with save_to_disk. Rows keep their source index in sample_index.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("scored", help="a scored dataset directory (from cld-hf score or run)")
    add_dataset_output_arguments(p, "the coreset")
    size = p.add_mutually_exclusive_group(required=True)
    size.add_argument("--fraction", type=fraction_type, help="coreset size as a share, e.g. 0.1")
    size.add_argument("--size", type=positive_int, help="coreset size in samples")
    p.add_argument("--balance", choices=["equal", "proportional"], default="equal",
                   help="equal k per class (the paper's rule, default) or keep class ratios")
    p.add_argument("--score-column", default="cld_score",
                   help="column of the scores to select by, highest kept first (default: "
                   "cld_score)")
    p.add_argument("--label-column", default=None,
                   help="class column (default: cld_group when present, then labels, then label)")
    p.add_argument("--split", default=None, help="split of the input when it is a DatasetDict")
    p.add_argument("--strategy", default="top",
                   choices=["top", "random", "noise_adaptive", "coverage"],
                   help="top: the highest scores per class (Algorithm 1, default); "
                   "noise_adaptive / coverage: drop the suspected-noise tail, then sample "
                   "(need --store); see cld_hf.strategies")
    p.add_argument("--store", default=None,
                   help="the LossTrajectories store of the run: query losses (noise_adaptive, "
                   "coverage) and the embeddings signal (coverage)")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the sampling strategies (default: 0)")
    p.add_argument("--indices-only", action="store_true",
                   help="save only sample_index, label and score (rebuild with Dataset.select)")
    p.set_defaults(func=run)


def run(args) -> int:
    import numpy as np

    from ..columns import INDEX_COLUMN
    from ..dataset_adapters import select_coreset
    from ..groups import selection_column
    from ..selection import class_budgets
    from .common import load_saved_dataset

    if args.strategy in ("noise_adaptive", "coverage") and args.store is None:
        raise UsageError(f"--strategy {args.strategy} estimates the noise rate from the query "
                         f"losses: pass --store <the run's trajectories directory>.")
    out = check_output_dir(args.output_dir, overwrite=args.overwrite_output_dir,
                           outputs=SAVED_DATASET_OUTPUTS, flag="-o", inputs=[args.scored])
    ds = load_saved_dataset(args.scored, args.split)
    try:
        label_column = selection_column(ds, args.label_column)
    except ValueError as err:
        raise UsageError(str(err).replace("label_column='", "--label-column '")) from None
    if args.score_column not in ds.column_names:
        raise UsageError(f"--score-column {args.score_column!r} is not a column of "
                         f"{args.scored}; its columns are {ds.column_names}.")
    query_losses = embeddings = None
    if args.strategy in ("noise_adaptive", "coverage"):
        from ..trajectories import LossTrajectories

        store = LossTrajectories(args.store)
        query_losses = store.query_losses()
        if args.strategy == "coverage":
            embeddings = store.load_array("embeddings")
    core = select_coreset(ds, fraction=args.fraction, size=args.size,
                          score_column=args.score_column, label_column=label_column,
                          balance=args.balance, strategy=args.strategy, seed=args.seed,
                          query_losses=query_losses, embeddings=embeddings)
    if args.indices_only:
        core = core.select_columns([INDEX_COLUMN, label_column, args.score_column])
    remove_outputs(out, SAVED_DATASET_OUTPUTS)  # the coreset is made: a previous one may go
    with quiet_datasets():
        core.save_to_disk(args.output_dir)
    labels = np.asarray(ds.with_format("numpy", columns=[label_column])[label_column][:])
    budgets = class_budgets(labels, fraction=args.fraction, size=args.size, balance=args.balance)
    info = dict(read_run_info(args.scored))
    info.update(strategy=args.strategy, strategy_seed=args.seed,
                fraction=args.fraction if args.fraction else len(core) / len(ds),
                size=len(core), balance=args.balance, source_size=len(ds),
                budgets={str(k): v for k, v in budgets.items()})
    write_json(f"{args.output_dir}/{RUN_INFO_FILE}", info)
    print(f"selected {len(core)} of {len(ds)} samples ({args.balance} budgets, strategy "
          f"{args.strategy}) -> {args.output_dir}")
    return 0
