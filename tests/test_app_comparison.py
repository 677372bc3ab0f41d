"""The method comparison on one store (cld_hf/comparison.py): same budgets, the registry's
methods on the recorded signals, costs. NumPy only: a synthetic store, no training."""

from __future__ import annotations

import numpy as np
import pytest

from cld_hf import LossTrajectories, class_budgets, select_top_per_class
from cld_hf.baselines import METHODS, select_baseline
from cld_hf.baselines.gradients import el2n_from_probs, gradient_projections
from cld_hf.baselines.tdds import tdds_kl_terms
from cld_hf.app.comparison import (
    CLD_COST,
    DEFAULT_METHODS,
    METHOD_NAMES,
    cost_rows,
    load_signals,
    min_snapshots,
    read_selections,
    select_coresets,
    signals_for_methods,
    write_selections,
)

N_PER_CLASS, CLASSES, Q_PER_CLASS, S, D = 20, 3, 3, 12, 4


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A proxy run of 60 training and 9 query samples, 12 snapshots, every signal recorded,
    consistent with one another (from simulated logits and features)."""
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(CLASSES), N_PER_CLASS)
    qlabels = np.repeat(np.arange(CLASSES), Q_PER_CLASS)
    st = LossTrajectories.create(tmp_path_factory.mktemp("cmp"), labels, qlabels)
    onehot = np.eye(CLASSES)[labels]
    drift = rng.normal(size=(len(labels), CLASSES))
    previous = None
    for t in range(S):
        logits = onehot * (0.4 * t) + drift * (1 + 0.1 * t) + rng.normal(size=drift.shape)
        probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
        feats = rng.normal(size=(len(labels), D)) + onehot @ rng.normal(size=(CLASSES, D))
        true = probs[np.arange(len(labels)), labels]
        other = np.where(onehot > 0, -np.inf, logits).max(axis=1)
        st.append(-np.log(true), rng.random(len(qlabels)) * (S - t), epoch=t, signals={
            "correct": logits.argmax(axis=1) == labels,
            "true_prob": true,
            "margin": logits[np.arange(len(labels)), labels] - other,
            "el2n": el2n_from_probs(probs, labels),
            "grad_projection": gradient_projections(probs, feats, labels),
            "tdds_kl": (np.zeros(len(labels)) if previous is None
                        else tdds_kl_terms(previous, probs)),
        })
        previous = probs
    st.save_array("probs", probs.astype(np.float32))
    st.save_array("embeddings", feats.astype(np.float32))
    qonehot = np.eye(CLASSES)[qlabels]
    qlogits = 2 * qonehot + rng.normal(size=qonehot.shape)
    st.save_array("query_probs", np.exp(qlogits) / np.exp(qlogits).sum(axis=1, keepdims=True),
                  part="query")
    st.save_array("query_embeddings", rng.normal(size=(len(qlabels), D)) + qonehot @ np.ones(
        (CLASSES, D)), part="query")
    st.save_array("curvature", rng.random((len(labels), 10)))
    st.save_array("boundary_steps", rng.integers(0, 51, size=len(labels)))
    return st


def test_every_method_keeps_exactly_the_class_budgets_of_each_fraction(store):
    """Every registry method and CLD, two fractions, two seeds, from one store."""
    coresets = select_coresets(store, METHOD_NAMES, fractions=[0.1, 0.5], seeds=2,
                               progress=False)
    assert len(coresets) == len(METHOD_NAMES) * 2 * 2
    labels = store.train_labels
    signals = load_signals(store, METHOD_NAMES)
    for c in coresets:
        budgets = class_budgets(labels, fraction=c.fraction)
        counts = np.bincount(labels[c.indices], minlength=CLASSES)
        assert dict(enumerate(counts.tolist())) == budgets, (c.method, c.fraction)
        assert np.all(np.diff(c.indices) > 0)  # ascending, no repeats
        if c.method == "cld":
            want = select_top_per_class(store.scores(), labels, budgets=budgets)
        elif c.method.startswith("cld_"):
            from cld_hf.strategies import select_with_strategy

            want = select_with_strategy(store.scores(), labels, budgets=budgets,
                                        strategy=c.method[4:], seed=c.seed,
                                        query_losses=store.query_losses(),
                                        embeddings=signals["embeddings"])
        else:
            want = select_baseline(c.method, labels, budgets=budgets, signals=signals, seed=c.seed)
        np.testing.assert_array_equal(c.indices, want, err_msg=c.method)


def test_deterministic_methods_are_scored_once_and_samplers_draw_per_seed(store):
    coresets = select_coresets(store, ["cld", "el2n", "random", "kcenter"], fractions=[0.5],
                               seeds=[3, 4], progress=False)
    by = {(c.method, c.seed): c for c in coresets}
    for method in ("cld", "el2n"):  # scores: one computation, reused for the second seed
        np.testing.assert_array_equal(by[(method, 3)].indices, by[(method, 4)].indices)
        assert by[(method, 4)].seconds == 0.0  # not counted twice in the cost
    assert not np.array_equal(by[("random", 3)].indices, by[("random", 4)].indices)


def test_options_reach_the_method_and_unknown_ones_are_refused(store):
    labels = store.train_labels
    budgets = class_budgets(labels, fraction=0.3)
    (got,) = select_coresets(store, ["dyn_unc"], fractions=[0.3], options={"dyn_unc": {"window": 3}},
                             progress=False)
    want = select_baseline("dyn_unc", labels, budgets=budgets, window=3,
                           signals={"true_prob": store.train_signal("true_prob")})
    np.testing.assert_array_equal(got.indices, want)
    with pytest.raises(ValueError, match=r"options names \['aum'\], which are not in methods"):
        select_coresets(store, ["dyn_unc"], fractions=[0.3], options={"aum": {}}, progress=False)
    assert min_snapshots(["cld", "dyn_unc"], {"dyn_unc": {"window": 3}}) == 3


def test_signals_for_methods_is_what_each_method_reads():
    assert signals_for_methods(METHOD_NAMES) == (
        "correct", "true_prob", "margin", "el2n", "grad_projection", "tdds_kl", "embeddings",
        "probs", "query_embeddings", "query_probs", "curvature", "boundary_steps")
    assert signals_for_methods(["cld", "random"]) == ()
    assert signals_for_methods(["d2_pruning"]) == ("correct", "embeddings")  # its difficulty
    assert signals_for_methods(["ccs_aum"]) == ("margin",)
    for name, spec in METHODS.items():  # query_labels come from the store, not the recorder
        assert set(spec.signals) - {"loss", "query_labels"} <= set(signals_for_methods([name]))
    assert set(DEFAULT_METHODS) <= set(METHOD_NAMES)


def test_a_signal_that_was_not_recorded_names_the_recorder_option(tmp_path):
    st = LossTrajectories.create(tmp_path, [0, 0, 1, 1], [0, 1])
    for t in range(3):
        st.append([1.0, 2.0, 3.0, t], [1.0, 2.0], signals={"correct": [True, False, True, True]})
    with pytest.raises(ValueError, match=r"\['aum'\] need the signal 'margin'.*"
                                         r"signals=\['correct', 'margin'\]"):
        select_coresets(st, ["forgetting", "aum"], fractions=[0.5], progress=False)


def test_cost_rows_give_the_bytes_of_the_signals_read_and_the_appendix_e_formulas(store, tmp_path):
    coresets = select_coresets(store, ["cld", "random", "forgetting", "dual", "grand",
                                       "d2_pruning"], fractions=[0.1, 0.5], seeds=2,
                               progress=False)
    rows = {r["method"]: r for r in cost_rows(store, coresets)}
    sizes = store.signal_nbytes()
    assert rows["cld"]["extra_bytes"] == sizes["loss"] == (60 + 9) * 4 * S
    assert rows["cld"]["compute"] == CLD_COST["cost"] and "(N + Q) T_proxy" in rows["cld"]["storage"]
    assert rows["random"]["extra_bytes"] == 0
    assert rows["forgetting"]["extra_bytes"] == sizes["correct"]
    assert rows["dual"]["extra_bytes"] == sizes["true_prob"]
    assert rows["grand"]["extra_bytes"] == sizes["probs"] + sizes["embeddings"]
    assert rows["d2_pruning"]["extra_bytes"] == sizes["embeddings"] + sizes["correct"]
    for name in ("forgetting", "dual", "grand", "d2_pruning"):
        assert (rows[name]["compute"], rows[name]["storage"]) == (METHODS[name].cost,
                                                                  METHODS[name].storage)
    # per coreset: deterministic methods computed once per fraction, samplers per fraction x seed
    assert rows["dual"]["seconds_per_coreset"] == pytest.approx(rows["dual"]["seconds"] / 2)
    assert rows["random"]["seconds_per_coreset"] == pytest.approx(rows["random"]["seconds"] / 4)
    path = write_selections(tmp_path / "selections.arrow", coresets)
    back = read_selections(path)
    assert [(c.method, c.fraction, c.seed) for c in back] == [
        (c.method, c.fraction, c.seed) for c in coresets]
    assert all(np.array_equal(a.indices, b.indices) for a, b in zip(back, coresets))


def test_compare_methods_script_help_exits_zero_and_defaults_to_the_cheap_methods(
    capsys, monkeypatch
):
    import importlib.util
    import sys
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "scripts" / "compare_methods.py"
    spec = importlib.util.spec_from_file_location("compare_methods", path)
    script = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "compare_methods", script)  # dataclasses look it up
    spec.loader.exec_module(script)
    with pytest.raises(SystemExit) as exit_info:
        script.main(["--help"])
    assert exit_info.value.code == 0 and "--methods" in capsys.readouterr().out
    run_args, recording = script.make_parser().parse_args_into_dataclasses(args=["--threads", "1"])
    assert run_args.methods == list(DEFAULT_METHODS) and run_args.threads == 1
    assert recording.mode == "sweep"
