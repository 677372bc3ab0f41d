"""Result tables of ``cld-hf run``: accuracy shaped like the paper's Table 2."""

from __future__ import annotations

import numpy as np

__all__ = ["fraction_table_lines", "results_markdown"]


def fraction_table_lines(rows, key: str, fmt) -> list[str]:
    """Markdown lines of a fraction x method table: one row per fraction, one column per method
    (in the order they first appear), each cell ``fmt(values of key over seeds)`` or ``-``.

    Examples
    --------
    >>> rows = [{"fraction": 0.3, "method": "cld", "size": 3}, {"fraction": 0.1, "method": "cld",
    ...         "size": 1}, {"fraction": 0.1, "method": "random", "size": 2}]
    >>> print("\\n".join(fraction_table_lines(rows, "size", lambda v: str(sum(v)))))
    | fraction | cld | random |
    |---|---|---|
    | 10% | 1 | 2 |
    | 30% | 3 | - |
    """
    methods = list(dict.fromkeys(r["method"] for r in rows))
    fractions = sorted({float(r["fraction"]) for r in rows})
    lines = ["| fraction | " + " | ".join(methods) + " |", "|---" * (len(methods) + 1) + "|"]
    for f in fractions:
        cells = []
        for m in methods:
            v = [r[key] for r in rows if r["method"] == m and float(r["fraction"]) == f]
            cells.append(fmt(v) if v else "-")
        lines.append(f"| {100 * f:g}% | " + " | ".join(cells) + " |")
    return lines

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
    def cell(values):
        acc = [100 * a for a in values]
        return f"{np.mean(acc):.2f} ± {np.std(acc):.2f}"

    lines = fraction_table_lines(rows, "accuracy", cell)
    if full_accuracy:
        acc = [100 * a for a in full_accuracy]
        lines.append(f"\nFull training set: {np.mean(acc):.2f} ± {np.std(acc):.2f}")
    return "\n".join(lines)


