"""Tests of the run diagnosis (cld_hf.diagnosis): the noise estimate, the first-difference share
against hand-computed trajectories, the noise-cut counts, the advice, store and array input."""

import json

import numpy as np
import pytest

from cld_hf import LossTrajectories, class_budgets, cld_scores
from cld_hf.diagnosis import diagnose, format_diagnosis
from cld_hf.strategies import suspected_noise


def _run(noise=0.0, n_per_class=40, q_per_class=10, classes=3, snapshots=8, seed=0):
    """Synthetic loss trajectories: clean samples fall (fast, the most in epoch 1), flipped ones
    rise. Returns (train, train_labels, query, query_labels, flipped train mask)."""
    rng = np.random.default_rng(seed)
    t = np.arange(snapshots)

    def losses(n):
        rate = rng.uniform(0.3, 3.0, size=(n, 1))
        clean = 2.3 * np.exp(-rate * t) + rng.normal(scale=0.01, size=(n, snapshots))
        rising = 2.3 + rng.uniform(0.1, 0.3, size=(n, 1)) * t
        flip = rng.random(n) < noise
        return np.where(flip[:, None], rising, clean), flip

    train, flipped = losses(n_per_class * classes)
    query, _ = losses(q_per_class * classes)
    return (train, np.repeat(np.arange(classes), n_per_class), query,
            np.repeat(np.arange(classes), q_per_class), flipped)


def _diagnose_run(**kwargs):
    train, tl, query, ql, _ = _run(**kwargs)
    return diagnose(train_losses=train, train_labels=tl, query_losses=query, query_labels=ql)


# ----------------------------------------------------------------------------- the numbers


def test_noise_rate_is_the_share_of_query_losses_that_rose():
    train, tl, query, ql, _ = _run(noise=0.25)
    d = diagnose(train_losses=train, train_labels=tl, query_losses=query, query_labels=ql)
    rose = query[:, -1] > query[:, 0]
    assert d["noise_rate"] == pytest.approx(rose.mean())
    for c in range(3):
        assert d["noise_rate_by_class"][c] == pytest.approx(rose[ql == c].mean())


def test_first_difference_share_of_a_spike_is_the_maximum():
    """A class trajectory that moves in epoch 1 only: (T-1)/T of its variance, all its energy."""
    snapshots = 6  # T = 5 differences
    query = np.array([[2.3, 0.3, 0.3, 0.3, 0.3, 0.3],    # class 0: spike at epoch 1
                      [2.3, 1.3, 1.3, 0.3, 0.3, 0.3],    # class 1: d = (-1, 0, -1, 0, 0)
                      [2.3, 2.3, 2.3, 2.3, 2.3, 2.3]])   # class 2: flat
    train = np.tile(query, (2, 1))
    d = diagnose(train_losses=train, train_labels=[0, 1, 2] * 2, query_losses=query,
                 query_labels=[0, 1, 2])
    assert d["num_snapshots"] == snapshots
    assert d["first_difference_share_max"] == pytest.approx(4 / 5)
    assert d["first_difference_share"][0] == pytest.approx(4 / 5)
    assert d["first_difference_raw_share"][0] == pytest.approx(1.0)
    # class 1: centred d = (-0.6, 0.4, -0.6, 0.4, 0.4): 0.36 / 1.2
    assert d["first_difference_share"][1] == pytest.approx(0.36 / 1.2)
    assert d["first_difference_raw_share"][1] == pytest.approx(0.5)
    assert d["first_difference_share"][2] is None
    assert d["first_difference_share_median"] == pytest.approx((0.8 + 0.3) / 2)


def test_spearman_with_the_epoch1_loss_matches_scipy():
    scipy_stats = pytest.importorskip("scipy.stats")
    train, tl, query, ql, _ = _run(noise=0.2, seed=3)
    d = diagnose(train_losses=train, train_labels=tl, query_losses=query, query_labels=ql)
    scores = cld_scores(train, tl, query, ql)
    expected = scipy_stats.spearmanr(scores, train[:, 1]).statistic
    assert d["spearman_with_epoch1_loss"] == pytest.approx(expected)


def test_score_quantiles_are_those_of_the_cld_scores():
    train, tl, query, ql, _ = _run(seed=1)
    d = diagnose(train_losses=train, train_labels=tl, query_losses=query, query_labels=ql)
    scores = cld_scores(train, tl, query, ql).astype(np.float64)
    assert d["score_quantiles"]["p50"] == pytest.approx(np.median(scores))
    assert d["score_quantiles"]["p0"] == pytest.approx(scores.min())
    assert d["score_quantiles_by_class"][2]["p100"] == pytest.approx(scores[tl == 2].max())


def test_noise_cut_counts_are_those_of_suspected_noise_and_capped():
    train, tl, query, ql, _ = _run(noise=0.3, seed=2)
    d = diagnose(train_losses=train, train_labels=tl, query_losses=query, query_labels=ql,
                 fractions=[0.1, 0.7])
    scores = cld_scores(train, tl, query, ql)
    for cut in d["suspected_noise"]:
        budgets = class_budgets(tl, fraction=cut["fraction"])
        mask = suspected_noise(scores, tl, budgets=budgets, noise_rate=d["noise_rate"])
        assert cut["total"] == int(mask.sum())
        assert cut["dropped"] == {c: int(mask[tl == c].sum()) for c in range(3)}
        assert all(cut["dropped"][c] <= 40 - budgets[c] for c in range(3))
    # at 70% the cap n_c - k_c = 12 binds: 2 * q_hat * 40 > 12
    assert 2 * d["noise_rate"] * 40 > 12
    assert d["suspected_noise"][1]["dropped"] == {0: 12, 1: 12, 2: 12}


def test_noise_cut_finds_the_flipped_labels_of_the_synthetic_run():
    train, tl, query, ql, flipped = _run(noise=0.2, seed=4)
    d = diagnose(train_losses=train, train_labels=tl, query_losses=query, query_labels=ql,
                 fractions=[0.1])
    scores = cld_scores(train, tl, query, ql)
    mask = suspected_noise(scores, tl, budgets=class_budgets(tl, fraction=0.1),
                           noise_rate=d["noise_rate"])
    assert flipped[~mask].mean() < 0.05 < flipped.mean()


# ------------------------------------------------------------------------------ the advice


def test_advice_on_a_noisy_run_recommends_the_noise_cut():
    d = _diagnose_run(noise=0.25, seed=5)
    assert d["noise_rate"] >= 0.1
    assert "the labels look noisy" in d["advice"]
    assert "Prefer noise_adaptive (or top) over random." in d["advice"]


def _epoch_run(epoch, n=60, q=20, snapshots=10, seed=0):
    """Clean losses that fall by 0.2 to 2.2 in ``epoch`` and drift (std 0.05) otherwise."""
    rng = np.random.default_rng(seed)

    def losses(m):
        d = rng.normal(loc=-0.01, scale=0.05, size=(m, snapshots - 1))
        d[:, epoch - 1] = -rng.uniform(0.2, 2.2, size=m)
        return 2.3 + np.concatenate([np.zeros((m, 1)), np.cumsum(d, axis=1)], axis=1)

    return dict(train_losses=losses(n), train_labels=np.arange(n) % 2, query_losses=losses(q),
                query_labels=np.arange(q) % 2)


@pytest.mark.parametrize("epoch, learned", [(1, "learned first"), (3, "learned by epoch 3")])
def test_advice_on_a_clean_run_dominated_by_one_epoch_warns_about_top_k(epoch, learned):
    d = diagnose(**_epoch_run(epoch))
    assert d["noise_rate"] == 0.0
    assert d["dominant_epoch"] == epoch
    assert d["spearman_with_dominant_difference"] < -0.7
    assert "the query set looks clean" in d["advice"]
    assert f"CLD mostly measures how much a sample's loss fell in epoch {epoch}" in d["advice"]
    assert f"keeps the samples {learned}" in d["advice"]
    assert "Prefer noise_adaptive (or random) over top." in d["advice"]


def test_dominant_difference_is_the_largest_share_of_each_class():
    query = np.array([[2.3, 2.2, 1.0, 0.9, 0.8, 0.8],    # class 0: epoch 2
                      [2.3, 0.3, 0.3, 0.2, 0.2, 0.2]])   # class 1: epoch 1
    d = diagnose(train_losses=query, train_labels=[0, 1], query_losses=query,
                 query_labels=[0, 1], fractions=[0.5])
    assert d["dominant_difference"][0]["epoch"] == 2
    assert d["dominant_difference"][1]["epoch"] == 1
    centred = np.diff(query[0]) - np.diff(query[0]).mean()
    assert d["dominant_difference"][0]["share"] == pytest.approx(centred[1] ** 2
                                                                 / (centred @ centred))
    assert d["dominant_epoch"] == 1  # a tie of one class each goes to the earlier epoch


def test_advice_on_a_trajectory_spread_over_the_epochs():
    rng = np.random.default_rng(0)
    steps = np.tile(np.linspace(0.2, 0.25, 9), (20, 1)) + rng.normal(scale=0.01, size=(20, 9))
    query = 2.3 - np.concatenate([np.zeros((20, 1)), np.cumsum(steps, axis=1)], axis=1)
    d = diagnose(train_losses=query, train_labels=np.zeros(20, dtype=int), query_losses=query,
                 query_labels=np.zeros(20, dtype=int))
    assert "spread over the epochs" in d["advice"]


def test_advice_with_two_loss_differences_asks_for_more_epochs():
    d = _diagnose_run(noise=0.0, snapshots=3)
    assert "record more epochs" in d["advice"]
    assert "Prefer" not in d["advice"]


# ----------------------------------------------------------------------------- input forms


def test_store_path_and_arrays_give_the_same_diagnosis(tmp_path):
    train, tl, query, ql, _ = _run(noise=0.1, seed=7)
    store = LossTrajectories.create(tmp_path / "store", tl, ql)
    for t in range(train.shape[1]):
        store.append(train[:, t], query[:, t], epoch=t)
    from_arrays = diagnose(train_losses=train.astype(np.float32), train_labels=tl,
                           query_losses=query.astype(np.float32), query_labels=ql)
    assert diagnose(store) == from_arrays
    assert diagnose(str(tmp_path / "store")) == from_arrays


def test_given_scores_are_used():
    train, tl, query, ql, _ = _run(noise=0.2, seed=8)
    scores = -cld_scores(train, tl, query, ql)
    d = diagnose(train_losses=train, train_labels=tl, query_losses=query, query_labels=ql,
                 scores=scores)
    assert d["score_quantiles"]["p100"] == pytest.approx(float(scores.max()))


def test_diagnosis_is_plain_json_and_formats_for_a_terminal():
    d = _diagnose_run(noise=0.2, seed=9)
    json.dumps(d, allow_nan=False)
    text = format_diagnosis(d)
    assert text.startswith("CLD diagnosis: 120 training and 30 query samples, 8 snapshots, "
                           "3 classes")
    assert f"q_hat: {d['noise_rate']:.2f}" in text
    assert "coreset 10%: drops" in text and "coreset 30%: drops" in text
    assert all(len(line) <= 100 for line in text.splitlines()[-4:])


@pytest.mark.parametrize("kwargs, err, match", [
    ({}, ValueError, r"missing \['train_losses', 'train_labels', 'query_losses', "),
    ({"train_losses": np.ones((3, 4))}, ValueError, r"missing \['train_labels'"),
    ({"store": 3}, TypeError, "store must be a LossTrajectories or the path of one, not int"),
    ({"store": "x", "train_losses": np.ones((3, 4))}, ValueError, "not both"),
])
def test_diagnose_errors_name_what_to_pass(kwargs, err, match):
    with pytest.raises(err, match=match):
        diagnose(**kwargs)


def test_diagnose_rejects_mismatched_scores_and_labels():
    train, tl, query, ql, _ = _run()
    with pytest.raises(ValueError, match="pass one score per training sample"):
        diagnose(train_losses=train, train_labels=tl, query_losses=query, query_labels=ql,
                 scores=np.zeros(3))
    with pytest.raises(ValueError, match="train_labels has 3 entries"):
        diagnose(train_losses=train, train_labels=tl[:3], query_losses=query, query_labels=ql)
    with pytest.raises(FileNotFoundError, match="is not a loss-trajectory store"):
        diagnose("/nonexistent/store")
