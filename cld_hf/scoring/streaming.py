"""Streaming CLD: :class:`StreamingCLD`, snapshots fed one at a time, O(N) state. NumPy only."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from .._validation import MAX_NAMED, check_choice, check_labels

logger = logging.getLogger(__name__)

from .common import (
    BLOCK_ROWS,
    MissingQueryClass,
    Normalize,
    STREAM_CHUNK_ROWS,
    check_normalize,
    check_policy,
    encode_labels,
    fill_missing_classes,
    query_spread_weights,
    overflow_error,
    raise_non_finite_losses,
    snapshot_window,
    warn_few_differences,
    zero_variance,
)
from .kernels import (
    AUTO_MIN_STREAM_ROWS,
    KERNELS,
    Kernel,
    choose_kernel,
    compiled_stream_update,
    kernel_threads,
)
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
    kernel : {"auto", "numpy", "numba"}, default "auto"
        What updates the per-row state: NumPy chunks, or a compiled loop that reads and writes
        each row's state once (the ``fast`` extra). Both do the same float64 operations in the
        same order: the state and the scores are the same to the last bit. ``"auto"``: numba
        when it is installed, the training losses are float32 or float64 and there are at least
        2**22 training rows (where its first call, compiling it, is repaid).
    threads : int, optional
        Threads of the compiled update (the rows split in contiguous ranges). Default: the CPUs
        this process may use, at most 8.

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
        kernel: Kernel = "auto",
        threads: int | None = None,
    ):
        # User-provided options
        check_policy(missing_query_class)
        check_normalize(normalize)
        check_choice("kernel", kernel, KERNELS)
        self.kernel = kernel
        self.threads = kernel_threads(threads)
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
        self.classes, tcodes, qcodes, needed = encode_labels(tlab, qlab)
        self._tcodes, self._qcodes = np.array(tcodes), np.array(qcodes)  # never the caller's
        c = len(self.classes)
        self._qcounts = np.bincount(self._qcodes, minlength=c)
        # Validate the policy now, not after hours of training.
        fill_missing_classes(
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
                    raise_non_finite_losses(name, arr, bad, snapshot=index)
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
            weight = float(query_spread_weights(dq))
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
        if self._compiled_update():
            self._accumulate_compiled(tr, mc, weight, first_difference)
            return
        chunk = max(1, min(STREAM_CHUNK_ROWS, n))
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

    def _compiled_update(self) -> bool:
        """Whether updates run the compiled kernel (see ``kernel`` in the class docstring)."""
        return choose_kernel(self.kernel, self.num_train, self._prev_train.dtype,
                             auto_min=AUTO_MIN_STREAM_ROWS) == "numba"

    def _accumulate_compiled(self, tr, mc, weight, first_difference) -> None:
        update = compiled_stream_update()
        sums = self._sum_train if self._sum_train is not None else np.zeros(0)
        # The losses in the previous loss's dtype (widened to hold both): exact, and what the
        # NumPy path's float64 subtraction sees.
        tr = np.ascontiguousarray(tr, dtype=self._prev_train.dtype)
        args = (tr, self._prev_train, self._shift_train, sums,
                self._acc[0], self._acc[1], self._small_codes, mc, float(weight),
                first_difference)
        n = self.num_train
        parts = min(self.threads, max(1, n // STREAM_CHUNK_ROWS))
        bounds = [n * k // parts for k in range(parts + 1)]
        if parts == 1:
            update(*args, 0, n)
            return
        # The kernel releases the GIL; leaving the block joins the threads, so none outlives the
        # update (nothing is left running when a DataLoader later forks).
        with ThreadPoolExecutor(parts) as pool:
            list(pool.map(lambda k: update(*args, bounds[k], bounds[k + 1]), range(parts)))

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
        warn_few_differences(k)
        with np.errstate(over="ignore", invalid="ignore"):  # overflow is an error below
            return self._scores(k)

    def _scores(self, k: int) -> np.ndarray:
        b, t1, t2 = self._shift_class, self._sum_class, self._sumsq_class
        m2_q = t2 - t1 * t1 / k
        bad_q = np.flatnonzero(~np.isfinite(m2_q))
        if len(bad_q):
            raise ValueError(
                f"The float64 sums of the query loss differences of class(es) "
                f"{self.classes[bad_q][:MAX_NAMED].tolist()} overflowed; CLD does not depend "
                f"on the scale of the losses: divide all losses by one constant and score again.")
        flat_q = zero_variance(m2_q, t2 + b * (2.0 * t1 + k * b))
        m2_q[flat_q] = 1.0
        mean_q = t1 / k
        out = np.empty(self.num_train, dtype=np.float32)
        for start in range(0, self.num_train, BLOCK_ROWS):  # bounded float64 temporaries
            rows = slice(start, start + BLOCK_ROWS)
            codes = self._tcodes[rows]
            a, s1 = self._shift_train[rows], self._train_sums(rows)
            s2, co = self._acc[0, rows], self._acc[1, rows]
            m2_d = s2 - s1 * s1 / k
            flat = zero_variance(m2_d, s2 + a * (2.0 * s1 + k * a)) | flat_q[codes]
            r = (co - s1 * mean_q[codes]) / np.sqrt(np.where(flat, 1.0, m2_d * m2_q[codes]))
            lost = ~np.isfinite(r)
            if lost.any():  # the losses were checked finite: the float64 sums overflowed
                where = np.flatnonzero(lost)
                raise overflow_error(start + where,
                                     float(np.abs(self._prev_train[rows][where]).max()))
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

