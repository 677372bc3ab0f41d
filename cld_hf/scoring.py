"""CLD scores: Pearson correlation of a sample's loss differences with its class's query trajectory.

This module is the method itself (Algorithm 1 of "Coresets from Trajectories", lines 7-16) and
imports NumPy only.

Conventions
-----------
- A trajectory array is ``(N, S)``: one row per sample, one column per loss snapshot in time order.
- ``S`` snapshots give ``T = S - 1`` loss differences ``d_t = l_t - l_{t-1}``.
- The query trajectory of class ``c`` is the mean, over the query samples of class ``c``, of their
  loss differences (Algorithm 1, line 14).
- ``CLD(z) = pearson(d(z), query_trajectory[label(z)])`` with population statistics. A trajectory
  with zero variance (the sample's or the class's) scores ``0.0``, as in the authors' code.
- The scores are returned as float32, accurate to about ``1e-6`` (see "Precision" below).

A trajectory counts as having zero variance when its standard deviation is at most ``1e-10`` times
its root mean square: constant up to float64 rounding. This makes a constant trajectory score
``0.0`` in the batch and the streaming computation alike.

Option ``normalize="query_spread"`` (a departure from Algorithm 1, off by default) divides the loss
differences of every step, training and query alike, by the spread of the query differences at
that step before correlating; see :func:`cld_scores`.

Precision
---------
:func:`cld_scores` makes one pass over the trajectory. For each row it computes, in float32 and a
cache-sized chunk at a time, the sum of squared differences ``s2`` and the dot product of the
differences with the (centred, unit-norm) class trajectory; the sum of the differences comes from
the end points (``sum_t d_t = l_last - l_first``). The variance is then ``m2 = s2 - T * mean**2``.
That subtraction cancels when the mean is large against the spread (a trend or a constant slope
in the losses), so this result is kept only for rows where ``m2 > s2 / 2`` (less than one bit
cancels); every other row (trend-dominated, near-constant, zero-variance or non-finite) is
computed again in float64 with the two-pass formula, differences centred on their mean before
squaring, and so is every row of a block of 65,536 where most rows need it. A constant offset of
the losses does not matter (the differences remove it). Both paths agree with a float64
``np.corrcoef`` to about ``1e-6`` (typically ``1e-7``; scores are float32).

:class:`StreamingCLD` keeps float64 sums of the differences shifted by each row's first difference
(a fixed per-row constant), so a trend does not cancel there either, and a constant trajectory
gives exactly zero variance.
"""

from __future__ import annotations

import logging
from typing import Literal

import numpy as np

from ._validation import (
    MAX_NAMED,
    check_choice,
    check_int,
    check_labels,
    check_real_array,
    raise_non_finite,
)

logger = logging.getLogger(__name__)

__all__ = [
    "cld_scores",
    "StreamingCLD",
    "snapshot_window",
    "class_query_trajectories",
    "class_score_summary",
]

MissingQueryClass = Literal["error", "global"]
Normalize = Literal["none", "query_spread"]
_NORMALIZE = ("none", "query_spread")

# std <= _ZERO_VAR_REL * rms counts as zero variance (see the module docstring).
_ZERO_VAR_REL = 1e-10
# Rows per chunk of the batch scorer: the chunk, its float32 differences and the gathered class
# trajectories (3 x 1024 x S x 4 bytes, ~1 MB at S = 90) stay in a core's L2 cache.
_DEFAULT_CHUNK_ROWS = 1024
# The one-pass float32 result of a row is kept when m2 > _FAST_MIN_CENTRED * s2 (see "Precision").
_FAST_MIN_CENTRED = 0.5
# ... and when s2 is well inside the float32 normal range.
_FAST_MIN_S2 = 1e-30
# Rows whose per-row statistics are finished (float64) together.
_BLOCK_ROWS = 65536
# A block where more than this fraction of rows needs float64 switches the next blocks to the
# float64 formula; they switch back when the float32 kernel would keep this fraction again.
_SWITCH_TO_FLOAT64 = 0.5
_SWITCH_BACK = 0.9
# Rows per chunk of a StreamingCLD update (its float64 temporaries stay in cache).
_STREAM_CHUNK_ROWS = 16384


_NON_FINITE_FIX = ("A diverged loss cannot be scored: find why these samples have non-finite "
                   "losses (e.g. lower the learning rate, clip logits) and record again.")


def _raise_non_finite(name: str, arr: np.ndarray, bad_rows, snapshot=None) -> None:
    raise_non_finite(name, arr, bad_rows, snapshot=snapshot, fix=_NON_FINITE_FIX)


def snapshot_window(num_snapshots: int, *, first: int | None = None, every: int = 1) -> np.ndarray:
    """Indices of the snapshots kept by a truncated-trajectory window.

    The paper's ablation scores on the first ``first`` snapshots, or on every ``every``-th one,
    and finds nearly the same coresets. The window starts at snapshot 0.

    Parameters
    ----------
    num_snapshots : int
        Number of recorded snapshots ``S``.
    first : int, optional
        Keep only snapshots ``0 .. first-1`` (before subsampling). ``None`` keeps all.
    every : int, default 1
        Keep every ``every``-th snapshot of that range.

    Returns
    -------
    numpy.ndarray of int64, the kept snapshot indices in time order.

    Examples
    --------
    >>> snapshot_window(10, first=7, every=2).tolist()
    [0, 2, 4, 6]
    """
    if isinstance(every, bool) or not isinstance(every, (int, np.integer)) or every < 1:
        raise ValueError(f"every == {every!r}, must be an integer >= 1.")
    stop = num_snapshots
    if first is not None:
        if isinstance(first, bool) or not isinstance(first, (int, np.integer)) or first < 1:
            raise ValueError(f"first == {first!r}, must be an integer >= 1 or None.")
        stop = min(int(first), num_snapshots)
    return np.arange(0, stop, int(every), dtype=np.int64)


def _encode_labels(train_labels: np.ndarray, query_labels: np.ndarray):
    """Map labels to dense codes 0..C-1 shared by train and query.

    Returns ``(classes, train_codes, query_codes, in_train)``: the sorted class ids, the codes
    (int32 where possible) and, per class, whether a training sample has it.
    """
    lo = min(train_labels.min(initial=0), query_labels.min(initial=0))
    hi = max(train_labels.max(initial=0), query_labels.max(initial=0))
    n = len(train_labels) + len(query_labels)
    code = np.int32 if hi < 2**31 and n < 2**31 else np.intp  # half the memory of int64
    if lo >= 0 and hi <= 4 * n + 1024:
        # O(N) table lookup instead of a sort: the ImageNet case (labels 0..999).
        in_train = np.zeros(int(hi) + 1, dtype=bool)
        in_train[train_labels] = True
        present = in_train.copy()
        present[query_labels] = True
        if present.all():  # labels are already the codes 0..C-1
            classes = np.arange(len(present))
            codes = [lab if lab.dtype in (np.int32, np.intp) else lab.astype(code)
                     for lab in (train_labels, query_labels)]
            return classes, codes[0], codes[1], in_train
        classes = np.flatnonzero(present)
        lookup = (np.cumsum(present, dtype=np.intp) - 1).astype(code)
        return classes, lookup[train_labels], lookup[query_labels], in_train[classes]
    classes, inverse = np.unique(np.concatenate([train_labels, query_labels]), return_inverse=True)
    inverse = inverse.astype(code, copy=False)
    tcodes = inverse[: len(train_labels)]
    in_train = np.zeros(len(classes), dtype=bool)
    in_train[tcodes] = True
    return classes, tcodes, inverse[len(train_labels) :], in_train


def _zero_variance(m2: np.ndarray, sumsq: np.ndarray) -> np.ndarray:
    """True where sum of squared deviations ``m2`` is zero relative to the sum of squares."""
    return m2 <= (_ZERO_VAR_REL**2) * sumsq


def _fill_missing_classes(
    traj: np.ndarray,
    counts: np.ndarray,
    needed: np.ndarray,
    classes: np.ndarray,
    global_traj: np.ndarray,
    missing_query_class: str,
) -> np.ndarray:
    """Apply the missing-query-class policy to per-class trajectories (rows of ``traj``)."""
    missing = np.flatnonzero(needed & (counts == 0))
    if len(missing) == 0:
        return traj
    names = classes[missing][:MAX_NAMED].tolist()
    if missing_query_class == "global":
        logger.warning(
            "%d training class(es) have no query sample (first: %s); scoring them against the "
            "all-class query trajectory (missing_query_class='global').",
            len(missing),
            names,
        )
        traj = traj.copy()
        traj[missing] = global_traj
        return traj
    raise ValueError(
        f"{len(missing)} training class(es) have no query sample: {names}"
        f"{' (first ' + str(MAX_NAMED) + ' shown)' if len(missing) > MAX_NAMED else ''}. CLD compares each sample with the query "
        f"trajectory of its own class. Hold out query samples from every class (a stratified "
        f"split), or pass missing_query_class='global' to score these classes against the "
        f"all-class query trajectory."
    )


def _check_policy(missing_query_class: str) -> None:
    check_choice("missing_query_class", missing_query_class, ("error", "global"))


def _check_normalize(normalize: str) -> str:
    return check_choice("normalize", normalize, _NORMALIZE)


def _normalise_class_trajectories(traj: np.ndarray) -> np.ndarray:
    """Centre each class trajectory over time and scale it to unit norm; zero-variance rows -> 0."""
    centred = traj - traj.mean(axis=1, keepdims=True)
    m2 = np.einsum("ij,ij->i", centred, centred)
    sumsq = np.einsum("ij,ij->i", traj, traj)
    flat = _zero_variance(m2, sumsq)
    norm = np.sqrt(np.where(flat, 1.0, m2))
    out = centred / norm[:, None]
    out[flat] = 0.0
    return out


def _query_spread_weights(query_differences: np.ndarray) -> np.ndarray:
    """``1 / spread`` of the query loss differences at each step (0 where the spread is zero).

    ``query_differences`` is ``(Q, T)`` (one step per column) or ``(Q,)`` (one step). The spread is
    the population standard deviation over the query samples; it counts as zero by the rule of the
    module docstring (std <= 1e-10 * rms: every query loss moved by the same amount).
    """
    dq = query_differences
    centred = dq - dq.mean(axis=0)
    m2 = np.einsum("i...,i...->...", centred, centred)
    sumsq = np.einsum("i...,i...->...", dq, dq)
    flat = _zero_variance(m2, sumsq)
    spread = np.sqrt(np.where(flat, 1.0, m2) / dq.shape[0])
    return np.where(flat, 0.0, 1.0 / spread)


# --------------------------------------------------------------------------------------------
# Batch scoring
# --------------------------------------------------------------------------------------------


def class_query_trajectories(
    query_losses,
    query_codes: np.ndarray,
    num_classes: int,
    *,
    columns: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-class mean of the query loss differences (Algorithm 1, line 14).

    Parameters
    ----------
    query_losses : array of shape (Q, S)
    query_codes : int array of shape (Q,), dense class codes in ``0 .. num_classes-1``
    num_classes : int
    columns : int array, optional
        Snapshot indices to keep (see :func:`snapshot_window`).

    Returns
    -------
    (trajectories, counts, global_trajectory): ``(C, T)`` float64 class means, ``(C,)`` query
    counts per class and the ``(T,)`` mean over all query samples.

    Examples
    --------
    >>> q = np.array([[3.0, 2.0, 2.0], [5.0, 3.0, 2.0], [1.0, 1.0, 2.0]])
    >>> traj, counts, _ = class_query_trajectories(q, np.array([0, 0, 1]), 2)
    >>> traj.tolist(), counts.tolist()
    ([[-1.5, -0.5], [0.0, 1.0]], [2, 1])
    """
    q = np.asarray(query_losses)
    if columns is not None:
        q = q[:, columns]
    query_codes = np.asarray(query_codes)
    counts = np.bincount(query_codes, minlength=num_classes)
    sums = np.zeros((num_classes, q.shape[1]), dtype=np.float64)
    if len(q):  # float64 class sums of the losses, over the rows sorted by class
        order = np.argsort(query_codes, kind="stable")
        present = np.flatnonzero(counts)
        starts = np.concatenate([[0], np.cumsum(counts[present])[:-1]])
        sums[present] = np.add.reduceat(q[order], starts, axis=0, dtype=np.float64)
    # The sum of the differences is the difference of the sums.
    with np.errstate(invalid="ignore", divide="ignore"):
        traj = np.diff(sums, axis=1) / counts[:, None]
    traj[counts == 0] = 0.0
    if len(q):
        global_traj = np.diff(q.sum(axis=0, dtype=np.float64)) / len(q)
    else:
        global_traj = np.zeros(q.shape[1] - 1)
    return traj, counts, global_traj


def cld_scores(
    train_losses,
    train_labels,
    query_losses,
    query_labels,
    *,
    first: int | None = None,
    every: int = 1,
    missing_query_class: MissingQueryClass = "error",
    normalize: Normalize = "none",
    chunk_size: int = _DEFAULT_CHUNK_ROWS,
    progress: bool = False,
) -> np.ndarray:
    """Score every training sample by CLD (Algorithm 1 of "Coresets from Trajectories").

    For each sample the loss differences ``d_t = l_t - l_{t-1}`` are correlated (Pearson) with the
    mean loss differences of the query samples of the sample's own class. Higher means the sample's
    loss moved the way the held-out data of its class moved: it is kept first.

    One pass over the trajectory, in chunks of ``chunk_size`` rows that stay in cache: the extra
    memory is a few MB plus ~12 bytes per sample whatever ``S``, and a ``numpy.memmap`` of the
    trajectory works too (read once, in order). See "Precision" in the module docstring for the
    float32 fast path and the float64 rows.

    Parameters
    ----------
    train_losses : array of shape (N, S)
        Loss of each training sample (row) at each snapshot (column), in time order.
    train_labels : int array of shape (N,)
    query_losses : array of shape (Q, S)
        The same snapshots for the held-out query samples.
    query_labels : int array of shape (Q,)
    first : int, optional
        Use only the first ``first`` snapshots (truncated-trajectory ablation).
    every : int, default 1
        Use every ``every``-th snapshot (applied after ``first``).
    missing_query_class : {"error", "global"}, default "error"
        What to do with a training class that has no query sample: raise, or score it against the
        mean trajectory of all query samples (a departure from Algorithm 1, named so).
    normalize : {"none", "query_spread"}, default "none"
        ``"none"`` is Algorithm 1 exactly. ``"query_spread"`` (a departure from Algorithm 1)
        divides the loss differences of each step, of the training and the query samples alike, by
        the spread of the query differences at that step (their population standard deviation
        over all query samples) before correlating. On clean data the first step (snapshot 0 to
        1) carries most of the query trajectory's energy, so plain CLD mostly asks "was the loss
        learned in the first epoch"; after this normalisation every step weighs about the same. A
        step whose query spread is zero (every query loss moved by the same amount, std <= 1e-10
        * rms) gets weight 0: its normalised differences are 0 for every sample. Scaling the
        differences of one step by a positive factor, for all samples, changes nothing.
    chunk_size : int, default 1024
        Rows scored at once (the cache-resident working set, at most 65536; the results do not
        depend on it).
    progress : bool, default False
        Show a tqdm progress bar over the chunks.

    Returns
    -------
    numpy.ndarray of float32, shape (N,), values in [-1, 1].

    Raises
    ------
    ValueError
        On shape mismatches, fewer than 3 snapshots, NaN/inf losses or a class without query
        samples (unless ``missing_query_class="global"``).
    TypeError
        On labels that are not integers.

    Examples
    --------
    >>> train = np.array([[4.0, 3.0, 1.0, 0.5], [1.0, 2.0, 4.0, 4.5]], dtype=np.float32)
    >>> query = np.array([[5.0, 4.0, 2.0, 1.5]], dtype=np.float32)
    >>> cld_scores(train, [0, 0], query, [0]).round(4).tolist()
    [1.0, -1.0]

    With ``normalize="query_spread"`` each step is divided by the spread of the query
    differences; here the two query samples move by ``(-2, -1, -1)`` and ``(0, -1, 1)``, spreads
    ``(1, 0, 1)``: the middle step gets weight 0.

    >>> query = np.array([[5.0, 3.0, 2.0, 1.0], [5.0, 5.0, 4.0, 5.0]])
    >>> train = np.array([[3.0, 1.0, 0.0, 0.0], [3.0, 2.0, 2.0, 1.0]])
    >>> cld_scores(train, [0, 0], query, [0, 0]).astype(float).round(4).tolist()  # Algorithm 1
    [0.866, -0.5]
    >>> cld_scores(train, [0, 0], query, [0, 0], normalize="query_spread").round(4).tolist()
    [1.0, 0.5]
    """
    _check_policy(missing_query_class)
    _check_normalize(normalize)
    train = check_real_array(train_losses, "train_losses")
    query = check_real_array(query_losses, "query_losses")
    n, s = train.shape
    if query.shape[1] != s:
        raise ValueError(
            f"train_losses has {s} snapshots (columns) but query_losses has {query.shape[1]}; "
            f"record the training and query losses at the same snapshots."
        )
    tlab = check_labels(train_labels, "train_labels", n)
    qlab = check_labels(query_labels, "query_labels", query.shape[0])
    columns = snapshot_window(s, first=first, every=every)
    if len(columns) < 3:
        raise ValueError(
            f"CLD needs at least 3 snapshots (2 loss differences) to correlate, got {len(columns)}"
            f" (S={s}, first={first}, every={every}). Record more epochs, or widen the window."
        )
    if query.shape[0] == 0:
        raise ValueError(
            "query_losses is empty (Q == 0): CLD needs held-out query samples. "
            "Split a stratified query set off the training data first."
        )
    chunk_size = check_int("chunk_size", chunk_size, min_val=1)
    window = None  # all columns
    if len(columns) < s:
        window = slice(0, len(columns)) if every == 1 else columns

    q_arr = np.asarray(query)
    q_window = q_arr if window is None else q_arr[:, window]
    q_bad = np.flatnonzero(~np.isfinite(q_window).all(axis=1))
    if len(q_bad):
        _raise_non_finite("query_losses", q_arr, q_bad)

    classes, tcodes, qcodes, needed = _encode_labels(tlab, qlab)
    num_classes = len(classes)
    traj, counts, global_traj = class_query_trajectories(q_arr, qcodes, num_classes, columns=window)
    omega = None
    if normalize == "query_spread":
        omega = _query_spread_weights(np.diff(q_window.astype(np.float64, copy=False), axis=1))
        traj = traj * omega
        global_traj = global_traj * omega
    traj = _fill_missing_classes(traj, counts, needed, classes, global_traj, missing_query_class)
    unit = _normalise_class_trajectories(traj)  # (C, T): centred, unit norm (0 if flat)
    return _score_rows(train, window, tcodes, unit, omega, chunk_size, progress)


def _score_rows(train, window, tcodes, unit, omega, chunk_size, progress) -> np.ndarray:
    """CLD of every row of ``train`` against ``unit[tcodes]``: the float32 one-pass kernel, then
    the float64 two-pass formula for the rows it does not resolve (see "Precision").

    Blocks where most rows need float64 (trend-dominated trajectories) switch the next blocks to
    the float64 formula directly, and back when the float32 kernel would keep most rows again:
    such data costs what the float64 formula costs, not both.
    """
    n = train.shape[0]
    out = np.empty(n, dtype=np.float32)
    if n == 0:
        return out
    steps = unit.shape[1]  # T differences
    length = steps + 1  # snapshots in the window
    block = _BLOCK_ROWS  # fixed, so that the float64 switches do not depend on chunk_size
    chunk = min(chunk_size, n, block)
    direct = window is None and train.flags.c_contiguous
    compute = np.result_type(train.dtype, np.float32)
    # Class trajectories padded by a zero column: row i of the flat difference of a chunk ends
    # with l[i + 1, 0] - l[i, S - 1], a value that belongs to no row and is never summed.
    # (Their float32 rounding leaves sum_t g_t != 0, which adds mean * sum_t g_t to the dot
    # product: at most 6e-8 of the score on the rows the float32 kernel keeps.)
    table = np.zeros((unit.shape[0], length), dtype=np.float32)
    table[:, :steps] = unit
    dbuf = np.empty((chunk, length), dtype=np.float32)
    gbuf = np.empty((chunk, length), dtype=np.float32)
    xbuf = None if direct else np.empty((chunk, length), dtype=train.dtype)
    weights = None
    if omega is not None:
        row = np.zeros(length, dtype=np.float32)
        row[:steps] = omega
        weights = np.tile(row, chunk)
        s1 = np.empty(block, dtype=np.float32)
    else:
        ends = np.empty((2, block), dtype=compute)  # exact copies of the losses
    s2 = np.empty(block, dtype=np.float32)
    dots = np.empty(block, dtype=np.float32)
    exact = _ExactRows(train, window, tcodes, unit, omega, out)
    use_float64 = False
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=-(-n // chunk), desc="CLD scores", unit="chunk")
    with np.errstate(all="ignore"):  # non-finite rows go to the float64 path, which names them
        for b0 in range(0, n, block):
            b1 = min(b0 + block, n)
            k = b1 - b0
            if use_float64:
                kept = exact.score(slice(b0, b1))
                use_float64 = kept < _SWITCH_BACK * k
                if bar is not None:
                    bar.update(-(-k // chunk))
                continue
            for start in range(b0, b1, chunk):
                stop = min(start + chunk, b1)
                m, o0, o1 = stop - start, start - b0, stop - b0
                if direct:
                    x = train[start:stop]
                else:
                    x = xbuf[:m]
                    src = train[start:stop]
                    if isinstance(window, np.ndarray):
                        np.take(src, window, axis=1, out=x, mode="clip")
                    else:
                        np.copyto(x, src if window is None else src[:, window])
                flat_x = x.reshape(-1)
                d = dbuf[:m]
                flat_d = d.reshape(-1)
                np.subtract(flat_x[1:], flat_x[:-1], out=flat_d[:-1], dtype=compute)
                if weights is None:
                    ends[:, o0:o1] = x[:, ::steps].T  # first and last loss, exact
                else:
                    np.multiply(flat_d, weights[: m * length], out=flat_d)
                g = gbuf[:m]
                np.take(table, tcodes[start:stop], axis=0, out=g, mode="clip")
                dv = d[:, :steps]
                np.einsum("ij,ij->i", dv, dv, out=s2[o0:o1])
                np.einsum("ij,ij->i", dv, g[:, :steps], out=dots[o0:o1])
                if weights is not None:
                    np.einsum("ij->i", dv, out=s1[o0:o1])
            # m2 = s2 - (sum_t d_t)^2 / T. On the rows kept (m2 > s2 / 2) it cancels less than
            # one bit, so float32 is enough here; the other rows go to float64 below.
            sq = s2[:k]
            if weights is None:  # sum_t d_t = l_last - l_first
                t = np.subtract(ends[1, :k], ends[0, :k]).astype(np.float32, copy=False)
            else:
                t = s1[:k].copy()
            np.multiply(t, t, out=t)
            t *= np.float32(1.0 / steps)
            m2 = np.subtract(sq, t)
            np.multiply(sq, np.float32(_FAST_MIN_CENTRED), out=t)
            ok = m2 > t
            ok &= sq > _FAST_MIN_S2
            np.sqrt(m2, out=m2)  # NaN on rows not kept: scored again below
            r = out[b0:b1]
            np.divide(dots[:k], m2, out=r)
            np.clip(r, -1.0, 1.0, out=r)
            rest = np.flatnonzero(~ok)
            if len(rest):  # now, while the block is likely still in the CPU's caches
                exact.score(b0 + rest)
                use_float64 = len(rest) > _SWITCH_TO_FLOAT64 * k
            if bar is not None:
                bar.update(-(-k // chunk))
    if bar is not None:
        bar.close()
    if exact.bad_rows:
        _raise_non_finite("train_losses", train, np.concatenate(exact.bad_rows))
    return out


class _ExactRows:
    """The float64 two-pass formula (differences centred on their mean before squaring) for
    some rows of the trajectory, written into ``out``; rows with NaN/inf losses in the window
    score 0 and are collected in ``bad_rows``."""

    def __init__(self, train, window, tcodes, unit, omega, out):
        self.train, self.window, self.tcodes = train, window, tcodes
        self.unit, self.omega = unit, omega
        self.out = out
        self.bad_rows: list[np.ndarray] = []
        self.rows_per_pass = max(256, (1 << 20) // max(1, 8 * unit.shape[1]))  # ~1 MB of float64
        self.buf = np.empty((self.rows_per_pass, unit.shape[1]), dtype=np.float64)

    def score(self, rows) -> int:
        """Score ``rows`` (a slice of the trajectory or sorted row numbers); returns how many of
        them the float32 kernel would have kept."""
        if isinstance(rows, slice):
            parts = [slice(a, min(a + self.rows_per_pass, rows.stop))
                     for a in range(rows.start, rows.stop, self.rows_per_pass)]
        else:
            step = self.rows_per_pass
            parts = [rows[a : a + step] for a in range(0, len(rows), step)]
        kept = 0
        for part in parts:
            kept += self._score(part)
        return kept

    def _score(self, rows) -> int:
        x = self.train[rows]
        if self.window is not None:
            x = x[:, self.window]
        d = self.buf[: x.shape[0]]
        with np.errstate(invalid="ignore", over="ignore"):
            np.subtract(x[:, 1:], x[:, :-1], out=d, dtype=np.float64)
            if self.omega is not None:
                d *= self.omega
            sumsq = np.einsum("ij,ij->i", d, d)
            total = d.sum(axis=1)
            d -= (total / d.shape[1])[:, None]  # centre over time (two-pass, stable)
            m2 = np.einsum("ij,ij->i", d, d)
            # unit rows are centred with norm 1
            num = np.einsum("ij,ij->i", d, self.unit[self.tcodes[rows]])
            finite = np.isfinite(sumsq)
            if not finite.all():  # NaN/inf losses, or differences beyond 1e154
                suspect = np.flatnonzero(~finite)
                bad = suspect[~np.isfinite(np.asarray(x[suspect])).all(axis=1)]
                if len(bad):
                    numbers = np.arange(rows.start, rows.stop) if isinstance(rows, slice) else rows
                    self.bad_rows.append(numbers[bad])
            flat = _zero_variance(m2, sumsq) | ~finite
            r = num / np.sqrt(np.where(flat, 1.0, m2))
        r[flat] = 0.0
        np.clip(r, -1.0, 1.0, out=r)
        self.out[rows] = r
        return int(np.count_nonzero(m2 > _FAST_MIN_CENTRED * sumsq))


# --------------------------------------------------------------------------------------------
# Streaming scoring
# --------------------------------------------------------------------------------------------

# Keys of the state saved before the shifted sums (Welford moments); load_state_dict reads them.
_WELFORD_KEYS = ("prev_train", "prev_query", "mean_d", "m2_d", "sumsq_d", "co", "mean_q", "m2_q",
                 "sumsq_q")
_TRAIN_KEYS = ("prev_train", "shift_train", "sum_train", "sumsq_train", "co_train")
_CLASS_KEYS = ("shift_class", "sum_class", "sumsq_class")


class StreamingCLD:
    """CLD scores from snapshots fed one at a time, with O(N) state.

    Instead of keeping the ``(N, S)`` trajectory, it keeps per training sample the previous loss,
    its first loss difference ``a`` (a fixed shift) and float64 running sums of the shifted
    differences ``d - a``: their squares and their products with the (likewise shifted) class
    query trajectory. The shift makes the sums numerically stable (no cancellation from a trend or
    an offset; a constant trajectory gives exactly zero variance). The state does not grow with
    the number of snapshots, and :meth:`scores` equals :func:`cld_scores` on the full trajectory
    (to ~1e-6, typically 1e-7; float32 output).

    This works because the class query trajectory at time ``t`` (the mean query difference of the
    class) is known at time ``t``: nothing has to be revisited. Likewise for
    ``normalize="query_spread"``: the query spread of a step is known when its snapshot arrives.

    Parameters
    ----------
    train_labels : int array of shape (N,)
    query_labels : int array of shape (Q,)
    first : int, optional
        Only the first ``first`` snapshots passed to :meth:`update` are used; later ones are
        ignored (truncated-trajectory ablation).
    every : int, default 1
        Only every ``every``-th snapshot is used (counted from the first update).
    missing_query_class : {"error", "global"}, default "error"
        See :func:`cld_scores`.
    normalize : {"none", "query_spread"}, default "none"
        See :func:`cld_scores`; ``"none"`` is Algorithm 1.

    Examples
    --------
    >>> s = StreamingCLD(train_labels=[0, 0], query_labels=[0])
    >>> for t_loss, q_loss in [([4.0, 1.0], [5.0]), ([3.0, 2.0], [4.0]),
    ...                        ([1.0, 4.0], [2.0]), ([0.5, 4.5], [1.5])]:
    ...     s.update(t_loss, q_loss)
    >>> s.scores().round(4).tolist()
    [1.0, -1.0]
    """

    def __init__(
        self,
        train_labels,
        query_labels,
        *,
        first: int | None = None,
        every: int = 1,
        missing_query_class: MissingQueryClass = "error",
        normalize: Normalize = "none",
    ):
        # User-provided options
        _check_policy(missing_query_class)
        _check_normalize(normalize)
        snapshot_window(1, first=first, every=every)  # validates first / every
        self.first = first
        self.every = int(every)
        self.missing_query_class = missing_query_class
        self.normalize = normalize
        tlab = check_labels(train_labels, "train_labels")
        qlab = check_labels(query_labels, "query_labels")
        if len(qlab) == 0:
            raise ValueError(
                "query_labels is empty (Q == 0): CLD needs held-out query samples. "
                "Split a stratified query set off the training data first."
            )
        self.classes, tcodes, qcodes, needed = _encode_labels(tlab, qlab)
        self._tcodes, self._qcodes = np.array(tcodes), np.array(qcodes)  # never the caller's
        c = len(self.classes)
        self._qcounts = np.bincount(self._qcodes, minlength=c)
        # Validate the policy now, not after hours of training.
        _fill_missing_classes(
            np.zeros((c, 1)), self._qcounts, needed, self.classes, np.zeros(1), missing_query_class
        )
        self._fallback = np.flatnonzero(needed & (self._qcounts == 0))
        # The class of each row in the smallest integer type: update() reads it every snapshot.
        self._small_codes = self._tcodes.astype(np.min_scalar_type(max(c - 1, 0)))
        n = len(tlab)
        # Internal state. With e_t = w_t * d_t (w_t = 1 unless normalize="query_spread") and the
        # class trajectory m_t, per training row: the previous loss, the shift a = e_1 and the
        # sums of (e - a), (e - a)**2 and (e - a) * (m - b); per class: b = m_1 and the sums of
        # (m - b), (m - b)**2. With normalize="none", sum(e - a) = l_prev - l_first - k * a, so
        # the first loss is kept instead of that sum.
        self.num_updates = 0  # snapshots passed to update(), used or not
        self.num_used = 0  # snapshots inside the window
        self._prev_train = np.zeros(n, dtype=np.float32)  # widened to the losses' dtype
        self._prev_query = np.zeros(len(qlab), dtype=np.float64)
        self._first_train = np.zeros(n, dtype=np.float64) if normalize == "none" else None
        self._shift_train = np.zeros(n, dtype=np.float64)
        self._sum_train = None if normalize == "none" else np.zeros(n, dtype=np.float64)
        self._acc = np.zeros((2, n), dtype=np.float64)  # [sum (e-a)^2, sum (e-a)(m-b)]
        self._shift_class = np.zeros(c, dtype=np.float64)
        self._sum_class = np.zeros(c, dtype=np.float64)
        self._sumsq_class = np.zeros(c, dtype=np.float64)
        self._buf = None  # (2, chunk) float64 scratch of update(); not state

    @property
    def num_train(self) -> int:
        return len(self._tcodes)

    @property
    def num_query(self) -> int:
        return len(self._qcodes)

    def _in_window(self, index: int) -> bool:
        if self.first is not None and index >= self.first:
            return False
        return index % self.every == 0

    @staticmethod
    def _check_snapshot(arr, name: str, expected: int, index: int) -> np.ndarray:
        arr = np.asarray(arr)
        if arr.dtype.kind not in "fiu":
            arr = arr.astype(np.float64)
        if arr.shape != (expected,):
            raise ValueError(
                f"{name} has shape {arr.shape} at snapshot {index}, expected ({expected},): "
                f"one loss per sample, in the order of the labels given to StreamingCLD."
            )
        if arr.dtype.kind == "f":
            with np.errstate(over="ignore", invalid="ignore"):
                total = np.add.reduce(arr, dtype=np.float64 if arr.itemsize < 4 else None)
            if not np.isfinite(total):  # a NaN/inf loss, or a sum that overflowed: look closer
                bad = np.flatnonzero(~np.isfinite(arr))
                if len(bad):
                    _raise_non_finite(name, arr, bad, snapshot=index)
        return arr

    def update(self, train_losses_t, query_losses_t) -> None:
        """Feed the losses of one snapshot: ``(N,)`` training losses and ``(Q,)`` query losses.

        The arrays are read, not kept: the scorer copies what it needs.

        Examples
        --------
        >>> s = StreamingCLD([0, 1], [0, 1])
        >>> s.update([1.0, 2.0], [1.5, 2.5])
        >>> s.num_updates
        1
        """
        index = self.num_updates
        tr = self._check_snapshot(train_losses_t, "train_losses_t", self.num_train, index)
        qr = self._check_snapshot(query_losses_t, "query_losses_t", self.num_query, index)
        self.num_updates += 1
        if not self._in_window(index):
            return
        wide = np.result_type(tr.dtype, self._prev_train.dtype)
        if wide != self._prev_train.dtype:  # keep the previous loss exactly
            self._prev_train = self._prev_train.astype(wide)
        if self.num_used == 0:
            np.copyto(self._prev_train, tr)
            if self._first_train is not None:
                np.copyto(self._first_train, tr)
            self._prev_query = qr.astype(np.float64)
        else:
            self._accumulate(tr, qr)
        self.num_used += 1

    def _class_trajectory(self, dq: np.ndarray) -> tuple[np.ndarray, float]:
        """The class trajectory at this step (one value per class) and the step's weight."""
        c = len(self.classes)
        weight = 1.0
        if self.normalize == "query_spread":
            weight = float(_query_spread_weights(dq))
        sums = np.bincount(self._qcodes, weights=dq, minlength=c)
        with np.errstate(invalid="ignore", divide="ignore"):
            m = sums / self._qcounts
        m[self._qcounts == 0] = 0.0
        m[self._fallback] = dq.mean()  # missing_query_class="global" (checked in __init__)
        m *= weight
        return m, weight

    def _accumulate(self, tr: np.ndarray, qr: np.ndarray) -> None:
        dq = qr - self._prev_query
        self._prev_query = qr.astype(np.float64)
        m, weight = self._class_trajectory(dq)
        first_difference = self.num_used == 1  # sets the shifts: every sum below gets 0
        if first_difference:
            self._shift_class = m.copy()
        mc = m - self._shift_class
        self._sum_class += mc
        self._sumsq_class += mc * mc
        n = self.num_train
        chunk = max(1, min(_STREAM_CHUNK_ROWS, n))
        if self._buf is None or self._buf.shape[1] < chunk:
            self._buf = np.empty((2, chunk), dtype=np.float64)
        prev, shift, acc, codes = self._prev_train, self._shift_train, self._acc, self._small_codes
        for start in range(0, n, chunk):
            stop = min(start + chunk, n)
            buf = self._buf[:, : stop - start]
            e = buf[0]
            np.subtract(tr[start:stop], prev[start:stop], out=e, dtype=np.float64)
            prev[start:stop] = tr[start:stop]
            if weight != 1.0:
                e *= weight
            if first_difference:
                shift[start:stop] = e
                continue
            e -= shift[start:stop]
            if self._sum_train is not None:
                self._sum_train[start:stop] += e
            np.take(mc, codes[start:stop], out=buf[1], mode="clip")
            np.multiply(buf[1], e, out=buf[1])
            np.multiply(e, e, out=e)
            acc[:, start:stop] += buf

    def _train_sums(self, rows=slice(None)) -> np.ndarray:
        """sum(e - a) of the training rows ``rows``."""
        if self._sum_train is not None:
            return self._sum_train[rows]
        k = max(self.num_used - 1, 0)
        return (self._prev_train[rows] - self._first_train[rows]) - k * self._shift_train[rows]

    def scores(self) -> np.ndarray:
        """The CLD scores of the snapshots fed so far (float32, shape (N,)).

        Examples
        --------
        >>> s = StreamingCLD([0], [0])
        >>> for t in range(4):
        ...     s.update([float(t * t)], [float(t)])
        >>> s.scores().tolist()  # query differences are constant: zero variance -> 0
        [0.0]
        """
        if self.num_used < 3:
            raise ValueError(
                f"CLD needs at least 3 snapshots (2 loss differences) to correlate; "
                f"{self.num_used} used so far ({self.num_updates} fed, first={self.first}, "
                f"every={self.every}). Feed more snapshots with update()."
            )
        k = self.num_used - 1
        b, t1, t2 = self._shift_class, self._sum_class, self._sumsq_class
        m2_q = t2 - t1 * t1 / k
        flat_q = _zero_variance(m2_q, t2 + b * (2.0 * t1 + k * b))
        m2_q[flat_q] = 1.0
        mean_q = t1 / k
        out = np.empty(self.num_train, dtype=np.float32)
        for start in range(0, self.num_train, _BLOCK_ROWS):  # bounded float64 temporaries
            rows = slice(start, start + _BLOCK_ROWS)
            codes = self._tcodes[rows]
            a, s1 = self._shift_train[rows], self._train_sums(rows)
            s2, co = self._acc[0, rows], self._acc[1, rows]
            m2_d = s2 - s1 * s1 / k
            flat = _zero_variance(m2_d, s2 + a * (2.0 * s1 + k * a)) | flat_q[codes]
            r = (co - s1 * mean_q[codes]) / np.sqrt(np.where(flat, 1.0, m2_d * m2_q[codes]))
            r[flat] = 0.0
            np.clip(r, -1.0, 1.0, out=r)
            out[rows] = r
        return out

    def state_dict(self) -> dict:
        """Arrays and counters that restore this scorer with :meth:`load_state_dict`.

        Everything is a NumPy array or an int, so it can be saved with safetensors or as JSON.
        Per training sample: ``prev_train`` (the last loss, in the losses' dtype),
        ``shift_train``, ``sum_train``, ``sumsq_train`` and ``co_train`` (float64, see the class
        docstring); per query sample ``prev_query``; per class ``shift_class``, ``sum_class`` and
        ``sumsq_class``; the counters ``num_updates`` and ``num_used`` (and
        ``normalize_query_spread`` = 1 with that option). States saved by earlier versions
        (Welford keys ``mean_d``, ``m2_d``, ``co``...) still load.

        Examples
        --------
        >>> s = StreamingCLD([0, 1], [0, 1]); s.update([1.0, 2.0], [1.0, 2.0])
        >>> t = StreamingCLD([0, 1], [0, 1]); t.load_state_dict(s.state_dict())
        >>> t.num_updates
        1
        """
        state = {
            "num_updates": self.num_updates,
            "num_used": self.num_used,
            "prev_train": self._prev_train.copy(),
            "prev_query": self._prev_query.copy(),
            "shift_train": self._shift_train.copy(),
            "sum_train": np.array(self._train_sums(), dtype=np.float64),
            "sumsq_train": self._acc[0].copy(),
            "co_train": self._acc[1].copy(),
            "shift_class": self._shift_class.copy(),
            "sum_class": self._sum_class.copy(),
            "sumsq_class": self._sumsq_class.copy(),
        }
        if self.normalize == "query_spread":
            state["normalize_query_spread"] = 1
        return state

    def load_state_dict(self, state: dict) -> None:
        """Restore the state saved by :meth:`state_dict` (same labels and options required).

        Examples
        --------
        >>> s = StreamingCLD([0, 1], [0, 1]); s.update([1.0, 2.0], [1.0, 2.0])
        >>> StreamingCLD([0], [0]).load_state_dict(s.state_dict())
        Traceback (most recent call last):
        ...
        ValueError: state['prev_train'] has shape (2,), expected (1,): ...
        """
        welford = "mean_d" in state
        train_keys = ("prev_train", "mean_d", "m2_d", "co") if welford else _TRAIN_KEYS
        for key in train_keys:
            if np.shape(state[key]) != (self.num_train,):
                raise ValueError(
                    f"state[{key!r}] has shape {np.shape(state[key])}, expected "
                    f"({self.num_train},): the state was saved for a different training set."
                )
        saved = "query_spread" if int(state.get("normalize_query_spread", 0)) else "none"
        if saved != self.normalize:
            raise ValueError(
                f"The state was saved by a StreamingCLD with normalize={saved!r}, but this one "
                f"has normalize={self.normalize!r}; create it with normalize={saved!r} to resume."
            )
        c = len(self.classes)
        class_keys = ("mean_q", "m2_q") if welford else _CLASS_KEYS
        for key in class_keys:
            if np.shape(state[key]) != (c,):
                raise ValueError(
                    f"state[{key!r}] has shape {np.shape(state[key])}, expected ({c},): the state "
                    f"was saved for a different set of classes."
                )
        self.num_updates = int(state["num_updates"])
        self.num_used = int(state["num_used"])
        prev = np.array(state["prev_train"])
        self._prev_train = prev.astype(np.result_type(prev.dtype, np.float32))
        self._prev_query = np.array(state["prev_query"], dtype=np.float64)
        k = max(self.num_used - 1, 0)
        if welford:  # Welford moments = sums shifted by the running means (sum(e - a) = 0)
            self._shift_train = np.array(state["mean_d"], dtype=np.float64)
            s1 = np.zeros(self.num_train)
            self._acc = np.stack([np.asarray(state["m2_d"], dtype=np.float64),
                                  np.asarray(state["co"], dtype=np.float64)])
            self._shift_class = np.array(state["mean_q"], dtype=np.float64)
            self._sum_class = np.zeros(c)
            self._sumsq_class = np.array(state["m2_q"], dtype=np.float64)
        else:
            self._shift_train = np.array(state["shift_train"], dtype=np.float64)
            s1 = np.array(state["sum_train"], dtype=np.float64)
            self._acc = np.stack([np.asarray(state["sumsq_train"], dtype=np.float64),
                                  np.asarray(state["co_train"], dtype=np.float64)])
            self._shift_class = np.array(state["shift_class"], dtype=np.float64)
            self._sum_class = np.array(state["sum_class"], dtype=np.float64)
            self._sumsq_class = np.array(state["sumsq_class"], dtype=np.float64)
        if self.normalize == "none":
            self._first_train = self._prev_train - (s1 + k * self._shift_train)
        else:
            self._sum_train = s1


# --------------------------------------------------------------------------------------------
# Summary
# --------------------------------------------------------------------------------------------


def class_score_summary(scores, labels) -> dict[int, dict[str, float]]:
    """Count, mean, standard deviation, min and max of the scores of each class.

    Parameters
    ----------
    scores : float array of shape (N,)
    labels : int array of shape (N,)

    Returns
    -------
    dict mapping each class (ascending) to ``{"count", "mean", "std", "min", "max"}``.

    Examples
    --------
    >>> class_score_summary([0.5, -0.5, 1.0], [0, 0, 1])[0]
    {'count': 2, 'mean': 0.0, 'std': 0.5, 'min': -0.5, 'max': 0.5}
    """
    s = np.asarray(scores, dtype=np.float64)
    lab = check_labels(labels, "labels", len(s), against="the scores")
    order = np.argsort(lab, kind="stable")
    classes, starts = np.unique(lab[order], return_index=True)
    out = {}
    for c, part in zip(classes, np.split(s[order], starts[1:])):
        out[int(c)] = {"count": int(len(part)), "mean": float(part.mean()),
                       "std": float(part.std()), "min": float(part.min()),
                       "max": float(part.max())}
    return out
