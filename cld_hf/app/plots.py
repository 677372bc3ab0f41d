"""Plots of CLD scores, coresets, loss trajectories and coreset accuracy (matplotlib, PNG files).

Each ``plot_*`` function writes one PNG to ``path`` and returns the path; with ``path=None`` it
returns the matplotlib ``Figure`` instead (for notebooks and tests). Every title says what the
plot shows and why that choice; every axis is labelled.

matplotlib is imported inside each function (``pip install "cld-hf[plots]"``), with the
non-interactive Agg backend, so plotting works on a machine with no screen.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np

__all__ = [
    "plot_score_distribution",
    "plot_class_trajectories",
    "plot_accuracy_vs_fraction",
    "plot_coreset_composition",
    "plot_kept_and_dropped",
    "choose_trajectory_class",
    "class_thresholds",
]

KEPT_COLOR, DROPPED_COLOR, NOISY_COLOR = "tab:green", "tab:red", "tab:red"


def _pyplot():
    try:
        import matplotlib
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(
            "Plotting needs matplotlib: pip install 'cld-hf[plots]' (or pip install matplotlib)."
        ) from err
    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _finish(plt, fig, path, **adjust):
    """Write ``fig`` to ``path`` (PNG, parents created) and close it; ``path=None``: return it.
    ``adjust``: ``fig.subplots_adjust`` options applied after the tight layout."""
    fig.tight_layout()
    if adjust:
        fig.subplots_adjust(**adjust)
    if path is None:
        return fig
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _class_name(c, class_names):
    return str(class_names[c]) if class_names is not None and 0 <= c < len(class_names) else str(c)


def _pct(f: float) -> str:
    return f"{100 * f:.3g}%"


def _largest_classes(labels, max_classes):
    classes, counts = np.unique(labels, return_counts=True)
    if len(classes) > max_classes:
        classes = np.sort(classes[np.argsort(-counts, kind="stable")[:max_classes]])
    return classes


def class_thresholds(scores, labels, selected) -> dict[int, float]:
    """Per class, the lowest score among the ``selected`` rows: a top-k coreset keeps exactly
    the samples scoring at least that much.

    Examples
    --------
    >>> class_thresholds([0.9, 0.1, 0.5, 0.7], [0, 0, 1, 1], [0, 2, 3])
    {0: 0.9, 1: 0.5}
    """
    scores, labels = np.asarray(scores, dtype=np.float64), np.asarray(labels)
    selected = np.asarray(selected, dtype=np.int64)
    out = {}
    for c in np.unique(labels[selected]):
        out[int(c)] = float(scores[selected][labels[selected] == c].min())
    return out


def plot_score_distribution(scores, labels, path, *, class_names=None, thresholds=None,
                            noisy=None, max_classes: int = 20, max_points: int = 400,
                            seed: int = 0, title: str | None = None):
    """The whole CLD score distribution of each class: a violin, every sample as a dot (at most
    ``max_points`` per class, the lowest and highest always among them), and, per coreset
    fraction, the score above which that class's coreset keeps its samples.

    Parameters
    ----------
    scores : float array of shape (N,)
    labels : int array of shape (N,)
    path : str or os.PathLike, or None (return the figure)
    class_names : sequence of str, optional
    thresholds : dict, optional
        ``{fraction: {class: lowest kept score}}`` (:func:`class_thresholds`).
    noisy : bool array of shape (N,), optional
        Samples whose label was flipped: drawn as red dots.
    max_classes : int, default 20
        With more classes, the ``max_classes`` largest are drawn (the title says so).
    max_points, seed
        Dots drawn per class (a seeded sample), beyond the extremes.

    Returns
    -------
    pathlib.Path of the written file (or the Figure).

    Examples
    --------
    >>> fig = plot_score_distribution([0.1, 0.5, -0.2, 0.9], [0, 0, 1, 1], None,
    ...                               thresholds={0.5: {0: 0.5, 1: 0.9}})
    >>> fig.axes[0].get_ylabel()
    'CLD score (correlation with the query trajectory)'
    """
    plt = _pyplot()
    scores, labels = np.asarray(scores, dtype=np.float64), np.asarray(labels)
    classes = _largest_classes(labels, max_classes)
    rng = np.random.default_rng(seed)
    fig, ax = plt.subplots(figsize=(max(7.5, 0.6 * len(classes) + 2.5), 5.0))
    positions = np.arange(1, len(classes) + 1)
    groups = [scores[labels == c] for c in classes]
    violin_at = [p for p, g in zip(positions, groups) if len(g) > 1 and np.ptp(g) > 0]
    if violin_at:
        parts = ax.violinplot([g for g, p in zip(groups, positions) if p in violin_at],
                              positions=violin_at, widths=0.8, showextrema=False)
        for body in parts["bodies"]:
            body.set_facecolor("tab:blue")
            body.set_alpha(0.25)
    noisy = None if noisy is None else np.asarray(noisy, dtype=bool)
    labelled = set()

    def once(text):
        if text in labelled:
            return None
        labelled.add(text)
        return text

    for p, c, g in zip(positions, classes, groups):
        flipped = np.zeros(len(g), bool) if noisy is None else noisy[labels == c]
        if len(g) > max_points:
            keep = np.unique(np.concatenate([[np.argmin(g), np.argmax(g)],
                                             rng.choice(len(g), max_points - 2, replace=False)]))
            g, flipped = g[keep], flipped[keep]
        x = p + rng.uniform(-0.18, 0.18, len(g))
        ax.scatter(x[~flipped], g[~flipped], s=6, color="tab:blue", alpha=0.5, lw=0, zorder=2,
                   label=once("sample"))
        if flipped.any():
            ax.scatter(x[flipped], g[flipped], s=9, color=NOISY_COLOR, alpha=0.8, lw=0,
                       zorder=2, label=once("sample with a flipped label"))
    if thresholds:
        cmap = plt.get_cmap("autumn")
        for j, (fraction, per_class) in enumerate(sorted(thresholds.items())):
            color = cmap(j / max(1, len(thresholds) - 1) * 0.8)
            for p, c in zip(positions, classes):
                if int(c) in per_class:
                    ax.hlines(per_class[int(c)], p - 0.38, p + 0.38, color=color, lw=2, zorder=3,
                              label=once(f"{_pct(fraction)} coreset keeps the dots above"))
    # below the axes: inside, it would hide the lowest scores, the ones CLD drops
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.14),
              ncol=min(4, len(labelled)), frameon=False)
    ax.set_xticks(positions, [_class_name(int(c), class_names) for c in classes],
                  rotation=45 if len(classes) > 10 else 0)
    ax.axhline(0.0, color="grey", lw=0.8, ls=":")
    ax.set_xlabel("class")
    ax.set_ylabel("CLD score (correlation with the query trajectory)")
    shown = "" if len(classes) == len(np.unique(labels)) else f" ({len(classes)} largest classes)"
    ax.set_title(title or f"CLD scores of the {len(scores)} training samples per class{shown}\n"
                          "violin: the whole distribution; dots: samples (all of them up to "
                          f"{max_points} per class); low scores are dropped first", fontsize=10)
    return _finish(plt, fig, path)


def choose_trajectory_class(scores, labels, *, k: int = 5, class_names=None) -> tuple[int, str]:
    """The class whose loss trajectories are most worth a look, and why: the one whose ``k``
    lowest-scored samples score lowest (the samples CLD drops first are the most unlike its
    query set).

    Examples
    --------
    >>> choose_trajectory_class([0.9, 0.8, -0.7, 0.6], [0, 0, 1, 1], k=1)
    (1, 'its lowest-scored sample scores lowest of all classes (r = -0.70)')
    """
    scores, labels = np.asarray(scores, dtype=np.float64), np.asarray(labels)
    best, value = None, np.inf
    for c in np.unique(labels):
        low = np.sort(scores[labels == c])[:k].mean()
        if low < value:
            best, value = int(c), float(low)
    what = ("its lowest-scored sample scores" if k == 1 else
            f"its {k} lowest-scored samples score")
    return best, f"{what} lowest of all classes ({'r' if k == 1 else 'mean r'} = {value:.2f})"


def plot_class_trajectories(
    train_trajectories,
    scores,
    labels,
    path,
    *,
    cls: int,
    query_trajectory=None,
    k: int = 5,
    class_names=None,
    reason: str | None = None,
):
    """Loss trajectories of the ``k`` top and ``k`` bottom CLD samples of one class.

    The left panel shows losses, the right panel loss differences; the class's query trajectory
    (mean query loss, and its differences, when given) is drawn in black. ``reason`` says why
    this class is drawn (in the title).

    Parameters
    ----------
    train_trajectories : array of shape (N, S)
    scores, labels : arrays of shape (N,)
    path : str or os.PathLike, or None (return the figure)
    cls : int
        The class to draw.
    query_trajectory : array of shape (S,), optional
        Mean loss of the query samples of ``cls`` at each snapshot.
    k : int, default 5
    class_names : sequence of str, optional
    reason : str, optional
        E.g. the second value of :func:`choose_trajectory_class`.

    Examples
    --------
    >>> traj = np.array([[3.0, 2.0, 1.0], [1.0, 2.0, 3.0], [2.0, 2.0, 2.0]])
    >>> fig = plot_class_trajectories(traj, [0.9, -0.9, 0.0], [0, 0, 0], None, cls=0, k=1)
    >>> [ax.get_xlabel() for ax in fig.axes]
    ['loss snapshot (0 = before training)', 'loss snapshot (0 = before training)']
    """
    plt = _pyplot()
    traj = np.asarray(train_trajectories, dtype=np.float64)
    scores, labels = np.asarray(scores, dtype=np.float64), np.asarray(labels)
    members = np.flatnonzero(labels == cls)
    if len(members) == 0:
        raise ValueError(f"cls == {cls}: no sample has this label. Labels present: "
                         f"{np.unique(labels)[:20].tolist()}.")
    order = members[np.lexsort((members, -scores[members]))]
    k = min(k, max(1, len(order) // 2))
    top, bottom = order[:k], order[::-1][:k]
    x = np.arange(traj.shape[1])
    fig, (ax_l, ax_d) = plt.subplots(1, 2, figsize=(11, 4.4))
    for idx, color, name in ((top, KEPT_COLOR, "highest"), (bottom, DROPPED_COLOR, "lowest")):
        for j, i in enumerate(idx):
            label = f"{len(idx)} {name} CLD (kept first)" if name == "highest" else \
                f"{len(idx)} {name} CLD (dropped first)"
            ax_l.plot(x, traj[i], color=color, alpha=0.6, lw=1, label=label if j == 0 else None)
            ax_d.plot(x[1:], np.diff(traj[i]), color=color, alpha=0.6, lw=1,
                      label=label if j == 0 else None)
    if query_trajectory is not None:
        q = np.asarray(query_trajectory, dtype=np.float64)
        ax_l.plot(x, q, color="black", lw=2, label="query samples (mean)")
        ax_d.plot(x[1:], np.diff(q), color="black", lw=2, label="query trajectory")
    ax_d.axhline(0.0, color="grey", lw=0.8, ls=":")
    name = _class_name(int(cls), class_names)
    ax_l.set(xlabel="loss snapshot (0 = before training)", ylabel="loss",
             title="losses")
    ax_d.set(xlabel="loss snapshot (0 = before training)",
             ylabel="loss difference (this snapshot - previous)",
             title="loss differences: CLD correlates these with the query's")
    from matplotlib.ticker import MaxNLocator

    for ax in (ax_l, ax_d):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend(fontsize=8)
    fig.suptitle(f"Class {name}: loss trajectories of the samples CLD keeps and drops first"
                 + (f"\ndrawn because {reason}" if reason else ""), fontsize=11)
    return _finish(plt, fig, path)


def plot_accuracy_vs_fraction(results: Sequence[Mapping], path, *, title: str | None = None,
                              full_accuracy=None):
    """Target test accuracy (%) against coreset size, one line per method, error bars = std
    over seeds, ticks at the measured fractions.

    Methods are drawn in the order they first appear in ``results`` (as in the Markdown table),
    each with its own colour and marker (up to 20 methods stay distinguishable) and a small
    horizontal offset so that equal points stay visible; ``cld`` is drawn thicker.
    ``full_accuracy`` (one accuracy per seed on the full training set) is drawn as a dashed line
    with a band of one standard deviation, both in the legend.

    Parameters
    ----------
    results : sequence of dicts with keys ``fraction``, ``method``, ``accuracy`` (in [0, 1],
        one per seed)
    path : str or os.PathLike, or None (return the figure)
    title : str, optional
    full_accuracy : sequence of float, optional

    Examples
    --------
    >>> rows = [{"fraction": f, "method": m, "accuracy": a}
    ...         for f, m, a in [(0.1, "cld", 0.8), (0.1, "cld", 0.82), (0.1, "random", 0.7),
    ...                         (0.3, "cld", 0.9), (0.3, "random", 0.85)]]
    >>> fig = plot_accuracy_vs_fraction(rows, None, full_accuracy=[0.95, 0.96])
    >>> ax = fig.axes[0]
    >>> ax.get_ylabel(), [t.get_text() for t in ax.get_xticklabels()]
    ('test accuracy (%)', ['10%', '30%'])
    """
    plt = _pyplot()
    if not results:
        raise ValueError("results is empty: nothing to plot.")
    methods = list(dict.fromkeys(r["method"] for r in results))
    measured = sorted({float(r["fraction"]) for r in results})
    seeds = max(sum(1 for r in results if r["method"] == m and float(r["fraction"]) == f)
                for m in methods for f in measured)
    cmap = plt.get_cmap("tab10" if len(methods) <= 10 else "tab20")
    markers = "os^vDP*Xph<>8Hd"
    span = (measured[-1] - measured[0]) or measured[0]
    dodge = 0.012 * span
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    for i, method in enumerate(methods):
        rows = [r for r in results if r["method"] == method]
        fractions = sorted({float(r["fraction"]) for r in rows})
        acc = [[100 * r["accuracy"] for r in rows if float(r["fraction"]) == f] for f in fractions]
        offset = (i - (len(methods) - 1) / 2) * dodge
        main = method == "cld"
        ax.errorbar([f + offset for f in fractions], [float(np.mean(a)) for a in acc],
                    yerr=[float(np.std(a)) for a in acc], marker=markers[i % len(markers)],
                    capsize=3, label=method, color=cmap(i % cmap.N), lw=2.5 if main else 1.2,
                    zorder=3 if main else 2)
    if full_accuracy is not None and len(full_accuracy):
        full = 100 * np.asarray(full_accuracy, dtype=np.float64)
        mean, std = float(full.mean()), float(full.std())
        ax.axhline(mean, color="black", ls="--", lw=1,
                   label=f"full training set ({mean:.1f}%)")
        if std > 0:
            ax.axhspan(mean - std, mean + std, color="grey", alpha=0.15,
                       label="full training set ± 1 std")
    ax.set_xticks(measured, [_pct(f) for f in measured])
    pad = 0.08 * span
    ax.set_xlim(measured[0] - pad, measured[-1] + pad)
    ax.set_xlabel("coreset size (share of the training set; every method gets the same "
                  "per-class budgets)", fontsize=9)
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(title or f"Target test accuracy by coreset size (mean ± std over {seeds} "
                          f"seed(s))", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, ncol=2 if len(methods) > 6 else 1)
    return _finish(plt, fig, path)


def plot_coreset_composition(labels, selections: Mapping, path, *, class_names=None,
                             noisy=None, max_classes: int = 20, title: str | None = None):
    """How many training samples of each class each coreset keeps: one panel per fraction,
    one bar per method and class (the class's size under its name); with ``noisy`` (one bool
    per training sample: label flipped), the flipped labels each coreset kept are hatched and
    counted in the legend.

    Parameters
    ----------
    labels : int array of shape (N,)
        The training labels the coresets were selected from.
    selections : dict
        ``{(method, fraction): selected row indices}`` (one seed).
    path : str or os.PathLike, or None (return the figure)
    class_names : sequence of str, optional
    noisy : bool array of shape (N,), optional
    max_classes : int, default 20
    title : str, optional

    Examples
    --------
    >>> fig = plot_coreset_composition([0, 0, 1, 1, 1], {("cld", 0.4): [0, 2], ("random", 0.4): [1, 3]},
    ...                                None, noisy=[False, True, False, False, True])
    >>> fig.axes[0].get_xlabel(), fig.axes[0].get_ylabel()
    ('class (training samples)', 'samples kept')
    >>> [t.get_text() for t in fig.axes[0].get_legend().get_texts()][:2]
    ['cld: 2 kept, 0 flipped (0.0%)', 'random: 2 kept, 1 flipped (50.0%)']
    """
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator

    labels = np.asarray(labels)
    classes = _largest_classes(labels, max_classes)
    fractions = sorted({float(f) for _, f in selections})[:4]
    methods = list(dict.fromkeys(m for m, _ in selections))
    cmap = plt.get_cmap("tab10" if len(methods) <= 10 else "tab20")
    noisy = None if noisy is None else np.asarray(noisy, dtype=bool)
    fig, axes = plt.subplots(len(fractions), 1, squeeze=False,
                             figsize=(max(7.0, 0.55 * len(classes) * max(1, len(methods) / 2) + 3),
                                      2.9 * len(fractions) + 0.8))
    width = 0.8 / max(1, len(methods))
    x = np.arange(len(classes))
    sizes = np.array([(labels == c).sum() for c in classes])
    ticks = [f"{_class_name(int(c), class_names)}\n({n})" for c, n in zip(classes, sizes)]
    for ax, fraction in zip(axes[:, 0], fractions):
        top = 1
        for i, method in enumerate(methods):
            if (method, fraction) not in selections:
                continue
            idx = np.asarray(selections[(method, fraction)], dtype=np.int64)
            kept = np.array([(labels[idx] == c).sum() for c in classes])
            top = max(top, kept.max(initial=0))
            label = f"{method}: {len(idx)} kept"
            pos = x - 0.4 + width * (i + 0.5)
            if noisy is not None:
                flipped = np.array([(noisy[idx] & (labels[idx] == c)).sum() for c in classes])
                share = 100 * noisy[idx].mean() if len(idx) else 0.0
                label += f", {int(noisy[idx].sum())} flipped ({share:.1f}%)"
            ax.bar(pos, kept, width=width * 0.95, color=cmap(i % cmap.N), label=label, zorder=2)
            if noisy is not None:
                ax.bar(pos, flipped, width=width * 0.95, color="none", edgecolor="black",
                       hatch="////", lw=0, zorder=3)
        ax.set_xticks(x, ticks, rotation=45 if len(classes) > 10 else 0, fontsize=8)
        ax.set_xlabel("class (training samples)")
        ax.set_ylabel("samples kept")
        ax.set_title(f"{_pct(fraction)} coreset" + (" (hatched: flipped labels)"
                                                    if noisy is not None else ""), fontsize=10)
        ax.legend(fontsize=7, ncol=min(3, len(methods)), loc="upper right", framealpha=0.9)
        ax.set_ylim(0, top * 1.4)
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    fig.suptitle(title or "Coreset composition per class: samples each method keeps (seed 0)"
                 + (" and the flipped labels among them" if noisy is not None else ""),
                 fontsize=11)
    return _finish(plt, fig, path)


def plot_kept_and_dropped(get_image: Callable[[int], np.ndarray], scores, labels, path, *,
                          class_names=None, k: int = 6, max_classes: int = 10, noisy=None,
                          title: str | None = None):
    """The training samples themselves: per class (one row), the ``k`` highest-scored (kept
    first) and the ``k`` lowest-scored (dropped first) images, each with its score; a flipped
    label (``noisy``) gets a red frame. 1-pixel-high images (signals) are drawn as curves.

    Parameters
    ----------
    get_image : callable
        ``get_image(i)`` gives training sample ``i`` as a (C, H, W) or (H, W) float array.
    scores, labels : arrays of shape (N,)
    path : str or os.PathLike, or None (return the figure)
    class_names : sequence of str, optional
    k : int, default 6
    max_classes : int, default 10
        With more classes, the largest ones are drawn (the title says so).
    noisy : bool array of shape (N,), optional
    title : str, optional

    Examples
    --------
    >>> images = np.random.default_rng(0).random((6, 1, 4, 4))
    >>> fig = plot_kept_and_dropped(lambda i: images[i], [0.9, 0.1, -0.5, 0.3, 0.2, 0.8],
    ...                             [0, 0, 0, 1, 1, 1], None, k=1)
    >>> fig.axes[0].get_ylabel()
    'class 0'
    """
    plt = _pyplot()
    scores, labels = np.asarray(scores, dtype=np.float64), np.asarray(labels)
    noisy = None if noisy is None else np.asarray(noisy, dtype=bool)
    classes = _largest_classes(labels, max_classes)
    cols = 2 * k + 1  # a narrow gap column between kept and dropped
    fig, axes = plt.subplots(len(classes), cols, squeeze=False,
                             figsize=(1.15 * (2 * k) + 0.5, 1.25 * len(classes) + 1.1),
                             gridspec_kw={"width_ratios": [1] * k + [0.25] + [1] * k})
    for row, c in enumerate(classes):
        members = np.flatnonzero(labels == c)
        order = members[np.lexsort((members, -scores[members]))]
        top, bottom = order[:k], order[::-1][:k][::-1]
        if len(order) < 2 * k:
            bottom = order[len(top):][-k:]
        cells = [*[(i, KEPT_COLOR) for i in top], *[None] * (k - len(top)), None,
                 *[None] * (k - len(bottom)), *[(i, DROPPED_COLOR) for i in bottom]]
        for col, cell in enumerate(cells):
            ax = axes[row, col]
            ax.set_xticks([])
            ax.set_yticks([])
            for side in ax.spines.values():
                side.set_visible(False)
            if cell is None:
                continue
            i, color = cell
            img = np.asarray(get_image(int(i)), dtype=np.float64)
            if img.ndim == 3 and img.shape[0] in (1, 3):
                img = img[0] if img.shape[0] == 1 else img.transpose(1, 2, 0)
            if img.ndim == 2 and img.shape[0] == 1:  # a 1-D signal
                ax.plot(img[0], color="black", lw=0.8)
            elif img.ndim == 2:
                ax.imshow(img, cmap="gray_r" if img.mean() < 0.5 else "gray", interpolation="nearest")
            else:
                lo, hi = img.min(), img.max()
                ax.imshow((img - lo) / (hi - lo) if hi > lo else img * 0, interpolation="nearest")
            flipped = noisy is not None and noisy[i]
            for side in ax.spines.values():
                side.set_visible(True)
                side.set_color(NOISY_COLOR if flipped else color)
                side.set_linewidth(3 if flipped else 1.5)
            ax.set_title(f"{scores[i]:+.2f}" + (" flipped" if flipped else ""), fontsize=7,
                         color=NOISY_COLOR if flipped else "black", pad=2)
        axes[row, 0].set_ylabel(f"class {_class_name(int(c), class_names)}", fontsize=8,
                                rotation=0, ha="right", va="center")
    shown = "" if len(classes) == len(np.unique(labels)) else f" ({len(classes)} largest classes)"
    fig.suptitle(title or f"What CLD keeps and drops{shown}\nper class: the {k} highest-scored "
                          f"samples (left, green: kept first) and the {k} lowest-scored (right, "
                          f"red: dropped first); numbers are CLD scores"
                          + ("; thick red frame: flipped label" if noisy is not None else ""),
                 fontsize=9)
    return _finish(plt, fig, path, left=0.12, wspace=0.08, hspace=0.45,
                   top=1 - 0.75 / fig.get_figheight())
