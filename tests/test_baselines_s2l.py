"""Tests of S2L (cld_hf.baselines.s2l): a hand-checkable toy, agreement with an independent
implementation of the official algorithm (github.com/BigML-CS-UCLA/S2L, schedules/s2l.py),
exact budgets, seeds and bad input."""

import warnings

import numpy as np
import pytest

from cld_hf import class_budgets
from cld_hf.baselines.s2l import s2l_cluster_quotas, s2l_clusters, s2l_select

# ---------------------------------------------------------------------------------- fixtures


def _blobs(sizes, *, num_snapshots=6, spread=0.01, seed=0, shuffle=True):
    """Loss trajectories in well-separated clusters of the given sizes; returns (loss, cluster)."""
    rng = np.random.default_rng(seed)
    centres = rng.uniform(0.0, 10.0, size=(len(sizes), num_snapshots))
    truth = np.repeat(np.arange(len(sizes)), sizes)
    if shuffle:
        truth = rng.permutation(truth)
    loss = centres[truth] + spread * rng.normal(size=(len(truth), num_snapshots))
    return loss, truth


def _partition(assignment):
    """The clusters as a set of frozensets of rows (independent of the cluster ids)."""
    return {frozenset(np.flatnonzero(assignment == c).tolist()) for c in np.unique(assignment)}


# ------------------------------------------------------- an independent reference implementation


def _reference_lloyd(x, init, max_iter=20):
    """Lloyd's k-means from given initial centroids (what faiss' Kmeans runs after its init)."""
    centres = np.array(init, dtype=np.float64)
    assign = None
    for _ in range(max_iter):
        d = ((x[:, None, :] - centres[None, :, :]) ** 2).sum(axis=2)
        new = d.argmin(axis=1)
        if assign is not None and np.array_equal(new, assign):
            break
        assign = new
        for c in range(len(centres)):
            if (assign == c).any():
                centres[c] = x[assign == c].mean(axis=0)
    d = ((x[:, None, :] - centres[None, :, :]) ** 2).sum(axis=2)
    return d.argmin(axis=1)


def _reference_quotas(sizes, n):
    """The official loop over clusters (schedules/s2l.py, faiss_kmeans_selection): clusters with
    more than 2 members, smallest first, ``n // clusters left`` each; the rest from the others.
    Returns ``({cluster: count}, pooled)``. Equal sizes in the order given (a stable sort)."""
    sizes = np.asarray(sizes)
    order = [int(c) for c in np.argsort(sizes, kind="stable") if sizes[c] > 2]
    counts = {}
    for i, c in enumerate(order):
        n_per_cluster = n // (len(order) - i)
        if sizes[c] > n_per_cluster:
            counts[c] = n_per_cluster
            n -= n_per_cluster
        else:
            counts[c] = int(sizes[c])
            n -= int(sizes[c])
    return counts, n


def _reference_select(labels, budgets, assignments, seed):
    """The official selection per group, given each group's clusters, drawing with
    ``default_rng(seed)`` in the official order (equal sizes: the cluster with the lower row)."""
    rng = np.random.default_rng(seed)
    picked = []
    for c in sorted(budgets):
        idx = np.flatnonzero(labels == c)
        k = budgets[c]
        if k == 0:
            continue
        if k == len(idx):
            picked.append(idx)
            continue
        a = assignments[c]
        ids = sorted(np.unique(a), key=lambda i: (np.sum(a == i), np.flatnonzero(a == i)[0]))
        sizes = [int(np.sum(a == i)) for i in ids]
        counts, left = _reference_quotas(sizes, k)
        for pos in sorted(counts, key=lambda p: (sizes[p], np.flatnonzero(a == ids[p])[0])):
            if counts[pos] > 0:
                picked.append(rng.choice(idx[a == ids[pos]], counts[pos], replace=False))
        if left > 0:
            small = np.isin(a, [ids[p] for p in range(len(ids)) if sizes[p] <= 2])
            picked.append(rng.choice(idx[small], left, replace=False))
    return np.sort(np.concatenate(picked))


# ------------------------------------------------------------------------------ the toy example


def test_s2l_toy_samples_every_cluster_with_the_official_shares():
    # Clusters of 3, 6, 10, 15 and 30 trajectories, budget 20. Smallest first, budget left //
    # clusters left: 20 // 5 = 4 -> 3 (all of it), 17 // 4 = 4, 13 // 3 = 4, 9 // 2 = 4, 5 // 1.
    loss, truth = _blobs([3, 6, 10, 15, 30])
    sel = s2l_select(np.zeros(len(truth), dtype=int), {0: 20}, loss, n_clusters=5,
                     init="k-means++", seed=0)
    assert len(sel) == 20 and len(set(sel.tolist())) == 20
    assert np.bincount(truth[sel], minlength=5).tolist() == [3, 4, 4, 4, 5]
    assert sel.dtype == np.int64 and np.all(np.diff(sel) > 0)


def test_s2l_default_random_init_samples_every_cluster():
    # With more centroids than true clusters (the official K = 100 >> clusters), random
    # initial centroids land in every cluster (more of them in the larger ones, which are split
    # into sub-clusters): every true cluster is sampled.
    loss, truth = _blobs([20, 30, 40, 50, 60])
    for seed in range(5):
        sel = s2l_select(np.zeros(len(truth), dtype=int), {0: 25}, loss, n_clusters=15,
                         seed=seed)
        assert len(sel) == 25
        assert (np.bincount(truth[sel], minlength=5) >= 1).all()


def test_s2l_is_seeded():
    loss, _ = _blobs([40, 60], seed=1)
    labels = np.zeros(100, dtype=int)
    a = s2l_select(labels, {0: 30}, loss, n_clusters=4, seed=3)
    b = s2l_select(labels, {0: 30}, loss, n_clusters=4, seed=3)
    c = s2l_select(labels, {0: 30}, loss, n_clusters=4, seed=4)
    assert a.tolist() == b.tolist()
    assert a.tolist() != c.tolist()


@pytest.mark.parametrize("budget", [0, 1, 7, 33, 59, 60])
def test_s2l_meets_every_group_budget_exactly(budget):
    rng = np.random.default_rng(0)
    labels = rng.permutation(np.repeat([0, 1, 2], [60, 25, 5]))
    loss = rng.normal(size=(90, 4)) + labels[:, None]
    budgets = class_budgets(labels, size=budget) if budget else {0: 0, 1: 0, 2: 0}
    sel = s2l_select(labels, budgets, loss, n_clusters=6, seed=0)
    assert len(set(sel.tolist())) == len(sel)
    counts = np.bincount(labels[sel], minlength=3)
    assert counts.tolist() == [budgets[0], budgets[1], budgets[2]]


def test_s2l_keeps_a_whole_group_without_clustering():
    loss, _ = _blobs([5])
    assert s2l_select([0] * 5, {0: 5}, loss).tolist() == [0, 1, 2, 3, 4]


# --------------------------------------------------------------- against the reference algorithm


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_s2l_clusters_match_reference_lloyd_from_the_same_initial_centroids(seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(120, 5))
    init = x[rng.choice(120, size=7, replace=False)]
    ours = s2l_clusters(x, init=init, max_iter=20)
    ref = _reference_lloyd(x, init, max_iter=20)
    assert _partition(ours) == _partition(ref)


def test_s2l_quotas_match_the_official_loop_on_random_clusterings():
    rng = np.random.default_rng(0)
    for _ in range(300):
        n_clusters = int(rng.integers(1, 12))
        assignment = rng.integers(0, n_clusters, size=int(rng.integers(1, 80)))
        k = int(rng.integers(0, len(assignment) + 1))
        order, quotas, pooled = s2l_cluster_quotas(assignment, k)
        ids, sizes = np.unique(assignment, return_counts=True)
        counts, left = _reference_quotas(sizes, k)
        ours = sorted((int(sizes[ids == c][0]), int(q)) for c, q in zip(order, quotas))
        theirs = sorted((int(sizes[c]), q) for c, q in counts.items())
        assert ours == theirs and pooled == left  # equal sizes may swap, (size, count) pairs not
        assert int(quotas.sum()) + pooled == k


@pytest.mark.parametrize("seed", [0, 5])
def test_s2l_select_matches_reference_selection(seed):
    # Three groups, one with clusters of 1 and 2 trajectories and a budget that needs them.
    rng = np.random.default_rng(seed)
    groups = [[4, 9, 13, 20], [1, 2, 6, 8], [30, 31]]
    loss_parts, label_parts = [], []
    for g, sizes in enumerate(groups):
        part, _ = _blobs(sizes, seed=seed + 10 * g)
        loss_parts.append(part)
        label_parts.append(np.full(len(part), g))
    order = rng.permutation(sum(map(len, label_parts)))
    loss = np.concatenate(loss_parts)[order]
    labels = np.concatenate(label_parts)[order]
    budgets = {0: 17, 1: 16, 2: 61}  # group 1 needs its clusters of 1 and 2; group 2 all of it
    ours = s2l_select(labels, budgets, loss, n_clusters=4, init="k-means++", seed=seed)
    assignments = {c: s2l_clusters(loss[labels == c], n_clusters=4, init="k-means++", seed=seed)
                   for c in budgets}
    assert ours.tolist() == _reference_select(labels, budgets, assignments, seed).tolist()
    assert np.bincount(labels[ours]).tolist() == [17, 16, 61]


# ---------------------------------------------------------------------------------- variants


def test_s2l_clusters_cap_at_the_group_size_and_tolerate_repeated_trajectories():
    loss = np.array([[1.0, 0.5]] * 6 + [[2.0, 2.0]] * 6)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no ConvergenceWarning for the empty clusters
        a = s2l_clusters(loss, n_clusters=100, seed=0)
    assert len(np.unique(a[:6])) == 1 and len(np.unique(a[6:])) == 1 and a[0] != a[6]
    sel = s2l_select([0] * 12, {0: 4}, loss, n_clusters=100, seed=0)
    assert len(sel) == 4


def test_s2l_subsampled_and_minibatch_fits_still_find_the_clusters():
    loss, truth = _blobs([150, 250], num_snapshots=3)
    sub = s2l_clusters(loss, n_clusters=2, max_points_per_centroid=20, init="k-means++")
    mini = s2l_clusters(loss, n_clusters=2, batch_size=64, init="k-means++")
    assert _partition(sub) == _partition(truth) == _partition(mini)


# ---------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"loss": np.ones(6)}, ValueError, r"loss must be a 2-D array \(N, S\)"),
        ({"loss": np.ones((5, 3))}, ValueError, "labels has 6 entries but the signals have 5 rows"),
        ({"loss": np.full((6, 3), np.nan)}, ValueError, r"loss contains 18 NaN or inf.*\[0, 1"),
        ({"loss": np.ones((6, 3), dtype=bool)}, TypeError, "loss must hold real numbers"),
        ({"budgets": {0: 7}}, ValueError, r"budgets\[0\] == 7, must be an int between 0 and 6"),
        ({"budgets": {3: 1}}, ValueError, "budgets names class 3, which has no sample"),
        ({"budgets": [1]}, TypeError, "budgets must be a dict"),
        ({"labels": [0.0] * 6}, TypeError, "labels must hold integer class ids"),
        ({"n_clusters": 0}, ValueError, "n_clusters == 0, must be >= 1"),
        ({"n_clusters": 2.5}, TypeError, "n_clusters must be an instance of int"),
        ({"min_cluster_size": 0}, ValueError, "min_cluster_size == 0, must be >= 1"),
        ({"max_iter": 0}, ValueError, "max_iter == 0, must be >= 1"),
        ({"seed": -1}, ValueError, "seed == -1, must be >= 0"),
        ({"init": "kmeans"}, ValueError, "init == 'kmeans', must be 'random' or 'k-means"),
        ({"batch_size": 0}, ValueError, "batch_size == 0, must be >= 1"),
        ({"max_points_per_centroid": 0, "budgets": {0: 6}}, ValueError,
         "max_points_per_centroid == 0, must be >= 1"),
    ],
)
def test_s2l_bad_input_errors_name_the_argument_and_the_fix(kwargs, error, match):
    args = {"labels": [0] * 6, "budgets": {0: 2}, "loss": np.arange(18.0).reshape(6, 3)}
    args.update(kwargs)
    with pytest.raises(error, match=match):
        s2l_select(args.pop("labels"), args.pop("budgets"), args.pop("loss"), **args)


def test_s2l_clusters_rejects_initial_centroids_of_the_wrong_shape():
    with pytest.raises(ValueError, match=r"init has shape \(2, 2\), must be \(K, 3\)"):
        s2l_clusters(np.ones((5, 3)), init=np.ones((2, 2)))


def test_s2l_quotas_reject_a_budget_above_the_samples():
    with pytest.raises(ValueError, match="k == 5, must be <= 4"):
        s2l_cluster_quotas([0, 0, 1, 1], 5)
