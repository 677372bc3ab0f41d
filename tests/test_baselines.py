"""Tests of the baseline coreset methods (cld_hf.baselines): hand-computed cases from each
method's definition, the direction each one keeps, exact class budgets, seeds and bad input."""

import itertools
import subprocess
import sys

import numpy as np
import pytest

from cld_hf import class_budgets, select_top_per_class
from cld_hf.baselines import (
    METHODS,
    NOT_IMPLEMENTED,
    SIGNALS,
    aum_scores,
    boundary_ccs_select,
    cal_scores,
    ccs_select,
    craig_select,
    d2_select,
    dual_beta_select,
    dual_scores,
    dyn_unc_scores,
    el2n_from_probs,
    el2n_scores,
    forgetting_scores,
    glister_select,
    gradient_norms,
    gradient_projections,
    grand_scores,
    graphcut_select,
    herding_select,
    kcenter_select,
    last_layer_gradients,
    moderate_scores,
    select_baseline,
    slocurv_scores,
    tdds_kl_scores,
    tdds_kl_terms,
    tdds_scores,
)
from cld_hf.baselines import common
from cld_hf.baselines.common import allocate_strata, neighbors_without_self

# ---------------------------------------------------------------------------------- fixtures


def _softmax(z):
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def _recorded(seed=0, sizes=(30, 22, 14), num_snapshots=12, dim=5):
    """Every signal of SIGNALS, for a small run with uneven classes, labels shuffled."""
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.repeat(np.arange(len(sizes)), sizes))
    n, c = len(labels), len(sizes)
    logits = rng.normal(size=(n, num_snapshots, c)) + 2.0 * np.eye(c)[labels][:, None, :]
    probs_t = _softmax(logits)
    rows = np.arange(n)
    true_logit = logits[rows, :, labels]
    other = logits.copy()
    other[rows, :, labels] = -np.inf
    emb = rng.normal(size=(n, dim)).astype(np.float32)
    q_labels = np.repeat(np.arange(c), 3)
    q_logits = rng.normal(size=(len(q_labels), c)) + 2.0 * np.eye(c)[q_labels]
    kl = np.zeros((n, num_snapshots), dtype=np.float32)
    kl[:, 1:] = np.stack([tdds_kl_terms(probs_t[:, t - 1], probs_t[:, t])
                          for t in range(1, num_snapshots)], axis=1)
    signals = {
        "correct": logits.argmax(-1) == labels[:, None],
        "true_prob": probs_t[rows, :, labels].astype(np.float32),
        "margin": (true_logit - other.max(-1)).astype(np.float32),
        "el2n": np.linalg.norm(probs_t - np.eye(c)[labels][:, None, :], axis=-1).astype(np.float32),
        "loss": -np.log(probs_t[rows, :, labels]).astype(np.float32),
        "grad_projection": rng.normal(size=(n, num_snapshots)).astype(np.float32),
        "tdds_kl": kl,
        "embeddings": emb,
        "probs": probs_t[:, -1].astype(np.float32),
        "query_probs": _softmax(q_logits).astype(np.float32),
        "query_embeddings": rng.normal(size=(len(q_labels), dim)).astype(np.float32),
        "query_labels": q_labels,
        "curvature": rng.uniform(0.0, 2.0, size=(n, 10)).astype(np.float32),
        "boundary_steps": rng.integers(0, 51, size=n),
    }
    return labels, signals


# Options that make every method run on the 12-snapshot fixture (windows must fit).
_SMALL = {"dyn_unc": {"window": 4}, "dual": {"window": 4}, "dual_beta": {"window": 4},
          "tdds": {"window": 4}, "tdds_kl": {"window": 4}}


def _counts(labels, idx, classes):
    return {int(c): int((labels[idx] == c).sum()) for c in classes}


# ------------------------------------------------------------------------ registry, budgets


def test_registry_records_are_complete():
    assert set(METHODS) == {
        "random", "forgetting", "el2n", "aum", "ccs_aum", "dyn_unc", "dual", "dual_beta",
        "herding", "moderate", "kcenter", "graphcut", "d2_pruning", "cal", "grand", "craig",
        "glister", "tdds", "tdds_kl", "slocurv", "boundary_ccs", "s2l",
    }
    for name, spec in METHODS.items():
        assert spec.kind in ("score", "select"), name
        assert set(spec.signals) <= set(SIGNALS), name
        assert spec.direction and spec.cost and spec.storage and spec.reference, name
        if spec.difficulty is not None:
            assert METHODS[spec.difficulty].kind == "score"
    assert METHODS["aum"].direction.startswith("high")
    assert METHODS["slocurv"].direction.startswith("low")
    assert METHODS["moderate"].direction.startswith("median")
    assert METHODS["forgetting"].direction.startswith("high")
    assert METHODS["forgetting"].defaults["variant"] == "deepcore"  # what the paper's Table 2 ran
    assert METHODS["ccs_aum"].difficulty_options == {"keep": "low"}
    assert set(NOT_IMPLEMENTED) == {"glister_online"}
    assert not set(NOT_IMPLEMENTED) & set(METHODS)
    assert METHODS["graphcut"].defaults["lam"] == 2.0
    assert METHODS["dual"].defaults == {"window": 10, "first": 30}


@pytest.mark.parametrize("method", sorted(METHODS))
def test_every_method_keeps_exactly_the_class_budgets(method):
    labels, signals = _recorded()
    budgets = {0: 7, 1: 22, 2: 0}  # a full class and an empty budget
    opts = _SMALL.get(method, {})
    idx = select_baseline(method, labels, budgets=budgets, signals=signals, **opts)
    assert idx.dtype == np.int64
    assert np.array_equal(idx, np.unique(idx))  # ascending, no duplicate
    assert _counts(labels, idx, [0, 1, 2]) == budgets
    budgets = class_budgets(labels, fraction=0.3)
    idx = select_baseline(method, labels, budgets=budgets, signals=signals, **opts)
    assert _counts(labels, idx, budgets) == budgets


@pytest.mark.parametrize("method", sorted(METHODS))
def test_every_method_is_deterministic_for_a_seed(method):
    labels, signals = _recorded(seed=1)
    budgets = class_budgets(labels, fraction=0.25)
    opts = _SMALL.get(method, {})
    a = select_baseline(method, labels, budgets=budgets, signals=signals, seed=3, **opts)
    b = select_baseline(method, labels, budgets=budgets, signals=signals, seed=3, **opts)
    assert np.array_equal(a, b)


@pytest.mark.parametrize("method", ["random", "ccs_aum", "dual_beta", "kcenter", "boundary_ccs"])
def test_random_methods_depend_on_the_seed(method):
    labels, signals = _recorded(seed=2)
    budgets = class_budgets(labels, fraction=0.3)
    opts = _SMALL.get(method, {})
    runs = {
        tuple(select_baseline(method, labels, budgets=budgets, signals=signals, seed=s, **opts))
        for s in range(5)
    }
    assert len(runs) > 1


def test_select_baseline_score_methods_use_top_k_per_class():
    labels, signals = _recorded()
    budgets = class_budgets(labels, fraction=0.4)
    expected = select_top_per_class(el2n_scores(signals["el2n"], first=5), labels, budgets=budgets)
    got = select_baseline("el2n", labels, budgets=budgets, signals=signals, first=5)
    assert np.array_equal(got, expected)


def test_select_baseline_uses_the_declared_difficulty_unless_scores_are_given():
    labels, signals = _recorded()
    budgets = class_budgets(labels, fraction=0.3)
    default = select_baseline("d2_pruning", labels, budgets=budgets, signals=signals)
    forgetting = forgetting_scores(signals["correct"])
    assert np.array_equal(default, d2_select(labels, budgets, signals["embeddings"], forgetting))
    # with explicit scores, the difficulty's signal ("correct") is not needed
    el2n = el2n_scores(signals["el2n"])
    no_correct = {k: v for k, v in signals.items() if k != "correct"}
    got = select_baseline("d2_pruning", labels, budgets=budgets, signals=no_correct, scores=el2n)
    assert np.array_equal(got, d2_select(labels, budgets, signals["embeddings"], el2n))


def test_baselines_import_neither_torch_nor_hugging_face():
    code = (
        "import sys, cld_hf.baselines\n"
        "heavy = ('torch', 'transformers', 'datasets', 'accelerate')\n"
        "bad = [m for m in heavy if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# ----------------------------------------------------------------------------- forgetting


def test_forgetting_counts_learned_to_forgotten_transitions():
    correct = np.array(
        [
            [1, 0, 1, 0, 1, 0],  # 3 events, the last one at the final snapshot
            [0, 1, 1, 1, 1, 0],  # wrong -> right is not an event; 1 event at the end
            [0, 0, 0, 1, 1, 1],  # learned late, never forgotten
            [1, 1, 1, 1, 1, 1],
        ],
        dtype=bool,
    )
    assert forgetting_scores(correct).tolist() == [3.0, 1.0, 0.0, 0.0]


def test_forgetting_keeps_three_events_before_one_and_never_learned_last_by_default():
    """DeepCore (the paper's baselines, Table 2) scores a never-learned sample 0: no event."""
    correct = np.array(
        [
            [1, 0, 1, 0, 1, 0, 1],  # forgotten 3 times
            [1, 0, 1, 1, 1, 1, 1],  # forgotten once
            [0, 0, 0, 0, 0, 0, 0],  # never learned: 0 events, like the never-forgotten one
            [1, 1, 1, 1, 1, 1, 1],  # never forgotten
        ],
        dtype=bool,
    )
    labels = np.zeros(4, dtype=int)
    sig = {"correct": correct}
    assert forgetting_scores(correct).tolist() == [3.0, 1.0, 0.0, 0.0]
    assert select_baseline("forgetting", labels, budgets={0: 1}, signals=sig).tolist() == [0]
    assert select_baseline("forgetting", labels, budgets={0: 2}, signals=sig).tolist() == [0, 1]
    # the third pick is a tie at 0 between never learned (2) and never forgotten (3): lower index
    assert select_baseline("forgetting", labels, budgets={0: 3}, signals=sig).tolist() == [0, 1, 2]


def test_forgetting_toneva_variant_keeps_never_learned_first():
    correct = np.array(
        [
            [1, 0, 1, 0, 1, 0, 1],  # forgotten 3 times
            [1, 0, 1, 1, 1, 1, 1],  # forgotten once
            [0, 0, 0, 0, 0, 0, 0],  # never learned: most forgotten (Toneva et al.: infinite)
            [1, 1, 1, 1, 1, 1, 1],  # never forgotten
        ],
        dtype=bool,
    )
    labels = np.zeros(4, dtype=int)
    sig = {"correct": correct}
    toneva = {"variant": "toneva"}
    assert select_baseline("forgetting", labels, budgets={0: 1}, signals=sig,
                           **toneva).tolist() == [2]
    assert select_baseline("forgetting", labels, budgets={0: 2}, signals=sig,
                           **toneva).tolist() == [0, 2]
    assert select_baseline("forgetting", labels, budgets={0: 3}, signals=sig,
                           **toneva).tolist() == [0, 1, 2]
    # the never-learned score exceeds any reachable count
    assert forgetting_scores(correct, variant="toneva")[2] > correct.shape[1] // 2


def _deepcore_forgetting(correct):
    """DeepCore's counter, written as its loop: last_acc starts at 0, +1 when it drops."""
    n, s = correct.shape
    events = np.zeros(n)
    last = np.zeros(n)
    for t in range(s):
        cur = correct[:, t].astype(float)
        events[(last - cur) > 0.01] += 1
        last = cur
    return events


def test_forgetting_default_equals_deepcore_counter_on_random_trajectories():
    rng = np.random.default_rng(11)
    correct = rng.random((200, 15)) < rng.random((200, 1))  # some never learned
    correct[:7] = False
    assert np.array_equal(forgetting_scores(correct), _deepcore_forgetting(correct))


# ---------------------------------------------------------------------------- EL2N and AUM


def test_el2n_is_the_mean_over_the_first_snapshots():
    el2n = np.array([[0.2, 0.4, 9.0], [1.0, 1.2, 0.0]])
    assert np.allclose(el2n_scores(el2n, first=2), [0.3, 1.1])
    assert np.allclose(el2n_scores(el2n, first=None), [9.6 / 3, 2.2 / 3])
    assert np.allclose(el2n_scores(el2n, first=50), el2n_scores(el2n, first=None))
    assert np.allclose(el2n_scores(el2n), el2n_scores(el2n, first=None))  # default 20 > S


def test_el2n_keeps_high_error():
    el2n = np.array([[0.1, 0.1], [1.3, 1.2], [0.7, 0.6]])
    idx = select_baseline("el2n", [0, 0, 0], budgets={0: 1}, signals={"el2n": el2n})
    assert idx.tolist() == [1]


def test_el2n_from_probs_is_the_norm_of_the_error():
    probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]])
    expected = [np.sqrt(0.3**2 + 0.2**2 + 0.1**2), np.sqrt(0.1**2 + 0.9**2 + 0.8**2)]
    assert np.allclose(el2n_from_probs(probs, [0, 1]), expected)


def test_aum_returns_the_mean_margin_and_keeps_high_margin_first():
    """Seed E.1.3: keep the highest AUM (filter low-AUM points). Regression: cld-hf kept the
    lowest AUM first, and a 10% coreset was 84-88% mislabelled against a 10% base rate."""
    margin = np.array([[4.0, 6.0, 5.0], [-1.0, 0.0, -2.0], [1.0, 2.0, 3.0]])
    assert np.allclose(aum_scores(margin), [5.0, -1.0, 2.0])
    assert np.allclose(aum_scores(margin, first=1), [4.0, -1.0, 1.0])
    assert np.allclose(aum_scores(margin, keep="low"), [-5.0, 1.0, -2.0])
    idx = select_baseline("aum", [0, 0, 0], budgets={0: 2}, signals={"margin": margin})
    assert idx.tolist() == [0, 2]  # the confident and the learned one, not the ambiguous one
    idx = select_baseline("aum", [0, 0, 0], budgets={0: 2}, signals={"margin": margin},
                          keep="low")
    assert idx.tolist() == [1, 2]  # the alternative: the lowest margins


def test_aum_keeps_mislabelled_samples_last():
    # 20 samples, 4 mislabelled: the proxy keeps predicting another class (negative margin)
    rng = np.random.default_rng(12)
    margin = rng.uniform(0.5, 4.0, size=(20, 8))
    mislabelled = np.array([3, 7, 12, 18])
    margin[mislabelled] = rng.uniform(-4.0, -0.5, size=(4, 8))
    idx = select_baseline("aum", np.zeros(20, dtype=int), budgets={0: 16},
                          signals={"margin": margin})
    assert not set(idx.tolist()) & set(mislabelled.tolist())


# ------------------------------------------------------------------------------------- CCS


def test_ccs_prunes_the_hardest_share_and_spreads_the_budget_over_strata():
    labels = np.zeros(100, dtype=int)
    scores = np.arange(100.0)  # higher = harder
    for seed in range(3):
        idx = ccs_select(labels, {0: 8}, scores, hard_prune=0.2, strata=4, seed=seed)
        assert len(idx) == 8
        assert idx.max() < 80  # the 20 hardest are gone
        # 80 kept, 4 equal-width strata of 20: two from each
        assert np.bincount(idx // 20, minlength=4).tolist() == [2, 2, 2, 2]


def test_ccs_gives_small_strata_all_their_samples():
    scores = np.array([0.0] + [10.0 + 0.01 * i for i in range(10)])  # strata of 1 and 10
    idx = ccs_select(np.zeros(11, dtype=int), {0: 4}, scores, strata=2, seed=0)
    assert 0 in idx and len(idx) == 4


def test_ccs_never_prunes_below_the_budget():
    idx = ccs_select(np.zeros(10, dtype=int), {0: 9}, np.arange(10.0), hard_prune=0.5)
    assert len(idx) == 9 and 9 not in idx  # only 1 of the 5 asked could be pruned


def test_ccs_aum_prunes_the_lowest_margins():
    labels = np.zeros(40, dtype=int)
    margin = np.repeat(np.linspace(-3, 5, 40)[:, None], 3, axis=1)  # sample i: margin rises with i
    idx = select_baseline(
        "ccs_aum", labels, budgets={0: 10}, signals={"margin": margin}, hard_prune=0.25, strata=5
    )
    assert idx.min() >= 10  # the 10 lowest margins (hardest under AUM) were pruned first
    assert len(idx) == 10


def test_allocate_strata_gives_small_strata_all_and_shares_the_rest():
    # sizes 1, 10, 0, 4 and 9 to share: 1 gives all; 8 left over 2 strata: 4 each
    assert allocate_strata([1, 10, 0, 4], 9).tolist() == [1, 4, 0, 4]
    # sizes 2, 2, 2 and 5: 5 // 3 = 1, 4 // 2 = 2, 2 // 1 = 2 (CCS's order: smallest first)
    assert allocate_strata([2, 2, 2], 5).tolist() == [1, 2, 2]
    # the whole pool
    assert allocate_strata([3, 0, 5], 8).tolist() == [3, 0, 5]
    assert allocate_strata([3, 0, 5], 0).tolist() == [0, 0, 0]


def test_allocate_strata_spreads_a_budget_smaller_than_the_strata_over_the_range():
    """Regression: with 50 strata and 20 per class at 10%, CCS's integer shares gave 0 to the 30
    smallest strata (the sparse tails) and 1 to each of the 20 largest."""
    counts = np.array([1] * 15 + [40] * 20 + [1] * 15)  # dense middle, sparse tails
    take = allocate_strata(counts, 20)
    assert take.sum() == 20 and take.max() == 1
    assert take[:15].sum() > 0 and take[-15:].sum() > 0  # both tails are sampled
    # one every 2.5 strata: positions floor((i + 0.5) * 50 / 20)
    assert np.flatnonzero(take).tolist() == [int((i + 0.5) * 2.5) for i in range(20)]
    # 3 strata for 2 samples, empty strata skipped: the 1st and 3rd non-empty ones (0.75, 2.25)
    assert allocate_strata([0, 5, 0, 5, 5], 2).tolist() == [0, 1, 0, 0, 1]


def test_ccs_small_class_budgets_still_cover_the_sparse_tails():
    rng = np.random.default_rng(13)
    # per class: 400 scores in a dense middle band, 10 in each sparse tail
    scores = np.concatenate([rng.uniform(4.0, 6.0, 400), rng.uniform(0.0, 2.0, 10),
                             rng.uniform(8.0, 10.0, 10)])
    labels = np.zeros(len(scores), dtype=int)
    idx = ccs_select(labels, {0: 20}, scores, strata=50, seed=0)
    assert len(idx) == 20
    tails = (scores[idx] < 2.0).sum() + (scores[idx] > 8.0).sum()
    # the tails hold about 20 of 50 strata: about 8 of the 20 picks (the old allocation: 0)
    assert 4 <= tails <= 12


def test_ccs_global_pool_prunes_the_hardest_of_the_whole_set():
    # class 0 holds the 10 hardest samples of the 40; hard_prune=0.25 drops 10 in all
    labels = np.repeat([0, 1], 20)
    scores = np.concatenate([np.arange(20.0) + 100.0, np.arange(20.0)])  # class 0 is harder
    per_class = ccs_select(labels, {0: 5, 1: 5}, scores, hard_prune=0.25, strata=4, seed=0)
    glob = ccs_select(labels, {0: 5, 1: 5}, scores, hard_prune=0.25, strata=4, pool="global",
                      seed=0)
    assert _counts(labels, glob, [0, 1]) == {0: 5, 1: 5}
    # per class: the 5 hardest of each class are dropped
    assert per_class[per_class < 20].max() < 15 and per_class[per_class >= 20].max() < 35
    # global: the 10 hardest overall (class 0's 10 .. 19) are dropped, none of class 1
    assert glob[glob < 20].max() < 10
    # and the global strata span [0, 109]: class 1 (0..19) lies in the first of 4 bins only
    assert (scores[glob[glob >= 20]] < 27.25).all()


def test_ccs_global_pool_never_drops_a_class_below_its_budget():
    labels = np.repeat([0, 1], 10)
    scores = np.concatenate([np.arange(10.0) + 100.0, np.arange(10.0)])
    keep = common.hard_prune_global(labels, scores, {0: 8, 1: 2}, 0.5)  # 10 to drop
    # class 0 may drop only 2 (its 2 hardest, 9 and 8); the other 8 come from class 1's hardest
    assert np.flatnonzero(~keep).tolist() == [8, 9] + list(range(12, 20))
    idx = ccs_select(labels, {0: 8, 1: 2}, scores, hard_prune=0.5, pool="global", seed=1)
    assert _counts(labels, idx, [0, 1]) == {0: 8, 1: 2}
    assert idx[idx < 10].tolist() == list(range(8)) and (idx[idx >= 10] < 12).all()


# ----------------------------------------------------------------------------- Dyn-Unc, DUAL


def _windowed(p, window, difficulty):
    """Reference: the definitions written as loops."""
    out = []
    for row in p:
        vals = []
        for k in range(len(row) - window + 1):
            w = row[k : k + window]
            sd = np.std(w, ddof=1)
            vals.append(sd * (1 - np.mean(w)) if difficulty else sd)
        out.append(np.mean(vals))
    return np.array(out)


def test_dyn_unc_is_the_windowed_std_averaged_over_windows():
    rng = np.random.default_rng(0)
    p = rng.uniform(size=(6, 9))
    assert np.allclose(dyn_unc_scores(p, window=3), _windowed(p, 3, False), atol=1e-6)
    early = _windowed(p[:, :5], 3, False)
    assert np.allclose(dyn_unc_scores(p, window=3, first=5), early, atol=1e-6)
    # hand case: windows of 2 over [0.1, 0.9, 0.1] -> std (ddof=1) 0.8/sqrt(2) each
    assert np.allclose(dyn_unc_scores([[0.1, 0.9, 0.1]], window=2), [0.8 / np.sqrt(2)])


def test_dyn_unc_keeps_uncertain_samples():
    p = np.array([[0.9, 0.9, 0.9, 0.9], [0.2, 0.8, 0.2, 0.8], [0.5, 0.6, 0.5, 0.6]])
    idx = select_baseline("dyn_unc", [0, 0, 0], budgets={0: 1}, signals={"true_prob": p}, window=2)
    assert idx.tolist() == [1]


def test_dual_is_uncertainty_times_difficulty_over_the_early_snapshots():
    rng = np.random.default_rng(1)
    p = rng.uniform(size=(6, 12))
    assert np.allclose(dual_scores(p, window=3, first=8), _windowed(p[:, :8], 3, True), atol=1e-6)
    later = p.copy()
    later[:, 8:] = rng.uniform(size=(6, 4))  # snapshots after `first` are not read
    assert np.array_equal(dual_scores(p, window=3, first=8), dual_scores(later, window=3, first=8))


def test_dual_keeps_uncertain_and_hard_before_uncertain_and_easy():
    p = np.array([
        [0.7, 0.9, 0.7, 0.9],  # uncertain, easy (mean 0.8)
        [0.1, 0.3, 0.1, 0.3],  # as uncertain, hard (mean 0.2)
        [0.1, 0.1, 0.1, 0.1],  # hard but certain: 0
    ])
    s = dual_scores(p, window=2)
    assert s[1] > s[0] > s[2] == 0.0
    idx = select_baseline("dual", [0, 0, 0], budgets={0: 1}, signals={"true_prob": p}, window=2)
    assert idx.tolist() == [1]


def test_dual_beta_draws_in_proportion_to_beta_density_times_score():
    # two samples of one class, keep one: P(choose i) = w_i / (w_0 + w_1)
    p = np.array([[0.4, 0.6, 0.4, 0.6], [0.6, 0.9, 0.6, 0.9]])
    labels = [0, 0]
    score = dual_scores(p, window=2).astype(float)
    mean = p.mean(axis=1)
    mu = mean[np.argmax(score)]  # n_anchor=1: the top-DUAL sample
    ratio = 0.5
    b = 15.0 * (1 - mu) * (1 - ratio**4.0)
    a = 16.0 - b
    w = mean ** (a - 1) * (1 - mean) ** (b - 1) * score
    expected = w[0] / w.sum()
    picks = [
        dual_beta_select(labels, {0: 1}, p, window=2, n_anchor=1, seed=s)[0] for s in range(600)
    ]
    assert abs(np.mean(np.array(picks) == 0) - expected) < 0.06
    assert abs(expected - 0.5) > 0.2  # a uniform draw would fail ...
    assert abs(expected - score[0] / score.sum()) > 0.15  # ... and so would score-only weights


def test_dual_beta_takes_zero_weight_samples_last():
    p = np.array([[0.5] * 4, [0.2, 0.8, 0.2, 0.8], [0.5] * 4, [0.3, 0.7, 0.3, 0.7]])
    for seed in range(10):  # DUAL score 0 for rows 0 and 2: never drawn while others remain
        assert dual_beta_select([0] * 4, {0: 2}, p, window=2, seed=seed).tolist() == [1, 3]


# --------------------------------------------------------------------------------- herding


def _herding_reference(x, k):
    mu, chosen = x.mean(axis=0), []
    for _ in range(k):
        best = min(
            (i for i in range(len(x)) if i not in chosen),
            key=lambda i: np.linalg.norm(mu - x[chosen + [i]].mean(axis=0)),
        )
        chosen.append(best)
    return sorted(chosen)


def test_herding_matches_greedy_mean_matching():
    x = np.array([[3.0], [10.0], [-7.2], [1.8], [2.4]])
    assert herding_select([0] * 5, {0: 4}, x).tolist() == [0, 2, 3, 4]
    rng = np.random.default_rng(3)
    x = rng.normal(size=(15, 3))
    labels = np.repeat([0, 1], [9, 6])
    got = herding_select(labels, {0: 4, 1: 3}, x)
    expected = _herding_reference(x[:9], 4) + [9 + i for i in _herding_reference(x[9:], 3)]
    assert got.tolist() == expected


# -------------------------------------------------------------------------------- moderate


def test_moderate_keeps_the_median_distance_not_the_centre_nor_outliers():
    x = np.array([[0.0], [1.0], [2.0], [3.0], [10.0], [2.2]])  # median centre 2.1
    # distances 2.1 1.1 0.1 0.9 7.9 0.1 -> median 1.0: keep 1 (1.1) and 3 (0.9) first
    idx = select_baseline("moderate", [0] * 6, budgets={0: 2}, signals={"embeddings": x})
    assert idx.tolist() == [1, 3]
    s = moderate_scores(x, [0] * 6)
    assert s[4] == s.min()  # the outlier comes last
    s_mean = moderate_scores(x, [0] * 6, center="mean")  # mean centre 3.0333
    d = np.abs(x[:, 0] - x[:, 0].mean())
    assert np.allclose(s_mean, -np.abs(d - np.median(d)), atol=1e-6)


def test_moderate_is_per_class():
    x = np.array([[0.0], [1.0], [2.0], [100.0], [101.0], [103.0]])
    s = moderate_scores(x, [0, 0, 0, 1, 1, 1])
    # class 1 alone: centre 101, distances 1 0 2, median 1
    assert np.allclose(s[3:], [0.0, -1.0, -1.0])


# ------------------------------------------------------------------------ k-Center greedy


def test_kcenter_takes_one_point_per_well_separated_cluster():
    rng = np.random.default_rng(0)
    centres = np.array([[0.0, 0.0], [50.0, 0.0], [0.0, 50.0]])
    x = np.concatenate([c + rng.normal(scale=0.5, size=(10, 2)) for c in centres])
    for seed in range(5):
        idx = kcenter_select([0] * 30, {0: 3}, x, seed=seed)
        assert sorted(idx // 10) == [0, 1, 2]


def _kcenter_reference(x, first, k):
    chosen = [first]
    while len(chosen) < k:
        d = np.min(np.abs(x[:, None, 0] - x[None, chosen, 0]), axis=1)
        d[chosen] = -1
        chosen.append(int(np.argmax(d)))
    return sorted(chosen)


def test_kcenter_adds_the_farthest_point_from_the_centres_each_step():
    x = np.array([[0.0], [1.0], [2.5], [3.0], [10.0], [6.0]])
    refs = [_kcenter_reference(x, first, 3) for first in range(6)]
    for seed in range(8):
        got = kcenter_select([0] * 6, {0: 3}, x, seed=seed).tolist()
        assert got in refs  # farthest-first from whichever first centre the seed drew
        assert 4 in got  # 10.0 is the farthest from any first centre but itself


# -------------------------------------------------------------------------------- GraphCut


def _graphcut_reference(sim, k, lam):
    f = lambda a: lam * sim[:, a].sum() - sim[np.ix_(a, a)].sum()  # noqa: E731
    chosen = []
    for _ in range(k):
        gains = [(f(chosen + [i]) - f(chosen), -i) for i in range(len(sim)) if i not in chosen]
        chosen.append(-max(gains)[1])
    return sorted(chosen)


@pytest.mark.parametrize("similarity", ["cosine", "rbf"])
@pytest.mark.parametrize("lam", [1.0, 2.0, 5.0])
def test_graphcut_matches_the_greedy_on_the_generalized_graph_cut(similarity, lam):
    rng = np.random.default_rng(4)
    x = rng.normal(size=(10, 3))
    if similarity == "cosine":
        u = x / np.linalg.norm(x, axis=1, keepdims=True)
        sim = 0.5 + 0.5 * u @ u.T
    else:
        sim = np.exp(-np.square(x[:, None] - x[None]).sum(-1) / 3)
    got = graphcut_select([0] * 10, {0: 4}, x, lam=lam, similarity=similarity)
    assert got.tolist() == _graphcut_reference(sim, 4, lam)


# ----------------------------------------------------------------------------- D2-Pruning


def test_d2_forward_message_passing_adds_neighbour_difficulty():
    x = np.array([[0.0], [1.0], [3.0], [10.0]])
    s = np.array([0.6, 0.5, 2.0, 0.0])  # min 0: no shift
    # 1-NN graph, symmetrised: 0-1, 1-2 (2's nearest), 2-3 (3's nearest)
    # density = s + sum over neighbours of exp(-d) * max(s_nbr, 1e-7)
    e = np.exp
    dens = np.array([
        0.6 + e(-1) * 0.5,
        0.5 + e(-1) * 0.6 + e(-2) * 2.0,
        2.0 + e(-2) * 0.5 + e(-7) * 1e-7,
        0.0 + e(-7) * 2.0,
    ])
    top2 = sorted(np.argsort(-dens)[:2].tolist())
    assert top2 == [1, 2] and sorted(np.argsort(-s)[:2].tolist()) == [0, 2]  # passing matters
    # no reverse suppression (gamma_reverse large): top-k of the forward density
    idx = d2_select([0] * 4, {0: 2}, x, s, n_neighbors=1, gamma_reverse=1e6)
    assert idx.tolist() == top2


def test_d2_uses_the_scores_as_given_unless_shift_is_asked():
    """The D2 code does not shift the difficulty; cld-hf used to subtract each class's minimum."""
    x = np.array([[0.0], [1.0], [3.0], [10.0]])
    s = np.array([0.6, 0.5, 2.0, 0.0])
    e = np.exp
    s7 = s + 7.0  # same ranking, shifted: 7.6 7.5 9.0 7.0
    dens = np.array([  # 1-NN graph 0-1, 1-2, 2-3, no shift
        s7[0] + e(-1) * s7[1],
        s7[1] + e(-1) * s7[0] + e(-2) * s7[2],
        s7[2] + e(-2) * s7[1] + e(-7) * s7[3],
        s7[3] + e(-7) * s7[2],
    ])
    expected = sorted(np.argsort(-dens)[:2].tolist())
    assert expected == [0, 1]  # the neighbours' share of the raw scores outweighs 2.0 vs 0.6
    got = d2_select([0] * 4, {0: 2}, x, s7, n_neighbors=1, gamma_reverse=1e6)
    assert got.tolist() == expected
    # shift=True subtracts the minimum first: the picks of the unshifted scores, [1, 2]
    shifted = d2_select([0] * 4, {0: 2}, x, s7, n_neighbors=1, gamma_reverse=1e6, shift=True)
    assert shifted.tolist() == [1, 2]


def test_d2_searches_the_neighbours_once_per_class(monkeypatch):
    calls = []
    real = common.neighbors_without_self

    def counting(x, k):
        calls.append(len(x))
        return real(x, k)

    from cld_hf.baselines import geometry

    monkeypatch.setattr(geometry, "neighbors_without_self", counting)
    labels, signals = _recorded()
    select_baseline("d2_pruning", labels, budgets=class_budgets(labels, fraction=0.3),
                    signals=signals)
    assert sorted(calls) == sorted(np.bincount(labels).tolist())  # one search per class


def test_d2_reverse_message_passing_spreads_picks_over_clusters():
    x = np.array([[0.0], [0.1], [0.2], [5.0], [5.1], [5.2]])
    difficulty = np.array([3.0, 3.1, 2.9, 1.0, 1.1, 0.9])
    # without suppression both picks come from the hard cluster ...
    assert d2_select([0] * 6, {0: 2}, x, difficulty, n_neighbors=2, gamma_reverse=1e6).max() < 3
    # ... with it, the second pick comes from the other cluster
    idx = d2_select([0] * 6, {0: 2}, x, difficulty, n_neighbors=2, gamma_reverse=0.0)
    assert sorted(idx // 3) == [0, 1]


def test_d2_hard_prune_drops_the_hardest_first():
    x = np.arange(10.0)[:, None]
    idx = d2_select([0] * 10, {0: 3}, x, np.arange(10.0), hard_prune=0.3)
    assert idx.max() < 7


# ------------------------------------------------------------------------------------ CAL


def test_cal_is_the_mean_kl_from_neighbours_to_the_sample():
    x = np.array([[0.0], [0.1], [0.25]])
    p = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7]])
    kl = lambda a, b: float(np.sum(a * np.log(a / b)))  # noqa: E731
    expected = [
        kl(p[1], p[0]),  # 1-NN of 0 is 1
        kl(p[0], p[1]),  # 1-NN of 1 is 0 (0.1 < 0.15)
        kl(p[1], p[2]),  # 1-NN of 2 is 1
    ]
    assert np.allclose(cal_scores(x, p, [0, 0, 0], n_neighbors=1), expected, atol=1e-6)
    both = [(kl(p[1], p[0]) + kl(p[2], p[0])) / 2, (kl(p[0], p[1]) + kl(p[2], p[1])) / 2,
            (kl(p[0], p[2]) + kl(p[1], p[2])) / 2]
    assert np.allclose(cal_scores(x, p, [0, 0, 0], n_neighbors=5), both, atol=1e-6)


def test_cal_keeps_the_sample_that_disagrees_with_its_neighbours():
    x = np.array([[0.0], [0.1], [0.2], [0.3]])
    p = np.array([[0.9, 0.1], [0.85, 0.15], [0.1, 0.9], [0.9, 0.1]])
    sig = {"embeddings": x, "probs": p}
    idx = select_baseline("cal", [0] * 4, budgets={0: 1}, signals=sig, n_neighbors=2)
    assert idx.tolist() == [2]


def test_cal_searches_neighbours_within_the_class():
    x = np.array([[0.0], [0.1], [0.05], [5.0]])
    p = np.array([[0.9, 0.1], [0.9, 0.1], [0.1, 0.9], [0.1, 0.9]])
    s = cal_scores(x, p, [0, 0, 1, 1], n_neighbors=1)
    assert s[0] == pytest.approx(0.0, abs=1e-6)  # its only class-mate agrees
    assert s[2] == pytest.approx(0.0, abs=1e-6)  # row 0/1 are nearer but of class 0


# ------------------------------------------------------------------------------ gradients


def test_last_layer_gradients_are_the_outer_product_and_norms_factorise():
    rng = np.random.default_rng(5)
    probs = _softmax(rng.normal(size=(6, 4)))
    emb = rng.normal(size=(6, 3))
    labels = rng.integers(0, 4, size=6)
    g = last_layer_gradients(probs, emb, labels)
    for i in range(6):
        e = probs[i] - np.eye(4)[labels[i]]
        assert np.allclose(g[i], np.outer(e, np.append(emb[i], 1.0)).ravel(), atol=1e-6)
    assert np.allclose(gradient_norms(probs, emb, labels), np.linalg.norm(g, axis=1), atol=1e-5)
    concat = last_layer_gradients(probs, emb, labels, form="concat")
    assert np.allclose(concat[:, :4], probs - np.eye(4)[labels], atol=1e-6)
    assert np.allclose(concat[:, 4:], emb, atol=1e-6)


def test_grand_averages_norms_over_snapshots_and_keeps_high():
    rng = np.random.default_rng(6)
    probs = _softmax(rng.normal(size=(5, 3, 2)))  # (N, S, C)
    emb = rng.normal(size=(5, 3, 4))
    labels = np.array([0, 1, 0, 1, 1])
    per = [gradient_norms(probs[:, t], emb[:, t], labels) for t in range(3)]
    assert np.allclose(grand_scores(probs, emb, labels), np.mean(per, axis=0), atol=1e-6)
    # direction: a confidently wrong sample before a confidently right one
    p = np.array([[0.95, 0.05], [0.05, 0.95]])
    sig = {"probs": p, "embeddings": np.ones((2, 2))}
    assert select_baseline("grand", [0, 0], budgets={0: 1}, signals=sig).tolist() == [1]


def test_gradient_projections_project_on_the_mean_gradient():
    rng = np.random.default_rng(7)
    probs = _softmax(rng.normal(size=(8, 3)))
    emb = rng.normal(size=(8, 2))
    labels = rng.integers(0, 3, size=8)
    g = last_layer_gradients(probs, emb, labels).astype(float)
    mean = g.mean(axis=0)
    expected = g @ mean / np.linalg.norm(mean)
    assert np.allclose(gradient_projections(probs, emb, labels), expected, atol=1e-5)


def _craig_reference(g, k):
    d = np.linalg.norm(g[:, None] - g[None], axis=-1)
    sim = d.max() - d
    chosen, cur = [], np.zeros(len(g))
    for _ in range(k):
        gains = np.maximum(sim - cur[:, None], 0).sum(axis=0)
        gains[chosen] = -np.inf
        j = int(np.argmax(gains))
        chosen.append(j)
        cur = np.maximum(cur, sim[:, j])
    return sorted(chosen)


@pytest.mark.parametrize("form", ["outer", "concat"])
def test_craig_matches_the_greedy_facility_location_on_gradients(form):
    rng = np.random.default_rng(8)
    probs = _softmax(rng.normal(size=(14, 3)))
    emb = rng.normal(size=(14, 4))
    labels = np.repeat([0, 1], 7)
    g = last_layer_gradients(probs, emb, labels, form=form).astype(float)
    got = craig_select(labels, {0: 3, 1: 4}, probs, emb, form=form)
    expected = _craig_reference(g[:7], 3) + [7 + i for i in _craig_reference(g[7:], 4)]
    assert got.tolist() == expected


def test_tdds_is_the_decayed_sum_of_windowed_deviation_norms():
    rng = np.random.default_rng(9)
    c = rng.normal(size=(4, 7))
    window, decay = 3, 0.6
    n_windows = 7 - window + 1
    expected = np.zeros(4)
    for k in range(n_windows):
        w = c[:, k : k + window]
        expected += decay * (1 - decay) ** (n_windows - 1 - k) * np.linalg.norm(
            w - w.mean(axis=1, keepdims=True), axis=1
        )
    assert np.allclose(tdds_scores(c, window=window, decay=decay), expected, atol=1e-5)
    steady = np.array([[1.0] * 5, [0.0, 2.0, 0.0, 2.0, 0.0]])
    sig = {"grad_projection": steady}
    assert select_baseline("tdds", [0, 0], budgets={0: 1}, signals=sig, window=3).tolist() == [1]


def test_tdds_kl_terms_are_the_tdds_code_per_epoch_term():
    p0 = np.array([[0.5, 0.3, 0.2], [0.9, 0.05, 0.05]])
    p1 = np.array([[0.4, 0.4, 0.2], [0.1, 0.8, 0.1]])
    expected = np.abs(p1 * (np.log(p1 + 1e-8) - np.log(p0 + 1e-8))).sum(axis=1)
    assert np.allclose(tdds_kl_terms(p0, p1), expected, atol=1e-6)
    assert np.allclose(tdds_kl_terms(p1, p1), 0.0, atol=1e-7)


def test_tdds_kl_windows_use_the_transitions_inside_each_window():
    # S = 5, J = 3: windows {0,1,2}, {1,2,3}, {2,3,4} use terms (1, 2), (2, 3), (3, 4)
    kl = np.array([[9.0, 0.1, 0.3, 0.2, 0.6]])  # column 0 is not read
    decay = 0.5
    v = [abs(0.1 - 0.3) / np.sqrt(2), abs(0.3 - 0.2) / np.sqrt(2), abs(0.2 - 0.6) / np.sqrt(2)]
    expected = sum(decay * (1 - decay) ** (2 - k) * v[k] for k in range(3))
    assert np.allclose(tdds_kl_scores(kl, window=3, decay=decay), [expected], atol=1e-6)
    kl2 = kl.copy()
    kl2[0, 0] = 0.0
    assert np.array_equal(tdds_kl_scores(kl, window=3), tdds_kl_scores(kl2, window=3))


def test_tdds_kl_keeps_the_samples_whose_output_change_varies():
    kl = np.array([[0.0, 0.2, 0.2, 0.2, 0.2], [0.0, 0.0, 0.9, 0.0, 0.5],
                   [0.0, 0.1, 0.1, 0.1, 0.15]])
    idx = select_baseline("tdds_kl", [0, 0, 0], budgets={0: 1}, signals={"tdds_kl": kl},
                          window=3)
    assert idx.tolist() == [1]


def test_slocurv_keeps_the_lowest_curvature_first():
    curv = np.array([[0.1, 0.2], [3.0, 2.5], [0.0, 0.05], [1.0, 1.2]])
    assert np.allclose(slocurv_scores(curv), -(curv**2).mean(axis=1), atol=1e-6)
    assert np.allclose(slocurv_scores(curv, form="norm"), -curv.mean(axis=1), atol=1e-6)
    idx = select_baseline("slocurv", [0] * 4, budgets={0: 2}, signals={"curvature": curv})
    assert idx.tolist() == [0, 2]  # the two flattest samples, not the high-curvature ones
    # the two forms can rank differently with several probes: mean of squares vs mean of norms
    two = np.array([[0.0, 2.0], [1.1, 1.1]])  # squares: 2.0 vs 1.21; norms: 1.0 vs 1.1
    assert np.argmax(slocurv_scores(two)) == 1 and np.argmax(slocurv_scores(two, form="norm")) == 0
    # an (N,) array is taken as the scores themselves
    assert np.allclose(slocurv_scores([0.5, 0.1]), [-0.5, -0.1])


def test_boundary_ccs_spreads_the_budget_over_the_distance_bands():
    labels = np.repeat([0, 1], 12)
    steps = np.array([0, 1, 1, 1, 1, 1, 1, 1, 1, 3, 3, 7,    # class 0: bands 0, 1, 3, 7
                      2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 5, 5])   # class 1: bands 2, 5
    for seed in range(5):
        idx = boundary_ccs_select(labels, {0: 4, 1: 4}, steps, k_max=10, seed=seed)
        assert _counts(labels, idx, [0, 1]) == {0: 4, 1: 4}
        assert sorted(steps[idx[idx < 12]].tolist()) == [0, 1, 3, 7]  # one per band
        assert sorted(steps[idx[idx >= 12]].tolist()) == [2, 2, 5, 5]  # band 5 gives its 2


def test_boundary_ccs_hard_prune_drops_the_samples_closest_to_the_boundary():
    labels = np.zeros(10, dtype=int)
    steps = np.array([0, 0, 1, 2, 3, 4, 5, 6, 7, 8])
    idx = boundary_ccs_select(labels, {0: 5}, steps, k_max=8, hard_prune=0.2, seed=0)
    assert 0 not in idx and 1 not in idx  # d = 0: misclassified by the proxy, pruned first
    sig = {"boundary_steps": steps}
    assert len(select_baseline("boundary_ccs", labels, budgets={0: 5}, signals=sig,
                               k_max=8)) == 5


def _explicit_glister(g, q_logits, q_labels, q_feats, k, eta, step, update):
    """GLISTER's greedy with explicit gradient vectors and an explicit last-layer update."""
    c = q_logits.shape[1]
    aq = np.hstack([q_feats, np.ones((len(q_feats), 1))])

    def val_grad(z):
        p = _softmax(z)
        e = p - np.eye(c)[q_labels]
        return (e[:, :, None] * aq[:, None, :]).reshape(len(z), -1).mean(axis=0)

    chosen = []
    gv = val_grad(q_logits)
    for _ in range(k):
        gains = g @ gv
        gains[chosen] = -np.inf
        chosen.append(int(np.argmax(gains)))
        if update:
            gs = g[chosen].mean(axis=0) if step == "mean" else g[chosen].sum(axis=0)
            w = gs.reshape(c, -1)  # d loss / d [W, b], row per class
            gv = val_grad(q_logits - eta * aq @ w.T)
    return sorted(chosen)


@pytest.mark.parametrize(("step", "eta"), [("mean", 0.1), ("mean", 2.0), ("sum", 0.5)])
def test_glister_naive_greedy_matches_an_explicit_update(step, eta):
    rng = np.random.default_rng(14)
    n, c, d = 12, 3, 4
    probs = _softmax(rng.normal(size=(n, c)) * 2)
    emb = rng.normal(size=(n, d))
    labels = np.zeros(n, dtype=int)
    q_logits = rng.normal(size=(4, c)) * 2
    q_emb = rng.normal(size=(4, d))
    q_labels = np.zeros(4, dtype=int)
    g = last_layer_gradients(probs, emb, labels).astype(float)
    expected = _explicit_glister(g, q_logits, q_labels, q_emb, 5, eta, step, True)
    got = glister_select(labels, {0: 5}, probs, emb, _softmax(q_logits), q_emb, q_labels,
                         eta=eta, step=step, greedy="naive")
    assert got.tolist() == expected
    static = _explicit_glister(g, q_logits, q_labels, q_emb, 5, eta, step, False)
    got = glister_select(labels, {0: 5}, probs, emb, _softmax(q_logits), q_emb, q_labels,
                         reference="deepcore")
    assert got.tolist() == static


def test_glister_update_changes_the_picks_and_a_zero_step_gives_the_static_top_k():
    labels, signals = _recorded(seed=3)
    args = [signals[k] for k in ("probs", "embeddings", "query_probs", "query_embeddings",
                                 "query_labels")]
    budgets = class_budgets(labels, fraction=0.4)
    static = glister_select(labels, budgets, *args, reference="deepcore")
    for greedy in ("lazy", "naive"):
        moved = glister_select(labels, budgets, *args, eta=5.0, greedy=greedy)
        assert _counts(labels, moved, budgets) == budgets
        assert not np.array_equal(moved, static)  # the Taylor update matters at this step
        still = glister_select(labels, budgets, *args, eta=0.0, greedy=greedy)
        assert np.array_equal(still, static)  # no step: the gains never change


def test_glister_scores_each_class_against_its_own_query_samples():
    probs = np.array([[0.9, 0.1], [0.6, 0.4], [0.3, 0.7], [0.2, 0.8]])
    emb = np.ones((4, 1))
    labels = np.array([0, 0, 1, 1])
    q_probs = np.array([[0.3, 0.7], [0.6, 0.4]])  # class 0's query is misclassified
    q_emb = np.ones((2, 1))
    got = glister_select(labels, {0: 1, 1: 1}, probs, emb, q_probs, q_emb, [0, 1])
    # class 0: gains (e_i . e_q) * 2 with e_q = (-0.7, 0.7): sample 1 (e = (-0.4, 0.4)) wins
    # class 1: e_q = (0.6, -0.6): sample 2 (e = (0.3, -0.3)) and 3 (0.2, -0.2): 2 wins
    assert got.tolist() == [1, 2]
    with pytest.raises(ValueError, match=r"class 1 has a budget of 1 but no query sample.*"
                                         r"query='all'"):
        glister_select(labels, {0: 1, 1: 1}, probs, emb, q_probs[:1], q_emb[:1], [0])
    every = glister_select(labels, {0: 1, 1: 1}, probs, emb, q_probs[:1], q_emb[:1], [0],
                           query="all")
    assert len(every) == 2


def test_herding_deepcore_reference_takes_the_farthest_point():
    x = np.array([[3.0], [10.0], [-7.2], [1.8], [2.4]])  # mean 2.0
    # DeepCore's argmax: first the farthest from the mean (-7.2), then the farthest from
    # 2 * 2.0 - (-7.2) = 11.2, i.e. -7.2 is taken, so 1.8 (9.4 away) beats 10 (1.2 away)
    assert herding_select([0] * 5, {0: 1}, x, reference="deepcore").tolist() == [2]
    assert herding_select([0] * 5, {0: 2}, x, reference="deepcore").tolist() == [2, 3]


def test_cal_deepcore_reference_keeps_the_least_contrastive():
    x = np.array([[0.0], [0.1], [0.2], [0.3]])
    p = np.array([[0.9, 0.1], [0.85, 0.15], [0.1, 0.9], [0.9, 0.1]])
    sig = {"embeddings": x, "probs": p}
    paper = select_baseline("cal", [0] * 4, budgets={0: 1}, signals=sig, n_neighbors=2)
    deepcore = select_baseline("cal", [0] * 4, budgets={0: 1}, signals=sig, n_neighbors=2,
                               reference="deepcore")
    assert paper.tolist() == [2]  # disagrees with its neighbours
    assert deepcore.tolist() != [2]
    kl = lambda a, b: float(np.sum(a * np.log(a / b)))  # noqa: E731
    nbrs = {0: [1, 2], 1: [0, 2], 2: [1, 3], 3: [2, 1]}  # 2 nearest (ties to the lower index)
    sym = [np.mean([(kl(p[i], p[j]) + kl(p[j], p[i])) / 2 for j in nbrs[i]]) for i in range(4)]
    assert np.allclose(cal_scores(x, p, [0] * 4, n_neighbors=2, reference="deepcore"),
                       -np.array(sym), atol=1e-6)
    assert deepcore.tolist() == [int(np.argmin(sym))]


def test_neighbors_without_self_matches_brute_force():
    rng = np.random.default_rng(16)
    x = rng.normal(size=(60, 7))
    d_full = np.linalg.norm(x[:, None] - x[None], axis=-1)
    np.fill_diagonal(d_full, np.inf)
    for k in (1, 5, 59, 80):
        dist, ind = neighbors_without_self(x, k)
        m = min(k, 59)
        order = np.argsort(d_full, axis=1, kind="stable")[:, :m]
        assert np.array_equal(ind, order)
        assert np.allclose(dist, np.take_along_axis(d_full, order, axis=1))
    # duplicates: a copy is a neighbour at distance 0, the row itself never is
    dup = np.array([[0.0, 0.0], [0.0, 0.0], [5.0, 5.0]])
    dist, ind = neighbors_without_self(dup, 1)
    assert ind[:, 0].tolist() == [1, 0, 0] and np.allclose(dist[:2, 0], 0.0, atol=1e-6)


def test_neighbors_without_self_agrees_with_scikit_learn():
    from sklearn.neighbors import NearestNeighbors

    rng = np.random.default_rng(17)
    x = rng.normal(size=(300, 16))
    dist, ind = neighbors_without_self(x, 10)
    ref_d, ref_i = NearestNeighbors(n_neighbors=11).fit(x).kneighbors(x)
    assert np.array_equal(ind, ref_i[:, 1:])
    assert np.allclose(dist, ref_d[:, 1:])


def test_large_float32_inputs_are_not_copied_whole():
    p = _softmax(np.random.default_rng(18).normal(size=(50, 4))).astype(np.float32)
    assert common.check_probs(p) is p
    emb = np.ones((50, 3), dtype=np.float32)
    assert common.check_array(emb, "embeddings", dtype=None) is emb
    assert common.check_array(emb, "embeddings").dtype == np.float64  # the default converts


# ------------------------------------------------------------------------------- bad input


def test_a_missing_signal_is_named_with_how_to_record_it():
    labels, signals = _recorded()
    del signals["correct"]
    with pytest.raises(ValueError, match=r"'forgetting' needs the signal 'correct'.*argmax"):
        select_baseline("forgetting", labels, budgets={0: 1}, signals=signals)
    with pytest.raises(ValueError, match=r"'grad_projection'.*gradient_projections"):
        select_baseline("tdds", labels, budgets={0: 1}, signals={"loss": signals["loss"]})


def test_unknown_methods_and_options_are_refused():
    labels, signals = _recorded()
    with pytest.raises(ValueError,
                       match=r"method == 'glister_online'.*not implemented.*training loop"):
        select_baseline("glister_online", labels, budgets={0: 1}, signals=signals)
    with pytest.raises(ValueError, match=r"must be one of \['aum'"):
        select_baseline("nope", labels, budgets={0: 1}, signals=signals)
    with pytest.raises(TypeError, match=r"unknown option\(s\) \['windw'\]"):
        select_baseline("dual", labels, budgets={0: 1}, signals=signals, windw=3)
    with pytest.raises(TypeError, match=r"unknown option\(s\) \['scores'\]"):  # not a sampler
        select_baseline("herding", labels, budgets={0: 1}, signals=signals, scores=labels * 1.0)
    with pytest.raises(ValueError, match=r"budgets names class 'a', which has no sample"):
        select_baseline("herding", labels, budgets={"a": 1}, signals=signals)


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: el2n_scores([[0.1, np.nan], [0.2, 0.3]]), ValueError,
         r"el2n contains 1 NaN.*\[0\]"),
        (lambda: aum_scores([1.0, 2.0]), ValueError, r"margin must be a 2-D array.*shape \(2,\)"),
        (lambda: forgetting_scores([[0.5, 1.0]]), TypeError, r"correct must hold booleans"),
        (lambda: dyn_unc_scores(np.full((2, 4), 0.5), window=5), ValueError,
         r"window == 5, must be <= 4"),
        (lambda: dual_scores([[0.1, 1.7, 0.2]], window=2), ValueError,
         r"true_prob must hold probabilities"),
        (lambda: el2n_scores([[0.1]], first=0), ValueError, r"first == 0, must be >= 1"),
        (lambda: herding_select([0, 0, 1], {0: 1}, np.zeros((2, 2))), ValueError,
         r"labels has 3 entries but the signals have 2 rows"),
        (lambda: herding_select([0, 0], {0: 3}, np.zeros((2, 2))), ValueError,
         r"budgets\[0\] == 3, must be an int between 0 and 2"),
        (lambda: kcenter_select([0, 0], {5: 1}, np.zeros((2, 2))), ValueError,
         r"budgets names class 5, which has no sample"),
        (lambda: herding_select([0, 0], [1], np.zeros((2, 2))), TypeError,
         r"budgets must be a dict"),
        (lambda: ccs_select([0, 0], {0: 1}, [1.0, 2.0], hard_prune=1.0), ValueError,
         r"hard_prune == 1.0, must be < 1.0"),
        (lambda: graphcut_select([0, 0], {0: 1}, np.ones((2, 2)), lam=0), ValueError,
         r"lam == 0.0, must be > 0.0"),
        (lambda: d2_select([0, 0], {0: 1}, np.ones((2, 2)), [1.0]), ValueError,
         r"scores has 1 rows but the other inputs have 2"),
        (lambda: cal_scores(np.ones((2, 2)), [[2.0, -1.0], [0.0, 1.0]], [0, 0]), ValueError,
         r"softmax probabilities.*Pass softmax\(logits\)"),
        (lambda: grand_scores([[0.5, 0.5]], [[1.0]], [2]), ValueError,
         r"labels must be class indices in \[0, 1\]"),
        (lambda: grand_scores(np.full((2, 3, 2), 0.5), np.ones((2, 2, 4)), [0, 1]), ValueError,
         r"probs has shape \(2, 3, 2\) but embeddings has \(2, 2, 4\)"),
        (lambda: moderate_scores(np.ones((2, 2)), [0.0, 1.0]), TypeError,
         r"labels must hold integer"),
        (lambda: moderate_scores(np.ones((2, 2)), [0, 1], center="mode"), ValueError,
         r"center == 'mode', must be one of \['median', 'mean'\]"),
        (lambda: tdds_scores(np.ones((2, 4)), window=2, decay=0.0), ValueError,
         r"decay == 0.0, must be > 0.0"),
        (lambda: forgetting_scores(np.ones((2, 3), dtype=bool), variant="paper"), ValueError,
         r"variant == 'paper', must be one of \['deepcore', 'toneva'\]"),
        (lambda: aum_scores(np.ones((2, 3)), keep="median"), ValueError,
         r"keep == 'median', must be one of \['high', 'low'\]"),
        (lambda: ccs_select([0, 0], {0: 1}, [1.0, 2.0], pool="dataset"), ValueError,
         r"pool == 'dataset', must be one of \['class', 'global'\]"),
        (lambda: slocurv_scores([[0.5, -0.1]]), ValueError,
         r"curvature must hold norms \(>= 0\), got a minimum of -0.1"),
        (lambda: boundary_ccs_select([0, 0], {0: 1}, [0, 60]), ValueError,
         r"boundary_steps must lie in \[0, k_max\] = \[0, 50\], got values in \[0, 60\]"),
        (lambda: boundary_ccs_select([0, 0], {0: 1}, [0.5, 1.0]), TypeError,
         r"boundary_steps must hold integer step counts, got dtype float64"),
        (lambda: boundary_ccs_select([0, 0, 0], {0: 1}, [1, 2]), ValueError,
         r"boundary_steps has 2 entries but labels has 3"),
        (lambda: tdds_kl_scores(-np.ones((2, 4)), window=2), ValueError,
         r"tdds_kl must hold non-negative terms.*tdds_kl_terms"),
        (lambda: tdds_kl_terms(np.full((2, 2), 0.5), np.full((3, 2), 0.5)), ValueError,
         r"probs has 3 rows but the other inputs have 2"),
        (lambda: glister_select([0, 0], {0: 1}, np.full((2, 2), 0.5), np.ones((2, 3)),
                                np.full((1, 2), 0.5), np.ones((1, 3)), [0], eta=-1.0),
         ValueError, r"eta == -1.0, must be >= 0.0"),
        (lambda: glister_select([0, 0], {0: 1}, np.full((2, 2), 0.5), np.ones((2, 3)),
                                np.full((1, 3), 1 / 3), np.ones((1, 3)), [0]),
         ValueError, r"query_probs and query_embeddings have shapes \(1, 3\) and \(1, 3\), "
                     r"but the training probs and embeddings have 2 classes"),
        (lambda: glister_select([0, 0], {0: 1}, np.full((2, 2), 0.5), np.ones((2, 3)),
                                np.full((1, 2), 0.5), np.ones((1, 3)), [0, 1]),
         ValueError, r"query_labels has 2 entries but the signals have 1 rows"),
    ],
    ids=itertools.count(),
)
def test_bad_input_gets_a_clear_error(call, error, match):
    with pytest.raises(error, match=match):
        call()


# ------------------------------------------------------------------------- benchmark script


def _bench_module():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "scripts" / "bench_baselines.py"
    spec = importlib.util.spec_from_file_location("bench_baselines", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bench_script_generates_every_signal_and_runs_every_method_small():
    bench = _bench_module()
    for method in METHODS:
        row = bench.run_one(method, 0.0005, 0.1)  # N = 634, 12 classes
        assert row["k"] == 63 or row["k"] == 64, method
        assert row["inputs_gib"] >= 0 and row["seconds"] >= 0
        # the memory plan of the full-scale run knows every signal the method reads
        assert bench._needs_gib(method, 1.0) > bench._inputs_gib(method, 1.0) > 0, method
    table = bench.markdown([row, {"method": "aum", "scale": 1.0, "error": "timeout"}])
    assert table.splitlines()[0].startswith("| method | Appendix E cost |")
    assert "| aum |" in table and "timeout" in table


def test_bench_script_main_runs_a_method_in_a_child_process(capsys):
    bench = _bench_module()
    assert bench.main(["--scale", "0.0005", "--methods", "aum", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert "| aum | 3N T_proxy f + 3k T f_large | 0.0005 (634) |" in out
