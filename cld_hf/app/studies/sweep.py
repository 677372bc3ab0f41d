"""Appendix D.2: the smallest coreset fraction whose target accuracy is within 0.5% of the
full-data accuracy.

One proxy run scores the training set; for every fraction of a sweep, CLD and the other methods
(random by default) select a coreset with the same class budgets
(:func:`cld_hf.app.comparison.select_coresets`), a target is trained from scratch on each for
several seeds, and on the full training set. The tolerance is in accuracy points (0.5% of
test accuracy = 0.005), below the mean full-data accuracy, as the band of the seed's Figure 7b.
"""

from __future__ import annotations

import time

import numpy as np

from ..._validation import check_float
from .common import (DEFAULT_EPOCHS, check_fractions, check_output_dir, check_seeds,
                     cleanup_training_dir, footer, load_study_data, prepare_output_dir,
                     run_info, set_threads, train_on_rows, train_proxy, write_study_results)

__all__ = ["smallest_fraction_within", "fraction_sweep_study", "SWEEP_OUTPUTS"]

CONTEXT_TOLERANCES = (0.01, 0.02)
"""Looser tolerances reported beside the seed's 0.5 points (1 and 2 accuracy points)."""

SWEEP_OUTPUTS = ("trajectories", "selections.arrow", "results.json", "results.md", "_training")
"""What :func:`fraction_sweep_study` writes into its output directory."""


def smallest_fraction_within(fractions, accuracies, full_accuracy: float, *,
                             tolerance: float = 0.005) -> float | None:
    """The smallest fraction whose accuracy is at least ``full_accuracy - tolerance``.

    Parameters
    ----------
    fractions : sequence of float
    accuracies : sequence of float
        Accuracy (in [0, 1]) at each fraction, e.g. the mean over seeds.
    full_accuracy : float
        Accuracy of the model trained on the full training set.
    tolerance : float, default 0.005
        In accuracy units: 0.005 is half a percentage point.

    Returns
    -------
    float or None (no fraction is within the tolerance)

    Examples
    --------
    >>> smallest_fraction_within([0.1, 0.5, 0.9], [0.80, 0.952, 0.96], 0.956)
    0.5
    >>> smallest_fraction_within([0.1, 0.5], [0.80, 0.90], 0.956) is None
    True
    """
    f = np.asarray(fractions, dtype=np.float64)
    a = np.asarray(accuracies, dtype=np.float64)
    if f.shape != a.shape or f.ndim != 1:
        raise ValueError(f"fractions has shape {f.shape} but accuracies has {a.shape}; give one "
                         f"accuracy per fraction.")
    check_float("tolerance", tolerance)
    if tolerance < 0:
        raise ValueError(f"tolerance == {tolerance}, must be >= 0.")
    ok = f[a >= float(full_accuracy) - tolerance]
    return float(ok.min()) if len(ok) else None


def fraction_sweep_study(*, dataset: str = "digits", output_dir="study-fraction-sweep",
                         seed: int = 0, seeds=(0, 1, 2),
                         fractions=(0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9),
                         methods=("cld", "random"), tolerance: float = 0.005,
                         epochs: int = DEFAULT_EPOCHS, batch_size: int = 64,
                         learning_rate: float = 1e-2, query_fraction: float = 0.1,
                         max_train: int | None = None, threads: int | None = None,
                         overwrite_output_dir: bool = False, command: str | None = None) -> dict:
    """Appendix D.2 / Figure 7b at small scale: accuracy against coreset fraction for CLD and
    random coresets, and the smallest fraction within ``tolerance`` of full-data accuracy.

    Parameters
    ----------
    dataset : str, default "digits"
    output_dir : path, default "study-fraction-sweep"
    seed : int, default 0
        Seed of the query split and of the proxy.
    seeds : sequence of int, default (0, 1, 2)
        Target seeds: initial weights ``1000 + seed`` (as ``cld-hf run``) and, for the random
        coresets, the selection seed.
    fractions : sequence of float in (0, 1), default 0.1, 0.2, ..., 0.9
    methods : sequence of str, default ("cld", "random")
        Any of :data:`cld_hf.app.comparison.METHOD_NAMES` whose signals the proxy records
        (:func:`cld_hf.app.comparison.signals_for_methods`).
    tolerance : float, default 0.005
        Half an accuracy point, the seed's band.
    epochs, batch_size, learning_rate
        Of the proxy and of every target.
    query_fraction : float, default 0.1
    max_train : int, optional
    threads : int, optional
    overwrite_output_dir : bool, default False
    command : str, optional

    Returns
    -------
    dict
        ``runs`` (fraction, method, seed, size, accuracy), ``full_data_accuracy`` (per seed),
        ``smallest_fraction[method]`` (at ``tolerance``), ``smallest_fraction_by_tolerance``
        (also at 1 and 2 points), ``table_markdown``, ``markdown``; also in
        ``results.json`` / ``results.md``, the coresets in ``selections.arrow``.

    Examples
    --------
    A tiny run::

        r = fraction_sweep_study(output_dir="sweep-tiny", max_train=150, fractions=[0.5],
                                 seeds=[0], epochs=3)
        r["smallest_fraction"]
    """
    from ..comparison import check_methods, select_coresets, signals_for_methods, write_selections
    from ..results import results_markdown

    started = time.perf_counter()
    seeds = check_seeds(seeds)
    fractions = check_fractions("fractions", fractions)
    methods = check_methods(list(methods))
    if signals_for_methods(methods):
        raise ValueError(
            f"methods {methods} read the signals {list(signals_for_methods(methods))}, which "
            f"this study's proxy does not record; use methods that read only the losses "
            f"(cld, random, cld_noise_adaptive), or compare them with `cld-hf run --methods`."
        )
    check_float("tolerance", tolerance)
    info = run_info(command)
    info["torch_threads"] = set_threads(threads)
    out = check_output_dir(output_dir, SWEEP_OUTPUTS, overwrite=overwrite_output_dir)
    data = load_study_data(dataset, seed=seed, query_fraction=query_fraction,
                           max_train=max_train)
    out = prepare_output_dir(out, SWEEP_OUTPUTS)
    recipe = dict(epochs=epochs, batch_size=batch_size, learning_rate=learning_rate)
    proxy = train_proxy(data, store_dir=out / "trajectories", seed=seed, **recipe)
    coresets = select_coresets(proxy.store, methods, fractions=fractions, seeds=seeds,
                               progress=False)
    write_selections(out / "selections.arrow", coresets)
    runs = []
    for c in coresets:
        acc, _ = train_on_rows(data, c.indices, seed=1000 + c.seed, output_dir=out,
                               predict_on=(), **recipe)
        runs.append({"fraction": c.fraction, "method": c.method, "seed": c.seed,
                     "size": len(c.indices), "accuracy": acc})
    full = [train_on_rows(data, None, seed=1000 + s, output_dir=out, predict_on=(),
                          **recipe)[0] for s in seeds]
    cleanup_training_dir(out)
    full_mean = float(np.mean(full))
    smallest, curve = {}, {}
    for m in methods:
        means = [float(np.mean([r["accuracy"] for r in runs
                                if r["method"] == m and r["fraction"] == f])) for f in fractions]
        curve[m] = dict(zip([f"{f:g}" for f in fractions], means))
        smallest[m] = smallest_fraction_within(fractions, means, full_mean, tolerance=tolerance)
    seconds = time.perf_counter() - started
    table = results_markdown(runs, full_accuracy=full)
    # the seed's tolerance, and looser ones for context (on a small test set 0.5 points is
    # about the seed-to-seed spread of the full-data accuracy)
    tolerances = sorted({tolerance, *CONTEXT_TOLERANCES})
    within = {f"{t:g}": {m: smallest_fraction_within(fractions, list(curve[m].values()),
                                                     full_mean, tolerance=t) for m in methods}
              for t in tolerances}
    lines = ["| method | " + " | ".join(f"within {100 * t:g} point(s)" for t in tolerances)
             + " |", "|---" * (len(tolerances) + 1) + "|"]
    for m in methods:
        cells = [within[f"{t:g}"][m] for t in tolerances]
        lines.append(f"| {m} | " + " | ".join("none" if c is None else f"{100 * c:g}%"
                                               for c in cells) + " |")
    results = {
        "study": "fraction-sweep",
        "data": data.describe(),
        "settings": dict(seed=seed, seeds=seeds, fractions=fractions, methods=methods,
                         tolerance=tolerance, query_fraction=query_fraction,
                         max_train=max_train, **recipe),
        "proxy_test_accuracy": proxy.test_accuracy,
        "runs": runs,
        "full_data_accuracy": full,
        "mean_accuracy": curve,
        "smallest_fraction": smallest,
        "smallest_fraction_by_tolerance": within,
        "table_markdown": table,
        "smallest_markdown": "\n".join(lines),
        "paper": "CLD within 0.5% of full-data accuracy at 75% of ImageNet-1k (ResNet-18)",
        "run": info,
        "seconds": seconds,
    }
    full_std = float(np.std(full)) * 100
    results["markdown"] = (
        f"# Smallest fraction within {100 * tolerance:g}% of full-data accuracy (Appendix D.2):"
        f" {data.dataset}\n\n{len(data.train_labels)} training samples, {len(data.test_labels)}"
        f" test samples; proxy and targets {epochs} epochs; target test accuracy (%), mean ± std"
        f" over seeds {seeds}:\n\n{table}\n\nThe smallest fraction whose mean accuracy is "
        f"within the tolerance of the full-data mean ({100 * full_mean:.2f}%):\n\n"
        f"{results['smallest_markdown']}\n\nOn "
        f"{len(data.test_labels)} test samples one sample is {100 / len(data.test_labels):.2f} "
        f"points; the full-data accuracy varies by {full_std:.2f} points (std) across seeds. "
        f"The seed: CLD within 0.5% at 75% of ImageNet-1k (ResNet-18).\n\n"
        f"{footer(info, seconds)}\n")
    write_study_results(out, results, results["markdown"])
    return results
