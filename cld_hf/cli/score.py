"""``cld-hf score``: a loss-trajectory store on disk -> a scored dataset (``save_to_disk``)."""

from __future__ import annotations

import argparse

from .common import (
    RUN_INFO_FILE,
    SAVED_DATASET_OUTPUTS,
    add_dataset_output_arguments,
    check_output_dir,
    positive_int,
    read_run_info,
    quiet_datasets,
    remove_outputs,
    write_json,
)

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
    add_dataset_output_arguments(p, "the scored dataset")
    p.add_argument("--dataset", default=None,
                   help="the training dataset (save_to_disk directory) the store was recorded on; "
                   "its columns are kept. Without it the output holds sample_index, label, scores")
    p.add_argument("--split", default=None, help="split of --dataset when it is a DatasetDict")
    p.add_argument("--label-column", default=None,
                   help="label column of --dataset (default: labels, then label)")
    p.add_argument("--first", type=positive_int, default=None, help="use the first K snapshots")
    p.add_argument("--every", type=positive_int, default=1,
                   help="use every J-th snapshot (default: 1)")
    p.add_argument("--streaming", action="store_true",
                   help="score snapshot by snapshot (StreamingCLD, O(N) memory)")
    p.add_argument("--missing-query-class", choices=["error", "global"], default="error",
                   help="a class with no query sample: fail (default) or use all-class trajectory")
    p.add_argument("--no-trajectory", action="store_true",
                   help="do not add the loss_trajectory column")
    p.set_defaults(func=run)


def check_dataset_matches_store(dataset, store, *, label_column=None) -> None:
    """Refuse a dataset whose rows are not the store's training samples (count, labels, order).

    Examples
    --------
    >>> import tempfile
    >>> from datasets import Dataset
    >>> from cld_hf import LossTrajectories
    >>> store = LossTrajectories.create(tempfile.mkdtemp(), [0, 1, 1], [0, 1])
    >>> check_dataset_matches_store(Dataset.from_dict({"label": [0, 1, 1]}), store)
    >>> check_dataset_matches_store(Dataset.from_dict({"label": [1, 1, 0]}), store)
    Traceback (most recent call last):
    ...
    ValueError: --dataset is not the training set the store was recorded on: ...
    """
    import numpy as np

    from ..columns import find_label_column
    from ..dataset_adapters import column_values

    labels = column_values(dataset, find_label_column(dataset.column_names, label_column))
    if len(labels) != store.num_train:
        raise ValueError(
            f"--dataset has {len(labels)} rows but the store holds {store.num_train} training "
            f"samples; pass the training dataset the losses were recorded on."
        )
    differ = np.flatnonzero(labels != store.train_labels)
    if len(differ):
        raise ValueError(
            f"--dataset is not the training set the store was recorded on: its labels differ at "
            f"{len(differ)} row(s), first {differ[:10].tolist()} (another dataset, or the same "
            f"rows in another order). Pass the training dataset the losses were recorded on, in "
            f"the same order, or score without --dataset."
        )


def run(args) -> int:
    import logging

    from ..dataset_adapters import scored_dataset
    from ..identity import add_index_column
    from ..scoring import snapshot_window
    from ..trajectories import LossTrajectories
    from .common import load_saved_dataset

    log = logging.getLogger("cld_hf.score")
    out = check_output_dir(args.output_dir, overwrite=args.overwrite_output_dir,
                           outputs=SAVED_DATASET_OUTPUTS, flag="-o",
                           inputs=[args.store, args.dataset])
    store = LossTrajectories(args.store)
    scores = store.scores(first=args.first, every=args.every, streaming=args.streaming,
                          missing_query_class=args.missing_query_class)
    if args.dataset is not None:
        ds = load_saved_dataset(args.dataset, args.split)
        check_dataset_matches_store(ds, store, label_column=args.label_column)
        ds = add_index_column(ds, label_column=args.label_column)
    else:
        ds = store.to_dataset().remove_columns("loss_trajectory")
    trajectory = None if args.no_trajectory or store.streaming else store.train_losses()
    ds = scored_dataset(ds, scores, trajectory=trajectory, overwrite=True)
    remove_outputs(out, SAVED_DATASET_OUTPUTS)  # scored: a previous output may go now
    with quiet_datasets():
        ds.save_to_disk(args.output_dir)
    info = dict(read_run_info(args.store))
    info.update(store.metadata)
    info.update(num_snapshots=store.num_snapshots, first=args.first, every=args.every,
                streaming=args.streaming, missing_query_class=args.missing_query_class,
                num_train=store.num_train, num_query=store.num_query)
    write_json(f"{args.output_dir}/{RUN_INFO_FILE}", info)
    used = len(snapshot_window(store.num_snapshots, first=args.first, every=args.every))
    log.info("Scored %d samples with %d of %d snapshots -> %s", len(scores), used,
             store.num_snapshots, args.output_dir)
    return 0
