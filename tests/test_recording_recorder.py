"""LossRecorder: recording, signals, streaming, state, resume, scored datasets (cld_hf.recording.recorder)."""

from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest
import torch


from helpers import (
    MLP,
    NoLogits,
    recompute_losses,
    recompute_signals,
)

from cld_hf import LossTrajectories, cld_scores
from cld_hf.scoring import class_score_summary
from cld_hf.recording import (
    FINAL_SIGNALS,
    SNAPSHOT_SIGNALS,
    LossRecorder,
)


from helpers import make_recorder, train_epoch, assert_signals_match

ALL_SIGNALS = SNAPSHOT_SIGNALS + FINAL_SIGNALS


def test_model_without_logits_is_an_error_that_names_per_sample_loss(accelerator, data, tmp_path):
    rec = make_recorder(accelerator, data, tmp_path)
    with pytest.raises(ValueError, match=r"no 'logits'.*per_sample_loss=fn\(outputs, batch\)"):
        rec.record(NoLogits())


def test_user_per_sample_loss_is_used_and_its_shape_checked(accelerator, data, tmp_path):
    train, query = data

    def squared_margin(outputs, batch):
        return outputs["logits"].max(dim=1).values ** 2

    model = MLP()
    rec = make_recorder(accelerator, data, tmp_path, per_sample_loss=squared_margin)
    rec.record(model)
    pix = torch.tensor(np.asarray(train.with_format("numpy")["pixel_values"][:]))
    with torch.no_grad():
        want = model(pix)["logits"].max(dim=1).values.square().numpy()
    np.testing.assert_allclose(rec.store.snapshot(0)[0], want, rtol=1e-6)

    bad = make_recorder(accelerator, data, tmp_path / "bad",
                        per_sample_loss=lambda out, batch: out["logits"].sum())
    with pytest.raises(ValueError, match=r"shape \(B,\)"):
        bad.record(model)


def test_sweeps_equal_an_independent_recomputation_and_scores_equal_cld_scores(
    accelerator, data, tmp_path
):
    train, query = data
    train = train.select(np.random.default_rng(0).permutation(len(train)))  # an indices mapping
    model = MLP()
    rec = make_recorder(accelerator, (train, query), tmp_path)
    expected_t, expected_q = [], []
    for epoch in range(4):
        if epoch:
            train_epoch(model, train, seed=epoch)
        assert rec.record(model, epoch=epoch, step=10 * epoch)
        expected_t.append(recompute_losses(model, train))
        expected_q.append(recompute_losses(model, query))
    t, q = np.stack(expected_t, 1), np.stack(expected_q, 1)
    store = LossTrajectories(tmp_path / "cld")  # reopened from disk
    np.testing.assert_allclose(store.train_losses(), t, atol=1e-5)
    np.testing.assert_allclose(store.query_losses(), q, atol=1e-5)
    assert [s["step"] for s in store.snapshot_info] == [0, 10, 20, 30]
    labels = np.asarray(train["label"][:])
    np.testing.assert_allclose(rec.scores(), cld_scores(t, labels, q, rec.query_labels), atol=1e-5)


def test_empty_query_set_is_an_error(accelerator, data, tmp_path):
    train, query = data
    with pytest.raises(ValueError, match="query_dataset is empty"):
        LossRecorder(train, query.select([]), accelerator=accelerator, output_dir=tmp_path)


def test_query_class_missing_fails_early_unless_global(accelerator, data, tmp_path):
    train, query = data
    no_seven = query.filter(lambda row: row["label"] != 7)
    with pytest.raises(ValueError, match=r"no query sample: \[7\].*missing_query_class='global'"):
        LossRecorder(train, no_seven, accelerator=accelerator, output_dir=tmp_path / "a")
    model = MLP()
    rec = LossRecorder(train, no_seven, accelerator=accelerator, output_dir=tmp_path / "b", progress=False,
                       missing_query_class="global")
    for epoch in range(3):
        if epoch:
            train_epoch(model, train, seed=epoch)
        rec.record(model)
    assert np.isfinite(rec.scores()).all()


@pytest.mark.parametrize("option, value, message", [
    ("mode", "sweeps", r"mode == 'sweeps', must be one of \['sweep', 'train_pass'\]"),
    ("every_n_epochs", 0, r"every_n_epochs == 0, must be >= 1"),
    ("if_exists", "keep", r"if_exists == 'keep'"),
])
def test_bad_options_name_the_argument_and_the_value(accelerator, data, tmp_path, option, value,
                                                      message):
    with pytest.raises(ValueError, match=message):
        make_recorder(accelerator, data, tmp_path, **{option: value})


def test_every_n_epochs_records_every_kth_epoch(accelerator, data, tmp_path):
    rec = make_recorder(accelerator, data, tmp_path, every_n_epochs=2)
    recorded = [rec.record(MLP(), epoch=e) for e in range(5)]
    assert recorded == [True, False, True, False, True]
    assert [s["epoch"] for s in rec.snapshot_info] == [0.0, 2.0, 4.0]


def test_streaming_scores_equal_stored_scores_without_a_trajectory(accelerator, data, tmp_path):
    train, _ = data
    model = MLP()
    stored = make_recorder(accelerator, data, tmp_path / "stored")
    streamed = make_recorder(accelerator, data, tmp_path / "streamed", streaming=True)
    for epoch in range(4):
        if epoch:
            train_epoch(model, train, seed=epoch)
        stored.record(model)
        streamed.record(model)
    np.testing.assert_allclose(streamed.scores(), stored.scores(), atol=1e-6)
    names = os.listdir(tmp_path / "streamed" / "cld")
    assert not any(n.startswith("snapshot-") for n in names)
    assert sum(n.startswith("streaming-state-") for n in names) == 1  # only the latest
    assert "loss_trajectory" not in streamed.scored_dataset().column_names
    with pytest.raises(ValueError, match="streaming=True keeps no trajectory"):
        streamed.scored_dataset(include_trajectory=True)


def test_state_dict_is_small_json_and_load_state_dict_rewinds(accelerator, data, tmp_path):
    rec = make_recorder(accelerator, data, tmp_path)
    for e in range(2):
        rec.record(MLP(), epoch=e, step=e)
    state = rec.state_dict()
    text = json.dumps(state)
    assert len(text) < 2000 and state["num_snapshots"] == 2
    rec.record(MLP(), epoch=2, step=2)
    rec.load_state_dict(json.loads(text))
    assert rec.num_snapshots == 2 and LossTrajectories(tmp_path / "cld").num_snapshots == 2


def test_existing_recording_is_refused_then_resumed_or_overwritten(accelerator, data, tmp_path):
    rec = make_recorder(accelerator, data, tmp_path)
    for e in range(2):
        rec.record(MLP(), epoch=e, step=e)
    with pytest.raises(FileExistsError, match="if_exists='overwrite'.*if_exists='resume'"):
        make_recorder(accelerator, data, tmp_path)
    resumed = make_recorder(accelerator, data, tmp_path, if_exists="resume")
    assert resumed.num_snapshots == 2
    assert resumed.rewind(step=0) == 1
    fresh = make_recorder(accelerator, data, tmp_path, if_exists="overwrite")
    assert fresh.num_snapshots == 0 and LossTrajectories(tmp_path / "cld").num_snapshots == 0


def test_resume_with_other_datasets_is_refused(accelerator, data, tmp_path):
    train, query = data
    make_recorder(accelerator, data, tmp_path).record(MLP())
    with pytest.raises(ValueError, match="recorded for N=82 training and Q=30 query samples .or other labels.; this recorder has N=40"):
        LossRecorder(train.select(range(40)), query, accelerator=accelerator, output_dir=tmp_path / "cld",
                     if_exists="resume")


def test_scored_dataset_has_float32_scores_and_fixed_length_trajectories(
    accelerator, data, tmp_path
):
    import datasets

    train, _ = data
    model = MLP()
    rec = make_recorder(accelerator, data, tmp_path)
    for epoch in range(3):
        if epoch:
            train_epoch(model, train, seed=epoch)
        rec.record(model)
    scored = rec.scored_dataset()
    assert scored.column_names == ["pixel_values", "label", "cld_score", "loss_trajectory"]
    assert scored.features["cld_score"] == datasets.Value("float32")
    assert scored.features["loss_trajectory"] == datasets.List(datasets.Value("float32"), length=3)
    np.testing.assert_array_equal(np.asarray(scored["cld_score"][:]), rec.scores())
    np.testing.assert_array_equal(scored.with_format("numpy")["loss_trajectory"][:],
                                  rec.store.train_losses())
    path = rec.save_scores()
    import pyarrow.ipc as ipc

    table = ipc.open_file(str(path)).read_all()
    assert table.column_names == ["sample_index", "label", "cld_score"]
    np.testing.assert_array_equal(table.column("cld_score").to_numpy(), rec.scores())


def test_class_score_summary_by_hand():
    summary = class_score_summary([1.0, 0.0, -1.0, 0.5], [2, 2, 2, 5])
    assert summary == {2: {"count": 3, "mean": 0.0, "std": pytest.approx(math.sqrt(2 / 3)),
                           "min": -1.0, "max": 1.0},
                       5: {"count": 1, "mean": 0.5, "std": 0.0, "min": 0.5, "max": 0.5}}


def test_signals_equal_an_independent_recomputation_from_the_same_weights(
    accelerator, data, tmp_path
):
    """Shuffled rows (an indices mapping), 82 samples in batches of 16: every signal lands at its
    sample index and equals a plain-torch recomputation (autograd for the gradient projection)."""
    train, query = data
    train = train.select(np.random.default_rng(3).permutation(len(train)))
    model = MLP()
    rec = make_recorder(accelerator, (train, query), tmp_path, signals=ALL_SIGNALS)
    want = []
    for epoch in range(3):
        if epoch:
            train_epoch(model, train, seed=epoch)
        assert rec.record(model, epoch=epoch, final=epoch == 2)
        want.append(recompute_signals(model, train))
    store = LossTrajectories(tmp_path / "cld")  # reopened from disk
    assert store.signal_names == list(SNAPSHOT_SIGNALS)
    assert_signals_match(store, want, final=want[-1])
    np.testing.assert_allclose(store.train_losses()[:, -1], recompute_losses(model, train),
                               atol=1e-5)  # the loss of the same sweep is unchanged
    assert rec.final_features_recorded and store.array_snapshot("embeddings") == 3
    # the query rows carry no signal; the extra storage is what the module docstring says
    with pytest.raises(ValueError, match="training samples only"):
        store.query_signal("margin")
    n, q = rec.num_train, rec.num_query
    sizes, bitmap = store.signal_nbytes(), -(-(n + q) // 8)
    assert sizes["loss"] == (n + q) * 4 * 3
    assert sizes["margin"] == ((n + q) * 4 + bitmap) * 3  # float32 values + the null bitmap
    assert sizes["correct"] == 2 * bitmap * 3  # bit-packed booleans + the null bitmap


def test_signals_need_classification_logits_and_a_store(accelerator, data, tmp_path):
    with pytest.raises(ValueError, match=r"signals contains \['forgetting'\], each must be one"):
        make_recorder(accelerator, data, tmp_path / "a", signals=["forgetting"])
    with pytest.raises(ValueError, match="streaming=True keeps none"):
        make_recorder(accelerator, data, tmp_path / "b", signals=["margin"], streaming=True)
    with pytest.raises(ValueError, match=r"\['margin'\] are taken from the eval-mode sweep.*"
                                         r"mode='sweep'"):
        make_recorder(accelerator, data, tmp_path / "c", signals=["margin"], mode="train_pass")
    with pytest.raises(ValueError, match=r"feature_module == 'head' is not a module"):
        rec = make_recorder(accelerator, data, tmp_path / "d", signals=["embeddings"],
                            feature_module="head")
        rec.record(MLP(), final=True)

    class Tokens(MLP):  # (batch, length, vocab) logits: not a classifier
        def forward(self, pixel_values, labels=None):
            return {"logits": self.net(pixel_values).reshape(-1, 2, 5)}

    rec = make_recorder(accelerator, data, tmp_path / "e", signals=["margin"],
                        per_sample_loss=lambda out, batch: out["logits"].sum(dim=(1, 2)))
    with pytest.raises(ValueError, match=r"classification logits of shape \(batch, classes\)"):
        rec.record(Tokens())
