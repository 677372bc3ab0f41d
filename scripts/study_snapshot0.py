"""Snapshot 0 (before training): what recording it (Algorithm 1, line 8, cld-hf's default) changes
against the authors' code, which records none (``record_initial=False``: T - 1 differences).

For each built-in dataset, one proxy run as ``cld-hf run`` trains it (stratified 10% query
split, the small ResNet, 15 epochs, AdamW 1e-2, batch 64) records 16 snapshots; the scores with
every snapshot and without snapshot 0 come from the same store. Reported: the share of each
class's query-trajectory variance carried by the first difference (median and range over
classes; :func:`cld_hf.diagnosis.diagnose`), the Spearman correlation of the two scores, and the
overlap (Jaccard) of the two CLD coresets at each fraction.

    python scripts/study_snapshot0.py --output snapshot0.md
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path


def proxy_store(dataset: str, out: Path, *, epochs: int = 15, seed: int = 0):
    import torch
    from transformers import set_seed

    from cld_hf import CLDCallback, LossTrajectories, add_index_column, stratified_query_split
    from cld_hf.app.builtin import load_builtin_dataset, make_image_classifier
    from cld_hf.app.training import train_and_evaluate

    torch.set_num_threads(1)
    dd = load_builtin_dataset(dataset)
    train = add_index_column(dd["train"], name=dataset, split="train")
    train_ds, query_ds = stratified_query_split(train, fraction=0.1, seed=seed)
    num_channels = int(train.features["pixel_values"].shape[0])
    set_seed(seed)
    cld = CLDCallback(query_ds, output_dir=out, progress=False, log_summary=False)
    train_and_evaluate(make_image_classifier(10, num_channels=num_channels, seed=seed), train_ds,
                       dd["test"], output_dir=out / "tmp", epochs=epochs, batch_size=64,
                       learning_rate=1e-2, seed=seed, label_column="label", callbacks=[cld])
    return LossTrajectories(out)


def jaccard(a, b) -> float:
    a, b = set(a.tolist()), set(b.tolist())
    return len(a & b) / len(a | b)


def main(argv=None) -> int:
    import numpy as np

    from cld_hf import class_budgets, cld_scores, select_top_per_class
    from cld_hf.diagnosis import diagnose

    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=["digits", "mnist1d"])
    parser.add_argument("--fractions", nargs="+", type=float, default=[0.1, 0.2, 0.3])
    parser.add_argument("--output", help="write the Markdown table here")
    args = parser.parse_args(argv)
    lines = ["| dataset | first difference's share of the class query-trajectory variance "
             "(median, range) | Spearman(with, without snapshot 0) | "
             + " | ".join(f"Jaccard at {100 * f:g}%" for f in args.fractions) + " |",
             "|---|---|---|" + "---|" * len(args.fractions)]
    for dataset in args.datasets:
        with tempfile.TemporaryDirectory() as tmp:
            store = proxy_store(dataset, Path(tmp) / "store")
            labels = store.train_labels
            with_0 = store.scores()
            cols = np.arange(1, store.num_snapshots)  # the authors' code: no snapshot 0
            without_0 = cld_scores(store.train_losses(cols), labels, store.query_losses(cols),
                                   store.query_labels)
            shares = [v for v in diagnose(store)["first_difference_share"].values()
                      if v is not None]
            ranks = [np.argsort(np.argsort(s)) for s in (with_0, without_0)]
            rho = float(np.corrcoef(*ranks)[0, 1])
            cells = []
            for f in args.fractions:
                budgets = class_budgets(labels, fraction=f)
                a = select_top_per_class(with_0, labels, budgets=budgets)
                b = select_top_per_class(without_0, labels, budgets=budgets)
                cells.append(f"{jaccard(a, b):.2f}")
            lines.append(f"| {dataset} | {100 * np.median(shares):.0f}% ({100 * min(shares):.0f}-"
                         f"{100 * max(shares):.0f}%) | {rho:+.2f} | " + " | ".join(cells) + " |")
    table = "\n".join(lines)
    print(table)
    if args.output:
        Path(args.output).write_text(table + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
