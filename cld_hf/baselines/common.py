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
        row per sample at the end of training, ``"(N, R)"`` for ``R`` probes per sample,
        ``"(N,)"`` for one value per sample, ``"(Q, ...)"`` for the query samples.
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
_QUERY_END = "once, after the last epoch, in an eval sweep of the query set (CLD's query split)"
_PROBE_END = ("once, after the last epoch, in an extra torch pass over the training set (the "
              "trained proxy)")

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
    "tdds_kl": Signal(
        "(N, S)",
        "float32",
        _SWEEP + " (needs the previous snapshot's softmax: keep one (N, C) buffer by sample "
        "index between snapshots, not all of them)",
        "column t: `(p_t * (log(p_t + 1e-8) - log(p_{t-1} + 1e-8))).abs().sum(-1)` with "
        "`p_t = softmax(logits_t)` (the TDDS code's per-epoch term); column 0 is 0 (no previous "
        "snapshot). `cld_hf.baselines.tdds.tdds_kl_terms(probs_prev, probs_t)` computes it",
    ),
    "embeddings": Signal(
        "(N, D)", "float32", _END, "the penultimate features (input of the classifier head)"
    ),
    "probs": Signal("(N, C)", "float32", _END, "`softmax(logits)`"),
    "query_embeddings": Signal(
        "(Q, D)", "float32", _QUERY_END,
        "the penultimate features of the query samples (input of the classifier head)",
    ),
    "query_probs": Signal(
        "(Q, C)", "float32", _QUERY_END, "`softmax(logits)` of the query samples"
    ),
    "query_labels": Signal(
        "(Q,)", "int64", "known from the query split (the labels CLD's query losses use)",
        "the query samples' class ids, in the order of query_probs and query_embeddings",
    ),
    "curvature": Signal(
        "(N, R)",
        "float32",
        _PROBE_END,
        "for each of R = 10 Rademacher probes v_r (entries +-1), the input-gradient difference "
        "`norm(grad_x CE(f(x + h v_r), y) - grad_x CE(f(x), y))` with h = 1e-3 (model in eval "
        "mode, per-sample CE, gradient w.r.t. the model's input tensor); an (N,) array of "
        "already-averaged scores is accepted too",
    ),
    "boundary_steps": Signal(
        "(N,)",
        "int64",
        _PROBE_END,
        "the number of PGD steps `x <- x + alpha * sign(grad_x CE(f(x), y))` (alpha = 1e-4 on the "
        "normalised input, model in eval mode) after which `f(x).argmax() != y`, 0 if the "
        "proxy already misclassifies x, k_max = 50 if it never flips within k_max steps",
    ),
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


_FINITE_CHUNK = 1 << 22  # elements checked for NaN/inf at once (no N x C temporary)


def _all_finite(a: np.ndarray) -> bool:
    if not np.issubdtype(a.dtype, np.floating):
        return True
    flat = a.reshape(len(a), -1)
    rows = max(1, _FINITE_CHUNK // max(1, flat.shape[1]))
    return all(np.isfinite(flat[i : i + rows]).all() for i in range(0, len(flat), rows))


def check_array(
    arr,
    name: str,
    *,
    ndim: int | tuple[int, ...] = 2,
    n: int | None = None,
    layout: str = "(N, S)",
    dtype=np.float64,
) -> np.ndarray:
    """A finite real array with the expected number of dimensions and rows.

    ``dtype`` is the returned type (float64 by default); ``dtype=None`` keeps a floating input
    as it is (float32 stays float32, no copy) and turns integers into float64: the large
    ``(N, C)`` / ``(N, D)`` arrays are then converted one class or one chunk at a time.
    """
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
    if dtype is not None:
        a = a.astype(dtype, copy=False)
    elif not np.issubdtype(a.dtype, np.floating):
        a = a.astype(np.float64)
    if not _all_finite(a):
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
    """Softmax outputs: finite, in [0, 1], rows summing to 1 (to 1e-3).

    The array keeps its floating dtype (a float32 ``(N, C)`` array is not copied); the checks
    run over row chunks.
    """
    layout = "(N, C)" if ndim == 2 else "(N, C) or (N, S, C)"
    p = check_array(probs, name, ndim=ndim, n=n, layout=layout, dtype=None)
    flat = p.reshape(-1, p.shape[-1])
    rows = max(1, _FINITE_CHUNK // flat.shape[1])
    lo, hi, s_lo, s_hi = np.inf, -np.inf, np.inf, -np.inf
    for i in range(0, len(flat), rows):
        block = flat[i : i + rows]
        sums = block.sum(axis=-1, dtype=np.float64)
        lo, hi = min(lo, float(block.min())), max(hi, float(block.max()))
        s_lo, s_hi = min(s_lo, float(sums.min())), max(s_hi, float(sums.max()))
    if lo < 0.0 or hi > 1.0 or max(abs(s_lo - 1.0), abs(s_hi - 1.0)) > 1e-3:
        raise ValueError(
            f"{name} must hold softmax probabilities (each row in [0, 1], summing to 1); got "
            f"values in [{lo:.4g}, {hi:.4g}] and row sums in [{s_lo:.4g}, "
            f"{s_hi:.4g}]. Pass softmax(logits), not the logits."
        )
    return p


def row_chunks(n: int, width: int, *, elements: int = _FINITE_CHUNK):
    """Slices of about ``elements / width`` rows covering ``range(n)`` (bounded temporaries)."""
    rows = max(1, elements // max(1, width))
    return [slice(i, min(n, i + rows)) for i in range(0, n, rows)]


def check_unit_interval(a: np.ndarray, name: str) -> np.ndarray:
    if a.min() < 0.0 or a.max() > 1.0:
        raise ValueError(
            f"{name} must hold probabilities in [0, 1], got values in [{a.min():.4g}, "
            f"{a.max():.4g}]. Record softmax(logits)[label], not the logit."
        )
    return a


def columns(num_snapshots: int, first: int | None, name: str = "first") -> slice:
    """Snapshot columns ``0 .. min(first, S) - 1`` (all when ``first`` is None), as a slice:
    ``a[:, columns(...)]`` is a view, not a copy of the ``(N, S)`` signal."""
    if first is not None:
        check_int(name, first, min_val=1)
    return slice(0, len(snapshot_window(num_snapshots, first=first)))


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


def hard_prune_global(labels: np.ndarray, hardness: np.ndarray, budgets: dict,
                      hard_prune: float) -> np.ndarray:
    """Drop the ``hard_prune`` share of the **whole set**'s hardest samples (CCS's global prune).

    ``int(hard_prune * N)`` samples are dropped in decreasing ``hardness`` (ties: the lower
    index first, as a stable sort), as the CCS code's ``mislabel_mask`` does, except that a class
    never drops below its budget: once a class has dropped ``n_c - k_c`` samples, its next hard
    ones are kept and the drop moves on to the next hardest samples of other classes. Returns a
    boolean mask of the kept samples. O(N log N).
    """
    n = len(labels)
    target = int(hard_prune * n)
    keep = np.ones(n, dtype=bool)
    if target <= 0:
        return keep
    classes, counts, k_of_class = check_class_budgets(budgets, labels)
    codes = np.searchsorted(classes, labels)
    cap = counts - k_of_class  # how many each class may drop
    order = order_by_score(hardness)  # hardest first
    # rank of each sample among the hardest of its class, in the global order
    by_class = np.lexsort((np.arange(n), codes[order]))  # positions in `order`, class-major
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rank = np.empty(n, dtype=np.int64)
    rank[by_class] = np.arange(n) - starts[codes[order][by_class]]
    allowed = order[rank < cap[codes[order]]]
    keep[allowed[:target]] = False
    return keep


def strata_bins(scores: np.ndarray, strata: int, lo: float | None = None,
                hi: float | None = None) -> np.ndarray:
    """Equal-width bin of each score over ``[lo, hi]`` (default: the scores' range), ``0 ..
    strata - 1``; the maximum falls in the last bin, a constant score in bin 0."""
    lo = float(scores.min()) if lo is None else lo
    hi = float(scores.max()) if hi is None else hi
    if hi <= lo:
        return np.zeros(len(scores), dtype=np.int64)
    bins = np.floor((scores - lo) / (hi - lo) * strata).astype(np.int64)
    return np.clip(bins, 0, strata - 1)


def allocate_strata(counts, k: int) -> np.ndarray:
    """Share a budget ``k`` over strata of sizes ``counts`` the CCS way, small budgets included.

    CCS's iterative allocation (``bin_allocate`` in the CCS code): the non-empty strata are
    served from the smallest to the largest (ties: lower stratum first), each taking
    ``min(its size, budget left // strata left)``, so a stratum smaller than the share gives all
    its samples and the rest is shared again among the larger ones; any budget left by the
    integer divisions goes to the largest strata first.

    When ``k`` is smaller than the number of non-empty strata, that rule would give 0 to the
    smallest strata and 1 to each of the ``k`` largest (the dense middle of the score range):
    the sparse tails would never be sampled. Instead, ``k`` strata evenly spaced over the
    non-empty ones, in score order, get one sample each: the coreset still covers the whole
    score range. With ``k`` at least the number of non-empty strata the result is exactly CCS's.

    Parameters
    ----------
    counts : int array of shape (strata,)
    k : int
        At most ``counts.sum()``.

    Returns
    -------
    numpy.ndarray of int64, shape (strata,), summing to ``k``.

    Examples
    --------
    >>> allocate_strata([1, 10, 0, 4], 9).tolist()     # 1 gives all; 10 and 4 share the rest
    [1, 4, 0, 4]
    >>> allocate_strata([3, 30, 30, 30, 3], 2).tolist()  # fewer samples than strata: spread
    [0, 1, 0, 1, 0]
    """
    counts = np.asarray(counts, dtype=np.int64)
    budget = np.zeros(len(counts), dtype=np.int64)
    nonempty = np.flatnonzero(counts)
    if k <= 0 or len(nonempty) == 0:
        return budget
    if k < len(nonempty):
        pos = ((np.arange(k) + 0.5) * len(nonempty) / k).astype(np.int64)
        budget[nonempty[pos]] = 1
        return budget
    order = nonempty[np.argsort(counts[nonempty], kind="stable")]
    remaining = k
    for i, s in enumerate(order):
        take = min(int(counts[s]), remaining // (len(order) - i))
        budget[s] = take
        remaining -= take
    for s in order[::-1]:  # integer division can leave a few over: largest strata first
        if remaining == 0:
            break
        extra = min(remaining, int(counts[s] - budget[s]))
        budget[s] += extra
        remaining -= extra
    return budget


def stratified_draw(pool: np.ndarray, bins: np.ndarray, k: int, strata: int,
                    rng: np.random.Generator) -> np.ndarray:
    """``k`` rows of ``pool`` drawn uniformly inside strata (``bins``), budgets from
    :func:`allocate_strata`. O(len(pool) log len(pool))."""
    counts = np.bincount(bins, minlength=strata)
    take = allocate_strata(counts, k)
    order = np.argsort(bins, kind="stable")
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    chosen = [
        rng.choice(pool[order[starts[b] : starts[b] + counts[b]]], size=int(take[b]),
                   replace=False)
        for b in np.flatnonzero(take)
    ]
    return np.concatenate(chosen) if chosen else np.zeros(0, dtype=np.int64)


# --------------------------------------------------------------------------------------------
# Nearest neighbours
# --------------------------------------------------------------------------------------------


def csr_matrix(*args, **kwargs):
    """``scipy.sparse.csr_matrix``, imported when first used, with the install command if
    SciPy is missing (D2-Pruning's kNN graph and CAL's neighbour means need it)."""
    try:
        from scipy.sparse import csr_matrix as csr
    except ImportError as err:  # pragma: no cover - SciPy is installed in the dev setup
        raise ImportError(
            "D2-Pruning and CAL build sparse kNN matrices with SciPy: pip install scipy "
            "(or pip install 'cld-hf[baselines]')."
        ) from err
    return csr(*args, **kwargs)

_KNN_BLOCK = 1 << 22  # elements of the distance block computed at once


def neighbors_without_self(x: np.ndarray, n_neighbors: int):
    """Exact Euclidean k nearest neighbours of each row among the other rows (NumPy).

    The rows are centred (distances do not change, the rounding of the Gram form shrinks), the
    squared distances of a group of rows come from one BLAS Gram block,
    ``||x_i||^2 + ||x_j||^2 - 2 x_i . x_j`` (as scikit-learn's ``euclidean_distances``), the
    ``k`` nearest by ``argpartition`` and they are ordered by (distance, index). The row itself is
    never its own neighbour; a duplicate of it may be, at distance ~0. Cost ``O(n^2 d)``, memory
    ``O(n)`` plus a block of at most ``2**22`` distances: this runs per class, so it is bounded by
    the largest class.

    Returns ``(distances, indices)`` of shape ``(n, m)`` with ``m = min(n_neighbors, n - 1)``,
    each row sorted by distance (ties: lower index).

    Examples
    --------
    >>> d, i = neighbors_without_self(np.array([[0.0], [1.0], [3.0], [3.0]]), 2)
    >>> i.tolist(), d.round(6).tolist()
    ([[1, 2], [0, 2], [3, 1], [2, 1]], [[1.0, 3.0], [1.0, 2.0], [0.0, 2.0], [0.0, 2.0]])
    """
    x = np.asarray(x, dtype=np.float64)
    n = len(x)
    m = min(n_neighbors, n - 1)
    if m <= 0:
        return np.zeros((n, 0)), np.zeros((n, 0), dtype=np.int64)
    x = x - x.mean(axis=0)
    cand = min(m + 2, n - 1)  # a little slack so that ties go to the lower index
    sq = np.einsum("ij,ij->i", x, x)
    dist = np.empty((n, m))
    ind = np.empty((n, m), dtype=np.int64)
    rows = max(1, _KNN_BLOCK // n)
    for start in range(0, n, rows):
        stop = min(n, start + rows)
        local = np.arange(stop - start)
        d2 = sq[start:stop, None] + sq[None, :] - 2.0 * (x[start:stop] @ x.T)
        d2[local, start + local] = np.inf  # never its own neighbour
        if cand < n - 1:
            idx = np.argpartition(d2, cand - 1, axis=1)[:, :cand]
        else:
            idx = np.broadcast_to(np.arange(n), (stop - start, n))
            idx = idx[idx != (start + local)[:, None]].reshape(stop - start, n - 1)
        near = np.maximum(np.take_along_axis(d2, idx, axis=1), 0.0)
        order = np.lexsort((idx, near))[:, :m]
        dist[start:stop] = np.sqrt(np.take_along_axis(near, order, axis=1))
        ind[start:stop] = np.take_along_axis(idx, order, axis=1)
    return dist, ind
