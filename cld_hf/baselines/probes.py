"""Baselines from input-space probes of the trained proxy: SloCurv and BoundarySet-CCS.

Both read one value (or a few) per training sample that an extra torch pass computes once, on
the final proxy, after training (declared in :data:`~cld_hf.baselines.common.SIGNALS`):

- ``curvature`` ``(N, R)``: the input-loss curvature probes of SloCurv (Garg & Roy, CVPR 2023;
  seed E.3.1), one column per Hutchinson probe;
- ``boundary_steps`` ``(N,)``: the number of PGD steps that flips the proxy's prediction
  (BoundarySet, Yang et al., ICML 2024; seed E.2.4).

This module is the NumPy side: it turns those arrays into scores and coresets with the same
class budgets as every other method. NumPy only.
"""

from __future__ import annotations

import numpy as np

from .._validation import check_choice, check_float, check_int, check_labels
from .common import check_array, check_budgets, stratified_draw

__all__ = ["slocurv_scores", "boundary_ccs_select"]


def slocurv_scores(curvature, *, form: str = "squared") -> np.ndarray:
    """SloCurv (Garg & Roy, CVPR 2023): input-loss curvature of the final proxy; keep the LOWEST.

    Seed Appendix E.3.1 scores each sample, at the end of proxy training, by

    ``Curv(z) = 1/R * sum_r || grad_z [ l(theta_T, z + h v_r) - l(theta_T, z) ] ||_2^2``

    with ``R`` Rademacher probes ``v_r`` scaled by ``h`` (a Hutchinson estimate of
    ``h^2 * Tr(H_z^2)``, ``H_z`` the Hessian of the loss w.r.t. the input), and retains the
    samples with the **lowest** curvature: low-curvature samples are clean, typical ones.

    Direction: **low curvature kept first**; the returned score is ``-Curv`` (higher = kept).

    Parameters
    ----------
    curvature : float array of shape (N, R) or (N,)
        Signal ``curvature``: column ``r`` is the norm ``|| grad_z l(z + h v_r) - grad_z l(z) ||_2``
        of probe ``r`` (not squared). A 1-D array is taken as already-averaged scores and only
        negated (``form`` is then ignored).
    form : {"squared", "norm"}, default "squared"
        ``"squared"``: the mean of the squared norms (the seed's formula);
        ``"norm"``: the mean of the norms, as the authors' released curvature code does
        (``purdue-nrl/Memorization-Curvature``, ``get_regularized_curvature_for_batch``, from
        the same group; SloCurv's own code is not public). The two rank samples the same way
        with one probe and differ slightly with several.

    Returns
    -------
    numpy.ndarray of float32, shape (N,): ``-Curv``.

    Notes
    -----
    What the torch side computes (once, model in eval mode, per-sample cross-entropy ``l`` on
    the label): for ``r = 1..R`` with ``R = 10``, draw ``v_r`` with i.i.d. entries ``+-1`` of the
    input's shape, and record ``|| grad_x l(f(x + h v_r), y) - grad_x l(f(x), y) ||_2`` with
    ``h = 1e-3`` (the authors' code: ``niter=10``, ``h=1e-3``; it passes ``h=1e-4`` for
    ImageNet). Cost ``3N(R + 1) f`` (seed E.3.1). SLo-Curves also trains the coreset with a
    curvature regulariser; only the selection is reproduced here.

    Examples
    --------
    >>> curv = [[0.1, 0.3], [2.0, 2.0], [0.0, 0.4]]   # per-probe gradient-difference norms
    >>> print(slocurv_scores(curv))                    # -(mean of squares): flat samples first
    [-0.05 -4.   -0.08]
    >>> print(slocurv_scores(curv, form="norm"))       # -(mean of norms)
    [-0.2 -2.  -0.2]
    """
    c = check_array(curvature, "curvature", ndim=(1, 2), layout="(N, R) or (N,)")
    check_choice("form", form, ("squared", "norm"))
    if c.min() < 0.0:
        raise ValueError(
            f"curvature must hold norms (>= 0), got a minimum of {c.min():.4g}. Record "
            f"||grad_x loss(x + h v) - grad_x loss(x)||_2 per probe (see SIGNALS['curvature'])."
        )
    if c.ndim == 1:
        return (0.0 - c).astype(np.float32)
    curv = (c**2).mean(axis=1) if form == "squared" else c.mean(axis=1)
    return (0.0 - curv).astype(np.float32)


def _boundary_steps(steps, n: int, k_max: int) -> np.ndarray:
    a = np.asarray(steps)
    if a.ndim != 1:
        raise ValueError(
            f"boundary_steps must be a 1-D array (N,) of step counts, got shape {a.shape}."
        )
    if a.dtype == bool or not np.issubdtype(a.dtype, np.integer):
        if not (np.issubdtype(a.dtype, np.floating) and np.all(a == np.round(a))):
            raise TypeError(
                f"boundary_steps must hold integer step counts, got dtype {a.dtype}. Record the "
                f"number of PGD steps after which the prediction flips (see "
                f"SIGNALS['boundary_steps'])."
            )
        a = a.astype(np.int64)
    if len(a) != n:
        raise ValueError(
            f"boundary_steps has {len(a)} entries but labels has {n}; record every signal on the "
            f"same training set, in the same sample order."
        )
    if len(a) and (a.min() < 0 or a.max() > k_max):
        raise ValueError(
            f"boundary_steps must lie in [0, k_max] = [0, {k_max}], got values in "
            f"[{a.min()}, {a.max()}]. Pass the k_max the PGD pass was capped at (samples that "
            f"never flipped count k_max)."
        )
    return a.astype(np.int64)


def boundary_ccs_select(
    labels,
    budgets: dict,
    boundary_steps,
    *,
    k_max: int = 50,
    hard_prune: float = 0.0,
    seed: int = 0,
) -> np.ndarray:
    """BoundarySet-CCS (Yang et al., ICML 2024), per class: coverage over distance-to-boundary.

    Seed Appendix E.2.4: the distance of a sample to the decision boundary is the number of PGD
    steps ``d(x) in {0, ..., k_max}`` that flips the final proxy's prediction (``k_max`` when it
    never flips); the samples are partitioned into the ``k_max + 1`` bands ``d = 0 .. k_max`` and
    CCS's coverage-centric allocation shares each class budget over the non-empty bands
    (:func:`~cld_hf.baselines.common.allocate_strata`), drawing uniformly inside each band. Near
    (small ``d``) and far samples are both kept, in proportion to the bands, not to their sizes.

    Kind: a **sampler** (not top-k); every class keeps exactly its budget.

    Parameters
    ----------
    labels : int array of shape (N,)
    budgets : dict
        ``{class: k_c}`` from :func:`cld_hf.class_budgets`; respected exactly.
    boundary_steps : int array of shape (N,)
        Signal ``boundary_steps``, each in ``[0, k_max]``.
    k_max : int, default 50
        The cap of the PGD pass (the seed's ImageNet value, ``K_max = 50``); one band per value.
    hard_prune : float in [0, 1), default 0.0
        Share of each class's samples **closest** to the boundary (smallest ``d``, ``d = 0``
        being misclassified by the proxy) dropped first, CCS's ``beta``; ties are broken at
        random (seeded). The seed's description has no pruning step, hence 0. At most
        ``n_c - k_c`` are dropped.
    seed : int, default 0
        Seeds the tie-breaking and the draws inside the bands.

    Returns
    -------
    numpy.ndarray of int64: the selected row indices, ascending.

    Notes
    -----
    What the torch side computes (once, model in eval mode): ``x_0 = x``;
    ``x_{j+1} = x_j + alpha * sign(grad_x CE(f(x_j), y))``; ``d(x)`` is the first ``j`` with
    ``f(x_j).argmax() != y`` (0 for a sample the proxy already misclassifies), ``k_max`` if
    none up to ``k_max``. Step ``alpha = 1e-4`` on the normalised input with ``k_max = 50``
    (ImageNet-size inputs) or ``alpha = 2e-3`` with ``k_max = 10`` (CIFAR): the values of a
    public reproduction; no official code was found, and the seed gives only ``K_max = 50``.
    Cost ``3 N K_bar f`` with ``K_bar`` the mean number of steps (seed E.2.4). The plain
    BoundarySet (the smallest distances first) is ``select_top_per_class(-d)``.

    Examples
    --------
    >>> labels = [0] * 10
    >>> steps = [0, 1, 1, 1, 1, 1, 1, 1, 5, 9]     # most samples one step from the boundary
    >>> sel = boundary_ccs_select(labels, {0: 4}, steps, k_max=10, seed=0)
    >>> sorted(np.asarray(steps)[sel].tolist())   # one per band, not three from band 1
    [0, 1, 5, 9]
    """
    lab = check_labels(labels)
    check_int("k_max", k_max, min_val=1)
    d = _boundary_steps(boundary_steps, len(lab), k_max)
    check_float("hard_prune", hard_prune, min_val=0.0, max_val=1.0, include_max=False)
    check_int("seed", seed, min_val=0)
    rng = np.random.default_rng(seed)
    chosen = []
    for _, idx, k in check_budgets(budgets, lab):
        drop = min(int(hard_prune * len(idx)), len(idx) - k)
        pool = idx
        if drop > 0:  # the closest to the boundary first, ties at random
            tie = rng.permutation(len(idx))
            order = np.lexsort((tie, d[idx]))
            pool = np.sort(idx[order[drop:]])
        chosen.append(stratified_draw(pool, d[pool], k, k_max + 1, rng))
    if not chosen:
        return np.zeros(0, dtype=np.int64)
    return np.sort(np.concatenate(chosen)).astype(np.int64)
