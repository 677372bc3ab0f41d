"""End to end: `cld-hf run` in-process (``cld_hf.cli.main``) with tiny settings, checking every
output file; RunArguments validation; the results table."""

import json

import numpy as np
import pytest
from datasets import load_from_disk
from huggingface_hub import DatasetCard, ModelCard

from cld_hf import LossTrajectories, cld_scores, select_top_per_class
from cld_hf.app.arguments import RunArguments
from cld_hf.app.data import apply_label_noise
from cld_hf.app.results import results_markdown


def test_cld_hf_run_end_to_end_writes_every_output(tmp_path, capsys):
    from cld_hf.cli import main

    out = tmp_path / "run"
    cmd = ["run", "--output-dir", str(out), "--proxy-epochs", "3", "--target-epochs", "1",
           "--seeds", "2", "--fractions", "0.1", "0.3", "--label-noise", "0.1", "--threads", "1"]
    assert main(cmd) == 0, capsys.readouterr().err[-3000:]
    stdout = capsys.readouterr().out
    assert "| fraction | cld | random |" in stdout

    results = json.loads((out / "results.json").read_text())
    assert len(results["runs"]) == 2 * 2 * 2  # fractions x methods x seeds
    assert {r["method"] for r in results["runs"]} == {"cld", "random"}
    assert all(0.0 <= r["accuracy"] <= 1.0 for r in results["runs"])
    assert len(results["full_data_accuracy"]) == 2
    assert 0.0 < results["noisy_share_in_training_set"] < 0.2
    assert all("noisy_share" in r for r in results["runs"])
    table = (out / "results.md").read_text()
    assert "| 10% |" in table and "| 30% |" in table and "Full training set:" in table

    # the store and the scored dataset agree with an independent scoring of the stored losses
    store = LossTrajectories(out / "trajectories")
    assert store.num_snapshots == 4  # snapshot 0 + 3 epochs
    scored = load_from_disk(str(out / "scored"))
    np.testing.assert_allclose(scored["cld_score"][:], cld_scores(store.train_losses(), store.train_labels,
                                                                  store.query_losses(), store.query_labels), atol=1e-6)
    np.testing.assert_array_equal(np.asarray(scored.with_format("numpy")["loss_trajectory"][:]), store.train_losses())
    assert {"label_is_noisy", "original_label", "sample_index"} <= set(scored.column_names)
    run_info = json.loads((out / "scored" / "cld_run.json").read_text())
    assert run_info["num_snapshots"] == 4 and run_info["query_fraction"] == 0.1

    # coresets are the top-k per class of those scores, traced back by sample_index
    labels = np.asarray(scored["label"][:])
    for pct, fraction in (("10", 0.1), ("30", 0.3)):
        core = load_from_disk(str(out / f"coreset-cld-{pct}pct"))
        expected = select_top_per_class(np.asarray(scored["cld_score"][:]), labels, fraction=fraction)
        assert core["sample_index"][:] == np.asarray(scored["sample_index"][:])[expected].tolist()

    # proxy model without pickles; both cards rendered and parseable
    assert sorted(p.name for p in (out / "proxy_model").iterdir()) == ["config.json", "model.safetensors"]
    dcard = DatasetCard.load(out / "hub" / "dataset" / "README.md")
    assert "coreset" in dcard.data.tags and {c["config_name"] for c in dcard.data.configs} == {"default", "indices"}
    mcard = ModelCard.load(out / "hub" / "model" / "README.md")
    assert "cld" in mcard.data.tags
    for name in ["score_distribution.png", "accuracy_vs_fraction.png", "coreset_composition.png",
                 "kept_and_dropped.png"]:
        assert (out / "plots" / name).read_bytes()[:4] == b"\x89PNG"
    assert any(p.name.startswith("trajectories_class_") for p in (out / "plots").iterdir())
    assert "cld random" in (out / "hub" / "dataset" / "README.md").read_text() or \
        "cld, random" in (out / "hub" / "dataset" / "README.md").read_text()

    # an existing output directory is refused with the fix, exit code 1, one line
    assert main(cmd) == 1
    err = capsys.readouterr().err
    assert "--overwrite-output-dir" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"query_fraction": 0.0}, r"query_fraction == 0.0"),
        ({"label_noise": 1.0}, r"label_noise == 1.0"),
        ({"fractions": []}, "fractions is empty"),
        ({"fractions": [0.1, 2.0]}, r"fractions contains 2.0"),
        ({"balance": "even"}, "balance == 'even'"),
        ({"proxy_epochs": 1}, "at least 3 loss snapshots"),
        ({"push_to_hub": "noslash"}, "'<namespace>/<name>'"),
        ({"task": "summarization"}, "task == 'summarization'"),
        ({"fractions": [0.1, 0.1]}, "more than once"),
        ({"learning_rate": 0.0}, "learning_rate == 0.0"),
    ],
)
def test_run_arguments_reject_bad_values(kwargs, match):
    with pytest.raises(ValueError, match=match):
        RunArguments(**kwargs)


def test_label_noise_flips_exactly_the_share_to_another_class():
    from datasets import Dataset

    ds = Dataset.from_dict({"label": np.arange(200) % 5})
    noisy = apply_label_noise(ds, 0.25, label_column="label", num_classes=5, seed=3)
    flipped = np.asarray(noisy["label_is_noisy"][:])
    assert flipped.sum() == 50
    new, old = np.asarray(noisy["label"][:]), np.asarray(noisy["original_label"][:])
    assert np.all((new != old) == flipped)
    assert np.all((new >= 0) & (new < 5))


def test_results_markdown_table_shape():
    rows = [{"fraction": f, "method": m, "accuracy": a}
            for f, m, a in [(0.3, "cld", 0.5), (0.1, "random", 0.25), (0.1, "cld", 0.75), (0.1, "cld", 0.25)]]
    assert results_markdown(rows, full_accuracy=[0.9, 0.8]).splitlines() == [
        "| fraction | cld | random |",
        "|---|---|---|",
        "| 10% | 50.00 ± 25.00 | 25.00 ± 0.00 |",
        "| 30% | 50.00 ± 0.00 | - |",
        "",
        "Full training set: 85.00 ± 5.00",
    ]


# ------------------------------------------------------------------------ --methods (issue 7)


@pytest.fixture
def one_thread():
    """A tiny model trains as fast on one thread, and a busy second core cannot stall it."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_methods_each_get_a_coreset_with_the_same_budgets_and_a_table_column(tmp_path, one_thread):
    """`cld-hf run --methods ...` with tiny settings: one proxy run records the signals the
    methods read, every method selects with the same class budgets, the target is trained on
    each coreset, and the table (fraction rows, method columns) and cost table list every one."""
    import datasets
    from cld_hf import class_budgets
    from cld_hf.baselines import METHODS
    from cld_hf.app.builtin import load_builtin_dataset
    from cld_hf.app.comparison import read_selections
    from cld_hf.app.arguments import signals_needed
    from cld_hf.app.experiment import run_experiment

    dd = load_builtin_dataset("digits")
    datasets.DatasetDict({"train": dd["train"].select(range(200)),
                          "test": dd["test"].select(range(60))}).save_to_disk(str(tmp_path / "data"))
    methods = ["cld", "random", "forgetting", "el2n", "aum", "herding", "kcenter", "grand"]
    args = RunArguments(dataset=str(tmp_path / "data"), output_dir=str(tmp_path / "run"),
                        methods=methods, proxy_epochs=2, target_epochs=1, seeds=1,
                        fractions=[0.2, 0.5], full_baseline=False, batch_size=32)
    results = run_experiment(args)

    table = results["table_markdown"].splitlines()
    assert table[0] == "| fraction | " + " | ".join(methods) + " |"
    assert [line.split(" |")[0] for line in table[2:]] == ["| 20%", "| 50%"]
    assert all("±" in cell for line in table[2:] for cell in line.split("|")[2:-1])
    assert len(results["runs"]) == len(methods) * 2  # methods x fractions x seeds

    store = LossTrajectories(tmp_path / "run" / "trajectories")
    assert store.signal_names == ["correct", "margin", "el2n"] and store.num_snapshots == 3
    assert store.array_names == ["embeddings", "probs"]
    assert set(signals_needed(methods)) == {*store.signal_names, *store.array_names}
    selections = read_selections(tmp_path / "run" / "selections.arrow")
    assert {(c.method, c.fraction, c.seed) for c in selections} == {
        (m, f, 0) for m in methods for f in (0.2, 0.5)}
    labels = store.train_labels
    for c in selections:
        budgets = class_budgets(labels, fraction=c.fraction)
        got = np.bincount(labels[c.indices], minlength=10)
        assert dict(enumerate(got.tolist())) == budgets, c.method  # same budgets for everyone
        assert len(np.unique(c.indices)) == len(c.indices)
    by_key = {(c.method, c.fraction, c.seed): c.indices for c in selections}
    np.testing.assert_array_equal(
        by_key[("cld", 0.2, 0)], select_top_per_class(store.scores(), labels, fraction=0.2))

    costs = {r["method"]: r for r in results["costs"]}
    assert list(costs) == methods
    sizes = store.signal_nbytes()
    assert costs["forgetting"]["extra_bytes"] == sizes["correct"]
    assert costs["grand"]["extra_bytes"] == sizes["probs"] + sizes["embeddings"]
    assert costs["cld"]["extra_bytes"] == sizes["loss"] and costs["random"]["extra_bytes"] == 0
    assert costs["aum"]["compute"] == METHODS["aum"].cost
    assert all(r["seconds"] >= 0 for r in results["costs"])
    md = (tmp_path / "run" / "results.md").read_text()
    assert "## Selection cost" in md and "| kcenter | embeddings |" in md
    assert (tmp_path / "run" / "plots" / "accuracy_vs_fraction.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"methods": ["cld", "glister_online"]}, "'glister_online', which is not implemented"),
        ({"methods": ["cld", "craig", "cld"]}, r"\['cld'\] more than once"),
        ({"methods": ["cld", "forgeting"]}, "'forgeting'; each must be one of"),
        ({"methods": ["cld", "dyn_unc"], "proxy_epochs": 5}, r"\['dyn_unc'\] use a window of 10"),
    ],
)
def test_run_arguments_reject_bad_methods(kwargs, match):
    with pytest.raises(ValueError, match=match):
        RunArguments(**kwargs)


def test_run_and_recording_options_are_checked_together():
    from cld_hf import RecorderConfig
    from cld_hf.app.arguments import check_run

    with pytest.raises(ValueError, match="use --mode sweep"):
        check_run(RunArguments(methods=["forgetting"]), RecorderConfig(mode="train_pass"))
    with pytest.raises(ValueError, match="records 2 snapshot"):
        check_run(RunArguments(proxy_epochs=4), RecorderConfig(every_n_epochs=2,
                                                               record_initial=False))
    check_run(RunArguments(methods=["cld", "herding"]), RecorderConfig(mode="train_pass"))


def test_a_last_training_batch_of_one_is_dropped_but_every_test_sample_is_evaluated(tmp_path):
    """Regression: with 25 training samples and batch size 8 the last batch (1 sample) is
    dropped, and dataloader_drop_last also emptied a 12-sample test loader (batch 256), so the
    run failed with KeyError: 'eval_accuracy'."""
    from datasets import Dataset

    from cld_hf.app.builtin import make_image_classifier
    from cld_hf.app.inputs import image_inputs
    from cld_hf.app.training import train_and_evaluate

    rng = np.random.default_rng(0)
    ds = Dataset.from_dict({"pixel_values": rng.random((37, 1, 4, 4)).astype(np.float32),
                            "label": np.arange(37) % 2})
    train, test = ds.select(range(25)), ds.select(range(25, 37))
    inputs = image_inputs(train, column="pixel_values", label_column="label")
    trainer, acc = train_and_evaluate(
        make_image_classifier(2, seed=0), inputs.view(train), inputs.view(test),
        output_dir=tmp_path, epochs=1, batch_size=8, learning_rate=1e-2, seed=0,
        data_collator=inputs.collate)
    assert 0.0 <= acc <= 1.0 and acc * 12 == round(acc * 12)
    assert trainer.state.global_step == 3  # 25 // 8: the batch of one dropped
