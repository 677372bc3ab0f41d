"""The sample index travels: IndexedDataset, IndexCollator, column rules (cld_hf.recording.indexing)."""

from __future__ import annotations


import numpy as np
import pytest


from helpers import (
    MLP,
    recompute_losses,
)

from cld_hf.recording import (
    INDEX_KEY,
    IndexCollator,
    IndexedDataset,
    LossRecorder,
)


from helpers import make_recorder


def test_indexed_dataset_rows_and_mixed_batches():
    import datasets

    ds = IndexedDataset(datasets.Dataset.from_dict({"x": [1, 2, 3]}))
    assert [r[INDEX_KEY] for r in ds] == [0, 1, 2]
    with pytest.raises(ValueError, match="Some rows of the batch carry 'cld_hf_index'"):
        IndexCollator()([{"x": 1, INDEX_KEY: 0}, {"x": 2}])
    with pytest.raises(TypeError, match="not a dict"):
        IndexedDataset([(1, 2)])[0]


def test_unused_columns_reach_the_collator_only_when_asked(accelerator, data, tmp_path):
    from transformers import default_data_collator

    train, query = data
    train = train.add_column("extra", list(range(len(train))))  # MLP.forward has no `extra`
    query = query.add_column("extra", list(range(len(query))))
    seen = set()

    def collate(rows):
        seen.update(rows[0])
        return default_data_collator(rows)

    make_recorder(accelerator, (train, query), tmp_path, collate_fn=collate).record(MLP())
    assert seen == {"pixel_values", "label"}
    seen.clear()
    make_recorder(accelerator, (train, query), tmp_path / "all", collate_fn=collate,
                  remove_unused_columns=False).record(MLP())  # the model still gets its own
    assert seen == {"pixel_values", "label", "extra"}


def test_columns_follow_the_named_forward_parameters_like_the_trainer(accelerator, data, tmp_path):
    """Hugging Face models take **kwargs; like Trainer's remove_unused_columns, the recorder keeps
    the named parameters (and the labels) and drops the rest before the collator sees them."""
    from transformers import default_data_collator

    train, query = data
    train = train.add_column("text", ["x"] * len(train))
    query = query.add_column("text", ["x"] * len(query))
    seen = set()

    def collate(rows):
        seen.update(rows[0])
        return default_data_collator(rows)

    class KwargsMLP(MLP):
        def forward(self, pixel_values, labels=None, **kwargs):
            return super().forward(pixel_values, labels)

    rec = make_recorder(accelerator, (train, query), tmp_path, collate_fn=collate)
    rec.record(KwargsMLP())
    assert seen == {"pixel_values", "label"}


def test_a_custom_label_column_feeds_the_loss_but_not_the_model(accelerator, data, tmp_path):
    train, query = data
    train, query = (d.rename_column("label", "target") for d in (train, query))

    class Bare(MLP):  # forward takes no labels at all
        def forward(self, pixel_values):
            return {"logits": self.net(pixel_values)}

    model = Bare()
    rec = make_recorder(accelerator, (train, query), tmp_path, label_column="target")
    rec.record(model)
    np.testing.assert_allclose(rec.store.snapshot(0)[0],
                               recompute_losses(model, train.rename_column("target", "label")),
                               atol=1e-6)


def test_labels_must_be_integers_and_match_the_dataset(accelerator, data, tmp_path):
    train, query = data
    with pytest.raises(TypeError, match="integer class ids"):
        LossRecorder(train, query, accelerator=accelerator, output_dir=tmp_path,
                     train_labels=np.zeros(len(train), dtype=np.float32))
    with pytest.raises(ValueError, match=r"train_labels has 3 entries but train_dataset has 82"):
        LossRecorder(train, query, accelerator=accelerator, output_dir=tmp_path, train_labels=[0, 1, 2])
