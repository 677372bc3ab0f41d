"""The noise cut of the strategies: the noise-rate estimate, the suspected-noise tail, and
``noise_adaptive`` (drop the tail, sample the rest). NumPy only.
"""

from __future__ import annotations

import logging

import numpy as np

from .._validation import (
    check_float,
    check_int,
    check_real_array,
    raise_non_finite,
)
from ..selection import check_budgets, check_scores, select_random_per_class, select_top_per_class

logger = logging.getLogger(__name__)

# floor(m * q_hat * n_c) is taken on m * q_hat * n_c + this, so that 0.29 * 100 drops 29, not 28.
FLOOR_EPS = 1e-9


# --------------------------------------------------------------------------------------------
# Checks
# --------------------------------------------------------------------------------------------


def check_finite(name: str, arr: np.ndarray, fix: str) -> np.ndarray:
    a = np.asarray(arr, dtype=np.float64)
    bad = ~np.isfinite(a)
    if bad.any():
        rows = np.flatnonzero(bad.reshape(len(a), -1).any(axis=1))
        raise_non_finite(name, a, rows, fix=fix)
    return a


def noise_rate_or_estimate(query_losses, noise_rate, strategy: str) -> float:
    """``noise_rate`` if given, else :func:`estimate_noise_rate` of ``query_losses``."""
    if noise_rate is not None:
        return check_float("noise_rate", noise_rate, min_val=0.0, max_val=1.0)
    if query_losses is None:
        raise ValueError(
            f"strategy {strategy!r} needs the noise rate: pass query_losses= (the (Q, S) query "
            f"loss trajectory, e.g. LossTrajectories(dir).query_losses()) to estimate it, or "
            f"noise_rate= (a share in [0, 1]) if you know it."
        )
    return estimate_noise_rate(query_losses)


# --------------------------------------------------------------------------------------------
# The noise estimate and the noise cut
# --------------------------------------------------------------------------------------------


def estimate_noise_rate(query_losses, *, first: int = 0, last: int = -1) -> float:
    """Estimated share of noisy labels: the query samples whose loss rose during proxy training.

    ``q_hat = mean(query_losses[:, last] > query_losses[:, first])``. A proxy trained on mostly
    correct labels learns the true class of a held-out sample, so the loss on its label falls if
    the label is right and rises if it was flipped.

    Parameters
    ----------
    query_losses : array of shape (Q, S)
        Loss of each query sample at each snapshot, in time order (snapshot 0 before training).
    first, last : int, default 0 and -1
        The two snapshots compared (Python indexing; ``last`` must come after ``first``).

    Returns
    -------
    float in [0, 1].

    Notes
    -----
    Assumptions, and what breaks them:

    - The query set is as noisy as the training set. The paper's protocol, a stratified hold-out
      of the (noisy) training split, gives that. With a curated clean query set, ``q_hat`` is
      about 0 whatever the training noise, and the noise-adaptive strategy falls back to random.
    - The proxy generalises: a correctly labelled query sample ends with a lower loss than at
      initialisation. Query samples the proxy gets wrong, or more wrong as it overfits, also
      count: on clean data ``q_hat`` is the share of such hard samples (a few percent on digits
      and MNIST-1D), so it is an upper estimate of the label noise.
    - Snapshot ``first`` is taken at (or near) initialisation, when every loss is about
      ``log C``. An equal first and last loss does not count.

    Examples
    --------
    >>> q = [[2.3, 1.0, 0.2],    # learned
    ...      [2.3, 2.0, 1.5],    # learned slowly
    ...      [2.3, 3.1, 4.0],    # rose: a flipped label?
    ...      [2.3, 2.3, 2.3]]    # unchanged: not counted
    >>> estimate_noise_rate(q)
    0.25
    >>> estimate_noise_rate(q, last=1)   # after the first epoch
    0.25
    """
    q = check_real_array(query_losses, "query_losses")
    n, s = q.shape
    if n == 0:
        raise ValueError(
            "query_losses is empty (Q == 0): the noise rate is estimated on held-out query "
            "samples. Split a stratified query set off the training data first."
        )
    if s < 2:
        raise ValueError(
            f"query_losses has {s} snapshot(s); estimating the noise rate compares two "
            f"snapshots: record the query losses before training and after the last epoch."
        )
    first = check_int("first", first, min_val=-s, max_val=s - 1)
    last = check_int("last", last, min_val=-s, max_val=s - 1)
    if first % s >= last % s:
        raise ValueError(
            f"first == {first} and last == {last} are snapshots {first % s} and {last % s} of "
            f"{s}; last must come after first."
        )
    q = check_finite("query_losses", q[:, [first, last]], fix=(
        "A diverged loss cannot be compared: find why these query samples have non-finite "
        "losses and record again."))
    return float(np.mean(q[:, 1] > q[:, 0]))


def class_layout(sc: np.ndarray, lab: np.ndarray, budgets):
    """Budgets checked once; per-sample class code, and rank within the class (0 = highest)."""
    classes, counts, k_of_class = check_budgets(budgets, lab)
    codes = np.searchsorted(classes, lab)
    n = len(lab)
    order = np.lexsort((np.arange(n), -sc, codes))  # class, then score desc, then lower index
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n) - starts[codes[order]]
    return classes, counts, k_of_class, codes, rank


def drop_counts(counts, k_of_class, noise_rate: float, drop_multiplier: float) -> np.ndarray:
    wanted = np.floor(drop_multiplier * noise_rate * counts + FLOOR_EPS).astype(np.int64)
    return np.minimum(wanted, counts - k_of_class)


def suspected_noise(scores, labels, *, budgets: dict, noise_rate: float,
                    drop_multiplier: float = 2.0) -> np.ndarray:
    """Mask of the samples the noise cut drops: the lowest CLD scores of each class.

    Class ``c`` (``n_c`` samples, budget ``k_c``) drops ``min(floor(m * q * n_c), n_c - k_c)``
    samples, ``m = drop_multiplier`` and ``q = noise_rate``: never so many that the class cannot
    meet its budget.

    Parameters
    ----------
    scores : float array of shape (N,)
        CLD scores (higher = more like the query trajectory). NaN ranks lowest (dropped first).
    labels : int array of shape (N,)
    budgets : dict
        ``{class: k_c}`` from :func:`cld_hf.class_budgets`; caps the drop.
    noise_rate : float in [0, 1]
        E.g. :func:`estimate_noise_rate` of the query losses.
    drop_multiplier : float, default 2.0
        Drop ``m`` times the noise rate: flipped labels fill the low-CLD tail but mix with hard
        clean samples there, so dropping just ``q * n_c`` misses many of them (on 20%-noisy
        digits the bottom 20% is 75% flipped). 2 kept about 1-2% flipped labels in the coresets
        measured on digits and MNIST-1D.

    Returns
    -------
    numpy.ndarray of bool, shape (N,): True = dropped as suspected noise.

    Notes
    -----
    Equal scores are ranked as in :func:`~cld_hf.selection.select_top_per_class` (the lower
    index is kept first), so among equal scores the higher indices are dropped first.

    Examples
    --------
    >>> scores = [0.9, -0.5, 0.1, 0.7, 0.8, -0.9, 0.2, 0.6]
    >>> labels = [0, 0, 0, 0, 1, 1, 1, 1]
    >>> suspected_noise(scores, labels, budgets={0: 2, 1: 2}, noise_rate=0.25).nonzero()[0].tolist()
    [1, 2, 5, 6]
    >>> suspected_noise(scores, labels, budgets={0: 3, 1: 2}, noise_rate=0.25).nonzero()[0].tolist()
    [1, 5, 6]
    """
    sc, lab = check_scores(scores, labels)
    noise_rate = check_float("noise_rate", noise_rate, min_val=0.0, max_val=1.0)
    drop_multiplier = check_float("drop_multiplier", drop_multiplier, min_val=0.0)
    _, counts, k_of_class, codes, rank = class_layout(sc, lab, budgets)
    keep_count = counts - drop_counts(counts, k_of_class, noise_rate, drop_multiplier)
    return rank >= keep_count[codes]


# --------------------------------------------------------------------------------------------
# Strategies
# --------------------------------------------------------------------------------------------


def select_top(scores, labels, *, budgets: dict) -> np.ndarray:
    """Algorithm 1: the ``k_c`` highest scores of each class (``select_top_per_class``).

    Examples
    --------
    >>> scores, labels = [0.1, 0.9, 0.5, 0.5, 0.2, 0.8], [0, 0, 0, 1, 1, 1]
    >>> select_top(scores, labels, budgets={0: 1, 1: 2}).tolist()
    [1, 3, 5]
    """
    return select_top_per_class(scores, labels, budgets=budgets)


def select_random(labels, *, budgets: dict, seed: int = 0) -> np.ndarray:
    """The random class-balanced baseline (``select_random_per_class``), seeded.

    Examples
    --------
    >>> idx = select_random([0, 0, 0, 1, 1, 1], budgets={0: 1, 1: 2}, seed=0)
    >>> np.asarray([0, 0, 0, 1, 1, 1])[idx].tolist()
    [0, 1, 1]
    """
    return select_random_per_class(labels, budgets=budgets, seed=seed)


def random_keys(n: int, seed) -> np.ndarray:
    """The uniform keys of :func:`~cld_hf.selection.select_random_per_class` for ``seed``."""
    seed = check_int("seed", seed, min_val=0)
    return np.random.default_rng(seed).random(n)


def top_by(keys: np.ndarray, idx: np.ndarray, k: int) -> np.ndarray:
    """The ``k`` rows of ``idx`` with the highest ``keys`` (ties to the lower index)."""
    if k >= len(idx):
        return idx
    order = np.lexsort((idx, -keys[idx]))
    return idx[order[:k]]


def select_noise_adaptive(scores, labels, *, budgets: dict, query_losses=None,
                          noise_rate: float | None = None, drop_multiplier: float = 2.0,
                          seed: int = 0) -> np.ndarray:
    """Drop the suspected noise (lowest CLD per class), then draw ``k_c`` uniformly from the rest.

    1. ``q_hat`` = :func:`estimate_noise_rate` of ``query_losses`` (or ``noise_rate``).
    2. In each class drop the ``min(floor(m * q_hat * n_c), n_c - k_c)`` lowest-CLD samples
       (:func:`suspected_noise`, ``m = drop_multiplier``).
    3. Draw ``k_c`` samples uniformly from the remaining ones.

    The draw uses the same uniform keys as :func:`~cld_hf.selection.select_random_per_class`
    with the same seed: the ``k_c`` remaining samples with the highest keys. So with nothing
    dropped (``q_hat = 0``, e.g. a clean curated query set) the coreset *is* the random
    baseline's, and otherwise it is the random coreset with its suspected-noise samples replaced
    by the next draws: a paired comparison with random isolates the effect of the noise cut.

    Parameters
    ----------
    scores : float array of shape (N,)
        CLD scores. NaN ranks lowest.
    labels : int array of shape (N,)
    budgets : dict
        ``{class: k_c}`` from :func:`cld_hf.class_budgets`; met exactly.
    query_losses : array of shape (Q, S), optional
        The query loss trajectory, to estimate the noise rate. Needed unless ``noise_rate`` is
        given.
    noise_rate : float in [0, 1], optional
        Use this noise rate instead of estimating it.
    drop_multiplier : float, default 2.0
        ``m`` above (see :func:`suspected_noise`).
    seed : int, default 0
        Seed of the uniform draw.

    Returns
    -------
    numpy.ndarray of int64: the selected row indices, ascending.

    Examples
    --------
    >>> scores = [0.9, -0.5, 0.1, 0.7, 0.8, -0.9, 0.2, 0.6]
    >>> labels = [0, 0, 0, 0, 1, 1, 1, 1]
    >>> idx = select_noise_adaptive(scores, labels, budgets={0: 2, 1: 2}, noise_rate=0.25)
    >>> idx.tolist()   # rows 1, 2, 5, 6 are dropped: the rest is exactly the budget
    [0, 3, 4, 7]
    >>> query = [[2.3, 0.5], [2.3, 0.4], [2.3, 3.0], [2.3, 0.9]]   # 1 of 4 rose: q_hat = 0.25
    >>> select_noise_adaptive(scores, labels, budgets={0: 2, 1: 2}, query_losses=query).tolist()
    [0, 3, 4, 7]
    """
    sc, lab = check_scores(scores, labels)
    q_hat = noise_rate_or_estimate(query_losses, noise_rate, "noise_adaptive")
    dropped = suspected_noise(sc, lab, budgets=budgets, noise_rate=q_hat,
                              drop_multiplier=drop_multiplier)
    keys = random_keys(len(lab), seed)
    keys = np.where(dropped, -np.inf, keys)  # dropped rows rank below every kept row
    return select_top_per_class(keys, lab, budgets=budgets)


# ------------------------------------------------------------------------------ coverage


