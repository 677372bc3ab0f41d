"""Selection strategies over CLD scores: Algorithm 1's top-k and two variants. NumPy only.

CLD ranks a class by how closely each sample's loss differences follow the class's query
trajectory. Measured on digits and MNIST-1D (``scripts/compare_strategies.py``: one proxy run per
setting, 20 target seeds, paired with random), keeping the top ``k_c`` per class (Algorithm 1,
:func:`~cld_hf.selection.select_top_per_class`) filters flipped labels well (0.8-4.4% left in
the coreset against 20% for random, with 20% flipped) but loses 1-6 points to a random coreset
on clean data. The class query trajectory is concentrated in one early epoch (epoch 1 on
MNIST-1D, where CLD has a Spearman correlation of -0.82 with the epoch-1 loss drop; epoch 2 on
digits, -0.48), so the top of the ranking is the samples learned early, the most typical ones.
The low-CLD tail holds the flipped labels on noisy data and the hard-but-correct samples on
clean data. The strategies here use the ranking for what it is good at, finding that tail:

``"top"``
    Algorithm 1 exactly: the ``k_c`` highest scores of each class (:func:`select_top`).
``"random"``
    The random class-balanced baseline (:func:`~cld_hf.selection.select_random_per_class`).
``"noise_adaptive"``
    Drop the ``min(floor(m * q_hat * n_c), n_c - k_c)`` lowest-CLD samples of each class as
    suspected noise, ``q_hat`` estimated from the query set (:func:`estimate_noise_rate`),
    then draw ``k_c`` uniformly from the rest (:func:`select_noise_adaptive`).
``"coverage"``
    The same noise cut, then ``k_c`` samples spread over the proxy's feature space: k-means
    strata of the remaining samples of the class, each stratum sampled in proportion to its
    size (:func:`select_coverage`).

:mod:`cld_hf.diagnosis` says, for a recorded run, which of these the numbers point to.

:data:`STRATEGIES` maps each name to its function; :func:`select_with_strategy` runs one by name.
Every strategy returns int64 row indices, ascending, with exactly ``budgets[c]`` samples of each
class ``c``. The random strategies draw from ``numpy.random.default_rng(seed)``: the same seed
gives the same coreset.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable

import numpy as np

from .coverage import select_coverage
from .noise import (
    estimate_noise_rate,
    select_noise_adaptive,
    select_random,
    select_top,
    suspected_noise,
)

logger = logging.getLogger(__name__)

__all__ = [
    "STRATEGIES",
    "estimate_noise_rate",
    "suspected_noise",
    "select_top",
    "select_random",
    "select_noise_adaptive",
    "select_coverage",
    "select_with_strategy",
]



# --------------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------------

STRATEGIES: dict[str, Callable[..., np.ndarray]] = {
    "top": select_top,
    "random": select_random,
    "noise_adaptive": select_noise_adaptive,
    "coverage": select_coverage,
}
"""Strategy name -> function. Each returns int64 row indices, ascending, ``budgets[c]`` per
class; :func:`select_with_strategy` passes each only the inputs its signature names."""

# Inputs select_with_strategy hands to the strategies that take them (not options).
_INPUTS = ("scores", "labels", "budgets", "seed", "query_losses", "embeddings")


def select_with_strategy(scores, labels, *, budgets: dict, strategy: str = "top", seed: int = 0,
                         query_losses=None, embeddings=None, **options) -> np.ndarray:
    """Select a coreset with the strategy named ``strategy`` (see :data:`STRATEGIES`).

    Parameters
    ----------
    scores : float array of shape (N,)
        CLD scores (``"random"`` does not read them).
    labels : int array of shape (N,)
    budgets : dict
        ``{class: k_c}`` from :func:`cld_hf.class_budgets`; every strategy meets it exactly.
    strategy : {"top", "random", "noise_adaptive", "coverage"}, default "top"
        ``"top"`` is Algorithm 1 of the paper (``select_top_per_class``).
    seed : int, default 0
        Seed of the random strategies (``"top"`` is deterministic and ignores it).
    query_losses : array of shape (Q, S), optional
        The query loss trajectory, for the noise estimate of ``"noise_adaptive"`` and
        ``"coverage"``. Strategies that do not use it ignore it.
    embeddings : array of shape (N, D), optional
        The proxy's penultimate features, for ``"coverage"``; ignored by the others.
    **options
        Options of the strategy's function, e.g. ``drop_multiplier=2.0``, ``noise_rate=0.2``
        (``"noise_adaptive"``, ``"coverage"``), ``n_clusters``, ``within`` (``"coverage"``). An
        option the strategy does not take is an error.

    Returns
    -------
    numpy.ndarray of int64: the selected row indices, ascending.

    Examples
    --------
    >>> scores = [0.9, -0.5, 0.1, 0.7, 0.8, -0.9, 0.2, 0.6]
    >>> labels = [0, 0, 0, 0, 1, 1, 1, 1]
    >>> select_with_strategy(scores, labels, budgets={0: 2, 1: 2}).tolist()
    [0, 3, 4, 7]
    >>> select_with_strategy(scores, labels, budgets={0: 1, 1: 1}, strategy="noise_adaptive",
    ...                      noise_rate=0.25, seed=3).tolist()   # one of 0, 3 and one of 4, 7
    [3, 7]
    >>> select_with_strategy(scores, labels, budgets={0: 1, 1: 1}, strategy="noise_adaptive")
    Traceback (most recent call last):
    ...
    ValueError: strategy 'noise_adaptive' needs the noise rate: pass query_losses= ...
    """
    if strategy not in STRATEGIES:
        raise ValueError(
            f"strategy == {strategy!r}, must be one of {list(STRATEGIES)} (cld_hf.strategies."
            f"STRATEGIES)."
        )
    fn = STRATEGIES[strategy]
    params = inspect.signature(fn).parameters
    accepted = [p for p in params if p not in _INPUTS]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise TypeError(
            f"strategy {strategy!r} takes no option(s) {unknown}; its options are {accepted}."
        )
    given = {"scores": scores, "labels": labels, "budgets": budgets, "seed": seed,
             "query_losses": query_losses, "embeddings": embeddings}
    args = {name: value for name, value in given.items() if name in params}
    if "scores" in params:
        return fn(args.pop("scores"), args.pop("labels"), **args, **options)
    return fn(args.pop("labels"), **args, **options)
