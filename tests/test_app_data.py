"""`cld-hf run` on a user's own data, end to end, on small datasets the tests write.

Each kind the README advertises: an imagefolder, ``save_to_disk`` datasets holding PIL images,
image arrays or nested lists (cld-hf's own output folders fed back), any label column name, and
text classification; plus the one-line errors for a dataset the run cannot use, and the
dispatch of the causal-lm task. Runs are in-process (``cld_hf.cli.main``), tiny (a few dozen
rows, 2-3 epochs, 1 seed), with one torch thread (conftest).
"""

from __future__ import annotations

import json
import warnings

import datasets
import numpy as np
import pytest
from datasets import ClassLabel, Dataset, DatasetDict, Features, Image, Value, load_from_disk

from cld_hf.cli import main
from cld_hf.identity import index_identity

FAST = ["--proxy-epochs", "2", "--target-epochs", "1", "--seeds", "1", "--fractions", "0.5",
        "--batch-size", "8", "--threads", "1"]


def _blob(rng, cls: int, size: int, channels: int) -> np.ndarray:
    """A tiny image whose class is its brightness (learnable in a few steps)."""
    arr = rng.integers(0, 60, (size, size, channels)) + 90 * cls
    return arr.clip(0, 255).astype(np.uint8)


def _run(argv, capsys):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        code = main(argv)
    out, err = capsys.readouterr()
    ours = [w for w in caught if "cld_hf" in str(w.filename) or "pin_memory" in str(w.message)]
    return code, out, err, ours


@pytest.fixture
def imagefolder(tmp_path):
    """3 classes x 10 PNG files, mixed sizes and modes (grayscale and RGB), no test split."""
    from PIL import Image as PILImage

    rng = np.random.default_rng(0)
    root = tmp_path / "pets"
    for c, name in enumerate(["bird", "cat", "dog"]):
        (root / name).mkdir(parents=True)
        for i in range(10):
            arr = _blob(rng, c, 10 + i % 3, 3)
            img = PILImage.fromarray(arr)
            (img.convert("L") if i % 4 == 0 else img).save(root / name / f"{i}.png")
    return root


def test_run_on_an_imagefolder_indexes_before_the_hold_out_and_keeps_class_names(
        imagefolder, tmp_path, capsys, caplog):
    """Regression: the first epoch's recording worked, then training failed with KeyError:
    'image' (remove_unused_columns dropped it before the transform). Also the console: one
    progress display, no Trainer dicts, no library bars, no warnings of ours."""
    out = tmp_path / "run"
    code, stdout, stderr, ours = _run(["run", "--dataset", str(imagefolder), "--output-dir",
                                       str(out), *FAST], capsys)
    assert code == 0, stderr
    assert ours == []
    # the console: the summary table with class names, the job's phases, nothing else
    assert "class count    mean" in stdout and "\ncat " in stdout and "| fraction | cld | random |" in stdout
    assert "cld-hf run: [1/4] proxy model" in stderr and "[4/4] target on the full training set" in stderr
    for noise in ("{'", "train_runtime", "Flattening", "Saving the dataset", "it/s", "Warning",
                  "CLD sweep", "Generating train split"):
        assert noise not in stdout + stderr, noise
    # the warnings a user needs (no test split; 2 proxy epochs give only 2 loss differences);
    # pytest's log capture holds them
    warned = {r.getMessage()[:40] for r in caplog.records if r.levelname == "WARNING"}
    assert warned == {f"No 'test' split in {imagefolder}: holding out 20%"[:40],
                      "CLD scores from 2 loss differences take "}

    scored = load_from_disk(str(out / "scored"))
    identity = index_identity(scored)
    assert identity["num_rows"] == 30 and identity["name"] == str(imagefolder)  # before hold-out
    assert identity["split"] == "train"
    assert len(scored) + json.loads((out / "scored" / "cld_run.json").read_text())["num_query"] == 24
    assert scored.features["label"].names == ["bird", "cat", "dog"]
    assert "image" in scored.column_names  # the user's column kept
    core = load_from_disk(str(out / "coreset-cld-50pct"))
    assert core.features["label"].names == ["bird", "cat", "dog"]
    assert set(core["sample_index"][:]) <= set(range(30))
    results = json.loads((out / "results.json").read_text())
    assert results["class_names"] == ["bird", "cat", "dog"] and results["task"] == "image-classification"
    card = (out / "hub" / "dataset" / "README.md").read_text()
    assert "| 0 | bird |" in card and "| `test_accuracy` | proxy model: " in card
    assert "cld-hf run --dataset" in card and "bird, cat, dog" in card
    model_card = (out / "hub" / "model" / "README.md").read_text()
    assert "| accuracy | test |" in model_card
    assert json.loads((out / "proxy_model" / "config.json").read_text())["id2label"]["1"] == "cat"
    plots = sorted(p.name for p in (out / "plots").iterdir())
    assert {"kept_and_dropped.png", "score_distribution.png", "coreset_composition.png",
            "accuracy_vs_fraction.png"} <= set(plots)


def test_run_on_save_to_disk_pil_images_with_any_label_column(tmp_path, capsys):
    """Regression: --label-column target made the model return no loss (the Trainer dropped
    the column); PIL images in a save_to_disk dataset failed like the imagefolder."""
    rng = np.random.default_rng(1)
    features = Features({"image": Image(), "target": ClassLabel(names=["dark", "light"])})

    def split(n):
        labels = [i % 2 for i in range(n)]
        from PIL import Image as PILImage

        return Dataset.from_dict({"image": [PILImage.fromarray(_blob(rng, 2 * c, 8, 3))
                                            for c in labels], "target": labels},
                                 features=features)

    DatasetDict({"train": split(32), "test": split(10)}).save_to_disk(str(tmp_path / "data"))
    out = tmp_path / "run"
    code, stdout, stderr, ours = _run(["run", "--dataset", str(tmp_path / "data"), "--label-column",
                                       "target", "--output-dir", str(out), "--no-full-baseline",
                                       "--no-plots", *FAST], capsys)
    assert code == 0, stderr
    assert ours == []
    scored = load_from_disk(str(out / "scored"))
    assert scored.features["target"].names == ["dark", "light"]
    assert index_identity(scored)["num_rows"] == 32  # the test split is the dataset's own
    assert "dark" in stdout
    info = json.loads((out / "coreset-cld-50pct" / "cld_run.json").read_text())
    assert info["class_names"] == ["dark", "light"] and info["test_split"] == "test"
    assert "`target`" in (out / "hub" / "dataset" / "README.md").read_text()


def test_run_on_image_arrays_with_integer_labels(tmp_path, capsys):
    """HWC uint8 arrays under 'img', plain int64 labels (no ClassLabel), no test split; the
    losses taken from the training steps (--mode train_pass: the callback gets the Trainer)."""
    rng = np.random.default_rng(2)
    labels = [i % 3 for i in range(36)]
    ds = Dataset.from_dict({"img": np.stack([_blob(rng, c, 6, 3) for c in labels]),
                            "label": labels},
                           features=Features({"img": datasets.Array3D((6, 6, 3), "uint8"),
                                              "label": Value("int64")}))
    ds.save_to_disk(str(tmp_path / "arrays"))
    out = tmp_path / "run"
    code, _, stderr, ours = _run(["run", "--dataset", str(tmp_path / "arrays"), "--output-dir",
                                  str(out), "--no-plots", "--no-full-baseline", "--mode",
                                  "train_pass", *FAST], capsys)
    assert code == 0, stderr
    assert ours == []
    results = json.loads((out / "results.json").read_text())
    assert results["class_names"] == ["0", "1", "2"] and results["test_split"].startswith("20%")
    info = json.loads((out / "scored" / "cld_run.json").read_text())
    assert info["input"] == "column 'img' (arrays (HWC), 3 channel(s))"
    assert info["record_mode"] == "train_pass" and info["num_snapshots"] == 3


def test_cld_hf_outputs_feed_back_into_run(tmp_path, capsys):
    """Regression: pixel_values stored as a nested List (what scored/ and the coreset folders
    hold) failed with AttributeError: 'List' object has no attribute 'shape'. A coreset of a
    first run is the dataset of a second; its sample_index still counts rows of the first
    run's source, and the first run's scores are dropped, not clashed with."""
    from cld_hf.app.builtin import load_builtin_dataset

    dd = load_builtin_dataset("digits")
    nested = datasets.List(datasets.List(datasets.List(Value("float32"))))
    DatasetDict({"train": dd["train"].select(range(80)).cast_column("pixel_values", nested),
                 "test": dd["test"].select(range(30)).cast_column("pixel_values", nested)}
                ).save_to_disk(str(tmp_path / "digits"))
    first = tmp_path / "first"
    assert main(["run", "--dataset", str(tmp_path / "digits"), "--output-dir", str(first),
                 "--no-plots", "--no-full-baseline", *FAST]) == 0
    coreset = first / "coreset-cld-50pct"
    feature = load_from_disk(str(coreset)).features["pixel_values"]
    assert type(feature).__name__ == "List"  # nested lists, as earlier cld-hf outputs stored them
    capsys.readouterr()
    second = tmp_path / "second"
    code, _, stderr, _ = _run(["run", "--dataset", str(coreset), "--output-dir", str(second),
                               "--no-plots", "--no-full-baseline", *FAST], capsys)
    assert code == 0, stderr
    scored = load_from_disk(str(second / "scored"))
    assert index_identity(scored)["num_rows"] == 80  # rows of the first run's source
    assert set(scored["sample_index"][:]) <= set(load_from_disk(str(coreset))["sample_index"][:])
    store_scores = np.asarray(scored["cld_score"][:])
    assert len(store_scores) == len(scored) and scored.features["loss_trajectory"].length == 3


def test_run_on_text_classification_trains_a_tokenizer_on_the_training_split(tmp_path, capsys):
    """A 'text' column and a string class column: a small BERT from a config, with a WordPiece
    tokenizer trained on the training split only (a word only the test split has is unknown)."""
    rng = np.random.default_rng(0)
    words = {"pos": "good great happy lovely".split(), "neg": "bad awful sad grim".split()}
    filler = "the a movie film was it plot and".split()

    def split(n, extra=""):
        rows = []
        for i in range(n):
            label = ["pos", "neg"][i % 2]
            tokens = [*rng.choice(filler, 4), *rng.choice(words[label], 2)]
            rng.shuffle(tokens)
            rows.append({"text": " ".join(tokens) + extra, "sentiment": label})
        return Dataset.from_list(rows)

    DatasetDict({"train": split(40), "test": split(12, " zebra")}).save_to_disk(
        str(tmp_path / "reviews"))
    out = tmp_path / "run"
    code, stdout, stderr, ours = _run(
        ["run", "--dataset", str(tmp_path / "reviews"), "--label-column", "sentiment",
         "--output-dir", str(out), "--no-full-baseline", "--proxy-epochs", "3",
         "--target-epochs", "2", "--seeds", "1", "--fractions", "0.5", "--batch-size", "8",
         "--threads", "1"], capsys)
    assert code == 0, stderr
    assert ours == []
    results = json.loads((out / "results.json").read_text())
    assert results["task"] == "text-classification" and results["class_names"] == ["neg", "pos"]
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(out / "proxy_model"))
    assert "zebra" not in tokenizer.get_vocab() and "lovely" in tokenizer.get_vocab()
    config = json.loads((out / "proxy_model" / "config.json").read_text())
    assert config["architectures"] == ["BertForSequenceClassification"]
    assert {"tokenizer.json", "README.md"} <= {p.name for p in (out / "hub" / "model").iterdir()}
    assert load_from_disk(str(out / "coreset-cld-50pct")).features["sentiment"].names == ["neg", "pos"]
    assert "kept_and_dropped.md" in {p.name for p in (out / "plots").iterdir()}
    assert "| kept |" in (out / "plots" / "kept_and_dropped.md").read_text()
    assert "neg " in stdout

    # --model: the first run's proxy (weights, config, tokenizer) fine-tuned as proxy and target
    code, _, stderr, _ = _run(
        ["run", "--dataset", str(tmp_path / "reviews"), "--label-column", "sentiment",
         "--model", str(out / "proxy_model"), "--output-dir", str(tmp_path / "again"),
         "--no-full-baseline", "--no-plots", *FAST], capsys)
    assert code == 0, stderr
    again = json.loads((tmp_path / "again" / "scored" / "cld_run.json").read_text())
    assert again["proxy_model"] == str(out / "proxy_model")


@pytest.mark.parametrize(
    "columns,argv,message",
    [
        ({"x": [0.5] * 12, "label": [0, 1] * 6}, [],
         "Cannot find the model inputs: no image column"),
        ({"text": ["a b"] * 12, "kind": [0, 1] * 6}, [], "--label-column kind"),
        ({"text": ["a b"] * 12, "label": [0, 1] * 6}, ["--label-column", "target"],
         "--label-column 'target' is not a column of the dataset; its columns are ['text', 'label']"),
        ({"text": ["a b"] * 12, "label": [0.5, 1.5] * 6}, [],
         "--label-column 'label' holds Value('float64')"),
        ({"pixel_values": [[[1.0] * 5] * 5] * 12, "label": [0, 1] * 6}, ["--text-column", "caption"],
         "--text-column 'caption' is not a column"),
    ],
    ids=["no-inputs", "no-label", "missing-label-column", "float-labels", "missing-text-column"],
)
def test_a_dataset_the_run_cannot_use_gets_one_line_naming_the_column_and_flag(
        tmp_path, capsys, columns, argv, message):
    features = None
    if "kind" in columns:
        features = Features({"text": Value("string"), "kind": ClassLabel(names=["a", "b"])})
    Dataset.from_dict(columns, features=features).save_to_disk(str(tmp_path / "data"))
    (tmp_path / "run").mkdir()
    code = main(["run", "--dataset", str(tmp_path / "data"), "--output-dir",
                 str(tmp_path / "run"), *argv, *FAST])
    err = capsys.readouterr().err
    assert code == 1
    lines = [line for line in err.splitlines() if line.startswith("cld-hf run: error:")]
    assert len(lines) == 1 and message in lines[0], err
    assert list((tmp_path / "run").iterdir()) == []  # nothing written


def test_a_missing_dataset_directory_names_the_flag(tmp_path, capsys):
    assert main(["run", "--dataset", str(tmp_path / "nope"), "--output-dir",
                 str(tmp_path / "run"), *FAST]) == 1
    assert "--dataset" in capsys.readouterr().err


def test_causal_lm_task_reaches_the_language_model_job(tmp_path, capsys, monkeypatch):
    """`cld-hf run --task causal-lm` (and --dataset stdlib-docstrings) dispatch to
    cld_hf.app.lm_experiment.run_lm_experiment, with the text job's defaults."""
    from cld_hf.app import lm_experiment

    calls = []

    def run_lm_experiment(args, config, *, command=None):
        calls.append((args.dataset, args.task, config.mode, args.batch_size))
        return {"task": "causal-lm", "table_markdown": "| fraction | cld |",
                "tokens_markdown": "| fraction | cld |", "cost_markdown": "| method |",
                "seconds": 1.0}

    monkeypatch.setattr(lm_experiment, "run_lm_experiment", run_lm_experiment)
    assert main(["run", "--dataset", "stdlib-docstrings", "--output-dir",
                 str(tmp_path / "lm")]) == 0
    assert main(["run", "--task", "causal-lm", "--dataset", "my-corpus", "--output-dir",
                 str(tmp_path / "lm")]) == 0
    batch = lm_experiment.LM_DEFAULTS["batch_size"]
    assert calls == [("stdlib-docstrings", "auto", "sweep", batch),
                     ("my-corpus", "causal-lm", "sweep", batch)]
    out = capsys.readouterr().out
    assert "| fraction | cld |" in out and "Target test perplexity" in out
