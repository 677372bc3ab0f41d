"""The plots of `cld-hf run` / `cld-hf plot`: every PNG opens, has a sensible size, labelled
axes and a title that says what and why; the score plot shows the whole distribution."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
from datasets import Array3D, ClassLabel, Dataset, Features, List, Value
from PIL import Image

from cld_hf.app import plots
from cld_hf.app.cli_plot import make_plots


@pytest.fixture
def scored():
    """60 scored 6x6 grayscale images of 3 classes, 4 snapshots, 6 flipped labels."""
    rng = np.random.default_rng(0)
    n = 60
    labels = np.arange(n) % 3
    scores = rng.uniform(-1, 1, n).astype(np.float32)
    scores[5] = -1.0  # an outlier a box plot's whisker would hide
    noisy = np.zeros(n, bool)
    noisy[[5, 11, 17, 23, 29, 35]] = True
    traj = (3 * np.exp(-0.5 * np.arange(4))[None] + rng.random((n, 4))).astype(np.float32)
    features = Features({"pixel_values": Array3D((1, 6, 6), "float32"),
                         "label": ClassLabel(names=["ant", "bee", "cow"]),
                         "cld_score": Value("float32"),
                         "label_is_noisy": Value("bool"),
                         "loss_trajectory": List(Value("float32"), length=4)})
    return Dataset.from_dict({"pixel_values": rng.random((n, 1, 6, 6)).astype(np.float32),
                              "label": labels, "cld_score": scores, "label_is_noisy": noisy,
                              "loss_trajectory": traj}, features=features)


def _labelled(fig):
    """Every axes that draws data has both axis labels (image grids: a row label)."""
    for ax in fig.axes:
        if ax.images or not (ax.lines or ax.collections or ax.patches):
            continue
        assert ax.get_xlabel() and ax.get_ylabel(), ax
    return fig


def test_every_png_opens_with_labelled_axes_and_a_sensible_size(scored, tmp_path):
    rows = [{"fraction": f, "method": m, "accuracy": a, "seed": s}
            for f in (0.1, 0.3) for m, a in (("cld", 0.8), ("random", 0.7)) for s in (0, 1)]
    written = make_plots(scored, tmp_path, results={"runs": rows, "full_data_accuracy": [0.9, 0.95],
                                                    "arguments": {"dataset": "zoo", "seeds": 2,
                                                                  "fractions": [0.1, 0.3]}},
                         selections={("cld", 0.1): np.arange(0, 60, 10),
                                     ("random", 0.1): np.arange(1, 60, 10)})
    names = sorted(p.name for p in written)
    assert names[:4] == ["accuracy_vs_fraction.png", "coreset_composition.png",
                         "kept_and_dropped.png", "score_distribution.png"]
    assert names[4].startswith("trajectories_class_")
    for path in written:
        with Image.open(path) as img:
            assert img.format == "PNG"
            width, height = img.size
            assert 600 <= width <= 2500 and 400 <= height <= 2500, (path.name, img.size)
            assert len(np.unique(np.asarray(img.convert("L")))) > 10  # not blank


def test_accuracy_plot_is_in_percent_with_ticks_at_the_fractions_and_the_band_in_the_legend():
    rows = [{"fraction": f, "method": m, "accuracy": a}
            for f, m, a in [(0.1, "cld", 0.8), (0.1, "random", 0.7), (0.35, "cld", 0.9),
                            (0.35, "random", 0.85), (0.35, "el2n", 0.5)]]
    fig = _labelled(plots.plot_accuracy_vs_fraction(rows, None, full_accuracy=[0.9, 0.96]))
    ax = fig.axes[0]
    assert ax.get_ylabel() == "test accuracy (%)"
    assert list(ax.get_xticks()) == [0.1, 0.35]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["10%", "35%"]
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend[:3] == ["full training set (93.0%)", "full training set ± 1 std", "cld"]
    assert {"random", "el2n"} <= set(legend)
    assert max(ax.get_ylim()) > 90  # percent, not 0-1


def test_score_distribution_shows_the_extremes_and_each_fractions_cut(scored):
    scores = np.asarray(scored["cld_score"][:])
    labels = np.asarray(scored["label"][:])
    idx = np.flatnonzero(labels == 2)[np.argsort(-scores[labels == 2])][:5]
    thresholds = {0.25: plots.class_thresholds(scores, labels, idx)}
    fig = _labelled(plots.plot_score_distribution(scores, labels, None, class_names=["a", "b", "c"],
                                                  thresholds=thresholds, max_points=5,
                                                  noisy=np.asarray(scored["label_is_noisy"][:])))
    ax = fig.axes[0]
    drawn = np.concatenate([c.get_offsets()[:, 1] for c in ax.collections
                            if hasattr(c, "get_offsets") and len(c.get_offsets())])
    for c in range(3):  # min and max of every class are drawn, even with 5 dots a class
        assert np.isclose(drawn, scores[labels == c].min()).any()
        assert np.isclose(drawn, scores[labels == c].max()).any()
    assert np.isclose(drawn, -1.0).any()
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "25% coreset keeps the dots above" in legend and "sample with a flipped label" in legend
    assert "whole distribution" in ax.get_title()


def test_trajectories_title_says_why_this_class(scored):
    scores = np.asarray(scored["cld_score"][:])
    labels = np.asarray(scored["label"][:])
    cls, reason = plots.choose_trajectory_class(scores, labels, k=3)
    assert cls == labels[5]  # the class holding the -0.99 outlier
    fig = _labelled(plots.plot_class_trajectories(
        np.asarray(scored.with_format("numpy")["loss_trajectory"][:]), scores, labels, None,
        cls=cls, k=3, class_names=["ant", "bee", "cow"], reason=reason))
    assert "drawn because its 3 lowest-scored samples score lowest" in fig._suptitle.get_text()


def test_composition_and_kept_dropped_grid(scored):
    labels = np.asarray(scored["label"][:])
    noisy = np.asarray(scored["label_is_noisy"][:])
    fig = _labelled(plots.plot_coreset_composition(
        labels, {("cld", 0.1): [0, 1, 2], ("random", 0.1): [5, 6, 7], ("cld", 0.5): range(30)},
        None, class_names=["ant", "bee", "cow"], noisy=noisy))
    assert [ax.get_title() for ax in fig.axes] == ["10% coreset (hatched: flipped labels)",
                                                   "50% coreset (hatched: flipped labels)"]
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["ant\n(20)", "bee\n(20)",
                                                                     "cow\n(20)"]
    legend = [t.get_text() for t in fig.axes[1].get_legend().get_texts()]
    assert legend == ["cld: 30 kept, 5 flipped (16.7%)"]
    images = np.asarray(scored.with_format("numpy")["pixel_values"][:])
    scores = np.asarray(scored["cld_score"][:])
    grid = plots.plot_kept_and_dropped(lambda i: images[i], scores, labels, None,
                                       class_names=["ant", "bee", "cow"], k=3, noisy=noisy)
    assert [grid.axes[7 * r].get_ylabel() for r in range(3)] == ["class ant", "class bee",
                                                                 "class cow"]
    titles = [ax.get_title() for ax in grid.axes if ax.get_title()]
    assert len(titles) == 18 and any("flipped" in t for t in titles)
    assert "highest-scored" in grid._suptitle.get_text()
