"""Baselines from the trained proxy's penultimate features: Herding, Moderate, k-Center greedy,
GraphCut, D2-Pruning and CAL.

All of them work inside each class (the paper's class-balanced protocol), so the memory of the
pairwise methods is bounded by the largest class, not by N. Herding, k-Center greedy, GraphCut
and D2-Pruning are greedy selections: they return the selected row indices directly and respect
the class budgets exactly. Moderate and CAL are scorers (float32, **higher kept first**) for
:func:`cld_hf.select_top_per_class`.

NumPy, and SciPy's sparse matrices for D2-Pruning and CAL (``pip install scipy``; no
scikit-learn). The kNN graphs of D2-Pruning and CAL are exact Euclidean neighbours within the
class (:func:`~cld_hf.baselines.common.neighbors_without_self`: one BLAS Gram block per group of
rows, then exact distances for the candidates). The greedy methods need distances or
similarities to one new point per step; those are one NumPy line each. The features are read
one class at a time (float64 per class), so a float32 ``(N, D)`` array is never copied whole.
"""

from __future__ import annotations

import numpy as np

from .._validation import check_bool, check_choice, check_float, check_int, check_labels
from .common import (
    check_array,
    check_budgets,
    check_probs,
    class_groups,
    csr_matrix,
    hard_prune_pool,
    neighbors_without_self,
)

__all__ = [
    "herding_select",
    "moderate_scores",
    "kcenter_select",
    "graphcut_select",
    "d2_select",
    "cal_scores",
]

# Rows of a kernel block computed at once (GraphCut column sums): bounds temporary memory.
_CHUNK_ROWS = 2048


def _embeddings(embeddings, n: int | None = None) -> np.ndarray:
    """The features as given (float32 stays float32): callers take one class at a time."""
    return check_array(embeddings, "embeddings", ndim=2, n=n, layout="(N, D)", dtype=None)


def _rows(x: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Rows ``idx`` of ``x`` in float64."""
    return np.asarray(x[idx], dtype=np.float64)


def _finish(chosen: list) -> np.ndarray:
    if not chosen:
        return np.zeros(0, dtype=np.int64)
    return np.sort(np.concatenate(chosen)).astype(np.int64)


# --------------------------------------------------------------------------------------------
# Herding
# --------------------------------------------------------------------------------------------


def herding_select(labels, budgets: dict, embeddings, *, reference: str = "paper",
                   seed: int = 0) -> np.ndarray:
    """Herding (Welling, ICML 2009; Chen et al., UAI 2010), per class: greedy mean matching.

    At step ``t`` the sample added is the one that brings the mean of the selected features
    closest to the class mean: ``argmin_x || t * mu - sum_{s in S} h_s - h_x ||``: greedy mean
    matching with the linear kernel on the proxy's features, the rule DeepCore's ``Herding``
    intends. Seed E.1.1 writes Welling's update ``argmax_z <w_{t-1}, phi(z)>`` with
    ``w_{t-1} = t * mu - sum_S phi``; the distance form is ``argmax_z 2 <w_{t-1}, phi(z)> -
    ||phi(z)||^2``, the same choice whenever ``||phi(z)||`` is constant (normalised features,
    or Chen et al.'s kernel herding with an RBF kernel).

    Kind: a **greedy selection** (deterministic; ties go to the lower index). Cost per class
    ``O(n_c * k_c * D)``, memory ``O(n_c * D)``.

    Parameters
    ----------
    labels : int array of shape (N,)
    budgets : dict
        ``{class: k_c}`` from :func:`cld_hf.class_budgets`; respected exactly.
    embeddings : float array of shape (N, D)
        Penultimate features of the trained proxy (signal ``embeddings``).
    reference : {"paper", "deepcore"}, default "paper"
        ``"paper"``: the argmin above (the herding rule). ``"deepcore"``: DeepCore's released
        ``Herding.herding``, which takes ``torch.argmax`` of that distance, i.e. the sample
        **farthest** from the target at every step (a known bug of that code). The paper's
        baselines come from DeepCore, so its Herding column (below Random at most sizes, e.g.
        19.5% against 32.8% at 10% of CIFAR-100) most likely reflects this bug.
    seed : int, default 0
        Unused (herding is deterministic); accepted so that every selector has the same call.

    Returns
    -------
    numpy.ndarray of int64: the selected row indices, ascending.

    Examples
    --------
    >>> emb = [[3.0], [10.0], [-7.2], [1.8], [2.4]]   # class mean 2.0
    >>> herding_select([0] * 5, {0: 1}, emb).tolist()   # the closest to the mean
    [3]
    >>> herding_select([0] * 5, {0: 4}, emb).tolist()   # -7.2 restores the mean, 10 would not
    [0, 2, 3, 4]
    >>> herding_select([0] * 5, {0: 1}, emb, reference="deepcore").tolist()   # the farthest
    [2]
    """
    x = _embeddings(embeddings)
    lab = check_labels(labels, "labels", len(x), against="the signals")
    check_choice("reference", reference, ("paper", "deepcore"))
    sign = 1.0 if reference == "paper" else -1.0
    chosen = []
    for _, idx, k in check_budgets(budgets, lab):
        xc = _rows(x, idx)
        sq = np.einsum("ij,ij->i", xc, xc)
        mu = xc.mean(axis=0)
        total = np.zeros(xc.shape[1])
        free = np.ones(len(idx), dtype=bool)
        picked = np.empty(k, dtype=np.int64)
        for t in range(1, k + 1):
            target = t * mu - total
            obj = sign * (sq - 2.0 * (xc @ target))  # +-(||target - x||^2 - ||target||^2)
            obj[~free] = np.inf
            j = int(np.argmin(obj))
            picked[t - 1] = j
            free[j] = False
            total += xc[j]
        chosen.append(idx[picked])
    return _finish(chosen)


# --------------------------------------------------------------------------------------------
# Moderate
# --------------------------------------------------------------------------------------------


def moderate_scores(embeddings, labels, *, center: str = "median") -> np.ndarray:
    """Moderate coreset (Xia et al., ICLR 2023): keep distances closest to the class median.

    For each class, the distance of every sample to the class centre is computed; the score is
    ``-| d(x) - median_{class}(d) |``, so samples at the median distance come first, and both the
    easy ones near the centre and the far-out outliers come last.

    Direction: **median distance kept first** (higher returned score = closer to the median).

    Parameters
    ----------
    embeddings : float array of shape (N, D)
        Penultimate features of the trained proxy (signal ``embeddings``).
    labels : int array of shape (N,)
    center : {"median", "mean"}, default "median"
        The class centre: the coordinate-wise median of the class's features, as in the
        official Moderate-DS code, or their mean.

    Returns
    -------
    numpy.ndarray of float32, shape (N,).

    Notes
    -----
    The official code keeps, over the whole dataset, the middle band of the *ranked* distances;
    this scorer keeps per class the samples whose distance is nearest to the class median (the
    paper's wording and Appendix E's), which the class budgets then cut.

    Examples
    --------
    >>> emb = [[0.0], [1.0], [2.0], [3.0], [10.0]]       # centre (median) 2.0
    >>> print(moderate_scores(emb, [0] * 5))             # distances 2, 1, 0, 1, 8; median 1
    [-1.  0. -1.  0. -7.]
    """
    x = _embeddings(embeddings)
    lab = check_labels(labels, "labels", len(x), against="the signals")
    check_choice("center", center, ("median", "mean"))
    scores = np.empty(len(x), dtype=np.float64)
    for idx in class_groups(lab).values():
        xc = _rows(x, idx)
        c = np.median(xc, axis=0) if center == "median" else xc.mean(axis=0)
        d = np.linalg.norm(xc - c, axis=1)
        scores[idx] = 0.0 - np.abs(d - np.median(d))  # 0.0 - : no -0.0
    return scores.astype(np.float32)


# --------------------------------------------------------------------------------------------
# k-Center greedy
# --------------------------------------------------------------------------------------------


def _sq_distances_to(x: np.ndarray, sq: np.ndarray, j: int) -> np.ndarray:
    """Squared Euclidean distances of every row of the (centred) ``x`` to row ``j``: one
    matrix-vector product, ``||x_i||^2 + ||x_j||^2 - 2 x_i . x_j``, clipped at 0."""
    return np.maximum(sq + sq[j] - 2.0 * (x @ x[j]), 0.0)


def kcenter_select(labels, budgets: dict, embeddings, *, seed: int = 0) -> np.ndarray:
    """k-Center greedy (Sener & Savarese, ICLR 2018), per class: farthest-first traversal.

    The first centre of each class is drawn at random (``seed``), as in DeepCore's and the
    Google active-learning implementation; each next centre is the sample farthest (Euclidean)
    from all centres chosen so far.

    Kind: a **greedy selection** (ties go to the lower index). Cost per class
    ``O(n_c * k_c * D)``, memory ``O(n_c)``.

    Parameters
    ----------
    labels : int array of shape (N,)
    budgets : dict
        ``{class: k_c}`` from :func:`cld_hf.class_budgets`; respected exactly.
    embeddings : float array of shape (N, D)
        Penultimate features of the trained proxy (signal ``embeddings``).
    seed : int, default 0
        Seeds the first centre of each class.

    Returns
    -------
    numpy.ndarray of int64: the selected row indices, ascending.

    Examples
    --------
    >>> emb = [[0.0], [0.1], [0.2], [5.0], [9.0]]
    >>> sel = kcenter_select([0] * 5, {0: 3}, emb, seed=0)
    >>> sorted(set(sel.tolist()) & {3, 4})                # both far points are centres
    [3, 4]
    """
    x = _embeddings(embeddings)
    lab = check_labels(labels, "labels", len(x), against="the signals")
    check_int("seed", seed, min_val=0)
    rng = np.random.default_rng(seed)
    chosen = []
    for _, idx, k in check_budgets(budgets, lab):
        xc = _rows(x, idx)
        xc -= xc.mean(axis=0)  # distances unchanged, less rounding in the Gram form
        sq = np.einsum("ij,ij->i", xc, xc)
        first = int(rng.integers(len(idx)))
        picked = [first]
        min_d = _sq_distances_to(xc, sq, first)
        free = np.ones(len(idx), dtype=bool)
        free[first] = False
        for _ in range(k - 1):
            j = int(np.argmax(np.where(free, min_d, -1.0)))
            picked.append(j)
            free[j] = False
            np.minimum(min_d, _sq_distances_to(xc, sq, j), out=min_d)
        chosen.append(idx[np.asarray(picked)])
    return _finish(chosen)


# --------------------------------------------------------------------------------------------
# GraphCut
# --------------------------------------------------------------------------------------------


class _Kernel:
    """``s(i, j)`` between the rows of one class, a block of rows or one column at a time.

    Cosine: ``(1 + cos) / 2`` from unit-normalised rows (an all-zero row has cosine 0 with
    everything, as in scikit-learn); RBF: ``exp(-gamma * ||x - y||^2)``.
    """

    def __init__(self, x: np.ndarray, similarity: str, gamma: float | None):
        self.similarity = similarity
        norms = np.linalg.norm(x, axis=1)
        if similarity == "cosine":
            self.u = x / np.where(norms > 0, norms, 1.0)[:, None]
            self.diag = np.where(norms > 0, 1.0, 0.5)
        else:
            self.x = x
            self.sq = norms**2
            self.gamma = 1.0 / x.shape[1] if gamma is None else gamma
            self.diag = np.ones(len(x))

    def block(self, rows: slice) -> np.ndarray:
        if self.similarity == "cosine":
            return 0.5 + 0.5 * (self.u[rows] @ self.u.T)
        d2 = self.sq[rows, None] + self.sq[None, :] - 2.0 * (self.x[rows] @ self.x.T)
        return np.exp(-self.gamma * np.maximum(d2, 0.0))

    def column(self, j: int) -> np.ndarray:
        if self.similarity == "cosine":
            return 0.5 + 0.5 * (self.u @ self.u[j])
        d2 = np.einsum("ij,ij->i", self.x - self.x[j], self.x - self.x[j])
        return np.exp(-self.gamma * d2)


def graphcut_select(
    labels,
    budgets: dict,
    embeddings,
    *,
    lam: float = 2.0,
    similarity: str = "cosine",
    gamma: float | None = None,
    seed: int = 0,
) -> np.ndarray:
    """GraphCut (Iyer et al., ALT 2021), per class: greedy on the generalized graph cut.

    Maximises ``f(A) = lam * sum_{i in V} sum_{j in A} s(i, j) - sum_{j1, j2 in A} s(j1, j2)``
    over subsets ``A`` of the class ``V`` with ``|A| = k_c``, by the standard greedy algorithm:
    the gain of adding ``x`` is ``lam * sum_i s(i, x) - 2 * sum_{j in A} s(j, x) - s(x, x)``.
    The first term rewards representativeness, the second penalises redundancy.

    Kind: a **greedy selection** (deterministic; ties go to the lower index). Cost per class
    ``O(n_c^2 * D)`` for the column sums plus ``O(n_c * k_c * D)`` for the greedy steps; the
    kernel is computed in row blocks and one column per step, so memory is ``O(n_c)`` plus a
    ``2048 x n_c`` block (Appendix E counts ``O(N^2)`` for the full kernel).

    Parameters
    ----------
    labels : int array of shape (N,)
    budgets : dict
        ``{class: k_c}`` from :func:`cld_hf.class_budgets`; respected exactly.
    embeddings : float array of shape (N, D)
        Penultimate features of the trained proxy (signal ``embeddings``), as in Appendix
        E.2.3. DeepCore runs GraphCut on last-layer gradient embeddings instead: pass
        :func:`~cld_hf.baselines.gradients.last_layer_gradients` to reproduce that.
    lam : float, default 2.0
        ``lambda``. The seed's Appendix E.2.3 states ``lambda >= 2`` (the smallest value that
        keeps ``f`` monotone with non-negative similarities); DeepCore, which the paper used for
        its baselines, defaults to 1.0.
    similarity : {"cosine", "rbf"}, default "cosine"
        ``"cosine"`` is ``(1 + cos) / 2``, in ``[0, 1]`` (DeepCore's default metric);
        ``"rbf"`` is ``exp(-gamma * ||x - y||^2)``.
    gamma : float, optional
        RBF width; ``1 / D`` when None (scikit-learn's default). Ignored for cosine.
    seed : int, default 0
        Unused (deterministic); accepted so that every selector has the same call.

    Returns
    -------
    numpy.ndarray of int64: the selected row indices, ascending.

    Examples
    --------
    >>> emb = [[1.0, 0.0], [1.0, 0.01], [0.0, 1.0]]     # two near-duplicates and one other
    >>> graphcut_select([0] * 3, {0: 2}, emb, lam=1.0).tolist()   # not both duplicates
    [1, 2]
    """
    x = _embeddings(embeddings)
    lab = check_labels(labels, "labels", len(x), against="the signals")
    check_float("lam", lam, min_val=0.0, include_min=False)
    check_choice("similarity", similarity, ("cosine", "rbf"))
    if gamma is not None:
        check_float("gamma", gamma, min_val=0.0, include_min=False)
    chosen = []
    for _, idx, k in check_budgets(budgets, lab):
        kernel = _Kernel(_rows(x, idx), similarity, gamma)
        n = len(idx)
        col_sum = np.zeros(n)
        for start in range(0, n, _CHUNK_ROWS):
            col_sum += kernel.block(slice(start, start + _CHUNK_ROWS)).sum(axis=0)
        penalty = np.zeros(n)  # sum over the selected j of s(j, x)
        free = np.ones(n, dtype=bool)
        picked = np.empty(k, dtype=np.int64)
        for t in range(k):
            gain = lam * col_sum - 2.0 * penalty - kernel.diag
            j = int(np.argmax(np.where(free, gain, -np.inf)))
            picked[t] = j
            free[j] = False
            penalty += kernel.column(j)
        chosen.append(idx[picked])
    return _finish(chosen)


# --------------------------------------------------------------------------------------------
# D2-Pruning
# --------------------------------------------------------------------------------------------


def _knn_graph(dist: np.ndarray, ind: np.ndarray, gamma: float):
    """Symmetric kNN graph with edge weights ``exp(-gamma * d)`` (CSR), from one kNN search."""
    n, m = ind.shape
    rows = np.repeat(np.arange(n), m)
    w = csr_matrix((np.exp(-gamma * dist.ravel()), (rows, ind.ravel())), shape=(n, n))
    return w.maximum(w.T).tocsr()  # i ~ j if either is among the other's k nearest


def d2_select(
    labels,
    budgets: dict,
    embeddings,
    scores,
    *,
    n_neighbors: int = 5,
    gamma_forward: float = 1.0,
    gamma_reverse: float = 0.1,
    hard_prune: float = 0.0,
    shift: bool = False,
    seed: int = 0,
) -> np.ndarray:
    """D2-Pruning (Maharana et al., ICLR 2024), per class: message passing on a kNN graph.

    1. Graph: each sample is linked to its ``n_neighbors`` nearest samples of the class
       (exact Euclidean), symmetrised; one kNN search per class serves both passes.
    2. Forward message passing: every node gathers its neighbours' difficulty,
       ``s'(i) = s(i) + sum_{j ~ i} exp(-gamma_forward * d(i, j)) * max(s(j), 1e-7)``.
    3. Reverse message passing (graph sampling): repeatedly take the node with the highest
       ``s'`` and lower its neighbours', ``s'(j) -= exp(-gamma_reverse * d(i, j)) * s'(i)``, so
       that the next picks come from other regions: difficult *and* diverse.

    Kind: a **greedy selection** (deterministic; ties go to the lower index). Cost per class
    ``O(n_c^2 D)`` for the kNN search plus ``O(n_c * n_neighbors + k_c * n_neighbors)``, memory
    ``O(n_c * n_neighbors)``.

    Parameters
    ----------
    labels : int array of shape (N,)
    budgets : dict
        ``{class: k_c}`` from :func:`cld_hf.class_budgets`; respected exactly.
    embeddings : float array of shape (N, D)
        Penultimate features of the trained proxy (signal ``embeddings``).
    scores : float array of shape (N,)
        Difficulty, **higher = harder** (the paper uses forgetting counts,
        :func:`~cld_hf.baselines.dynamics.forgetting_scores`), used as given, as in the D2
        code's ``GraphDensitySampler`` (``graph_mode='sum'``): a node adds its own score to its
        neighbours' scores floored at 1e-7. Negative scores are not shifted: pass
        non-negative ones (e.g. ``forgetting_scores``, ``el2n_scores``).
    n_neighbors : int, default 5
        ``k`` of the kNN graph (the D2 README's CIFAR value).
    gamma_forward : float, default 1.0
        Edge-weight decay of the forward pass (the D2 code uses ``exp(-d)``).
    gamma_reverse : float, default 0.1
        Edge-weight decay of the reverse pass (the README's ``--gamma 0.1``).
    hard_prune : float in [0, 1), default 0.0
        Share of each class's hardest samples dropped first (the D2 code's ``--mis-ratio``,
        borrowed from CCS; its README uses 0.4 at a 10% coreset). At most ``n_c - k_c``.
    shift : bool, default False
        Subtract each class pool's minimum score first (what cld-hf did before, not the D2
        code). Harmless for forgetting counts (minimum 0), but for positive scores such as EL2N
        it lowers a node's own score relative to its neighbours' sum and changes the picks.
    seed : int, default 0
        Unused (deterministic); accepted so that every selector has the same call.

    Returns
    -------
    numpy.ndarray of int64: the selected row indices, ascending.

    Notes
    -----
    The D2 code can also run this sampler inside CCS-style score strata (``--stratas``); that
    combination is not implemented here: the graph sampler runs on the whole class pool. The D2
    code computes the full ``n x n`` distance matrix of the pool; here only the kNN lists.

    Examples
    --------
    >>> emb = [[0.0], [0.1], [0.2], [5.0], [5.1]]
    >>> difficulty = [3.0, 2.9, 2.8, 1.0, 1.1]   # the hard cluster is redundant
    >>> d2_select([0] * 5, {0: 2}, emb, difficulty, n_neighbors=2, gamma_reverse=0.0).tolist()
    [1, 4]
    """
    x = _embeddings(embeddings)
    lab = check_labels(labels, "labels", len(x), against="the signals")
    sc = check_array(scores, "scores", ndim=1, n=len(x), layout="(N,)")
    check_int("n_neighbors", n_neighbors, min_val=1)
    check_float("gamma_forward", gamma_forward, min_val=0.0)
    check_float("gamma_reverse", gamma_reverse, min_val=0.0)
    check_float("hard_prune", hard_prune, min_val=0.0, max_val=1.0, include_max=False)
    check_bool("shift", shift)
    chosen = []
    for _, idx, k in check_budgets(budgets, lab):
        pool, s = hard_prune_pool(idx, sc[idx], k, hard_prune)
        if shift:
            s = s - s.min()
        dist, ind = neighbors_without_self(_rows(x, pool), n_neighbors)
        forward = _knn_graph(dist, ind, gamma_forward)
        density = s + forward @ np.maximum(s, 1e-7)
        reverse = _knn_graph(dist, ind, gamma_reverse)
        indptr, nbrs, weights = reverse.indptr, reverse.indices, reverse.data
        picked = np.empty(k, dtype=np.int64)
        for t in range(k):
            j = int(np.argmax(density))
            picked[t] = j
            lo, hi = indptr[j], indptr[j + 1]
            density[nbrs[lo:hi]] -= weights[lo:hi] * density[j]
            density[j] = -np.inf
        chosen.append(pool[picked])
    return _finish(chosen)


# --------------------------------------------------------------------------------------------
# CAL
# --------------------------------------------------------------------------------------------


def _neighbour_mean(nb: np.ndarray):
    """Sparse ``(n, n)`` matrix averaging each row's ``m`` neighbours: ``M @ v = mean_j v[nb]``."""
    n, m = nb.shape
    return csr_matrix((np.full(n * m, 1.0 / m), nb.ravel(), np.arange(0, n * m + 1, m)),
                      shape=(n, n))


def cal_scores(embeddings, probs, labels, *, n_neighbors: int = 10,
               reference: str = "paper") -> np.ndarray:
    """Contrastive Active Learning (CAL; Margatina et al., EMNLP 2021), per class; keep high.

    ``CAL(x) = 1/k * sum_{j in kNN(x)} KL(p(j) || p(x))``: samples whose prediction disagrees
    with the predictions of their nearest neighbours in feature space (contrastive pairs), the
    CAL paper's score and ranking (the most contrastive first). As in DeepCore's coreset
    version, the neighbours are searched among the samples of the same class (exact
    Euclidean).

    Direction: **high kept first** (most contrastive).

    Parameters
    ----------
    embeddings : float array of shape (N, D)
        Penultimate features of the trained proxy (signal ``embeddings``).
    probs : float array of shape (N, C)
        Final softmax of the trained proxy (signal ``probs``).
    labels : int array of shape (N,)
    n_neighbors : int, default 10
        ``k`` (the CAL paper's value). A class with fewer samples uses all the others; a class
        of one sample scores 0.
    reference : {"paper", "deepcore"}, default "paper"
        ``"deepcore"`` reproduces DeepCore's released ``Cal``: the symmetrised divergence
        ``1/k sum_j [KL(p_x || p_j) + KL(p_j || p_x)] / 2`` ranked **ascending** (it keeps the
        *least* contrastive samples; DeepCore issue #29, open). The returned score is then the
        negated divergence, so that higher is still kept first. The paper's baselines come from
        DeepCore, so its CAL column most likely keeps the least contrastive samples.

    Returns
    -------
    numpy.ndarray of float32, shape (N,).

    Notes
    -----
    DeepCore also searches the neighbours in the features of an ImageNet-pretrained ResNet-18
    (inputs resized to 224), not in the proxy's; pass such features as ``embeddings`` to match
    that too. Probabilities are clipped at 1e-12 inside the logarithms. Cost per class
    ``O(n_c^2 D)`` for the kNN search and ``O(n_c k C)`` for the divergences, memory
    ``O(n_c C)``.

    Examples
    --------
    >>> emb = [[0.0], [0.1], [0.2]]
    >>> probs = [[0.9, 0.1], [0.9, 0.1], [0.2, 0.8]]    # the third disagrees with its neighbours
    >>> s = cal_scores(emb, probs, [0, 0, 0], n_neighbors=2)
    >>> int(np.argmax(s))
    2
    >>> int(np.argmax(cal_scores(emb, probs, [0, 0, 0], n_neighbors=2, reference="deepcore")))
    0
    """
    x = _embeddings(embeddings)
    p = check_probs(probs, "probs", n=len(x))
    lab = check_labels(labels, "labels", len(x), against="the signals")
    check_int("n_neighbors", n_neighbors, min_val=1)
    check_choice("reference", reference, ("paper", "deepcore"))
    scores = np.zeros(len(x), dtype=np.float64)
    for idx in class_groups(lab).values():
        if len(idx) < 2:
            continue
        _, nb = neighbors_without_self(_rows(x, idx), n_neighbors)
        pc = _rows(p, idx)
        logp = np.log(np.clip(pc, 1e-12, 1.0))
        neg_entropy = np.einsum("ij,ij->i", pc, logp)
        mean_nb = _neighbour_mean(nb)  # sparse (n_c, n_c): 1/m at each neighbour
        # mean_j KL(p_j || p_i) = mean_j sum_c p_j log p_j - sum_c (mean_j p_j) log p_i
        kl_in = neg_entropy[nb].mean(axis=1) - np.einsum("ij,ij->i", mean_nb @ pc, logp)
        if reference == "paper":
            scores[idx] = kl_in
            continue
        logp_nb = mean_nb @ logp
        # mean_j KL(p_i || p_j) = sum_c p_i log p_i - sum_c p_i (mean_j log p_j)
        kl_out = neg_entropy - np.einsum("ij,ij->i", pc, logp_nb)
        scores[idx] = 0.0 - 0.5 * (kl_in + kl_out)
    return scores.astype(np.float32)
