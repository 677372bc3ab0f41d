"""Tests of ``cld-hf attribute``: top-k CLD_inf1 (and TracIn) influencers from a store."""

import json
import re
import subprocess
import sys

import numpy as np
import pyarrow.ipc as ipc
import pytest

from cld_hf import LossTrajectories
from cld_hf.attribution import cld_attribution, top_influencers, tracin_last_layer
from cld_hf.cli import main


@pytest.fixture
def store(tmp_path):
    """30 training, 6 query samples, 3 classes, 7 snapshots, with the final TracIn arrays."""
    rng = np.random.default_rng(0)
    n, q, s, c, d = 30, 6, 7, 3, 4
    decay = 3 * np.exp(-0.4 * np.arange(s))
    train = (decay + 0.5 * rng.random((n, s))).astype(np.float32)
    query = (decay + 0.5 * rng.random((q, s))).astype(np.float32)
    st = LossTrajectories.create(tmp_path / "store", np.arange(n) % c, np.arange(q) % c)
    for t in range(s):
        st.append(train[:, t], query[:, t], epoch=t)
    p = rng.dirichlet(np.ones(c), size=n)
    qp = rng.dirichlet(np.ones(c), size=q)
    st.save_array("probs", p)
    st.save_array("embeddings", rng.normal(size=(n, d)))
    st.save_array("query_probs", qp, part="query")
    st.save_array("query_embeddings", rng.normal(size=(q, d)), part="query")
    return LossTrajectories(tmp_path / "store")


def _read_arrow(path):
    table = ipc.open_file(str(path)).read_all()
    return table, json.loads(table.schema.metadata[b"cld_hf"])


def test_arrow_output_is_the_top_k_of_cld_inf1_for_the_chosen_queries(store, tmp_path):
    out = tmp_path / "top.arrow"
    assert main(["attribute", str(store.directory), "--query", "4", "1", "-k", "3",
                 "-o", str(out)]) == 0
    table, info = _read_arrow(out)
    assert table.column_names == ["query_index", "query_label", "rank", "train_index",
                                  "train_label", "attribution"]
    a = cld_attribution(store.train_losses(), store.query_losses(), query_index=[4, 1])
    idx, val = top_influencers(a, 3)
    d = table.to_pydict()
    assert d["query_index"] == [4, 4, 4, 1, 1, 1] and d["rank"] == [1, 2, 3] * 2
    assert d["query_label"] == [1, 1, 1, 1, 1, 1]
    assert d["train_index"] == idx.reshape(-1).tolist()
    assert d["train_label"] == (idx.reshape(-1) % 3).tolist()
    np.testing.assert_array_equal(np.asarray(d["attribution"], np.float32), val.reshape(-1))
    assert info["method"] == "cld_inf1" and info["k"] == 3 and info["largest"] is True
    assert info["store_id"] == store.store_id and info["num_snapshots"] == 7


def test_json_output_holds_the_same_influencers_per_query(store, tmp_path):
    out = tmp_path / "top.json"
    assert main(["attribute", str(store.directory), "-k", "2", "-o", str(out)]) == 0
    doc = json.loads(out.read_text())
    a = cld_attribution(store.train_losses(), store.query_losses())
    idx, val = top_influencers(a, 2)
    assert [e["query_index"] for e in doc["queries"]] == list(range(6))
    assert [e["train_index"] for e in doc["queries"]] == idx.tolist()
    np.testing.assert_allclose([e["attribution"] for e in doc["queries"]], val, atol=1e-6)


def test_opponents_window_and_blocks_give_the_library_result(store, tmp_path, monkeypatch):
    import cld_hf.cli.attribute as attribute

    monkeypatch.setattr(attribute, "_BLOCK_BYTES", 4 * 30 * 2)  # two query samples a block
    out = tmp_path / "opp.arrow"
    assert main(["attribute", str(store.directory), "--opponents", "--first", "5", "--every",
                 "2", "-k", "4", "-o", str(out)]) == 0
    a = cld_attribution(store.train_losses(), store.query_losses(), first=5, every=2)
    idx, _ = top_influencers(a, 4, largest=False)
    table, info = _read_arrow(out)
    assert table["train_index"].to_pylist() == idx.reshape(-1).tolist()
    assert info["largest"] is False and info["first"] == 5 and info["every"] == 2


def test_tracin_reads_the_final_arrays_of_the_store(store, tmp_path):
    out = tmp_path / "tracin.arrow"
    assert main(["attribute", str(store.directory), "--method", "tracin", "-k", "2",
                 "-o", str(out)]) == 0
    a = tracin_last_layer(store.load_array("probs"), store.load_array("embeddings"),
                          store.train_labels, store.load_array("query_probs"),
                          store.load_array("query_embeddings"), store.query_labels)
    idx, _ = top_influencers(a, 2)
    assert _read_arrow(out)[0]["train_index"].to_pylist() == idx.reshape(-1).tolist()


@pytest.mark.parametrize("extra, message", [
    (["-k", "31"], "--k 31 is more than the 30 training samples"),
    (["--query", "6"], r"--query holds rows \[6\] outside \[0, 5\]"),
    (["--method", "tracin", "--first", "3"], "apply to cld_inf1 only"),
])
def test_bad_arguments_exit_1_naming_the_fix(store, tmp_path, capsys, extra, message):
    out = tmp_path / "x.arrow"
    assert main(["attribute", str(store.directory), *extra, "-o", str(out)]) == 1
    err = capsys.readouterr().err
    assert re.search(message, err), err
    assert not out.exists()


def test_unknown_format_existing_output_missing_arrays_and_streaming_store(store, tmp_path,
                                                                           capsys):
    assert main(["attribute", str(store.directory), "-o", str(tmp_path / "x.pkl")]) == 1
    assert "must end in .arrow (Arrow IPC) or .json" in capsys.readouterr().err
    out = tmp_path / "x.json"
    out.write_text("{}")
    assert main(["attribute", str(store.directory), "-o", str(out)]) == 1
    assert "pass --overwrite" in capsys.readouterr().err
    assert main(["attribute", str(store.directory), "-o", str(out), "--overwrite"]) == 0
    bare = LossTrajectories.create(tmp_path / "bare", [0, 1, 1], [0, 1])
    for t in range(3):
        bare.append([3.0 - t, 2.0, 1.0 + t], [3.0 - t, 1.0 + t])
    assert main(["attribute", str(bare.directory), "--method", "tracin", "-k", "1", "-o",
                 str(tmp_path / "t.json")]) == 1
    assert "lacks the arrays ['probs', 'embeddings'" in capsys.readouterr().err
    streaming = LossTrajectories.create(tmp_path / "s", [0, 1], [0, 1], streaming=True)
    assert main(["attribute", str(streaming.directory), "-k", "1", "-o",
                 str(tmp_path / "s.json")]) == 1
    assert "streaming store" in capsys.readouterr().err


def test_help_has_examples_and_imports_no_torch(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["attribute", "--help"])
    assert exc.value.code == 0 and "examples:" in capsys.readouterr().out
    code = ("import sys\nfrom cld_hf.cli import main\n"
            "try:\n    main(['attribute', '--help'])\nexcept SystemExit:\n    pass\n"
            "print('HEAVY', [m for m in ('torch', 'transformers') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip().splitlines()[-1] == "HEAVY []"
