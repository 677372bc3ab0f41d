"""Class budgets and top-k-per-class selection (Algorithm 1, lines 17-18). NumPy only.

:func:`cld_hf.dataset_adapters.select_coreset` applies them to a ``datasets.Dataset``.
"""

from __future__ import annotations

import logging
import math
from typing import Literal

import numpy as np

from ._validation import check_labels

logger = logging.getLogger(__name__)

__all__ = [
    "class_budgets",
    "select_top_per_class",
    "select_random_per_class",
    "check_budgets",
    "check_scores",
]

Balance = Literal["equal", "proportional"]


def _coreset_size(n: int, fraction, size) -> int:
    """The one budget check: exactly one of fraction / size, and a size in 1..n."""
    if (fraction is None) == (size is None):
        raise ValueError(
            f"Pass exactly one of fraction= (share of the dataset, e.g. 0.1) or size= (number of "
            f"samples); got fraction={fraction!r}, size={size!r}."
        )
    if fraction is not None:
        if isinstance(fraction, bool) or not isinstance(fraction, (int, float, np.number)):
            raise TypeError(f"fraction must be a number, not {type(fraction).__name__}.")
        if not 0.0 < float(fraction) <= 1.0:
            raise ValueError(f"fraction == {fraction}, must be in (0, 1].")
        k = int(math.floor(float(fraction) * n + 0.5))
        if k < 1:
            raise ValueError(
                f"fraction == {fraction} of {n} samples rounds to an empty coreset; "
                f"use fraction >= {0.5 / n:.3g} or size=1."
            )
        return k
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)):
        raise TypeError(f"size must be an int, not {type(size).__name__}.")
    if not 1 <= size <= n:
        raise ValueError(f"size == {size}, must be >= 1 and <= {n} (the number of samples).")
    return int(size)


def class_budgets(
    labels,
    *,
    fraction: float | None = None,
    size: int | None = None,
    balance: Balance = "equal",
) -> dict[int, int]:
    """How many samples to keep from each class; the budgets sum exactly to the coreset size.

    Parameters
    ----------
    labels : int array of shape (N,)
    fraction : float, optional
        Coreset size as a share of ``N`` (rounded half up). Give this or ``size``.
    size : int, optional
        Coreset size.
    balance : {"equal", "proportional"}, default "equal"
        ``"equal"`` is the paper's class-balanced rule: every class gets the same ``k``; a class
        smaller than its share gives all its samples and its surplus goes to the other classes
        (again equally). When the size does not divide evenly, the classes with the lowest labels
        among those with room get one more. ``"proportional"`` keeps the class ratios of
        ``labels`` with largest-remainder rounding (ties to the lower label).

    Returns
    -------
    dict mapping each class present in ``labels`` to its budget ``k_c`` (``0 <= k_c <= n_c``).

    Examples
    --------
    >>> labels = [0] * 2 + [1] * 10 + [2] * 10
    >>> class_budgets(labels, size=12)
    {0: 2, 1: 5, 2: 5}
    >>> class_budgets(labels, size=11, balance="proportional")
    {0: 1, 1: 5, 2: 5}
    """
    lab = check_labels(labels, "labels")
    if len(lab) == 0:
        raise ValueError("labels is empty: there is nothing to select from.")
    k = _coreset_size(len(lab), fraction, size)
    classes, counts = np.unique(lab, return_counts=True)
    if balance == "equal":
        budget = _equal_budgets(counts, k)
    elif balance == "proportional":
        budget = _proportional_budgets(counts, k)
    else:
        raise ValueError(f"balance == {balance!r}, must be 'equal' or 'proportional'.")
    return {int(c): int(b) for c, b in zip(classes, budget)}


def _equal_budgets(counts: np.ndarray, k: int) -> np.ndarray:
    budget = np.zeros(len(counts), dtype=np.int64)
    active = np.ones(len(counts), dtype=bool)
    remaining = k
    share = 0
    while active.any():  # water-filling: at most C rounds, each removes every class below the share
        share = remaining // int(active.sum())
        small = active & (counts <= share)
        if not small.any():
            break
        budget[small] = counts[small]
        remaining -= int(counts[small].sum())
        active &= ~small
    budget[active] = share
    extra = remaining - share * int(active.sum())
    budget[np.flatnonzero(active)[:extra]] += 1  # active classes have counts > share
    return budget


def _proportional_budgets(counts: np.ndarray, k: int) -> np.ndarray:
    quota = counts * (k / counts.sum())
    budget = np.floor(quota).astype(np.int64)
    extra = k - int(budget.sum())
    order = np.lexsort((np.arange(len(counts)), -(quota - budget)))  # largest remainder first
    budget[order[:extra]] += 1
    return budget


def check_budgets(budgets, labels) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The one budget check: ``{class: k_c}`` against ``labels``.

    Every named class must have samples and ``0 <= k_c <= n_c`` (an int). Classes not named get 0.

    Returns
    -------
    (classes, counts, k_of_class): the sorted classes present, their sizes and their budgets.

    Examples
    --------
    >>> classes, counts, k = check_budgets({1: 2}, np.array([0, 1, 1, 1]))
    >>> classes.tolist(), counts.tolist(), k.tolist()
    ([0, 1], [1, 3], [0, 2])
    """
    if not isinstance(budgets, dict):
        raise TypeError(
            f"budgets must be a dict {{class: k_c}}, not {type(budgets).__name__}; make one with "
            f"cld_hf.class_budgets(labels, fraction=...)."
        )
    classes, counts = np.unique(np.asarray(labels), return_counts=True)
    k_of_class = np.zeros(len(classes), dtype=np.int64)
    for c, k in budgets.items():
        pos = np.searchsorted(classes, c)
        if pos >= len(classes) or classes[pos] != c:
            raise ValueError(
                f"budgets names class {c!r}, which has no sample. Classes present: "
                f"{classes[:20].tolist()}{' ...' if len(classes) > 20 else ''}."
            )
        if isinstance(k, (bool, np.bool_)) or not isinstance(k, (int, np.integer)) or not 0 <= k <= counts[pos]:
            raise ValueError(
                f"budgets[{c!r}] == {k!r}, must be an int between 0 and {counts[pos]} "
                f"(the number of samples of class {c!r}). Make budgets with cld_hf.class_budgets."
            )
        k_of_class[pos] = k
    return classes, counts, k_of_class


def check_scores(scores, labels) -> tuple[np.ndarray, np.ndarray]:
    """``(scores as float64 with NaN -> -inf, labels)``: one score per label; NaN scores rank
    below every other score (a logged warning says how many).

    Examples
    --------
    >>> sc, lab = check_scores([0.5, float("nan")], [0, 1])
    >>> sc.tolist(), lab.tolist()
    ([0.5, -inf], [0, 1])
    >>> check_scores([0.5], [0, 1])
    Traceback (most recent call last):
    ...
    ValueError: scores has shape (1,) but labels has 2 entries; pass one score per sample, ...
    """
    lab = check_labels(labels, "labels")
    sc = np.asarray(scores, dtype=np.float64)
    if sc.ndim != 1 or len(sc) != len(lab):
        raise ValueError(
            f"scores has shape {sc.shape} but labels has {len(lab)} entries; pass one score per "
            f"sample, computed on the same dataset in the same order."
        )
    nan = np.isnan(sc)
    if nan.any():
        logger.warning("%d NaN score(s) are ranked below every other score.", int(nan.sum()))
        sc = np.where(nan, -np.inf, sc)
    return sc, lab


def select_top_per_class(
    scores,
    labels,
    *,
    budgets: dict | None = None,
    fraction: float | None = None,
    size: int | None = None,
    balance: Balance = "equal",
) -> np.ndarray:
    """Indices of the ``k_c`` highest-scoring samples of each class, sorted ascending.

    Parameters
    ----------
    scores : float array of shape (N,)
        Higher is kept first. NaN scores are ranked below every number (with a warning).
    labels : int array of shape (N,)
    budgets : dict, optional
        ``{class: k_c}``, e.g. from :func:`class_budgets`. Classes not named get 0.
        Otherwise ``fraction`` or ``size`` and ``balance`` make the budgets.
    fraction, size, balance
        See :func:`class_budgets`.

    Returns
    -------
    numpy.ndarray of int64: the selected row indices, ascending.

    Notes
    -----
    Equal scores are broken by the lower index (a stable sort), so the result never depends on
    the sorting algorithm.

    Examples
    --------
    >>> scores = [0.1, 0.9, 0.5, 0.5, 0.2, 0.8]
    >>> labels = [0, 0, 0, 1, 1, 1]
    >>> select_top_per_class(scores, labels, size=4).tolist()
    [1, 2, 3, 5]
    >>> select_top_per_class(scores, labels, budgets={0: 1, 1: 2}).tolist()
    [1, 3, 5]
    """
    sc, lab = check_scores(scores, labels)
    if budgets is None:
        budgets = class_budgets(lab, fraction=fraction, size=size, balance=balance)
    elif fraction is not None or size is not None:
        raise ValueError("Pass either budgets= or fraction=/size=, not both.")
    classes, counts, k_of_class = check_budgets(budgets, lab)
    codes = np.searchsorted(classes, lab)
    order = np.lexsort((np.arange(len(sc)), -sc, codes))  # class, then score desc, then index
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rank = np.arange(len(sc)) - starts[codes[order]]
    keep = order[rank < k_of_class[codes[order]]]
    return np.sort(keep).astype(np.int64)


def select_random_per_class(
    labels,
    *,
    budgets: dict | None = None,
    fraction: float | None = None,
    size: int | None = None,
    balance: Balance = "equal",
    seed: int = 0,
) -> np.ndarray:
    """The random class-balanced baseline: ``k_c`` samples drawn uniformly from each class.

    Same budgets as :func:`select_top_per_class`, so a CLD coreset and a random coreset of the
    same size and class balance can be compared.

    Examples
    --------
    >>> idx = select_random_per_class([0, 0, 0, 1, 1, 1], size=4, seed=0)
    >>> len(idx), sorted(np.asarray([0, 0, 0, 1, 1, 1])[idx].tolist())
    (4, [0, 0, 1, 1])
    """
    lab = check_labels(labels, "labels")
    if budgets is None:
        budgets = class_budgets(lab, fraction=fraction, size=size, balance=balance)
    elif fraction is not None or size is not None:
        raise ValueError("Pass either budgets= or fraction=/size=, not both.")
    rng = np.random.default_rng(seed)
    random_scores = rng.random(len(lab))
    return select_top_per_class(random_scores, lab, budgets=budgets)
