"""``cld-hf plot``: PNG plots of a scored dataset (and optionally its store and results)."""

from __future__ import annotations

import argparse

EPILOG = """\
examples:
  cld-hf plot out/scored -o out/plots
  cld-hf plot out/scored --store out/trajectories --class 3 -o out/plots
  cld-hf plot out/scored --results out/results.json -o out/plots
"""


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "plot",
        help="plot score distributions, trajectories and accuracy vs fraction",
        description="Write PNG plots: the CLD score distribution per class; loss trajectories "
        "of the top and bottom scored samples of a class against the class's query trajectory "
        "(needs the loss_trajectory column; the query curve needs --store); accuracy vs "
        "coreset fraction per method (needs --results, a results.json of cld-hf run).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("scored", help="a scored dataset directory")
    p.add_argument("-o", "--output-dir", required=True)
    p.add_argument("--store", default=None, help="the LossTrajectories store, for query curves")
    p.add_argument("--results", default=None, help="results.json written by cld-hf run")
    p.add_argument("--class", dest="cls", type=int, default=None,
                   help="class whose trajectories to draw (default: the largest class)")
    p.add_argument("--top-k", type=int, default=5, help="samples drawn at each end")
    p.add_argument("--split", default=None)
    p.add_argument("--label-column", default=None)
    p.set_defaults(func=run)


def make_plots(scored, output_dir, *, store=None, results=None, cls=None, top_k=5,
               label_column=None, class_names=None) -> list:
    """Write the plots for a scored ``datasets.Dataset``; returns the written paths.

    Always the score distribution per class; the trajectories of the top and bottom samples of
    ``cls`` (default: the largest class) when the dataset has ``loss_trajectory`` (with the
    query curve when ``store`` is given); accuracy vs fraction when ``results`` (rows with
    ``fraction``, ``method``, ``accuracy``) are given.

    Examples
    --------
    >>> import tempfile
    >>> from datasets import Dataset
    >>> ds = Dataset.from_dict({"label": [0, 0, 1, 1], "cld_score": [0.5, -0.5, 0.9, 0.1],
    ...                         "loss_trajectory": [[3.0, 2.0, 1.0]] * 4})
    >>> [p.name for p in make_plots(ds, tempfile.mkdtemp(), cls=1)]
    ['score_distribution.png', 'trajectories_class_1.png']
    """
    from pathlib import Path

    import numpy as np

    from . import plots
    from ..columns import SCORE_COLUMN, TRAJECTORY_COLUMN, find_label_column

    out = Path(output_dir)
    label_column = find_label_column(scored.column_names, label_column)
    if SCORE_COLUMN not in scored.column_names:
        raise ValueError(f"The dataset has no {SCORE_COLUMN!r} column; score it first "
                         f"(cld-hf score). Columns: {scored.column_names}.")
    if class_names is None:
        feature = scored.features[label_column]
        class_names = getattr(feature, "names", None)
    np_ds = scored.with_format("numpy")
    labels = np.asarray(np_ds[label_column][:])
    scores = np.asarray(np_ds[SCORE_COLUMN][:])
    written = [plots.plot_score_distribution(scores, labels, out / "score_distribution.png",
                                             class_names=class_names)]
    if TRAJECTORY_COLUMN in scored.column_names:
        traj = np.asarray(np_ds[TRAJECTORY_COLUMN][:])
        if cls is None:
            values, counts = np.unique(labels, return_counts=True)
            cls = int(values[np.argmax(counts)])
        query_traj = None
        if store is not None:
            q = store.query_losses()
            members = store.query_labels == cls
            if members.any():
                query_traj = q[members].mean(axis=0)
        written.append(plots.plot_class_trajectories(
            traj, scores, labels, out / f"trajectories_class_{cls}.png", cls=cls,
            query_trajectory=query_traj, k=top_k, class_names=class_names))
    if results:
        written.append(plots.plot_accuracy_vs_fraction(results, out / "accuracy_vs_fraction.png"))
    return written


def run(args) -> int:
    import json

    from ..trajectories import LossTrajectories
    from ..cli.common import load_saved_dataset

    scored = load_saved_dataset(args.scored, args.split)
    store = LossTrajectories(args.store) if args.store else None
    results = None
    if args.results:
        with open(args.results) as f:
            data = json.load(f)
        results = data["runs"] if isinstance(data, dict) else data
    for path in make_plots(scored, args.output_dir, store=store, results=results, cls=args.cls,
                           top_k=args.top_k, label_column=args.label_column):
        print(path)
    return 0
