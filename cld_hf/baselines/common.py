"""What every baseline shares: the signal registry, input checks, class groups, kNN helpers.

Errors follow scikit-learn's ``check_scalar``: they name the argument, give the offending value
and the bound, and say how to fix it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .._validation import check_int, raise_non_finite
from ..scoring import snapshot_window
from ..selection import check_budgets as check_class_budgets


@dataclass(frozen=True)
class Signal:
    """What the recorder must record for one signal the baselines read.

    Attributes
    ----------
    shape : str
        ``"(N, S)"`` for one value per sample and snapshot, ``"(N, D)"`` / ``"(N, C)"`` for one
        row per sample at the end of training.
    dtype : str
    when : str
        When the recorder takes it.
    how : str
        How to compute it from the model outputs (what to put in the recorder).
    """

    shape: str
    dtype: str
    when: str
    how: str


_SWEEP = "every snapshot, in the same eval-mode sweep that records the loss"
_END = "once, in the eval sweep after the last epoch (the trained proxy)"

SIGNALS: dict[str, Signal] = {
    "correct": Signal("(N, S)", "bool", _SWEEP, "`logits.argmax(-1) == labels`"),
    "true_prob": Signal(
        "(N, S)", "float32", _SWEEP, "`softmax(logits)[arange(N), labels]`"
    ),
    "margin": Signal(
        "(N, S)",
        "float32",
        _SWEEP,
        "`logits[arange(N), labels] - logits.masked_fill(one_hot(labels), -inf).max(-1)` "
        "(AUM's margin, on logits)",
    ),
    "el2n": Signal(
        "(N, S)",
        "float32",
        _SWEEP,
        "`norm(softmax(logits) - one_hot(labels), dim=-1)` "
        "(or `cld_hf.baselines.gradients.el2n_from_probs`)",
    ),
    "loss": Signal("(N, S)", "float32", _SWEEP, "the per-sample loss the recorder already keeps"),
    "grad_projection": Signal(
        "(N, S)",
        "float32",
        _SWEEP + " (needs that snapshot's softmax and penultimate features, not stored)",
        "`cld_hf.baselines.gradients.gradient_projections(probs_t, embeddings_t, labels)` "
        "on the snapshot's softmax and penultimate features",
    ),
    "embeddings": Signal(
        "(N, D)", "float32", _END, "the penultimate features (input of the classifier head)"
    ),
    "probs": Signal("(N, C)", "float32", _END, "`softmax(logits)`"),
}


def missing_signal_error(method: str, signal: str, given) -> ValueError:
    """The error for a method asked for a signal that was not recorded."""
    spec = SIGNALS[signal]
    return ValueError(
        f"Method {method!r} needs the signal {signal!r} ({spec.shape} {spec.dtype}), which was "
        f"not recorded; signals given: {sorted(given)}. Record it {spec.when}: {spec.how}, "
        f"and pass it as signals={{{signal!r}: array, ...}}."
    )


# --------------------------------------------------------------------------------------------
# Arrays
# --------------------------------------------------------------------------------------------


def _raise_non_finite(name: str, arr: np.ndarray) -> None:
    bad = ~np.isfinite(arr)
    rows = np.flatnonzero(bad.reshape(len(arr), -1).any(axis=1)) if bad.ndim > 1 else (
        np.flatnonzero(bad))
    raise_non_finite(name, arr, rows, fix=(
        f"A baseline cannot rank them: find why the proxy produced them (e.g. a diverged run), "
        f"record {name} again, or drop these rows first."))


def check_array(
    arr,
    name: str,
    *,
    ndim: int | tuple[int, ...] = 2,
    n: int | None = None,
    layout: str = "(N, S)",
) -> np.ndarray:
    """A finite real array as float64, with the expected number of dimensions and rows."""
    a = np.asarray(arr)
    ndims = (ndim,) if isinstance(ndim, int) else ndim
    if a.ndim not in ndims:
        raise ValueError(
            f"{name} must be a {' or '.join(f'{d}-D' for d in ndims)} array {layout}, got shape "
            f"{a.shape}. Stack one row per sample"
            + (", one column per snapshot (np.stack(snapshots, axis=1))." if "S" in layout else ".")
        )
    real = np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.integer)
    if a.dtype == bool or not real:
        raise TypeError(f"{name} must hold real numbers, got dtype {a.dtype}.")
    if n is not None and a.shape[0] != n:
        raise ValueError(
            f"{name} has {a.shape[0]} rows but the other inputs have {n}; record every signal on "
            f"the same training set, in the same sample order."
        )
    if a.shape[0] == 0:
        raise ValueError(f"{name} is empty (0 samples): there is nothing to score.")
    if a.ndim > 1 and a.shape[1] == 0:
        raise ValueError(f"{name} has shape {a.shape}: at least one column is needed.")
    a = a.astype(np.float64, copy=False)
    if not np.isfinite(a).all():
        _raise_non_finite(name, a)
    return a


def check_bool_trajectory(arr, name: str, n: int | None = None) -> np.ndarray:
    """An (N, S) correctness array as bool (bool, or integers 0/1)."""
    a = np.asarray(arr)
    if a.ndim != 2:
        raise ValueError(
            f"{name} must be a 2-D array (N, S) of booleans, got shape {a.shape}. Stack one "
            f"column per snapshot (np.stack(snapshots, axis=1))."
        )
    if a.dtype != bool:
        if not np.issubdtype(a.dtype, np.integer) or not np.isin(a, (0, 1)).all():
            raise TypeError(
                f"{name} must hold booleans (prediction == label), got dtype {a.dtype}"
                + ("" if not np.issubdtype(a.dtype, np.number) else
                   f" with values {np.unique(a)[:5].tolist()}")
                + ". Record `logits.argmax(-1) == labels`."
            )
        a = a.astype(bool)
    if n is not None and a.shape[0] != n:
        raise ValueError(
            f"{name} has {a.shape[0]} rows but the other inputs have {n}; record every signal on "
            f"the same training set, in the same sample order."
        )
    if a.shape[0] == 0 or a.shape[1] == 0:
        raise ValueError(
            f"{name} has shape {a.shape}: at least one sample and one snapshot are needed."
        )
    return a


def check_probs(probs, name: str = "probs", n: int | None = None, *, ndim=2) -> np.ndarray:
    """Softmax outputs: finite, in [0, 1], rows summing to 1 (to 1e-3)."""
    layout = "(N, C)" if ndim == 2 else "(N, C) or (N, S, C)"
    p = check_array(probs, name, ndim=ndim, n=n, layout=layout)
    sums = p.sum(axis=-1)
    if p.min() < 0.0 or p.max() > 1.0 or np.abs(sums - 1.0).max() > 1e-3:
        raise ValueError(
            f"{name} must hold softmax probabilities (each row in [0, 1], summing to 1); got "
            f"values in [{p.min():.4g}, {p.max():.4g}] and row sums in [{sums.min():.4g}, "
            f"{sums.max():.4g}]. Pass softmax(logits), not the logits."
        )
    return p


def check_unit_interval(a: np.ndarray, name: str) -> np.ndarray:
    if a.min() < 0.0 or a.max() > 1.0:
        raise ValueError(
            f"{name} must hold probabilities in [0, 1], got values in [{a.min():.4g}, "
            f"{a.max():.4g}]. Record softmax(logits)[label], not the logit."
        )
    return a


def columns(num_snapshots: int, first: int | None, name: str = "first") -> np.ndarray:
    """Snapshot columns ``0 .. min(first, S) - 1`` (all when ``first`` is None)."""
    if first is not None:
        check_int(name, first, min_val=1)
    return snapshot_window(num_snapshots, first=first)


def check_window(window: int, used: int, first, num_snapshots: int) -> int:
    check_int("window", window, min_val=2)
    if window > used:
        raise ValueError(
            f"window == {window}, must be <= {used}, the number of snapshots used (S="
            f"{num_snapshots}, first={first}). Record more snapshots or pass window<={used}."
        )
    return int(window)


# --------------------------------------------------------------------------------------------
# Classes and budgets
# --------------------------------------------------------------------------------------------


def class_groups(labels: np.ndarray) -> dict[int, np.ndarray]:
    """``{class: ascending row indices}`` for every class present."""
    order = np.argsort(labels, kind="stable")
    classes, starts = np.unique(labels[order], return_index=True)
    bounds = list(starts[1:]) + [len(labels)]
    return {int(c): order[s:e] for c, s, e in zip(classes, starts, bounds)}


def check_budgets(budgets, labels: np.ndarray) -> list[tuple[int, np.ndarray, int]]:
    """Validate ``{class: k_c}`` against ``labels`` (with :func:`cld_hf.selection.check_budgets`).

    Returns ``[(class, row indices of the class (ascending), k_c), ...]`` for every class with
    ``k_c > 0``, in class order. Classes not named in ``budgets`` get 0.
    """
    classes, _, k_of_class = check_class_budgets(budgets, labels)
    groups = class_groups(labels)
    return [(int(c), groups[int(c)], int(k)) for c, k in zip(classes, k_of_class) if k > 0]


def order_by_score(scores: np.ndarray) -> np.ndarray:
    """Positions sorted by score descending, ties to the lower position (stable)."""
    return np.lexsort((np.arange(len(scores)), -scores))


def hard_prune_pool(idx: np.ndarray, hardness: np.ndarray, k: int, hard_prune: float):
    """Drop the ``hard_prune`` share of a class's hardest samples (highest ``hardness``).

    At most ``n_c - k`` are dropped so that the class budget can always be met. Returns the kept
    row indices (ascending) and their hardness.
    """
    n_c = len(idx)
    drop = min(int(hard_prune * n_c), n_c - k)
    if drop <= 0:
        return idx, hardness
    keep = np.sort(order_by_score(hardness)[drop:])
    return idx[keep], hardness[keep]


def neighbors_without_self(x: np.ndarray, n_neighbors: int):
    """k nearest neighbours of each row among the other rows (scikit-learn), self removed.

    Returns ``(distances, indices)`` of shape ``(n, m)`` with ``m = min(n_neighbors, n - 1)``.
    A duplicate of a row may be returned as its neighbour at distance 0; the row itself is not.
    """
    from sklearn.neighbors import NearestNeighbors

    n = len(x)
    m = min(n_neighbors, n - 1)
    if m <= 0:
        return np.zeros((n, 0)), np.zeros((n, 0), dtype=np.int64)
    dist, ind = NearestNeighbors(n_neighbors=m + 1).fit(x).kneighbors(x)
    is_self = ind == np.arange(n)[:, None]
    no_self = ~is_self.any(axis=1)
    is_self[no_self, -1] = True  # self hidden among duplicates: drop the farthest instead
    keep = ~is_self
    return dist[keep].reshape(n, m), ind[keep].reshape(n, m)
