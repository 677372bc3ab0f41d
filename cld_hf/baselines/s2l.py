"""S2L (SmallToLarge; Yang et al., NeurIPS 2024): balanced sampling over k-means clusters of the
proxy's loss trajectories.

S2L trains a small proxy, records every training sample's loss at ``S`` checkpoints, clusters
the ``(N, S)`` loss trajectories with k-means and fills the budget **evenly across the
clusters**: the smallest cluster first, each taking ``min(its size, budget left // clusters
left)``, drawn uniformly at random inside the cluster. Samples with similar trajectories have
similar gradients (the paper's argument), so covering every trajectory cluster covers the
training dynamics of the full set. It reads the same loss trajectories CLD does (signal
``loss``), with no query set.

Kind: a **sampler** (``"select"``): :func:`s2l_select` returns the selected row indices and
keeps exactly ``budgets[c]`` samples of every class or group ``c`` (one group for label-free
data: ``labels = np.zeros(N, int)``).

NumPy and scikit-learn (``KMeans``, or ``MiniBatchKMeans`` with ``batch_size=``); imported when
first used (``pip install scikit-learn``).

Examples
--------
>>> loss = [[3.0, 1.0], [3.1, 1.1], [2.9, 0.9], [3.0, 3.0], [3.1, 2.9], [2.9, 3.1]]
>>> sel = s2l_select([0] * 6, {0: 2}, loss, n_clusters=2, seed=0)
>>> sorted(int(i) // 3 for i in sel)          # one sample from each trajectory cluster
[0, 1]
"""

from __future__ import annotations

import warnings

import numpy as np

from .._validation import check_int, check_labels
from .common import check_array, check_budgets

__all__ = ["s2l_select", "s2l_clusters", "s2l_cluster_quotas", "S2L_COST", "S2L_STORAGE",
           "S2L_REFERENCE"]

S2L_COST = ("3N T_proxy f + N S f (the loss of every sample at S checkpoints; shared with "
            "CLD's sweeps) + O(N K S I) k-means + 3k T f_large")
"""Compute of S2L in the seed's Appendix E notation (``K`` clusters, ``I`` k-means iterations,
``S`` recorded checkpoints); S2L is not in Appendix E."""

S2L_STORAGE = "O(N S) (loss trajectories) + O(K S) (centroids)"
"""Selection-stage storage overhead of S2L, in Appendix E's style."""

S2L_REFERENCE = ("Yang et al., NeurIPS 2024 (SmallToLarge, S2L; "
                 "github.com/BigML-CS-UCLA/S2L, schedules/s2l.py)")


def _kmeans_module():
    try:
        from sklearn import cluster
        from sklearn.exceptions import ConvergenceWarning
    except ImportError as err:  # pragma: no cover - scikit-learn is installed in the dev setup
        raise ImportError(
            "S2L clusters the loss trajectories with scikit-learn's KMeans: "
            "pip install scikit-learn"
        ) from err
    return cluster, ConvergenceWarning


def s2l_clusters(
    loss,
    *,
    n_clusters: int = 100,
    max_iter: int = 20,
    max_points_per_centroid: int | None = 256,
    batch_size: int | None = None,
    init="random",
    seed: int = 0,
) -> np.ndarray:
    """K-means cluster of every loss trajectory (the clustering step of S2L, one group).

    Euclidean k-means on the raw trajectories (no normalisation, as the S2L code), initialised
    with ``n_clusters`` distinct random trajectories and run for at most ``max_iter`` Lloyd
    iterations, one run (faiss ``Kmeans(d, K, niter=20)`` in the S2L code).

    Parameters
    ----------
    loss : float array of shape (n, S)
        Loss trajectories of the samples of one group (signal ``loss``), finite.
    n_clusters : int, default 100
        ``K``, the S2L code's ``n_components`` (100 in its configs). At most ``n`` clusters are
        made.
    max_iter : int, default 20
        Lloyd iterations (faiss' ``niter``); fewer when the assignment stops changing.
    max_points_per_centroid : int or None, default 256
        Fit on a random subsample of ``n_clusters * max_points_per_centroid`` trajectories when
        there are more, then assign every trajectory to its nearest centroid (faiss' default,
        which the S2L code keeps). None fits on all of them.
    batch_size : int or None, default None
        None: ``sklearn.cluster.KMeans`` (Lloyd, exact). An int: ``MiniBatchKMeans`` with that
        batch size (``max_iter`` passes over the data), for fitting on millions of trajectories.
    init : {"random", "k-means++"} or float array of shape (K, S), default "random"
        ``"random"``: ``K`` distinct trajectories drawn at random (faiss, hence the S2L code);
        ``"k-means++"``: scikit-learn's seeding (fewer bad local optima); an array: these
        initial centroids (``K`` clusters).
    seed : int, default 0
        Seeds the initial centroids and the subsample.

    Returns
    -------
    numpy.ndarray of int64, shape (n,): the cluster of each trajectory, ``0 .. K - 1`` (some
    ids may be unused when trajectories repeat).

    Examples
    --------
    >>> loss = [[3.0, 1.0], [3.1, 1.1], [3.0, 3.0], [3.1, 2.9]]
    >>> c = s2l_clusters(loss, n_clusters=2)
    >>> bool(c[0] == c[1]), bool(c[2] == c[3]), bool(c[0] != c[2])
    (True, True, True)
    """
    x = check_array(loss, "loss", ndim=2, layout="(N, S)")
    n_clusters = check_int("n_clusters", n_clusters, min_val=1)
    max_iter = check_int("max_iter", max_iter, min_val=1)
    if max_points_per_centroid is not None:
        check_int("max_points_per_centroid", max_points_per_centroid, min_val=1)
    if batch_size is not None:
        check_int("batch_size", batch_size, min_val=1)
    seed = check_int("seed", seed, min_val=0)
    n = len(x)
    if isinstance(init, str):
        if init not in ("random", "k-means++"):
            raise ValueError(f"init == {init!r}, must be 'random', 'k-means++' or an array of "
                             f"initial centroids (K, S).")
        k = min(n_clusters, n)
    else:
        init = check_array(init, "init", ndim=2, layout="(K, S)")
        if init.shape[1] != x.shape[1] or len(init) > n:
            raise ValueError(
                f"init has shape {init.shape}, must be (K, {x.shape[1]}) with K <= {n} (one "
                f"row per initial centroid, as many columns as loss has snapshots).")
        k = len(init)
    if k == 1:
        return np.zeros(n, dtype=np.int64)
    cluster, convergence_warning = _kmeans_module()
    fit_rows = x
    if max_points_per_centroid is not None and n > k * max_points_per_centroid:
        sub = np.random.default_rng(seed).choice(n, size=k * max_points_per_centroid,
                                                 replace=False)
        fit_rows = x[np.sort(sub)]
    if batch_size is None:
        model = cluster.KMeans(n_clusters=k, init=init, n_init=1, max_iter=max_iter, tol=0.0,
                               random_state=seed, algorithm="lloyd")
    else:
        model = cluster.MiniBatchKMeans(n_clusters=k, init=init, n_init=1,
                                        max_iter=max_iter, batch_size=batch_size,
                                        random_state=seed)
    with warnings.catch_warnings():
        # Fewer distinct trajectories than clusters: some clusters stay empty, which is fine.
        warnings.simplefilter("ignore", convergence_warning)
        model.fit(fit_rows)
    return np.asarray(model.predict(x), dtype=np.int64)


def s2l_cluster_quotas(assignment, k: int, *, min_cluster_size: int = 3):
    """How many samples S2L draws from each cluster: smallest clusters first, equal shares.

    The clusters with at least ``min_cluster_size`` members are visited from the smallest to
    the largest (equal sizes: the cluster holding the lower row first); each takes
    ``min(its size, budget left // clusters left)``, so the largest cluster takes what is left.
    When those clusters cannot fill ``k`` (all smaller than their share), the rest is drawn from
    the pooled smaller clusters (the S2L code's "clusters with size <= 2").

    Parameters
    ----------
    assignment : int array of shape (n,)
        The cluster of each sample (:func:`s2l_clusters`).
    k : int
        The budget, ``0 <= k <= n``.
    min_cluster_size : int, default 3
        Clusters smaller than this are only drawn from, pooled, after the others.

    Returns
    -------
    (order, quotas, pooled) : the cluster ids visited, in order; the count drawn from each of
    them; and the count drawn from the pool of the small clusters.

    Examples
    --------
    Clusters of 2, 4, 5 and 9 samples, budget 12: cluster 0 is too small to be visited, the
    others get ``12 // 3 = 4``, ``8 // 2 = 4`` and ``4 // 1 = 4``:

    >>> assignment = [0] * 2 + [1] * 4 + [2] * 5 + [3] * 9
    >>> order, quotas, pooled = s2l_cluster_quotas(assignment, 12)
    >>> order.tolist(), quotas.tolist(), pooled
    ([1, 2, 3], [4, 4, 4], 0)
    """
    a = check_labels(assignment, "assignment")
    k = check_int("k", k, min_val=0, max_val=len(a))
    min_cluster_size = check_int("min_cluster_size", min_cluster_size, min_val=1)
    ids, first, sizes = np.unique(a, return_index=True, return_counts=True)
    big = sizes >= min_cluster_size
    order = np.lexsort((first[big], sizes[big]))  # size ascending, then the lower first row
    visit, visit_sizes = ids[big][order], sizes[big][order]
    quotas = np.zeros(len(visit), dtype=np.int64)
    left = k
    for i, size in enumerate(visit_sizes):
        quotas[i] = min(int(size), left // (len(visit) - i))
        left -= int(quotas[i])
    return visit.astype(np.int64), quotas, left


def s2l_select(
    labels,
    budgets: dict,
    loss,
    *,
    n_clusters: int = 100,
    min_cluster_size: int = 3,
    max_iter: int = 20,
    max_points_per_centroid: int | None = 256,
    batch_size: int | None = None,
    init: str = "random",
    seed: int = 0,
) -> np.ndarray:
    """S2L (SmallToLarge; Yang et al., NeurIPS 2024): balanced draws over loss-trajectory clusters.

    In each class (or group) ``c`` with ``budgets[c] > 0``: cluster the group's loss
    trajectories with k-means (:func:`s2l_clusters`), share ``budgets[c]`` over the clusters
    from the smallest to the largest, each taking ``min(its size, budget left // clusters
    left)`` (:func:`s2l_cluster_quotas`), and draw that many of its samples uniformly at random
    without replacement. A group whose whole set is kept is not clustered.

    Kind: a **sampler**. Give label-free data one group (``labels = np.zeros(N, int)``,
    ``budgets = {0: k}``); S2L's own per-source split (smallest source first, equal shares) is
    ``cld_hf.class_budgets(sources, size=k)`` (``balance="equal"``).

    Parameters
    ----------
    labels : int array of shape (N,)
        Class or group of each sample.
    budgets : dict
        ``{class: k_c}`` from :func:`cld_hf.class_budgets`; respected exactly.
    loss : float array of shape (N, S)
        The per-sample loss at every recorded snapshot (signal ``loss``:
        ``LossTrajectories.train_losses()``), finite.
    n_clusters : int, default 100
        ``K`` per group (the S2L code's ``n_components``; 100 in its configs); at most the
        group's size.
    min_cluster_size : int, default 3
        Clusters smaller than this are drawn from last, pooled (the S2L code skips clusters of
        size <= 2 until the others are exhausted).
    max_iter : int, default 20
        k-means iterations (faiss' ``niter`` in the S2L code).
    max_points_per_centroid : int or None, default 256
        k-means fits on at most ``K * max_points_per_centroid`` trajectories of a group (faiss'
        default); None fits on all.
    batch_size : int or None, default None
        Use ``MiniBatchKMeans`` with this batch size instead of ``KMeans``.
    init : {"random", "k-means++"}, default "random"
        Initial centroids: random trajectories (the S2L code, through faiss) or k-means++.
    seed : int, default 0
        Seeds the k-means initialisation and the draws inside the clusters.

    Returns
    -------
    numpy.ndarray of int64: the selected row indices, ascending.

    Notes
    -----
    Matches ``schedules/s2l.py`` of the official code (github.com/BigML-CS-UCLA/S2L): raw loss
    trajectories, no normalisation; K = 100; k-means from random initial centroids, 20
    iterations, one run; clusters visited smallest first with ``budget left // clusters left``;
    clusters of size <= 2 used only for what is left; uniform draws without replacement. The
    tests compare it with an independent implementation of that loop.

    What differs:

    - the official code turns NaN losses into 0; here a NaN or inf loss is an error naming the
      rows (a sequence without target tokens has no loss: drop it or record it again);
    - scikit-learn's ``KMeans`` instead of faiss (same algorithm: random initial centroids from
      the data, Lloyd iterations; not the same random numbers), seeded by ``seed``; the draws
      use ``numpy.random.default_rng(seed)`` instead of numpy's global generator;
    - clusters of equal size are visited in a fixed order (the one holding the lower row
      first), where the official ``np.argsort`` leaves it to the sorting algorithm;
    - the per-source budgets come from ``budgets`` (``class_budgets``), whose remainder goes to
      the lowest labels, where the official loop gives it to the largest sources;
    - ``K`` is capped at the group's size (faiss fails with fewer points than centroids);
    - the official trajectories hold the loss at every saved checkpoint (every 500 steps in its
      configs); here, at every recorded snapshot (by default before training and after every
      epoch, the eval sweeps CLD records anyway).

    Cost, in the seed's Appendix E notation (S2L is not in Appendix E; ``K`` clusters, ``I``
    iterations, ``S`` snapshots): compute ``3N T_proxy f + N S f + O(N K S I) + 3k T f_large``
    (proxy training, the loss sweeps at the S checkpoints, k-means, the large model on the
    coreset); the ``N S f`` sweeps are the ones CLD records, so next to CLD S2L costs only the
    k-means. Storage ``O(N S)`` (the trajectories) ``+ O(K S)`` (centroids). In the Appendix E
    scenario (ImageNet-1k, ``N = 1,268,355``, ``T_proxy = T = 90``, ``S = 91``, ``K = 100``,
    ``I = 20``): ``622.663 + 209.860 (N S f) + 0.0005 (k-means, 2 N K S I FLOPs) + 280.061 =
    1,112.58`` PFLOPs, or ``902.72`` when the losses come from the training passes (how
    Appendix E counts CLD's, ``mode="train_pass"`` here); storage ``N S x 4 B = 0.462`` GB.

    Examples
    --------
    Two groups, each with two trajectory clusters (falling fast, staying high); every cluster
    gets its share:

    >>> loss = np.array([[3.0, 0.5]] * 4 + [[3.0, 2.9]] * 4 + [[2.0, 0.2]] * 4 + [[2.0, 1.9]] * 4)
    >>> loss = loss + np.linspace(0, 0.01, 16)[:, None]   # distinct trajectories
    >>> labels = [0] * 8 + [1] * 8
    >>> sel = s2l_select(labels, {0: 4, 1: 2}, loss, n_clusters=2, seed=0)
    >>> np.bincount(sel // 4).tolist()                    # per cluster of 4 rows
    [2, 2, 1, 1]
    """
    x = check_array(loss, "loss", ndim=2, layout="(N, S)")
    lab = check_labels(labels, "labels", len(x), against="the signals")
    for name, value in (("n_clusters", n_clusters), ("max_iter", max_iter),
                        ("min_cluster_size", min_cluster_size)):
        check_int(name, value, min_val=1)
    for name, value in (("max_points_per_centroid", max_points_per_centroid),
                        ("batch_size", batch_size)):
        if value is not None:
            check_int(name, value, min_val=1)
    seed = check_int("seed", seed, min_val=0)
    if not isinstance(init, str) or init not in ("random", "k-means++"):
        raise ValueError(f"init == {init!r}, must be 'random' or 'k-means++' (one set of "
                         f"initial centroids cannot serve every group).")
    rng = np.random.default_rng(seed)
    chosen = []
    for _, idx, k in check_budgets(budgets, lab):
        if k == len(idx):
            chosen.append(idx)
            continue
        assignment = s2l_clusters(x[idx], n_clusters=n_clusters, max_iter=max_iter,
                                  max_points_per_centroid=max_points_per_centroid,
                                  batch_size=batch_size, init=init, seed=seed)
        order, quotas, pooled = s2l_cluster_quotas(assignment, k,
                                                   min_cluster_size=min_cluster_size)
        for cluster_id, q in zip(order, quotas):
            if q > 0:
                chosen.append(rng.choice(idx[assignment == cluster_id], size=int(q),
                                         replace=False))
        if pooled > 0:
            small = ~np.isin(assignment, order)
            chosen.append(rng.choice(idx[small], size=int(pooled), replace=False))
    if not chosen:
        return np.zeros(0, dtype=np.int64)
    return np.sort(np.concatenate(chosen)).astype(np.int64)
