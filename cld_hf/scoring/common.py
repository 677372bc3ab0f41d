"""What batch and streaming CLD share: windows, label codes, the zero-variance rule, the
missing-class policy, the query-spread weights, the per-class summary. NumPy only."""

from __future__ import annotations

import logging
from typing import Literal

import numpy as np

from .._validation import (
    MAX_NAMED,
    check_choice,
    check_labels,
    raise_non_finite,
)

logger = logging.getLogger(__name__)

__all__ = ["snapshot_window", "class_score_summary"]



MissingQueryClass = Literal["error", "global"]
Normalize = Literal["none", "query_spread"]
NORMALIZE = ("none", "query_spread")

# std <= ZERO_VAR_REL * rms counts as zero variance (see the module docstring).
ZERO_VAR_REL = 1e-10
# Rows per chunk of the batch scorer: the chunk, its float32 differences and the gathered class
# trajectories (3 x 1024 x S x 4 bytes, ~1 MB at S = 90) stay in a core's L2 cache.
DEFAULT_CHUNK_ROWS = 1024
# The one-pass float32 result of a row is kept when m2 > FAST_MIN_CENTRED * s2 (see "Precision").
FAST_MIN_CENTRED = 0.5
# ... and when s2 is well inside the float32 normal range.
_FAST_MIN_S2 = 1e-30
# Rows whose per-row statistics are finished (float64) together.
BLOCK_ROWS = 65536
# A block where more than this fraction of rows needs float64 switches the next blocks to the
# float64 formula; they switch back when the float32 kernel would keep this fraction again.
_SWITCH_TO_FLOAT64 = 0.5
SWITCH_BACK = 0.9
# Rows per chunk of a StreamingCLD update (its float64 temporaries stay in cache).
STREAM_CHUNK_ROWS = 16384


NON_FINITE_FIX = ("A diverged loss cannot be scored: find why these samples have non-finite "
                   "losses (e.g. lower the learning rate, clip logits) and record again.")


def raise_non_finite_losses(name: str, arr: np.ndarray, bad_rows, snapshot=None) -> None:
    raise_non_finite(name, arr, bad_rows, snapshot=snapshot, fix=NON_FINITE_FIX)


MIN_USEFUL_DIFFERENCES = 5
"""Below this many loss differences, CLD scores take few distinct values (2 differences: every
score is -1, 0 or +1), and :func:`warn_few_differences` says so."""


def warn_few_differences(num_differences: int) -> None:
    """Log a warning when ``num_differences`` < :data:`MIN_USEFUL_DIFFERENCES`.

    Examples
    --------
    >>> warn_few_differences(10)  # enough: nothing logged
    """
    if num_differences < MIN_USEFUL_DIFFERENCES:
        logger.warning(
            "CLD scores from %d loss differences take few distinct values (with 2, every score "
            "is -1, 0 or +1), so the ranking is mostly ties; record at least %d differences "
            "(%d snapshots) for a useful ranking.", num_differences, MIN_USEFUL_DIFFERENCES,
            MIN_USEFUL_DIFFERENCES + 1)


def overflow_error(rows, largest: float) -> ValueError:
    """The error of the streaming scorer when float64 sums of the differences overflow.

    Examples
    --------
    >>> str(overflow_error([3], 1e200)).split(";")[0]
    'The float64 sums of the loss differences of training rows [3] overflowed (|loss| up to 1e+200)'
    """
    rows = [int(r) for r in rows]
    shown = rows[:MAX_NAMED]
    return ValueError(
        f"The float64 sums of the loss differences of training rows {shown}"
        f"{' (first ' + str(MAX_NAMED) + ' of ' + str(len(rows)) + ')' if len(rows) > MAX_NAMED else ''}"
        f" overflowed (|loss| up to {largest:.3g}); CLD does not depend on the scale of the "
        f"losses: divide them all by one constant (e.g. their largest value) and score again, or "
        f"use cld_scores, which rescales such rows itself.")


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


def encode_labels(train_labels: np.ndarray, query_labels: np.ndarray):
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


def zero_variance(m2: np.ndarray, sumsq: np.ndarray) -> np.ndarray:
    """True where sum of squared deviations ``m2`` is zero relative to the sum of squares."""
    return m2 <= (ZERO_VAR_REL**2) * sumsq


def fill_missing_classes(
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


def check_policy(missing_query_class: str) -> None:
    check_choice("missing_query_class", missing_query_class, ("error", "global"))


def check_normalize(normalize: str) -> str:
    return check_choice("normalize", normalize, NORMALIZE)


def normalise_class_trajectories(traj: np.ndarray) -> np.ndarray:
    """Centre each class trajectory over time and scale it to unit norm; zero-variance rows -> 0."""
    centred = traj - traj.mean(axis=1, keepdims=True)
    m2 = np.einsum("ij,ij->i", centred, centred)
    sumsq = np.einsum("ij,ij->i", traj, traj)
    flat = zero_variance(m2, sumsq)
    norm = np.sqrt(np.where(flat, 1.0, m2))
    out = centred / norm[:, None]
    out[flat] = 0.0
    return out


def query_spread_weights(query_differences: np.ndarray) -> np.ndarray:
    """``1 / spread`` of the query loss differences at each step (0 where the spread is zero).

    ``query_differences`` is ``(Q, T)`` (one step per column) or ``(Q,)`` (one step). The spread is
    the population standard deviation over the query samples; it counts as zero by the rule of the
    module docstring (std <= 1e-10 * rms: every query loss moved by the same amount).
    """
    dq = query_differences
    centred = dq - dq.mean(axis=0)
    m2 = np.einsum("i...,i...->...", centred, centred)
    sumsq = np.einsum("i...,i...->...", dq, dq)
    flat = zero_variance(m2, sumsq)
    spread = np.sqrt(np.where(flat, 1.0, m2) / dq.shape[0])
    return np.where(flat, 0.0, 1.0 / spread)



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


def format_score_summary(summary: dict, class_names=None, *, max_rows: int = 20,
                         header: str = "class", max_name: int = 24) -> str:
    """A compact per-class table of :func:`class_score_summary` (class names when given; the
    classes with the lowest and highest mean when there are more than ``max_rows``).
    ``header="group"`` for groups. The name column is as wide as the longest name shown, up to
    ``max_name`` characters (longer names are cut with ``...``).

    Examples
    --------
    >>> print(format_score_summary({0: {"count": 2, "mean": 0.5, "std": 0.1, "min": 0.4,
    ...                                 "max": 0.6}}, ["cat"]))
    class  count    mean     std     min     max
    cat        2  0.5000  0.1000  0.4000  0.6000
    >>> print(format_score_summary({0: {"count": 1, "mean": 0.0, "std": 0.0, "min": 0.0,
    ...                                 "max": 0.0}}, ["aquarium_fish"]).splitlines()[1])
    aquarium_fish      1  0.0000  0.0000  0.0000  0.0000
    """
    items = list(summary.items())
    if len(items) > max_rows:
        by_mean = sorted(items, key=lambda kv: kv[1]["mean"])
        half = max_rows // 2
        items = by_mean[:half] + [None] + by_mean[-half:]

    def name_of(c) -> str:
        known = class_names is not None and 0 <= c < len(class_names)
        name = str(class_names[c]) if known else str(c)
        return name if len(name) <= max_name else name[: max_name - 3] + "..."

    names = {item[0]: name_of(item[0]) for item in items if item is not None}
    width = max([len(header), 3, *map(len, names.values())])
    lines = [f"{header:<{width}} {'count':>5} {'mean':>7} {'std':>7} {'min':>7} {'max':>7}"]
    for item in items:
        if item is None:
            plural = f"{header}es" if header.endswith("s") else f"{header}s"
            lines.append(f"{'...':<{width}} ({len(summary) - 2 * (max_rows // 2)} more {plural})")
            continue
        c, s = item
        lines.append(f"{names[c]:<{width}} {s['count']:>5} {s['mean']:>7.4f} {s['std']:>7.4f} "
                     f"{s['min']:>7.4f} {s['max']:>7.4f}")
    return "\n".join(lines)
