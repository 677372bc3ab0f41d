"""LossRecorder: per-sample losses, gathering by sample index, train_pass feeding, persistence."""

from __future__ import annotations

import json
import math
import os
import sys

import numpy as np
import pytest
import torch


from helpers import (
    MLP,
    NoLogits,
    digits_dataset,
    mp_results,
    recompute_losses,
    recompute_signals,
    tiny_resnet,
)

from cld_hf import LossTrajectories, cld_scores
from cld_hf.scoring import class_score_summary
from cld_hf.recording import (
    FINAL_SIGNALS,
    INDEX_KEY,
    SNAPSHOT_SIGNALS,
    IncompleteSnapshotError,
    IndexCollator,
    IndexedDataset,
    LossRecorder,
    place_by_index,
    classification_signals,
    default_per_sample_loss,
    find_feature_module,
    per_sample_cross_entropy,
    per_sequence_token_loss,
)


@pytest.fixture(scope="module")
def accelerator():
    from accelerate import Accelerator

    return Accelerator(cpu=True)


@pytest.fixture(scope="module")
def data():
    return digits_dataset(n_train=82, n_query=30)


def make_recorder(accelerator, data, tmp_path, **kwargs):
    kwargs.setdefault("sweep_batch_size", 16)
    kwargs.setdefault("progress", False)
    train, query = data
    return LossRecorder(train, query, accelerator=accelerator, output_dir=tmp_path / "cld", **kwargs)


def train_epoch(model, train, *, lr=0.5, seed=0, batch_size=16):
    """One epoch of plain SGD over the rows in a shuffled order."""
    g = torch.Generator().manual_seed(seed)
    loader = torch.utils.data.DataLoader(IndexedDataset(train), batch_size=batch_size,
                                         shuffle=True, generator=g, collate_fn=IndexCollator())
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    model.train()
    for batch in loader:
        batch.pop(INDEX_KEY)
        model(**batch)["loss"].backward()
        opt.step()
        opt.zero_grad()


# ------------------------------------------------------------------------------------- losses


def test_per_sample_cross_entropy_matches_hand_computed_values():
    logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 0.0, 0.0], [1.0, 3.0, 0.0]])
    got = per_sample_cross_entropy(logits, torch.tensor([0, 2, 1])).tolist()
    # -log softmax(logits)[label]
    want = [math.log(math.exp(2) + 2) - 2, math.log(3), math.log(math.e + math.exp(3) + 1) - 3]
    assert got == pytest.approx(want, abs=1e-6)


def test_token_loss_is_mean_over_labelled_tokens_and_shifts_for_causal_lm():
    # Vocabulary of 2; position p predicts token 0 with probability sigmoid(z_p).
    z = torch.tensor([[0.0, 2.0, -1.0]])
    logits = torch.stack([z, torch.zeros_like(z)], dim=-1)  # (1, 3, 2)

    def nll(zp, token):
        p0 = 1 / (1 + math.exp(-zp))
        return -math.log(p0 if token == 0 else 1 - p0)

    masked = per_sequence_token_loss(logits, torch.tensor([[0, -100, 1]])).item()
    assert masked == pytest.approx((nll(0.0, 0) + nll(-1.0, 1)) / 2, abs=1e-6)
    # causal: logits at positions 0, 1 predict labels at positions 1, 2
    causal = per_sequence_token_loss(logits, torch.tensor([[7, 1, -100]]), shift=True).item()
    assert causal == pytest.approx(nll(0.0, 1), abs=1e-6)


def test_auto_loss_type_recognises_a_causal_lm_by_class_name():
    class TinyForCausalLM(torch.nn.Module):
        pass

    logits = torch.zeros(1, 3, 4)
    logits[0, 0, 2] = 5.0  # position 0 confidently predicts token 2
    batch = {"labels": torch.tensor([[2, 2, 3]])}
    causal = default_per_sample_loss({"logits": logits}, batch, model=TinyForCausalLM())
    token = default_per_sample_loss({"logits": logits}, batch, model=torch.nn.Linear(1, 1))
    want = (-5 + math.log(math.exp(5) + 3) + math.log(4)) / 2  # positions 0 and 1 predict
    assert causal.item() == pytest.approx(want, abs=1e-5)
    assert token.item() == pytest.approx(torch.nn.functional.cross_entropy(
        logits[0], batch["labels"][0]).item(), abs=1e-6)


def test_classification_loss_with_float_labels_names_the_fix():
    with pytest.raises(TypeError, match="per_sample_loss"):
        per_sample_cross_entropy(torch.zeros(2, 3), torch.tensor([0.5, 1.0]))


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


# ------------------------------------------------------------------------------------- sweeps


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


def test_record_restores_training_mode_and_runs_without_grad(accelerator, data, tmp_path):
    model = MLP().train()
    rec = make_recorder(accelerator, data, tmp_path)
    rec.record(model)
    assert model.training
    assert all(p.grad is None for p in model.parameters())


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


# ------------------------------------------------------------------------------------- gathering


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


# ------------------------------------------------------------------------------------- inputs


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


def test_labels_must_be_integers_and_match_the_dataset(accelerator, data, tmp_path):
    train, query = data
    with pytest.raises(TypeError, match="integer class ids"):
        LossRecorder(train, query, accelerator=accelerator, output_dir=tmp_path,
                     train_labels=np.zeros(len(train), dtype=np.float32))
    with pytest.raises(ValueError, match=r"train_labels has 3 entries but train_dataset has 82"):
        LossRecorder(train, query, accelerator=accelerator, output_dir=tmp_path, train_labels=[0, 1, 2])


@pytest.mark.parametrize("option, value, message", [
    ("mode", "sweeps", r"mode == 'sweeps', must be one of \['sweep', 'train_pass'\]"),
    ("every_n_epochs", 0, r"every_n_epochs == 0, must be >= 1"),
    ("if_exists", "keep", r"if_exists == 'keep'"),
])
def test_bad_options_name_the_argument_and_the_value(accelerator, data, tmp_path, option, value,
                                                      message):
    with pytest.raises(ValueError, match=message):
        make_recorder(accelerator, data, tmp_path, **{option: value})


def test_indexed_dataset_rows_and_mixed_batches():
    import datasets

    ds = IndexedDataset(datasets.Dataset.from_dict({"x": [1, 2, 3]}))
    assert [r[INDEX_KEY] for r in ds] == [0, 1, 2]
    with pytest.raises(ValueError, match="Some rows of the batch carry 'cld_hf_index'"):
        IndexCollator()([{"x": 1, INDEX_KEY: 0}, {"x": 2}])
    with pytest.raises(TypeError, match="not a dict"):
        IndexedDataset([(1, 2)])[0]


# ------------------------------------------------------------------------------------- persistence


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


# ------------------------------------------------------------------------------------- signals

ALL_SIGNALS = SNAPSHOT_SIGNALS + FINAL_SIGNALS


def assert_signals_match(store, want_by_snapshot, *, final=None, atol=1e-5):
    """Stored signals == the independent recomputation, snapshot by snapshot."""
    for name in SNAPSHOT_SIGNALS:
        got = store.train_signal(name)
        want = np.stack([w[name] for w in want_by_snapshot], axis=1)
        assert got.shape == want.shape
        if name == "correct":
            assert got.dtype == bool
            np.testing.assert_array_equal(got, want)
        else:
            assert got.dtype == np.float32
            np.testing.assert_allclose(got, want, atol=atol)
    if final is not None:
        for name in FINAL_SIGNALS:
            np.testing.assert_allclose(store.load_array(name), final[name], atol=atol)


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


def test_final_features_of_a_transformers_resnet_are_the_pooled_features(accelerator, tmp_path):
    """The rule picks the ResNet's classifier.1 (the last Linear with one output per class)."""
    train, query = digits_dataset(n_train=40, n_query=30, image=True)
    model = tiny_resnet()
    assert find_feature_module(model, num_classes=10)[0] == "classifier.1"
    rec = make_recorder(accelerator, (train, query), tmp_path, signals=["embeddings", "probs"])
    rec.record(model, epoch=0)
    assert not rec.final_features_recorded
    assert rec.record_final_features(model) == ["embeddings", "probs"]
    pix = torch.tensor(np.asarray(train.with_format("numpy")["pixel_values"][:]))
    model.eval()
    with torch.no_grad():
        pooled = model.resnet(pix).pooler_output.flatten(1)
        probs = torch.softmax(model(pixel_values=pix).logits, dim=1)
    np.testing.assert_allclose(rec.store.load_array("embeddings"), pooled.numpy(), atol=1e-5)
    np.testing.assert_allclose(rec.store.load_array("probs"), probs.numpy(), atol=1e-6)
    assert rec.store.signal_names == []  # no per-snapshot signal was asked for


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


def test_classification_signals_by_hand():
    logits = torch.tensor([[1.0, 3.0, 0.0], [0.0, 0.0, 0.0]])
    labels = torch.tensor([1, 2])
    out = classification_signals(logits, labels, ["correct", "true_prob", "margin", "el2n"])
    p = torch.softmax(logits, dim=1)
    assert out["correct"].tolist() == [True, False]  # a tie goes to the lower class
    assert out["margin"].tolist() == [2.0, 0.0]
    np.testing.assert_allclose(out["true_prob"], [p[0, 1], 1 / 3], atol=1e-7)
    el2n0 = math.sqrt(p[0, 0] ** 2 + (1 - p[0, 1]) ** 2 + p[0, 2] ** 2)
    np.testing.assert_allclose(out["el2n"], [el2n0, math.sqrt(2 / 9 + 4 / 9)], atol=1e-6)
    with pytest.raises(ValueError, match=r"class ids in \[0, 2\].*\[0, 5\]"):
        classification_signals(logits, torch.tensor([0, 5]), ["margin"])


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
