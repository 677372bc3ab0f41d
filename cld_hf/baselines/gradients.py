"""Baselines from last-layer gradients: GraNd, CRAIG, TDDS, and the gradient helpers they use.

For cross-entropy on a linear head ``z = W h + b``, the gradient of a sample's loss with respect
to ``(W, b)`` is ``g = (p - y) ⊗ [h, 1]``, where ``p`` is the softmax, ``y`` the one-hot label and
``h`` the penultimate features. It needs no backward pass, and its norm factorises:
``||g|| = ||p - y|| * sqrt(||h||^2 + 1)``; inner products factorise too:
``<g_i, g_j> = <p_i - y_i, p_j - y_j> * (<h_i, h_j> + 1)``, so pairwise distances between
gradients never materialise the ``C * (D + 1)``-dimensional vectors.

GraNd and TDDS are scorers (float32, **higher kept first**); CRAIG is a greedy selection that
returns row indices per class.

NumPy only.
"""

from __future__ import annotations

import heapq

import numpy as np

from .._validation import check_choice, check_float, check_labels
from .common import (
    check_array,
    check_budgets,
    check_probs,
    check_window,
    columns,
)

__all__ = [
    "el2n_from_probs",
    "last_layer_gradients",
    "gradient_norms",
    "gradient_projections",
    "grand_scores",
    "craig_select",
    "tdds_scores",
]


def _residuals(p: np.ndarray, lab: np.ndarray) -> np.ndarray:
    """``p - onehot(labels)`` for ``p`` of shape (N, C) or (N, S, C)."""
    num_classes = p.shape[-1]
    if lab.min() < 0 or lab.max() >= num_classes:
        raise ValueError(
            f"labels must be class indices in [0, {num_classes - 1}] (probs has {num_classes} "
            f"columns), got values in [{lab.min()}, {lab.max()}]. Map labels to 0..C-1 in the "
            f"order of the model's outputs."
        )
    e = p.copy()
    if e.ndim == 2:
        e[np.arange(len(lab)), lab] -= 1.0
    else:
        e[np.arange(len(lab)), :, lab] -= 1.0
    return e


def _inputs(probs, embeddings, labels, *, ndim=2):
    p = check_probs(probs, "probs", ndim=ndim)
    layout = "(N, D)" if ndim == 2 else "(N, D) or (N, S, D)"
    h = check_array(embeddings, "embeddings", ndim=ndim, n=len(p), layout=layout)
    lab = check_labels(labels, "labels", len(p), against="the signals")
    return p, h, lab


def el2n_from_probs(probs, labels) -> np.ndarray:
    """The EL2N value ``||p - onehot(y)||_2`` of each sample at one snapshot.

    What the recorder stores as the ``el2n`` signal, one column per snapshot.

    Parameters
    ----------
    probs : float array of shape (N, C)
        Softmax outputs.
    labels : int array of shape (N,)

    Returns
    -------
    numpy.ndarray of float32, shape (N,).

    Examples
    --------
    >>> print(el2n_from_probs([[1.0, 0.0], [0.5, 0.5]], [0, 1]).round(4))
    [0.     0.7071]
    """
    p = check_probs(probs, "probs")
    lab = check_labels(labels, "labels", len(p), against="the signals")
    return np.linalg.norm(_residuals(p, lab), axis=1).astype(np.float32)


def last_layer_gradients(probs, embeddings, labels, *, form: str = "outer") -> np.ndarray:
    """Per-sample last-layer gradient embeddings, from the softmax and features (no backward).

    Parameters
    ----------
    probs : float array of shape (N, C)
        Softmax of the proxy (signal ``probs``).
    embeddings : float array of shape (N, D)
        Penultimate features (signal ``embeddings``).
    labels : int array of shape (N,)
    form : {"outer", "concat"}, default "outer"
        ``"outer"``: the exact gradient w.r.t. the head's weight and bias,
        ``(p - y) ⊗ [h, 1]`` flattened to ``C * (D + 1)`` (what DeepCore's CRAIG and GraNd use);
        ``"concat"``: ``[p - y, h]`` of size ``C + D`` (the seed's Appendix E.2.1 form).

    Returns
    -------
    numpy.ndarray of float32, shape (N, C * (D + 1)) or (N, C + D).

    Notes
    -----
    ``"outer"`` needs ``N * C * (D + 1)`` floats: use :func:`gradient_norms` or the pairwise
    forms inside :func:`craig_select` rather than materialising it for large ``C``.

    Examples
    --------
    >>> g = last_layer_gradients([[0.75, 0.25]], [[2.0]], [0])
    >>> g.tolist()     # (p - y) = (-0.25, 0.25), [h, 1] = (2, 1)
    [[-0.5, -0.25, 0.5, 0.25]]
    """
    p, h, lab = _inputs(probs, embeddings, labels)
    check_choice("form", form, ("outer", "concat"))
    e = _residuals(p, lab)
    if form == "concat":
        return np.hstack([e, h]).astype(np.float32)
    a = np.hstack([h, np.ones((len(h), 1))])
    return (e[:, :, None] * a[:, None, :]).reshape(len(p), -1).astype(np.float32)


def gradient_norms(probs, embeddings, labels) -> np.ndarray:
    """Exact norms of the last-layer gradients: ``||p - y|| * sqrt(||h||^2 + 1)``.

    Accepts one snapshot (``probs`` (N, C), ``embeddings`` (N, D)) or several
    (``(N, S, C)`` and ``(N, S, D)``, returning ``(N, S)``).

    Examples
    --------
    >>> print(gradient_norms([[0.75, 0.25]], [[2.0]], [0]).round(4))   # 0.3536 * sqrt(5)
    [0.7906]
    """
    p, h, lab = _inputs(probs, embeddings, labels, ndim=(2, 3))
    if p.ndim != h.ndim or p.shape[:-1] != h.shape[:-1]:
        raise ValueError(
            f"probs has shape {p.shape} but embeddings has {h.shape}; pass both per snapshot "
            f"((N, C) and (N, D)) or both stacked over the same snapshots ((N, S, C), (N, S, D))."
        )
    e = _residuals(p, lab)
    norms = np.linalg.norm(e, axis=-1) * np.sqrt(np.einsum("...d,...d->...", h, h) + 1.0)
    return norms.astype(np.float32)


def gradient_projections(probs, embeddings, labels) -> np.ndarray:
    """Projection of each sample's last-layer gradient on the mean gradient of the snapshot.

    ``proj(x) = <g(x), G> / ||G||`` with ``G = mean_x g(x)`` over the N samples given. This is the
    per-snapshot input of :func:`tdds_scores` (signal ``grad_projection``): call it in each eval
    sweep on that snapshot's softmax and features and store one column per snapshot. With the
    outer-product form, ``G = E^T A / N`` is a ``C x (D + 1)`` matrix and
    ``proj(x) = e_x^T G a_x / ||G||_F``: O(N C D), no per-sample gradient is materialised.

    Parameters
    ----------
    probs : float array of shape (N, C)
    embeddings : float array of shape (N, D)
    labels : int array of shape (N,)

    Returns
    -------
    numpy.ndarray of float32, shape (N,); all zeros if the mean gradient is zero.

    Notes
    -----
    Must be computed on the whole training set at once (the mean is over all N samples): in a
    distributed sweep, gather ``probs`` and ``embeddings`` (or the ``C x (D + 1)`` sums) first.

    Examples
    --------
    >>> probs = [[0.75, 0.25], [0.5, 0.5]]
    >>> emb = [[2.0], [0.0]]
    >>> g = last_layer_gradients(probs, emb, [0, 0]).astype(float)
    >>> mean = g.mean(axis=0)
    >>> bool(np.allclose(gradient_projections(probs, emb, [0, 0]),
    ...                  g @ mean / np.linalg.norm(mean)))
    True
    """
    p, h, lab = _inputs(probs, embeddings, labels)
    e = _residuals(p, lab)
    a = np.hstack([h, np.ones((len(h), 1))])
    mean = e.T @ a / len(p)  # (C, D + 1)
    norm = np.linalg.norm(mean)
    if norm == 0.0:
        return np.zeros(len(p), dtype=np.float32)
    return (np.einsum("ij,ij->i", e @ mean, a) / norm).astype(np.float32)


def grand_scores(probs, embeddings, labels) -> np.ndarray:
    """GraNd (Paul et al., NeurIPS 2021): expected last-layer gradient norm; keep high.

    ``GraNd(x) = mean_t ||g_t(x)||`` with ``||g|| = ||p - y|| * sqrt(||h||^2 + 1)`` exactly for the
    head's weight and bias (:func:`gradient_norms`), averaged over the snapshots given.

    Direction: **high kept first** (large gradient = important early in training).

    Parameters
    ----------
    probs : float array of shape (N, C) or (N, S, C)
        Softmax of the proxy (signal ``probs``), at one or several snapshots.
    embeddings : float array of shape (N, D) or (N, S, D)
        Penultimate features at the same snapshots (signal ``embeddings``).
    labels : int array of shape (N,)

    Returns
    -------
    numpy.ndarray of float32, shape (N,).

    Notes
    -----
    Paul et al. take the full-network gradient norm early in training (epoch ~20) averaged over
    10 initialisations; this is the last-layer closed form on the snapshots the recorder kept
    (the end of training by default), so it costs no backward pass. The seed's Appendix E.1.5
    writes the squared norm; the ranking differs only when averaging several snapshots.

    Examples
    --------
    >>> probs = [[0.9, 0.1], [0.4, 0.6], [0.9, 0.1]]
    >>> emb = [[1.0], [1.0], [3.0]]
    >>> print(grand_scores(probs, emb, [0, 0, 0]).round(4))   # wrong or large features: high
    [0.2    1.2    0.4472]
    """
    norms = gradient_norms(probs, embeddings, labels).astype(np.float64)
    return (norms if norms.ndim == 1 else norms.mean(axis=1)).astype(np.float32)


def _pairwise_sq_dist(e: np.ndarray, h: np.ndarray, form: str) -> np.ndarray:
    """Squared distances between the gradient embeddings of one class (from Gram matrices)."""
    if form == "outer":
        gram = (e @ e.T) * (h @ h.T + 1.0)
    else:
        gram = e @ e.T + h @ h.T
    sq = np.diag(gram).copy()
    d2 = sq[:, None] + sq[None, :] - 2.0 * gram
    np.maximum(d2, 0.0, out=d2)
    np.fill_diagonal(d2, 0.0)
    return d2


def _facility_location_greedy(sim: np.ndarray, k: int) -> np.ndarray:
    """Lazy greedy on ``F(A) = sum_i max_{j in A} sim[i, j]``; equal to the plain greedy.

    Heap entries ``(-upper bound, index, round)``; a popped entry whose bound is from the current
    round is the exact argmax, ties to the lower index (the heap orders equal bounds by index).
    """
    n = sim.shape[0]
    cur = np.zeros(n)
    heap = [(-float(g), j, 0) for j, g in enumerate(sim.sum(axis=0))]  # sim >= 0, cur = 0
    heapq.heapify(heap)
    picked = []
    while len(picked) < k:
        neg, j, stamp = heapq.heappop(heap)
        if stamp == len(picked):
            picked.append(j)
            np.maximum(cur, sim[:, j], out=cur)
        else:
            gain = float(np.maximum(sim[:, j] - cur, 0.0).sum())
            heapq.heappush(heap, (-gain, j, len(picked)))
    return np.asarray(picked, dtype=np.int64)


def craig_select(
    labels,
    budgets: dict,
    probs,
    embeddings,
    *,
    form: str = "outer",
    seed: int = 0,
) -> np.ndarray:
    """CRAIG (Mirzasoleiman et al., ICML 2020), per class: facility location on gradients.

    Maximises ``F(A) = sum_{i in class} max_{j in A} s(i, j)`` with ``s(i, j) = d_max - ||g_i -
    g_j||`` (``d_max`` the largest gradient distance in the class, so ``s >= 0``), where ``g`` are
    the last-layer gradient embeddings; the selected samples' gradients then cover (match) the
    class's. Solved by the (lazy) greedy algorithm, exact w.r.t. the plain greedy.

    Kind: a **greedy selection** (deterministic; ties go to the lower index). Memory
    ``O(n_c^2)`` per class (the distance matrix, from Gram matrices: the gradients are never
    materialised); time ``O(n_c^2 (C + D))`` plus the greedy.

    Parameters
    ----------
    labels : int array of shape (N,)
    budgets : dict
        ``{class: k_c}`` from :func:`cld_hf.class_budgets`; respected exactly.
    probs : float array of shape (N, C)
        Final softmax of the proxy (signal ``probs``).
    embeddings : float array of shape (N, D)
        Penultimate features (signal ``embeddings``).
    form : {"outer", "concat"}, default "outer"
        Gradient embedding, see :func:`last_layer_gradients` (``"outer"`` as in DeepCore).
    seed : int, default 0
        Unused (deterministic); accepted so that every selector has the same call.

    Returns
    -------
    numpy.ndarray of int64: the selected row indices, ascending.

    Notes
    -----
    CRAIG also returns per-sample weights (the size of each medoid's cluster) for weighted
    training, and the paper's version reselects at anchor epochs; here there is one anchor (the
    recorded end of training) and no weights: the coreset is trained like every other one.

    Examples
    --------
    >>> probs = [[0.9, 0.1], [0.9, 0.1], [0.88, 0.12], [0.2, 0.8]]
    >>> emb = [[1.0], [1.0], [1.0], [1.0]]
    >>> craig_select([0] * 4, {0: 2}, probs, emb).tolist()   # one easy medoid, the hard one
    [0, 3]
    """
    p, h, lab = _inputs(probs, embeddings, labels)
    check_choice("form", form, ("outer", "concat"))
    e = _residuals(p, lab)
    chosen = []
    for _, idx, k in check_budgets(budgets, lab):
        d = np.sqrt(_pairwise_sq_dist(e[idx], h[idx], form))
        sim = d.max() - d
        chosen.append(idx[_facility_location_greedy(sim, k)])
    if not chosen:
        return np.zeros(0, dtype=np.int64)
    return np.sort(np.concatenate(chosen)).astype(np.int64)


def tdds_scores(
    grad_projection,
    *,
    window: int = 10,
    decay: float = 0.9,
    first: int | None = None,
) -> np.ndarray:
    """Temporal Dual-Depth Scoring (TDDS; Zhang et al., CVPR 2024); keep high.

    Depth 1: each snapshot's contribution of a sample is the projection of its gradient on the
    epoch's mean gradient (signal ``grad_projection``, from :func:`gradient_projections`).
    Depth 2: over each sliding window of ``J`` snapshots, the variability of those contributions,
    ``v_k = || c_{k..k+J-1} - mean ||_2``, combined by the exponential moving average of the TDDS
    code, ``score = sum_k decay * (1 - decay) ** (K - 1 - k) * v_k`` over the ``K = T - J + 1``
    windows (the latest window weighs most).

    Direction: **high kept first** (samples whose contribution varies most over training).

    Parameters
    ----------
    grad_projection : float array of shape (N, S)
        Per-snapshot gradient projections (signal ``grad_projection``).
    window : int, default 10
        ``J`` (the TDDS code's ``--window_size``).
    decay : float in (0, 1], default 0.9
        The moving-average factor of the TDDS code.
    first : int or None, default None
        ``T``: use only the first ``first`` snapshots (all when None). The TDDS paper tunes
        ``T`` per dataset and pruning rate (e.g. 70 or 90 epochs with ``J = 10``).

    Returns
    -------
    numpy.ndarray of float32, shape (N,).

    Notes
    -----
    The TDDS code approximates the per-epoch contribution by the KL divergence between
    consecutive softmax outputs (which needs the (N, S, C) outputs); this follows the paper's
    definition with the last-layer gradient projection instead, an (N, S) signal.

    Examples
    --------
    >>> proj = [[1.0, 1.0, 1.0], [0.0, 2.0, 0.0]]       # steady vs. varying contribution
    >>> print(tdds_scores(proj, window=2, decay=1.0).round(4))   # only the last window counts
    [0.     1.4142]
    """
    c = check_array(grad_projection, "grad_projection")
    check_float("decay", decay, min_val=0.0, max_val=1.0, include_min=False)
    cols = columns(c.shape[1], first)
    window = check_window(window, len(cols), first, c.shape[1])
    c = c[:, cols]
    n_windows = c.shape[1] - window + 1
    score = np.zeros(len(c))
    for k in range(n_windows):
        w = c[:, k : k + window]
        v = np.linalg.norm(w - w.mean(axis=1, keepdims=True), axis=1)
        score += decay * (1.0 - decay) ** (n_windows - 1 - k) * v
    return score.astype(np.float32)
