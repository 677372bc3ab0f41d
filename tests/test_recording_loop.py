"""LossRecorder in custom accelerate loops: train_pass capture, accelerate checkpointing, and
the two-process run (torchrun, gloo) compared with one-process recomputations."""

from __future__ import annotations

import json
import os
import sys

import numpy as np
import pytest
import torch


from helpers import MLP, digits_dataset, mp_results, recompute_losses

from cld_hf import LossTrajectories, cld_scores
from cld_hf.recording import IndexCollator, IndexedDataset, LossRecorder


@pytest.fixture(scope="module")
def data():
    return digits_dataset(n_train=82, n_query=30)


def run_loop(tmp_path, data, *, epochs=3, stop_after=None, resume_from=None, streaming=False,
             mode="sweep", name="cld"):
    """A custom accelerate loop: record before training and after every epoch; checkpoint with
    accelerator.save_state after every epoch. Returns (recorder, model)."""
    from accelerate import Accelerator
    from accelerate.utils import set_seed

    set_seed(0)
    train, query = data
    accelerator = Accelerator(cpu=True)
    model = MLP(seed=0)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    loader = torch.utils.data.DataLoader(IndexedDataset(train), batch_size=16, shuffle=False,
                                         collate_fn=IndexCollator())
    recorder = LossRecorder(train, query, accelerator=accelerator, output_dir=tmp_path / name, mode=mode,
                            streaming=streaming, sweep_batch_size=16, progress=False,
                            if_exists="resume" if resume_from else "overwrite")
    model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
    recorder.checkpoint_with(accelerator)  # JSON in the checkpoint, no pickle
    start = 1
    if resume_from is not None:
        accelerator.load_state(str(resume_from))
        start = int(recorder.snapshot_info[-1]["epoch"]) + 1
    else:
        recorder.record(model, epoch=0)
    for epoch in range(start, epochs + 1):
        model.train()
        with recorder.capture(model):
            for batch in loader:
                accelerator.backward(model(**batch)["loss"])
                optimizer.step()
                optimizer.zero_grad()
        recorder.record(model, epoch=epoch)
        accelerator.save_state(str(tmp_path / f"{name}-ckpt-{epoch}"))
        if stop_after == epoch:
            break
    return recorder, model


@pytest.mark.parametrize("mode", ["sweep", "train_pass"])
def test_custom_loop_records_every_snapshot_and_scores_every_sample(tmp_path, data, mode):
    recorder, _ = run_loop(tmp_path, data, mode=mode)
    assert recorder.num_snapshots == 4
    train_losses = recorder.store.train_losses()
    assert train_losses.shape == (82, 4) and np.isfinite(train_losses).all()
    scores = recorder.scores()
    assert scores.shape == (82,) and np.isfinite(scores).all()


def test_train_pass_capture_feeds_the_losses_of_the_training_forward(tmp_path, data):
    """With the weights frozen (lr 0, no dropout), the training-pass losses equal the sweep."""
    from accelerate import Accelerator

    train, query = data
    accelerator = Accelerator(cpu=True)
    model = MLP(seed=3)
    recorder = LossRecorder(train, query, accelerator=accelerator, output_dir=tmp_path, mode="train_pass",
                            sweep_batch_size=16, progress=False)
    recorder.record(model, epoch=0)
    loader = accelerator.prepare(torch.utils.data.DataLoader(
        IndexedDataset(train), batch_size=16, shuffle=True, collate_fn=IndexCollator()))
    model.train()
    with recorder.capture(model):
        for batch in loader:
            model(**batch)["loss"].backward()  # the hook took cld_hf_index out of the call
    recorder.capturing = False
    with recorder.capture(model):
        model(**next(iter(loader)))  # not captured
    assert recorder.num_fed == 82
    recorder.record(model, epoch=1)
    np.testing.assert_allclose(recorder.store.snapshot(1)[0], recompute_losses(model, train),
                               atol=1e-6)


@pytest.mark.parametrize("streaming", [False, True], ids=["store", "streaming"])
def test_accelerate_checkpoint_resume_equals_uninterrupted_run(tmp_path, data, streaming):
    full, _ = run_loop(tmp_path, data, streaming=streaming, name="full")
    want = full.scores()
    # An interrupted run that recorded epochs 1-3, then resumes from its epoch-1 checkpoint.
    run_loop(tmp_path, data, streaming=streaming, name="cut")
    resumed, _ = run_loop(tmp_path, data, streaming=streaming, name="cut",
                          resume_from=tmp_path / "cut-ckpt-1")
    assert [s["epoch"] for s in resumed.snapshot_info] == [0.0, 1.0, 2.0, 3.0]
    np.testing.assert_allclose(resumed.scores(), want, atol=1e-6)
    if not streaming:
        np.testing.assert_array_equal(resumed.store.train_losses(), full.store.train_losses())
    checkpoint = tmp_path / "cut-ckpt-1"
    assert not list(checkpoint.glob("custom_checkpoint_*"))  # no pickle of the recorder
    assert json.loads((checkpoint / "cld_recorder.json").read_text())["num_snapshots"] == 2


# --------------------------------------------------------------------------- two processes


@pytest.mark.multiprocess
def test_two_processes_sweep_equals_one_process_and_every_index_once(data):
    """torchrun --nproc_per_node 2, 82 samples, batch 16: the uneven shards and accelerate's
    even_batches padding must not misplace a loss."""
    out = mp_results() / "loop"
    result = json.loads((out / "result.json").read_text())
    assert result["num_processes"] == 2
    train, query = data
    from safetensors.torch import load_file

    models = []
    for epoch in range(4):
        m = MLP()
        m.load_state_dict(load_file(str(out / f"weights-{epoch}.safetensors")))
        models.append(m)
    want_t = np.stack([recompute_losses(m, train) for m in models], 1)
    want_q = np.stack([recompute_losses(m, query) for m in models], 1)
    sweep = LossTrajectories(out / "sweep")
    assert sweep.num_snapshots == 4
    np.testing.assert_allclose(sweep.train_losses(), want_t, atol=1e-5)
    np.testing.assert_allclose(sweep.query_losses(), want_q, atol=1e-5)
    labels = np.asarray(train["label"][:])
    np.testing.assert_allclose(result["sweep_scores"],
                               cld_scores(want_t, labels, want_q, sweep.query_labels), atol=1e-5)
    # train_pass: every snapshot complete; snapshot 0 (a sweep) equal to the one-process one
    passes = LossTrajectories(out / "train_pass")
    assert passes.num_snapshots == 4 and np.isfinite(passes.train_losses()).all()
    np.testing.assert_allclose(passes.train_losses()[:, 0], want_t[:, 0], atol=1e-5)
    np.testing.assert_allclose(passes.query_losses(), want_q, atol=1e-5)
