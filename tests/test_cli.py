"""Tests of the cld-hf command line: score, select, inspect, plot, --help and bad arguments."""

import json
import subprocess
import sys

import numpy as np
import pytest
from datasets import ClassLabel, Dataset, Features, Value, load_from_disk

from cld_hf import LossTrajectories, cld_scores, select_top_per_class
from cld_hf.cli import SUBCOMMANDS, main, make_parser


@pytest.fixture
def recorded(tmp_path):
    """A store of 60 training / 12 query samples over 6 snapshots, and the training dataset."""
    rng = np.random.default_rng(0)
    n, q, s = 60, 12, 6
    tl, ql = np.arange(n) % 3, np.arange(q) % 3
    train = (3 * np.exp(-0.3 * np.arange(s)) + 0.3 * rng.random((n, s))).astype(np.float32)
    query = (3 * np.exp(-0.3 * np.arange(s)) + 0.3 * rng.random((q, s))).astype(np.float32)
    store = LossTrajectories.create(tmp_path / "store", tl, ql, metadata={"proxy_model": "tiny"})
    for t in range(s):
        store.append(train[:, t], query[:, t], epoch=t)
    features = Features({"x": Value("int64"), "label": ClassLabel(names=["a", "b", "c"])})
    Dataset.from_dict({"x": list(range(100, 100 + n)), "label": tl.tolist()}, features=features).save_to_disk(
        str(tmp_path / "train")
    )
    return tmp_path, train, tl, query, ql


def test_help_of_every_subcommand_exits_zero(capsys):
    for name in SUBCOMMANDS:
        if name not in make_parser()._subparsers._group_actions[0].choices:
            continue
        with pytest.raises(SystemExit) as exc:
            main([name, "--help"])
        assert exc.value.code == 0
        assert "examples:" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert "cld-hf 0.1.0" in capsys.readouterr().out
    assert main([]) == 0


def test_console_script_runs():
    proc = subprocess.run([sys.executable, "-m", "cld_hf.cli", "--version"], capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout.strip() == "cld-hf 0.1.0"


def test_score_select_inspect_plot_pipeline(recorded, capsys):
    tmp, train, tl, query, ql = recorded
    assert main(["score", str(tmp / "store"), "--dataset", str(tmp / "train"), "-o", str(tmp / "scored")]) == 0
    scored = load_from_disk(str(tmp / "scored"))
    np.testing.assert_array_equal(scored["cld_score"][:], cld_scores(train, tl, query, ql))
    assert scored.features["cld_score"] == Value("float32")
    assert scored.features["loss_trajectory"].length == 6
    assert scored["x"][:] == list(range(100, 160))
    info = json.loads((tmp / "scored" / "cld_run.json").read_text())
    assert info["proxy_model"] == "tiny" and info["num_snapshots"] == 6

    assert main(["select", str(tmp / "scored"), "--fraction", "0.25", "-o", str(tmp / "core")]) == 0
    core = load_from_disk(str(tmp / "core"))
    expected = select_top_per_class(cld_scores(train, tl, query, ql), tl, fraction=0.25)
    assert core["sample_index"][:] == expected.tolist()
    assert core["x"][:] == (expected + 100).tolist()
    info = json.loads((tmp / "core" / "cld_run.json").read_text())
    assert info["budgets"] == {"0": 5, "1": 5, "2": 5} and info["size"] == 15

    capsys.readouterr()
    assert main(["inspect", str(tmp / "scored"), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["num_rows"] == 60 and summary["num_snapshots"] == 6
    assert [c["count"] for c in summary["classes"]] == [20, 20, 20]
    scores = cld_scores(train, tl, query, ql)
    assert summary["classes"][1]["mean"] == pytest.approx(float(scores[tl == 1].astype(np.float64).mean()), abs=1e-6)
    assert main(["inspect", str(tmp / "store")]) == 0
    out = capsys.readouterr().out
    assert "num_snapshots: 6" in out and "payload_bytes: 1728" in out  # (60 + 12) * 6 * 4

    assert main(["plot", str(tmp / "scored"), "--store", str(tmp / "store"), "--class", "1", "-o", str(tmp / "plots")]) == 0
    for name in ["score_distribution.png", "trajectories_class_1.png"]:
        data = (tmp / "plots" / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000


def test_score_without_dataset_streaming_and_window(recorded):
    tmp, train, tl, query, ql = recorded
    assert main(["score", str(tmp / "store"), "--streaming", "--first", "4", "--no-trajectory", "-o", str(tmp / "s")]) == 0
    scored = load_from_disk(str(tmp / "s"))
    assert "loss_trajectory" not in scored.column_names
    np.testing.assert_allclose(scored["cld_score"][:], cld_scores(train[:, :4], tl, query[:, :4], ql), atol=1e-6)
    assert scored["sample_index"][:] == list(range(60))


def test_select_indices_only_and_proportional(recorded):
    tmp, train, tl, query, ql = recorded
    main(["score", str(tmp / "store"), "-o", str(tmp / "scored")])
    assert main(["select", str(tmp / "scored"), "--size", "7", "--balance", "proportional", "--indices-only", "-o", str(tmp / "idx")]) == 0
    idx = load_from_disk(str(tmp / "idx"))
    assert idx.column_names == ["sample_index", "label", "cld_score"]
    assert len(idx) == 7


def test_bad_arguments_exit_codes(recorded, capsys):
    tmp = recorded[0]
    with pytest.raises(SystemExit) as exc:
        main(["select", str(tmp / "x"), "--fraction", "1.5", "-o", str(tmp / "o")])
    assert exc.value.code == 2
    assert "not in (0, 1]" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["select", str(tmp / "x"), "-o", str(tmp / "o")])  # neither --fraction nor --size
    assert exc.value.code == 2
    assert main(["select", str(tmp / "missing"), "--fraction", "0.1", "-o", str(tmp / "o")]) == 1
    assert "does not exist" in capsys.readouterr().err
    assert main(["score", str(tmp / "train"), "-o", str(tmp / "o")]) == 1
    assert "not a loss-trajectory store" in capsys.readouterr().err
    assert main(["score", str(tmp / "store"), "--dataset", str(tmp / "store"), "-o", str(tmp / "o")]) == 1
    assert main(["plot", str(tmp / "train"), "-o", str(tmp / "p")]) == 1
    assert "no 'cld_score' column" in capsys.readouterr().err


# ----------------------------------------------- arguments, exit codes, the overwrite rule


def test_run_help_shows_hyphenated_options_first_with_defaults_and_clear_switches(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["run", "--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    assert "--no_" not in text and "--proxy_epochs" not in text  # underscores still parse
    assert "--proxy-epochs PROXY_EPOCHS" in text and "(default: 15)" in text
    assert "(default: 0.1 0.3)" in text and "(default: cld random)" in text
    assert "--no-full-baseline    skip the target runs on the full training set" in text
    assert "--no-plots            write no PNG plots" in text
    assert "--overwrite-output-dir, --overwrite" in text
    assert "[FULL_BASELINE]" not in text and "--full-baseline " not in text
    assert "--task {auto,image-classification,text-classification,causal-lm}" in text
    assert "exit codes:" in text
    # the underscore spellings HfArgumentParser adds still work
    parser = make_parser("run")
    args = parser.parse_args(["run", "--proxy_epochs", "4", "--no_plots", "--label_column", "y"])
    assert args.proxy_epochs == 4 and args.plots is False and args.label_column == "y"


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["run", "--task", "causal-lm", "--batch-size", "64"],
         {"dataset": "stdlib-docstrings", "batch_size": 64, "proxy_epochs": 8,
          "learning_rate": 3e-3, "methods": ["cld", "random", "s2l"]}),
        (["-v", "run", "--dataset", "stdlib-docstrings", "--methods", "cld", "random"],
         {"batch_size": 32, "target_epochs": 8, "methods": ["cld", "random"]}),
        (["run", "--batch-size", "32"],  # the image job keeps its own defaults
         {"dataset": "digits", "batch_size": 32, "proxy_epochs": 15, "methods": ["cld", "random"]}),
    ],
)
def test_run_takes_the_text_jobs_defaults_for_options_not_typed(argv, expected):
    from cld_hf.app.cli_run import _apply_task_defaults

    args = make_parser("run").parse_args(argv)
    args._cli_argv = argv
    _apply_task_defaults(args)
    assert {k: getattr(args, k) for k in expected} == expected


@pytest.mark.parametrize("name", ["select", "inspect"])
def test_score_column_has_help(name, capsys):
    with pytest.raises(SystemExit):
        main([name, "--help"])
    text = capsys.readouterr().out
    assert "--score-column SCORE_COLUMN\n                        column of the scores" in text


@pytest.mark.parametrize(
    "argv,message",
    [
        (["run", "--fractions", "1.5"], "cld-hf run: error: --fractions contains 1.5, each must be in (0, 1]"),
        (["run", "--methods", "nonsense"], "cld-hf run: error: --methods contains 'nonsense'"),
        (["run", "--bogus"], "cld-hf run: error: unrecognized arguments: --bogus"),
        (["run", "--seeds", "x"], "cld-hf run: error: argument --seeds: invalid int value: 'x'"),
        (["run", "--proxy-epochs", "1"], "cld-hf run: error: --proxy-epochs == 1"),
        (["run", "--mode", "train_pass", "--methods", "cld", "forgetting"],
         "cld-hf run: error: --mode == 'train_pass'"),
        (["run", "--task", "vision"], "cld-hf run: error: argument --task: invalid choice"),
        (["select", "x", "--fraction", "1.5", "-o", "o"], "cld-hf select: error: argument --fraction"),
        (["select", "x", "--fraction", "0.1", "--strategy", "coverage", "-o", "o"],
         "cld-hf select: error: --strategy coverage estimates the noise rate"),
        (["--bogus"], "cld-hf: error: unrecognized arguments: --bogus"),
        (["nonsense"], "cld-hf: error: argument <subcommand>: invalid choice: 'nonsense'"),
    ],
)
def test_every_bad_argument_exits_2_with_one_line(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(message), err
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_select_and_score_refuse_a_non_empty_output_unless_overwrite(recorded, capsys):
    tmp = recorded[0]
    assert main(["score", str(tmp / "store"), "-o", str(tmp / "scored")]) == 0
    core = tmp / "core"
    core.mkdir()
    (core / "notes.txt").write_text("mine")
    capsys.readouterr()
    for argv in (["select", str(tmp / "scored"), "--fraction", "0.2", "-o", str(core)],
                 ["score", str(tmp / "store"), "-o", str(core)]):
        assert main(argv) == 1
        err = capsys.readouterr().err
        assert "is not empty (notes.txt)" in err and "--overwrite-output-dir" in err
        assert len(err.strip().splitlines()) == 1
    assert main(["select", str(tmp / "scored"), "--fraction", "0.2", "-o", str(core),
                 "--overwrite"]) == 0
    assert len(load_from_disk(str(core))) == 12 and (core / "notes.txt").read_text() == "mine"
    # again, smaller: the previous coreset's files are replaced, the user's file stays
    assert main(["select", str(tmp / "scored"), "--size", "3", "-o", str(core),
                 "--overwrite-output-dir"]) == 0
    assert len(load_from_disk(str(core))) == 3 and (core / "notes.txt").exists()
    assert json.loads((core / "cld_run.json").read_text())["size"] == 3
    assert main(["score", str(tmp / "store"), "-o", str(tmp / "scored"), "--overwrite"]) == 0


def test_an_output_that_is_the_input_is_a_bad_argument(recorded, capsys):
    tmp = recorded[0]
    assert main(["score", str(tmp / "store"), "-o", str(tmp / "scored")]) == 0
    with pytest.raises(SystemExit) as exc:
        main(["select", str(tmp / "scored"), "--fraction", "0.2", "-o", str(tmp / "scored"),
              "--overwrite"])
    assert exc.value.code == 2
    assert "is the input dataset" in capsys.readouterr().err
    assert len(load_from_disk(str(tmp / "scored"))) == 60  # untouched


def test_run_refuses_a_non_empty_output_dir_before_loading(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "thesis.tex").write_text("mine")
    assert main(["run", "--output-dir", str(out), "--proxy-epochs", "2"]) == 1
    err = capsys.readouterr().err
    assert "is not empty (thesis.tex)" in err and "--overwrite-output-dir" in err


def test_cld_hf_plot_results_has_the_full_set_line_title_and_every_method(recorded, capsys,
                                                                          monkeypatch):
    """Regression: the copy `cld-hf plot --results` made had no full-set line and a generic
    title."""
    from cld_hf.app import plots

    tmp = recorded[0]
    assert main(["score", str(tmp / "store"), "--dataset", str(tmp / "train"), "-o",
                 str(tmp / "scored")]) == 0
    rows = [{"fraction": f, "method": m, "seed": s, "accuracy": a}
            for f in (0.1, 0.3) for m, a in (("cld", 0.8), ("random", 0.7), ("el2n", 0.6))
            for s in (0, 1)]
    results = {"arguments": {"dataset": "data/pets", "fractions": [0.1, 0.3], "seeds": 2,
                             "balance": "equal"},
               "runs": rows, "full_data_accuracy": [0.9, 0.92]}
    (tmp / "results.json").write_text(json.dumps(results))
    seen = {}
    original = plots.plot_accuracy_vs_fraction

    def spy(rows, path, **kwargs):
        fig = original(rows, None, **kwargs)
        seen["legend"] = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
        seen["title"] = fig.axes[0].get_title()
        return original(rows, path, **kwargs)

    monkeypatch.setattr(plots, "plot_accuracy_vs_fraction", spy)
    assert main(["plot", str(tmp / "scored"), "--results", str(tmp / "results.json"),
                 "-o", str(tmp / "plots")]) == 0
    assert seen["title"].startswith("pets: target test accuracy by coreset size")
    assert {"cld", "random", "el2n", "full training set (91.0%)",
            "full training set ± 1 std"} <= set(seen["legend"])
    names = sorted(p.name for p in (tmp / "plots").iterdir())
    assert names[:3] == ["accuracy_vs_fraction.png", "coreset_composition.png",
                         "score_distribution.png"] and names[3].startswith("trajectories_class_")
    assert len(names) == 4  # no image column: no kept_and_dropped grid
