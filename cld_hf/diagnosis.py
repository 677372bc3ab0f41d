"""What a recorded run says about the choice of selection strategy. NumPy and the store.

:func:`diagnose` reads a :class:`~cld_hf.trajectories.LossTrajectories` store (or the four
arrays) and reports:

- ``noise_rate``: ``q_hat``, the share of query samples whose loss rose during proxy training
  (:func:`cld_hf.strategies.estimate_noise_rate`), overall and per class;
- ``first_difference_share``: per class, the share of the energy of the centred class query
  trajectory (its variance over time, what the Pearson correlation sees) carried by the first
  loss difference (snapshot 0 -> 1). With ``T`` differences it is at most ``(T - 1) / T``,
  reached by a trajectory that moves in epoch 1 only; near that, CLD mostly measures how much a
  sample's loss fell in epoch 1. ``first_difference_raw_share`` is the same without centring
  (``d_1^2 / sum_t d_t^2``);
- ``dominant_difference``: per class, the loss difference with the largest share of that
  variance, and the share (on digits the loss falls most in epoch 2, on MNIST-1D in epoch 1);
- ``spearman_with_epoch1_loss``: rank correlation of the CLD scores with the training loss
  after epoch 1, and ``spearman_with_dominant_difference``: with the training loss difference
  of the dominant epoch (strongly negative: CLD ranks the samples by how much their loss fell
  in that epoch, and top-k keeps those learned in it);
- ``score_quantiles``: the distribution of the CLD scores, overall and per class;
- ``suspected_noise``: per coreset fraction, how many samples the noise cut of
  ``"noise_adaptive"`` and ``"coverage"`` drops, per class and in total;
- ``advice``: plain sentences on what this means for the choice of strategy.

:func:`format_diagnosis` turns the dict into text for a terminal.
"""

from __future__ import annotations

import os
import textwrap

import numpy as np

from ._validation import check_choice, check_float, check_labels, check_real_array
from .scoring import class_query_trajectories, cld_scores
from .selection import class_budgets
from .strategies import estimate_noise_rate, suspected_noise
from .trajectories import LossTrajectories

__all__ = ["diagnose", "format_diagnosis"]

QUANTILES = (0.0, 0.05, 0.25, 0.5, 0.75, 0.95, 1.0)
"""Quantiles of the CLD scores in the diagnosis (keys ``"p0"``, ``"p5"``, ... ``"p100"``)."""

# Thresholds of the advice sentences.
_NOISY = 0.10  # q_hat at or above: the labels look noisy
_CLEAN = 0.03  # q_hat below: the query set looks clean
# Spearman of the CLD scores with the loss difference of the dominant epoch, at or below:
_RANKS_BY_EPOCH = -0.70  # CLD mostly ranks by how much the loss fell in that epoch
_LEANS_TO_EPOCH = -0.40  # CLD leans towards it


def _quantile_key(q: float) -> str:
    return f"p{100 * q:g}"


def _rank(a: np.ndarray) -> np.ndarray:
    """Ranks 0 .. n-1 with ties given their mean rank (as scipy.stats.rankdata - 1)."""
    order = np.argsort(a, kind="mergesort")
    _, first, inverse, counts = np.unique(a[order], return_index=True, return_inverse=True,
                                          return_counts=True)
    ranks = np.empty(len(a), dtype=np.float64)
    ranks[order] = (first + (counts - 1) / 2.0)[inverse]
    return ranks


def _spearman(a: np.ndarray, b: np.ndarray) -> float | None:
    ra, rb = _rank(a), _rank(b)
    ra -= ra.mean()
    rb -= rb.mean()
    denom = np.sqrt((ra @ ra) * (rb @ rb))
    return None if denom == 0.0 else float((ra @ rb) / denom)


def _shares(traj: np.ndarray, *, centre: bool = True) -> np.ndarray | None:
    """Share of the energy of the (centred) trajectory in each entry (None if flat)."""
    centred = traj - traj.mean() if centre else traj
    energy = float(centred @ centred)
    if energy == 0.0 or energy <= 1e-20 * float(traj @ traj):
        return None
    return centred**2 / energy


def _first_share(traj: np.ndarray, *, centre: bool = True) -> float | None:
    shares = _shares(traj, centre=centre)
    return None if shares is None else float(shares[0])


def _median(values) -> float | None:
    defined = [v for v in values if v is not None]
    return float(np.median(defined)) if defined else None


def _quantiles(scores: np.ndarray) -> dict[str, float]:
    finite = scores[np.isfinite(scores)]
    if len(finite) == 0:
        return {_quantile_key(q): None for q in QUANTILES}
    values = np.quantile(finite, QUANTILES)
    return {_quantile_key(q): float(v) for q, v in zip(QUANTILES, values)}


def _arrays(store, train_losses, train_labels, query_losses, query_labels):
    arrays = {"train_losses": train_losses, "train_labels": train_labels,
              "query_losses": query_losses, "query_labels": query_labels}
    given = [name for name, value in arrays.items() if value is not None]
    if store is not None:
        if given:
            raise ValueError(
                f"Pass either a store or the arrays, not both; got a store and {given}."
            )
        if isinstance(store, (str, os.PathLike)):
            store = LossTrajectories(store)
        if not isinstance(store, LossTrajectories):
            raise TypeError(
                f"store must be a LossTrajectories or the path of one, not "
                f"{type(store).__name__}; or pass train_losses=, train_labels=, query_losses=, "
                f"query_labels= instead."
            )
        return (store.train_losses(), store.train_labels, store.query_losses(),
                store.query_labels)
    missing = [name for name, value in arrays.items() if value is None]
    if missing:
        raise ValueError(
            f"diagnose needs a LossTrajectories store, or all four arrays; missing {missing}. "
            f"Pass diagnose(LossTrajectories(dir)) or diagnose(train_losses=..., "
            f"train_labels=..., query_losses=..., query_labels=...)."
        )
    return train_losses, train_labels, query_losses, query_labels


def diagnose(store=None, *, train_losses=None, train_labels=None, query_losses=None,
             query_labels=None, scores=None, fractions=(0.1, 0.3), balance="equal",
             drop_multiplier: float = 2.0) -> dict:
    """Diagnose a recorded run: noise estimate, first-epoch dominance, scores, noise cut, advice.

    Parameters
    ----------
    store : LossTrajectories or path, optional
        A recorded store. Otherwise pass the four arrays.
    train_losses : array of shape (N, S), optional
    train_labels : int array of shape (N,), optional
    query_losses : array of shape (Q, S), optional
    query_labels : int array of shape (Q,), optional
    scores : float array of shape (N,), optional
        CLD scores, if already computed (default: :func:`cld_hf.cld_scores` of the losses).
    fractions : sequence of float, default (0.1, 0.3)
        Coreset fractions for which the noise cut is counted (it is capped at ``n_c - k_c``).
    balance : {"equal", "proportional"}, default "equal"
        Budgets of those coresets (:func:`cld_hf.class_budgets`).
    drop_multiplier : float, default 2.0
        As in :func:`cld_hf.strategies.suspected_noise`.

    Returns
    -------
    dict (plain JSON values; class keys are ints) with ``num_train``, ``num_query``,
    ``num_snapshots``, ``num_classes``, ``noise_rate``, ``noise_rate_by_class``,
    ``first_difference_share`` (per class, ``None`` for a flat or missing class trajectory),
    ``first_difference_share_median``, ``first_difference_share_max`` (``(T - 1) / T``),
    ``first_difference_share_all`` (the trajectory of all query samples),
    ``first_difference_raw_share`` (per class, not centred) and its ``_median``,
    ``dominant_difference`` (per class ``{"epoch": t, "share": ...}``: difference ``t`` is
    snapshot ``t - 1 -> t``, epoch ``t`` with CLDCallback's snapshots), ``dominant_epoch`` (the
    ``t`` most classes peak at), ``dominant_difference_share_median``,
    ``spearman_with_epoch1_loss``, ``spearman_with_dominant_difference``, ``score_quantiles``,
    ``score_quantiles_by_class``, ``drop_multiplier``, ``suspected_noise`` (one entry per
    fraction: ``fraction``, ``budgets``, ``dropped`` per class, ``total``, ``share``) and
    ``advice`` (str).

    Examples
    --------
    >>> train = [[2.3, 0.5, 0.3, 0.2], [2.3, 1.9, 1.0, 0.4], [2.3, 2.6, 2.9, 3.0],
    ...          [2.3, 0.4, 0.3, 0.3], [2.3, 1.2, 0.6, 0.3], [2.3, 2.4, 2.8, 3.1]]
    >>> query = [[2.3, 0.6, 0.4, 0.3], [2.3, 2.7, 3.0, 3.2], [2.3, 0.5, 0.4, 0.3]]
    >>> d = diagnose(train_losses=train, train_labels=[0, 0, 0, 1, 1, 1],
    ...              query_losses=query, query_labels=[0, 0, 1], fractions=[0.34])
    >>> round(d["noise_rate"], 2), round(d["first_difference_share"][1], 2)  # at most 2/3
    (0.33, 0.67)
    >>> d["suspected_noise"][0]["dropped"], d["suspected_noise"][0]["total"]
    ({0: 2, 1: 2}, 4)
    """
    tl, tlab, ql, qlab = _arrays(store, train_losses, train_labels, query_losses, query_labels)
    check_choice("balance", balance, ("equal", "proportional"))
    drop_multiplier = check_float("drop_multiplier", drop_multiplier, min_val=0.0)
    tl = check_real_array(tl, "train_losses")
    ql = check_real_array(ql, "query_losses")
    tlab = check_labels(tlab, "train_labels", tl.shape[0])
    qlab = check_labels(qlab, "query_labels", ql.shape[0])
    if scores is None:
        sc = cld_scores(tl, tlab, ql, qlab).astype(np.float64)
    else:
        sc = np.asarray(scores, dtype=np.float64)
        if sc.shape != (len(tlab),):
            raise ValueError(
                f"scores has shape {sc.shape} but train_losses has {len(tlab)} rows; pass one "
                f"score per training sample, in the same order."
            )
    n, s = tl.shape
    q_hat = estimate_noise_rate(ql)

    classes = np.unique(np.concatenate([tlab, qlab]))
    qcodes = np.searchsorted(classes, qlab)
    traj, counts, global_traj = class_query_trajectories(ql, qcodes, len(classes))
    rose = (np.asarray(ql[:, -1], dtype=np.float64) > np.asarray(ql[:, 0], dtype=np.float64))
    first_share, raw_share, dominant, noise_by_class, quant_by_class = {}, {}, {}, {}, {}
    for code, c in enumerate(classes.tolist()):
        in_query = qcodes == code
        shares = _shares(traj[code]) if counts[code] else None
        first_share[c] = None if shares is None else float(shares[0])
        raw_share[c] = _first_share(traj[code], centre=False) if counts[code] else None
        dominant[c] = (None if shares is None else
                       {"epoch": int(np.argmax(shares)) + 1, "share": float(shares.max())})
        noise_by_class[c] = float(rose[in_query].mean()) if counts[code] else None
        in_train = tlab == c
        if in_train.any():
            quant_by_class[c] = _quantiles(sc[in_train])
    epochs = [v["epoch"] for v in dominant.values() if v is not None]
    # the epoch most classes peak at (ties: the earlier one)
    dominant_epoch = int(np.bincount(epochs).argmax()) if epochs else None

    cuts = []
    for fraction in fractions:
        budgets = class_budgets(tlab, fraction=fraction, balance=balance)
        mask = suspected_noise(sc, tlab, budgets=budgets, noise_rate=q_hat,
                               drop_multiplier=drop_multiplier)
        dropped = {int(c): int(np.count_nonzero(mask & (tlab == c))) for c in budgets}
        cuts.append({"fraction": float(fraction),
                     "budgets": {int(c): int(k) for c, k in budgets.items()},
                     "dropped": dropped, "total": int(mask.sum()),
                     "share": float(mask.mean()) if n else 0.0})

    result = {
        "num_train": int(n),
        "num_query": int(ql.shape[0]),
        "num_snapshots": int(s),
        "num_classes": int(len(classes)),
        "noise_rate": q_hat,
        "noise_rate_by_class": noise_by_class,
        "first_difference_share": first_share,
        "first_difference_share_median": _median(first_share.values()),
        "first_difference_share_max": (s - 2) / (s - 1),
        "first_difference_share_all": _first_share(global_traj),
        "first_difference_raw_share": raw_share,
        "first_difference_raw_share_median": _median(raw_share.values()),
        "dominant_difference": dominant,
        "dominant_epoch": dominant_epoch,
        "dominant_difference_share_median": _median(
            v["share"] if v is not None else None for v in dominant.values()),
        "spearman_with_epoch1_loss": _spearman(sc, np.asarray(tl[:, 1], dtype=np.float64)),
        "spearman_with_dominant_difference": (
            None if dominant_epoch is None else
            _spearman(sc, np.asarray(tl[:, dominant_epoch], dtype=np.float64)
                      - np.asarray(tl[:, dominant_epoch - 1], dtype=np.float64))),
        "score_quantiles": _quantiles(sc),
        "score_quantiles_by_class": quant_by_class,
        "drop_multiplier": drop_multiplier,
        "suspected_noise": cuts,
    }
    result["advice"] = _advice(result)
    return result


def _advice(d: dict) -> str:
    q = d["noise_rate"]
    m = d["drop_multiplier"]
    drop = min(m * q, 1.0)
    sentences = []
    if q >= _NOISY:
        sentences.append(
            f"q_hat = {q:.2f}: {100 * q:.0f}% of the query samples end proxy training with a "
            f"higher loss than they started with, so the labels look noisy (if the query set "
            f"was held out of the training split). noise_adaptive drops the {100 * drop:.0f}% "
            f"lowest-CLD samples of each class as suspected noise (capped so every class meets "
            f"its budget) and draws the coreset uniformly from the rest; CLD top-k also avoids "
            f"that tail, a random coreset keeps its share of the flipped labels.")
    elif q >= _CLEAN:
        sentences.append(
            f"q_hat = {q:.2f}: a few query samples end with a higher loss than they started "
            f"with: some label noise, or hard samples the proxy gets wrong. noise_adaptive drops "
            f"the {100 * drop:.0f}% lowest-CLD samples of each class and is otherwise random.")
    else:
        sentences.append(
            f"q_hat = {q:.2f}: the query set looks clean (or it is a curated clean set, and "
            f"then q_hat says nothing about the training labels); noise_adaptive drops only the "
            f"{100 * drop:.0f}% lowest-CLD samples of each class and is close to random.")
    epoch = d["dominant_epoch"]
    first = epoch == 1
    share = d["first_difference_share_median"] if first else d["dominant_difference_share_median"]
    top = d["first_difference_share_max"]
    rho = d["spearman_with_dominant_difference"]
    which = "first loss difference" if first else f"loss difference of epoch {epoch}"
    carried = (None if share is None else
               f"the {which} carries {100 * share:.0f}% of the variance of the class query "
               f"trajectory (median over classes; at most {100 * top:.0f}% with "
               f"{d['num_snapshots'] - 1} differences)")
    rho_text = ("" if rho is None else
                f" (Spearman {rho:+.2f} with the training loss difference of epoch {epoch})")
    learned = "first" if first else f"by epoch {epoch}"
    ranks = rho is not None and rho <= _RANKS_BY_EPOCH
    leans = rho is not None and rho <= _LEANS_TO_EPOCH
    if d["num_snapshots"] <= 3:
        sentences.append(
            f"With {d['num_snapshots'] - 1} loss difference(s) every CLD score is -1, 0 or +1 and "
            f"the first difference's share says nothing: record more epochs.")
    elif share is None:
        sentences.append("The class query trajectories are flat: every CLD score is 0.")
    elif ranks and q >= _NOISY:
        sentences.append(
            f"{carried[0].upper()}{carried[1:]}: CLD mostly measures how much a sample's loss "
            f"fell in epoch {epoch}{rho_text}; a flipped label's loss does not fall.")
    elif ranks:
        sentences.append(
            f"{carried[0].upper()}{carried[1:]}: CLD mostly measures how much a sample's loss "
            f"fell in epoch {epoch}{rho_text}, so CLD top-k keeps the samples learned {learned}, "
            f"the most typical ones, and covers the class worst; on clean data random or "
            f"noise_adaptive cover the classes better.")
    elif leans and q >= _NOISY:
        sentences.append(
            f"{carried[0].upper()}{carried[1:]}: CLD leans towards the samples learned "
            f"{learned}{rho_text}; a flipped label's loss does not fall.")
    elif leans:
        sentences.append(
            f"{carried[0].upper()}{carried[1:]}: CLD leans towards the samples learned "
            f"{learned}{rho_text}, so CLD top-k favours the most typical samples; on clean data "
            f"random or noise_adaptive may cover the classes better.")
    else:
        sentences.append(
            f"The query trajectory is spread over the epochs: {carried}, and CLD ranks by the "
            f"whole trajectory{rho_text}.")
    if q >= _NOISY:
        sentences.append("Prefer noise_adaptive (or top) over random.")
    elif leans and d["num_snapshots"] > 3:
        sentences.append("Prefer noise_adaptive (or random) over top.")
    return " ".join(sentences)


def _fmt(value, spec: str = ".2f") -> str:
    return "n/a" if value is None else format(value, spec)


def format_diagnosis(d: dict, *, width: int = 100) -> str:
    """The diagnosis of :func:`diagnose` as text for a terminal.

    Examples
    --------
    >>> train = [[2.3, 0.5, 0.3, 0.2], [2.3, 1.9, 1.0, 0.4], [2.3, 2.6, 2.9, 3.0],
    ...          [2.3, 0.4, 0.3, 0.3], [2.3, 1.2, 0.6, 0.3], [2.3, 2.4, 2.8, 3.1]]
    >>> query = [[2.3, 0.6, 0.4, 0.3], [2.3, 2.7, 3.0, 3.2], [2.3, 0.5, 0.4, 0.3]]
    >>> d = diagnose(train_losses=train, train_labels=[0, 0, 0, 1, 1, 1],
    ...              query_losses=query, query_labels=[0, 0, 1], fractions=[0.34])
    >>> print(format_diagnosis(d))  # doctest: +ELLIPSIS
    CLD diagnosis: 6 training and 3 query samples, 4 snapshots, 2 classes
    noise estimate q_hat: 0.33 (query samples whose loss rose during proxy training)
    ...
    """
    lines = [
        f"CLD diagnosis: {d['num_train']:,} training and {d['num_query']:,} query samples, "
        f"{d['num_snapshots']} snapshots, {d['num_classes']} classes",
        f"noise estimate q_hat: {d['noise_rate']:.2f} (query samples whose loss rose during "
        f"proxy training)",
    ]
    shares = [v for v in d["first_difference_share"].values() if v is not None]
    if shares:
        lines.append(
            f"first loss difference's share of the class query trajectory's variance: median "
            f"{d['first_difference_share_median']:.2f} (classes {min(shares):.2f} to "
            f"{max(shares):.2f}; at most {d['first_difference_share_max']:.2f}); all query "
            f"samples {_fmt(d['first_difference_share_all'])}; not centred "
            f"{_fmt(d['first_difference_raw_share_median'])}")
    dominant = [v for v in d["dominant_difference"].values() if v is not None]
    if dominant:
        peaks = np.bincount([v["epoch"] for v in dominant])
        per_epoch = ", ".join(f"epoch {t}: {n}" for t, n in enumerate(peaks) if n)
        lines.append(
            f"largest loss difference of the class query trajectories: {per_epoch} "
            f"class(es); its share median {d['dominant_difference_share_median']:.2f}")
    lines.append(f"Spearman(CLD score, training loss after epoch 1): "
                 f"{_fmt(d['spearman_with_epoch1_loss'], '+.2f')}"
                 + ("" if d["dominant_epoch"] is None else
                    f"; with the loss difference of epoch {d['dominant_epoch']}: "
                    f"{_fmt(d['spearman_with_dominant_difference'], '+.2f')}"))
    quant = "  ".join(f"{k} {_fmt(v, '+.3f')}" for k, v in d["score_quantiles"].items())
    lines.append(f"CLD scores: {quant}")
    lines.append(f"noise cut of noise_adaptive / coverage (drop_multiplier "
                 f"{d['drop_multiplier']:g}):")
    for cut in d["suspected_noise"]:
        per_class = ", ".join(f"{c}: {v}" for c, v in cut["dropped"].items())
        lines.append(f"  coreset {100 * cut['fraction']:g}%: drops {cut['total']:,} of "
                     f"{d['num_train']:,} ({100 * cut['share']:.1f}%); per class {per_class}")
    lines.append(textwrap.fill(d["advice"], width=width))
    return "\n".join(lines)
