"""Class budgets, top-k per class and the random baseline (cld_hf.selection, NumPy only)."""

import logging

import numpy as np
import pytest

from cld_hf import class_budgets, select_top_per_class

# ------------------------------------------------------------------------- budgets


def test_equal_budgets_same_k_per_class():
    labels = np.repeat([0, 1, 2, 3], 25)
    assert class_budgets(labels, fraction=0.2) == {0: 5, 1: 5, 2: 5, 3: 5}
    assert class_budgets(labels, size=22) == {0: 6, 1: 6, 2: 5, 3: 5}  # remainder to lower labels


def test_equal_budgets_small_class_gives_surplus_to_others():
    labels = np.array([0] * 2 + [1] * 10 + [2] * 10 + [3] * 4)
    # size 20: share 5; class 0 (2) and class 3 (4) are small -> all taken; 14 left for 2 classes
    assert class_budgets(labels, size=20) == {0: 2, 1: 7, 2: 7, 3: 4}
    # water-filling needs two rounds: share 6 -> class 0 small; then 22/3 = 7 -> class 3 (4) small
    assert class_budgets(labels, size=24) == {0: 2, 1: 9, 2: 9, 3: 4}
    assert class_budgets(labels, size=26) == {0: 2, 1: 10, 2: 10, 3: 4}


@pytest.mark.parametrize("balance", ["equal", "proportional"])
@pytest.mark.parametrize("seed", range(5))
def test_budgets_sum_exactly_and_never_exceed_class_size(balance, seed):
    rng = np.random.default_rng(seed)
    labels = rng.choice(7, size=500, p=[0.4, 0.2, 0.15, 0.1, 0.1, 0.04, 0.01])
    counts = np.bincount(labels, minlength=7)
    for size in [1, 3, 7, 50, 123, 333, 499, 500]:
        b = class_budgets(labels, size=size, balance=balance)
        assert sum(b.values()) == size
        assert all(0 <= b[c] <= counts[c] for c in b)
    for fraction in [0.01, 0.1, 0.3333, 1.0]:
        b = class_budgets(labels, fraction=fraction, balance=balance)
        assert sum(b.values()) == int(np.floor(fraction * 500 + 0.5))


def test_proportional_largest_remainder_rounding():
    labels = np.array([0] * 50 + [1] * 30 + [2] * 20)
    # size 7: quotas 3.5, 2.1, 1.4 -> floors 3, 2, 1 (6), one more to the largest remainder (class 0)
    assert class_budgets(labels, size=7, balance="proportional") == {0: 4, 1: 2, 2: 1}
    # size 9: quotas 4.5, 2.7, 1.8 -> floors 4, 2, 1; remainders .5 .7 .8 -> classes 2 and 1
    assert class_budgets(labels, size=9, balance="proportional") == {0: 4, 1: 3, 2: 2}
    # tie of remainders goes to the lower label: quotas 0.5, 0.5 on [0]*1 + [1]*1, size 1
    assert class_budgets([0, 1], size=1, balance="proportional") == {0: 1, 1: 0}


@pytest.mark.parametrize(
    "kwargs,err,match",
    [
        ({}, ValueError, "exactly one of fraction"),
        ({"fraction": 0.1, "size": 3}, ValueError, "exactly one of fraction"),
        ({"fraction": 0.0}, ValueError, r"fraction == 0.0, must be in \(0, 1\]"),
        ({"fraction": 1.5}, ValueError, r"fraction == 1.5"),
        ({"fraction": 0.001}, ValueError, "rounds to an empty coreset"),
        ({"size": 0}, ValueError, "size == 0, must be >= 1 and <= 10"),
        ({"size": 11}, ValueError, "size == 11"),
        ({"size": 2.5}, TypeError, "size must be an int"),
        ({"size": 2, "balance": "even"}, ValueError, "balance == 'even'"),
    ],
)
def test_budget_bad_input(kwargs, err, match):
    with pytest.raises(err, match=match):
        class_budgets(np.arange(10) % 2, **kwargs)


# ------------------------------------------------------------------------- top-k


def test_select_top_per_class_picks_highest_scores_sorted():
    scores = np.arange(10, dtype=float)  # dPrune-style fixture: scores 0..9
    labels = np.array([0, 1] * 5)
    # class 0 holds scores 0,2,4,6,8 at indices 0,2,4,6,8; top 2 -> 6, 8; class 1 top 2 -> 7, 9
    assert select_top_per_class(scores, labels, size=4).tolist() == [6, 7, 8, 9]
    assert select_top_per_class(scores, labels, budgets={0: 3}).tolist() == [4, 6, 8]


def test_select_top_per_class_breaks_ties_by_lower_index():
    scores = [0.5, 0.5, 0.5, 0.9, 0.5, 0.5]
    labels = [0, 0, 0, 0, 1, 1]
    assert select_top_per_class(scores, labels, budgets={0: 3, 1: 1}).tolist() == [0, 1, 3, 4]


def test_select_top_per_class_ranks_nan_last(caplog):
    with caplog.at_level(logging.WARNING):
        idx = select_top_per_class([np.nan, 0.1, 0.2], [0, 0, 0], size=2)
    assert idx.tolist() == [1, 2]
    assert "1 NaN score(s)" in caplog.text


def test_select_top_per_class_matches_bruteforce():
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 5, size=400).astype(float)  # many ties
    labels = rng.integers(0, 6, size=400)
    budgets = class_budgets(labels, fraction=0.3)
    expected = []
    for c, k in budgets.items():
        members = np.flatnonzero(labels == c)
        ranked = sorted(members, key=lambda i: (-scores[i], i))
        expected.extend(ranked[:k])
    assert select_top_per_class(scores, labels, budgets=budgets).tolist() == sorted(expected)


def test_select_top_per_class_bad_input():
    with pytest.raises(ValueError, match="scores has shape .3,. but labels has 4 entries"):
        select_top_per_class([1, 2, 3], [0, 0, 1, 1], size=2)
    with pytest.raises(ValueError, match=r"budgets\[1\] == 5, must be an int between 0 and 2"):
        select_top_per_class([1, 2, 3, 4], [0, 0, 1, 1], budgets={1: 5})
    with pytest.raises(ValueError, match="budgets names class 7, which has no sample"):
        select_top_per_class([1, 2, 3, 4], [0, 0, 1, 1], budgets={7: 1})
    with pytest.raises(ValueError, match="either budgets= or fraction="):
        select_top_per_class([1, 2, 3, 4], [0, 0, 1, 1], budgets={0: 1}, size=1)


def test_select_random_per_class_same_budgets_seeded():
    from cld_hf.selection import select_random_per_class

    labels = np.repeat([0, 1, 2], [30, 20, 5])
    budgets = class_budgets(labels, size=18)
    a = select_random_per_class(labels, budgets=budgets, seed=1)
    assert np.bincount(labels[a]).tolist() == [budgets[0], budgets[1], budgets[2]] == [7, 6, 5]
    assert np.array_equal(a, select_random_per_class(labels, size=18, seed=1))
    assert not np.array_equal(a, select_random_per_class(labels, size=18, seed=2))
    assert np.all(np.diff(a) > 0)
