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
