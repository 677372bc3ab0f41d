"""Eval-mode sweeps: batches, modes, transforms (cld_hf.recording.sweep)."""

from __future__ import annotations


import numpy as np
import torch


from helpers import (
    MLP,
    recompute_losses,
)

from cld_hf.recording import (
    LossRecorder,
)


from helpers import make_recorder


def test_record_restores_training_mode_and_runs_without_grad(accelerator, data, tmp_path):
    model = MLP().train()
    rec = make_recorder(accelerator, data, tmp_path)
    rec.record(model)
    assert model.training
    assert all(p.grad is None for p in model.parameters())


def test_eval_transform_replaces_the_training_transform(accelerator, data, tmp_path):
    train, query = data

    def augment(batch):  # a random "augmentation" the sweep must not see
        return {"pixel_values": [np.asarray(p) + np.random.rand(64).astype(np.float32)
                                 for p in batch["pixel_values"]], "label": batch["label"]}

    def identity(batch):
        return {"pixel_values": [np.asarray(p, dtype=np.float32) for p in batch["pixel_values"]],
                "label": batch["label"]}

    model = MLP()
    rec = make_recorder(accelerator, (train.with_transform(augment), query),
                        tmp_path, eval_transform=identity)
    rec.record(model)
    np.testing.assert_allclose(rec.store.snapshot(0)[0], recompute_losses(model, train), atol=1e-6)


def test_sweep_reads_batches_and_never_the_whole_dataset(accelerator, data, tmp_path):
    train, query = data
    path = tmp_path / "mmap"
    train.save_to_disk(str(path))
    import datasets

    mapped = datasets.load_from_disk(str(path))  # memory-mapped Arrow
    reads = []

    class Spy(torch.utils.data.Dataset):
        def __len__(self):
            return len(mapped)

        def __getitems__(self, keys):
            reads.append(len(keys))
            return mapped.__getitems__(keys)

        def __getitem__(self, i):
            reads.append(1)
            return mapped[i]

    model = MLP()
    rec = LossRecorder(Spy(), query, accelerator=accelerator, output_dir=tmp_path / "cld", sweep_batch_size=16,
                       train_labels=np.asarray(mapped["label"][:]), progress=False)
    rec.record(model)
    assert max(reads) <= 16 and sum(reads) == len(mapped)
    np.testing.assert_allclose(rec.store.snapshot(0)[0], recompute_losses(model, mapped), atol=1e-6)
    assert mapped.cache_files  # still backed by the file
