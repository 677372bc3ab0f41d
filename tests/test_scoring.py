"""Tests of the CLD scoring core (cld_hf/scoring.py): hand-computed cases, np.corrcoef, streaming."""

import logging

import numpy as np
import pytest

from cld_hf.scoring import StreamingCLD, class_query_trajectories, cld_scores, snapshot_window


def reference_scores(train, train_labels, query, query_labels):
    """Independent computation: class by class, sample by sample, with np.corrcoef."""
    train = np.asarray(train, dtype=np.float64)
    query = np.asarray(query, dtype=np.float64)
    d_train = np.diff(train, axis=1)
    d_query = np.diff(query, axis=1)
    out = np.zeros(len(train))
    for c in np.unique(train_labels):
        if not np.any(np.asarray(query_labels) == c):
            continue  # no query trajectory: the caller compares the other classes only
        traj = d_query[np.asarray(query_labels) == c].mean(axis=0)
        for i in np.flatnonzero(np.asarray(train_labels) == c):
            if np.std(d_train[i]) == 0 or np.std(traj) == 0:
                out[i] = 0.0
            else:
                out[i] = np.corrcoef(d_train[i], traj)[0, 1]
    return out


def random_problem(n=300, q=40, s=12, c=5, seed=0, dtype=np.float32):
    rng = np.random.default_rng(seed)
    train_labels = rng.permutation(np.arange(n) % c)
    query_labels = rng.permutation(np.arange(q) % c)
    t = np.arange(s)
    rates = rng.uniform(0.05, 0.5, size=c)
    train = 3 * np.exp(-np.outer(rates[train_labels], t)) + 0.2 * rng.standard_normal((n, s))
    query = 3 * np.exp(-np.outer(rates[query_labels], t)) + 0.2 * rng.standard_normal((q, s))
    return train.astype(dtype), train_labels, query.astype(dtype), query_labels


def test_cld_scores_hand_computed_perfect_and_anti_correlation():
    # query diffs of class 0: [-1, -2, -0.5]; sample 0 has the same diffs, sample 1 their negation,
    # sample 2 twice them plus a constant (Pearson is invariant to both).
    train = np.array([[4.0, 3.0, 1.0, 0.5], [1.0, 2.0, 4.0, 4.5], [0.0, -1.0, -4.0, -4.0]])
    query = np.array([[5.0, 4.0, 2.0, 1.5]])
    scores = cld_scores(train, [0, 0, 0], query, [0])
    assert scores.dtype == np.float32
    np.testing.assert_allclose(scores[:2], [1.0, -1.0], atol=1e-7)
    # sample 2 diffs [-1, -3, 0]; corr with [-1, -2, -0.5] by hand:
    a, b = np.array([-1.0, -3.0, 0.0]), np.array([-1.0, -2.0, -0.5])
    a, b = a - a.mean(), b - b.mean()
    assert scores[2] == pytest.approx(a @ b / np.sqrt((a @ a) * (b @ b)), abs=1e-7)


def test_query_trajectory_is_mean_of_class_query_differences():
    q = np.array([[3.0, 2.0, 2.0], [5.0, 3.0, 2.0], [1.0, 1.0, 2.0]])
    traj, counts, global_traj = class_query_trajectories(q, np.array([0, 0, 1]), 2)
    np.testing.assert_array_equal(traj, [[-1.5, -0.5], [0.0, 1.0]])
    np.testing.assert_array_equal(counts, [2, 1])
    np.testing.assert_allclose(global_traj, [-1.0, 0.0])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("chunk_size", [1, 7, 4096])
def test_cld_scores_equal_np_corrcoef_class_by_class(dtype, chunk_size):
    train, tl, query, ql = random_problem(dtype=dtype)
    ours = cld_scores(train, tl, query, ql, chunk_size=chunk_size)
    np.testing.assert_allclose(ours, reference_scores(train, tl, query, ql), atol=1e-6)
    assert np.all(np.abs(ours) <= 1.0)


def test_cld_scores_with_sparse_and_negative_labels_match_dense_labels():
    train, tl, query, ql = random_problem(c=4)
    mapping = np.array([-7, 3, 1_000_000_000, 42])
    dense = cld_scores(train, tl, query, ql)
    sparse = cld_scores(train, mapping[tl], query, mapping[ql])
    np.testing.assert_array_equal(dense, sparse)


def test_zero_variance_sample_and_class_score_zero():
    train = np.array(
        [
            [1.0, 1.0, 1.0, 1.0],  # constant loss: zero differences
            [4.0, 3.0, 2.0, 1.0],  # linear: constant differences, zero variance
            [4.0, 3.0, 1.0, 0.5],  # varying, class 0
            [4.0, 3.0, 1.0, 0.5],  # varying, but class 1 has a constant query trajectory
        ]
    )
    query = np.array([[5.0, 4.0, 2.0, 1.5], [3.0, 2.0, 1.0, 0.0]])
    scores = cld_scores(train, [0, 0, 0, 1], query, [0, 1])
    np.testing.assert_array_equal(scores, [0.0, 0.0, 1.0, 0.0])
    assert not np.isnan(scores).any()


def test_cld_scores_accept_memmap(tmp_path):
    train, tl, query, ql = random_problem()
    path = tmp_path / "train.f32"
    mm = np.memmap(path, dtype=np.float32, mode="w+", shape=train.shape)
    mm[:] = train
    mm.flush()
    ro = np.memmap(path, dtype=np.float32, mode="r", shape=train.shape)
    np.testing.assert_array_equal(cld_scores(ro, tl, query, ql, chunk_size=64), cld_scores(train, tl, query, ql))


# ------------------------------------------------------------------------- windows


def test_snapshot_window_first_and_every():
    assert snapshot_window(10).tolist() == list(range(10))
    assert snapshot_window(10, first=4).tolist() == [0, 1, 2, 3]
    assert snapshot_window(10, every=3).tolist() == [0, 3, 6, 9]
    assert snapshot_window(10, first=7, every=2).tolist() == [0, 2, 4, 6]
    assert snapshot_window(3, first=100).tolist() == [0, 1, 2]
    with pytest.raises(ValueError, match="every == 0"):
        snapshot_window(10, every=0)
    with pytest.raises(ValueError, match="first == 0"):
        snapshot_window(10, first=0)


@pytest.mark.parametrize("first,every", [(6, 1), (None, 2), (9, 3)])
def test_window_equals_scoring_the_selected_columns(first, every):
    train, tl, query, ql = random_problem()
    cols = snapshot_window(train.shape[1], first=first, every=every)
    np.testing.assert_array_equal(
        cld_scores(train, tl, query, ql, first=first, every=every),
        cld_scores(train[:, cols], tl, query[:, cols], ql),
    )


# ------------------------------------------------------------------------- streaming


def stream(train, tl, query, ql, **kwargs):
    scorer = StreamingCLD(tl, ql, **kwargs)
    for t in range(train.shape[1]):
        scorer.update(train[:, t], query[:, t])
    return scorer


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_streaming_equals_batch(seed):
    train, tl, query, ql = random_problem(seed=seed)
    np.testing.assert_allclose(stream(train, tl, query, ql).scores(), cld_scores(train, tl, query, ql), atol=1e-6)


def test_streaming_is_stable_with_large_offsets():
    # Losses around 1e4 with small wiggles: a naive sum-of-squares formula loses every digit.
    train, tl, query, ql = random_problem(dtype=np.float64)
    offset = 1e4 + 50.0 * np.arange(train.shape[1])
    train, query = train + offset, query + offset
    ref = reference_scores(train, tl, query, ql)
    np.testing.assert_allclose(stream(train, tl, query, ql).scores(), ref, atol=1e-5)
    np.testing.assert_allclose(cld_scores(train, tl, query, ql), ref, atol=1e-5)


@pytest.mark.parametrize("first,every", [(5, 1), (None, 3), (10, 2)])
def test_streaming_window_equals_batch_window(first, every):
    train, tl, query, ql = random_problem()
    np.testing.assert_allclose(
        stream(train, tl, query, ql, first=first, every=every).scores(),
        cld_scores(train, tl, query, ql, first=first, every=every),
        atol=1e-6,
    )


def test_streaming_state_does_not_grow_with_snapshots():
    train, tl, query, ql = random_problem(s=40)
    scorer = StreamingCLD(tl, ql)
    sizes = []
    for t in range(train.shape[1]):
        scorer.update(train[:, t], query[:, t])
        sizes.append(sum(np.asarray(v).nbytes for v in scorer.state_dict().values()))
    assert len(set(sizes[1:])) == 1


def test_streaming_state_dict_round_trip_resumes_exactly():
    train, tl, query, ql = random_problem()
    first = StreamingCLD(tl, ql)
    for t in range(5):
        first.update(train[:, t], query[:, t])
    second = StreamingCLD(tl, ql)
    second.load_state_dict(first.state_dict())
    for t in range(5, train.shape[1]):
        second.update(train[:, t], query[:, t])
    np.testing.assert_array_equal(second.scores(), stream(train, tl, query, ql).scores())
    with pytest.raises(ValueError, match="different training set"):
        StreamingCLD(tl[:10], ql).load_state_dict(first.state_dict())


def test_streaming_zero_variance_scores_zero():
    scorer = StreamingCLD([0, 0], [0])
    for t in range(5):
        scorer.update([1.0, 4.0 - t], [4.0 - t * t / 2])
    assert scorer.scores().tolist() == [0.0, 0.0]


# ------------------------------------------------------------------------- bad input


def test_fewer_than_three_snapshots_is_an_error():
    with pytest.raises(ValueError, match="at least 3 snapshots"):
        cld_scores(np.ones((4, 2)), [0, 0, 1, 1], np.ones((2, 2)), [0, 1])
    with pytest.raises(ValueError, match=r"at least 3 snapshots.*first=2"):
        cld_scores(np.random.rand(4, 9), [0, 0, 1, 1], np.random.rand(2, 9), [0, 1], first=2)
    scorer = StreamingCLD([0], [0])
    scorer.update([1.0], [1.0])
    scorer.update([2.0], [2.0])
    with pytest.raises(ValueError, match=r"at least 3 snapshots .*; 2 used so far"):
        scorer.scores()


@pytest.mark.parametrize(
    "train_shape,query_shape,labels,qlabels,match",
    [
        ((4, 5), (2, 6), 4, 2, "5 snapshots .* query_losses has 6"),
        ((4, 5), (2, 5), 3, 2, "train_labels has 3 entries but the losses have 4 rows"),
        ((4, 5), (2, 5), 4, 1, "query_labels has 1 entries but the losses have 2 rows"),
        ((20,), (2, 5), 20, 2, "train_losses must be a 2-D array"),
    ],
)
def test_shape_mismatches_are_clear_errors(train_shape, query_shape, labels, qlabels, match):
    with pytest.raises(ValueError, match=match):
        cld_scores(np.random.rand(*train_shape), np.arange(labels) % 2, np.random.rand(*query_shape), np.arange(qlabels) % 2)


def test_nan_and_inf_losses_name_count_and_first_indices():
    train, tl, query, ql = random_problem()
    train = train.copy()
    train[17, 3] = np.nan
    train[17, 4] = np.inf
    train[250, 0] = -np.inf
    with pytest.raises(ValueError, match=r"train_losses contains 3 NaN or inf value\(s\) in 2 row\(s\); first row indices: \[17, 250\]"):
        cld_scores(train, tl, query, ql, chunk_size=64)
    query = query.copy()
    query[5, 1] = np.nan
    with pytest.raises(ValueError, match=r"query_losses contains 1 NaN .* \[5\]"):
        cld_scores(np.nan_to_num(train), tl, query, ql)
    scorer = StreamingCLD(tl, ql)
    with pytest.raises(ValueError, match=r"train_losses_t contains 1 NaN or inf value\(s\) at snapshot 0"):
        scorer.update(np.where(np.arange(len(tl)) == 9, np.nan, 1.0), np.ones(len(ql)))


def test_class_without_query_is_an_error_naming_classes_or_falls_back_to_global(caplog):
    train, tl, query, ql = random_problem(c=5)
    keep = ql != 3
    with pytest.raises(ValueError, match=r"1 training class\(es\) have no query sample: \[3\].*missing_query_class='global'"):
        cld_scores(train, tl, query[keep], ql[keep])
    with pytest.raises(ValueError, match=r"no query sample: \[3\]"):
        StreamingCLD(tl, ql[keep])
    with caplog.at_level(logging.WARNING, logger="cld_hf.scoring"):
        fallback = cld_scores(train, tl, query[keep], ql[keep], missing_query_class="global")
    assert "all-class query trajectory" in caplog.text
    # class 3 scored against the mean of all query differences; others unchanged
    global_traj = np.diff(query[keep].astype(np.float64), axis=1).mean(axis=0)
    d = np.diff(train[tl == 3].astype(np.float64), axis=1)
    expected = [np.corrcoef(row, global_traj)[0, 1] for row in d]
    np.testing.assert_allclose(fallback[tl == 3], expected, atol=1e-6)
    np.testing.assert_allclose(fallback[tl != 3], reference_scores(train, tl, query[keep], ql[keep])[tl != 3], atol=1e-6)
    streamed = stream(train, tl, query[keep], ql[keep], missing_query_class="global").scores()
    np.testing.assert_allclose(streamed, fallback, atol=1e-6)
    with pytest.raises(ValueError, match=r"must be one of \['error', 'global'\]"):
        cld_scores(train, tl, query, ql, missing_query_class="zero")


def test_query_class_without_training_samples_is_fine():
    train, tl, query, ql = random_problem(c=3)
    extra_query = np.vstack([query, query[:2]])
    extra_labels = np.concatenate([ql, [9, 9]])
    np.testing.assert_array_equal(cld_scores(train, tl, extra_query, extra_labels), cld_scores(train, tl, query, ql))


@pytest.mark.parametrize("bad", [np.array([0.0, 1.0, 1.0, 0.0]), np.array(["a", "b", "b", "a"]), np.array([True, False, True, False])])
def test_labels_that_are_not_integers_are_rejected(bad):
    with pytest.raises(TypeError, match="train_labels must hold integer class ids"):
        cld_scores(np.random.rand(4, 5), bad, np.random.rand(2, 5), [0, 1])


def test_empty_query_set_is_an_error():
    with pytest.raises(ValueError, match="query_losses is empty"):
        cld_scores(np.random.rand(4, 5), [0, 0, 1, 1], np.zeros((0, 5)), np.zeros(0, dtype=int))
    with pytest.raises(ValueError, match="query_labels is empty"):
        StreamingCLD([0, 1], np.zeros(0, dtype=int))


def test_streaming_update_shape_error():
    scorer = StreamingCLD([0, 1, 1], [0, 1])
    with pytest.raises(ValueError, match=r"train_losses_t has shape \(2,\) at snapshot 0, expected \(3,\)"):
        scorer.update([1.0, 2.0], [1.0, 2.0])
