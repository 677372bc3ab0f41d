"""Appendix F: CLD_inf1 as training data attribution, judged by the linear datamodeling score.

The linear datamodeling score (LDS, Park et al., 2023; the seed's eq. 65 and Figure 8a): draw
``M`` random subsets ``S_j`` of ``ceil(alpha N)`` training samples, train a model on each, and
measure an output ``f(z_q, S_j)`` on every query sample. An attribution ``tau(z_q, z)`` predicts
the group effect ``g(z_q, S_j) = sum_{z in S_j} tau(z_q, z)``; the LDS of query sample ``z_q``
is the Spearman correlation over the subsets of ``g`` with ``f``, and the study reports its mean
over the query samples. A perfect additive attribution scores 1, a random one about 0.

Here ``f`` is the negative cross-entropy loss of the query sample (a positive attribution
means training on ``z`` lowers the loss of ``z_q``, for CLD_inf1 and TracIn alike). Park et
al.'s margin ``m = logit_y - logsumexp(other logits)`` gives the same LDS: the loss is
``log(1 + exp(-m))``, a decreasing function of the margin, and Spearman's correlation only
sees ranks. The seed measured query accuracy, which on digits is 1 for nearly every query
sample and subset, so its Spearman correlation is mostly undefined.

:func:`linear_datamodeling_score` and :func:`sample_subsets` are NumPy only;
:func:`lds_study` trains the models.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path

import numpy as np

from ..._validation import check_int, check_real_array
from .common import (DEFAULT_EPOCHS, check_fractions, check_output_dir, check_seeds,
                     cleanup_training_dir, footer, load_study_data, prepare_output_dir,
                     run_info, set_threads, train_on_rows, train_proxy, write_study_results)

logger = logging.getLogger(__name__)

__all__ = ["sample_subsets", "spearman_columns", "linear_datamodeling_score", "bootstrap_lds",
           "query_outputs",
           "lds_study", "LDS_OUTPUTS"]

LDS_OUTPUTS = ("trajectories", "attributions.safetensors", "lds_subsets.arrow", "results.json",
               "results.md", "_training")
"""What :func:`lds_study` writes into its output directory (the only paths it removes)."""

METHOD_LABELS = {
    "cld_inf1": "CLD_inf1 (losses only)",
    "tracin": "TracIn, last layer, every epoch",
    "tracin_final": "TracIn, last layer, final checkpoint",
    "random": "random scores (20 draws: mean ± std)",
}


def sample_subsets(num_train: int, alpha: float, num_subsets: int, *, seed) -> np.ndarray:
    """``num_subsets`` uniform random subsets of ``ceil(alpha * num_train)`` training rows each,
    as a boolean mask ``(num_subsets, num_train)``.

    Parameters
    ----------
    num_train : int
    alpha : float in (0, 1)
        The sampling ratio.
    num_subsets : int
    seed : int or sequence of int
        For ``numpy.random.default_rng``.

    Examples
    --------
    >>> mask = sample_subsets(10, 0.25, 3, seed=0)
    >>> mask.shape, mask.sum(axis=1).tolist()
    ((3, 10), [3, 3, 3])
    >>> bool((mask == sample_subsets(10, 0.25, 3, seed=0)).all())
    True
    """
    n = check_int("num_train", num_train, min_val=1)
    m = check_int("num_subsets", num_subsets, min_val=1)
    (alpha,) = check_fractions("alpha", [alpha])
    size = min(n, max(1, math.ceil(alpha * n)))
    rng = np.random.default_rng(seed)
    mask = np.zeros((m, n), dtype=bool)
    for j in range(m):
        mask[j, rng.permutation(n)[:size]] = True
    return mask


def spearman_columns(x, y) -> np.ndarray:
    """Spearman's rank correlation of each column of ``x`` with the same column of ``y``
    (average ranks for ties); ``NaN`` where either column is constant.

    Examples
    --------
    >>> x = np.array([[1.0, 1.0], [2.0, 1.0], [3.0, 1.0]])
    >>> y = np.array([[10.0, 3.0], [30.0, 2.0], [20.0, 1.0]])
    >>> spearman_columns(x, y).round(3).tolist()
    [0.5, nan]
    """
    from scipy.stats import rankdata

    a = check_real_array(x, "x", layout="(subsets, query samples)")
    b = check_real_array(y, "y", layout="(subsets, query samples)")
    if a.shape != b.shape:
        raise ValueError(f"x has shape {a.shape} but y has {b.shape}; pass one value per subset "
                         f"and query sample in both.")
    ra = rankdata(a, axis=0)
    rb = rankdata(b, axis=0)
    ra -= ra.mean(axis=0)
    rb -= rb.mean(axis=0)
    num = (ra * rb).sum(axis=0)
    den = np.sqrt((ra * ra).sum(axis=0) * (rb * rb).sum(axis=0))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


def linear_datamodeling_score(attribution, subsets, outputs) -> np.ndarray:
    """The LDS of every query sample: Spearman over the subsets of the summed attribution
    ``g_j = sum_{m in S_j} attribution[m, q]`` with the measured ``outputs[j, q]``.

    The attribution is read as predicting *larger* outputs: pass the negative loss (or a margin,
    or an accuracy) as ``outputs``.

    Parameters
    ----------
    attribution : array of shape (N, Q)
        ``attribution[m, q]``: the score of training sample ``m`` for query sample ``q``.
    subsets : bool array of shape (M, N), or a sequence of M arrays of training rows
        The training samples of each subset.
    outputs : array of shape (M, Q)
        The output of the model trained on subset ``j`` for query sample ``q`` (averaged over
        retraining seeds).

    Returns
    -------
    numpy.ndarray of shape (Q,)
        ``NaN`` where the outputs (or the predictions) do not vary over the subsets.

    Raises
    ------
    ValueError
        On mismatched shapes, fewer than 3 subsets, or NaN/inf values.

    Examples
    --------
    An additive model: each query output is the sum over the subset of a known per-sample
    effect, so that effect has LDS 1, its negative -1.

    >>> rng = np.random.default_rng(0)
    >>> tau = rng.normal(size=(20, 2))
    >>> mask = sample_subsets(20, 0.5, 30, seed=1)
    >>> outputs = mask @ tau
    >>> linear_datamodeling_score(tau, mask, outputs).round(6).tolist()
    [1.0, 1.0]
    >>> linear_datamodeling_score(-tau, mask, outputs).round(6).tolist()
    [-1.0, -1.0]
    """
    a = check_real_array(attribution, "attribution", layout="(training rows, query rows)")
    n, q = a.shape
    if not np.isfinite(a).all():
        raise ValueError("attribution holds NaN or inf values; compute it from finite signals.")
    if isinstance(subsets, np.ndarray) and subsets.dtype == bool:
        mask = subsets
        if mask.ndim != 2 or mask.shape[1] != n:
            raise ValueError(f"subsets has shape {mask.shape}; a mask must be (M, N) with "
                             f"N={n} (the rows of attribution).")
    else:
        mask = np.zeros((len(subsets), n), dtype=bool)
        for j, rows in enumerate(subsets):
            rows = np.asarray(rows)
            if rows.size and (not np.issubdtype(rows.dtype, np.integer) or rows.min() < 0
                              or rows.max() >= n):
                raise ValueError(f"subsets[{j}] must hold training rows in [0, {n - 1}], got "
                                 f"{rows[:10].tolist()}.")
            mask[j, rows] = True
    out = check_real_array(outputs, "outputs", layout="(subsets, query rows)")
    if out.shape != (mask.shape[0], q):
        raise ValueError(f"outputs has shape {out.shape}, expected {(mask.shape[0], q)} "
                         f"(one row per subset, one column per query sample of attribution).")
    if mask.shape[0] < 3:
        raise ValueError(f"subsets holds {mask.shape[0]} subset(s); a rank correlation needs at "
                         f"least 3 (the seed uses 100).")
    if not np.isfinite(out).all():
        raise ValueError("outputs holds NaN or inf values; measure them again.")
    predicted = mask.astype(np.float64) @ a.astype(np.float64)
    return spearman_columns(predicted, out)


def query_outputs(logits, labels) -> dict[str, np.ndarray]:
    """Per query sample: ``loss`` (cross entropy), ``margin`` (``logit_y - logsumexp`` of the
    other logits, Park et al.'s output) and ``correct``.

    Examples
    --------
    >>> out = query_outputs(np.array([[2.0, 0.0], [0.0, 0.0]]), np.array([0, 1]))
    >>> out["loss"].round(4).tolist(), out["margin"].tolist(), out["correct"].tolist()
    ([0.1269, 0.6931], [2.0, 0.0], [True, False])
    """
    z = np.asarray(logits, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    rows = np.arange(len(y))
    top = z.max(axis=1, keepdims=True)
    lse = np.log(np.exp(z - top).sum(axis=1)) + top[:, 0]
    others = z.copy()
    others[rows, y] = -np.inf
    otop = others.max(axis=1, keepdims=True)
    olse = np.log(np.exp(others - otop).sum(axis=1)) + otop[:, 0]
    return {"loss": lse - z[rows, y], "margin": z[rows, y] - olse,
            "correct": z.argmax(axis=1) == y}


def _summary(values: np.ndarray) -> dict:
    ok = values[np.isfinite(values)]
    return {"mean": float(ok.mean()) if len(ok) else None,
            "sem_queries": float(ok.std(ddof=1) / np.sqrt(len(ok))) if len(ok) > 1 else None,
            "num_defined": int(len(ok)), "num_queries": int(len(values))}


def bootstrap_lds(attribution, mask, outputs, *, num_resamples: int = 200, seed=0) -> dict:
    """The mean LDS over the query samples, recomputed on subsets resampled with replacement:
    its standard deviation is the standard error that counts the sampling of the subsets (the
    query samples share their subsets, so the spread over queries understates it).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> tau = rng.normal(size=(30, 4)); mask = sample_subsets(30, 0.5, 20, seed=1)
    >>> b = bootstrap_lds(tau, mask, mask @ tau + rng.normal(size=(20, 4)), seed=0)
    >>> 0.0 < b["se"] < 0.2, len(b["means"])
    (True, 200)
    """
    check_int("num_resamples", num_resamples, min_val=2)
    linear_datamodeling_score(attribution, mask, outputs)  # the checks
    predicted = np.asarray(mask, dtype=np.float64) @ np.asarray(attribution, dtype=np.float64)
    out = np.asarray(outputs, dtype=np.float64)
    rng = np.random.default_rng(seed)
    m = predicted.shape[0]
    means = []
    for _ in range(num_resamples):
        pick = rng.integers(0, m, size=m)
        v = spearman_columns(predicted[pick], out[pick])
        means.append(float(np.nanmean(v)) if np.isfinite(v).any() else np.nan)
    means = np.asarray(means)
    return {"se": float(np.nanstd(means, ddof=1)), "means": means}


RANDOM_DRAWS = 20
"""Random attributions drawn for the baseline row: its mean and spread over the draws."""


def _random_scores(seed: int, draw: int, n: int, q: int) -> np.ndarray:
    return np.random.default_rng([seed, 2, draw]).standard_normal((n, q))


def _table(results: dict, alphas) -> str:
    lines = ["| attribution | " + " | ".join(f"alpha = {a:g}" for a in alphas) + " |",
             "|---" * (len(alphas) + 1) + "|"]
    for method, label in METHOD_LABELS.items():
        cells = []
        for a in alphas:
            s = results["lds"][method][f"{a:g}"]
            cells.append("-" if s["mean"] is None else f"{s['mean']:.3f} ± {s['se']:.3f}")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _write_subsets(path: Path, rows: list[dict]) -> None:
    import pyarrow as pa

    from ...fileio import atomic_write_arrow

    table = pa.table({
        "alpha": pa.array([r["alpha"] for r in rows], pa.float64()),
        "subset": pa.array([r["subset"] for r in rows], pa.int64()),
        "seed": pa.array([r["seed"] for r in rows], pa.int64()),
        "indices": pa.array([np.flatnonzero(r["mask"]).astype(np.int64) for r in rows],
                            pa.list_(pa.int64())),
        "test_accuracy": pa.array([r["test_accuracy"] for r in rows], pa.float64()),
        "query_loss": pa.array([r["loss"].astype(np.float32) for r in rows],
                               pa.list_(pa.float32())),
        "query_margin": pa.array([r["margin"].astype(np.float32) for r in rows],
                                 pa.list_(pa.float32())),
    })
    atomic_write_arrow(path, table)


def lds_study(*, dataset: str = "digits", output_dir="study-lds", seed: int = 0,
              alphas=(0.25, 0.5, 0.75), num_subsets: int = 40, seeds=(0,),
              epochs: int = DEFAULT_EPOCHS, batch_size: int = 64, learning_rate: float = 1e-2,
              query_fraction: float = 0.1, max_train: int | None = None,
              threads: int | None = None, overwrite_output_dir: bool = False,
              command: str | None = None) -> dict:
    """Appendix F / Figure 8a at small scale: the LDS of CLD_inf1, last-layer TracIn and random
    scores, at several sampling ratios.

    1. One proxy trained on all the training samples with ``CLDCallback`` (losses before
       training and after every epoch) and :class:`~cld_hf.app.studies.EpochFeatures` (softmax
       and penultimate features of the training and query samples after every epoch, and the
       epoch's mean learning rate; the recorder records those only at the end of training).
    2. Attributions ``(N, Q)`` toward every query sample: CLD_inf1
       (:func:`cld_hf.attribution.cld_attribution`), TracInCP on the last layer over the epoch
       checkpoints weighted by the learning rate, TracIn at the final checkpoint only
       (:func:`cld_hf.attribution.tracin_last_layer`), and standard-normal random scores
       (20 draws, whose spread is the band of chance).
    3. For each ``alpha``, ``num_subsets`` random subsets of ``ceil(alpha N)`` samples; a model
       trained from scratch on each, once per seed in ``seeds`` (initial weights ``1000 +
       seed``, as ``cld-hf run``'s targets), the same recipe as the proxy; its loss and margin
       on every query sample, averaged over the seeds.
    4. The LDS (:func:`linear_datamodeling_score`) of each attribution, per query sample, and
       its mean ± standard error over the query samples.

    Parameters
    ----------
    dataset : str, default "digits"
    output_dir : path, default "study-lds"
    seed : int, default 0
        Seed of the query split, the proxy, the subsets and the random scores.
    alphas : sequence of float in (0, 1), default (0.25, 0.5, 0.75)
    num_subsets : int, default 40
        Subsets per alpha (the seed: 100).
    seeds : sequence of int, default (0,)
        Retraining seeds per subset (the seed: R = 10).
    epochs, batch_size, learning_rate
        Of the proxy and of every subset model (AdamW, linear decay).
    query_fraction : float, default 0.1
    max_train : int, optional
        Subsample the training split (small runs and tests).
    threads : int, optional
        torch CPU threads (default: one fewer than the cores).
    overwrite_output_dir : bool, default False
        Replace a previous study's outputs (:data:`LDS_OUTPUTS` only).
    command : str, optional
        The command line, for the results.

    Returns
    -------
    dict
        ``lds[method][alpha]`` with ``mean`` (over the query samples), ``se`` (bootstrap over
        the subsets, :func:`bootstrap_lds`), ``sem_queries``, ``num_defined``, ``per_query``;
        ``table_markdown`` and ``markdown`` (the
        ``results.md`` text), run information. Also written to ``results.json``; the subsets
        and their query losses to ``lds_subsets.arrow``, the attributions to
        ``attributions.safetensors``, the proxy's store to ``trajectories/``.

    Examples
    --------
    A tiny run (about 20 s)::

        r = lds_study(output_dir="lds-tiny", max_train=150, alphas=[0.5], num_subsets=5,
                      epochs=3)
        print(r["table_markdown"])
    """
    from safetensors.numpy import save_file

    from ...attribution import cld_attribution

    started = time.perf_counter()
    alphas = check_fractions("alphas", alphas)
    num_subsets = check_int("num_subsets", num_subsets, min_val=3)
    seeds = check_seeds(seeds)
    epochs = check_int("epochs", epochs, min_val=2)
    info = run_info(command)
    n_threads = set_threads(threads)
    info["torch_threads"] = n_threads
    out = check_output_dir(output_dir, LDS_OUTPUTS, overwrite=overwrite_output_dir)
    data = load_study_data(dataset, seed=seed, query_fraction=query_fraction,
                           max_train=max_train)
    out = prepare_output_dir(out, LDS_OUTPUTS)
    recipe = dict(epochs=epochs, batch_size=batch_size, learning_rate=learning_rate)
    proxy = train_proxy(data, store_dir=out / "trajectories", seed=seed, features=True,
                        **recipe)
    n, q = len(data.train_labels), len(data.query_labels)
    t0 = time.perf_counter()
    attributions = {
        "cld_inf1": cld_attribution(proxy.store.train_losses(), proxy.store.query_losses()),
    }
    attribution_seconds = {"cld_inf1": time.perf_counter() - t0}
    for name, final in (("tracin", False), ("tracin_final", True)):
        t0 = time.perf_counter()
        attributions[name] = proxy.tracin(data, final_only=final)
        attribution_seconds[name] = time.perf_counter() - t0
    attributions["random"] = _random_scores(seed, 0, n, q)
    save_file({k: np.ascontiguousarray(v, dtype=np.float32) for k, v in attributions.items()},
              str(out / "attributions.safetensors"))

    rows, per_alpha = [], {}
    for alpha in alphas:
        mask = sample_subsets(n, alpha, num_subsets, seed=[seed, 1, round(alpha * 10**6)])
        losses = np.zeros((num_subsets, q))
        for j in range(num_subsets):
            for s in seeds:
                acc, logits = train_on_rows(data, np.flatnonzero(mask[j]), seed=1000 + s,
                                            output_dir=out, **recipe)
                o = query_outputs(logits["query"], data.query_labels)
                losses[j] += o["loss"] / len(seeds)
                rows.append({"alpha": alpha, "subset": j, "seed": s, "mask": mask[j],
                             "test_accuracy": acc, "loss": o["loss"], "margin": o["margin"]})
            logger.info("LDS alpha %g: subset %d/%d trained", alpha, j + 1, num_subsets)
        per_alpha[alpha] = (mask, losses)
    cleanup_training_dir(out)
    _write_subsets(out / "lds_subsets.arrow", rows)

    lds = {}
    for method, a in attributions.items():
        lds[method] = {}
        for alpha, (mask, losses) in per_alpha.items():
            per_query = linear_datamodeling_score(a, mask, -losses)
            cell = dict(_summary(per_query), per_query=per_query)
            if method == "random":  # the spread of a score that knows nothing: many draws
                draws = [cell["mean"]] + [float(np.nanmean(linear_datamodeling_score(
                    _random_scores(seed, d, n, q), mask, -losses)))
                    for d in range(1, RANDOM_DRAWS)]
                cell.update(mean=float(np.mean(draws)), se=float(np.std(draws, ddof=1)),
                            draws=draws)
            else:
                cell["se"] = bootstrap_lds(a, mask, -losses,
                                           seed=[seed, 5, round(alpha * 10**6)])["se"]
            lds[method][f"{alpha:g}"] = cell
    seconds = time.perf_counter() - started
    results = {
        "study": "lds",
        "data": data.describe(),
        "settings": dict(seed=seed, alphas=alphas, num_subsets=num_subsets, seeds=seeds,
                         query_fraction=query_fraction, max_train=max_train, **recipe),
        "proxy_test_accuracy": proxy.test_accuracy,
        "tracin_learning_rates": proxy.checkpoints.learning_rates,
        "attribution_seconds": attribution_seconds,
        "subset_test_accuracy": {f"{a:g}": float(np.mean([r["test_accuracy"] for r in rows
                                                          if r["alpha"] == a])) for a in alphas},
        "lds": lds,
        "run": info,
        "seconds": seconds,
    }
    results["table_markdown"] = _table(results, alphas)
    results["markdown"] = (
        f"# Linear datamodeling score (Appendix F, Figure 8a): {data.dataset}\n\n"
        f"{n} training and {q} query samples; proxy test accuracy "
        f"{100 * proxy.test_accuracy:.2f}%. {num_subsets} random subsets per alpha, "
        f"{len(seeds)} training run(s) per subset, {epochs} epochs. LDS per query sample: "
        f"Spearman over the subsets of the summed attribution with the query sample's "
        f"negative loss; its mean over the {q} query samples ± the standard error from 200 "
        f"bootstrap resamples of the subsets (random scores: mean ± std over "
        f"{RANDOM_DRAWS} draws, the band of chance).\n\n"
        f"{results['table_markdown']}\n\n"
        f"(With one run per subset, Park et al.'s margin gives the same LDS: the loss is a "
        f"decreasing function of it.) "
        f"Mean test accuracy of the subset models: "
        + ", ".join(f"alpha {a}: {100 * v:.1f}%" for a, v in
                    results["subset_test_accuracy"].items())
        + f".\n\n{footer(info, seconds)}\n")
    write_study_results(out, results, results["markdown"])
    return results
