"""The tables of the text job (``cld-hf run --task causal-lm``): test perplexity and training
tokens per method and fraction, and the paired per-seed differences between two methods.

Each function takes the job's ``runs`` rows (dicts with ``fraction``, ``method``, ``seed``,
``size``, ``tokens``, ``perplexity``) and returns Markdown or plain rows; NumPy only.
"""

from __future__ import annotations

import numpy as np

from .results import fraction_table_lines

__all__ = ["perplexity_markdown", "tokens_markdown", "paired_differences", "paired_markdown"]


def perplexity_markdown(rows, *, full_perplexity=None) -> str:
    """The test-perplexity table (lower is better), shaped like ``results_markdown``'s accuracy
    table: fraction rows, method columns, ``mean ± std`` over seeds.

    Examples
    --------
    >>> rows = [{"fraction": 0.1, "method": "cld", "perplexity": 90.0},
    ...         {"fraction": 0.1, "method": "cld", "perplexity": 110.0},
    ...         {"fraction": 0.1, "method": "random", "perplexity": 120.0}]
    >>> print(perplexity_markdown(rows, full_perplexity=[40.0, 42.0]))
    | fraction | cld | random |
    |---|---|---|
    | 10% | 100.00 ± 10.00 | 120.00 ± 0.00 |
    <BLANKLINE>
    Full training set: 41.00 ± 1.00
    """
    lines = fraction_table_lines(rows, "perplexity", lambda v: f"{np.mean(v):.2f} ± {np.std(v):.2f}")
    if full_perplexity:
        lines.append(f"\nFull training set: {np.mean(full_perplexity):.2f} ± "
                     f"{np.std(full_perplexity):.2f}")
    return "\n".join(lines)


def tokens_markdown(rows, *, full_tokens: int | None = None) -> str:
    """Training tokens of each coreset (mean over seeds, thousands): a method that keeps longer
    documents trains on more tokens at the same number of documents.

    Examples
    --------
    >>> rows = [{"fraction": 0.1, "method": "cld", "tokens": 5000},
    ...         {"fraction": 0.1, "method": "random", "tokens": 4000}]
    >>> print(tokens_markdown(rows, full_tokens=45000))
    | fraction | cld | random |
    |---|---|---|
    | 10% | 5.0k | 4.0k |
    <BLANKLINE>
    Full training set: 45.0k
    """
    lines = fraction_table_lines(rows, "tokens", lambda v: f"{np.mean(v) / 1000:.1f}k")
    if full_tokens is not None:
        lines.append(f"\nFull training set: {full_tokens / 1000:.1f}k")
    return "\n".join(lines)


def paired_differences(rows, *, baseline: str = "random") -> list[dict]:
    """Per fraction and method, the perplexity minus the ``baseline``'s of the same seed, as
    mean and std over the seeds (negative: better than the baseline).

    Examples
    --------
    >>> rows = [{"fraction": 0.1, "method": m, "seed": s, "perplexity": p}
    ...         for m, s, p in [("cld", 0, 90.0), ("cld", 1, 100.0),
    ...                         ("random", 0, 100.0), ("random", 1, 104.0)]]
    >>> paired_differences(rows)
    [{'fraction': 0.1, 'method': 'cld', 'mean': -7.0, 'std': 3.0, 'seeds': 2}]
    """
    base = {(float(r["fraction"]), r["seed"]): r["perplexity"] for r in rows
            if r["method"] == baseline}
    if not base:
        raise ValueError(f"baseline == {baseline!r} has no runs; methods run: "
                         f"{sorted({r['method'] for r in rows})}.")
    out = []
    for f in sorted({float(r["fraction"]) for r in rows}):
        for m in dict.fromkeys(r["method"] for r in rows):
            if m == baseline:
                continue
            d = [r["perplexity"] - base[(f, r["seed"])] for r in rows
                 if r["method"] == m and float(r["fraction"]) == f and (f, r["seed"]) in base]
            if d:
                out.append({"fraction": f, "method": m, "mean": float(np.mean(d)),
                            "std": float(np.std(d)), "seeds": len(d)})
    return out


def paired_markdown(diffs, *, baseline: str = "random") -> str:
    """:func:`paired_differences` as a table: ``mean ± std`` of the paired perplexity difference.

    Examples
    --------
    >>> print(paired_markdown([{"fraction": 0.1, "method": "cld", "mean": -7.0, "std": 3.0,
    ...                         "seeds": 2}]))
    | fraction | cld - random |
    |---|---|
    | 10% | -7.00 ± 3.00 (2 seeds) |
    """
    methods = list(dict.fromkeys(d["method"] for d in diffs))
    fractions = sorted({d["fraction"] for d in diffs})
    lines = ["| fraction | " + " | ".join(f"{m} - {baseline}" for m in methods) + " |",
             "|---" * (len(methods) + 1) + "|"]
    for f in fractions:
        cells = []
        for m in methods:
            d = [x for x in diffs if x["method"] == m and x["fraction"] == f]
            cells.append(f"{d[0]['mean']:.2f} ± {d[0]['std']:.2f} ({d[0]['seeds']} seeds)"
                         if d else "-")
        lines.append(f"| {100 * f:g}% | " + " | ".join(cells) + " |")
    return "\n".join(lines)
