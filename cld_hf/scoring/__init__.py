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
``np.corrcoef`` to about ``1e-6`` (typically ``1e-7``; scores are float32). With
``kernel="numba"`` (the ``fast`` extra; see :mod:`cld_hf.scoring.kernels`) the same rules run
fused, row by row: the float32 sums of a row, then, where they are not kept, the float64 formula
on that row.

:class:`StreamingCLD` keeps float64 sums of the differences shifted by each row's first difference
(a fixed per-row constant), so a trend does not cancel there either, and a constant trajectory
gives exactly zero variance.
"""

from .batch import class_query_trajectories, cld_scores
from .common import class_score_summary, format_score_summary, snapshot_window
from .streaming import StreamingCLD

__all__ = [
    "cld_scores",
    "StreamingCLD",
    "snapshot_window",
    "class_query_trajectories",
    "class_score_summary",
    "format_score_summary",
]
