"""The compiled kernels (cld_hf/scoring/kernels.py, _numba_rows.py): cld_scores gives the scores
of the NumPy kernel and of np.corrcoef on every kind of trajectory, with the same errors;
StreamingCLD's compiled update gives the NumPy update's state to the last bit; the rules of
kernel="auto"."""

import numpy as np
import pytest

from test_scoring import PROBLEMS, random_problem, reference_scores, stream

from cld_hf.scoring import StreamingCLD, cld_scores, kernels, snapshot_window


@pytest.mark.parametrize("name,train,tl,query,ql", PROBLEMS, ids=[p[0] for p in PROBLEMS])
@pytest.mark.parametrize("normalize", ["none", "query_spread"])
def test_compiled_kernel_equals_numpy_and_np_corrcoef(name, train, tl, query, ql, normalize):
    ours = cld_scores(train, tl, query, ql, kernel="numba", normalize=normalize)
    assert ours.dtype == np.float32
    np.testing.assert_allclose(
        ours, cld_scores(train, tl, query, ql, kernel="numpy", normalize=normalize), atol=1e-6)
    np.testing.assert_allclose(
        ours, reference_scores(train, tl, query, ql, normalize), rtol=0, atol=1e-6)


def test_trend_dominated_rows_take_the_float64_path_and_stay_exact():
    _, train, tl, query, ql = PROBLEMS[2]  # smooth float32: most rows fail the float32 test
    steps = train.shape[1] - 1
    d = np.diff(train.astype(np.float64), axis=1)
    total = train[:, -1].astype(np.float64) - train[:, 0]
    s2 = (d * d).sum(axis=1)
    assert np.mean(s2 - total**2 / steps <= 0.5 * s2) > 0.5  # the float64 path really runs
    np.testing.assert_allclose(cld_scores(train, tl, query, ql, kernel="numba"),
                               reference_scores(train, tl, query, ql), rtol=0, atol=1e-6)


def test_constant_and_linear_rows_score_zero():
    _, _, query, ql = random_problem(n=4, q=10, s=12, c=2)
    t = np.arange(12)
    rows = [5.0 - 0.5 * t, 1e4 + 0.5 * t, 1e4 + 0.5 * t + 1e-14 * np.sin(t), np.full(12, 7.0)]
    for dtype in (np.float32, np.float64):
        train = np.array(rows, dtype=dtype)
        np.testing.assert_array_equal(
            cld_scores(train, [0, 1, 0, 1], query.astype(dtype), ql, kernel="numba"), 0.0)


@pytest.mark.parametrize("first,every", [(9, 1), (None, 2), (11, 3)])
def test_windows_equal_scoring_the_selected_columns(first, every):
    _, train, tl, query, ql = PROBLEMS[-1]
    cols = snapshot_window(train.shape[1], first=first, every=every)
    for normalize in ("none", "query_spread"):
        ours = cld_scores(train, tl, query, ql, first=first, every=every, kernel="numba",
                          normalize=normalize)
        np.testing.assert_array_equal(
            ours, cld_scores(train[:, cols], tl, query[:, cols], ql, kernel="numba",
                             normalize=normalize))
        np.testing.assert_allclose(
            ours, reference_scores(train[:, cols], tl, query[:, cols], ql, normalize), atol=1e-6)


def test_layout_memmap_and_blocks_do_not_change_the_scores(tmp_path, monkeypatch):
    _, train, tl, query, ql = PROBLEMS[-1]  # mixed float64, N = 601
    expected = cld_scores(train, tl, query, ql, kernel="numba")
    np.testing.assert_array_equal(
        cld_scores(np.asfortranarray(train), tl, query, ql, kernel="numba"), expected)
    np.testing.assert_array_equal(
        cld_scores(np.repeat(train, 2, axis=0)[::2], tl, query, ql, kernel="numba"), expected)
    mm = np.memmap(tmp_path / "train.f64", dtype=np.float64, mode="w+", shape=train.shape)
    mm[:] = train
    mm.flush()
    ro = np.memmap(tmp_path / "train.f64", dtype=np.float64, mode="r", shape=train.shape)
    np.testing.assert_array_equal(cld_scores(ro, tl, query, ql, kernel="numba"), expected)
    from cld_hf.scoring import batch

    monkeypatch.setattr(batch, "BLOCK_ROWS", 64)  # many blocks, and a short last one
    monkeypatch.setattr(batch, "_COPY_ROWS", 50)
    np.testing.assert_array_equal(cld_scores(train, tl, query, ql, kernel="numba"), expected)
    np.testing.assert_array_equal(
        cld_scores(train, tl, query, ql, kernel="numba", every=2),
        cld_scores(train[:, ::2], tl, query[:, ::2], ql, kernel="numba"))
    np.testing.assert_array_equal(
        cld_scores(train, tl, query, ql, kernel="numba", progress=True), expected)


def test_nan_and_inf_rows_are_named_and_huge_rows_rescaled():
    _, train, tl, query, ql = PROBLEMS[-1]
    bad = train.copy()
    bad[[3, 4, 500], [0, 14, 6]] = [np.nan, np.inf, -np.inf]
    with pytest.raises(ValueError, match=r"3 NaN or inf value\(s\) in 3 row\(s\); first row "
                                         r"indices: \[3, 4, 500\]"):
        cld_scores(bad, tl, query, ql, kernel="numba")
    for dtype in (np.float32, np.float64):  # NaN in the float32 test and in the float64 path
        one = train.astype(dtype)
        one[7, 3] = np.nan
        with pytest.raises(ValueError, match=r"first row indices: \[7\]"):
            cld_scores(one, tl, query, ql, kernel="numba")
    big = train.copy()
    big[[3, 17]] *= 1e307  # squares of their differences overflow float64
    np.testing.assert_allclose(cld_scores(big, tl, query, ql, kernel="numba"),
                               cld_scores(train, tl, query, ql, kernel="numpy"), atol=1e-6)
    f32 = train.astype(np.float32)
    f32[[5, 9]] *= np.float32(1e25)  # float32 squares overflow: the float64 path scores them
    np.testing.assert_allclose(cld_scores(f32, tl, query, ql, kernel="numba"),
                               cld_scores(f32, tl, query, ql, kernel="numpy"), atol=1e-6)


def test_auto_picks_numba_for_large_float_trajectories_only(monkeypatch):
    assert kernels.choose_kernel("auto", kernels.AUTO_MIN_VALUES - 1, np.float32) == "numpy"
    assert kernels.choose_kernel("auto", kernels.AUTO_MIN_VALUES, np.float32) == "numba"
    assert kernels.choose_kernel("auto", kernels.AUTO_MIN_VALUES, np.float64) == "numba"
    assert kernels.choose_kernel("auto", kernels.AUTO_MIN_VALUES, np.float16) == "numpy"
    assert kernels.choose_kernel("numpy", 10**12, np.float32) == "numpy"
    with pytest.raises(TypeError, match="float32 or float64 losses, got float16"):
        kernels.choose_kernel("numba", 10, np.float16)
    with pytest.raises(ValueError, match="kernel"):
        cld_scores(*random_problem(n=10), kernel="fortran")
    # cld_scores asks choose_kernel with N * (snapshots in the window)
    calls = []
    real = kernels.choose_kernel
    from cld_hf.scoring import batch

    monkeypatch.setattr(batch, "choose_kernel",
                        lambda k, v, d: calls.append((k, v)) or real(k, v, d))
    train, tl, query, ql = random_problem(n=50, s=12)
    cld_scores(train, tl, query, ql, first=9)
    assert calls == [("auto", 50 * 9)]


def test_without_numba_auto_falls_back_and_numba_says_how_to_install(monkeypatch):
    monkeypatch.setattr(kernels, "_numba_installed", lambda: False)
    monkeypatch.setattr(kernels, "numba_problem", lambda: "numba is not installed")
    assert kernels.choose_kernel("auto", 10**12, np.float32) == "numpy"
    with pytest.raises(ImportError, match=r"numba is not installed: pip install 'cld-hf\[fast\]'"):
        cld_scores(*random_problem(n=10), kernel="numba")


def test_a_numba_that_does_not_import_is_named_and_auto_warns_once(monkeypatch, caplog):
    problem = "numba is installed but does not import (ImportError: built for another NumPy)"
    monkeypatch.setattr(kernels, "numba_problem", lambda: problem)
    kernels._warn_once.cache_clear()
    with caplog.at_level("WARNING", logger="cld_hf.scoring.kernels"):
        for _ in range(2):
            assert kernels.choose_kernel("auto", 10**12, np.float32) == "numpy"
    assert [r.getMessage().count("built for another NumPy") for r in caplog.records] == [1]
    with pytest.raises(ImportError, match="does not import"):
        kernels.choose_kernel("numba", 10, np.float32)
    kernels._warn_once.cache_clear()


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_threads_do_not_change_the_scores(monkeypatch, threads):
    from cld_hf.scoring import batch

    _, train, tl, query, ql = PROBLEMS[-1]  # mixed: float32 and float64 rows in every block
    expected = cld_scores(train, tl, query, ql, kernel="numba", threads=1)
    monkeypatch.setattr(batch, "BLOCK_ROWS", 64)  # ten blocks for the threads to share
    monkeypatch.setattr(batch, "_COPY_ROWS", 50)
    for every in (1, 2):
        np.testing.assert_array_equal(
            cld_scores(train, tl, query, ql, kernel="numba", threads=threads, every=every),
            cld_scores(train, tl, query, ql, kernel="numba", threads=1, every=every))
    np.testing.assert_array_equal(
        cld_scores(train, tl, query, ql, kernel="numba", threads=threads), expected)
    bad = train.copy()
    bad[[70, 590], [2, 3]] = np.nan  # in two blocks: named once, in order
    with pytest.raises(ValueError, match=r"in 2 row\(s\); first row indices: \[70, 590\]"):
        cld_scores(bad, tl, query, ql, kernel="numba", threads=threads)


@pytest.mark.parametrize("threads", [0, -1, 1.5, "2"])
def test_threads_must_be_a_positive_int(threads):
    with pytest.raises((TypeError, ValueError), match="threads"):
        cld_scores(*random_problem(n=10), threads=threads)


# ------------------------------------------------------------------------ streaming update


def assert_same_state(a: StreamingCLD, b: StreamingCLD):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        np.testing.assert_array_equal(sa[key], sb[key], err_msg=key)
        assert np.asarray(sa[key]).dtype == np.asarray(sb[key]).dtype, key


@pytest.mark.parametrize("name,train,tl,query,ql", PROBLEMS, ids=[p[0] for p in PROBLEMS])
@pytest.mark.parametrize("normalize", ["none", "query_spread"])
def test_compiled_streaming_update_gives_the_numpy_state_bit_for_bit(name, train, tl, query, ql,
                                                                     normalize):
    options = dict(normalize=normalize, every=2 if name == "mixed" else 1)
    ours = stream(train, tl, query, ql, kernel="numba", **options)
    theirs = stream(train, tl, query, ql, kernel="numpy", **options)
    assert_same_state(ours, theirs)
    np.testing.assert_array_equal(ours.scores(), theirs.scores())


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_compiled_streaming_threads_widening_and_resume(threads, monkeypatch):
    from cld_hf.scoring import streaming

    monkeypatch.setattr(streaming, "STREAM_CHUNK_ROWS", 50)  # several row ranges for N = 601
    _, train, tl, query, ql = PROBLEMS[-1]
    numpy_ = StreamingCLD(tl, ql, kernel="numpy")
    ours = StreamingCLD(tl, ql, kernel="numba", threads=threads)
    for t in range(train.shape[1]):
        # float32 losses, then float64 ones (the previous loss widens), then integers
        col = train[:, t].astype(np.float32) if t < 5 else train[:, t]
        col = np.round(col * 1000).astype(np.int64) if t >= 11 else col
        numpy_.update(col, query[:, t])
        ours.update(col, query[:, t])
        if t == 7:  # resume the compiled scorer from the NumPy one's state mid-way
            ours = StreamingCLD(tl, ql, kernel="numba", threads=threads)
            ours.load_state_dict(numpy_.state_dict())
    assert_same_state(ours, numpy_)
    np.testing.assert_array_equal(ours.scores(), numpy_.scores())


def test_streaming_auto_takes_the_compiled_update_from_its_row_floor(monkeypatch):
    from cld_hf.scoring import streaming

    calls = []
    real = kernels.compiled_stream_update
    monkeypatch.setattr(streaming, "compiled_stream_update", lambda: calls.append(1) or real())
    train, tl, query, ql = random_problem(n=300, s=6)
    stream(train, tl, query, ql)  # 300 rows: below the floor, NumPy
    assert calls == []
    monkeypatch.setattr(streaming, "AUTO_MIN_STREAM_ROWS", 300)
    stream(train, tl, query, ql)
    assert len(calls) == 5  # every update after the first snapshot
    stream(train, tl, query, ql, kernel="numpy")
    assert len(calls) == 5
    with pytest.raises(ValueError, match="kernel"):
        StreamingCLD(tl, ql, kernel="cuda")
    with pytest.raises(ValueError, match="threads"):
        StreamingCLD(tl, ql, threads=0)
