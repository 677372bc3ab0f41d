"""``preset="authors"``: what the authors' public code does, where cld-hf's defaults depart from it.

The reference is `manishnagaraj/CLD_Coresets_from_Trajectories` (``get_loss_values.py``,
``Compute_CLD_scores.py``, ``Utils/dataset_utils.py``, ``train_on_coresets.py``). cld-hf's
defaults follow Algorithm 1 of the paper; each difference from the released code is an option,
and this module gathers them so that a run reproduces that code exactly:

===========================  ==========================================  ======================================
                             cld-hf default                               the authors' code (this preset)
===========================  ==========================================  ======================================
snapshot 0                   recorded before training (Algorithm 1, l.8)  none: T epochs give T - 1 differences
query split                  :func:`~cld_hf.splits.stratified_split_...`  per class ``torch.randperm`` (generator
                             (NumPy, ``round(f n_c)`` per class)          seed 42), the last ``n_c - int(0.9 n_c)``
training order               the dataset's rows                           class by class, in that permuted order
ties                         the lower index first (stable sort)          ``np.argsort(r)[::-1]``: reversed
a class without query rows   an error (or ``"global"``)                   skipped: nothing selected from it
budget                       ``class_budgets`` (water-filling)            ``topk_per_class`` (the same ``k`` each)
===========================  ==========================================  ======================================

The score itself is the same (Pearson, population statistics, a zero-variance trajectory scores
0): :func:`~cld_hf.scoring.cld_scores` on the same trajectories gives their ``r`` to float
rounding. :func:`authors_config` is the recording side, :func:`authors_query_split` the split,
:func:`authors_select` the selection.
"""

from __future__ import annotations

import numpy as np

from ._validation import check_float, check_int, check_labels

__all__ = ["AUTHORS_SEED", "authors_config", "authors_query_split", "authors_select"]

AUTHORS_SEED = 42
"""``manual_seed`` default of the authors' ``get_dataloaders`` (the query split's generator)."""


def authors_config(**options):
    """The recording options of the authors' code: ``RecorderConfig(record_initial=False)``.

    Examples
    --------
    >>> authors_config().record_initial
    False
    """
    from .recording.config import RecorderConfig

    return RecorderConfig(record_initial=False, **options)


def authors_query_split(labels, *, fraction: float = 0.1, seed: int = AUTHORS_SEED):
    """The authors' query (validation) split: ``(train_positions, query_positions)``.

    For each class in label order, ``torch.randperm`` of its rows with one ``torch.Generator``
    seeded ``seed``; the first ``int(n_c * (1 - fraction))`` are training rows, the rest query
    rows, both kept in that permuted order (so the training set is ordered class by class).

    Examples
    --------
    >>> train, query = authors_query_split([0] * 10 + [1] * 10, fraction=0.2)
    >>> len(train), len(query)               # 2 of each class of 10 held out
    (16, 4)
    """
    import torch

    lab = check_labels(labels, "labels")
    check_float("fraction", fraction, min_val=0.0, max_val=1.0, include_min=False,
                include_max=False)
    g = torch.Generator().manual_seed(int(seed))
    targets = torch.as_tensor(lab, dtype=torch.long)
    train, query = [], []
    for c in np.unique(lab).tolist():
        rows = torch.nonzero(targets == c, as_tuple=False).squeeze(1)
        perm = rows[torch.randperm(len(rows), generator=g)]
        split_at = int(len(perm) * (1.0 - fraction))
        train.extend(perm[:split_at].tolist())
        query.extend(perm[split_at:].tolist())
    return np.asarray(train, dtype=np.int64), np.asarray(query, dtype=np.int64)


def authors_select(scores, labels, query_labels, *, k_per_class: int) -> np.ndarray:
    """The authors' coreset: per class, ``np.argsort(r)[::-1][:k]`` (ties reversed), and nothing
    from a class without query samples. Returns the selected positions, ascending.

    Examples
    --------
    >>> authors_select([0.5, 0.5, 0.1, 0.9], [0, 0, 0, 1], [0, 1], k_per_class=1).tolist()
    [1, 3]
    >>> authors_select([0.5, 0.5, 0.1, 0.9], [0, 0, 0, 1], [0], k_per_class=1).tolist()
    [1]
    """
    sc = np.asarray(scores, dtype=np.float64)
    lab = check_labels(labels, "labels", len(sc), against="the scores")
    qlab = check_labels(query_labels, "query_labels")
    check_int("k_per_class", k_per_class, min_val=0)
    chosen = []
    for c in np.unique(lab):
        if not np.any(qlab == c):
            continue  # Compute_CLD_scores.py: an absent class gets an empty list
        positions = np.flatnonzero(lab == c)
        order = np.argsort(sc[positions])[::-1]
        chosen.append(positions[order][:k_per_class])
    out = np.concatenate(chosen) if chosen else np.zeros(0, np.int64)
    return np.sort(out).astype(np.int64)
