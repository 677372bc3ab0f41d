"""Selection strategies over CLD scores: Algorithm 1's top-k and two variants. NumPy only.

CLD ranks a class by how closely each sample's loss differences follow the class's query
trajectory. Measured on digits and MNIST-1D (``scripts/compare_strategies.py``: one proxy run per
setting, 20 target seeds, paired with random), keeping the top ``k_c`` per class (Algorithm 1,
:func:`~cld_hf.selection.select_top_per_class`) filters flipped labels well (0.8-4.4% left in
the coreset against 20% for random, with 20% flipped) but loses 1-6 points to a random coreset
on clean data. The class query trajectory is concentrated in one early epoch (epoch 1 on
MNIST-1D, where CLD has a Spearman correlation of -0.82 with the epoch-1 loss drop; epoch 2 on
digits, -0.48), so the top of the ranking is the samples learned early, the most typical ones.
The low-CLD tail holds the flipped labels on noisy data and the hard-but-correct samples on
clean data. The strategies here use the ranking for what it is good at, finding that tail:

``"top"``
    Algorithm 1 exactly: the ``k_c`` highest scores of each class (:func:`select_top`).
``"random"``
    The random class-balanced baseline (:func:`~cld_hf.selection.select_random_per_class`).
``"noise_adaptive"``
    Drop the ``min(floor(m * q_hat * n_c), n_c - k_c)`` lowest-CLD samples of each class as
    suspected noise, ``q_hat`` estimated from the query set (:func:`estimate_noise_rate`),
    then draw ``k_c`` uniformly from the rest (:func:`select_noise_adaptive`).
``"coverage"``
    The same noise cut, then ``k_c`` samples spread over the proxy's feature space: k-means
    strata of the remaining samples of the class, each stratum sampled in proportion to its
    size (:func:`select_coverage`).

:mod:`cld_hf.diagnosis` says, for a recorded run, which of these the numbers point to.

:data:`STRATEGIES` maps each name to its function; :func:`select_with_strategy` runs one by name.
Every strategy returns int64 row indices, ascending, with exactly ``budgets[c]`` samples of each
class ``c``. The random strategies draw from ``numpy.random.default_rng(seed)``: the same seed
gives the same coreset.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable

import numpy as np

from ._validation import (
    check_bool,
    check_choice,
    check_float,
    check_int,
    check_labels,
    check_real_array,
    raise_non_finite,
)
from .selection import check_budgets, select_random_per_class, select_top_per_class

logger = logging.getLogger(__name__)

__all__ = [
    "STRATEGIES",
    "estimate_noise_rate",
    "suspected_noise",
    "select_top",
    "select_random",
    "select_noise_adaptive",
    "select_coverage",
    "select_with_strategy",
]

# floor(m * q_hat * n_c) is taken on m * q_hat * n_c + this, so that 0.29 * 100 drops 29, not 28.
_FLOOR_EPS = 1e-9


# --------------------------------------------------------------------------------------------
# Checks
# --------------------------------------------------------------------------------------------


def _check_scores(scores, labels) -> tuple[np.ndarray, np.ndarray]:
    """``(scores as float64 with NaN -> -inf, labels)``, one score per label."""
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


def _check_finite(name: str, arr: np.ndarray, fix: str) -> np.ndarray:
    a = np.asarray(arr, dtype=np.float64)
    bad = ~np.isfinite(a)
    if bad.any():
        rows = np.flatnonzero(bad.reshape(len(a), -1).any(axis=1))
        raise_non_finite(name, a, rows, fix=fix)
    return a


def _noise_rate(query_losses, noise_rate, strategy: str) -> float:
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
    q = _check_finite("query_losses", q[:, [first, last]], fix=(
        "A diverged loss cannot be compared: find why these query samples have non-finite "
        "losses and record again."))
    return float(np.mean(q[:, 1] > q[:, 0]))


def _class_layout(sc: np.ndarray, lab: np.ndarray, budgets):
    """Budgets checked once; per-sample class code, and rank within the class (0 = highest)."""
    classes, counts, k_of_class = check_budgets(budgets, lab)
    codes = np.searchsorted(classes, lab)
    n = len(lab)
    order = np.lexsort((np.arange(n), -sc, codes))  # class, then score desc, then lower index
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n) - starts[codes[order]]
    return classes, counts, k_of_class, codes, rank


def _drop_counts(counts, k_of_class, noise_rate: float, drop_multiplier: float) -> np.ndarray:
    wanted = np.floor(drop_multiplier * noise_rate * counts + _FLOOR_EPS).astype(np.int64)
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
    sc, lab = _check_scores(scores, labels)
    noise_rate = check_float("noise_rate", noise_rate, min_val=0.0, max_val=1.0)
    drop_multiplier = check_float("drop_multiplier", drop_multiplier, min_val=0.0)
    _, counts, k_of_class, codes, rank = _class_layout(sc, lab, budgets)
    keep_count = counts - _drop_counts(counts, k_of_class, noise_rate, drop_multiplier)
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


def _random_keys(n: int, seed) -> np.ndarray:
    """The uniform keys of :func:`~cld_hf.selection.select_random_per_class` for ``seed``."""
    seed = check_int("seed", seed, min_val=0)
    return np.random.default_rng(seed).random(n)


def _top_by(keys: np.ndarray, idx: np.ndarray, k: int) -> np.ndarray:
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
    sc, lab = _check_scores(scores, labels)
    q_hat = _noise_rate(query_losses, noise_rate, "noise_adaptive")
    dropped = suspected_noise(sc, lab, budgets=budgets, noise_rate=q_hat,
                              drop_multiplier=drop_multiplier)
    keys = _random_keys(len(lab), seed)
    keys = np.where(dropped, -np.inf, keys)  # dropped rows rank below every kept row
    return select_top_per_class(keys, lab, budgets=budgets)


# ------------------------------------------------------------------------------ coverage


def _kmeans(x: np.ndarray, m: int, rng: np.random.Generator, max_iter: int) -> np.ndarray:
    """Cluster ids (0 .. m-1) of the rows of ``x``: k-means++ seeding, then Lloyd iterations.

    Ties in the assignment go to the lower cluster id. An empty cluster is moved onto the row
    farthest from its centre (among clusters with more than one row). Rows that coincide can
    leave clusters empty when ``x`` has fewer than ``m`` distinct rows.
    """
    n = len(x)
    sq = np.einsum("ij,ij->i", x, x)
    centres = np.empty((m, x.shape[1]))
    chosen = np.zeros(n, dtype=bool)
    first = int(rng.integers(n))
    centres[0] = x[first]
    chosen[first] = True
    d2 = np.maximum(sq - 2.0 * x @ centres[0] + sq[first], 0.0)
    for j in range(1, m):
        total = d2.sum()
        if total > 0.0:
            pick = int(np.searchsorted(np.cumsum(d2), rng.random() * total, side="right"))
            pick = min(pick, n - 1)
        else:  # every row coincides with a centre: take the lowest unused row
            pick = int(np.flatnonzero(~chosen)[0])
        chosen[pick] = True
        centres[j] = x[pick]
        d2 = np.minimum(d2, np.maximum(sq - 2.0 * x @ centres[j] + sq[pick], 0.0))

    assign = np.full(n, -1, dtype=np.int64)
    for _ in range(max_iter):
        dist = sq[:, None] - 2.0 * x @ centres.T + np.einsum("ij,ij->i", centres, centres)[None]
        new = np.argmin(dist, axis=1)
        sizes = np.bincount(new, minlength=m)
        for j in np.flatnonzero(sizes == 0):  # re-seed an empty cluster on the farthest row
            own = dist[np.arange(n), new]
            own[sizes[new] <= 1] = -np.inf
            far = int(np.argmax(own))
            if own[far] <= 0.0:
                break  # coinciding rows: nothing to split
            sizes[new[far]] -= 1
            new[far] = j
            sizes[j] = 1
        if np.array_equal(new, assign):
            break
        assign = new
        sums = np.zeros_like(centres)
        np.add.at(sums, assign, x)
        filled = sizes > 0
        centres[filled] = sums[filled] / sizes[filled, None]
    return assign


def _allocate(sizes: np.ndarray, k: int) -> np.ndarray:
    """``k`` picks over clusters: one per non-empty cluster, the rest proportional to size.

    Needs ``#non-empty <= k <= sizes.sum()``. The rest ``r = k - #non-empty`` goes in
    proportion to the room ``sizes - 1`` of each cluster, largest remainder first (ties to the
    lower cluster id); a cluster never gets more than its size.
    """
    alloc = (sizes > 0).astype(np.int64)
    rest = k - int(alloc.sum())
    room = np.maximum(sizes - 1, 0)
    if rest > 0:
        quota = room * (rest / room.sum())
        extra = np.floor(quota + _FLOOR_EPS).astype(np.int64)
        extra = np.minimum(extra, room)
        left = rest - int(extra.sum())
        order = np.lexsort((np.arange(len(sizes)), -(quota - extra)))
        order = order[(extra[order] < room[order])][:left]
        extra[order] += 1
        alloc += extra
    return alloc


def _systematic(sizes: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """``k`` picks over clusters by systematic sampling: each gets floor or ceil of its share.

    The clusters are laid end to end (sizes ``s_j``, total ``n``) and ``k`` points are put at
    ``(u + i) * n / k``, ``u`` uniform in [0, 1): cluster ``j`` gets the points that fall in
    it, ``floor`` or ``ceil`` of ``k * s_j / n``, and every sample is kept with probability
    ``k / n`` exactly, as in a uniform draw. Needs ``k <= n``.
    """
    n = int(sizes.sum())
    points = (rng.random() + np.arange(k)) * (n / k)
    block = np.searchsorted(np.cumsum(sizes), points, side="right")
    return np.bincount(np.minimum(block, len(sizes) - 1), minlength=len(sizes)).astype(np.int64)


def select_coverage(scores, labels, *, budgets: dict, embeddings, query_losses=None,
                    noise_rate: float | None = None, drop_multiplier: float = 2.0,
                    n_clusters: int | None = None, allocation: str = "proportional",
                    within: str = "random", normalize: bool = True, max_iter: int = 50,
                    seed: int = 0) -> np.ndarray:
    """Noise cut, then ``k_c`` samples spread over the proxy's feature space (k-means strata).

    Design. Top-k CLD keeps the samples learned first, the centre of each class, and covers the
    class worst; a random coreset covers it by density but keeps the flipped labels, and by
    chance draws some regions of a class twice and leaves others out. This strategy uses CLD
    only for what it is good at, the noise cut, and the proxy's features for the spread:

    1. **Noise cut.** As :func:`select_noise_adaptive`: drop the ``min(floor(m * q_hat * n_c),
       n_c - k_c)`` lowest-CLD samples of each class (:func:`suspected_noise`). CLD is only
       used for this cut (and with ``within="cld"``), not to rank the rest.
    2. **Strata.** Cluster the remaining samples of the class by k-means on the proxy's
       penultimate features (L2-normalised, so cosine geometry), ``n_clusters`` clusters
       (default ``k_c``, at most ``k_c``).
    3. **Allocation.** ``allocation="one_per_cluster"``: every cluster gets one sample, the
       other ``k_c - #clusters`` go to the clusters in proportion to their size (largest
       remainder); with the default one cluster per budgeted sample, exactly one sample per
       cluster, so no mode of the class is left out and no region is drawn twice (dense regions
       still get more samples: their clusters are smaller), but sparse regions, outliers and
       the flipped labels the noise cut missed among them, are over-sampled.
       ``allocation="proportional"`` (the default): systematic sampling over the clusters, each
       gets ``floor`` or ``ceil`` of ``k_c * size / n_pool``, so every remaining sample is kept
       with probability ``k_c / n_pool`` exactly, as in the uniform draw of
       ``"noise_adaptive"``, while the number of samples per region no longer varies from draw
       to draw.
    4. **Within a cluster**, ``within="random"`` draws uniformly (the uniform keys of
       :func:`~cld_hf.selection.select_random_per_class` for ``seed``); ``within="cld"`` takes
       the highest CLD score.

    Parameters
    ----------
    scores : float array of shape (N,)
        CLD scores. NaN ranks lowest.
    labels : int array of shape (N,)
    budgets : dict
        ``{class: k_c}`` from :func:`cld_hf.class_budgets`; met exactly.
    embeddings : float array of shape (N, D)
        Penultimate features of the trained proxy: record them with
        ``CLDCallback(..., signals=("embeddings",))`` and read ``store.load_array("embeddings")``.
    query_losses : array of shape (Q, S), optional
        The query loss trajectory, for the noise estimate. Needed unless ``noise_rate`` is given.
    noise_rate : float in [0, 1], optional
        Use this noise rate instead of estimating it; ``0.0`` turns the noise cut off.
    drop_multiplier : float, default 2.0
        See :func:`suspected_noise`.
    n_clusters : int, optional
        Clusters per class (capped at ``k_c`` and at the samples left); ``None`` means ``k_c``.
    allocation : {"proportional", "one_per_cluster"}, default "proportional"
        How the budget is shared over the clusters (step 3).
    within : {"random", "cld"}, default "random"
        How a cluster's samples are chosen.
    normalize : bool, default True
        Cluster the L2-normalised features (cosine geometry) rather than the raw ones.
    max_iter : int, default 50
        Lloyd iterations at most (they stop when the assignment no longer changes).
    seed : int, default 0
        Seed of the k-means seeding and of the uniform draw within clusters.

    Returns
    -------
    numpy.ndarray of int64: the selected row indices, ascending.

    Notes
    -----
    ``"one_per_cluster"`` was the first design, and the default until it was measured
    (``scripts/compare_strategies.py``, 20 seeds): it kept 6-11% flipped labels on 20%-noisy
    data against 3-5% for ``"noise_adaptive"`` (the flipped labels the cut misses are outliers
    in feature space, alone in their clusters), and on clean data it was within -1.0 to +1.3
    points of random. ``"proportional"`` then kept 3.5-5.2% flipped labels and was +0.3 to
    +1.5 points above random on clean digits and MNIST-1D, and +0.3 to +1.0 on 20 fresh seeds:
    small gains, each within about two standard errors, on one proxy run per dataset.

    Deterministic for a given seed (on one NumPy build: the k-means distances use BLAS). The
    clustering of a class is seeded by ``(seed, class position)``, so changing one class's
    budget does not change the others' coresets. Ties of the k-means assignment go to the lower
    cluster id; ties of ``within="cld"`` to the lower index. Cost per class
    ``O(n_c * k_c * D)`` per Lloyd iteration.

    Examples
    --------
    Two tight groups of 3 samples in one class: a budget of 2 takes one from each (a uniform
    draw takes both from the same group in 40% of draws):

    >>> emb = [[0.0, 1.0], [0.1, 1.0], [0.0, 1.1], [1.0, 0.0], [1.0, 0.1], [1.1, 0.0]]
    >>> idx = select_coverage(np.zeros(6), [0] * 6, budgets={0: 2}, embeddings=emb, noise_rate=0.0)
    >>> sorted(i >= 3 for i in idx.tolist())
    [False, True]
    """
    sc, lab = _check_scores(scores, labels)
    if embeddings is None:
        raise ValueError(
            "strategy 'coverage' needs embeddings= (N, D): the proxy's penultimate features. "
            "Record them with CLDCallback(..., signals=('embeddings',)) and pass "
            "LossTrajectories(dir).load_array('embeddings')."
        )
    x = check_real_array(embeddings, "embeddings", ndim=2, layout="(N, D)")
    if len(x) != len(lab):
        raise ValueError(
            f"embeddings has {len(x)} rows but labels has {len(lab)} entries; record the "
            f"features on the same training set, in the same sample order (row i = sample i)."
        )
    x = _check_finite("embeddings", x, fix=(
        "The features cannot be clustered: find why the proxy produced non-finite features and "
        "record them again."))
    check_choice("within", within, ("random", "cld"))
    check_choice("allocation", allocation, ("proportional", "one_per_cluster"))
    normalize = check_bool("normalize", normalize)
    if n_clusters is not None:
        n_clusters = check_int("n_clusters", n_clusters, min_val=1)
    max_iter = check_int("max_iter", max_iter, min_val=1)
    seed = check_int("seed", seed, min_val=0)
    q_hat = _noise_rate(query_losses, noise_rate, "coverage")
    dropped = suspected_noise(sc, lab, budgets=budgets, noise_rate=q_hat,
                              drop_multiplier=drop_multiplier)
    if normalize:
        norms = np.sqrt(np.einsum("ij,ij->i", x, x))
        x = x / np.where(norms > 0.0, norms, 1.0)[:, None]
    keys = _random_keys(len(lab), seed) if within == "random" else sc
    classes, _, k_of_class = check_budgets(budgets, lab)
    codes = np.searchsorted(classes, lab)
    chosen = []
    for code, k in enumerate(k_of_class):
        if k == 0:
            continue
        pool = np.flatnonzero((codes == code) & ~dropped)
        m = min(int(k), len(pool) if n_clusters is None else n_clusters)
        if k >= len(pool) or m == 1:
            chosen.append(_top_by(keys, pool, int(k)))
            continue
        rng = np.random.default_rng([seed, code])
        assign = _kmeans(x[pool], m, rng, max_iter)
        sizes = np.bincount(assign, minlength=m)
        if allocation == "proportional":
            alloc = _systematic(sizes, int(k), rng)
        else:
            alloc = _allocate(sizes, int(k))
        for j in np.flatnonzero(alloc):
            chosen.append(_top_by(keys, pool[assign == j], int(alloc[j])))
    if not chosen:
        return np.zeros(0, dtype=np.int64)
    return np.sort(np.concatenate(chosen)).astype(np.int64)


# --------------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------------

STRATEGIES: dict[str, Callable[..., np.ndarray]] = {
    "top": select_top,
    "random": select_random,
    "noise_adaptive": select_noise_adaptive,
    "coverage": select_coverage,
}
"""Strategy name -> function. Each returns int64 row indices, ascending, ``budgets[c]`` per
class; :func:`select_with_strategy` passes each only the inputs its signature names."""

# Inputs select_with_strategy hands to the strategies that take them (not options).
_INPUTS = ("scores", "labels", "budgets", "seed", "query_losses", "embeddings")


def select_with_strategy(scores, labels, *, budgets: dict, strategy: str = "top", seed: int = 0,
                         query_losses=None, embeddings=None, **options) -> np.ndarray:
    """Select a coreset with the strategy named ``strategy`` (see :data:`STRATEGIES`).

    Parameters
    ----------
    scores : float array of shape (N,)
        CLD scores (``"random"`` does not read them).
    labels : int array of shape (N,)
    budgets : dict
        ``{class: k_c}`` from :func:`cld_hf.class_budgets`; every strategy meets it exactly.
    strategy : {"top", "random", "noise_adaptive", "coverage"}, default "top"
        ``"top"`` is Algorithm 1 of the paper (``select_top_per_class``).
    seed : int, default 0
        Seed of the random strategies (``"top"`` is deterministic and ignores it).
    query_losses : array of shape (Q, S), optional
        The query loss trajectory, for the noise estimate of ``"noise_adaptive"`` and
        ``"coverage"``. Strategies that do not use it ignore it.
    embeddings : array of shape (N, D), optional
        The proxy's penultimate features, for ``"coverage"``; ignored by the others.
    **options
        Options of the strategy's function, e.g. ``drop_multiplier=2.0``, ``noise_rate=0.2``
        (``"noise_adaptive"``, ``"coverage"``), ``n_clusters``, ``within`` (``"coverage"``). An
        option the strategy does not take is an error.

    Returns
    -------
    numpy.ndarray of int64: the selected row indices, ascending.

    Examples
    --------
    >>> scores = [0.9, -0.5, 0.1, 0.7, 0.8, -0.9, 0.2, 0.6]
    >>> labels = [0, 0, 0, 0, 1, 1, 1, 1]
    >>> select_with_strategy(scores, labels, budgets={0: 2, 1: 2}).tolist()
    [0, 3, 4, 7]
    >>> select_with_strategy(scores, labels, budgets={0: 1, 1: 1}, strategy="noise_adaptive",
    ...                      noise_rate=0.25, seed=3).tolist()   # one of 0, 3 and one of 4, 7
    [3, 7]
    >>> select_with_strategy(scores, labels, budgets={0: 1, 1: 1}, strategy="noise_adaptive")
    Traceback (most recent call last):
    ...
    ValueError: strategy 'noise_adaptive' needs the noise rate: pass query_losses= ...
    """
    if strategy not in STRATEGIES:
        raise ValueError(
            f"strategy == {strategy!r}, must be one of {list(STRATEGIES)} (cld_hf.strategies."
            f"STRATEGIES)."
        )
    fn = STRATEGIES[strategy]
    params = inspect.signature(fn).parameters
    accepted = [p for p in params if p not in _INPUTS]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise TypeError(
            f"strategy {strategy!r} takes no option(s) {unknown}; its options are {accepted}."
        )
    given = {"scores": scores, "labels": labels, "budgets": budgets, "seed": seed,
             "query_losses": query_losses, "embeddings": embeddings}
    args = {name: value for name, value in given.items() if name in params}
    if "scores" in params:
        return fn(args.pop("scores"), args.pop("labels"), **args, **options)
    return fn(args.pop("labels"), **args, **options)
