"""Tests of the selection strategies (cld_hf.strategies): the noise estimate on hand-sized query
matrices, which samples the noise cut may drop, exact budgets, seeds, coverage of clusters, and
bad input."""

import logging

import numpy as np
import pytest

from cld_hf import class_budgets, select_random_per_class, select_top_per_class
from cld_hf.strategies import (
    STRATEGIES,
    estimate_noise_rate,
    select_coverage,
    select_noise_adaptive,
    select_with_strategy,
    suspected_noise,
)
from cld_hf.strategies.coverage import _allocate

# ---------------------------------------------------------------------------------- fixtures


def _scored(seed=0, sizes=(30, 22, 14), dim=4):
    """Scores with ties, shuffled labels of uneven classes, random features."""
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.repeat(np.arange(len(sizes)), sizes))
    scores = np.round(rng.uniform(-1, 1, size=len(labels)), 1)  # many ties
    emb = rng.normal(size=(len(labels), dim))
    return scores, labels, emb


def _blobs(num_blobs=4, per_blob=(6, 6, 6, 6), classes=2, seed=0):
    """Well-separated blobs in every class: blob b of class c sits at 100 * (c * B + b) e_0 + ..."""
    rng = np.random.default_rng(seed)
    x, y, blob = [], [], []
    for c in range(classes):
        for b in range(num_blobs):
            centre = np.zeros(num_blobs * classes)
            centre[c * num_blobs + b] = 100.0
            n = per_blob[b]
            x.append(centre + rng.normal(scale=0.1, size=(n, len(centre))))
            y += [c] * n
            blob += [c * num_blobs + b] * n
    perm = rng.permutation(len(y))
    return np.concatenate(x)[perm], np.asarray(y)[perm], np.asarray(blob)[perm]


def _per_class(idx, labels):
    return np.bincount(np.asarray(labels)[idx], minlength=int(np.max(labels)) + 1).tolist()


# ------------------------------------------------------------------------------ noise rate


def test_estimate_noise_rate_counts_query_samples_whose_loss_rose():
    q = np.array([[2.3, 1.0, 0.2],
                  [2.3, 2.0, 1.5],
                  [2.3, 3.1, 4.0],
                  [2.3, 1.0, 2.4],   # rose in the end, after falling
                  [2.3, 2.3, 2.3]])  # unchanged: not counted
    assert estimate_noise_rate(q) == pytest.approx(2 / 5)
    assert estimate_noise_rate(q, last=1) == pytest.approx(1 / 5)
    assert estimate_noise_rate(q, first=1, last=2) == pytest.approx(2 / 5)  # rows 2 and 3
    assert estimate_noise_rate(q[:2]) == 0.0


@pytest.mark.parametrize("query, match", [
    (np.zeros((0, 3)), "Q == 0"),
    (np.ones((4, 1)), "1 snapshot"),
    (np.ones(4), "2-D array"),
    (np.array([[1.0, np.nan], [1.0, 2.0]]), "NaN or inf"),
])
def test_estimate_noise_rate_rejects_bad_query_losses(query, match):
    with pytest.raises(ValueError, match=match):
        estimate_noise_rate(query)


@pytest.mark.parametrize("first, last", [(2, 1), (1, 1), (-1, 0), (0, 5)])
def test_estimate_noise_rate_needs_last_after_first(first, last):
    with pytest.raises(ValueError, match="last"):
        estimate_noise_rate(np.ones((3, 4)), first=first, last=last)


# ------------------------------------------------------------------------------- noise cut


def test_suspected_noise_drops_the_lowest_scores_of_each_class():
    scores = [0.9, -0.5, 0.1, 0.7, 0.8, -0.9, 0.2, 0.6]
    labels = [0, 0, 0, 0, 1, 1, 1, 1]
    # 2 * 0.25 * 4 = 2 per class: the two lowest of each
    mask = suspected_noise(scores, labels, budgets={0: 1, 1: 1}, noise_rate=0.25)
    assert np.flatnonzero(mask).tolist() == [1, 2, 5, 6]
    # multiplier 1: one per class
    mask = suspected_noise(scores, labels, budgets={0: 1, 1: 1}, noise_rate=0.25,
                           drop_multiplier=1.0)
    assert np.flatnonzero(mask).tolist() == [1, 5]
    assert not suspected_noise(scores, labels, budgets={0: 1, 1: 1}, noise_rate=0.0).any()


def test_suspected_noise_never_drops_more_than_n_c_minus_k_c():
    scores = np.arange(10.0)
    labels = np.repeat([0, 1], 5)
    # noise_rate 0.5, multiplier 2: wants all 5 of each class; budgets cap it at 5 - k_c
    mask = suspected_noise(scores, labels, budgets={0: 2, 1: 5}, noise_rate=0.5)
    assert np.flatnonzero(mask).tolist() == [0, 1, 2]
    mask = suspected_noise(scores, labels, budgets={0: 0}, noise_rate=1.0)  # class 1: k_c = 0
    assert mask.all()


def test_suspected_noise_floor_is_exact_for_decimal_rates():
    """floor(1 * 0.29 * 100) is 29 although 0.29 * 100 == 28.999999999999996 in float64."""
    mask = suspected_noise(np.arange(100.0), np.zeros(100, dtype=int), budgets={0: 10},
                           noise_rate=0.29, drop_multiplier=1.0)
    assert int(mask.sum()) == 29


def test_suspected_noise_drops_higher_index_first_among_ties_and_nan_first(caplog):
    scores = [0.5, 0.5, 0.5, 0.9]
    mask = suspected_noise(scores, [0] * 4, budgets={0: 1}, noise_rate=0.25)  # drop 2
    assert np.flatnonzero(mask).tolist() == [1, 2]  # top-k keeps the lower index first
    with caplog.at_level(logging.WARNING, logger="cld_hf.strategies"):
        mask = suspected_noise([0.1, np.nan, -0.9, 0.3], [0] * 4, budgets={0: 1},
                               noise_rate=0.125)  # drop 1
    assert np.flatnonzero(mask).tolist() == [1]
    assert "NaN" in caplog.text


@pytest.mark.parametrize("kwargs, err, match", [
    ({"noise_rate": 1.5}, ValueError, "noise_rate == 1.5, must be <= 1.0"),
    ({"noise_rate": -0.1}, ValueError, "noise_rate == -0.1, must be >= 0.0"),
    ({"noise_rate": 0.1, "drop_multiplier": -1.0}, ValueError, "drop_multiplier == -1.0"),
    ({"noise_rate": "0.1"}, TypeError, "noise_rate must be an instance of float"),
])
def test_suspected_noise_rejects_bad_rates(kwargs, err, match):
    with pytest.raises(err, match=match):
        suspected_noise([0.1, 0.2], [0, 0], budgets={0: 1}, **kwargs)


# -------------------------------------------------------------------------- noise_adaptive


def test_noise_adaptive_draws_only_from_the_samples_above_the_cut():
    scores = [0.9, -0.5, 0.1, 0.7, 0.8, -0.9, 0.2, 0.6]
    labels = [0, 0, 0, 0, 1, 1, 1, 1]
    for seed in range(20):
        idx = select_noise_adaptive(scores, labels, budgets={0: 1, 1: 1}, noise_rate=0.25,
                                    seed=seed)
        assert set(idx.tolist()) <= {0, 3, 4, 7}
        assert _per_class(idx, labels) == [1, 1]
    # the cut is exactly n_c - k_c: the coreset is forced
    idx = select_noise_adaptive(scores, labels, budgets={0: 2, 1: 2}, noise_rate=0.25)
    assert idx.tolist() == [0, 3, 4, 7]


def test_noise_adaptive_estimates_the_rate_from_the_query_losses():
    scores, labels, _ = _scored(1)
    budgets = class_budgets(labels, fraction=0.3)
    rng = np.random.default_rng(0)
    query = np.stack([np.full(40, 2.3), rng.uniform(0, 4, 40)], axis=1)
    q_hat = estimate_noise_rate(query)
    assert 0 < q_hat < 1
    a = select_noise_adaptive(scores, labels, budgets=budgets, query_losses=query, seed=4)
    b = select_noise_adaptive(scores, labels, budgets=budgets, noise_rate=q_hat, seed=4)
    assert a.tolist() == b.tolist()


@pytest.mark.parametrize("seed", range(4))
def test_noise_adaptive_without_a_cut_is_the_random_baseline(seed):
    scores, labels, _ = _scored(seed)
    budgets = class_budgets(labels, fraction=0.2)
    clean_query = np.array([[2.3, 0.1], [2.3, 0.4]])  # q_hat = 0
    idx = select_noise_adaptive(scores, labels, budgets=budgets, query_losses=clean_query,
                                seed=seed)
    assert idx.tolist() == select_random_per_class(labels, budgets=budgets, seed=seed).tolist()


@pytest.mark.parametrize("seed", range(4))
def test_noise_adaptive_keeps_the_random_draws_above_the_cut(seed):
    """Paired with random: the random coreset minus its suspected noise, plus the next draws."""
    scores, labels, _ = _scored(seed)
    budgets = class_budgets(labels, fraction=0.2)
    rand = set(select_random_per_class(labels, budgets=budgets, seed=seed).tolist())
    dropped = suspected_noise(scores, labels, budgets=budgets, noise_rate=0.2)
    idx = set(select_noise_adaptive(scores, labels, budgets=budgets, noise_rate=0.2,
                                    seed=seed).tolist())
    assert rand - set(np.flatnonzero(dropped).tolist()) <= idx
    assert not idx & set(np.flatnonzero(dropped).tolist())


# -------------------------------------------------------------------------------- coverage


@pytest.mark.parametrize("allocation", ["proportional", "one_per_cluster"])
@pytest.mark.parametrize("seed", range(5))
def test_coverage_picks_one_sample_from_every_well_separated_cluster(seed, allocation):
    x, labels, blob = _blobs(seed=seed)
    scores = np.zeros(len(labels))
    idx = select_coverage(scores, labels, budgets={0: 4, 1: 4}, embeddings=x, noise_rate=0.0,
                          allocation=allocation, seed=seed)
    assert sorted(blob[idx].tolist()) == list(range(8))


def test_coverage_one_per_cluster_covers_small_clusters_proportional_does_not_oversample():
    # blobs of 12, 6, 3, 3 samples and a budget of 4 = the number of blobs
    x, labels, blob = _blobs(per_blob=(12, 6, 3, 3), classes=1)
    one = [np.bincount(blob[select_coverage(np.zeros(24), labels, budgets={0: 4}, embeddings=x,
                                            noise_rate=0.0, allocation="one_per_cluster",
                                            seed=s)], minlength=4).tolist() for s in range(5)]
    assert one == [[1, 1, 1, 1]] * 5
    prop = [np.bincount(blob[select_coverage(np.zeros(24), labels, budgets={0: 4}, embeddings=x,
                                             noise_rate=0.0, seed=s)], minlength=4)
            for s in range(20)]
    assert all(p[0] == 2 and p[1] == 1 and p[2] + p[3] == 1 for p in prop)  # shares 2, 1, .5, .5


def test_coverage_one_per_cluster_shares_the_rest_by_cluster_size():
    # blobs of 12, 6, 3, 3 samples; 4 clusters; a budget of 8: one each, then 4 in proportion
    # to the room 11, 5, 2, 2 -> quotas 2.2, 1.0, 0.4, 0.4 -> 2, 1, 0, 0 + 1 by largest remainder
    x, labels, blob = _blobs(per_blob=(12, 6, 3, 3), classes=1)
    idx = select_coverage(np.zeros(len(labels)), labels, budgets={0: 8}, embeddings=x,
                          noise_rate=0.0, n_clusters=4, allocation="one_per_cluster")
    counts = np.bincount(blob[idx], minlength=4).tolist()
    assert counts in ([3, 2, 2, 1], [3, 2, 1, 2])


def test_coverage_proportional_gives_each_cluster_floor_or_ceil_of_its_share():
    # blobs of 12, 6, 3, 3 samples, a budget of 8: shares 4, 2, 1, 1 exactly
    x, labels, blob = _blobs(per_blob=(12, 6, 3, 3), classes=1)
    for seed in range(10):
        idx = select_coverage(np.zeros(len(labels)), labels, budgets={0: 8}, embeddings=x,
                              noise_rate=0.0, n_clusters=4, seed=seed)
        assert np.bincount(blob[idx], minlength=4).tolist() == [4, 2, 1, 1]
    # a budget of 5: shares 2.5, 1.25, 0.625, 0.625
    for seed in range(10):
        idx = select_coverage(np.zeros(len(labels)), labels, budgets={0: 5}, embeddings=x,
                              noise_rate=0.0, n_clusters=4, allocation="proportional", seed=seed)
        counts = np.bincount(blob[idx], minlength=4)
        assert counts.sum() == 5
        assert all(np.floor(q) <= c <= np.ceil(q) for c, q in zip(counts, [2.5, 1.25, .625, .625]))


def test_coverage_proportional_keeps_every_sample_with_probability_k_over_n():
    x, labels, blob = _blobs(per_blob=(10, 5, 3, 2), classes=1)
    hits = np.zeros(len(labels))
    draws = 400
    for seed in range(draws):
        hits[select_coverage(np.zeros(len(labels)), labels, budgets={0: 4}, embeddings=x,
                             noise_rate=0.0, allocation="proportional", seed=seed)] += 1
    assert np.abs(hits / draws - 4 / 20).max() < 0.08  # 4 binomial std at p = 0.2, n = 400


def test_allocate_one_per_cluster_then_largest_remainder():
    # room 4, 0, 0, 2 for 2 extra picks: quotas 1.33, 0, 0, 0.67 -> 1, 0, 0, 0 + 1 to cluster 3
    assert _allocate(np.array([5, 1, 0, 3]), 5).tolist() == [2, 1, 0, 2]
    assert _allocate(np.array([2, 2]), 4).tolist() == [2, 2]
    assert _allocate(np.array([3, 3]), 2).tolist() == [1, 1]


def test_coverage_within_cld_takes_the_highest_score_of_each_cluster():
    x, labels, blob = _blobs(classes=1)
    scores = np.random.default_rng(0).permutation(len(labels)).astype(float)
    idx = select_coverage(scores, labels, budgets={0: 4}, embeddings=x, noise_rate=0.0,
                          within="cld")
    best = [int(np.flatnonzero(blob == b)[np.argmax(scores[blob == b])]) for b in range(4)]
    assert idx.tolist() == sorted(best)


def test_coverage_never_picks_a_suspected_noise_sample():
    scores, labels, emb = _scored(2)
    budgets = class_budgets(labels, fraction=0.3)
    dropped = suspected_noise(scores, labels, budgets=budgets, noise_rate=0.25)
    for seed in range(5):
        idx = select_coverage(scores, labels, budgets=budgets, embeddings=emb, noise_rate=0.25,
                              seed=seed)
        assert not dropped[idx].any()


def test_coverage_meets_the_budget_on_coinciding_features():
    labels = np.zeros(10, dtype=int)
    idx = select_coverage(np.zeros(10), labels, budgets={0: 4}, embeddings=np.ones((10, 3)),
                          noise_rate=0.0)
    assert len(idx) == 4 and len(set(idx.tolist())) == 4


@pytest.mark.parametrize("kwargs, err, match", [
    ({"embeddings": None}, ValueError, "needs embeddings="),
    ({"embeddings": np.ones((5, 2))}, ValueError, "embeddings has 5 rows but labels has 6"),
    ({"embeddings": np.ones(6)}, ValueError, r"2-D array \(N, D\)"),
    ({"embeddings": np.full((6, 2), np.nan)}, ValueError, "NaN or inf"),
    ({"within": "centre"}, ValueError, "within == 'centre', must be one of"),
    ({"allocation": "equal"}, ValueError, "allocation == 'equal', must be one of"),
    ({"n_clusters": 0}, ValueError, "n_clusters == 0, must be >= 1"),
    ({"normalize": 1}, TypeError, "normalize must be True or False"),
    ({"noise_rate": None}, ValueError, "pass query_losses="),
])
def test_coverage_rejects_bad_input(kwargs, err, match):
    args = dict(budgets={0: 1, 1: 1}, embeddings=np.ones((6, 2)), noise_rate=0.0)
    args.update(kwargs)
    with pytest.raises(err, match=match):
        select_coverage(np.zeros(6), [0, 0, 0, 1, 1, 1], **args)


# ------------------------------------------------------------------------ every strategy


def _inputs(seed):
    """Scores, labels, features and a query trajectory with 2 of 20 losses rising (q_hat 0.1)."""
    scores, labels, emb = _scored(seed)
    query = np.linspace(2.3, 0.2, 5)[None, :].repeat(20, axis=0)
    query[:2, -1] = 3.0
    return scores, labels, emb, query


_VARIANTS = [(name, {}) for name in STRATEGIES] + [
    ("coverage", {"allocation": "one_per_cluster"}), ("coverage", {"within": "cld"}),
    ("coverage", {"n_clusters": 3})]


@pytest.mark.parametrize("strategy, options", _VARIANTS)
@pytest.mark.parametrize("fraction", [0.05, 0.3, 0.7, 1.0])
def test_every_strategy_meets_the_budgets_exactly(strategy, options, fraction):
    scores, labels, emb, query = _inputs(0)
    for balance in ("equal", "proportional"):
        budgets = class_budgets(labels, fraction=fraction, balance=balance)
        idx = select_with_strategy(scores, labels, budgets=budgets, strategy=strategy,
                                   query_losses=query, embeddings=emb, **options)
        assert idx.dtype == np.int64
        assert idx.tolist() == sorted(set(idx.tolist()))
        assert _per_class(idx, labels) == [budgets[c] for c in range(3)]


@pytest.mark.parametrize("strategy, options", _VARIANTS)
def test_every_strategy_is_reproducible_for_a_seed(strategy, options):
    scores, labels, emb, query = _inputs(3)
    budgets = class_budgets(labels, fraction=0.3)
    runs = [select_with_strategy(scores, labels, budgets=budgets, strategy=strategy, seed=s,
                                 query_losses=query, embeddings=emb, **options).tolist()
            for s in (7, 7, 8)]
    assert runs[0] == runs[1]
    if strategy != "top":
        assert runs[0] != runs[2]


def test_every_strategy_leaves_a_zero_budget_class_out():
    scores, labels, emb, query = _inputs(1)
    for strategy in STRATEGIES:
        idx = select_with_strategy(scores, labels, budgets={0: 5, 2: 3}, strategy=strategy,
                                   query_losses=query, embeddings=emb)
        assert _per_class(idx, labels) == [5, 0, 3]


def test_top_is_select_top_per_class():
    scores, labels, _, _ = _inputs(2)
    budgets = class_budgets(labels, fraction=0.3)
    assert select_with_strategy(scores, labels, budgets=budgets).tolist() == (
        select_top_per_class(scores, labels, budgets=budgets).tolist())


def test_random_is_select_random_per_class():
    scores, labels, _, _ = _inputs(2)
    budgets = class_budgets(labels, fraction=0.3)
    idx = select_with_strategy(scores, labels, budgets=budgets, strategy="random", seed=5)
    assert idx.tolist() == select_random_per_class(labels, budgets=budgets, seed=5).tolist()


def test_select_with_strategy_passes_options():
    scores, labels, emb, query = _inputs(0)
    budgets = class_budgets(labels, fraction=0.2)
    a = select_with_strategy(scores, labels, budgets=budgets, strategy="noise_adaptive",
                             query_losses=query, drop_multiplier=3.0, seed=1)
    b = select_noise_adaptive(scores, labels, budgets=budgets, query_losses=query,
                              drop_multiplier=3.0, seed=1)
    assert a.tolist() == b.tolist()


@pytest.mark.parametrize("call, err, match", [
    (dict(strategy="best"), ValueError, r"strategy == 'best', must be one of \['top'"),
    (dict(strategy="top", drop_multiplier=2.0), TypeError,
     r"'top' takes no option\(s\) \['drop_multiplier'\]"),
    (dict(strategy="noise_adaptive", within="cld"), TypeError, "its options are"),
    (dict(strategy="coverage", noise_rate=0.0), ValueError, "needs embeddings="),
    (dict(strategy="noise_adaptive", seed=-1, noise_rate=0.1), ValueError, "seed == -1"),
])
def test_select_with_strategy_errors_name_the_fix(call, err, match):
    with pytest.raises(err, match=match):
        select_with_strategy([0.1, 0.2, 0.3], [0, 0, 1], budgets={0: 1, 1: 1}, **call)


@pytest.mark.parametrize("strategy", list(STRATEGIES))
def test_every_strategy_checks_the_budgets(strategy):
    scores, labels, emb, query = _inputs(0)
    with pytest.raises(ValueError, match="must be an int between 0 and"):
        select_with_strategy(scores, labels, budgets={0: 10_000}, strategy=strategy,
                             query_losses=query, embeddings=emb)
    with pytest.raises(ValueError, match="has no sample"):
        select_with_strategy(scores, labels, budgets={9: 1}, strategy=strategy,
                             query_losses=query, embeddings=emb)


def test_scores_of_the_wrong_length_are_an_error():
    with pytest.raises(ValueError, match="pass one score per sample"):
        select_noise_adaptive([0.1, 0.2], [0, 0, 1], budgets={0: 1}, noise_rate=0.1)
