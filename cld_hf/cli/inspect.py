"""``cld-hf inspect``: sizes, snapshots, per-class score statistics and storage of a store or dataset."""

from __future__ import annotations

import argparse
from pathlib import Path

EPILOG = """\
examples:
  cld-hf inspect out/trajectories          # a LossTrajectories store
  cld-hf inspect out/scored                # a scored dataset or a coreset
  cld-hf inspect out/scored --json         # machine-readable
  cld-hf inspect out/trajectories --verify # check every file of a store against its checksum
"""


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "inspect",
        help="summarise a trajectory store, a scored dataset or a coreset",
        description="Print sizes, snapshots, per-class statistics (count, mean/std/min/max CLD "
        "score) and the bytes on disk of a LossTrajectories store or a saved (scored) dataset.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("path", help="a store directory (store.json) or a save_to_disk directory")
    p.add_argument("--split", default=None, help="split of a DatasetDict")
    p.add_argument("--label-column", default=None,
                   help="class column (default: labels, then label)")
    p.add_argument("--score-column", default="cld_score",
                   help="column of the scores summarised per class (default: cld_score)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--verify", action="store_true",
                   help="store only: check every file against its SHA-256 (exit 1 on a mismatch)")
    p.set_defaults(func=run)


def _dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def per_class_summary(labels, scores=None) -> list[dict]:
    """Per class: count and, when scores are given, mean/std/min/max score.

    Examples
    --------
    >>> per_class_summary([0, 0, 1], [0.5, -0.5, 1.0])[0]
    {'class': 0, 'count': 2, 'mean': 0.0, 'std': 0.5, 'min': -0.5, 'max': 0.5}
    """
    import numpy as np

    labels = np.asarray(labels)
    rows = []
    for c in np.unique(labels):
        row = {"class": int(c), "count": int((labels == c).sum())}
        if scores is not None:
            s = np.asarray(scores, dtype=np.float64)[labels == c]
            row.update(mean=float(s.mean()), std=float(s.std()), min=float(s.min()),
                       max=float(s.max()))
        rows.append(row)
    return rows


def inspect_path(path, *, split=None, label_column=None, score_column="cld_score",
                 verify: bool = False) -> dict:
    """The summary printed by ``cld-hf inspect``, as a dict.

    ``path`` is a :class:`~cld_hf.trajectories.LossTrajectories` store or a ``save_to_disk``
    directory of a (scored) dataset.

    Examples
    --------
    >>> import tempfile
    >>> from cld_hf import LossTrajectories
    >>> store = LossTrajectories.create(tempfile.mkdtemp(), [0, 1], [0, 1])
    >>> _ = store.append([1.0, 2.0], [1.5, 2.5])
    >>> s = inspect_path(store.directory)
    >>> s["kind"], s["num_snapshots"], s["payload_bytes"]
    ('loss-trajectory store', 1, 16)
    """
    import numpy as np

    path = Path(path)
    if (path / "store.json").is_file():
        from ..trajectories import LossTrajectories

        store = LossTrajectories(path)
        checked = store.verify() if verify else None
        summary = {
            "kind": "loss-trajectory store",
            "path": str(path),
            "num_train": store.num_train,
            "num_query": store.num_query,
            "num_snapshots": store.num_snapshots,
            "epochs": [i["epoch"] for i in store.snapshot_info],
            "bytes_on_disk": store.nbytes,
            "payload_bytes": (store.num_train + store.num_query) * store.num_snapshots * 4,
            "metadata": store.metadata,
        }
        if checked is not None:
            summary["verified"] = checked
        scores = store.scores() if store.num_snapshots >= 3 else None
        summary["classes"] = per_class_summary(store.train_labels, scores)
        if scores is not None and not store.streaming:
            from ..diagnosis import diagnose

            summary["diagnosis"] = diagnose(store, scores=scores)
        summary["query_per_class"] = per_class_summary(store.query_labels)
        return summary
    from ..columns import TRAJECTORY_COLUMN, find_label_column
    from .common import load_saved_dataset, read_run_info

    ds = load_saved_dataset(path, split)
    label_column = find_label_column(ds.column_names, label_column)
    labels = np.asarray(ds.with_format("numpy", columns=[label_column])[label_column][:])
    scores = None
    if score_column in ds.column_names:
        scores = np.asarray(ds.with_format("numpy", columns=[score_column])[score_column][:])
    if verify:
        raise ValueError(f"--verify checks a store (a directory with store.json); {path} is a "
                         f"saved dataset.")
    from ..identity import index_identity

    source = index_identity(ds)
    is_coreset = source is not None and source.get("num_rows", 0) > len(ds)
    summary = {
        "kind": ("coreset" if is_coreset else "scored dataset") if scores is not None
        else "dataset",
        "path": str(path),
        "num_rows": len(ds),
        "columns": ds.column_names,
        "features": {k: str(v) for k, v in ds.features.items()},
        "bytes_on_disk": _dir_bytes(path),
        "run_info": read_run_info(path),
        "index_refers_to": source,
    }
    if TRAJECTORY_COLUMN in ds.features:
        summary["num_snapshots"] = ds.features[TRAJECTORY_COLUMN].length
    summary["classes"] = per_class_summary(labels, scores)
    return summary


def _print_table(summary: dict) -> None:
    skip = {"classes", "query_per_class", "features", "run_info", "metadata", "epochs",
            "verified", "index_refers_to", "diagnosis"}
    for key, value in summary.items():
        if key not in skip:
            print(f"{key:>16}: {value}")
    if summary.get("verified"):
        v = summary["verified"]
        print(f"{'verified':>16}: {v['snapshots']} snapshot(s), {v['arrays']} array(s), "
              f"{v['streaming_states']} streaming state(s): every checksum matches"
              + (f" ({len(v['without_checksum'])} file(s) of a format-1 store have none)"
                 if v["without_checksum"] else ""))
    if summary.get("index_refers_to"):
        from ..identity import describe_identity

        print(f"{'sample_index':>16}: rows of {describe_identity(summary['index_refers_to'])}")
    if summary.get("run_info"):
        print(f"{'run_info':>16}: {summary['run_info']}")
    rows = summary["classes"]
    has_scores = "mean" in rows[0] if rows else False
    print()
    print(f"{'class':>8} {'count':>8}" + (f" {'mean':>8} {'std':>8} {'min':>8} {'max':>8}" if has_scores else ""))
    for r in rows:
        line = f"{r['class']:>8} {r['count']:>8}"
        if has_scores:
            line += f" {r['mean']:8.4f} {r['std']:8.4f} {r['min']:8.4f} {r['max']:8.4f}"
        print(line)
    if summary.get("diagnosis"):
        from ..diagnosis import format_diagnosis

        print()
        print(format_diagnosis(summary["diagnosis"]))


def run(args) -> int:
    import json

    summary = inspect_path(args.path, split=args.split, label_column=args.label_column,
                           score_column=args.score_column, verify=args.verify)
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        _print_table(summary)
    return 0
