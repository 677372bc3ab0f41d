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
- All arithmetic is float64; the scores are returned as float32.

A trajectory counts as having zero variance when its standard deviation is at most ``1e-10`` times
its root mean square: constant up to float64 rounding. This makes a constant trajectory score
``0.0`` in the batch and the streaming computation alike.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Literal

import numpy as np

from ._validation import (
    MAX_NAMED,
    check_choice,
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

# std <= _ZERO_VAR_REL * rms counts as zero variance (see the module docstring).
_ZERO_VAR_REL = 1e-10
# Rows per chunk of the batch scorer: ~3 MB of float64 differences at S = 90, cache-sized.
_DEFAULT_CHUNK_ROWS = 4096


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
    """Map labels to dense codes 0..C-1 shared by train and query. Returns (classes, tc, qc)."""
    lo = min(train_labels.min(initial=0), query_labels.min(initial=0))
    hi = max(train_labels.max(initial=0), query_labels.max(initial=0))
    n = len(train_labels) + len(query_labels)
    if lo >= 0 and hi <= 4 * n + 1024:
        # O(N) table lookup instead of a sort: the ImageNet case (labels 0..999).
        present = np.zeros(int(hi) + 1, dtype=bool)
        present[train_labels] = True
        present[query_labels] = True
        classes = np.flatnonzero(present)
        lookup = np.cumsum(present, dtype=np.int64) - 1
        return classes, lookup[train_labels], lookup[query_labels]
    classes, inverse = np.unique(np.concatenate([train_labels, query_labels]), return_inverse=True)
    inverse = inverse.astype(np.int64, copy=False)
    return classes, inverse[: len(train_labels)], inverse[len(train_labels) :]


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
    d = np.diff(q.astype(np.float64, copy=False), axis=1)
    sums = np.zeros((num_classes, d.shape[1]), dtype=np.float64)
    np.add.at(sums, query_codes, d)
    counts = np.bincount(query_codes, minlength=num_classes)
    with np.errstate(invalid="ignore", divide="ignore"):
        traj = sums / counts[:, None]
    traj[counts == 0] = 0.0
    global_traj = d.mean(axis=0) if len(d) else np.zeros(d.shape[1])
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
    chunk_size: int = _DEFAULT_CHUNK_ROWS,
    progress: bool = False,
) -> np.ndarray:
    """Score every training sample by CLD (Algorithm 1 of "Coresets from Trajectories").

    For each sample the loss differences ``d_t = l_t - l_{t-1}`` are correlated (Pearson) with the
    mean loss differences of the query samples of the sample's own class. Higher means the sample's
    loss moved the way the held-out data of its class moved: it is kept first.

    The computation is vectorised over all classes and runs in chunks of ``chunk_size`` rows, so
    the extra memory is a few MB whatever ``N``: a ``numpy.memmap`` of the trajectory works too.

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
    chunk_size : int, default 4096
        Rows scored at once.
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
    """
    _check_policy(missing_query_class)
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
    if chunk_size < 1:
        raise ValueError(f"chunk_size == {chunk_size}, must be >= 1.")
    all_columns = len(columns) == s
    if not all_columns and every == 1:
        columns = slice(0, len(columns))  # a contiguous window slices without a copy

    q_arr = np.asarray(query)
    q_bad = np.flatnonzero(~np.isfinite(q_arr[:, columns]).all(axis=1))
    if len(q_bad):
        _raise_non_finite("query_losses", q_arr, q_bad)

    classes, tcodes, qcodes = _encode_labels(tlab, qlab)
    num_classes = len(classes)
    traj, counts, global_traj = class_query_trajectories(
        q_arr, qcodes, num_classes, columns=None if all_columns else columns
    )
    needed = np.bincount(tcodes, minlength=num_classes) > 0
    traj = _fill_missing_classes(traj, counts, needed, classes, global_traj, missing_query_class)
    unit = _normalise_class_trajectories(traj)  # (C, T): centred, unit norm (0 if flat)

    out = np.empty(n, dtype=np.float32)
    bad_rows = []
    starts = range(0, n, chunk_size)
    if progress:
        from tqdm.auto import tqdm

        starts = tqdm(starts, desc="CLD scores", unit="chunk")
    d = np.empty((min(chunk_size, max(n, 1)), unit.shape[1]), dtype=np.float64)
    for start in starts:
        with np.errstate(invalid="ignore", over="ignore"):  # non-finite rows raise below
            _score_chunk(train, start, min(start + chunk_size, n), columns, all_columns,
                         tcodes, unit, d, out, bad_rows)
    if bad_rows:
        _raise_non_finite("train_losses", train, np.concatenate(bad_rows))
    return out


def _score_chunk(train, start, stop, columns, all_columns, tcodes, unit, d, out, bad_rows):
    """Score rows ``start:stop`` into ``out``; ``d`` is a reusable float64 buffer."""
    x = train[start:stop] if all_columns else train[start:stop, columns]
    dc = d[: stop - start]
    np.subtract(x[:, 1:], x[:, :-1], out=dc, dtype=np.float64)
    sumsq = np.einsum("ij,ij->i", dc, dc)
    dc -= (dc.sum(axis=1) / dc.shape[1])[:, None]  # centre over time (two-pass, stable)
    m2 = np.einsum("ij,ij->i", dc, dc)
    num = np.einsum("ij,ij->i", dc, unit[tcodes[start:stop]])  # unit rows are centred, norm 1
    finite = np.isfinite(sumsq)
    if not finite.all():
        bad_rows.append(start + np.flatnonzero(~finite))
    flat = _zero_variance(m2, sumsq) | ~finite
    r = num / np.sqrt(np.where(flat, 1.0, m2))
    r[flat] = 0.0
    np.clip(r, -1.0, 1.0, out=r)
    out[start:stop] = r


# --------------------------------------------------------------------------------------------
# Streaming scoring
# --------------------------------------------------------------------------------------------


class StreamingCLD:
    """CLD scores from snapshots fed one at a time, with O(N) state.

    Instead of keeping the ``(N, S)`` trajectory, it keeps per training sample the previous loss,
    the running mean and sum of squared deviations of its loss differences, and their running
    co-moment with the class query trajectory (Welford's updates, numerically stable). The state
    does not grow with the number of snapshots, and :meth:`scores` equals :func:`cld_scores` on
    the full trajectory (to ~1e-12 in float64; float32 output).

    This works because the class query trajectory at time ``t`` (the mean query difference of the
    class) is known at time ``t``: nothing has to be revisited.

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
    ):
        # User-provided options
        _check_policy(missing_query_class)
        snapshot_window(1, first=first, every=every)  # validates first / every
        self.first = first
        self.every = int(every)
        self.missing_query_class = missing_query_class
        tlab = check_labels(train_labels, "train_labels")
        qlab = check_labels(query_labels, "query_labels")
        if len(qlab) == 0:
            raise ValueError(
                "query_labels is empty (Q == 0): CLD needs held-out query samples. "
                "Split a stratified query set off the training data first."
            )
        self.classes, self._tcodes, self._qcodes = _encode_labels(tlab, qlab)
        c = len(self.classes)
        self._qcounts = np.bincount(self._qcodes, minlength=c)
        needed = np.bincount(self._tcodes, minlength=c) > 0
        # Validate the policy now, not after hours of training.
        _fill_missing_classes(
            np.zeros((c, 1)), self._qcounts, needed, self.classes, np.zeros(1), missing_query_class
        )
        self._fallback = np.flatnonzero(needed & (self._qcounts == 0))
        n = len(tlab)
        # Internal state
        self.num_updates = 0  # snapshots passed to update(), used or not
        self.num_used = 0  # snapshots inside the window
        self._prev_train = np.zeros(n, dtype=np.float64)
        self._prev_query = np.zeros(len(qlab), dtype=np.float64)
        self._mean_d = np.zeros(n, dtype=np.float64)
        self._m2_d = np.zeros(n, dtype=np.float64)
        self._sumsq_d = np.zeros(n, dtype=np.float64)
        self._co = np.zeros(n, dtype=np.float64)
        self._mean_q = np.zeros(c, dtype=np.float64)
        self._m2_q = np.zeros(c, dtype=np.float64)
        self._sumsq_q = np.zeros(c, dtype=np.float64)

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

    def update(self, train_losses_t, query_losses_t) -> None:
        """Feed the losses of one snapshot: ``(N,)`` training losses and ``(Q,)`` query losses.

        Examples
        --------
        >>> s = StreamingCLD([0, 1], [0, 1])
        >>> s.update([1.0, 2.0], [1.5, 2.5])
        >>> s.num_updates
        1
        """
        index = self.num_updates
        tr = np.asarray(train_losses_t, dtype=np.float64)
        qr = np.asarray(query_losses_t, dtype=np.float64)
        checks = ((tr, "train_losses_t", self.num_train), (qr, "query_losses_t", self.num_query))
        for arr, name, expected in checks:
            if arr.shape != (expected,):
                raise ValueError(
                    f"{name} has shape {arr.shape} at snapshot {index}, expected ({expected},): "
                    f"one loss per sample, in the order of the labels given to StreamingCLD."
                )
            bad = np.flatnonzero(~np.isfinite(arr))
            if len(bad):
                _raise_non_finite(name, arr, bad, snapshot=index)
        self.num_updates += 1
        if not self._in_window(index):
            return
        if self.num_used > 0:
            self._accumulate(tr - self._prev_train, qr - self._prev_query)
        self._prev_train = tr.copy()
        self._prev_query = qr.copy()
        self.num_used += 1

    def _accumulate(self, d: np.ndarray, dq: np.ndarray) -> None:
        c = len(self.classes)
        sums = np.bincount(self._qcodes, weights=dq, minlength=c)
        with np.errstate(invalid="ignore", divide="ignore"):
            m = sums / self._qcounts
        m[self._qcounts == 0] = 0.0
        m[self._fallback] = dq.mean()  # missing_query_class="global" (checked in __init__)
        k = self.num_used  # number of differences after this one
        # Class trajectory moments (Welford).
        dm = m - self._mean_q
        new_mean_q = self._mean_q + dm / k
        self._m2_q += dm * (m - new_mean_q)
        self._sumsq_q += m * m
        # Sample moments and co-moment with the class trajectory.
        codes = self._tcodes
        dx = d - self._mean_d
        self._mean_d += dx / k
        self._m2_d += dx * (d - self._mean_d)
        self._sumsq_d += d * d
        self._co += dx * (m - new_mean_q)[codes]
        self._mean_q = new_mean_q

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
        flat_q = _zero_variance(self._m2_q, self._sumsq_q)
        flat_d = _zero_variance(self._m2_d, self._sumsq_d)
        codes = self._tcodes
        flat = flat_d | flat_q[codes]
        denom = np.sqrt(np.where(flat, 1.0, self._m2_d * np.where(flat_q, 1.0, self._m2_q)[codes]))
        r = self._co / denom
        r[flat] = 0.0
        return np.clip(r, -1.0, 1.0).astype(np.float32)

    def state_dict(self) -> dict:
        """Arrays and counters that restore this scorer with :meth:`load_state_dict`.

        Everything is a NumPy array or an int, so it can be saved with safetensors or as JSON.

        Examples
        --------
        >>> s = StreamingCLD([0, 1], [0, 1]); s.update([1.0, 2.0], [1.0, 2.0])
        >>> t = StreamingCLD([0, 1], [0, 1]); t.load_state_dict(s.state_dict())
        >>> t.num_updates
        1
        """
        return {
            "num_updates": self.num_updates,
            "num_used": self.num_used,
            "prev_train": self._prev_train.copy(),
            "prev_query": self._prev_query.copy(),
            "mean_d": self._mean_d.copy(),
            "m2_d": self._m2_d.copy(),
            "sumsq_d": self._sumsq_d.copy(),
            "co": self._co.copy(),
            "mean_q": self._mean_q.copy(),
            "m2_q": self._m2_q.copy(),
            "sumsq_q": self._sumsq_q.copy(),
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore the state saved by :meth:`state_dict` (same labels required)."""
        for key in ("prev_train", "mean_d", "m2_d", "sumsq_d", "co"):
            if np.shape(state[key]) != (self.num_train,):
                raise ValueError(
                    f"state[{key!r}] has shape {np.shape(state[key])}, expected ({self.num_train},):"
                    f" the state was saved for a different training set."
                )
        self.num_updates = int(state["num_updates"])
        self.num_used = int(state["num_used"])
        keys = ("prev_train", "prev_query", "mean_d", "m2_d", "sumsq_d", "co", "mean_q", "m2_q")
        for key in (*keys, "sumsq_q"):
            setattr(self, f"_{key}", np.array(state[key], dtype=np.float64))


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
