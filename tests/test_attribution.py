"""Tests of cld_hf/attribution.py: CLD_inf1 (Appendix F) against np.corrcoef pair by pair, TracIn
against explicit outer-product gradients, top_influencers against a sort."""

import numpy as np
import pytest

from cld_hf.attribution import cld_attribution, top_influencers, tracin_last_layer
from cld_hf.scoring import snapshot_window


def random_losses(n=37, q=11, s=9, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(s)
    train = 3 * np.exp(-np.outer(rng.uniform(0.05, 0.5, n), t)) + 0.2 * rng.standard_normal((n, s))
    query = 3 * np.exp(-np.outer(rng.uniform(0.05, 0.5, q), t)) + 0.2 * rng.standard_normal((q, s))
    return train, query


def brute_force_attribution(train, query):
    """One np.corrcoef per (training, query) pair; zero variance scores 0."""
    dt = np.diff(np.asarray(train, dtype=np.float64), axis=1)
    dq = np.diff(np.asarray(query, dtype=np.float64), axis=1)
    out = np.zeros((len(dt), len(dq)))
    for i, a in enumerate(dt):
        for j, b in enumerate(dq):
            if np.std(a) > 1e-10 * np.sqrt(np.mean(a**2)) and np.std(b) > 1e-10 * np.sqrt(np.mean(b**2)):
                out[i, j] = np.corrcoef(a, b)[0, 1]
    return out


@pytest.mark.parametrize("dtype,atol", [(np.float32, 1e-6), (np.float64, 1e-12)])
@pytest.mark.parametrize("chunk_size", [1, 5, 2048])
def test_cld_attribution_equals_np_corrcoef_pair_by_pair(dtype, atol, chunk_size):
    train, query = random_losses()
    ours = cld_attribution(train, query, chunk_size=chunk_size, dtype=dtype)
    assert ours.dtype == dtype and ours.shape == (37, 11)
    np.testing.assert_allclose(ours, brute_force_attribution(train, query), atol=atol)


def test_cld_attribution_is_stable_with_large_offsets():
    train, query = random_losses()
    t = np.arange(train.shape[1])
    shifted = cld_attribution(train + 1e4 + 50 * t, query + 1e4 + 50 * t, dtype=np.float64)
    np.testing.assert_allclose(shifted, brute_force_attribution(train, query), atol=1e-9)


def test_zero_variance_rows_and_columns_score_zero():
    train, query = random_losses()
    train[3] = 2.0  # constant loss
    train[4] = 5.0 - 0.5 * np.arange(train.shape[1])  # constant differences
    query[7] = 1e4 + 0.25 * np.arange(query.shape[1])
    ours = cld_attribution(train, query)
    np.testing.assert_array_equal(ours[[3, 4]], 0.0)
    np.testing.assert_array_equal(ours[:, 7], 0.0)
    np.testing.assert_allclose(ours, brute_force_attribution(train, query), atol=1e-6)


@pytest.mark.parametrize("first,every", [(5, 1), (None, 2), (8, 3)])
def test_windows_equal_attributing_the_selected_columns(first, every):
    train, query = random_losses(s=12)
    cols = snapshot_window(12, first=first, every=every)
    np.testing.assert_array_equal(cld_attribution(train, query, first=first, every=every),
                                  cld_attribution(train[:, cols], query[:, cols]))


def test_index_subsets_are_blocks_of_the_full_matrix():
    train, query = random_losses()
    full = cld_attribution(train, query)
    ti, qi = np.array([30, 2, 2, 17]), np.array([10, 0])
    # equal up to float32 rounding: BLAS may block products of other shapes differently
    np.testing.assert_allclose(cld_attribution(train, query, train_index=ti, query_index=qi,
                                               chunk_size=3), full[np.ix_(ti, qi)], atol=1e-6)


def test_out_memmap_is_written_and_returned(tmp_path):
    train, query = random_losses()
    src = np.memmap(tmp_path / "train.f32", dtype=np.float32, mode="w+", shape=train.shape)
    src[:] = train
    mm = np.memmap(tmp_path / "attr.f32", dtype=np.float32, mode="w+", shape=(37, 11))
    got = cld_attribution(src, query, out=mm, chunk_size=4)
    assert got is mm
    mm.flush()
    back = np.memmap(tmp_path / "attr.f32", dtype=np.float32, mode="r", shape=(37, 11))
    np.testing.assert_allclose(back, cld_attribution(train.astype(np.float32), query), atol=1e-6)
    wide = np.empty((37, 11), dtype=np.float64)  # another dtype: products in float32, then cast
    np.testing.assert_allclose(cld_attribution(train, query, out=wide, chunk_size=4), back, atol=1e-6)
    with pytest.raises(ValueError, match=r"out has shape \(11, 37\), expected \(37, 11\)"):
        cld_attribution(train, query, out=np.empty((11, 37), dtype=np.float32))
    with pytest.raises(ValueError, match="out is read-only"):
        cld_attribution(train, query, out=back)


def test_nan_losses_and_bad_arguments_are_named():
    train, query = random_losses()
    train[[5, 20], [1, 8]] = [np.nan, np.inf]
    with pytest.raises(ValueError, match=r"train_losses contains 2 NaN or inf value\(s\) in 2 row\(s\); first row indices: \[5, 20\]"):
        cld_attribution(train, query)
    with pytest.raises(ValueError, match=r"train_losses contains 1 NaN .* \[20\]"):
        cld_attribution(train, query, train_index=[20, 0])
    np.testing.assert_allclose(cld_attribution(train, query, train_index=[0, 1]),
                               cld_attribution(train[:2], query), atol=1e-6)
    query[2, 0] = np.nan
    with pytest.raises(ValueError, match=r"query_losses contains 1 NaN .* \[2\]"):
        cld_attribution(train[:2], query)
    with pytest.raises(ValueError, match=r"train_index holds 1 row number\(s\) outside \[0, 36\]"):
        cld_attribution(train, query, train_index=[0, 37])
    with pytest.raises(TypeError, match="train_index must hold integer row numbers"):
        cld_attribution(train, query, train_index=[0.5])
    with pytest.raises(ValueError, match="at least 3 snapshots"):
        cld_attribution(train, query, first=2)
    with pytest.raises(ValueError, match="dtype == float16, must be float32 or float64"):
        cld_attribution(train[:2], query[:2], dtype=np.float16)
    with pytest.raises(ValueError, match="9 snapshots .* query_losses has 4"):
        cld_attribution(train, query[:, :4])


# ------------------------------------------------------------------------- top_influencers


def test_top_influencers_match_a_stable_sort_with_ties_to_the_lower_row():
    rng = np.random.default_rng(0)
    a = np.round(rng.uniform(-1, 1, size=(50, 7)), 1)  # many ties
    idx, val = top_influencers(a, 6)
    for j in range(7):
        order = np.lexsort((np.arange(50), -a[:, j]))[:6]
        np.testing.assert_array_equal(idx[j], order)
        np.testing.assert_array_equal(val[j], a[order, j])
    low, lval = top_influencers(a, 3, largest=False)
    for j in range(7):
        np.testing.assert_array_equal(low[j], np.lexsort((np.arange(50), a[:, j]))[:3])
    with pytest.raises(ValueError, match="k == 51, must be <= 50"):
        top_influencers(a, 51)
    a[4, 2] = np.nan
    with pytest.raises(ValueError, match=r"NaN or inf values in 1 column\(s\), first: \[2\]"):
        top_influencers(a, 2)


# ------------------------------------------------------------------------- TracIn


def random_signals(s=3, n=13, q=5, c=4, d=6, seed=0):
    rng = np.random.default_rng(seed)
    logits = rng.standard_normal((s, n + q, c))
    probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    emb = rng.standard_normal((s, n + q, d))
    labels = rng.integers(0, c, n + q)
    return probs[:, :n], emb[:, :n], labels[:n], probs[:, n:], emb[:, n:], labels[n:]


def brute_force_tracin(p, h, y, qp, qh, qy, lr):
    """sum_t lr_t <g_t(z), g_t(z')> with the explicit gradients g = (p - onehot) ⊗ [h, 1]."""
    out = np.zeros((p.shape[1], qp.shape[1]))
    for t in range(p.shape[0]):
        def grad(pi, hi, yi):
            e = pi.copy()
            e[yi] -= 1.0
            return np.outer(e, np.append(hi, 1.0)).ravel()
        g = [grad(p[t, i], h[t, i], y[i]) for i in range(p.shape[1])]
        gq = [grad(qp[t, j], qh[t, j], qy[j]) for j in range(qp.shape[1])]
        for i in range(len(g)):
            for j in range(len(gq)):
                out[i, j] += lr[t] * g[i] @ gq[j]
    return out


@pytest.mark.parametrize("chunk_size", [1, 4, 100])
def test_tracin_last_layer_equals_explicit_gradients(chunk_size):
    p, h, y, qp, qh, qy = random_signals()
    lr = [0.1, 0.05, 0.01]
    expected = brute_force_tracin(p, h, y, qp, qh, qy, lr)
    ours = tracin_last_layer(p, h, y, qp, qh, qy, learning_rates=lr, chunk_size=chunk_size,
                             dtype=np.float64)
    np.testing.assert_allclose(ours, expected, rtol=1e-12, atol=1e-12)
    as_lists = tracin_last_layer(list(p), list(h), y, list(qp), list(qh), qy, learning_rates=lr)
    np.testing.assert_allclose(as_lists, expected, rtol=1e-5, atol=1e-6)


def test_tracin_checkpoints_indices_and_out(tmp_path):
    p, h, y, qp, qh, qy = random_signals()
    full = tracin_last_layer(p, h, y, qp, qh, qy, dtype=np.float64)
    ti, qi = np.array([12, 0, 5]), np.array([4, 1])
    mm = np.memmap(tmp_path / "tracin.f64", dtype=np.float64, mode="w+", shape=(3, 2))
    got = tracin_last_layer(p, h, y, qp, qh, qy, train_index=ti, query_index=qi, dtype=np.float64,
                            out=mm, chunk_size=2)
    assert got is mm
    np.testing.assert_allclose(mm, full[np.ix_(ti, qi)], rtol=1e-12)
    last = tracin_last_layer(p, h, y, qp, qh, qy, checkpoints=[2], dtype=np.float64)
    np.testing.assert_allclose(last, brute_force_tracin(p[2:], h[2:], y, qp[2:], qh[2:], qy, [1.0]),
                               rtol=1e-12, atol=1e-12)
    one = tracin_last_layer(p[0], h[0], y, qp[0], qh[0], qy, dtype=np.float64)  # (N, C): one checkpoint
    np.testing.assert_allclose(one, brute_force_tracin(p[:1], h[:1], y, qp[:1], qh[:1], qy, [1.0]),
                               rtol=1e-12, atol=1e-12)


def test_tracin_errors_name_the_argument_and_the_fix():
    p, h, y, qp, qh, qy = random_signals()
    with pytest.raises(ValueError, match=r"labels must be class indices in \[0, 3\]"):
        tracin_last_layer(p, h, y + 4, qp, qh, qy)
    with pytest.raises(ValueError, match="must cover the same checkpoints, got 3, 2, 3 and 3"):
        tracin_last_layer(p, h[:2], y, qp, qh, qy)
    with pytest.raises(ValueError, match="learning_rates must be a finite number or 3 finite numbers"):
        tracin_last_layer(p, h, y, qp, qh, qy, learning_rates=[1.0, 2.0])
    with pytest.raises(ValueError, match="the query signals have 3 classes"):
        tracin_last_layer(p, h, y, qp[..., :3], qh, qy % 3)
    bad = p.copy()
    bad[1, 7, 0] = np.nan
    with pytest.raises(ValueError, match=r"probs contains NaN or inf values at checkpoint 1 in row\(s\) \[7\]"):
        tracin_last_layer(bad, h, y, qp, qh, qy)
