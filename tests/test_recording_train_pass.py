"""Losses fed from the training forward passes (cld_hf.recording.train_pass)."""

from __future__ import annotations


import numpy as np
import pytest
import torch


from helpers import (
    MLP,
    recompute_losses,
    recompute_signals,
)

from cld_hf.recording import (
    IncompleteSnapshotError,
)


from helpers import make_recorder


def test_train_pass_losses_land_by_index_whatever_the_feed_order(accelerator, data, tmp_path):
    rec = make_recorder(accelerator, data, tmp_path, mode="train_pass")
    rec.record(MLP(), epoch=0)  # first snapshot: a sweep
    n = rec.num_train
    order = np.random.default_rng(1).permutation(n)
    values = np.arange(n, dtype=np.float32) / 10
    for chunk in np.array_split(order, 6):
        rec.feed(torch.tensor(chunk), torch.tensor(values[chunk]))
    assert rec.num_fed == n
    rec.record(MLP(), epoch=1)
    np.testing.assert_array_equal(rec.store.snapshot(1)[0], values)


def test_train_pass_sample_seen_twice_keeps_its_first_loss(accelerator, data, tmp_path):
    rec = make_recorder(accelerator, data, tmp_path, mode="train_pass")
    rec.record(MLP(), epoch=0)
    n = rec.num_train
    rec.feed(np.arange(n), np.ones(n))
    rec.feed([0, 5], [9.0, 9.0])  # accelerate's even_batches padding repeats early samples
    rec.record(MLP(), epoch=1)
    np.testing.assert_array_equal(rec.store.snapshot(1)[0], np.ones(n, np.float32))


def test_train_pass_unseen_samples_are_named_in_the_error(accelerator, data, tmp_path):
    rec = make_recorder(accelerator, data, tmp_path, mode="train_pass")
    rec.record(MLP(), epoch=0)
    n = rec.num_train
    seen = np.setdiff1d(np.arange(n), [3, 17])
    rec.feed(seen, np.ones(len(seen)))
    match = r"first \[3, 17\].*dataloader_drop_last"
    with pytest.raises(IncompleteSnapshotError, match=match) as err:
        rec.record(MLP(), epoch=1)
    assert err.value.missing == [3, 17]
    assert rec.num_snapshots == 1 and rec.store.num_snapshots == 1  # nothing half-written


def test_train_pass_unseen_sweep_records_the_missing_samples_in_eval_mode(
    accelerator, data, tmp_path
):
    train, _ = data
    model = MLP()
    rec = make_recorder(accelerator, data, tmp_path, mode="train_pass", unseen="sweep")
    rec.record(model, epoch=0)
    seen = np.setdiff1d(np.arange(rec.num_train), [3, 17])
    rec.feed(seen, np.full(len(seen), 7.0))
    rec.record(model, epoch=1)
    got = rec.store.snapshot(1)[0]
    full = recompute_losses(model, train)
    np.testing.assert_allclose(got[[3, 17]], full[[3, 17]], atol=1e-6)
    assert np.all(got[seen] == 7.0)


def test_final_features_in_train_pass_mode_come_from_a_sweep_and_rewind_drops_them(
    accelerator, data, tmp_path
):
    train, _ = data
    model = MLP()
    rec = make_recorder(accelerator, data, tmp_path, mode="train_pass",
                        signals=["probs", "embeddings"], feature_module="net.2")
    rec.record(model, epoch=0, step=0)
    rec.feed(np.arange(rec.num_train), np.ones(rec.num_train))
    rec.record(model, epoch=1, step=5, final=True)
    want = recompute_signals(model, train)
    np.testing.assert_allclose(rec.store.load_array("embeddings"), want["embeddings"], atol=1e-5)
    assert rec.final_features_recorded
    rec.rewind(step=0)  # resuming from an earlier checkpoint: the end of training is to come
    assert rec.store.array_names == [] and not rec.final_features_recorded
