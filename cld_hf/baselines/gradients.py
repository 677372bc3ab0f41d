"""Baselines from last-layer gradients: GraNd, CRAIG, GLISTER, and the gradient helpers they use.

For cross-entropy on a linear head ``z = W h + b``, the gradient of a sample's loss with respect
to ``(W, b)`` is ``g = (p - y) ⊗ [h, 1]``, where ``p`` is the softmax, ``y`` the one-hot label and
``h`` the penultimate features. It needs no backward pass, and its norm factorises:
``||g|| = ||p - y|| * sqrt(||h||^2 + 1)``; inner products factorise too:
``<g_i, g_j> = <p_i - y_i, p_j - y_j> * (<h_i, h_j> + 1)``, so pairwise distances between
gradients never materialise the ``C * (D + 1)``-dimensional vectors.

GraNd is a scorer (float32, **higher kept first**); CRAIG and GLISTER are greedy selections that
return row indices per class. TDDS, which reads the same projections, is in :mod:`.tdds`.

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
    class_groups,
    row_chunks,
)

__all__ = [
    "el2n_from_probs",
    "last_layer_gradients",
    "gradient_norms",
    "gradient_projections",
    "grand_scores",
    "craig_select",
    "glister_select",
]


def _check_label_range(lab: np.ndarray, num_classes: int, name: str = "labels") -> None:
    if len(lab) and (lab.min() < 0 or lab.max() >= num_classes):
        raise ValueError(
            f"{name} must be class indices in [0, {num_classes - 1}] (probs has {num_classes} "
            f"columns), got values in [{lab.min()}, {lab.max()}]. Map labels to 0..C-1 in the "
            f"order of the model's outputs."
        )


def _residuals(p: np.ndarray, lab: np.ndarray, rows=slice(None)) -> np.ndarray:
    """``p[rows] - onehot(labels[rows])`` in float64, for ``p`` of shape (N, C) or (N, S, C).

    Only the rows asked for are copied, so callers go one class or one chunk at a time and
    never hold a float64 copy of an ``(N, C)`` array.
    """
    e = np.array(p[rows], dtype=np.float64)
    y = lab[rows]
    if e.ndim == 2:
        e[np.arange(len(y)), y] -= 1.0
    else:
        e[np.arange(len(y)), :, y] -= 1.0
    return e


def _with_bias(h: np.ndarray) -> np.ndarray:
    """``[h, 1]`` in float64 (the head's input with the bias column)."""
    h = np.asarray(h, dtype=np.float64)
    return np.concatenate([h, np.ones(h.shape[:-1] + (1,))], axis=-1)


def _inputs(probs, embeddings, labels, *, ndim=2, names=("probs", "embeddings", "labels")):
    p = check_probs(probs, names[0], ndim=ndim)
    layout = "(N, D)" if ndim == 2 else "(N, D) or (N, S, D)"
    h = check_array(embeddings, names[1], ndim=ndim, n=len(p), layout=layout, dtype=None)
    lab = check_labels(labels, names[2], len(p), against="the signals")
    _check_label_range(lab, p.shape[-1], names[2])
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
    _check_label_range(lab, p.shape[1])
    out = np.empty(len(p), dtype=np.float32)
    for rows in row_chunks(len(p), p.shape[1]):
        out[rows] = np.linalg.norm(_residuals(p, lab, rows), axis=1)
    return out


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
    width = p.shape[1] + h.shape[1] if form == "concat" else p.shape[1] * (h.shape[1] + 1)
    out = np.empty((len(p), width), dtype=np.float32)
    for rows in row_chunks(len(p), width):
        e = _residuals(p, lab, rows)
        if form == "concat":
            out[rows] = np.hstack([e, h[rows]])
        else:
            out[rows] = (e[:, :, None] * _with_bias(h[rows])[:, None, :]).reshape(len(e), -1)
    return out


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
    out = np.empty(p.shape[:-1], dtype=np.float32)
    for rows in row_chunks(len(p), int(np.prod(p.shape[1:]))):
        e = _residuals(p, lab, rows)
        hr = np.asarray(h[rows], dtype=np.float64)
        out[rows] = np.linalg.norm(e, axis=-1) * np.sqrt(np.einsum("...d,...d->...", hr, hr) + 1.0)
    return out


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
    chunks = row_chunks(len(p), p.shape[1] + h.shape[1])
    mean = np.zeros((p.shape[1], h.shape[1] + 1))  # G = E^T A / N, (C, D + 1)
    for rows in chunks:
        mean += _residuals(p, lab, rows).T @ _with_bias(h[rows])
    mean /= len(p)
    norm = np.linalg.norm(mean)
    out = np.zeros(len(p), dtype=np.float32)
    if norm == 0.0:
        return out
    for rows in chunks:
        a = _with_bias(h[rows])
        out[rows] = np.einsum("ij,ij->i", _residuals(p, lab, rows) @ mean, a) / norm
    return out


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
    chosen = []
    for _, idx, k in check_budgets(budgets, lab):
        hc = np.asarray(h[idx], dtype=np.float64)
        d = np.sqrt(_pairwise_sq_dist(_residuals(p, lab, idx), hc, form))
        sim = d.max() - d
        chosen.append(idx[_facility_location_greedy(sim, k)])
    if not chosen:
        return np.zeros(0, dtype=np.int64)
    return np.sort(np.concatenate(chosen)).astype(np.int64)


def _query_residuals(z: np.ndarray, yq: np.ndarray) -> np.ndarray:
    """``softmax(z) - onehot(yq)`` in float64 (rows of ``z`` may hold ``-inf``)."""
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    e /= e.sum(axis=1, keepdims=True)
    e[np.arange(len(yq)), yq] -= 1.0
    return e


def _glister_class(e, a, zq, yq, aq, k, *, eta, step, greedy, update):
    """GLISTER's greedy on one class: positions (into ``e``) of the ``k`` samples selected.

    ``gain(i) = <g_i, G_V(theta_S)> = 1/Q sum_q (e_i . e'_q) (a_i . a_q)`` where ``e'_q`` is the
    query residual at the logits after one SGD step on the selected set,
    ``z'_q = z_q - eta * (1/|S|) sum_{j in S} (a_j . a_q) e_j`` (``step="sum"``: no ``1/|S|``).
    Only ``n x Q`` inner products and a ``Q x C`` running sum are kept: no gradient vector of
    size ``C (D + 1)`` is ever formed.
    """
    kern = a @ aq.T  # (n, Q): a_i . a_q
    q = len(yq)
    eq = _query_residuals(zq, yq)
    gains = np.einsum("iq,iq->i", e @ eq.T, kern) / q
    n = len(e)
    if not update:  # DeepCore's released code: the static Taylor gain, top-k
        return np.lexsort((np.arange(n), -gains))[:k]
    moved = np.zeros_like(zq)  # sum_{j in S} (a_j . a_q) e_j, (Q, C)

    def after(t: int) -> np.ndarray:
        lr = eta / t if step == "mean" else eta
        return _query_residuals(zq - lr * moved, yq)

    picked = []
    if greedy == "naive":
        free = np.ones(n, dtype=bool)
        for t in range(1, k + 1):
            j = int(np.argmax(np.where(free, gains, -np.inf)))
            picked.append(j)
            free[j] = False
            moved += kern[j][:, None] * e[j][None, :]
            eq = after(t)
            gains = np.einsum("iq,iq->i", e @ eq.T, kern) / q
        return np.asarray(picked, dtype=np.int64)
    heap = [(-float(g), i, 0) for i, g in enumerate(gains)]
    heapq.heapify(heap)
    while len(picked) < k:
        neg, i, stamp = heapq.heappop(heap)
        if stamp == len(picked):
            picked.append(i)
            moved += kern[i][:, None] * e[i][None, :]
            eq = after(len(picked))
        else:
            gain = float((e[i] @ eq.T) @ kern[i]) / q
            heapq.heappush(heap, (-gain, i, len(picked)))
    return np.asarray(picked, dtype=np.int64)


def glister_select(
    labels,
    budgets: dict,
    probs,
    embeddings,
    query_probs,
    query_embeddings,
    query_labels,
    *,
    eta: float = 0.1,
    step: str = "mean",
    greedy: str = "lazy",
    query: str = "class",
    reference: str = "paper",
    seed: int = 0,
) -> np.ndarray:
    """GLISTER (Killamsetty et al., AAAI 2021) one-shot, as DeepCore runs it, per class.

    GLISTER picks the subset ``S`` whose one-step update lowers the query (validation) loss
    most, with the Taylor approximation ``L_V(theta - eta g_S) ~ L_V(theta) - eta <g_S,
    G_V(theta)>`` solved greedily: each step adds ``argmax_i <g_i, G_V(theta_S)>``, then moves
    the last layer one SGD step on the selected samples' mean gradient, ``theta_S = theta -
    eta * mean_{j in S} g_j``, and recomputes the query gradient ``G_V`` there. The gradients
    are the closed-form last-layer ones, ``g = (p - y) (x) [h, 1]`` (softmax and penultimate
    features of the final proxy, no backward pass), and, as in DeepCore's ``balance=True``,
    each class ``c`` selects its ``k_c`` samples against the query samples of class ``c``.

    Kind: a **greedy selection** (deterministic; ties go to the lower index).

    Parameters
    ----------
    labels : int array of shape (N,)
    budgets : dict
        ``{class: k_c}`` from :func:`cld_hf.class_budgets`; respected exactly.
    probs, embeddings : float arrays of shape (N, C) and (N, D)
        Final softmax and penultimate features of the training samples (signals ``probs``,
        ``embeddings``).
    query_probs, query_embeddings : float arrays of shape (Q, C) and (Q, D)
        The same for the query samples (signals ``query_probs``, ``query_embeddings``).
    query_labels : int array of shape (Q,)
        The query samples' classes (signal ``query_labels``).
    eta : float >= 0, default 0.1
        Step of the one-step update (DeepCore: ``--lr``, default 0.1).
    step : {"mean", "sum"}, default "mean"
        The update moves by the **mean** of the selected gradients (DeepCore) or by their sum
        (the CORDS/GLISTER code's ``grads_curr``).
    greedy : {"lazy", "naive"}, default "lazy"
        ``"lazy"``: DeepCore's default ``LazyGreedy`` (re-evaluate the best stale gain until it
        stays best; the objective is not exactly submodular, so this can differ from the plain
        greedy); ``"naive"``: recompute every gain at every step (``O(n_c C Q_c)`` a step).
    query : {"class", "all"}, default "class"
        The query samples of the class itself (DeepCore), or all of them (``O(n_c C Q)`` per
        class: for small query sets).
    reference : {"paper", "deepcore"}, default "paper"
        ``"deepcore"`` reproduces DeepCore's released code, in which the update is never applied:
        ``Glister.finish_run`` passes ``upadate_state=`` (a typo) to ``LazyGreedy.select``, whose
        ``update_state`` stays ``None``, so the selection is the static top-``k_c`` of
        ``<g_i, G_V(theta)>``. The paper's GLISTER column came from DeepCore, so most likely from
        this; ``"paper"`` runs the algorithm of GLISTER and of seed E.2.2.
    seed : int, default 0
        Unused (deterministic); accepted so that every selector has the same call.

    Returns
    -------
    numpy.ndarray of int64: the selected row indices, ascending.

    Notes
    -----
    GLISTER proper (GLISTER-ONLINE, seed E.2.2) replaces the training loop and reselects every
    ``gamma`` epochs; like DeepCore, this selects once, from the final proxy. DeepCore's
    gradients are those of the batch-mean loss (each scaled by ``1 / batch size``, so the last,
    smaller batch of a class weighs more); here every sample's gradient is its own. The query
    logits are recovered as ``log(query_probs)`` (softmax is shift-invariant). Cost per class
    ``O(n_c Q_c (C + D))`` for the gains, then ``O(Q_c C)`` per step and per lazy
    re-evaluation.

    Examples
    --------
    >>> probs = np.array([[0.9, 0.1], [0.6, 0.4], [0.2, 0.8]])       # train, all of class 0
    >>> emb = np.array([[1.0], [1.0], [1.0]])
    >>> q_probs, q_emb = np.array([[0.3, 0.7]]), np.array([[1.0]])    # a misclassified query
    >>> glister_select([0, 0, 0], {0: 1}, probs, emb, q_probs, q_emb, [0]).tolist()
    [2]
    """
    p, h, lab = _inputs(probs, embeddings, labels)
    qp, qh, qlab = _inputs(query_probs, query_embeddings, query_labels,
                           names=("query_probs", "query_embeddings", "query_labels"))
    if qp.shape[1] != p.shape[1] or qh.shape[1] != h.shape[1]:
        raise ValueError(
            f"query_probs and query_embeddings have shapes {qp.shape} and {qh.shape}, but the "
            f"training probs and embeddings have {p.shape[1]} classes and {h.shape[1]} features; "
            f"record both with the same final proxy."
        )
    check_float("eta", eta, min_val=0.0)
    check_choice("step", step, ("mean", "sum"))
    check_choice("greedy", greedy, ("lazy", "naive"))
    check_choice("query", query, ("class", "all"))
    check_choice("reference", reference, ("paper", "deepcore"))
    groups = check_budgets(budgets, lab)
    by_class = class_groups(qlab)
    chosen = []
    for c, idx, k in groups:
        if query == "all":
            qidx = np.arange(len(qlab))
        elif c in by_class:
            qidx = by_class[c]
        else:
            raise ValueError(
                f"class {c} has a budget of {k} but no query sample: query='class' scores it "
                f"against its own query samples. Give every class at least one query sample, or "
                f"pass query='all'."
            )
        with np.errstate(divide="ignore"):
            zq = np.log(np.asarray(qp[qidx], dtype=np.float64))
        pos = _glister_class(
            _residuals(p, lab, idx), _with_bias(h[idx]), zq, qlab[qidx], _with_bias(qh[qidx]),
            k, eta=eta, step=step, greedy=greedy, update=reference == "paper",
        )
        chosen.append(idx[pos])
    if not chosen:
        return np.zeros(0, dtype=np.int64)
    return np.sort(np.concatenate(chosen)).astype(np.int64)
