"""``cld-hf score``: a loss-trajectory store on disk -> a scored dataset (``save_to_disk``)."""

from __future__ import annotations

import argparse

from ._common import RUN_INFO_FILE, positive_int, read_run_info, write_json

EPILOG = """\
examples:
  cld-hf score out/trajectories -o out/scored
  cld-hf score out/trajectories --dataset data/train -o out/scored   # keep the dataset's columns
  cld-hf score out/trajectories --first 30 -o out/scored30           # truncated trajectory
  cld-hf score out/trajectories --streaming -o out/scored            # O(N) memory
"""


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "score",
        help="score a recorded loss-trajectory store by CLD",
        description="Compute the CLD score of every training sample from a LossTrajectories store "
        "and save the scored dataset (cld_score float32, loss_trajectory) with save_to_disk.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("store", help="directory of a LossTrajectories store (holds store.json)")
    p.add_argument("-o", "--output-dir", required=True, help="where to save the scored dataset")
    p.add_argument("--dataset", default=None,
                   help="the training dataset (save_to_disk directory) the store was recorded on; "
                   "its columns are kept. Without it the output holds sample_index, label, scores")
    p.add_argument("--split", default=None, help="split of --dataset when it is a DatasetDict")
    p.add_argument("--first", type=positive_int, default=None, help="use the first K snapshots")
    p.add_argument("--every", type=positive_int, default=1, help="use every J-th snapshot")
    p.add_argument("--streaming", action="store_true",
                   help="score snapshot by snapshot (StreamingCLD, O(N) memory)")
    p.add_argument("--missing-query-class", choices=["error", "global"], default="error",
                   help="a class with no query sample: fail (default) or use all-class trajectory")
    p.add_argument("--no-trajectory", action="store_true",
                   help="do not add the loss_trajectory column")
    p.set_defaults(func=run)


def run(args) -> int:
    import logging

    from ..columns import INDEX_COLUMN, TRAJECTORY_COLUMN
    from ..dataset_adapters import add_cld_scores
    from ..trajectories import LossTrajectories, trajectory_column
    from ._common import load_saved_dataset

    log = logging.getLogger("cld_hf.score")
    store = LossTrajectories(args.store)
    scores = store.scores(first=args.first, every=args.every, streaming=args.streaming,
                          missing_query_class=args.missing_query_class)
    if args.dataset is not None:
        import datasets

        ds = load_saved_dataset(args.dataset, args.split)
        if len(ds) != store.num_train:
            raise ValueError(
                f"--dataset has {len(ds)} rows but the store holds {store.num_train} training "
                f"samples; pass the training dataset the losses were recorded on."
            )
        if INDEX_COLUMN not in ds.column_names:
            import numpy as np

            ds = ds.add_column(INDEX_COLUMN, np.arange(len(ds), dtype=np.int64),
                               feature=datasets.Value("int64"))
        if not args.no_trajectory:
            matrix = store.train_losses()
            feature = datasets.List(datasets.Value("float32"), length=matrix.shape[1])
            if TRAJECTORY_COLUMN in ds.column_names:
                ds = ds.remove_columns(TRAJECTORY_COLUMN)
            ds = ds.add_column(TRAJECTORY_COLUMN, trajectory_column(matrix), feature=feature)
    else:
        ds = store.to_dataset()
        if args.no_trajectory:
            ds = ds.remove_columns(TRAJECTORY_COLUMN)
    ds = add_cld_scores(ds, scores, overwrite=True)
    ds.save_to_disk(args.output_dir)
    info = dict(read_run_info(args.store))
    info.update(store.metadata)
    info.update(num_snapshots=store.num_snapshots, first=args.first, every=args.every,
                streaming=args.streaming, missing_query_class=args.missing_query_class,
                num_train=store.num_train, num_query=store.num_query)
    write_json(f"{args.output_dir}/{RUN_INFO_FILE}", info)
    log.info("Scored %d samples from %d snapshots -> %s", len(scores), store.num_snapshots,
             args.output_dir)
    return 0
