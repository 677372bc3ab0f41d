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
    gradient_norms,
    gradient_projections,
    grand_scores,
    graphcut_select,
    herding_select,
    kcenter_select,
    last_layer_gradients,
    moderate_scores,
    select_baseline,
    tdds_scores,
)

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
    signals = {
        "correct": logits.argmax(-1) == labels[:, None],
        "true_prob": probs_t[rows, :, labels].astype(np.float32),
        "margin": (true_logit - other.max(-1)).astype(np.float32),
        "el2n": np.linalg.norm(probs_t - np.eye(c)[labels][:, None, :], axis=-1).astype(np.float32),
        "loss": -np.log(probs_t[rows, :, labels]).astype(np.float32),
        "grad_projection": rng.normal(size=(n, num_snapshots)).astype(np.float32),
        "embeddings": emb,
        "probs": probs_t[:, -1].astype(np.float32),
    }
    return labels, signals


# Options that make every method run on the 12-snapshot fixture (windows must fit).
_SMALL = {"dyn_unc": {"window": 4}, "dual": {"window": 4}, "dual_beta": {"window": 4},
          "tdds": {"window": 4}}


def _counts(labels, idx, classes):
    return {int(c): int((labels[idx] == c).sum()) for c in classes}


# ------------------------------------------------------------------------ registry, budgets


def test_registry_records_are_complete():
    assert set(METHODS) == {
        "random", "forgetting", "el2n", "aum", "ccs_aum", "dyn_unc", "dual", "dual_beta",
        "herding", "moderate", "kcenter", "graphcut", "d2_pruning", "cal", "grand", "craig",
        "tdds",
    }
    for name, spec in METHODS.items():
        assert spec.kind in ("score", "select"), name
        assert set(spec.signals) <= set(SIGNALS), name
        assert spec.direction and spec.cost and spec.storage and spec.reference, name
        if spec.difficulty is not None:
            assert METHODS[spec.difficulty].kind == "score"
    assert METHODS["aum"].direction.startswith("low")
    assert METHODS["moderate"].direction.startswith("median")
    assert METHODS["forgetting"].direction.startswith("high")
    assert set(NOT_IMPLEMENTED) == {"glister", "slocurv"}
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


@pytest.mark.parametrize("method", ["random", "ccs_aum", "dual_beta", "kcenter"])
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


def test_forgetting_keeps_three_events_before_one_and_never_learned_first():
    correct = np.array(
        [
            [1, 0, 1, 0, 1, 0, 1],  # forgotten 3 times
            [1, 0, 1, 1, 1, 1, 1],  # forgotten once
            [0, 0, 0, 0, 0, 0, 0],  # never learned: most forgotten
            [1, 1, 1, 1, 1, 1, 1],  # never forgotten
        ],
        dtype=bool,
    )
    labels = np.zeros(4, dtype=int)
    sig = {"correct": correct}
    assert select_baseline("forgetting", labels, budgets={0: 1}, signals=sig).tolist() == [2]
    assert select_baseline("forgetting", labels, budgets={0: 2}, signals=sig).tolist() == [0, 2]
    assert select_baseline("forgetting", labels, budgets={0: 3}, signals=sig).tolist() == [0, 1, 2]
    # the never-learned score exceeds any reachable count
    assert forgetting_scores(correct)[2] > correct.shape[1] // 2


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


def test_aum_returns_the_negated_mean_margin_and_keeps_low_margin():
    margin = np.array([[4.0, 6.0, 5.0], [-1.0, 0.0, -2.0], [1.0, 2.0, 3.0]])
    assert np.allclose(aum_scores(margin), [-5.0, 1.0, -2.0])
    assert np.allclose(aum_scores(margin, first=1), [-4.0, 1.0, -1.0])
    idx = select_baseline("aum", [0, 0, 0], budgets={0: 2}, signals={"margin": margin})
    assert idx.tolist() == [1, 2]  # the two lowest margins, not the confident one


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
    # adding a constant to the difficulty changes nothing (scores are shifted per class)
    assert np.array_equal(d2_select([0] * 4, {0: 2}, x, s + 7.0, n_neighbors=1,
                                    gamma_reverse=1e6), idx)


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
    with pytest.raises(ValueError, match=r"method == 'glister'.*not implemented.*training loop"):
        select_baseline("glister", labels, budgets={0: 1}, signals=signals)
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
    ],
    ids=itertools.count(),
)
def test_bad_input_gets_a_clear_error(call, error, match):
    with pytest.raises(error, match=match):
        call()
