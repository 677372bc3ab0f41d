"""The baselines the CLD paper compares with, as NumPy functions over what one proxy run recorded.

Each method is one plain function in a module of its family:

- :mod:`.dynamics` (training dynamics, ``(N, S)`` signals from the eval sweep of every snapshot):
  Forgetting, EL2N, AUM and CCS(AUM), Dyn-Unc, DUAL and DUAL's Beta sampling;
- :mod:`.geometry` (penultimate features of the trained proxy): Herding, Moderate, k-Center
  greedy, GraphCut, D2-Pruning, CAL;
- :mod:`.gradients` (last-layer gradients from the softmax and the features, no backward pass):
  GraNd, CRAIG, GLISTER (one-shot, as DeepCore runs it), TDDS (the seed's gradient projection,
  and the TDDS code's per-epoch output change);
- :mod:`.probes` (input-space probes of the trained proxy, one extra torch pass): SloCurv,
  BoundarySet-CCS;
- :mod:`.s2l` (the recorded loss trajectories themselves): S2L, balanced draws over k-means
  clusters of the trajectories, the selection baseline for language models.

Two kinds of methods:

- ``"score"``: the function returns float32 scores where **higher = kept first** (a metric the
  paper keeps *low*, like SloCurv's curvature, is returned negated); selection is
  :func:`cld_hf.select_top_per_class` with the same class budgets as CLD.
- ``"select"``: greedy, submodular or sampling methods (Herding, k-Center greedy, GraphCut,
  CRAIG, GLISTER, D2-Pruning, CCS, BoundarySet-CCS, DUAL's Beta sampling, S2L, Random); the function
  ``f(labels, budgets, <signals>, *, <options>, seed=0)`` returns the selected row indices
  (int64, ascending) and keeps exactly ``budgets[c]`` samples of each class ``c``.

:data:`METHODS` maps each method name to a :class:`Method` record (function, kind, signals, score
direction, defaults, Appendix E cost). :func:`select_baseline` runs any of them by name from a
dict of recorded signals; :data:`SIGNALS` says what each signal is and how to record it.
Only GLISTER's adaptive version, which reselects during training, is not implemented (see
:data:`NOT_IMPLEMENTED`). NumPy only, with SciPy's sparse matrices for D2-Pruning and CAL; no
torch.

Examples
--------
>>> import numpy as np
>>> from cld_hf import class_budgets
>>> labels = np.array([0, 0, 0, 1, 1, 1])
>>> correct = np.array([[1, 0, 1, 0], [1, 1, 1, 1], [1, 0, 0, 0],
...                     [0, 0, 0, 0], [1, 1, 1, 1], [0, 1, 0, 1]], dtype=bool)
>>> budgets = class_budgets(labels, size=2)
>>> select_baseline("forgetting", labels, budgets=budgets, signals={"correct": correct}).tolist()
[0, 5]
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal

import numpy as np

from ..selection import select_random_per_class, select_top_per_class
from .._validation import check_labels
from .common import SIGNALS, Signal, missing_signal_error
from .probes import boundary_ccs_select, slocurv_scores
from .dynamics import (
    aum_scores,
    ccs_select,
    dual_beta_select,
    dual_scores,
    dyn_unc_scores,
    el2n_scores,
    forgetting_scores,
)
from .geometry import (
    cal_scores,
    d2_select,
    graphcut_select,
    herding_select,
    kcenter_select,
    moderate_scores,
)
from .gradients import (
    craig_select,
    el2n_from_probs,
    glister_select,
    gradient_norms,
    gradient_projections,
    grand_scores,
    last_layer_gradients,
)
from .s2l import S2L_COST, S2L_REFERENCE, S2L_STORAGE, s2l_select
from .tdds import tdds_kl_scores, tdds_kl_terms, tdds_scores

__all__ = [
    "METHODS",
    "NOT_IMPLEMENTED",
    "SIGNALS",
    "Method",
    "Signal",
    "select_baseline",
    # dynamics
    "forgetting_scores",
    "el2n_scores",
    "aum_scores",
    "ccs_select",
    "dyn_unc_scores",
    "dual_scores",
    "dual_beta_select",
    # geometry
    "herding_select",
    "moderate_scores",
    "kcenter_select",
    "graphcut_select",
    "d2_select",
    "cal_scores",
    # gradients
    "el2n_from_probs",
    "last_layer_gradients",
    "gradient_norms",
    "gradient_projections",
    "grand_scores",
    "craig_select",
    "glister_select",
    "tdds_scores",
    "tdds_kl_terms",
    "tdds_kl_scores",
    # probes
    "slocurv_scores",
    "boundary_ccs_select",
    # loss-trajectory clusters
    "s2l_select",
]


@dataclass(frozen=True)
class Method:
    """One baseline: how to run it and what it costs.

    Attributes
    ----------
    function : callable
        The scorer (kind ``"score"``) or selector (kind ``"select"``).
    kind : {"score", "select"}
        ``"score"``: returns scores, higher kept first, for ``select_top_per_class``;
        ``"select"``: returns the selected indices for given class budgets.
    signals : tuple of str
        Recorded signals it reads (keys of :data:`SIGNALS`), passed by these names.
    direction : str
        Which end of the paper's metric is kept first, and what the returned score is.
    defaults : mapping
        The function's options and their defaults (from each method's paper or code).
    cost : str
        Selection cost, Appendix E of the seed (FLOPs; ``f`` proxy forward, ``f_large`` target).
    storage : str
        Selection-stage storage overhead, Appendix E.
    reference : str
        The method's paper, the seed's section, and the reference implementation cld-hf was
        compared with.
    difficulty : str or None
        For samplers driven by a difficulty score (CCS, D2-Pruning): the method in
        :data:`METHODS` whose scores they use by default (higher = harder).
    difficulty_options : mapping
        Options passed to the difficulty method (CCS(AUM): ``{"keep": "low"}``, i.e. ``-AUM``).
    
    Examples
    --------
    >>> spec = METHODS["forgetting"]
    >>> spec.kind, spec.signals, dict(spec.defaults)
    ('score', ('correct',), {'variant': 'deepcore'})
    """

    function: Callable
    kind: Literal["score", "select"]
    signals: tuple[str, ...]
    direction: str
    cost: str
    storage: str
    reference: str
    difficulty: str | None = None
    difficulty_options: Mapping = field(default_factory=dict)
    defaults: Mapping = field(init=False)

    def __post_init__(self):
        options = MappingProxyType(dict(self.difficulty_options))
        object.__setattr__(self, "difficulty_options", options)
        params = inspect.signature(self.function).parameters.values()
        options = {
            p.name: p.default
            for p in params
            if p.kind is inspect.Parameter.KEYWORD_ONLY and p.name not in _NOT_OPTIONS
        }
        object.__setattr__(self, "defaults", MappingProxyType(options))


# Keyword arguments that are not method options (budgets come from the caller, seed is explicit).
_NOT_OPTIONS = frozenset({"seed", "budgets", "fraction", "size", "balance"})

_PROXY = "3N T_proxy f"
_TRAIN = "3k T f_large"

METHODS: dict[str, Method] = {
    "random": Method(
        select_random_per_class,
        "select",
        (),
        "none: uniform draw per class",
        f"{_TRAIN} (no selection cost)",
        "O(1)",
        "uniform class-balanced sampling",
    ),
    "forgetting": Method(
        forgetting_scores,
        "score",
        ("correct",),
        "high: most forgetting events first; never-learned samples score 0 (DeepCore; "
        "variant='toneva' counts them as most forgotten)",
        "3N T_early f_large + 3k T_late f_large",
        "O(N) (per-sample counter/bit)",
        "Toneva et al., ICLR 2019 (E.1.2); compared with DeepCore's Forgetting",
    ),
    "el2n": Method(
        el2n_scores,
        "score",
        ("el2n",),
        "high: largest early error norm first",
        "3N T_early R f_large + 3k T_late f_large",
        "O(N)",
        "Paul et al., NeurIPS 2021 (E.1.5); compared with the CCS code's el2n",
    ),
    "aum": Method(
        aum_scores,
        "score",
        ("margin",),
        "high: highest AUM first; low-AUM (likely mislabelled) samples last",
        f"{_PROXY} + {_TRAIN}",
        "O(N) (running sums)",
        "Pleiss et al., NeurIPS 2020 (E.1.3); compared with asappresearch/aum",
    ),
    "ccs_aum": Method(
        ccs_select,
        "select",
        ("margin",),
        "stratified over AUM after dropping the lowest-AUM hard_prune share (CCS's direction)",
        f"{_PROXY} + O(N) stratified sampling + {_TRAIN} (as AUM; E.2.4 adds 3N K f for PGD "
        f"distances, not used here)",
        "O(N)",
        "Zheng et al., ICLR 2023 (CCS) with AUM (E.1.3, E.2.4); compared with "
        "haizhongzheng/Coverage-centric-coreset-selection",
        difficulty="aum",
        difficulty_options={"keep": "low"},
    ),
    "dyn_unc": Method(
        dyn_unc_scores,
        "score",
        ("true_prob",),
        "high: most uncertain (windowed std of the true-class probability) first",
        f"{_PROXY} + {_TRAIN}",
        "O(NJ)",
        "He et al., CVPR 2024 (E.3.3); compared with the DUAL code's Dyn-Unc",
    ),
    "dual": Method(
        dual_scores,
        "score",
        ("true_prob",),
        "high: largest windowed std x (1 - mean) over the early snapshots first",
        f"3N T_proxy,early f + {_TRAIN}",
        "O(NJ)",
        "Cho et al., ICML 2025 (E.3.3); compared with behaapyy/dual-pruning",
    ),
    "dual_beta": Method(
        dual_beta_select,
        "select",
        ("true_prob",),
        "sampled with probability ~ BetaPDF(mean true prob) x DUAL score",
        f"3N T_proxy,early f + {_TRAIN} (sampling negligible)",
        "O(NJ)",
        "Cho et al., ICML 2025 (E.3.3, Beta sampling); compared with behaapyy/dual-pruning",
    ),
    "herding": Method(
        herding_select,
        "select",
        ("embeddings",),
        "greedy: matches the class mean (argmin; DeepCore's code takes the argmax, "
        "reference='deepcore')",
        f"{_PROXY} + N f + O(N d k) + 3k T_late f_large",
        "O(N d) (+ O(k^2) optional Gram)",
        "Welling 2009; Chen et al., UAI 2010 (E.1.1); compared with DeepCore's Herding",
    ),
    "moderate": Method(
        moderate_scores,
        "score",
        ("embeddings",),
        "median: distance to the class centre closest to the class median first",
        f"{_PROXY} + N f + O(N d + N log N) + {_TRAIN}",
        "O(N d)",
        "Xia et al., ICLR 2023 (E.1.6); compared with the Moderate-DS code",
    ),
    "kcenter": Method(
        kcenter_select,
        "select",
        ("embeddings",),
        "greedy: farthest-first (minimax coverage)",
        f"{_PROXY} + N f + O(N k d) + {_TRAIN} (not in Appendix E; by analogy with Herding)",
        "O(N d)",
        "Sener & Savarese, ICLR 2018; compared with DeepCore's kCenterGreedy",
    ),
    "graphcut": Method(
        graphcut_select,
        "select",
        ("embeddings",),
        "greedy: generalized graph cut (representative, not redundant)",
        f"{_PROXY} + N f + O(N^2 k) + {_TRAIN} (here per class: O(n_c^2 d + n_c k_c d))",
        "O(N^2) (here O(n_c) plus a 2048 x n_c kernel block)",
        "Iyer et al., ALT 2021 (E.2.3); compared with DeepCore's GraphCut",
    ),
    "d2_pruning": Method(
        d2_select,
        "select",
        ("embeddings", "correct"),
        "greedy: forward message passing of difficulty (forgetting), reverse-message sampling",
        f"{_PROXY} + N f + O(N k d) + O(H N k) + {_TRAIN} (here the kNN search is exact, per "
        f"class: O(n_c^2 d))",
        "O(N d) + O(N k) (features + kNN graph)",
        "Maharana et al., ICLR 2024 (E.1.7); compared with adymaharana/d2pruning",
        difficulty="forgetting",
    ),
    "cal": Method(
        cal_scores,
        "score",
        ("embeddings", "probs"),
        "high: largest mean KL(neighbour || sample) first (CAL paper; DeepCore keeps the "
        "lowest, reference='deepcore')",
        f"3k T_proxy f + U f + O(U k d) + {_TRAIN}",
        "O(U d) (proxy features)",
        "Margatina et al., EMNLP 2021 (E.1.4); compared with DeepCore's Cal",
    ),
    "grand": Method(
        grand_scores,
        "score",
        ("probs", "embeddings"),
        "high: largest last-layer gradient norm first",
        "3N T_early R f_large + 3N T_early R f_large + 3k T_late f_large (the extra gradient "
        "sweep is free here: closed form from probs and embeddings)",
        "O(N)",
        "Paul et al., NeurIPS 2021 (E.1.5); compared with DeepCore's GraNd",
    ),
    "craig": Method(
        craig_select,
        "select",
        ("probs", "embeddings"),
        "greedy: facility location on last-layer gradients (gradient matching)",
        f"{_PROXY} + O(A (N k + N log(1/eps)) D_eff) + {_TRAIN}",
        "O(N (F + C)) (here O(n_c^2) per class for the distances)",
        "Mirzasoleiman et al., ICML 2020 (E.2.1); compared with DeepCore's Craig",
    ),
    "glister": Method(
        glister_select,
        "select",
        ("probs", "embeddings", "query_probs", "query_embeddings", "query_labels"),
        "greedy: largest Taylor-approximated drop of the class's query loss, one SGD step on "
        "the selected samples per pick",
        "3k T f_large + O((k Q + N log(1/eps)) f_large T / gamma) (E.2.2, GLISTER-ONLINE); here "
        f"one-shot from the final proxy as DeepCore runs it: {_PROXY} + Q f + "
        f"O(N Q_c (C + d)) + {_TRAIN}",
        "O(Q) (validation cache; here O(Q (C + d)) query softmax and features)",
        "Killamsetty et al., AAAI 2021 (E.2.2); compared with DeepCore's Glister and CORDS",
    ),
    "tdds": Method(
        tdds_scores,
        "score",
        ("grad_projection",),
        "high: most variable gradient projection over the latest windows first",
        f"{_PROXY} + {_PROXY} + {_TRAIN} (here the projections are last-layer, from the "
        f"eval sweep: no extra backward)",
        "O(N J) (windowed logs)",
        "Zhang et al., CVPR 2024 (E.3.2, the seed's gradient projection); compared with "
        "zhangxin-xd/Dataset-Pruning-TDDS",
    ),
    "tdds_kl": Method(
        tdds_kl_scores,
        "score",
        ("tdds_kl",),
        "high: most variable per-epoch output change over the latest windows first",
        f"{_PROXY} + {_TRAIN} (E.3.2 counts {_PROXY} more for gradient sweeps; the TDDS "
        f"code's term needs only consecutive softmaxes of the eval sweep)",
        "O(N J) (windowed logs; the recorder holds one (N, C) softmax between snapshots)",
        "Zhang et al., CVPR 2024 (E.3.2), as zhangxin-xd/Dataset-Pruning-TDDS computes it",
    ),
    "slocurv": Method(
        slocurv_scores,
        "score",
        ("curvature",),
        "low: lowest input-loss curvature first; returns -curvature",
        "3N T_proxy f + 3N (R + 1) f + 3k T_late f_large",
        "O(N) + O(R d) (running stats + R probe dirs; O(N R) if every probe is kept)",
        "Garg & Roy, CVPR 2023 (E.3.1); compared with purdue-nrl/Memorization-Curvature "
        "(the authors' curvature code; SloCurv's own is not public)",
    ),
    "boundary_ccs": Method(
        boundary_ccs_select,
        "select",
        ("boundary_steps",),
        "stratified over the PGD distance-to-boundary bands 0..k_max",
        "3N T_proxy f + 3N K_bar f + 3k T f_large",
        "O(N) (per-sample distance)",
        "Yang et al., ICML 2024 (E.2.4); no official code found, compared with a public "
        "reproduction",
    ),
    "s2l": Method(
        s2l_select,
        "select",
        ("loss",),
        "balanced: equal shares of the k-means clusters of the loss trajectories, smallest "
        "cluster first, uniform draws inside",
        S2L_COST,
        S2L_STORAGE,
        S2L_REFERENCE,
    ),
}

#: Methods of the paper's comparison that are not implemented, and why.
NOT_IMPLEMENTED: dict[str, str] = {
    "glister_online": (
        "GLISTER-ONLINE (Killamsetty et al., AAAI 2021; E.2.2) replaces the training loop: it "
        "reselects the subset every gamma epochs while the target model trains on it. It cannot "
        "be computed from one recorded proxy run; it needs a training-loop integration (the "
        "torch layer). The one-shot version that DeepCore runs is 'glister'. "
        "Cost: 3kT f_large + O((kQ + N log(1/eps)) f_large T / gamma); storage O(Q)."
    ),
}


def _call(function: Callable, values: dict) -> np.ndarray:
    """Call ``function`` with the entries of ``values`` that it takes (by parameter name)."""
    params = inspect.signature(function).parameters
    return function(**{name: v for name, v in values.items() if name in params})


def select_baseline(
    method: str,
    labels,
    *,
    budgets: dict,
    signals: Mapping[str, np.ndarray],
    seed: int = 0,
    **options,
) -> np.ndarray:
    """Run a baseline by name on recorded signals and return the selected indices.

    Score methods are ranked with :func:`cld_hf.select_top_per_class` (ties to the lower
    index); select methods are called directly. Every method keeps exactly ``budgets[c]``
    samples of each class.

    Parameters
    ----------
    method : str
        A key of :data:`METHODS`.
    labels : int array of shape (N,)
    budgets : dict
        ``{class: k_c}`` from :func:`cld_hf.class_budgets`.
    signals : mapping
        Recorded arrays by signal name (see :data:`SIGNALS`); extra entries are ignored.
    seed : int, default 0
        For the random methods (Random, k-Center greedy's first centre, CCS, DUAL's Beta
        sampling).
    **options
        Keyword options of the method's function (see ``METHODS[method].defaults``). CCS and
        D2-Pruning also take ``scores=`` (difficulty, higher = harder); by default they use the
        scores of ``METHODS[method].difficulty`` with ``METHODS[method].difficulty_options``.

    Returns
    -------
    numpy.ndarray of int64: the selected row indices, ascending.

    Raises
    ------
    ValueError
        For an unknown method, or a signal the method needs that is not in ``signals`` (the
        message names it and says how to record it).

    Examples
    --------
    >>> labels = np.array([0, 0, 0, 0])
    >>> margin = np.array([[3.0, 3.0], [-1.0, 0.0], [0.5, 0.5], [2.0, 1.0]])
    >>> select_baseline("aum", labels, budgets={0: 2}, signals={"margin": margin}).tolist()
    [0, 3]
    """
    if method not in METHODS:
        extra = (
            f" {method!r} is not implemented: {NOT_IMPLEMENTED[method]}"
            if method in NOT_IMPLEMENTED
            else ""
        )
        raise ValueError(f"method == {method!r}, must be one of {sorted(METHODS)}.{extra}")
    spec = METHODS[method]
    needed = spec.signals
    if spec.difficulty is not None and "scores" in options:  # difficulty given: not recomputed
        needed = tuple(s for s in needed if s not in METHODS[spec.difficulty].signals)
    given = [k for k, v in signals.items() if v is not None]
    for name in needed:
        if name not in given:
            raise missing_signal_error(method, name, given)
    lab = check_labels(labels)
    allowed = set(spec.defaults) | ({"scores"} if spec.difficulty is not None else set())
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise TypeError(
            f"{method!r} got unknown option(s) {unknown}; its options are "
            f"{dict(spec.defaults)}."
        )
    values = {name: signals[name] for name in needed}
    values.update(options)
    if spec.difficulty is not None and "scores" not in values:
        difficulty = METHODS[spec.difficulty]
        inputs = {name: signals[name] for name in difficulty.signals}
        values["scores"] = _call(
            difficulty.function, {**inputs, "labels": lab, **spec.difficulty_options}
        )
    if spec.kind == "score":
        scores = _call(spec.function, {**values, "labels": lab})
        return select_top_per_class(scores, lab, budgets=budgets)
    return _call(spec.function, {**values, "labels": lab, "budgets": budgets, "seed": seed})
