"""Gathering by sample index: place_by_index, shards of several processes (cld_hf.recording.gather)."""

from __future__ import annotations


import numpy as np
import pytest


from helpers import (
    MLP,
    mp_results,
    recompute_signals,
)

from cld_hf import LossTrajectories
from cld_hf.recording import IncompleteSnapshotError, place_by_index


from helpers import make_recorder, assert_signals_match


def test_an_index_out_of_range_or_twice_in_a_sweep_is_an_error(accelerator, data, tmp_path):
    rec = make_recorder(accelerator, data, tmp_path, mode="train_pass")
    rec.record(MLP(), epoch=0)
    rec.feed([0, rec.num_train + 4], [1.0, 1.0])
    with pytest.raises(ValueError, match=rf"indices \[{rec.num_train + 4}\] are out of range"):
        rec.record(MLP(), epoch=1)
    with pytest.raises(ValueError, match=r"more than one loss, first \[2\]"):
        place_by_index(4, np.array([0, 1, 2, 2, 3]), np.ones(5, np.float32), what="sweep")


def test_nan_loss_is_an_error_naming_the_sample(accelerator, data, tmp_path):
    rec = make_recorder(accelerator, data, tmp_path, mode="train_pass")
    rec.record(MLP(), epoch=0)
    losses = np.ones(rec.num_train)
    losses[6] = np.nan
    rec.feed(np.arange(rec.num_train), losses)
    with pytest.raises(ValueError, match=r"NaN or infinite loss, first \[6\]"):
        rec.record(MLP(), epoch=1)


@pytest.mark.multiprocess
def test_two_process_signals_equal_one_process_recomputation_every_index_once(data):
    """torchrun --nproc_per_node 2 (the shared run of tests/mp/mp_recording.py): 82 samples,
    batch 16 per process, uneven shards; the signals are gathered by sample index like the loss."""
    from safetensors.torch import load_file

    out = mp_results() / "loop"
    train, _ = data
    want = []
    for epoch in range(4):
        m = MLP()
        m.load_state_dict(load_file(str(out / f"weights-{epoch}.safetensors")))
        want.append(recompute_signals(m, train))
    store = LossTrajectories(out / "sweep")
    assert store.num_snapshots == 4
    assert_signals_match(store, want, final=want[-1])
    assert store.array_snapshot("probs") == 4


def test_place_by_index_with_hand_sized_arrays():
    # two processes, the second padded with -1; signals placed by the same indices
    placed = place_by_index(4, [2, 0, 3, 1, -1], [0.2, 0.0, 0.3, 0.1, 7.0],
                            extra={"margin": np.array([[2.0], [0.0], [3.0], [1.0], [9.0]])})
    np.testing.assert_array_equal(placed.values, np.float32([0.0, 0.1, 0.2, 0.3]))
    np.testing.assert_array_equal(placed.extra["margin"][:, 0], [0.0, 1.0, 2.0, 3.0])
    # a training pass: sample 1 seen twice, its first sighting (lower order) wins
    first = place_by_index(2, [1, 0, 1], [0.5, 0.25, 9.0], order=[0, 0, 1])
    np.testing.assert_array_equal(first.values, np.float32([0.25, 0.5]))
    with pytest.raises(ValueError, match=r"more than one loss, first \[1\]"):
        place_by_index(2, [1, 0, 1], [0.5, 0.25, 9.0])
    with pytest.raises(IncompleteSnapshotError, match=r"1 of 3 samples have no loss, first \[2\]"):
        place_by_index(3, [1, 0], [0.5, 0.25])
    with pytest.raises(ValueError, match=r"NaN or infinite loss, first \[0\]"):
        place_by_index(1, [0], [np.nan])
    assert np.isnan(place_by_index(1, [0], [np.nan], check_finite=False).values[0])
