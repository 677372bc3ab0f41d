"""Baselines from training dynamics: Forgetting, EL2N, AUM (+ CCS), Dyn-Unc, DUAL (+ Beta sampling).

Every scorer reads per-sample signals recorded at ``S`` snapshots (arrays ``(N, S)``, columns in
time order, from the same eval sweep as the loss) and returns float32 scores where **higher is
kept first**, so :func:`cld_hf.select_top_per_class` selects with them. Where a method keeps
*low* values, the scorer returns the negated metric and says so (``aum_scores(...,
keep="low")`` for CCS's difficulty).

:func:`ccs_select` and :func:`dual_beta_select` are samplers, not top-k: they return the selected
row indices directly and respect the same class budgets.

NumPy only.
"""

from __future__ import annotations

import numpy as np

from .._validation import check_choice, check_float, check_int, check_labels
from .common import (
    check_array,
    check_bool_trajectory,
    check_budgets,
    check_unit_interval,
    check_window,
    columns,
    hard_prune_global,
    hard_prune_pool,
    order_by_score,
    strata_bins,
    stratified_draw,
)

__all__ = [
    "forgetting_scores",
    "el2n_scores",
    "aum_scores",
    "ccs_select",
    "dyn_unc_scores",
    "dual_scores",
    "dual_beta_select",
]


def forgetting_scores(correct, *, variant: str = "deepcore") -> np.ndarray:
    """Forgetting events per sample (Toneva et al., ICLR 2019); keep the most forgotten.

    A forgetting event is a transition from correct at snapshot ``t - 1`` to wrong at snapshot
    ``t``. The two variants differ only for samples that are **never** classified correctly:

    - ``"deepcore"`` (default): they have no event and score 0, like never-forgotten samples.
      This is DeepCore's ``Forgetting`` (its counter starts at 0 and only counts correct ->
      wrong transitions), the implementation the paper's baselines come from (seed, Appendix C:
      "For baseline comparisons, we use the DeepCore library"), so Table 2's Forgetting column
      was computed this way.
    - ``"toneva"``: they count as the most forgotten of all (Toneva et al. give them an infinite
      count). They score ``S``, larger than any reachable count (at most ``S // 2``), so the
      scores stay finite and can be binned (CCS, D2-Pruning). On noisy data this keeps the
      never-learned (often mislabelled) samples first: in a side-by-side run at 10%, 90% of the
      coreset was never learned and 73.5% mislabelled, against 2.5% and 6.5% with DeepCore's.

    Direction: **high kept first** (more forgetting events = more informative).

    Parameters
    ----------
    correct : bool array of shape (N, S)
        Whether the prediction equals the label at each snapshot (signal ``correct``).
    variant : {"deepcore", "toneva"}, default "deepcore"
        What a never-learned sample scores: 0 (DeepCore) or ``S`` (Toneva et al.).

    Returns
    -------
    numpy.ndarray of float32, shape (N,).

    Notes
    -----
    Toneva et al. and DeepCore count events over the mini-batch presentations during training
    (train mode, augmented inputs); here they are counted over the eval-sweep snapshots, one per
    epoch (fixed weights, no augmentation).

    Examples
    --------
    >>> correct = np.array([[1, 0, 1, 0, 1, 0],   # learned and forgotten 3 times
    ...                     [1, 1, 1, 0, 1, 1],   # forgotten once
    ...                     [1, 1, 1, 1, 1, 1],   # never forgotten
    ...                     [0, 0, 0, 0, 0, 0]],  # never learned
    ...                    dtype=bool)
    >>> forgetting_scores(correct).tolist()                    # DeepCore: no event, 0
    [3.0, 1.0, 0.0, 0.0]
    >>> forgetting_scores(correct, variant="toneva").tolist()  # Toneva: most forgotten
    [3.0, 1.0, 0.0, 6.0]
    """
    c = check_bool_trajectory(correct, "correct")
    check_choice("variant", variant, ("deepcore", "toneva"))
    events = np.count_nonzero(c[:, :-1] & ~c[:, 1:], axis=1)
    scores = events.astype(np.float32)
    if variant == "toneva":
        scores[~c.any(axis=1)] = c.shape[1]
    return scores


def el2n_scores(el2n, *, first: int | None = 20) -> np.ndarray:
    """EL2N (Paul et al., NeurIPS 2021): mean error L2 norm over the first snapshots; keep high.

    ``EL2N(x) = ||softmax(f(x)) - onehot(y)||_2``, averaged over the first ``first`` snapshots.

    Direction: **high kept first** (large early error = hard, informative).

    Parameters
    ----------
    el2n : float array of shape (N, S)
        The error norm at each snapshot (signal ``el2n``).
    first : int or None, default 20
        Average over snapshots ``0 .. first - 1`` (all of them if fewer were recorded; all when
        None). Paul et al. score at epoch 20 of 200 on CIFAR-10 and average over 10 independent
        runs; with a single proxy run we average the early snapshots instead, as the CCS and
        D2-Pruning code does (over the first 10 epochs: pass ``first=10`` to match it).

    Returns
    -------
    numpy.ndarray of float32, shape (N,).

    Examples
    --------
    >>> el2n = [[0.2, 0.4, 9.0], [1.0, 1.2, 0.0]]
    >>> print(el2n_scores(el2n, first=2))
    [0.3 1.1]
    """
    e = check_array(el2n, "el2n")
    if e.min() < 0.0:
        raise ValueError(
            f"el2n must hold norms (>= 0), got a minimum of {e.min():.4g}. Record "
            f"||softmax(logits) - one_hot(label)||_2."
        )
    cols = columns(e.shape[1], first)
    return e[:, cols].mean(axis=1).astype(np.float32)


def aum_scores(margin, *, first: int | None = None, keep: str = "high") -> np.ndarray:
    """Area Under the Margin (Pleiss et al., NeurIPS 2020); keep the HIGHEST AUM first.

    ``AUM(x) = mean_t [z_y(x; t) - max_{c != y} z_c(x; t)]`` over the snapshots, where ``z`` are
    the logits. A low (negative) AUM marks an ambiguous or mislabelled sample: the proxy keeps
    preferring another class. Seed Appendix E.1.3 selects "according to the desired criterion
    (e.g., highest AUM, or filter low-AUM points)": both keep the high end, and that is the
    default. Keeping the low end first fills a coreset with mislabelled samples (84-88% of a 10%
    coreset in a side-by-side run with 10% label noise).

    Direction: ``keep="high"`` (default) returns ``AUM``: **high kept first**, the low-AUM
    (likely mislabelled) samples last. ``keep="low"`` returns ``-AUM`` (lowest first): the
    difficulty convention of the samplers (higher = harder), which CCS(AUM) uses.

    Parameters
    ----------
    margin : float array of shape (N, S)
        Logit of the label minus the largest other logit, per snapshot (signal ``margin``).
    first : int or None, default None
        Use only the first ``first`` snapshots (all when None, as in Pleiss et al.).
    keep : {"high", "low"}, default "high"
        Which end is kept first: ``"high"`` returns ``AUM``, ``"low"`` returns ``-AUM``.

    Returns
    -------
    numpy.ndarray of float32, shape (N,).

    Notes
    -----
    Pleiss et al. record the margin at every mini-batch presentation; here it comes from the
    eval sweep, one value per snapshot. The CCS code takes the margin on probabilities instead
    of logits; this follows the AUM paper (logits).

    Examples
    --------
    >>> margin = [[4.0, 6.0], [-1.0, 0.0], [1.0, 2.0]]
    >>> aum_scores(margin).tolist()              # the ambiguous sample (AUM -0.5) comes last
    [5.0, -0.5, 1.5]
    >>> aum_scores(margin, keep="low").tolist()  # -AUM: hardest first (CCS's difficulty)
    [-5.0, 0.5, -1.5]
    """
    m = check_array(margin, "margin")
    check_choice("keep", keep, ("high", "low"))
    cols = columns(m.shape[1], first)
    aum = m[:, cols].mean(axis=1)
    return (aum if keep == "high" else 0.0 - aum).astype(np.float32)


def ccs_select(
    labels,
    budgets: dict,
    scores,
    *,
    hard_prune: float = 0.0,
    strata: int = 50,
    pool: str = "class",
    seed: int = 0,
) -> np.ndarray:
    """Coverage-centric coreset selection (CCS; Zheng et al., ICLR 2023).

    Drop the hardest ``hard_prune`` share (the highest ``scores``), split the range of the
    remaining scores into ``strata`` equal-width bins, share each class budget across the bins
    (:func:`~cld_hf.baselines.common.allocate_strata`: CCS's iterative allocation, smallest bin
    first, each taking ``min(its size, budget left // bins left)``; when the budget is smaller
    than the number of non-empty bins, one sample from each of ``k_c`` bins evenly spaced over
    the score range) and draw uniformly at random inside each bin.

    Kind: a **sampler** (not top-k); every class keeps exactly its budget. With AUM as the
    difficulty (``aum_scores(margin, keep="low")``, i.e. ``-AUM``) this is the paper's CCS(AUM)
    baseline: it drops the **lowest-AUM** samples (likely mislabelled) first, then covers the
    rest of the AUM range evenly. That is CCS's own direction, as in its code (prune by
    ``accumulated_margin`` ascending, stratify on it); it does not change with :func:`aum_scores`'
    default.

    Parameters
    ----------
    labels : int array of shape (N,)
    budgets : dict
        ``{class: k_c}`` from :func:`cld_hf.class_budgets`; respected exactly.
    scores : float array of shape (N,)
        Difficulty in the baselines' convention (**higher = harder**, e.g.
        ``aum_scores(margin, keep="low")`` = -AUM, ``forgetting_scores``, ``el2n_scores``).
    hard_prune : float in [0, 1), default 0.0
        CCS's ``beta`` (``--mis-ratio``): the share of the hardest samples dropped before
        stratifying. The paper tunes it per pruning rate (its README uses 0.3 at 90% pruning on
        CIFAR-10); a class never drops below its budget.
    strata : int, default 50
        Number of equal-width score bins (the CCS code's value).
    pool : {"class", "global"}, default "class"
        ``"class"``: prune, bin and allocate inside each class (the class-balanced protocol of
        the paper's tables). ``"global"``: the CCS code's pool: ``int(hard_prune * N)`` hardest
        samples of the whole set are dropped (so classes with many hard samples lose more) and
        the bins span the score range of the whole remaining set; each class budget is then
        shared over that class's part of the global bins.
    seed : int, default 0
        Seeds the draws inside the bins.

    Returns
    -------
    numpy.ndarray of int64: the selected row indices, ascending.

    Notes
    -----
    The CCS code allocates one budget over the global bins with no class balance; ``"global"``
    keeps its prune and bins but allocates per class, so that every method of the comparison
    keeps the same class budgets. Its bins are half-open up to ``1.0001 * max`` (a negative
    maximum then falls outside every bin); here the last bin is closed at the maximum.

    Examples
    --------
    >>> labels = [0] * 6
    >>> scores = [0.0, 0.1, 0.2, 5.0, 5.1, 9.9]     # two clusters and one very hard sample
    >>> sel = ccs_select(labels, {0: 2}, scores, hard_prune=0.2, strata=2, seed=0)
    >>> len(sel), int((sel < 3).sum()), 5 in sel    # one per cluster, the hardest pruned
    (2, 1, False)
    """
    lab = check_labels(labels)
    sc = check_array(scores, "scores", ndim=1, n=len(lab), layout="(N,)")
    check_float("hard_prune", hard_prune, min_val=0.0, max_val=1.0, include_max=False)
    check_int("strata", strata, min_val=1)
    check_choice("pool", pool, ("class", "global"))
    check_int("seed", seed, min_val=0)
    groups = check_budgets(budgets, lab)
    rng = np.random.default_rng(seed)
    if pool == "global":
        kept = hard_prune_global(lab, sc, budgets, hard_prune)
        lo, hi = float(sc[kept].min()), float(sc[kept].max())
    chosen = []
    for _, idx, k in groups:
        if pool == "class":
            members, s = hard_prune_pool(idx, sc[idx], k, hard_prune)
            bins = strata_bins(s, strata)
        else:
            members = idx[kept[idx]]
            bins = strata_bins(sc[members], strata, lo, hi)
        chosen.append(stratified_draw(members, bins, k, strata, rng))
    if not chosen:
        return np.zeros(0, dtype=np.int64)
    return np.sort(np.concatenate(chosen)).astype(np.int64)


def _window_stats(p: np.ndarray, window: int, *, difficulty: bool) -> np.ndarray:
    """Mean over sliding windows of std (ddof=1), times ``1 - window mean`` if ``difficulty``.

    One window at a time: O(N * window) memory, no (N, W, J) array.
    """
    n_windows = p.shape[1] - window + 1
    total = np.zeros(p.shape[0], dtype=np.float64)
    for k in range(n_windows):
        w = p[:, k : k + window]
        std = w.std(axis=1, ddof=1)
        total += std * (1.0 - w.mean(axis=1)) if difficulty else std
    return total / n_windows


def dyn_unc_scores(true_prob, *, window: int = 10, first: int | None = None) -> np.ndarray:
    """Dynamic uncertainty (Dyn-Unc; He et al., CVPR 2024); keep high.

    ``U(x) = 1/(S-J+1) * sum_k std(p_y(x; t_k), ..., p_y(x; t_{k+J-1}))``: the standard deviation
    (``J - 1`` in the denominator, as in the paper) of the true-class probability over a sliding
    window of ``J`` snapshots, averaged over all windows.

    Direction: **high kept first** (uncertain predictions).

    Parameters
    ----------
    true_prob : float array of shape (N, S)
        Softmax probability of the label per snapshot (signal ``true_prob``).
    window : int, default 10
        ``J``, the paper's value.
    first : int or None, default None
        Use only the first ``first`` snapshots (all when None: the paper averages over the whole
        proxy run).

    Returns
    -------
    numpy.ndarray of float32, shape (N,).

    Examples
    --------
    >>> p = [[0.5, 0.5, 0.5, 0.5],    # constant: certain
    ...      [0.1, 0.9, 0.1, 0.9]]    # flipping: uncertain
    >>> print(dyn_unc_scores(p, window=2).round(4))
    [0.     0.5657]
    """
    p = check_unit_interval(check_array(true_prob, "true_prob"), "true_prob")
    cols = columns(p.shape[1], first)
    window = check_window(window, cols.stop, first, p.shape[1])
    return _window_stats(p[:, cols], window, difficulty=False).astype(np.float32)


def dual_scores(true_prob, *, window: int = 10, first: int | None = 30) -> np.ndarray:
    """DUAL score (Cho et al., ICML 2025): windowed uncertainty x difficulty, early; keep high.

    ``DUAL(x) = 1/(T-J+1) * sum_k std_k(x) * (1 - mean_k(x))`` where ``std_k`` (``J - 1`` in the
    denominator) and ``mean_k`` are taken over the true-class probability in the window of ``J``
    snapshots starting at ``k``, over the first ``T`` snapshots only.

    Direction: **high kept first** (uncertain and still hard).

    Parameters
    ----------
    true_prob : float array of shape (N, S)
        Softmax probability of the label per snapshot (signal ``true_prob``).
    window : int, default 10
        ``J`` (the DUAL code's ``window_size``).
    first : int or None, default 30
        ``T``: the early snapshots used (the DUAL code scores CIFAR on the first 30 of 200
        epochs); all of them if fewer were recorded, all when None.

    Returns
    -------
    numpy.ndarray of float32, shape (N,).

    See Also
    --------
    dual_beta_select : DUAL's pruning-ratio-adaptive Beta sampling over these scores.

    Examples
    --------
    >>> p = [[0.1, 0.9, 0.1, 0.9],    # uncertain, mean 0.5
    ...      [0.9, 0.1, 0.9, 0.1],    # same uncertainty, same mean
    ...      [0.0, 0.2, 0.0, 0.2]]    # less uncertain but harder (mean 0.1)
    >>> print(dual_scores(p, window=2).round(4))
    [0.2828 0.2828 0.1273]
    """
    p = check_unit_interval(check_array(true_prob, "true_prob"), "true_prob")
    cols = columns(p.shape[1], first)
    window = check_window(window, cols.stop, first, p.shape[1])
    return _window_stats(p[:, cols], window, difficulty=True).astype(np.float32)


def dual_beta_select(
    labels,
    budgets: dict,
    true_prob,
    *,
    window: int = 10,
    first: int | None = 30,
    c_d: float = 4.0,
    concentration: float = 15.0,
    n_anchor: int = 10,
    seed: int = 0,
) -> np.ndarray:
    """DUAL with its pruning-ratio-adaptive Beta sampling (Cho et al., ICML 2025), per class.

    Instead of the top-k DUAL scores, samples are drawn without replacement with probability
    proportional to ``BetaPDF(mean_p(x); a, b) * DUAL(x)``, where ``mean_p(x)`` is the mean
    true-class probability over the scoring window (the first ``first`` snapshots). The Beta
    parameters follow the DUAL code (``exp_cifar/data_subset.py``)::

        mu   = mean of mean_p over the n_anchor highest DUAL scores (the whole training set)
        r    = pruning ratio = 1 - sum(budgets) / N
        b    = concentration * (1 - mu) * (1 - r ** c_d)
        a    = concentration + 1 - b

    so ``a + b = concentration + 1``. At high pruning ratios ``b`` shrinks and the density moves
    towards easier samples (high ``mean_p``), which avoids the accuracy collapse of keeping only
    the hardest samples.

    Kind: a **sampler** (not top-k). Each class keeps exactly its budget: the draw is done inside
    each class with the dataset-wide Beta density.

    Parameters
    ----------
    labels : int array of shape (N,)
    budgets : dict
        ``{class: k_c}`` from :func:`cld_hf.class_budgets`.
    true_prob : float array of shape (N, S)
        Softmax probability of the label per snapshot (signal ``true_prob``).
    window, first
        As in :func:`dual_scores` (defaults 10 and 30).
    c_d : float, default 4.0
        The code's ``--c_d`` (its default and the CIFAR-100 value in its README).
    concentration : float, default 15.0
        The constant 15 of the DUAL code.
    n_anchor : int, default 10
        How many top-DUAL samples set ``mu`` (10 in the DUAL code).
    seed : int, default 0

    Returns
    -------
    numpy.ndarray of int64: the selected row indices, ascending.

    Notes
    -----
    Choices made here, where the paper and code leave room:

    - ``mean_p`` is averaged over the same early window as the score (the code reads a separate
      array of target probabilities whose window is not fixed by the paper).
    - The draw is the Gumbel-top-k trick, which is distributed exactly like NumPy's sequential
      ``choice(..., replace=False, p=...)`` used by the code, computed in log space (no overflow).
    - Samples with zero weight (a DUAL score of 0, or density 0) are taken only after every
      positive-weight sample of their class, by decreasing DUAL score, then lower index.
    - ``b`` is floored at 1e-6 so that the density stays defined when ``mu`` is 1.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> p = rng.uniform(0.0, 1.0, size=(40, 12))
    >>> labels = np.repeat([0, 1], 20)
    >>> idx = dual_beta_select(labels, {0: 3, 1: 5}, p, window=4, seed=1)
    >>> len(idx), np.bincount(labels[idx]).tolist()
    (8, [3, 5])
    """
    p = check_unit_interval(check_array(true_prob, "true_prob"), "true_prob")
    lab = check_labels(labels, "labels", len(p), against="the signals")
    check_float("c_d", c_d, min_val=0.0, include_min=False)
    check_float("concentration", concentration, min_val=0.0, include_min=False)
    check_int("n_anchor", n_anchor, min_val=1)
    check_int("seed", seed, min_val=0)
    groups = check_budgets(budgets, lab)
    cols = columns(p.shape[1], first)
    window = check_window(window, cols.stop, first, p.shape[1])
    early = p[:, cols]
    score = _window_stats(early, window, difficulty=True)
    mean_p = early.mean(axis=1)

    anchor = order_by_score(score)[: min(n_anchor, len(score))]
    mu = float(mean_p[anchor].mean())
    ratio = 1.0 - sum(k for _, _, k in groups) / len(lab)
    b = max(concentration * (1.0 - mu) * (1.0 - ratio**c_d), 1e-6)
    a = concentration + 1.0 - b

    x = np.clip(mean_p, 1e-12, 1.0 - 1e-12)
    with np.errstate(divide="ignore"):
        log_w = (a - 1.0) * np.log(x) + (b - 1.0) * np.log1p(-x) + np.log(score)
    rng = np.random.default_rng(seed)
    key = log_w + rng.gumbel(size=len(lab))  # Gumbel-top-k = weighted draw without replacement
    chosen = []
    for _, idx, k in groups:
        order = np.lexsort((idx, -score[idx], -key[idx]))
        chosen.append(idx[order[:k]])
    if not chosen:
        return np.zeros(0, dtype=np.int64)
    return np.sort(np.concatenate(chosen)).astype(np.int64)
