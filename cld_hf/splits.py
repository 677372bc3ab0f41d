"""Stratified query hold-out: the per-class validation set CLD compares against (NumPy only).

:func:`cld_hf.dataset_adapters.stratified_query_split` applies it to a ``datasets.Dataset``.
"""

from __future__ import annotations

import numpy as np

from ._validation import check_float, check_labels

__all__ = ["stratified_split_indices"]


def stratified_split_indices(labels, *, fraction: float = 0.1, seed: int = 0):
    """Split row indices per class into (train, query), the query taking ``fraction`` of each class.

    Every class with at least 2 samples gives at least one query sample and keeps at least one
    training sample (``round(fraction * n_c)`` clipped to ``1 .. n_c - 1``). A class with a single
    sample stays in training (and then needs ``missing_query_class="global"`` when scoring).

    Parameters
    ----------
    labels : int array of shape (N,)
    fraction : float, default 0.1
        Share of each class held out (the authors use 0.1 for CIFAR-100, 0.01 for ImageNet).
    seed : int, default 0

    Returns
    -------
    (train_indices, query_indices): sorted int64 arrays that partition ``0 .. N-1``.

    Examples
    --------
    >>> tr, q = stratified_split_indices([0] * 10 + [1] * 20, fraction=0.1, seed=0)
    >>> len(tr), len(q), sorted(set(np.asarray([0] * 10 + [1] * 20)[q].tolist()))
    (27, 3, [0, 1])
    """
    lab = check_labels(labels, "labels")
    check_float("fraction", fraction)
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction == {fraction}, must be in (0, 1).")
    rng = np.random.default_rng(seed)
    order = np.argsort(lab, kind="stable")  # indices grouped by class, ascending within a class
    _, starts, counts = np.unique(lab[order], return_index=True, return_counts=True)
    query = []
    for start, n_c in zip(starts, counts):  # O(N) in all: each class touches its own members
        if n_c < 2:
            continue
        k = int(min(max(round(fraction * n_c), 1), n_c - 1))
        query.append(rng.choice(order[start : start + n_c], size=k, replace=False))
    q = np.sort(np.concatenate(query)).astype(np.int64) if query else np.zeros(0, np.int64)
    mask = np.ones(len(lab), dtype=bool)
    mask[q] = False
    return np.flatnonzero(mask).astype(np.int64), q
