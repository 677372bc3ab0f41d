"""Training data attribution from loss trajectories: CLD_inf1 (Appendix F of "Coresets from
Trajectories"), with a last-layer TracIn baseline to compare it with.

``CLD_inf1(z_m, z_q) = pearson(d(z_m), d(z_q))``: the Pearson correlation (population statistics)
of the loss differences ``d_t = l_t - l_{t-1}`` of training sample ``z_m`` with those of ONE query
sample ``z_q`` (CLD itself correlates with the mean over the query samples of a class). The paper
compares it with TracIn and TRAK through the linear datamodeling score; it needs only the loss
trajectories the recorder stores. A trajectory with zero variance scores ``0.0``, with the rule
of :mod:`cld_hf.scoring` (std <= 1e-10 * rms).

The ``(N, Q)`` matrix is computed a chunk of training rows at a time, as one matrix product of
centred, unit-norm differences, so the working memory is bounded by ``chunk_size`` whatever ``N``
and the result can go straight into a ``numpy.memmap`` (``out=``).

NumPy only.
"""

from __future__ import annotations

import numpy as np

from ._validation import (check_bool, check_int, check_labels, check_real_array,
                          check_trajectory_pair)
from .scoring.common import raise_non_finite_losses as _raise_non_finite
from .scoring.common import snapshot_window, zero_variance as _zero_variance

__all__ = ["cld_attribution", "top_influencers", "tracin_last_layer"]

# Training rows per chunk: the (chunk, Q) block of products and the chunk's differences.
_DEFAULT_CHUNK_ROWS = 2048
# Bytes of the attribution matrix handled at once by top_influencers.
_TOP_BLOCK_BYTES = 64 * 2**20
# tracin_last_layer keeps the query side of every checkpoint up to this many bytes, and
# rebuilds it for each chunk of training rows beyond (a small cost next to the products).
_QUERY_CACHE_BYTES = 256 * 2**20


def _check_index(name: str, index, n: int, what: str) -> np.ndarray | None:
    """``None`` or a 1-D int64 array of row numbers in ``[0, n)`` (a private generic check)."""
    if index is None:
        return None
    idx = np.asarray(index)
    if idx.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {idx.shape}.")
    if idx.dtype == bool or not np.issubdtype(idx.dtype, np.integer):
        if len(idx) == 0:
            return np.zeros(0, dtype=np.int64)
        raise TypeError(
            f"{name} must hold integer row numbers, got dtype {idx.dtype}. For a boolean mask, "
            f"pass np.flatnonzero(mask)."
        )
    if len(idx) and (idx.min() < 0 or idx.max() >= n):
        bad = idx[(idx < 0) | (idx >= n)]
        raise ValueError(
            f"{name} holds {len(bad)} row number(s) outside [0, {n - 1}] ({what} has {n} rows), "
            f"first: {bad[:10].tolist()}; pass row numbers of {what}."
        )
    return idx.astype(np.int64, copy=False)


def _check_dtype(dtype) -> np.dtype:
    dt = np.dtype(dtype)
    if dt not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise ValueError(f"dtype == {dt}, must be float32 or float64.")
    return dt


def _check_out(out, shape: tuple[int, int]):
    if out is None:
        return None
    if not isinstance(out, np.ndarray):
        raise TypeError(f"out must be a numpy.ndarray or numpy.memmap, not {type(out).__name__}.")
    if out.shape != shape:
        raise ValueError(
            f"out has shape {out.shape}, expected {shape} (training rows, query rows); allocate "
            f"it as np.empty({shape}, dtype=np.float32) or a numpy.memmap of that shape."
        )
    if not np.issubdtype(out.dtype, np.floating):
        raise TypeError(f"out must have a floating dtype, got {out.dtype}.")
    if not out.flags.writeable:
        raise ValueError("out is read-only; open the memmap with mode='w+' or 'r+'.")
    return out


def _rows(arr, index, start: int, stop: int) -> np.ndarray:
    return np.asarray(arr[start:stop] if index is None else arr[index[start:stop]])


def _unit_differences(x: np.ndarray, window) -> np.ndarray:
    """Loss differences of each row of ``x`` (float64), centred over time and scaled to unit norm;
    rows with zero variance become 0."""
    if window is not None:
        x = x[:, window]
    d = np.diff(x.astype(np.float64, copy=False), axis=1)
    sumsq = np.einsum("ij,ij->i", d, d)
    d -= d.mean(axis=1, keepdims=True)
    m2 = np.einsum("ij,ij->i", d, d)
    flat = _zero_variance(m2, sumsq)
    d /= np.sqrt(np.where(flat, 1.0, m2))[:, None]
    d[flat] = 0.0
    return d


def _check_finite_rows(name: str, arr, index, window, chunk: int) -> None:
    n = arr.shape[0] if index is None else len(index)
    bad = []
    for start in range(0, n, chunk):
        x = _rows(arr, index, start, start + chunk)
        if window is not None:
            x = x[:, window]
        rows = np.flatnonzero(~np.isfinite(x).all(axis=1)) + start
        if len(rows):
            bad.append(rows if index is None else index[rows])
    if bad:
        _raise_non_finite(name, arr, np.unique(np.concatenate(bad)))


def cld_attribution(
    train_losses,
    query_losses,
    *,
    train_index=None,
    query_index=None,
    first: int | None = None,
    every: int = 1,
    chunk_size: int = _DEFAULT_CHUNK_ROWS,
    dtype=np.float32,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """CLD_inf1 attribution matrix: the correlation of each training sample's loss differences
    with each query sample's (Appendix F of "Coresets from Trajectories", eq. 64).

    ``A[m, q] = pearson(d(z_m), d(z_q))``: positive when the training sample's loss moved with the
    query sample's, epoch by epoch. The differences are centred and scaled to unit norm once per
    row (float64), then multiplied as one ``(chunk, T) @ (T, Q)`` matrix product per chunk of
    training rows in ``dtype``.

    Parameters
    ----------
    train_losses : array of shape (N, S)
        Loss of each training sample at each snapshot (a ``numpy.memmap`` works).
    query_losses : array of shape (Q, S)
        The same snapshots for the query samples.
    train_index, query_index : int array, optional
        Rows to attribute (default: all); the result has ``len(train_index)`` rows and
        ``len(query_index)`` columns, in the order given.
    first : int, optional
        Use only the first ``first`` snapshots (as :func:`~cld_hf.scoring.cld_scores`).
    every : int, default 1
        Use every ``every``-th snapshot (applied after ``first``).
    chunk_size : int, default 2048
        Training rows per matrix product: the working memory is about
        ``chunk_size * (Q * itemsize + 16 * S)`` bytes.
    dtype : {numpy.float32, numpy.float64}, default numpy.float32
        Precision of the products (and of the result when ``out`` is not given).
    out : numpy.ndarray or numpy.memmap of shape (N', Q'), optional
        Write the result here (any floating dtype) and return it.

    Returns
    -------
    numpy.ndarray of shape (N', Q'), values in [-1, 1]; ``out`` when given.

    Raises
    ------
    ValueError
        On shape mismatches, fewer than 3 snapshots, NaN/inf losses in the rows and window used
        (named), row numbers out of range, or an ``out`` of the wrong shape.

    Examples
    --------
    >>> train = np.array([[4.0, 3.0, 1.0, 0.5], [1.0, 2.0, 4.0, 4.5], [2.0, 2.0, 2.0, 2.0]])
    >>> query = np.array([[5.0, 4.0, 2.0, 1.5], [1.0, 1.5, 1.0, 1.5]])
    >>> cld_attribution(train, query, dtype=np.float64).round(3).tolist()
    [[1.0, 0.945], [-1.0, -0.945], [0.0, 0.0]]

    The third training sample's loss is constant: zero variance, attribution 0. Into a memmap,
    for two of the training samples:

    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "attribution.npy")
    >>> mm = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(2, 2))
    >>> cld_attribution(train, query, train_index=[2, 0], out=mm)[0].tolist()
    [0.0, 0.0]
    """
    train, query = check_trajectory_pair(train_losses, query_losses)
    n, s = train.shape
    tidx = _check_index("train_index", train_index, n, "train_losses")
    qidx = _check_index("query_index", query_index, query.shape[0], "query_losses")
    columns = snapshot_window(s, first=first, every=every)
    if len(columns) < 3:
        raise ValueError(
            f"CLD_inf1 needs at least 3 snapshots (2 loss differences) to correlate, got "
            f"{len(columns)} (S={s}, first={first}, every={every}). Record more epochs, or widen "
            f"the window."
        )
    chunk = check_int("chunk_size", chunk_size, min_val=1)
    dt = _check_dtype(dtype)
    window = None if len(columns) == s else (slice(0, len(columns)) if every == 1 else columns)
    n_out = n if tidx is None else len(tidx)
    q_out = query.shape[0] if qidx is None else len(qidx)
    out = _check_out(out, (n_out, q_out))
    if out is None:
        out = np.empty((n_out, q_out), dtype=dt)

    _check_finite_rows("query_losses", query, qidx, window, max(chunk, 4096))
    _check_finite_rows("train_losses", train, tidx, window, max(chunk, 4096))
    vq = _unit_differences(_rows(query, qidx, 0, q_out), window).astype(dt).T  # (T, Q')
    direct = out.dtype == dt and out.flags.c_contiguous
    for start in range(0, n_out, chunk):
        stop = min(start + chunk, n_out)
        vm = _unit_differences(_rows(train, tidx, start, stop), window).astype(dt, copy=False)
        if direct:
            block = out[start:stop]
            np.matmul(vm, vq, out=block)
        else:
            block = vm @ vq
        np.clip(block, -1.0, 1.0, out=block)
        if not direct:
            out[start:stop] = block
    return out


def top_influencers(attribution, k: int, *, largest: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """For each query sample (column), the ``k`` training samples (rows) with the highest
    attribution, best first.

    Ties go to the lower row number. The matrix is read a block of columns at a time, so a
    ``numpy.memmap`` from :func:`cld_attribution` works.

    Parameters
    ----------
    attribution : array of shape (N, Q)
        E.g. from :func:`cld_attribution` or :func:`tracin_last_layer`.
    k : int
        Training samples per query sample, ``1 <= k <= N``.
    largest : bool, default True
        ``False`` gives the ``k`` lowest instead (most negative first), e.g. opponents.

    Returns
    -------
    (indices, values): int64 and float arrays of shape (Q, k); row ``j`` lists the training rows
    for query sample ``j`` and their attributions.

    Examples
    --------
    >>> a = np.array([[0.1, -0.5], [0.9, 0.2], [0.9, 0.7]])
    >>> idx, val = top_influencers(a, 2)
    >>> idx.tolist(), val.tolist()
    ([[1, 2], [2, 1]], [[0.9, 0.9], [0.7, 0.2]])
    >>> top_influencers(a, 1, largest=False)[0].tolist()
    [[0], [0]]
    """
    a = check_real_array(attribution, "attribution", layout="(training rows, query rows)")
    n, q = a.shape
    k = check_int("k", k, min_val=1, max_val=max(n, 1))
    check_bool("largest", largest)
    indices = np.empty((q, k), dtype=np.int64)
    values = np.empty((q, k), dtype=np.result_type(a.dtype, np.float32))
    width = max(1, _TOP_BLOCK_BYTES // max(1, n * 8))
    for j0 in range(0, q, width):
        j1 = min(j0 + width, q)
        b = np.asarray(a[:, j0:j1], dtype=np.float64)
        if not np.isfinite(b).all():
            cols = j0 + np.flatnonzero(~np.isfinite(b).all(axis=0))
            raise ValueError(
                f"attribution has NaN or inf values in {len(cols)} column(s), first: "
                f"{cols[:10].tolist()}; compute it again from finite losses."
            )
        key = b if largest else -b
        part = np.argpartition(-key, k - 1, axis=0)[:k]
        kth = np.take_along_axis(key, part, axis=0).min(axis=0)  # k-th best value per column
        above = key > kth
        tied = key == kth
        need = k - above.sum(axis=0)  # how many of the tied rows, lowest row numbers first
        chosen = above | (tied & (np.cumsum(tied, axis=0) <= need))
        cols, rows = np.nonzero(chosen.T)  # ascending row numbers within each column
        rows = rows.reshape(j1 - j0, k)
        vals = b[rows, cols.reshape(j1 - j0, k)]
        order = np.argsort(-vals if largest else vals, axis=1, kind="stable")
        indices[j0:j1] = np.take_along_axis(rows, order, axis=1)
        values[j0:j1] = np.take_along_axis(vals, order, axis=1)
    return indices, values


# --------------------------------------------------------------------------------------------
# TracIn baseline
# --------------------------------------------------------------------------------------------


def _per_checkpoint(arr, name: str, layout: str):
    """A (S, N, K) array, or a list/tuple of S (N, K) arrays, as something indexable by s; a
    single (N, K) array is one checkpoint."""
    if isinstance(arr, (list, tuple)):
        if len(arr) == 0:
            raise ValueError(f"{name} is an empty list; pass one {layout} array per checkpoint.")
        items = [check_real_array(a, f"{name}[{i}]", layout=layout) for i, a in enumerate(arr)]
        shapes = {a.shape for a in items}
        if len(shapes) > 1:
            raise ValueError(f"{name} holds arrays of different shapes {sorted(shapes)}; every "
                             f"checkpoint must have the same {layout}.")
        return items, (len(items), *items[0].shape)
    a = np.asarray(arr) if not isinstance(arr, np.ndarray) else arr
    if a.ndim == 2:
        a = a[None]
    a = check_real_array(a, name, ndim=3, layout=f"(checkpoints, {layout[1:]}")
    return a, a.shape


def tracin_last_layer(
    probs,
    embeddings,
    labels,
    query_probs,
    query_embeddings,
    query_labels,
    *,
    learning_rates=1.0,
    checkpoints=None,
    train_index=None,
    query_index=None,
    chunk_size: int = _DEFAULT_CHUNK_ROWS,
    dtype=np.float32,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """TracIn (Pruthi et al., 2020; TracInCP over recorded checkpoints) restricted to the last
    layer: ``sum_t lr_t * <g_t(z), g_t(z')>``, the baseline CLD_inf1 is compared with.

    For cross entropy on a linear head ``logits = W h + b``, a sample's gradient with respect to
    ``(W, b)`` is ``g = (p - y) ⊗ [h, 1]`` (softmax ``p``, one-hot label ``y``, penultimate
    features ``h``), so ``<g(z), g(z')> = <p - y, p' - y'> * (<h, h'> + 1)``: two matrix products
    per checkpoint and chunk of training rows, never the ``C * (D + 1)`` gradients.

    Parameters
    ----------
    probs : array of shape (S, N, C), or a list of S arrays (N, C)
        Softmax outputs of the training samples at each checkpoint (a (N, C) array is one).
    embeddings : array of shape (S, N, D), or a list of S arrays (N, D)
        Penultimate features at the same checkpoints.
    labels : int array of shape (N,)
        Class indices ``0 .. C-1`` in the order of the model's outputs.
    query_probs, query_embeddings, query_labels :
        The same for the query samples (Q rows).
    learning_rates : float or sequence of S floats, default 1.0
        ``lr_t`` of each checkpoint (TracInCP weights each checkpoint by its step size).
    checkpoints : sequence of int, optional
        Which of the S checkpoints to sum over (default: all).
    train_index, query_index : int array, optional
        Rows to attribute (default: all), as in :func:`cld_attribution`.
    chunk_size : int, default 2048
        Training rows per matrix product.
    dtype : {numpy.float32, numpy.float64}, default numpy.float32
        Precision of the products and the result.
    out : numpy.ndarray or numpy.memmap of shape (N', Q'), optional
        Write the result here and return it.

    Returns
    -------
    numpy.ndarray of shape (N', Q'): the TracIn influence of each training sample on each query
    sample (not bounded; larger is more influential).

    Raises
    ------
    ValueError
        On inconsistent shapes, labels outside ``0 .. C-1``, learning rates of the wrong length,
        or NaN/inf signals (named by checkpoint and row; checked as the chunks are read, so the
        rows of ``out`` before that chunk are already written).

    Examples
    --------
    >>> p = np.array([[0.75, 0.25], [0.5, 0.5]]); h = np.array([[1.0, 0.0], [0.0, 2.0]])
    >>> tracin_last_layer(p, h, [0, 1], p[:1], h[:1], [0]).tolist()  # one checkpoint
    [[0.25], [-0.25]]

    ``<p - y, p' - y'> = 0.125`` for the first pair and ``-0.25`` for the second; ``<h, h'> + 1``
    is ``2`` and ``1``.
    """
    p, (s, n, c) = _per_checkpoint(probs, "probs", "(N, C)")
    h, (s_h, n_h, dim) = _per_checkpoint(embeddings, "embeddings", "(N, D)")
    qp, (s_q, nq, c_q) = _per_checkpoint(query_probs, "query_probs", "(Q, C)")
    qh, (s_qh, nq_h, dim_q) = _per_checkpoint(query_embeddings, "query_embeddings", "(Q, D)")
    if len({s, s_h, s_q, s_qh}) > 1:
        raise ValueError(
            f"probs, embeddings, query_probs and query_embeddings must cover the same checkpoints, "
            f"got {s}, {s_h}, {s_q} and {s_qh}; pass one array per recorded checkpoint to each."
        )
    if n_h != n or nq_h != nq:
        raise ValueError(
            f"embeddings have {n_h} training and {nq_h} query rows but probs have {n} and {nq}; "
            f"pass the signals of the same samples in the same order."
        )
    if c_q != c or dim_q != dim:
        raise ValueError(
            f"the query signals have {c_q} classes and {dim_q} features but the training signals "
            f"have {c} and {dim}; they must come from the same model."
        )
    lab = _check_class_indices(labels, "labels", n, c)
    qlab = _check_class_indices(query_labels, "query_labels", nq, c)
    lr = np.asarray(learning_rates, dtype=np.float64)
    if lr.ndim == 0:
        lr = np.full(s, float(lr))
    if lr.shape != (s,) or not np.isfinite(lr).all():
        raise ValueError(
            f"learning_rates must be a finite number or {s} finite numbers (one per checkpoint), "
            f"got shape {lr.shape}."
        )
    steps = _check_index("checkpoints", checkpoints, s, "the recorded checkpoints")
    steps = np.arange(s) if steps is None else steps
    tidx = _check_index("train_index", train_index, n, "probs")
    qidx = _check_index("query_index", query_index, nq, "query_probs")
    chunk = check_int("chunk_size", chunk_size, min_val=1)
    dt = _check_dtype(dtype)
    n_out = n if tidx is None else len(tidx)
    q_out = nq if qidx is None else len(qidx)
    out = _check_out(out, (n_out, q_out))
    if out is None:
        out = np.empty((n_out, q_out), dtype=dt)
    qrows = np.arange(nq) if qidx is None else qidx
    cache = {} if len(steps) * q_out * (c + dim) * dt.itemsize <= _QUERY_CACHE_BYTES else None

    def query_side(t):  # (C, Q') residuals and (D, Q') features of the query rows at checkpoint t
        if cache is not None and t in cache:
            return cache[t]
        r = _residuals(qp[t][qrows], qlab[qrows], "query_probs", t, qrows).astype(dt)
        f = _finite(np.asarray(qh[t][qrows]), "query_embeddings", t, qrows).astype(dt)
        side = np.ascontiguousarray(r.T), np.ascontiguousarray(f.T)
        if cache is not None:
            cache[t] = side
        return side

    rows_per_chunk = min(chunk, max(n_out, 1))
    acc = np.empty((rows_per_chunk, q_out), dtype=dt)
    feat = np.empty_like(acc)
    resid = np.empty_like(acc)
    for start in range(0, n_out, chunk):
        stop = min(start + chunk, n_out)
        rows = np.arange(start, stop) if tidx is None else tidx[start:stop]
        a, f_dot, r_dot = acc[: stop - start], feat[: stop - start], resid[: stop - start]
        a[:] = 0.0
        for t in steps:
            rq, fq = query_side(t)
            r = _residuals(p[t][rows], lab[rows], "probs", t, rows).astype(dt)
            f = _finite(np.asarray(h[t][rows]), "embeddings", t, rows).astype(dt)
            np.matmul(f, fq, out=f_dot)  # <h, h'>
            f_dot += 1.0
            np.matmul(r, rq, out=r_dot)  # <p - y, p' - y'>
            f_dot *= r_dot
            f_dot *= lr[t]
            a += f_dot
        out[start:stop] = a
    return out


def _check_class_indices(labels, name: str, n: int, num_classes: int) -> np.ndarray:
    lab = check_labels(labels, name, n, against="the signals")
    if len(lab) and (lab.min() < 0 or lab.max() >= num_classes):
        raise ValueError(
            f"{name} must be class indices in [0, {num_classes - 1}] (probs has {num_classes} "
            f"columns), got values in [{lab.min()}, {lab.max()}]. Map labels to 0..C-1 in the "
            f"order of the model's outputs."
        )
    return lab.astype(np.intp, copy=False)


def _finite(x: np.ndarray, name: str, checkpoint, rows) -> np.ndarray:
    bad = np.flatnonzero(~np.isfinite(x).all(axis=1))
    if len(bad):
        raise ValueError(
            f"{name} contains NaN or inf values at checkpoint {int(checkpoint)} in row(s) "
            f"{np.asarray(rows)[bad][:10].tolist()}; record the signals again from a model "
            f"that did not diverge."
        )
    return x


def _residuals(p, labels, name: str, checkpoint, rows) -> np.ndarray:
    """``p - onehot(labels)`` in float64."""
    e = _finite(np.array(p, dtype=np.float64), name, checkpoint, rows)
    e[np.arange(len(labels)), labels] -= 1.0
    return e
