"""Appendix F.1: prediction brittleness. Remove the top-k training samples, retrain, count the
query predictions that flip.

The seed removes "the most impactful data points identified by their CLD scores" and compares
with the top-k of TDA scores (TracIn, TRAK, ...), on a query set of 200 samples, retraining 5
times (Figure 8b). Here each method gives one score per training sample and the ``k`` highest
are removed from the training set (ties to the lower row):

- ``cld``: the CLD score (Definition 1: correlation with the mean loss differences of the query
  samples of the sample's class), as the appendix says;
- ``cld_inf1``: the mean of CLD_inf1 over the query samples of the sample's class;
- ``tracin``: the mean last-layer TracInCP over the query samples of the sample's class (the
  same class-level aggregation, so that CLD and TracIn rank the same kind of influence);
- ``random``: k samples drawn at random (a new draw for every retraining seed).

A model is retrained from scratch on the rest with each seed, and its predictions on the query
set (and the test set) are compared with those of the model trained on the full training set
with the same seed. The floor: two full-data models of different seeds also disagree on some
predictions.
"""

from __future__ import annotations

import itertools
import time

import numpy as np

from ..._validation import check_int, check_labels, check_real_array
from .common import (DEFAULT_EPOCHS, check_output_dir, check_seeds, cleanup_training_dir,
                     footer, load_study_data, prepare_output_dir, run_info, set_threads,
                     train_on_rows, train_proxy, write_study_results)

__all__ = ["class_influence", "top_k_rows", "flip_fraction", "brittleness_study",
           "BRITTLENESS_METHODS", "BRITTLENESS_OUTPUTS"]

BRITTLENESS_METHODS = ("cld", "cld_inf1", "tracin", "random")
"""The removal rules :func:`brittleness_study` knows."""

BRITTLENESS_OUTPUTS = ("trajectories", "results.json", "results.md", "_training")
"""What :func:`brittleness_study` writes into its output directory."""


def class_influence(attribution, train_labels, query_labels) -> np.ndarray:
    """Each training sample's mean attribution over the query samples of its own class.

    Parameters
    ----------
    attribution : array of shape (N, Q)
    train_labels : int array of shape (N,)
    query_labels : int array of shape (Q,)

    Returns
    -------
    numpy.ndarray of shape (N,), float64; 0.0 for a class without query samples.

    Examples
    --------
    >>> a = np.array([[1.0, 3.0, 5.0], [2.0, 4.0, 6.0]])
    >>> class_influence(a, [0, 1], [0, 0, 1]).tolist()
    [2.0, 6.0]
    """
    a = check_real_array(attribution, "attribution", layout="(training rows, query rows)")
    tl = check_labels(train_labels, "train_labels", a.shape[0], against="attribution's rows")
    ql = check_labels(query_labels, "query_labels", a.shape[1], against="attribution's columns")
    out = np.zeros(a.shape[0], dtype=np.float64)
    for c in np.unique(tl):
        cols = np.flatnonzero(ql == c)
        if len(cols):
            rows = np.flatnonzero(tl == c)
            out[rows] = a[np.ix_(rows, cols)].astype(np.float64).mean(axis=1)
    return out


def top_k_rows(scores, k: int) -> np.ndarray:
    """The rows of the ``k`` highest scores, highest first; ties go to the lower row.

    Examples
    --------
    >>> top_k_rows([0.5, 0.9, 0.5, 0.1], 3).tolist()
    [1, 0, 2]
    """
    s = check_real_array(scores, "scores", ndim=1, layout="(training samples,)")
    k = check_int("k", k, min_val=0, max_val=len(s))
    if not np.isfinite(s).all():
        raise ValueError("scores holds NaN or inf values; compute them from finite losses.")
    return np.argsort(-s.astype(np.float64), kind="stable")[:k].astype(np.int64)


def flip_fraction(reference, predictions) -> float:
    """The share of samples whose predicted class differs from the reference's.

    Examples
    --------
    >>> flip_fraction([0, 1, 2, 3], [0, 1, 0, 0])
    0.5
    """
    r, p = np.asarray(reference), np.asarray(predictions)
    if r.shape != p.shape or r.ndim != 1:
        raise ValueError(f"reference has shape {r.shape} but predictions has {p.shape}; give "
                         f"one predicted class per sample in both.")
    return float((r != p).mean()) if len(r) else 0.0


def _table(runs, methods, ks, key: str) -> str:
    lines = ["| removed by | " + " | ".join(f"k = {k}" for k in ks) + " |",
             "|---" * (len(ks) + 1) + "|"]
    for m in methods:
        cells = []
        for k in ks:
            v = [100 * r[key] for r in runs if r["method"] == m and r["k"] == k]
            cells.append(f"{np.mean(v):.2f} ± {np.std(v):.2f}")
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def brittleness_study(*, dataset: str = "digits", output_dir="study-brittleness", seed: int = 0,
                      seeds=(0, 1, 2, 3, 4), ks=(50, 100, 200),
                      methods=("cld", "tracin", "random"), epochs: int = DEFAULT_EPOCHS,
                      batch_size: int = 64, learning_rate: float = 1e-2,
                      query_fraction: float = 0.1, max_train: int | None = None,
                      threads: int | None = None, overwrite_output_dir: bool = False,
                      command: str | None = None) -> dict:
    """Appendix F.1 / Figure 8b at small scale: the share of query predictions that flip when
    the top-``k`` training samples of each method are removed and the model retrained.

    Parameters
    ----------
    dataset : str, default "digits"
    output_dir : path, default "study-brittleness"
    seed : int, default 0
        Seed of the query split, the proxy and the random removals.
    seeds : sequence of int, default (0, 1, 2, 3, 4)
        Retraining seeds (initial weights ``1000 + seed``); the full-data reference of each is
        trained with the same seed.
    ks : sequence of int, default (50, 100, 200)
        Numbers of training samples removed.
    methods : sequence of str, default ("cld", "tracin", "random")
        From :data:`BRITTLENESS_METHODS`.
    epochs, batch_size, learning_rate
        Of the proxy and of every retraining.
    query_fraction : float, default 0.1
    max_train : int, optional
    threads : int, optional
    overwrite_output_dir : bool, default False
    command : str, optional

    Returns
    -------
    dict
        ``runs`` (method, k, seed, removed rows, query/test flip fractions and accuracies),
        ``full`` (per seed), ``seed_floor`` (flips between full-data models of two seeds),
        ``table_markdown`` (query flips), ``test_table_markdown``, ``markdown``; also in
        ``results.json`` / ``results.md``.

    Examples
    --------
    A tiny run::

        r = brittleness_study(output_dir="brittle-tiny", max_train=150, ks=[10], seeds=[0],
                              epochs=3)
        print(r["table_markdown"])
    """
    from ...attribution import cld_attribution

    started = time.perf_counter()
    seeds = check_seeds(seeds)
    if isinstance(methods, str):
        raise TypeError(f"methods == {methods!r}: pass a list, e.g. [{methods!r}].")
    methods = list(methods)
    for m in methods:
        if m not in BRITTLENESS_METHODS:
            raise ValueError(f"methods contains {m!r}; each must be one of "
                             f"{list(BRITTLENESS_METHODS)}.")
    if not methods or len(set(methods)) != len(methods):
        raise ValueError(f"methods == {methods}: give each of {list(BRITTLENESS_METHODS)} at "
                         f"most once, at least one.")
    if isinstance(ks, (int, np.integer)):
        raise TypeError(f"ks == {ks!r}: pass a list, e.g. [{ks}].")
    ks = sorted({check_int(f"ks[{i}]", k, min_val=1) for i, k in enumerate(ks)})
    if not ks:
        raise ValueError("ks is empty; give at least one number of samples to remove, e.g. [50].")
    info = run_info(command)
    info["torch_threads"] = set_threads(threads)
    out = check_output_dir(output_dir, BRITTLENESS_OUTPUTS, overwrite=overwrite_output_dir)
    data = load_study_data(dataset, seed=seed, query_fraction=query_fraction,
                           max_train=max_train)
    n = len(data.train_labels)
    if ks[-1] >= n:
        raise ValueError(f"ks contains {ks[-1]}, but the training set has {n} samples; remove "
                         f"fewer than {n}.")
    out = prepare_output_dir(out, BRITTLENESS_OUTPUTS)
    recipe = dict(epochs=epochs, batch_size=batch_size, learning_rate=learning_rate)
    proxy = train_proxy(data, store_dir=out / "trajectories", seed=seed,
                        features="tracin" in methods, **recipe)
    scores = {}
    if "cld" in methods:
        scores["cld"] = proxy.store.scores().astype(np.float64)
    if "cld_inf1" in methods:
        a = cld_attribution(proxy.store.train_losses(), proxy.store.query_losses())
        scores["cld_inf1"] = class_influence(a, data.train_labels, data.query_labels)
    if "tracin" in methods:
        scores["tracin"] = class_influence(proxy.tracin(data), data.train_labels,
                                           data.query_labels)

    def predictions(rows, s):
        acc, logits = train_on_rows(data, rows, seed=1000 + s, output_dir=out,
                                    predict_on=("query", "test"), **recipe)
        return acc, {k: v.argmax(axis=1) for k, v in logits.items()}

    full = {s: predictions(None, s) for s in seeds}
    runs = []
    for m in methods:
        for k in ks:
            for s in seeds:
                if m == "random":
                    removed = np.random.default_rng([seed, 4, k, s]).choice(n, size=k,
                                                                            replace=False)
                else:
                    removed = top_k_rows(scores[m], k)
                keep = np.setdiff1d(np.arange(n), removed)
                acc, pred = predictions(keep, s)
                ref = full[s][1]
                runs.append({
                    "method": m, "k": k, "seed": s, "removed": np.sort(removed),
                    "query_flips": flip_fraction(ref["query"], pred["query"]),
                    "test_flips": flip_fraction(ref["test"], pred["test"]),
                    "query_accuracy": float((pred["query"] == data.query_labels).mean()),
                    "test_accuracy": acc,
                })
    cleanup_training_dir(out)
    pairs = list(itertools.combinations(seeds, 2))
    floor = {split: (float(np.mean([flip_fraction(full[a][1][split], full[b][1][split])
                                    for a, b in pairs])) if pairs else None)
             for split in ("query", "test")}
    seconds = time.perf_counter() - started
    results = {
        "study": "brittleness",
        "data": data.describe(),
        "settings": dict(seed=seed, seeds=seeds, ks=ks, methods=methods,
                         query_fraction=query_fraction, max_train=max_train, **recipe),
        "proxy_test_accuracy": proxy.test_accuracy,
        "full": {str(s): {"test_accuracy": full[s][0],
                          "query_accuracy": float((full[s][1]["query"]
                                                   == data.query_labels).mean())}
                 for s in seeds},
        "seed_floor": floor,
        "runs": runs,
        "removed_class_counts": {
            m: {str(k): np.bincount(data.train_labels[top_k_rows(scores[m], k)],
                                    minlength=data.num_labels) for k in ks}
            for m in scores},
        "table_markdown": _table(runs, methods, ks, "query_flips"),
        "test_table_markdown": _table(runs, methods, ks, "test_flips"),
        "run": info,
        "seconds": seconds,
    }
    floor_text = ("" if floor["query"] is None else
                  f" Floor: two full-data models of different seeds disagree on "
                  f"{100 * floor['query']:.2f}% of the query and {100 * floor['test']:.2f}% of "
                  f"the test predictions.")
    results["markdown"] = (
        f"# Prediction brittleness (Appendix F.1, Figure 8b): {data.dataset}\n\n"
        f"{n} training, {len(data.query_labels)} query, {len(data.test_labels)} test samples; "
        f"the k top-scoring training samples removed, the model retrained from scratch "
        f"({epochs} epochs) with seeds {seeds}; flips against the full-data model of the same "
        f"seed, mean ± std over the seeds (%).\n\nQuery predictions that flip:\n\n"
        f"{results['table_markdown']}\n\nTest predictions that flip:\n\n"
        f"{results['test_table_markdown']}\n\n{floor_text.strip()}\n\n{footer(info, seconds)}\n")
    write_study_results(out, results, results["markdown"])
    return results
