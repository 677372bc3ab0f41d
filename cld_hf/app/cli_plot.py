"""``cld-hf plot``: PNG plots of a scored dataset (and optionally its store and results)."""

from __future__ import annotations

import argparse

EPILOG = """\
examples:
  cld-hf plot out/scored -o out/plots
  cld-hf plot out/scored --store out/trajectories --class 3 -o out/plots
  cld-hf plot out/scored --results out/results.json -o out/plots   # + accuracy, every method

writes: score_distribution.png (every score per class, with each fraction's cut),
coreset_composition.png (samples kept per class and method), kept_and_dropped.png (image data:
the highest- and lowest-scored samples of each class; kept_and_dropped.md for text),
trajectories_class_<c>.png (the class whose lowest-scored samples score lowest, unless --class)
and, with --results, accuracy_vs_fraction.png.
"""


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "plot",
        help="plot score distributions, coresets, trajectories and accuracy vs fraction",
        description="Write PNG plots of a scored dataset: the CLD score distribution per class "
        "with the score each coreset fraction keeps; the coreset composition per class; the "
        "highest- and lowest-scored samples of each class (image data); the loss trajectories "
        "of the top and bottom scored samples of one class against its query trajectory (needs "
        "the loss_trajectory column; the query curve needs --store); accuracy vs coreset "
        "fraction per method (needs --results, the results.json of cld-hf run).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("scored", help="a scored dataset directory (scored/ of cld-hf run)")
    p.add_argument("-o", "--output-dir", required=True, help="where the PNG files go")
    p.add_argument("--store", default=None,
                   help="the LossTrajectories store, for the query trajectory")
    p.add_argument("--results", default=None,
                   help="results.json of cld-hf run: accuracy plot (with the full-set line), "
                   "fractions, balance and every method's coresets (selections.arrow)")
    p.add_argument("--fractions", type=float, nargs="+", default=None,
                   help="coreset fractions whose cut is drawn (default: those of --results, "
                   "else 0.1 0.3)")
    p.add_argument("--class", dest="cls", type=int, default=None,
                   help="class id whose trajectories to draw (default: the class whose lowest-"
                   "scored samples score lowest)")
    p.add_argument("--top-k", type=int, default=5, help="samples drawn at each end (default: 5)")
    p.add_argument("--split", default=None, help="split of the input when it is a DatasetDict")
    p.add_argument("--label-column", default=None,
                   help="label column (default: labels, then label)")
    p.set_defaults(func=run)


def _results_parts(results):
    """``(rows, full accuracy, arguments)`` of a results.json dict or a list of rows."""
    if results is None:
        return None, None, {}
    if isinstance(results, dict):
        return results.get("runs"), results.get("full_data_accuracy"), results.get("arguments") or {}
    return list(results), None, {}


def make_plots(scored, output_dir, *, store=None, results=None, cls=None, top_k=5,
               label_column=None, class_names=None, fractions=None, balance=None,
               selections=None, image_column=None, image_size=32, dataset_name=None) -> list:
    """Write the plots of a scored ``datasets.Dataset``; returns the written paths.

    Always the score distribution per class (with the cut of each of ``fractions``) and the
    coreset composition per class (``selections``, ``{(method, fraction): indices}``, else the
    CLD top-k of ``fractions``); the highest- and lowest-scored samples of each class (a PNG
    grid for images, ``kept_and_dropped.md`` for text); the trajectories of the top and bottom
    samples of ``cls`` (default: :func:`~cld_hf.app.plots.choose_trajectory_class`) when the
    dataset has ``loss_trajectory`` (with the query curve when ``store`` is given); accuracy vs
    fraction when ``results`` are given (a results.json dict of ``cld-hf run``, or rows with
    ``fraction``, ``method``, ``accuracy``).

    Examples
    --------
    >>> import tempfile
    >>> from datasets import Dataset
    >>> ds = Dataset.from_dict({"label": [0, 0, 1, 1], "cld_score": [0.5, -0.5, 0.9, 0.1],
    ...                         "loss_trajectory": [[3.0, 2.0, 1.0]] * 4})
    >>> [p.name for p in make_plots(ds, tempfile.mkdtemp(), cls=1, fractions=[0.5])]
    ['score_distribution.png', 'coreset_composition.png', 'trajectories_class_1.png']
    """
    from pathlib import Path

    import numpy as np

    from . import plots
    from ..columns import SCORE_COLUMN, TRAJECTORY_COLUMN, find_label_column
    from ..selection import class_budgets, select_top_per_class
    from .arguments import NOISE_COLUMN

    out = Path(output_dir)
    label_column = find_label_column(scored.column_names, label_column)
    if SCORE_COLUMN not in scored.column_names:
        raise ValueError(f"The dataset has no {SCORE_COLUMN!r} column; score it first "
                         f"(cld-hf score). Columns: {scored.column_names}.")
    rows, full, arguments = _results_parts(results)
    fractions = list(fractions or arguments.get("fractions") or [0.1, 0.3])
    balance = balance or arguments.get("balance") or "equal"
    name = dataset_name or (Path(arguments["dataset"]).name if arguments.get("dataset") else None)
    prefix = f"{name}: " if name else ""
    if class_names is None:
        class_names = getattr(scored.features[label_column], "names", None)
    labels = np.asarray(scored.with_format("numpy", columns=[label_column])[label_column][:])
    scores = np.asarray(scored.with_format("numpy", columns=[SCORE_COLUMN])[SCORE_COLUMN][:])
    noisy = (np.asarray(scored.with_format("numpy", columns=[NOISE_COLUMN])[NOISE_COLUMN][:])
             if NOISE_COLUMN in scored.column_names else None)
    cld_top = {f: select_top_per_class(scores, labels,
                                       budgets=class_budgets(labels, fraction=f, balance=balance))
               for f in fractions}
    thresholds = {f: plots.class_thresholds(scores, labels, idx) for f, idx in cld_top.items()}
    written = [plots.plot_score_distribution(scores, labels, out / "score_distribution.png",
                                             class_names=class_names, thresholds=thresholds,
                                             noisy=noisy)]
    if selections is None:
        selections = {("cld", f): idx for f, idx in cld_top.items()}
    written.append(plots.plot_coreset_composition(
        labels, selections, out / "coreset_composition.png", class_names=class_names,
        noisy=noisy))
    written += _kept_and_dropped(scored, out, scores, labels, class_names=class_names,
                                 noisy=noisy, image_column=image_column, image_size=image_size,
                                 label_column=label_column, k=max(1, min(top_k + 1, 8)))
    if TRAJECTORY_COLUMN in scored.column_names:
        traj = np.asarray(scored.with_format("numpy", columns=[TRAJECTORY_COLUMN])
                          [TRAJECTORY_COLUMN][:])
        if cls is None:
            cls, reason = plots.choose_trajectory_class(scores, labels, k=top_k,
                                                        class_names=class_names)
        else:
            if cls not in set(labels.tolist()):
                raise ValueError(f"--class {cls}: no training sample has this class id; the "
                                 f"ids are {sorted(set(labels.tolist()))[:20]}.")
            reason = "it was chosen with --class"
        query_traj = None
        if store is not None:
            q = store.query_losses()
            members = store.query_labels == cls
            if members.any():
                query_traj = q[members].mean(axis=0)
        written.append(plots.plot_class_trajectories(
            traj, scores, labels, out / f"trajectories_class_{cls}.png", cls=cls,
            query_trajectory=query_traj, k=top_k, class_names=class_names, reason=reason))
    if rows:
        seeds = arguments.get("seeds")
        title = (f"{prefix}target test accuracy by coreset size (mean ± std over {seeds} "
                 f"seed(s))" if seeds else None)
        written.append(plots.plot_accuracy_vs_fraction(rows, out / "accuracy_vs_fraction.png",
                                                       full_accuracy=full, title=title))
    return written


def _kept_and_dropped(scored, out, scores, labels, *, class_names, noisy, image_column,
                      image_size, label_column, k):
    """The highest- and lowest-scored samples: a PNG for images, Markdown for texts."""
    from .inputs import detect_task, image_inputs
    from .plots import plot_kept_and_dropped

    try:
        task, column = detect_task(scored.features, image_column=image_column,
                                   label_column=label_column)
    except ValueError:
        return []
    if task == "text-classification":
        return [_kept_and_dropped_text(scored, out / "kept_and_dropped.md", column, scores,
                                       labels, class_names=class_names, noisy=noisy, k=k)]
    inputs = image_inputs(scored, column=column, label_column=label_column,
                          image_size=image_size)
    view = inputs.view(scored)
    return [plot_kept_and_dropped(lambda i: inputs.pixels(view[i]), scores, labels,
                                  out / "kept_and_dropped.png", class_names=class_names,
                                  noisy=noisy, k=k)]


def _kept_and_dropped_text(scored, path, column, scores, labels, *, class_names, noisy, k):
    import numpy as np

    from .plots import _class_name

    lines = ["# What CLD keeps and drops", "",
             f"Per class, the {k} highest-scored training texts (kept first) and the {k} "
             f"lowest-scored (dropped first), with their CLD scores.", ""]
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        order = members[np.lexsort((members, -scores[members]))]
        lines += [f"## class {_class_name(int(c), class_names)}", "",
                  "| | score | text |", "|---|---|---|"]
        for tag, idx in (("kept", order[:k]), ("dropped", order[::-1][:k])):
            for i in idx:
                text = " ".join(str(scored[int(i)][column]).split())
                text = (text[:157] + "...") if len(text) > 160 else text
                flag = " (flipped label)" if noisy is not None and noisy[i] else ""
                lines.append(f"| {tag}{flag} | {scores[i]:+.3f} | {text.replace('|', '/')} |")
        lines.append("")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines))
    return path


def run(args) -> int:
    import json
    from pathlib import Path

    from ..cli.common import UsageError, load_saved_dataset
    from ..trajectories import LossTrajectories

    if args.top_k < 1:
        raise UsageError(f"--top-k {args.top_k}: must be >= 1.")
    for f in args.fractions or []:
        if not 0.0 < f <= 1.0:
            raise UsageError(f"--fractions contains {f}; each must be in (0, 1].")
    scored = load_saved_dataset(args.scored, args.split)
    store = LossTrajectories(args.store) if args.store else None
    results = selections = None
    if args.results:
        results = json.loads(Path(args.results).read_text())
        if isinstance(results, dict) and results.get("selections"):
            from .comparison import read_selections

            path = Path(results["selections"])
            if not path.is_file():  # results.json moved with its folder
                path = Path(args.results).parent / path.name
            if path.is_file():
                selections = {(c.method, float(c.fraction)): c.indices
                              for c in read_selections(path) if c.seed == 0}
    for path in make_plots(scored, args.output_dir, store=store, results=results, cls=args.cls,
                           top_k=args.top_k, label_column=args.label_column,
                           fractions=args.fractions, selections=selections):
        print(path)
    return 0
