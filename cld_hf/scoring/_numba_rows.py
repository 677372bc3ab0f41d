"""The compiled kernels of the scorers (numba; imported only by :mod:`cld_hf.scoring.kernels`
when one runs): the row kernel of :func:`~cld_hf.scoring.batch.cld_scores` and the update of
:class:`~cld_hf.scoring.streaming.StreamingCLD`.

Compiled once per dtype on first use and kept in numba's on-disk cache (``cache=True``: next to this
file when the directory is writable, else wherever numba's cache locator finds room, or
``NUMBA_CACHE_DIR``), so a later process loads it instead of compiling; where nothing is writable,
every process compiles it (about a second) and the scores are the same. ``fastmath`` allows
reassociating the sums (so that they vectorise), reciprocals and fused multiply-adds, not "no signed
zeros": with reassociation, LLVM then folds a NaN row into a finite score. NaN and inf compare as
IEEE says, which the fallback relies on (``tests/test_scoring_kernels.py`` feeds it NaN, inf and
huge rows). The streaming update uses no fastmath at all.
"""

from __future__ import annotations

import math

import numba
import numpy as np

_FASTMATH = {"reassoc", "arcp", "contract"}


@numba.njit(cache=True, nogil=True, fastmath=_FASTMATH, error_model="numpy")
def fast_rows(x, codes, unit_fast, omega_fast, weighted, zero, keep_above, min_s2, out):
    """The one-pass float32 (the losses' dtype) CLD of every row ``i`` of ``x`` (``(n, T + 1)``
    losses) against ``unit_fast[codes[i]]`` (centred, unit norm), written to ``out[i]``, for
    the rows where it is accurate; the others get NaN. Returns how many got NaN.

    Per row: ``s2 = sum d_t**2`` and the dot product with the class trajectory; ``sum_t d_t``
    is ``l_last - l_first`` exactly (the weighted sum under ``normalize="query_spread"``). The
    result is kept when ``m2 = s2 - (sum d)**2 / T`` is above ``keep_above * s2`` (less than
    one bit cancels) and ``s2`` above ``min_s2``. NaN, inf and float32 overflow fail both tests.
    The thresholds are arguments, not globals, so that numba's cache never holds stale ones.
    """
    n = x.shape[0]
    steps = x.shape[1] - 1
    rest = 0
    for i in range(n):
        row = x[i]
        g = unit_fast[codes[i]]
        s2 = zero
        dot = zero
        if weighted:
            s1 = zero
            for t in range(steps):
                d = (row[t + 1] - row[t]) * omega_fast[t]
                s1 += d
                s2 += d * d
                dot += d * g[t]
            total = np.float64(s1)
        else:  # Algorithm 1: no weights, the sum from the end points
            for t in range(steps):
                d = row[t + 1] - row[t]
                s2 += d * d
                dot += d * g[t]
            total = np.float64(row[steps]) - np.float64(row[0])
        sq = np.float64(s2)
        m2 = sq - total * total / steps
        if m2 > keep_above * sq and sq > min_s2:
            out[i] = min(1.0, max(-1.0, np.float64(dot) / math.sqrt(m2)))
        else:
            out[i] = np.nan
            rest += 1
    return rest


@numba.njit(cache=True, nogil=True, fastmath=_FASTMATH, error_model="numpy")
def exact_rows(x, rows, codes, unit, omega, zero_var, out):
    """The float64 two-pass CLD (differences centred on their mean before squaring) of the rows
    ``rows`` of ``x``, written to ``out``; a zero-variance row (``m2 <= zero_var * sum d**2``)
    scores 0, and a row whose float64 sums are not finite (NaN/inf or huge losses) keeps NaN.
    Returns how many kept NaN."""
    steps = x.shape[1] - 1
    bad = 0
    for i in rows:
        row = x[i]
        g = unit[codes[i]]
        s1 = 0.0
        sumsq = 0.0
        for t in range(steps):
            d = (np.float64(row[t + 1]) - np.float64(row[t])) * omega[t]
            s1 += d
            sumsq += d * d
        if not math.isfinite(sumsq):
            out[i] = np.nan
            bad += 1
            continue
        mean = s1 / steps
        m2 = 0.0
        num = 0.0
        for t in range(steps):
            d = (np.float64(row[t + 1]) - np.float64(row[t])) * omega[t] - mean
            m2 += d * d
            num += d * g[t]
        if m2 <= zero_var * sumsq:
            out[i] = 0.0
        else:
            out[i] = min(1.0, max(-1.0, num / math.sqrt(m2)))
    return bad


@numba.njit(cache=True, nogil=True, error_model="numpy")
def stream_update(tr, prev, shift, sums, acc_sq, acc_co, codes, mc, weight, first, lo, hi):
    """One :class:`~cld_hf.scoring.streaming.StreamingCLD` update of the training rows
    ``lo:hi``, fused: the float64 difference ``e = (tr - prev) * weight`` of each row, then
    ``prev = tr``; at the first difference (``first``) ``shift = e``, otherwise ``e -= shift``
    and the running sums ``sums += e`` (when ``sums`` has rows: ``normalize="query_spread"``),
    ``acc_sq += e * e`` and ``acc_co += e * mc[codes]``.

    No fastmath: every operation is the NumPy path's, in its order, so the state is the same to
    the last bit whichever path updates it.
    """
    with_sums = sums.shape[0] > 0
    for i in range(lo, hi):
        e = np.float64(tr[i]) - np.float64(prev[i])
        prev[i] = tr[i]
        if weight != 1.0:
            e *= weight
        if first:
            shift[i] = e
            continue
        e -= shift[i]
        if with_sums:
            sums[i] += e
        acc_co[i] += mc[codes[i]] * e
        acc_sq[i] += e * e
