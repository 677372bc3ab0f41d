"""Result tables of ``cld-hf run``: accuracy shaped like the paper's Table 2."""

from __future__ import annotations

import numpy as np

__all__ = ["results_markdown"]



def results_markdown(rows, *, full_accuracy=None) -> str:
    """A Markdown table shaped like the paper's Table 2: fraction rows, method columns.

    Each cell is ``mean ± std`` of the test accuracy (in %) over seeds.

    Examples
    --------
    >>> rows = [{"fraction": 0.1, "method": "cld", "accuracy": 0.9},
    ...         {"fraction": 0.1, "method": "cld", "accuracy": 0.8},
    ...         {"fraction": 0.1, "method": "random", "accuracy": 0.7}]
    >>> print(results_markdown(rows))
    | fraction | cld | random |
    |---|---|---|
    | 10% | 85.00 ± 5.00 | 70.00 ± 0.00 |
    """
    methods = list(dict.fromkeys(r["method"] for r in rows))
    fractions = sorted({float(r["fraction"]) for r in rows})
    lines = ["| fraction | " + " | ".join(methods) + " |", "|---" * (len(methods) + 1) + "|"]
    for f in fractions:
        cells = []
        for m in methods:
            acc = [100 * r["accuracy"] for r in rows if r["method"] == m and float(r["fraction"]) == f]
            cells.append(f"{np.mean(acc):.2f} ± {np.std(acc):.2f}" if acc else "-")
        lines.append(f"| {100 * f:g}% | " + " | ".join(cells) + " |")
    if full_accuracy:
        acc = [100 * a for a in full_accuracy]
        lines.append(f"\nFull training set: {np.mean(acc):.2f} ± {np.std(acc):.2f}")
    return "\n".join(lines)


