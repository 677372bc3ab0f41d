"""Plots of CLD scores, loss trajectories and coreset accuracy (matplotlib, PNG files).

matplotlib is imported inside each function (``pip install "cld-hf[plots]"``), with the
non-interactive Agg backend, so plotting works on a machine with no screen.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

__all__ = ["plot_score_distribution", "plot_class_trajectories", "plot_accuracy_vs_fraction"]


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


def _save(plt, fig, path) -> Path:
    """Write ``fig`` to ``path`` (PNG, parents created) and close it."""
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _class_name(c, class_names):
    return class_names[c] if class_names is not None and 0 <= c < len(class_names) else str(c)


def plot_score_distribution(scores, labels, path, *, class_names=None, max_classes: int = 20):
    """Box plot of the CLD scores of each class, written to ``path`` (PNG).

    Parameters
    ----------
    scores : float array of shape (N,)
    labels : int array of shape (N,)
    path : str or os.PathLike
    class_names : sequence of str, optional
    max_classes : int, default 20
        With more classes, the ``max_classes`` largest are drawn.

    Returns
    -------
    pathlib.Path of the written file.

    Examples
    --------
    >>> import tempfile, os
    >>> p = plot_score_distribution([0.1, 0.5, -0.2, 0.9], [0, 0, 1, 1],
    ...                             os.path.join(tempfile.mkdtemp(), "scores.png"))
    >>> p.suffix
    '.png'
    """
    plt = _pyplot()
    scores, labels = np.asarray(scores, dtype=np.float64), np.asarray(labels)
    classes, counts = np.unique(labels, return_counts=True)
    if len(classes) > max_classes:
        classes = np.sort(classes[np.argsort(-counts, kind="stable")[:max_classes]])
    fig, ax = plt.subplots(figsize=(max(6, 0.5 * len(classes) + 2), 4))
    ax.boxplot([scores[labels == c] for c in classes], showfliers=False)
    ax.set_xticks(range(1, len(classes) + 1), [_class_name(int(c), class_names) for c in classes],
                  rotation=45 if len(classes) > 10 else 0)
    ax.axhline(0.0, color="grey", lw=0.8, ls=":")
    ax.set_xlabel("class")
    ax.set_ylabel("CLD score (Pearson r)")
    ax.set_title("CLD score distribution per class")
    return _save(plt, fig, path)


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
):
    """Loss trajectories of the ``k`` top and ``k`` bottom CLD samples of one class.

    The left panel shows losses, the right panel loss differences; the class's query trajectory
    (mean query loss, and its differences, when given) is drawn in black.

    Parameters
    ----------
    train_trajectories : array of shape (N, S)
    scores, labels : arrays of shape (N,)
    path : str or os.PathLike
    cls : int
        The class to draw.
    query_trajectory : array of shape (S,), optional
        Mean loss of the query samples of ``cls`` at each snapshot.
    k : int, default 5

    Examples
    --------
    >>> import tempfile, os
    >>> traj = np.array([[3.0, 2.0, 1.0], [1.0, 2.0, 3.0], [2.0, 2.0, 2.0]])
    >>> p = plot_class_trajectories(traj, [0.9, -0.9, 0.0], [0, 0, 0],
    ...                             os.path.join(tempfile.mkdtemp(), "t.png"), cls=0, k=1)
    >>> p.exists()
    True
    """
    plt = _pyplot()
    traj = np.asarray(train_trajectories, dtype=np.float64)
    scores, labels = np.asarray(scores, dtype=np.float64), np.asarray(labels)
    members = np.flatnonzero(labels == cls)
    if len(members) == 0:
        raise ValueError(f"cls == {cls}: no sample has this label. Labels present: "
                         f"{np.unique(labels)[:20].tolist()}.")
    order = members[np.lexsort((members, -scores[members]))]
    top, bottom = order[:k], order[::-1][:k]
    x = np.arange(traj.shape[1])
    fig, (ax_l, ax_d) = plt.subplots(1, 2, figsize=(11, 4))
    for idx, color, name in ((top, "tab:green", "top"), (bottom, "tab:red", "bottom")):
        for j, i in enumerate(idx):
            label = f"{name} {len(idx)} by CLD" if j == 0 else None
            ax_l.plot(x, traj[i], color=color, alpha=0.6, lw=1, label=label)
            ax_d.plot(x[1:], np.diff(traj[i]), color=color, alpha=0.6, lw=1, label=label)
    if query_trajectory is not None:
        q = np.asarray(query_trajectory, dtype=np.float64)
        ax_l.plot(x, q, color="black", lw=2, label="query mean")
        ax_d.plot(x[1:], np.diff(q), color="black", lw=2, label="query trajectory")
    name = _class_name(int(cls), class_names)
    ax_l.set(xlabel="snapshot", ylabel="loss", title=f"class {name}: losses")
    ax_d.set(xlabel="snapshot", ylabel="loss difference", title=f"class {name}: loss differences")
    from matplotlib.ticker import MaxNLocator

    for ax in (ax_l, ax_d):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend(fontsize=8)
    return _save(plt, fig, path)


def plot_accuracy_vs_fraction(results: Sequence[Mapping], path, *, title: str | None = None,
                              full_accuracy=None):
    """Test accuracy against coreset fraction, one line per method, error bars = std over seeds.

    Methods are drawn in the order they first appear in ``results`` (as in the Markdown table),
    each with its own colour and marker (up to 20 methods stay distinguishable); ``cld`` is drawn
    thicker. ``full_accuracy`` (one accuracy per seed on the full training set) is drawn as a
    dashed line with a band of one standard deviation.

    Parameters
    ----------
    results : sequence of dicts with keys ``fraction``, ``method``, ``accuracy`` (one per seed)
    path : str or os.PathLike
    title : str, optional
    full_accuracy : sequence of float, optional

    Examples
    --------
    >>> import tempfile, os
    >>> rows = [{"fraction": f, "method": m, "accuracy": a}
    ...         for f, m, a in [(0.1, "cld", 0.8), (0.1, "cld", 0.82), (0.1, "random", 0.7),
    ...                         (0.3, "cld", 0.9), (0.3, "random", 0.85)]]
    >>> path = os.path.join(tempfile.mkdtemp(), "a.png")
    >>> plot_accuracy_vs_fraction(rows, path, full_accuracy=[0.95, 0.96]).exists()
    True
    """
    plt = _pyplot()
    if not results:
        raise ValueError("results is empty: nothing to plot.")
    methods = list(dict.fromkeys(r["method"] for r in results))
    cmap = plt.get_cmap("tab10" if len(methods) <= 10 else "tab20")
    markers = "os^vDP*Xph<>8Hd"
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for i, method in enumerate(methods):
        rows = [r for r in results if r["method"] == method]
        fractions = sorted({float(r["fraction"]) for r in rows})
        acc = [[r["accuracy"] for r in rows if float(r["fraction"]) == f] for f in fractions]
        mean = [float(np.mean(a)) for a in acc]
        std = [float(np.std(a)) for a in acc]
        main = method == "cld"
        ax.errorbar(fractions, mean, yerr=std, marker=markers[i % len(markers)], capsize=3,
                    label=method, color=cmap(i % cmap.N), lw=2.5 if main else 1.2,
                    zorder=3 if main else 2)
    if full_accuracy is not None and len(full_accuracy):
        full_mean, full_std = float(np.mean(full_accuracy)), float(np.std(full_accuracy))
        ax.axhline(full_mean, color="black", ls="--", lw=1, label="full training set")
        ax.axhspan(full_mean - full_std, full_mean + full_std, color="grey", alpha=0.15)
    ax.set_xlabel("coreset fraction")
    ax.set_ylabel("test accuracy")
    ax.set_title(title or "Accuracy vs coreset fraction (mean ± std over seeds)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, ncol=2 if len(methods) > 6 else 1)
    return _save(plt, fig, path)
