"""Tests of the Arrow loss-trajectory store (cld_hf/trajectories.py)."""

import json
import logging
import os
import subprocess
import sys
import textwrap

import numpy as np
import pyarrow as pa
import pytest
from datasets import List, Value

from cld_hf import LossTrajectories, cld_scores, trajectory_column
from cld_hf.manifest import StoreIntegrityError


def fill(store, train, query):
    for t in range(train.shape[1]):
        store.append(train[:, t], query[:, t], epoch=t, step=10 * t)


@pytest.fixture
def problem():
    rng = np.random.default_rng(0)
    n, q, s = 50, 12, 6
    train = rng.random((n, s), dtype=np.float32) * 3
    query = rng.random((q, s), dtype=np.float32) * 3
    return train, np.arange(n) % 3, query, np.arange(q) % 3


@pytest.mark.parametrize("n,q,s", [(1, 1, 1), (7, 3, 4), (50, 12, 6)])
def test_round_trip_through_disk(tmp_path, n, q, s):
    rng = np.random.default_rng(n)
    train, query = rng.random((n, s), dtype=np.float32), rng.random((q, s), dtype=np.float32)
    store = LossTrajectories.create(tmp_path / "store", np.arange(n) % 2, np.arange(q) % 2, metadata={"model": "tiny"})
    fill(store, train, query)
    reopened = LossTrajectories(tmp_path / "store")
    assert reopened.num_snapshots == s
    np.testing.assert_array_equal(reopened.train_losses(), train)
    np.testing.assert_array_equal(reopened.query_losses(), query)
    np.testing.assert_array_equal(reopened.train_labels, np.arange(n) % 2)
    np.testing.assert_array_equal(reopened.query_labels, np.arange(q) % 2)
    assert reopened.metadata == {"model": "tiny"}
    assert [i["epoch"] for i in reopened.snapshot_info] == list(range(s))
    assert [i["step"] for i in reopened.snapshot_info] == [10 * t for t in range(s)]


def test_storage_is_n_plus_q_times_s_times_4_bytes_plus_small_overhead(tmp_path, problem):
    train, tl, query, ql = problem
    store = LossTrajectories.create(tmp_path, tl, ql)
    empty = store.nbytes
    fill(store, train, query)
    payload = (len(tl) + len(ql)) * train.shape[1] * 4
    per_file_overhead = (store.nbytes - empty - payload) / train.shape[1]
    assert 0 < per_file_overhead < 1024


def test_reopen_after_crash_mid_write_loses_only_that_snapshot(tmp_path, problem):
    train, tl, query, ql = problem
    store_dir = tmp_path / "store"
    LossTrajectories.create(store_dir, tl, ql)
    # A real process appends 3 snapshots, then dies (os._exit) while writing the 4th: the
    # manifest lists the 4th as pending and its bytes sit in the writer's temporary file.
    np.save(tmp_path / "train.npy", train)
    np.save(tmp_path / "query.npy", query)
    script = textwrap.dedent(
        f"""
        import os, numpy as np
        import cld_hf.trajectories as trajectories
        from cld_hf.fileio import temp_name
        from cld_hf import LossTrajectories
        store = LossTrajectories({str(store_dir)!r}, writable=True)
        train, query = np.load({str(tmp_path / 'train.npy')!r}), np.load({str(tmp_path / 'query.npy')!r})
        for t in range(3):
            store.append(train[:, t], query[:, t], epoch=t)
        def die_mid_write(path, data):
            tmp = path.with_name(temp_name(path.name))
            tmp.write_bytes(bytes(data)[: len(data) // 2])
            os._exit(9)
        trajectories.atomic_write_bytes = die_mid_write
        store.append(train[:, 3], query[:, 3], epoch=3)
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert proc.returncode == 9, proc.stderr
    (store_dir / "notes.tmp").write_text("the user's own file")
    reader = LossTrajectories(store_dir)  # a reader changes nothing
    assert reader.num_snapshots == 3
    assert sum(p.name.endswith(".tmp") for p in store_dir.iterdir()) == 2
    reopened = LossTrajectories(store_dir, writable=True)  # the writer removes its dead temp file
    assert reopened.num_snapshots == 3
    assert sorted(p.name for p in store_dir.iterdir() if p.name.endswith(".tmp")) == ["notes.tmp"]
    np.testing.assert_array_equal(reopened.train_losses(), train[:, :3])
    # and recording goes on where it stopped
    for t in range(3, train.shape[1]):
        reopened.append(train[:, t], query[:, t], epoch=t)
    np.testing.assert_array_equal(LossTrajectories(store_dir).train_losses(), train)


def test_truncate_for_resume_then_continue(tmp_path, problem):
    train, tl, query, ql = problem
    store = LossTrajectories.create(tmp_path, tl, ql)
    fill(store, train + 1, query + 1)  # a run that went further, with other losses
    store.truncate(2)
    assert LossTrajectories(tmp_path).num_snapshots == 2
    store.truncate(0)
    fill(store, train, query)
    np.testing.assert_array_equal(LossTrajectories(tmp_path).train_losses(), train)
    with pytest.raises(ValueError, match="num_snapshots == 9, must be <= 6"):
        store.truncate(9)


def test_a_deleted_snapshot_file_is_an_error_naming_it(tmp_path, problem):
    train, tl, query, ql = problem
    store = LossTrajectories.create(tmp_path, tl, ql)
    fill(store, train, query)
    os.remove(tmp_path / "snapshot-00002.arrow")
    with pytest.raises(StoreIntegrityError, match=r"snapshot-00002.arrow \(snapshot 2\) is missing"):
        LossTrajectories(tmp_path)


def test_scores_batch_streaming_and_window(tmp_path, problem):
    train, tl, query, ql = problem
    store = LossTrajectories.create(tmp_path, tl, ql)
    fill(store, train, query)
    expected = cld_scores(train, tl, query, ql)
    np.testing.assert_array_equal(store.scores(), expected)
    np.testing.assert_allclose(store.scores(streaming=True), expected, atol=1e-6)
    np.testing.assert_array_equal(store.scores(first=4), cld_scores(train[:, :4], tl, query[:, :4], ql))
    np.testing.assert_allclose(store.scores(every=2, streaming=True), cld_scores(train[:, ::2], tl, query[:, ::2], ql), atol=1e-6)


def test_to_dataset_fixed_size_list_feature(tmp_path, problem):
    train, tl, query, ql = problem
    store = LossTrajectories.create(tmp_path, tl, ql)
    fill(store, train, query)
    ds = store.to_dataset()
    assert ds.features["loss_trajectory"] == List(Value("float32"), length=train.shape[1])
    assert ds.features["sample_index"].dtype == "int64"
    assert ds.data.column("loss_trajectory").type == pa.list_(pa.float32(), train.shape[1])
    np.testing.assert_array_equal(ds.with_format("numpy")["loss_trajectory"][:], train)
    assert ds["label"][:] == tl.tolist()
    assert ds["sample_index"][:] == list(range(len(tl)))
    qds = store.to_dataset("query")
    np.testing.assert_array_equal(qds.with_format("numpy")["loss_trajectory"][:], query)
    with pytest.raises(ValueError, match="split == 'val'"):
        store.to_dataset("val")


def test_trajectory_column_is_zero_python_lists():
    m = np.arange(12, dtype=np.float32).reshape(4, 3)
    col = trajectory_column(m)
    assert isinstance(col, pa.FixedSizeListArray)
    np.testing.assert_array_equal(col.flatten().to_numpy().reshape(4, 3), m)
    with pytest.raises(ValueError, match="must be 2-D"):
        trajectory_column(np.zeros(3))


def test_bad_input(tmp_path, caplog):
    with pytest.raises(FileNotFoundError, match="not a loss-trajectory store"):
        LossTrajectories(tmp_path)
    store = LossTrajectories.create(tmp_path, [0, 1, 1], [0, 1])
    with pytest.raises(FileExistsError, match="overwrite=True"):
        LossTrajectories.create(tmp_path, [0, 1, 1], [0, 1])
    with pytest.raises(ValueError, match=r"train_losses of shape \(2,\).*N=3 training and Q=2 query"):
        store.append([1.0, 2.0], [1.0, 2.0])
    with caplog.at_level(logging.WARNING, logger="cld_hf.trajectories"):
        store.append([1.0, np.nan, 2.0], [1.0, 2.0])
    assert "1 NaN/inf loss(es)" in caplog.text and "[1]" in caplog.text
    with pytest.raises(TypeError, match="integer class ids"):
        LossTrajectories.create(tmp_path / "x", [0.5, 1.0], [0])
    fresh = LossTrajectories.create(tmp_path, [0, 1], [1], overwrite=True)
    assert fresh.num_snapshots == 0 and fresh.num_train == 2
    meta = json.loads((tmp_path / "store.json").read_text())
    assert meta["format"] == "cld-hf-loss-trajectories" and meta["num_query"] == 1


def test_copy_to_is_independent(tmp_path, problem):
    train, tl, query, ql = problem
    store = LossTrajectories.create(tmp_path / "a", tl, ql)
    fill(store, train, query)
    copy = store.copy_to(tmp_path / "b")
    store.truncate(1)
    assert copy.num_snapshots == train.shape[1]
    np.testing.assert_array_equal(LossTrajectories(tmp_path / "b").train_losses(), train)


# --------------------------------------------------------------------- extra signals (issue 7)


def test_signals_round_trip_as_columns_of_the_snapshot_files(tmp_path, problem):
    train, tl, query, ql = problem
    n, q, s = len(tl), len(ql), train.shape[1]
    rng = np.random.default_rng(1)
    margin = rng.normal(size=(n, s)).astype(np.float32)
    correct = margin > 0
    both = rng.random((n + q, s), dtype=np.float32)  # training and query values
    store = LossTrajectories.create(tmp_path, tl, ql)
    for t in range(s):
        store.append(train[:, t], query[:, t], epoch=t,
                     signals={"margin": margin[:, t], "correct": correct[:, t],
                              "true_prob": both[:, t]})
    reopened = LossTrajectories(tmp_path)
    assert reopened.signal_names == ["margin", "correct", "true_prob"]
    np.testing.assert_array_equal(reopened.train_signal("margin"), margin)
    got = reopened.train_signal("correct")
    assert got.dtype == bool and got.shape == (n, s)
    np.testing.assert_array_equal(got, correct)
    np.testing.assert_array_equal(reopened.train_signal("true_prob", snapshots=[4, 1]),
                                  both[:n][:, [4, 1]])
    np.testing.assert_array_equal(reopened.query_signal("true_prob"), both[n:])
    with pytest.raises(ValueError, match="training samples only"):
        reopened.query_signal("margin")
    np.testing.assert_array_equal(reopened.train_losses(), train)  # the loss column is unchanged
    # a reader that knows only the "loss" column reads the new files as before
    table = pa.ipc.open_file(str(tmp_path / "snapshot-00002.arrow")).read_all()
    assert table.column_names[0] == "loss"
    np.testing.assert_array_equal(table.column("loss").to_numpy()[:n], train[:, 2])
    sizes = reopened.signal_nbytes()
    bitmap = -(-(n + q) // 8)
    assert sizes == {"loss": (n + q) * 4 * s, "margin": ((n + q) * 4 + bitmap) * s,
                     "correct": 2 * bitmap * s, "true_prob": (n + q) * 4 * s}


def test_a_loss_only_store_still_opens_and_mixed_snapshots_are_named(tmp_path, problem):
    train, tl, query, ql = problem
    store_dir = tmp_path / "store"
    store = LossTrajectories.create(store_dir, tl, ql)
    fill(store, train[:, :3], query[:, :3])  # the format before extra signals: a "loss" column
    assert [f.name for f in pa.ipc.open_file(str(store_dir / "snapshot-00000.arrow")).schema] == ["loss"]
    reopened = LossTrajectories(store_dir, writable=True)
    assert reopened.num_snapshots == 3 and reopened.signal_names == [] and reopened.array_names == []
    np.testing.assert_array_equal(reopened.scores(), cld_scores(train[:, :3], tl, query[:, :3], ql))
    reopened.append(train[:, 3], query[:, 3], signals={"el2n": np.ones(len(tl))})
    assert reopened.signal_names == []  # not carried by every snapshot
    np.testing.assert_array_equal(reopened.train_signal("el2n", snapshots=[3]), np.ones((len(tl), 1)))
    with pytest.raises(KeyError, match=r"'el2n' is not in snapshot\(s\) \[0, 1, 2\].*signals=\['el2n'\]"):
        reopened.train_signal("el2n")


def test_end_of_training_arrays_are_safetensors_and_follow_truncate_and_copy(tmp_path, problem):
    train, tl, query, ql = problem
    store = LossTrajectories.create(tmp_path / "a", tl, ql)
    fill(store, train[:, :3], query[:, :3])
    emb = np.random.default_rng(2).normal(size=(len(tl), 5)).astype(np.float32)
    path = store.save_array("embeddings", emb)
    assert path.name == "array-embeddings.safetensors" and path.read_bytes()[8:9] == b"{"  # no pickle
    assert store.array_snapshot("embeddings") == 3
    copy = store.copy_to(tmp_path / "b")
    np.testing.assert_array_equal(copy.load_array("embeddings"), emb)
    store.truncate(3)  # nothing recorded after the array: kept
    assert store.array_names == ["embeddings"]
    store.truncate(2)  # the array describes a later point of training than the store now
    assert store.array_names == [] and LossTrajectories(tmp_path / "b").array_names == ["embeddings"]
    with pytest.raises(KeyError, match=r"No array 'embeddings'.*record\(model, final=True\)"):
        store.load_array("embeddings")
    fresh = LossTrajectories.create(tmp_path / "b", tl, ql, overwrite=True)
    assert fresh.array_names == [] and fresh.num_snapshots == 0


@pytest.mark.parametrize("signals, error, match", [
    ({"margin": np.ones(3)}, ValueError, r"signals\['margin'\] has shape \(3,\).*\(50,\).*\(62,\)"),
    ({"loss": np.ones(50)}, ValueError, "other than 'loss'"),
    ({"my margin": np.ones(50)}, ValueError, "Python identifier"),
    ({"label": np.array(["a"] * 50)}, TypeError, "booleans or real numbers"),
    ([("margin", np.ones(50))], TypeError, "must be a mapping"),
])
def test_bad_signals_name_the_argument_and_the_fix(tmp_path, problem, signals, error, match):
    train, tl, query, ql = problem
    store = LossTrajectories.create(tmp_path, tl, ql)
    with pytest.raises(error, match=match):
        store.append(train[:, 0], query[:, 0], signals=signals)
    assert store.num_snapshots == 0
    with pytest.raises(ValueError, match=r"one row per training sample \(N=50\)"):
        store.save_array("probs", np.ones((7, 3)))
