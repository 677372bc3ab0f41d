"""Batch CLD: :func:`cld_scores` over the whole ``(N, S)`` trajectory, in cache-sized chunks.
NumPy only."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from .._validation import (
    check_int,
    check_labels,
    check_trajectory_pair,
)

logger = logging.getLogger(__name__)

from .common import (
    BLOCK_ROWS,
    DEFAULT_CHUNK_ROWS,
    FAST_MIN_CENTRED,
    MissingQueryClass,
    Normalize,
    SWITCH_BACK,
    _FAST_MIN_S2,
    _SWITCH_TO_FLOAT64,
    check_normalize,
    check_policy,
    encode_labels,
    fill_missing_classes,
    normalise_class_trajectories,
    query_spread_weights,
    raise_non_finite_losses,
    snapshot_window,
    warn_few_differences,
    zero_variance,
)
from .kernels import Kernel, choose_kernel, compiled_scorer, kernel_threads
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
    chunk_size: int = DEFAULT_CHUNK_ROWS,
    kernel: Kernel = "auto",
    threads: int | None = None,
    progress: bool = False,
) -> np.ndarray:
    """Score every training sample by CLD (Algorithm 1 of "Coresets from Trajectories").

    For each sample the loss differences ``d_t = l_t - l_{t-1}`` are correlated (Pearson) with the
    mean loss differences of the query samples of the sample's own class. Higher means the sample's
    loss moved the way the held-out data of its class moved: it is kept first.

    One pass over the trajectory, in chunks of ``chunk_size`` rows that stay in cache (or row by
    row with ``kernel="numba"``): the extra memory is a few MB plus ~12 bytes per sample whatever
    ``S``, and a ``numpy.memmap`` of the trajectory works too (read once, in order). See
    "Precision" in the module docstring for the float32 fast path and the float64 rows.

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
        Rows scored at once by the NumPy kernel (the cache-resident working set, at most 65536;
        the results do not depend on it).
    kernel : {"auto", "numpy", "numba"}, default "auto"
        ``"numpy"``: cache-sized NumPy chunks, four passes over each. ``"numba"``: a compiled
        kernel that reads each row once (needs ``pip install "cld-hf[fast]"``; float32 or
        float64 losses); its first call in a process compiles it, or loads it from numba's
        on-disk cache (the README's scoring benchmark times both kernels and that first call).
        ``"auto"``: numba when it is installed and the window holds at least 2**24 values
        (``N`` times the snapshots used), NumPy otherwise. Both apply the same per-row rules
        (see :mod:`cld_hf.scoring.kernels`) and agree to ~1e-6.
    threads : int, optional
        Threads of the compiled kernel (blocks of rows taken in turn, so a busy core slows it
        down but does not stall it; the scores do not depend on it). Default: the CPUs this
        process may use, at most 8. The NumPy kernel runs in the calling thread.
    progress : bool, default False
        Show a tqdm progress bar over the chunks.

    Returns
    -------
    numpy.ndarray of float32, shape (N,), values in [-1, 1].

    Raises
    ------
    ValueError
        On shape mismatches, fewer than 3 snapshots, NaN/inf losses or a class without query
        samples (unless ``missing_query_class="global"``). Fewer than 5 differences are a
        logged warning (the scores take few values); finite losses too large for float64
        squares are rescaled (the scores do not depend on the losses' scale).
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
    check_policy(missing_query_class)
    check_normalize(normalize)
    train, query = check_trajectory_pair(train_losses, query_losses)
    n, s = train.shape
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
    warn_few_differences(len(columns) - 1)
    chunk_size = check_int("chunk_size", chunk_size, min_val=1)
    threads = kernel_threads(threads)
    window = None  # all columns
    if len(columns) < s:
        window = slice(0, len(columns)) if every == 1 else columns

    q_arr = np.asarray(query)
    q_window = q_arr if window is None else q_arr[:, window]
    q_bad = np.flatnonzero(~np.isfinite(q_window).all(axis=1))
    if len(q_bad):
        raise_non_finite_losses("query_losses", q_arr, q_bad)

    classes, tcodes, qcodes, needed = encode_labels(tlab, qlab)
    num_classes = len(classes)
    largest = float(np.abs(q_window).max()) if q_window.size else 0.0
    if largest > _RESCALE_ABOVE:  # their squares would overflow float64: CLD is scale-free
        q_arr = q_arr / largest
        q_window = q_arr if window is None else q_arr[:, window]
    traj, counts, global_traj = class_query_trajectories(q_arr, qcodes, num_classes, columns=window)
    omega = None
    if normalize == "query_spread":
        omega = query_spread_weights(np.diff(q_window.astype(np.float64, copy=False), axis=1))
        traj = traj * omega
        global_traj = global_traj * omega
    traj = fill_missing_classes(traj, counts, needed, classes, global_traj, missing_query_class)
    unit = normalise_class_trajectories(traj)  # (C, T): centred, unit norm (0 if flat)
    if choose_kernel(kernel, n * len(columns), train.dtype) == "numba":
        return _score_rows_compiled(train, window, tcodes, unit, omega, progress, threads)
    return _score_rows(train, window, tcodes, unit, omega, chunk_size, progress)


_RESCALE_ABOVE = 1e100
"""Query losses beyond this are divided by their largest value before scoring (the squares of
their differences would overflow float64); the scores do not change."""


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
    block = BLOCK_ROWS  # fixed, so that the float64 switches do not depend on chunk_size
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
                use_float64 = kept < SWITCH_BACK * k
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
            np.multiply(sq, np.float32(FAST_MIN_CENTRED), out=t)
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
        raise_non_finite_losses("train_losses", train, np.concatenate(exact.bad_rows))
    return out


_COPY_ROWS = 8192
"""Rows of a windowed or non-contiguous trajectory copied at once for the compiled kernel."""

def _score_rows_compiled(train, window, tcodes, unit, omega, progress, threads) -> np.ndarray:
    """:func:`_score_rows` with the compiled kernel
    (:func:`~cld_hf.scoring.kernels.compiled_scorer`): each row read once, blocks of rows on
    ``threads`` threads (the kernel releases the GIL; a row's score does not depend on its block
    or thread). The rows whose float64 sums are not finite go to :class:`_ExactRows`, in this
    thread, which names NaN/inf rows and rescales huge finite ones."""
    n = train.shape[0]
    out = np.empty(n, dtype=np.float32)
    if n == 0:
        return out
    direct = window is None and train.flags.c_contiguous
    step = BLOCK_ROWS if direct else _COPY_ROWS
    codes = np.ascontiguousarray(tcodes)
    score = compiled_scorer(unit, omega, train.dtype)
    exact = _ExactRows(train, window, tcodes, unit, omega, out)

    def block(start: int):
        stop = min(start + step, n)
        src = train[start:stop]
        if direct:
            x = np.asarray(src)
        elif isinstance(window, np.ndarray):
            x = np.take(src, window, axis=1)
        else:
            x = np.ascontiguousarray(src if window is None else src[:, window])
        return start, stop, score(x, codes[start:stop], out[start:stop])

    starts = range(0, n, step)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=n, desc="CLD scores", unit="row")
    workers = min(threads, len(starts))
    pool = ThreadPoolExecutor(workers) if workers > 1 else None
    try:
        done = pool.map(block, starts) if pool is not None else map(block, starts)
        for start, stop, rest in done:
            if len(rest):
                exact.score(start + rest)
            if bar is not None:
                bar.update(stop - start)
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
        if bar is not None:
            bar.close()
    if exact.bad_rows:
        raise_non_finite_losses("train_losses", train, np.concatenate(exact.bad_rows))
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
                lost = ~np.isfinite(np.asarray(x[suspect])).all(axis=1)
                bad, large = suspect[lost], suspect[~lost]
                if len(bad):
                    numbers = np.arange(rows.start, rows.stop) if isinstance(rows, slice) else rows
                    self.bad_rows.append(numbers[bad])
                if len(large):  # finite but huge losses: the same score on the rescaled row
                    num[large], m2[large], sumsq[large] = self._rescaled(np.asarray(x[large]),
                                                                         rows, large)
                    finite[large] = True
            flat = zero_variance(m2, sumsq) | ~finite
            r = num / np.sqrt(np.where(flat, 1.0, m2))
        r[flat] = 0.0
        np.clip(r, -1.0, 1.0, out=r)
        self.out[rows] = r
        return int(np.count_nonzero(m2 > FAST_MIN_CENTRED * sumsq))

    def _rescaled(self, x: np.ndarray, rows, which):
        """``(num, m2, sumsq)`` of rows ``x`` divided by their largest ``|loss|`` (Pearson's
        correlation does not change when a row is scaled)."""
        x = x.astype(np.float64) / np.abs(x).max(axis=1, keepdims=True)
        d = np.diff(x, axis=1)
        if self.omega is not None:
            d *= self.omega
        sumsq = np.einsum("ij,ij->i", d, d)
        d -= d.mean(axis=1, keepdims=True)
        codes = self.tcodes[rows][which]
        return np.einsum("ij,ij->i", d, self.unit[codes]), np.einsum("ij,ij->i", d, d), sumsq

