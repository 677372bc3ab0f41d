"""Tests of the paper's studies (cld_hf.app.studies) and ``cld-hf study``.

The NumPy parts on hand-sized arrays, the LDS on an additive model whose attribution is known;
each study end to end on ~150 digits for 2 epochs (seconds each), with its determinism.
"""

import json
import subprocess
import sys

import numpy as np
import pyarrow.ipc as ipc
import pytest
from scipy.stats import spearmanr

from cld_hf.app.studies import (STUDIES, brittleness_study, class_influence, flip_fraction,
                                fraction_sweep_study, jaccard, lds_study,
                                linear_datamodeling_score, pairwise_mae, sample_subsets,
                                smallest_fraction_within, top_k_rows)
from cld_hf.app.studies.common import (check_fractions, check_output_dir, check_seeds,
                                       prepare_output_dir)
from cld_hf.app.studies.lds import spearman_columns
from cld_hf.cli import main

TINY = dict(max_train=150, epochs=2, threads=1)


# ------------------------------------------------------------------ LDS, on known answers


def test_lds_of_an_additive_model_is_one_for_the_true_effect_and_minus_one_for_its_negative():
    rng = np.random.default_rng(0)
    n, q, m = 60, 7, 50
    tau = rng.normal(size=(n, q))
    mask = sample_subsets(n, 0.5, m, seed=1)
    outputs = mask @ tau  # each subset's output: the sum of its samples' effects
    np.testing.assert_allclose(linear_datamodeling_score(tau, mask, outputs), 1.0)
    np.testing.assert_allclose(linear_datamodeling_score(-tau, mask, outputs), -1.0)
    # a monotone transform of the output changes nothing (ranks), a positive scale neither
    np.testing.assert_allclose(linear_datamodeling_score(3 * tau, mask, np.exp(outputs)), 1.0)


def test_lds_falls_with_output_noise_and_is_near_zero_for_random_scores():
    rng = np.random.default_rng(1)
    n, q, m = 80, 40, 200
    tau = rng.normal(size=(n, q))
    mask = sample_subsets(n, 0.3, m, seed=2)
    signal = mask @ tau
    noisy = signal + rng.normal(scale=signal.std(), size=signal.shape)  # SNR 1
    lds_noisy = linear_datamodeling_score(tau, mask, noisy)
    assert 0.55 < lds_noisy.mean() < 0.85  # ~ 1/sqrt(2) for equal signal and noise
    lds_random = linear_datamodeling_score(rng.normal(size=(n, q)), mask, signal)
    assert abs(lds_random.mean()) < 0.05  # 40 queries x 200 subsets: sem ~ 0.011


def test_lds_is_the_spearman_correlation_of_summed_scores_with_outputs_per_query():
    rng = np.random.default_rng(2)
    a = rng.normal(size=(15, 3))
    subsets = [rng.choice(15, size=6, replace=False) for _ in range(9)]
    outputs = rng.normal(size=(9, 3))
    got = linear_datamodeling_score(a, subsets, outputs)
    for j in range(3):
        g = [a[s, j].sum() for s in subsets]
        assert got[j] == pytest.approx(spearmanr(g, outputs[:, j])[0], abs=1e-12)
    mask = np.zeros((9, 15), bool)
    for i, s in enumerate(subsets):
        mask[i, s] = True
    np.testing.assert_array_equal(linear_datamodeling_score(a, mask, outputs), got)


def test_spearman_columns_matches_scipy_with_ties_and_is_nan_for_a_constant_column():
    x = np.array([[1.0, 2.0], [1.0, 2.0], [3.0, 2.0], [4.0, 2.0]])
    y = np.array([[2.0, 1.0], [1.0, 2.0], [4.0, 3.0], [3.0, 4.0]])
    got = spearman_columns(x, y)
    assert got[0] == pytest.approx(spearmanr(x[:, 0], y[:, 0])[0])
    assert np.isnan(got[1])


@pytest.mark.parametrize("attribution, subsets, outputs, message", [
    (np.zeros((5, 2)), np.ones((4, 6), bool), np.zeros((4, 2)), "subsets has shape"),
    (np.zeros((5, 2)), np.ones((4, 5), bool), np.zeros((4, 3)), "outputs has shape"),
    (np.zeros((5, 2)), np.ones((2, 5), bool), np.zeros((2, 2)), "at least 3"),
    (np.zeros((5, 2)), [[0, 7], [1], [2]], np.zeros((3, 2)), r"subsets\[0\] must hold"),
    (np.full((5, 2), np.nan), np.ones((3, 5), bool), np.zeros((3, 2)), "attribution holds NaN"),
    (np.zeros((5, 2)), np.ones((3, 5), bool), np.full((3, 2), np.inf), "outputs holds NaN"),
])
def test_lds_bad_inputs_are_errors_that_say_what_to_pass(attribution, subsets, outputs, message):
    with pytest.raises(ValueError, match=message):
        linear_datamodeling_score(attribution, subsets, outputs)


def test_sample_subsets_have_ceil_alpha_n_rows_and_follow_the_seed():
    mask = sample_subsets(11, 0.5, 4, seed=[0, 1])
    assert mask.sum(axis=1).tolist() == [6, 6, 6, 6]
    np.testing.assert_array_equal(mask, sample_subsets(11, 0.5, 4, seed=[0, 1]))
    assert not np.array_equal(mask, sample_subsets(11, 0.5, 4, seed=[0, 2]))
    with pytest.raises(ValueError, match=r"alpha contains 1.0, each must be in \(0, 1\)"):
        sample_subsets(11, 1.0, 4, seed=0)
    with pytest.raises(ValueError, match="num_subsets == 0, must be >= 1"):
        sample_subsets(11, 0.5, 0, seed=0)


# ------------------------------------------------------------------ the other NumPy parts


def test_pairwise_mae_and_jaccard_on_hand_sized_inputs():
    mae = pairwise_mae([[0.0, 0.5, 1.0], [0.0, 0.5, 0.0], [1.0, 0.5, 1.0]])
    np.testing.assert_allclose(mae, [[0, 1 / 3, 1 / 3], [1 / 3, 0, 2 / 3], [1 / 3, 2 / 3, 0]])
    assert jaccard([0, 1, 2, 3], [2, 3, 4, 5]) == pytest.approx(2 / 6)
    assert jaccard([], []) == 1.0


@pytest.mark.parametrize("accuracies, expected", [
    ([0.90, 0.951, 0.96, 0.955], 0.3),    # 0.951 >= 0.956 - 0.005
    ([0.90, 0.950, 0.96, 0.955], 0.5),    # 0.950 is just outside
    ([0.90, 0.97, 0.94, 0.955], 0.3),     # the smallest one counts, not a monotone tail
    ([0.90, 0.91, 0.92, 0.93], None),
])
def test_smallest_fraction_within_half_a_point(accuracies, expected):
    got = smallest_fraction_within([0.1, 0.3, 0.5, 0.7], accuracies, 0.956, tolerance=0.005)
    assert got == expected
    with pytest.raises(ValueError, match="one accuracy per fraction"):
        smallest_fraction_within([0.1, 0.3], [0.9], 0.95)


def test_class_influence_top_k_and_flips():
    a = np.arange(12, dtype=float).reshape(3, 4)
    # training rows of classes 0, 1, 0; query columns of classes 0, 0, 1, 2
    np.testing.assert_allclose(class_influence(a, [0, 1, 0], [0, 0, 1, 2]), [0.5, 6.0, 8.5])
    np.testing.assert_allclose(class_influence(a, [3, 3, 3], [0, 0, 1, 2]), 0.0)  # no query
    assert top_k_rows([0.2, 0.9, 0.9, -1.0], 2).tolist() == [1, 2]  # ties: lower row first
    assert top_k_rows([0.2, 0.9], 0).tolist() == []
    with pytest.raises(ValueError, match="k == 3, must be <= 2"):
        top_k_rows([0.2, 0.9], 3)
    assert flip_fraction([1, 2, 3, 4], [1, 0, 3, 0]) == 0.5
    with pytest.raises(ValueError, match="one predicted class per sample"):
        flip_fraction([1, 2], [1])


def test_seed_and_fraction_checks_name_the_argument_and_the_fix():
    assert check_seeds([2, 0]) == [2, 0]
    with pytest.raises(TypeError, match=r"seeds == 3: pass a list of seeds"):
        check_seeds(3)
    with pytest.raises(ValueError, match=r"has 1 seed\(s\), needs at least 2"):
        check_seeds([0], min_count=2)
    with pytest.raises(ValueError, match="fractions contains 0.0, each must be in"):
        check_fractions("fractions", [0.0, 0.5])


def test_output_dir_is_refused_then_only_the_studys_own_outputs_are_removed(tmp_path):
    (tmp_path / "results.json").write_text("{}")
    (tmp_path / "trajectories").mkdir()
    (tmp_path / "mine.txt").write_text("keep")
    outputs = ("results.json", "trajectories")
    with pytest.raises(FileExistsError, match="--overwrite-output-dir"):
        check_output_dir(tmp_path, outputs, overwrite=False)
    check_output_dir(tmp_path, outputs, overwrite=True)
    prepare_output_dir(tmp_path, outputs)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine.txt"]
    with pytest.raises(NotADirectoryError):
        check_output_dir(tmp_path / "mine.txt", outputs, overwrite=True)


# ------------------------------------------------------------------ the studies, small


def test_lds_study_small_shapes_outputs_and_determinism(tmp_path):
    kwargs = dict(TINY, alphas=[0.5], num_subsets=3, seed=0)
    r = lds_study(output_dir=tmp_path / "a", **kwargs)
    n, q = r["data"]["num_train"], r["data"]["num_query"]
    assert (n, q) == (130, 20)
    assert set(r["lds"]) == {"cld_inf1", "tracin", "tracin_final", "random"}
    for method in r["lds"]:
        cell = r["lds"][method]["0.5"]
        assert cell["per_query"].shape == (q,) and cell["num_queries"] == q
    assert len(r["tracin_learning_rates"]) == 2  # one checkpoint per epoch
    assert r["tracin_learning_rates"][0] > r["tracin_learning_rates"][1]  # linear decay
    assert "| CLD_inf1 (losses only) |" in r["table_markdown"]
    assert len(r["lds"]["random"]["0.5"]["draws"]) == 20 and r["lds"]["tracin"]["0.5"]["se"] > 0
    out = tmp_path / "a"
    assert sorted(p.name for p in out.iterdir()) == [
        "attributions.safetensors", "lds_subsets.arrow", "results.json", "results.md",
        "trajectories"]
    table = ipc.open_file(str(out / "lds_subsets.arrow")).read_all()
    assert table.num_rows == 3 and all(len(i) == 65 for i in table["indices"].to_pylist())
    from safetensors.numpy import load_file

    saved = load_file(str(out / "attributions.safetensors"))
    assert {k: v.shape for k, v in saved.items()} == {k: (n, q) for k in r["lds"]}
    assert json.loads((out / "results.json").read_text())["settings"]["alphas"] == [0.5]
    assert (out / "results.md").read_text().startswith("# Linear datamodeling score")

    again = lds_study(output_dir=tmp_path / "b", **kwargs)
    for method in r["lds"]:
        np.testing.assert_array_equal(again["lds"][method]["0.5"]["per_query"],
                                      r["lds"][method]["0.5"]["per_query"])
    np.testing.assert_array_equal(load_file(str(tmp_path / "b" / "attributions.safetensors"))[
        "tracin"], saved["tracin"])


def test_epoch_features_are_the_final_model_s_and_leave_training_unchanged(tmp_path):
    from cld_hf.app.studies import load_study_data, predict, train_proxy
    from cld_hf.app.studies.checkpoints import _softmax
    from cld_hf.attribution import tracin_last_layer

    data = load_study_data("digits", max_train=150)
    with_features = train_proxy(data, store_dir=tmp_path / "a", epochs=2, features=True)
    without = train_proxy(data, store_dir=tmp_path / "b", epochs=2)
    # the per-epoch passes change nothing in training: the recorded losses are bit-identical
    np.testing.assert_array_equal(with_features.store.train_losses(),
                                  without.store.train_losses())
    c = with_features.checkpoints
    assert c.num_checkpoints == 2 and len(c.learning_rates) == 2
    logits, h = predict(with_features.model, data.train, features=True)
    np.testing.assert_allclose(c.probs[-1], _softmax(logits), atol=1e-6)
    np.testing.assert_allclose(c.embeddings[-1], h, atol=1e-6)
    assert c.query_probs[0].shape == (20, 10) and c.query_embeddings[0].shape == (20, 32)
    ql, qh = predict(with_features.model, data.query, features=True)
    want = tracin_last_layer(_softmax(logits), h, data.train_labels, _softmax(ql), qh,
                             data.query_labels)
    np.testing.assert_allclose(with_features.tracin(data, final_only=True), want, rtol=1e-4,
                               atol=1e-6)
    with pytest.raises(ValueError, match="features=True"):
        without.tracin(data)


def test_lds_study_refuses_bad_arguments_before_training(tmp_path):
    with pytest.raises(ValueError, match=r"alphas contains 1.5, each must be in \(0, 1\)"):
        lds_study(output_dir=tmp_path, alphas=[1.5], **TINY)
    with pytest.raises(ValueError, match="num_subsets == 2, must be >= 3"):
        lds_study(output_dir=tmp_path, num_subsets=2, **TINY)
    (tmp_path / "results.json").write_text("{}")
    with pytest.raises(FileExistsError, match="previous study"):
        lds_study(output_dir=tmp_path, **TINY)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.json"]


def test_seed_stability_study_small_through_the_cli(tmp_path, capsys):
    out = tmp_path / "stab"
    code = main(["study", "seed-stability", "--max-train", "150", "--epochs", "2", "--seeds",
                 "0", "1", "--threads", "1", "--output-dir", str(out)])
    assert code == 0
    r = json.loads((out / "results.json").read_text())
    assert r["repeat_mae"] == 0.0  # the same seed twice: bit-identical scores
    mae = np.array(r["mae"]["matrix"])
    assert mae.shape == (2, 2) and mae[0, 0] == 0 and mae[0, 1] == mae[1, 0] > 0
    assert set(r["jaccard"]) == {"0.1", "0.3"}
    assert r["run"]["command"].startswith("cld-hf study seed-stability --output-dir")
    assert "| MAE of the CLD scores |" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == [
        "results.json", "results.md", "trajectories-repeat", "trajectories-seed0",
        "trajectories-seed1"]
    assert main(["study", "seed-stability", "--seeds", "0", "--output-dir",
                 str(tmp_path / "x")]) == 1  # one seed: nothing to compare
    assert "needs at least 2" in capsys.readouterr().err


def test_fraction_sweep_study_small(tmp_path):
    r = fraction_sweep_study(output_dir=tmp_path, fractions=[0.3, 0.6], seeds=[0], **TINY)
    assert [(x["method"], x["fraction"], x["size"]) for x in r["runs"]] == [
        ("cld", 0.3, 39), ("cld", 0.6, 78), ("random", 0.3, 39), ("random", 0.6, 78)]
    assert len(r["full_data_accuracy"]) == 1 and set(r["smallest_fraction"]) == {"cld", "random"}
    assert set(r["smallest_fraction_by_tolerance"]) == {"0.005", "0.01", "0.02"}
    assert "within 0.5 point(s) | within 1 point(s) | within 2 point(s)" in r["markdown"]
    for m, f in r["smallest_fraction"].items():
        assert f is None or f in (0.3, 0.6)
    with pytest.raises(ValueError, match="which this study's proxy does not record"):
        fraction_sweep_study(output_dir=tmp_path / "b", methods=["cld", "forgetting"], **TINY)


def test_brittleness_study_small(tmp_path):
    r = brittleness_study(output_dir=tmp_path, ks=[10], seeds=[0, 1],
                          methods=["cld", "cld_inf1", "tracin", "random"], **TINY)
    assert [(x["method"], x["k"], x["seed"]) for x in r["runs"]] == [
        (m, 10, s) for m in ("cld", "cld_inf1", "tracin", "random") for s in (0, 1)]
    for run in r["runs"]:
        assert len(set(run["removed"])) == 10 and 0.0 <= run["query_flips"] <= 1.0
    by_seed = {x["method"]: [] for x in r["runs"]}
    for x in r["runs"]:
        by_seed[x["method"]].append(set(x["removed"]))
    assert by_seed["cld"][0] == by_seed["cld"][1]  # the top-k does not depend on the seed
    assert by_seed["random"][0] != by_seed["random"][1]  # a new random draw per seed
    assert sum(r["removed_class_counts"]["tracin"]["10"]) == 10
    assert 0.0 <= r["seed_floor"]["query"] <= 1.0
    assert "| tracin |" in r["table_markdown"]
    with pytest.raises(ValueError, match="methods contains 'trak'; each must be one of"):
        brittleness_study(output_dir=tmp_path / "b", methods=["trak"], **TINY)
    with pytest.raises(ValueError, match="ks contains 500, but the training set has 130"):
        brittleness_study(output_dir=tmp_path / "c", ks=[500], **TINY)


# ------------------------------------------------------------------ the command line


def test_every_study_has_help_with_examples(capsys):
    for argv in (["study"], *(["study", name] for name in STUDIES)):
        with pytest.raises(SystemExit) as exc:
            main([*argv, "--help"])
        assert exc.value.code == 0
        assert "examples:" in capsys.readouterr().out


def test_study_help_imports_no_torch():
    code = ("import sys\nfrom cld_hf.cli import main\n"
            "try:\n    main(['study', 'lds', '--help'])\nexcept SystemExit:\n    pass\n"
            "print('HEAVY', [m for m in ('torch', 'transformers') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip().splitlines()[-1] == "HEAVY []"
