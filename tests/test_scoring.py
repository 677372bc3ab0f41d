"""Tests of the CLD scoring core (cld_hf/scoring.py): hand-computed cases, np.corrcoef, streaming."""

import logging

import numpy as np
import pytest

from cld_hf.scoring import StreamingCLD, class_query_trajectories, cld_scores, snapshot_window


def step_weights(d_query):
    """normalize="query_spread": 1 / (population std of the query differences), 0 if flat."""
    spread = d_query.std(axis=0)
    rms = np.sqrt((d_query**2).mean(axis=0))
    flat = spread <= 1e-10 * rms
    return np.where(flat, 0.0, 1.0 / np.where(flat, 1.0, spread))


def reference_scores(train, train_labels, query, query_labels, normalize="none"):
    """Independent computation: class by class, sample by sample, with np.corrcoef."""
    train = np.asarray(train, dtype=np.float64)
    query = np.asarray(query, dtype=np.float64)
    d_train = np.diff(train, axis=1)
    d_query = np.diff(query, axis=1)
    if normalize == "query_spread":
        w = step_weights(d_query)
        d_train, d_query = d_train * w, d_query * w
    out = np.zeros(len(train))
    for c in np.unique(train_labels):
        if not np.any(np.asarray(query_labels) == c):
            continue  # no query trajectory: the caller compares the other classes only
        traj = d_query[np.asarray(query_labels) == c].mean(axis=0)
        for i in np.flatnonzero(np.asarray(train_labels) == c):
            if np.std(d_train[i]) <= 1e-10 * np.sqrt(np.mean(d_train[i] ** 2)) or np.std(traj) == 0:
                out[i] = 0.0
            else:
                out[i] = np.corrcoef(d_train[i], traj)[0, 1]
    return out


def previous_cld_scores(train, train_labels, query, query_labels, chunk_size=4096):
    """The implementation before the one-pass kernel (commit 7a5b2a2), kept as a reference: all
    float64, differences centred two-pass, every class at once through a (C, T) table."""
    train = np.asarray(train)
    classes, inverse = np.unique(np.concatenate([train_labels, query_labels]), return_inverse=True)
    tcodes, qcodes = inverse[: len(train_labels)], inverse[len(train_labels) :]
    dq = np.diff(np.asarray(query, dtype=np.float64), axis=1)
    sums = np.zeros((len(classes), dq.shape[1]))
    np.add.at(sums, qcodes, dq)
    counts = np.bincount(qcodes, minlength=len(classes))
    traj = sums / np.maximum(counts, 1)[:, None]
    centred = traj - traj.mean(axis=1, keepdims=True)
    m2 = np.einsum("ij,ij->i", centred, centred)
    flat = m2 <= 1e-20 * np.einsum("ij,ij->i", traj, traj)
    unit = centred / np.sqrt(np.where(flat, 1.0, m2))[:, None]
    unit[flat] = 0.0
    out = np.empty(len(train), dtype=np.float32)
    for start in range(0, len(train), chunk_size):
        x = train[start : start + chunk_size].astype(np.float64)
        d = np.diff(x, axis=1)
        sumsq = np.einsum("ij,ij->i", d, d)
        d -= (d.sum(axis=1) / d.shape[1])[:, None]
        m2 = np.einsum("ij,ij->i", d, d)
        num = np.einsum("ij,ij->i", d, unit[tcodes[start : start + chunk_size]])
        flat = m2 <= 1e-20 * sumsq
        r = num / np.sqrt(np.where(flat, 1.0, m2))
        r[flat] = 0.0
        out[start : start + chunk_size] = np.clip(r, -1.0, 1.0)
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


# ------------------------------------------------------------------------- one-pass kernel
# Regression tests for the issue "Close to the limits": the float32 one-pass kernel with float64
# rows must give the previous implementation's results (to 1e-6) on every kind of trajectory.


def problem_kinds(n=601, q=60, s=15, c=6, seed=0):
    """(name, train, train_labels, query, query_labels) covering the numerically hard cases."""
    rng = np.random.default_rng(seed)
    train, tl, query, ql = random_problem(n=n, q=q, s=s, c=c, seed=seed, dtype=np.float64)
    t = np.arange(s)
    smooth_rate = rng.uniform(0.01, 0.1, size=n)
    smooth = 3 * np.exp(-np.outer(smooth_rate, t)) + 1e-3 * rng.standard_normal((n, s))
    near_const = np.tile(4.0 - 0.25 * t, (n, 1))  # constant differences ...
    near_const[::2] += 1e-9 * rng.standard_normal((len(near_const[::2]), s))  # ... up to 1e-9
    near_const[1::4] += 1e-13 * rng.standard_normal((len(near_const[1::4]), s))  # ... or 1e-13
    mixed = train.copy()
    mixed[::3] = smooth[::3]
    mixed[1::5] = near_const[1::5]
    mixed[2::7] = 1.5  # constant losses
    yield "noisy float32", train.astype(np.float32), tl, query.astype(np.float32), ql
    yield "noisy float64", train, tl, query, ql
    yield "smooth (trend-dominated) float32", smooth.astype(np.float32), tl, query.astype(np.float32), ql
    yield "offset 1e4 float64", train + 1e4, tl, query + 1e4, ql
    yield "offset 1e4 float32", (train + 1e4).astype(np.float32), tl, (query + 1e4).astype(np.float32), ql
    yield "offset 1e4 + trend", train + 1e4 + 50.0 * t, tl, query + 1e4 + 50.0 * t, ql
    yield "near-constant differences", near_const, tl, query, ql
    yield "mixed", mixed, tl, query, ql


PROBLEMS = list(problem_kinds())


@pytest.mark.parametrize("name,train,tl,query,ql", PROBLEMS, ids=[p[0] for p in PROBLEMS])
def test_cld_scores_equal_the_previous_implementation_and_np_corrcoef(name, train, tl, query, ql):
    ours = cld_scores(train, tl, query, ql)
    np.testing.assert_allclose(ours, previous_cld_scores(train, tl, query, ql), rtol=0, atol=1e-6)
    np.testing.assert_allclose(ours, reference_scores(train, tl, query, ql), rtol=0, atol=1e-6)


@pytest.mark.parametrize("name,train,tl,query,ql", PROBLEMS, ids=[p[0] for p in PROBLEMS])
def test_streaming_equals_batch_on_every_kind_of_trajectory(name, train, tl, query, ql):
    batch = cld_scores(train, tl, query, ql)
    np.testing.assert_allclose(stream(train, tl, query, ql).scores(), batch, rtol=0, atol=1e-6)
    spread = cld_scores(train, tl, query, ql, normalize="query_spread")
    np.testing.assert_allclose(stream(train, tl, query, ql, normalize="query_spread").scores(),
                               spread, rtol=0, atol=1e-6)


def test_constant_differences_score_zero_in_batch_and_streaming():
    # Exactly linear losses (constant differences) and differences constant up to 1e-13 of their
    # size: zero variance by the rule std <= 1e-10 * rms, whatever the offset.
    _, _, query, ql = random_problem(n=4, q=10, s=12, c=2)
    t = np.arange(12)
    rows = [5.0 - 0.5 * t, 1e4 + 0.5 * t, 1e4 + 0.5 * t + 1e-14 * np.sin(t), np.full(12, 7.0)]
    train, tl = np.array(rows), np.array([0, 1, 0, 1])
    np.testing.assert_array_equal(cld_scores(train, tl, query, ql), 0.0)
    np.testing.assert_array_equal(stream(train, tl, query, ql).scores(), 0.0)


@pytest.mark.parametrize("chunk_size", [1, 7, 64, 300, 601, 10_000])
def test_results_do_not_depend_on_chunk_size(chunk_size):
    name, train, tl, query, ql = PROBLEMS[-1]  # mixed: rows of both paths in every chunk
    for normalize in ("none", "query_spread"):
        np.testing.assert_array_equal(
            cld_scores(train, tl, query, ql, chunk_size=chunk_size, normalize=normalize),
            cld_scores(train, tl, query, ql, normalize=normalize),
        )


@pytest.mark.parametrize("first,every", [(9, 1), (None, 2), (11, 3)])
@pytest.mark.parametrize("chunk_size", [7, 4096])
def test_windows_across_chunk_boundaries_equal_scoring_the_selected_columns(first, every, chunk_size):
    _, train, tl, query, ql = PROBLEMS[-1]  # N = 601: not a multiple of 7
    cols = snapshot_window(train.shape[1], first=first, every=every)
    for normalize in ("none", "query_spread"):
        ours = cld_scores(train, tl, query, ql, first=first, every=every, chunk_size=chunk_size,
                          normalize=normalize)
        np.testing.assert_array_equal(
            ours, cld_scores(train[:, cols], tl, query[:, cols], ql, normalize=normalize))
        np.testing.assert_allclose(
            ours, reference_scores(train[:, cols], tl, query[:, cols], ql, normalize), atol=1e-6)


def test_layout_and_dtype_of_the_input_do_not_change_the_scores():
    train, tl, query, ql = random_problem(dtype=np.float64)
    expected = cld_scores(train, tl, query, ql)
    np.testing.assert_array_equal(cld_scores(np.asfortranarray(train), tl, query, ql), expected)
    np.testing.assert_array_equal(cld_scores(train[::-1][::-1], tl, query, ql), expected)
    ints = np.round(train * 1000).astype(np.int64)
    np.testing.assert_allclose(cld_scores(ints, tl, query, ql),
                               cld_scores(ints.astype(np.float64), tl, query, ql), atol=1e-6)
    halves = train.astype(np.float16)
    np.testing.assert_allclose(cld_scores(halves, tl, query, ql),
                               reference_scores(halves, tl, query, ql), atol=1e-6)


@pytest.mark.parametrize("first,every", [(None, 1), (10, 1), (None, 3)])
def test_memmap_input_with_windows_and_chunks(tmp_path, first, every):
    _, train, tl, query, ql = PROBLEMS[2]  # smooth float32: many rows on the float64 path
    mm = np.memmap(tmp_path / "train.f32", dtype=np.float32, mode="w+", shape=train.shape)
    mm[:] = train
    mm.flush()
    ro = np.memmap(tmp_path / "train.f32", dtype=np.float32, mode="r", shape=train.shape)
    np.testing.assert_array_equal(
        cld_scores(ro, tl, query, ql, first=first, every=every, chunk_size=50),
        cld_scores(train, tl, query, ql, first=first, every=every))


def test_nan_rows_are_named_whichever_path_the_other_rows_take():
    _, train, tl, query, ql = PROBLEMS[-1]
    train = train.copy()
    train[[3, 4, 500], [0, 14, 6]] = [np.nan, np.inf, -np.inf]  # first, last, middle column
    with pytest.raises(ValueError, match=r"3 NaN or inf value\(s\) in 3 row\(s\); first row indices: \[3, 4, 500\]"):
        cld_scores(train, tl, query, ql, chunk_size=4)
    # outside the window: not an error
    train[[3, 500], [0, 6]] = 1.0
    ok = cld_scores(train, tl, query, ql, first=14)
    np.testing.assert_allclose(ok, reference_scores(train[:, :14], tl, query[:, :14], ql), atol=1e-6)


def test_progress_bar_gives_the_same_scores():
    train, tl, query, ql = random_problem()
    np.testing.assert_array_equal(cld_scores(train, tl, query, ql, progress=True, chunk_size=64),
                                  cld_scores(train, tl, query, ql))


def test_chunk_size_must_be_a_positive_int():
    train, tl, query, ql = random_problem(n=10)
    with pytest.raises(ValueError, match="chunk_size == 0, must be >= 1"):
        cld_scores(train, tl, query, ql, chunk_size=0)
    with pytest.raises(TypeError, match="chunk_size must be an instance of int, not float"):
        cld_scores(train, tl, query, ql, chunk_size=64.0)


# ------------------------------------------------------------------------- streaming state


def welford_state(train, tl, query, ql, steps):
    """The state StreamingCLD saved before the shifted sums (Welford moments), after ``steps``
    snapshots: what an old checkpoint holds."""
    classes, inverse = np.unique(np.concatenate([tl, ql]), return_inverse=True)
    tc, qc = inverse[: len(tl)], inverse[len(tl) :]
    d = np.diff(train[:, :steps].astype(np.float64), axis=1)
    dq = np.diff(query[:, :steps].astype(np.float64), axis=1)
    m = np.stack([dq[qc == c].mean(axis=0) for c in range(len(classes))])
    k = max(steps - 1, 1)  # the Welford version kept zeros before the first difference
    mean_d, mean_q = d.sum(axis=1) / k, m.sum(axis=1) / k
    return {
        "num_updates": steps, "num_used": steps,
        "prev_train": train[:, steps - 1].astype(np.float64),
        "prev_query": query[:, steps - 1].astype(np.float64),
        "mean_d": mean_d, "m2_d": ((d - mean_d[:, None]) ** 2).sum(axis=1),
        "sumsq_d": (d**2).sum(axis=1),
        "co": ((d - mean_d[:, None]) * (m - mean_q[:, None])[tc]).sum(axis=1),
        "mean_q": mean_q, "m2_q": ((m - mean_q[:, None]) ** 2).sum(axis=1),
        "sumsq_q": (m**2).sum(axis=1),
    }


@pytest.mark.parametrize("steps", [1, 2, 6])
def test_streaming_resumes_from_a_state_saved_by_the_welford_version(steps):
    train, tl, query, ql = random_problem(dtype=np.float64)
    scorer = StreamingCLD(tl, ql)
    scorer.load_state_dict(welford_state(train, tl, query, ql, steps))
    for t in range(steps, train.shape[1]):
        scorer.update(train[:, t], query[:, t])
    np.testing.assert_allclose(scorer.scores(), cld_scores(train, tl, query, ql), atol=1e-6)


@pytest.mark.parametrize("normalize", ["none", "query_spread"])
def test_streaming_state_is_arrays_and_ints_and_survives_safetensors(tmp_path, normalize):
    safetensors_numpy = pytest.importorskip("safetensors.numpy")
    train, tl, query, ql = random_problem(dtype=np.float32)
    first = StreamingCLD(tl, ql, normalize=normalize)
    for t in range(4):
        first.update(train[:, t], query[:, t])
    state = first.state_dict()
    counters = {k: v for k, v in state.items() if not isinstance(v, np.ndarray)}
    assert all(isinstance(v, int) for v in counters.values())
    arrays = {k: v for k, v in state.items() if isinstance(v, np.ndarray)}
    safetensors_numpy.save_file(arrays, str(tmp_path / "state.safetensors"))
    loaded = dict(safetensors_numpy.load_file(str(tmp_path / "state.safetensors")), **counters)
    second = StreamingCLD(tl, ql, normalize=normalize)
    second.load_state_dict(loaded)
    for t in range(4, train.shape[1]):
        second.update(train[:, t], query[:, t])
    np.testing.assert_array_equal(second.scores(),
                                  stream(train, tl, query, ql, normalize=normalize).scores())


def test_streaming_state_from_the_other_normalize_option_is_refused():
    train, tl, query, ql = random_problem()
    plain = stream(train[:, :4], tl, query[:, :4], ql)
    with pytest.raises(ValueError, match=r"normalize='none'.*normalize='query_spread'.*create it with normalize='none'"):
        StreamingCLD(tl, ql, normalize="query_spread").load_state_dict(plain.state_dict())


def test_streaming_copies_the_losses_it_is_fed():
    train, tl, query, ql = random_problem(dtype=np.float32)
    scorer = StreamingCLD(tl, ql)
    for t in range(train.shape[1]):
        a, b = train[:, t].copy(), query[:, t].copy()
        scorer.update(a, b)
        a[:] = np.nan  # a caller reusing its buffer
        b[:] = np.nan
    np.testing.assert_allclose(scorer.scores(), cld_scores(train, tl, query, ql), atol=1e-6)


def test_streaming_keeps_float64_losses_exactly_after_float32_ones():
    train, tl, query, ql = random_problem(dtype=np.float64)
    train = train + 1e4  # float32 would round these to 1e-3
    scorer = StreamingCLD(tl, ql)
    scorer.update(np.round(train[:, 0]).astype(np.float32), query[:, 0])
    for t in range(1, train.shape[1]):
        scorer.update(train[:, t], query[:, t])
    expected = train.copy()
    expected[:, 0] = np.round(train[:, 0])
    np.testing.assert_allclose(scorer.scores(), reference_scores(expected, tl, query, ql), atol=1e-6)


# ------------------------------------------------------------------------- normalize="query_spread"
# The issue "Beyond top-k": divide each step's differences by the query spread at that step.


def test_query_spread_hand_computed():
    # query differences (-2, -1, -1) and (0, -1, 1): spreads (1, 0, 1), weights (1, 0, 1);
    # class trajectory (-1, -1, 0) -> (-1, 0, 0). Sample 0: d = (-2, -1, 0) -> (-2, 0, 0), the
    # same direction once centred: r = 1. Sample 1: d = (-1, 0, -1) -> itself; centred
    # (-1, 2, -1)/3 against (-2, 1, 1)/3: r = 3 / 6 = 0.5. Plain CLD: sqrt(3)/2 and -0.5.
    query = np.array([[5.0, 3.0, 2.0, 1.0], [5.0, 5.0, 4.0, 5.0]])
    train = np.array([[3.0, 1.0, 0.0, 0.0], [3.0, 2.0, 2.0, 1.0]])
    np.testing.assert_allclose(cld_scores(train, [0, 0], query, [0, 0], normalize="query_spread"),
                               [1.0, 0.5], atol=1e-7)
    np.testing.assert_allclose(cld_scores(train, [0, 0], query, [0, 0]), [np.sqrt(3) / 2, -0.5], atol=1e-7)
    np.testing.assert_allclose(stream(train, [0, 0], query, [0, 0], normalize="query_spread").scores(),
                               [1.0, 0.5], atol=1e-7)


@pytest.mark.parametrize("seed", [0, 1])
def test_query_spread_equals_np_corrcoef_of_the_normalised_differences(seed):
    train, tl, query, ql = random_problem(seed=seed)
    ours = cld_scores(train, tl, query, ql, normalize="query_spread")
    np.testing.assert_allclose(ours, reference_scores(train, tl, query, ql, "query_spread"), atol=1e-6)
    assert np.abs(ours - cld_scores(train, tl, query, ql)).max() > 0.01  # it does change something


@pytest.mark.parametrize("first,every", [(None, 1), (7, 1), (None, 2)])
def test_query_spread_streaming_equals_batch(first, every):
    train, tl, query, ql = random_problem(seed=3)
    np.testing.assert_allclose(
        stream(train, tl, query, ql, first=first, every=every, normalize="query_spread").scores(),
        cld_scores(train, tl, query, ql, first=first, every=every, normalize="query_spread"),
        atol=1e-6)


def from_differences(d, start=3.0):
    return start + np.concatenate([np.zeros((len(d), 1)), np.cumsum(d, axis=1)], axis=1)


@pytest.mark.parametrize("step,factor", [(0, 100.0), (4, 0.01), (9, 3.0)])
def test_query_spread_is_invariant_to_scaling_one_step(step, factor):
    # Multiplying the differences of one step by c > 0 for every sample, training and query,
    # multiplies that step's spread by c: the normalised differences do not change.
    train, tl, query, ql = random_problem(dtype=np.float64)
    dt, dq = np.diff(train, axis=1), np.diff(query, axis=1)
    dt[:, step] *= factor
    dq[:, step] *= factor
    scaled = cld_scores(from_differences(dt), tl, from_differences(dq), ql, normalize="query_spread")
    np.testing.assert_allclose(scaled, cld_scores(train, tl, query, ql, normalize="query_spread"), atol=1e-6)
    plain = cld_scores(from_differences(dt), tl, from_differences(dq), ql)
    assert np.abs(plain - cld_scores(train, tl, query, ql)).max() > 0.01  # plain CLD is not


def test_query_spread_equals_plain_cld_when_every_step_has_the_same_spread():
    train, tl, query, ql = random_problem(dtype=np.float64)
    dq = np.diff(query, axis=1)
    dq = (dq - dq.mean(axis=0)) / dq.std(axis=0) * 0.3 + dq.mean(axis=0)  # spread 0.3 at each step
    query = from_differences(dq)
    np.testing.assert_allclose(cld_scores(train, tl, query, ql, normalize="query_spread"),
                               cld_scores(train, tl, query, ql), atol=1e-6)


def test_query_spread_gives_a_step_without_spread_weight_zero():
    train, tl, query, ql = random_problem(dtype=np.float64)
    dq, dt = np.diff(query, axis=1), np.diff(train, axis=1)
    dq[:, 5] = -0.25  # every query loss moves by the same amount at step 5
    query = from_differences(dq)
    dt_zero = dt.copy()
    dt_zero[:, 5] = 0.0  # weight 0: the step's normalised differences are 0 for every sample
    dq_zero = dq.copy()
    dq_zero[:, 5] = 0.0
    w = step_weights(np.diff(query, axis=1))
    assert w[5] == 0.0 and (w[np.arange(len(w)) != 5] > 0).all()
    ours = cld_scores(train, tl, query, ql, normalize="query_spread")
    expected = reference_scores(from_differences(dt_zero), tl, from_differences(dq_zero), ql, "query_spread")
    np.testing.assert_allclose(ours, expected, atol=1e-6)
    np.testing.assert_allclose(stream(train, tl, query, ql, normalize="query_spread").scores(), ours, atol=1e-6)


def test_query_spread_with_missing_query_class_global_streams_like_batch():
    train, tl, query, ql = random_problem(c=5)
    keep = ql != 2
    batch = cld_scores(train, tl, query[keep], ql[keep], missing_query_class="global", normalize="query_spread")
    streamed = stream(train, tl, query[keep], ql[keep], missing_query_class="global",
                      normalize="query_spread").scores()
    np.testing.assert_allclose(streamed, batch, atol=1e-6)


def test_normalize_must_be_a_known_option():
    with pytest.raises(ValueError, match=r"normalize == 'spread', must be one of \['none', 'query_spread'\]"):
        cld_scores(np.random.rand(4, 5), [0, 0, 1, 1], np.random.rand(2, 5), [0, 1], normalize="spread")
    with pytest.raises(ValueError, match=r"normalize == 'z', must be one of"):
        StreamingCLD([0, 1], [0, 1], normalize="z")


def test_empty_training_set_gives_no_scores():
    query, ql = np.random.default_rng(0).random((2, 5)), [0, 1]
    assert cld_scores(np.zeros((0, 5)), np.zeros(0, dtype=int), query, ql).shape == (0,)
    scorer = StreamingCLD(np.zeros(0, dtype=int), ql)
    for t in range(5):
        scorer.update(np.zeros(0), query[:, t])
    assert scorer.scores().shape == (0,)


def test_blocks_switch_to_float64_and_back_without_changing_the_scores(monkeypatch):
    # Trend-dominated rows send whole blocks to the float64 formula; noisy rows bring the float32
    # kernel back. Small blocks make both switches happen several times in a small problem.
    import cld_hf.scoring.batch as scoring

    monkeypatch.setattr(scoring, "BLOCK_ROWS", 64)
    kinds = {p[0]: p for p in PROBLEMS}
    _, noisy, tl, query, ql = kinds["noisy float64"]
    smooth = kinds["smooth (trend-dominated) float32"][1].astype(np.float64)
    train = noisy.copy()
    for lo, hi in [(64, 256), (400, 500)]:
        train[lo:hi] = smooth[lo:hi]
    calls = []
    score = scoring._ExactRows.score
    monkeypatch.setattr(scoring._ExactRows, "score", lambda self, rows: calls.append(rows) or score(self, rows))
    ours = cld_scores(train, tl, query, ql, chunk_size=16)
    assert any(isinstance(r, slice) for r in calls)  # whole blocks in float64
    assert sum(isinstance(r, slice) for r in calls) < len(range(0, 601, 64))  # and back
    np.testing.assert_allclose(ours, previous_cld_scores(train, tl, query, ql), atol=1e-6)
    np.testing.assert_allclose(ours, reference_scores(train, tl, query, ql), atol=1e-6)
    for chunk_size in (1, 7, 64, 1000):  # the blocks, hence the switches, do not move
        np.testing.assert_array_equal(cld_scores(train, tl, query, ql, chunk_size=chunk_size), ours)


def test_labels_already_dense_or_sparse_give_the_same_scores_and_are_not_kept():
    train, tl, query, ql = random_problem(c=4)
    for dtype in (np.int64, np.int32, np.int16, np.uint8):
        np.testing.assert_array_equal(cld_scores(train, tl.astype(dtype), query, ql.astype(dtype)),
                                      cld_scores(train, tl, query, ql))
    labels = tl.copy()
    scorer = StreamingCLD(labels, ql)
    labels[:] = 0  # the caller reuses its array
    for t in range(train.shape[1]):
        scorer.update(train[:, t], query[:, t])
    np.testing.assert_allclose(scorer.scores(), cld_scores(train, tl, query, ql), atol=1e-6)


# ------------------------------------------------------------------ few differences, overflow


@pytest.mark.parametrize("snapshots, warned", [(3, True), (5, True), (6, False)])
def test_few_differences_are_warned_about_in_batch_and_streaming(snapshots, warned, caplog):
    rng = np.random.default_rng(0)
    train, query = rng.random((6, snapshots)), rng.random((2, snapshots))
    labels, qlabels = [0, 0, 0, 1, 1, 1], [0, 1]
    with caplog.at_level(logging.WARNING, logger="cld_hf"):
        cld_scores(train, labels, query, qlabels)
        s = StreamingCLD(labels, qlabels)
        for t in range(snapshots):
            s.update(train[:, t], query[:, t])
        s.scores()
    messages = [r.getMessage() for r in caplog.records if "loss differences take" in r.getMessage()]
    assert len(messages) == (2 if warned else 0)
    if warned:
        assert messages[0].startswith(f"CLD scores from {snapshots - 1} loss differences")


def test_with_only_two_differences_every_score_is_minus_one_zero_or_one():
    rng = np.random.default_rng(1)
    scores = cld_scores(rng.random((50, 3)), np.zeros(50, int), rng.random((4, 3)), [0] * 4)
    assert set(np.round(np.abs(scores), 5).tolist()) <= {0.0, 1.0}


def test_huge_finite_losses_score_as_their_rescaled_rows_in_batch():
    rng = np.random.default_rng(2)
    train, query = rng.random((40, 9)), rng.random((6, 9))
    labels, qlabels = rng.integers(0, 2, 40), [0, 0, 0, 1, 1, 1]
    expected = cld_scores(train, labels, query, qlabels)
    big = train.copy()
    big[[3, 17]] *= 1e307  # their differences' squares overflow float64
    np.testing.assert_allclose(cld_scores(big, labels, query, qlabels), expected, atol=1e-6)
    np.testing.assert_allclose(cld_scores(train, labels, query * 1e306, qlabels), expected,
                               atol=1e-6)
    both = cld_scores(big, labels, query * 1e306, qlabels, normalize="query_spread")
    np.testing.assert_allclose(
        both, cld_scores(train, labels, query, qlabels, normalize="query_spread"), atol=1e-6)


def test_overflowing_streaming_sums_are_an_error_naming_the_rows():
    rng = np.random.default_rng(3)
    train, query = rng.random((30, 6)), rng.random((4, 6))
    train[[4, 9]] *= 1e300
    s = StreamingCLD(np.zeros(30, int), [0] * 4)
    with np.errstate(over="ignore", invalid="ignore"):
        for t in range(6):
            s.update(train[:, t], query[:, t])
    with pytest.raises(ValueError, match=r"training rows \[4, 9\] overflowed .*divide them all"):
        s.scores()
