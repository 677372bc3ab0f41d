"""CLDCallback with a real transformers.Trainer: image, text and plain torch models, exactness
against checkpoints, train_pass, resume, errors, and a two-process run."""

from __future__ import annotations

import json
import os
import shutil


import numpy as np
import pytest
import torch


from helpers import (
    MLP,
    NoLogits,
    digits_dataset,
    load_mlp_checkpoint,
    mp_results,
    recompute_losses,
    recompute_signals,
    text_datasets,
    tiny_bert,
    tiny_resnet,
    tiny_tokenizer,
)

from cld_hf import CLDCallback, LossTrajectories, cld_scores, select_coreset
from cld_hf.recording import IncompleteSnapshotError


def trainer_args(out, **kwargs):
    from transformers import TrainingArguments

    options = dict(num_train_epochs=3, per_device_train_batch_size=16, learning_rate=0.5,
                   optim="sgd", lr_scheduler_type="constant", save_strategy="no",
                   logging_strategy="no", report_to=[], disable_tqdm=True, use_cpu=True, seed=0)
    options.update(kwargs)
    return TrainingArguments(str(out), **options)


def make_trainer(model, args, train, callbacks, **kwargs):
    from transformers import Trainer

    return Trainer(model=model, args=args, train_dataset=train, callbacks=callbacks, **kwargs)


def attach(trainer, query, mode="sweep", **options):
    """A CLDCallback added to ``trainer``; train_pass gets the Trainer, as it needs it."""
    options.setdefault("progress", False)
    cld = CLDCallback(query, mode=mode, trainer=trainer if mode == "train_pass" else None,
                      **options)
    trainer.add_callback(cld)
    return cld


@pytest.fixture(scope="module")
def digits():
    return digits_dataset(n_train=82, n_query=30)


# --------------------------------------------------------------------------- models


def test_image_model_from_config_scores_every_row(tmp_path):
    import datasets

    train, query = digits_dataset(n_train=120, n_query=30, image=True)
    cld = CLDCallback(query, sweep_batch_size=64, progress=False)
    trainer = make_trainer(tiny_resnet(), trainer_args(tmp_path, learning_rate=0.1), train, [cld])
    trainer.train()

    scores = cld.scores()
    assert scores.shape == (120,) and scores.dtype == np.float32 and np.isfinite(scores).all()
    assert [s["epoch"] for s in cld.recorder.snapshot_info] == [0.0, 1.0, 2.0, 3.0]
    assert [s["step"] for s in cld.recorder.snapshot_info] == [0, 8, 16, 24]
    scored = cld.scored_dataset()
    assert scored.column_names == ["pixel_values", "label", "cld_score", "loss_trajectory"]
    assert scored.features["loss_trajectory"] == datasets.List(datasets.Value("float32"), length=4)
    assert len(select_coreset(scored, fraction=0.25)) == 30
    # written to output_dir as Arrow, summarised per class (Python log, not the Trainer's log,
    # which every reporting integration receives)
    names = sorted(os.listdir(tmp_path / "cld"))
    assert "scores.arrow" in names and sum(n.startswith("snapshot-") for n in names) == 4
    assert not any(k.startswith("cld/") for entry in trainer.state.log_history for k in entry)
    for c in range(10):
        cls = scores[np.asarray(train["label"][:]) == c]
        assert cld.summary[c]["mean"] == pytest.approx(float(cls.mean()), abs=1e-6)
        assert cld.summary[c]["count"] == len(cls)


@pytest.mark.parametrize("mode", ["sweep", "train_pass"])
def test_text_model_with_local_tokenizer_and_remove_unused_columns(tmp_path, mode):
    from transformers import DataCollatorWithPadding

    tok = tiny_tokenizer()
    train, query = text_datasets(n_train=60, n_query=12)
    train = train.map(lambda b: tok(b["text"]), batched=True)  # keeps the unused "text" column
    query = query.map(lambda b: tok(b["text"]), batched=True)
    args = trainer_args(tmp_path, learning_rate=0.05, optim="adamw_torch",
                        per_device_train_batch_size=8)
    assert args.remove_unused_columns
    trainer = make_trainer(tiny_bert(len(tok)), args, train, [],
                           data_collator=DataCollatorWithPadding(tok))
    cld = attach(trainer, query, mode)
    trainer.train()
    scores = cld.scores()
    assert scores.shape == (60,) and np.isfinite(scores).all()
    assert np.isfinite(cld.store.train_losses()).all() and cld.store.num_snapshots == 4
    assert "text" in cld.scored_dataset(train).column_names  # the user's dataset, all columns


def test_plain_module_scores_equal_cld_scores_of_losses_recomputed_from_checkpoints(
    tmp_path, digits
):
    train, query = digits
    cld = CLDCallback(query, sweep_batch_size=16, progress=False)
    initial = MLP(seed=0)
    trainer = make_trainer(MLP(seed=0), trainer_args(tmp_path, save_strategy="epoch"), train, [cld])
    trainer.train()

    models = [initial] + [load_mlp_checkpoint(tmp_path / f"checkpoint-{s}") for s in (6, 12, 18)]
    want_t = np.stack([recompute_losses(m, train) for m in models], 1)
    want_q = np.stack([recompute_losses(m, query) for m in models], 1)
    np.testing.assert_allclose(cld.store.train_losses(), want_t, atol=1e-5)
    np.testing.assert_allclose(cld.store.query_losses(), want_q, atol=1e-5)
    labels = np.asarray(train["label"][:])
    want = cld_scores(want_t, labels, want_q, np.asarray(query["label"][:]))
    np.testing.assert_allclose(cld.scores(), want, atol=1e-5)


def test_signals_from_the_same_sweeps_equal_a_recomputation_from_the_checkpoints(
    tmp_path, digits
):
    """Issue 7: the baselines' signals come from the logits of the loss sweeps (no extra forward:
    4 sweeps of train + query), the final features from the last epoch's sweep."""
    train, query = digits
    signals = ["correct", "true_prob", "margin", "el2n", "grad_projection", "embeddings", "probs"]
    cld = CLDCallback(query, sweep_batch_size=16, progress=False, signals=signals)
    model = MLP(seed=0)
    eval_forwards = []
    model.register_forward_hook(lambda m, args, out: eval_forwards.append(1) if not m.training
                                else None)
    trainer = make_trainer(model, trainer_args(tmp_path, save_strategy="epoch"), train, [cld])
    trainer.train()
    assert len(eval_forwards) == 4 * (-(-82 // 16) + -(-30 // 16))  # snapshots x batches

    models = [MLP(seed=0)] + [load_mlp_checkpoint(tmp_path / f"checkpoint-{s}") for s in (6, 12, 18)]
    want = [recompute_signals(m, train) for m in models]
    store = cld.store
    for name in signals[:5]:
        got, expected = store.train_signal(name), np.stack([w[name] for w in want], axis=1)
        if name == "correct":
            np.testing.assert_array_equal(got, expected)
        else:
            np.testing.assert_allclose(got, expected, atol=1e-5)
    for name in signals[5:]:
        np.testing.assert_allclose(store.load_array(name), want[-1][name], atol=1e-5)
        assert store.array_snapshot(name) == 4  # taken with the last snapshot
    assert "signals=['correct'" in repr(cld)

    # the last epoch not recorded (every_n_epochs=2, 3 epochs): a final sweep at on_train_end
    every2 = CLDCallback(query, every_n_epochs=2, progress=False, signals=["probs"])
    make_trainer(MLP(), trainer_args(tmp_path / "b"), train, [every2]).train()
    assert every2.recorder.num_snapshots == 2 and every2.recorder.final_features_recorded
    assert every2.store.load_array("probs").shape == (82, 10)


# --------------------------------------------------------------------------- train_pass


def test_train_pass_with_frozen_weights_equals_the_sweep_under_accumulation_and_smoothing(
    tmp_path, digits
):
    """lr 0 and a model without dropout: every training-pass loss must equal the eval loss of
    the same sample, whatever the shuffling; gradient accumulation and a label-smoothed
    compute_loss_func (the Trainer pops the labels before the forward) must not lose or
    misplace a sample, and the recorded loss is the plain one."""
    train, query = digits
    model = MLP(seed=2)
    args = trainer_args(tmp_path, learning_rate=0.0, gradient_accumulation_steps=2)

    def smoothed(outputs, labels, num_items_in_batch=None):
        return torch.nn.functional.cross_entropy(outputs["logits"], labels, label_smoothing=0.1)

    trainer = make_trainer(model, args, train, [], compute_loss_func=smoothed)
    cld = attach(trainer, query, "train_pass")
    trainer.train()
    assert trainer.evaluate(trainer.train_dataset)["eval_loss"] > 0  # wrapped set still usable
    losses = cld.store.train_losses()
    assert losses.shape == (82, 4)
    want = recompute_losses(MLP(seed=2), train)
    for s in range(4):
        np.testing.assert_allclose(losses[:, s], want, atol=1e-6)


def test_drop_last_train_pass_names_the_samples_never_seen(tmp_path, digits):
    train, query = digits
    args = trainer_args(tmp_path, num_train_epochs=1, dataloader_drop_last=True)
    trainer = make_trainer(MLP(), args, train, [])
    attach(trainer, query, "train_pass")
    match = r"2 of 82 samples.*dataloader_drop_last"
    with pytest.raises(IncompleteSnapshotError, match=match) as err:
        trainer.train()
    assert len(err.value.missing) == 2  # 82 = 5 x 16 + 2 dropped

    trainer = make_trainer(MLP(), trainer_args(tmp_path / "b", num_train_epochs=1,
                                               dataloader_drop_last=True), train, [])
    filled = attach(trainer, query, "train_pass", unseen="sweep")
    trainer.train()
    assert filled.store.num_snapshots == 2 and np.isfinite(filled.store.train_losses()).all()

    swept = CLDCallback(query, progress=False)  # the sweep does not depend on the train loader
    make_trainer(MLP(), trainer_args(tmp_path / "c", num_train_epochs=1, dataloader_drop_last=True),
                 train, [swept]).train()
    assert swept.store.num_snapshots == 2


@pytest.mark.parametrize("mode", ["sweep", "train_pass"])
def test_a_sample_index_column_from_before_the_split_stays_data(tmp_path, mode):
    """The recorder's row index has its own batch key: a ``sample_index`` column added before
    a query split (indices into the source dataset, not rows of the training set) is neither
    mistaken for it nor lost."""
    from cld_hf import add_index_column, stratified_query_split

    full_train, full_query = digits_dataset(n_train=90, n_query=20)
    source = add_index_column(full_train)
    train, query = stratified_query_split(source, fraction=0.2, seed=0)
    source_index = np.asarray(train["sample_index"][:])
    assert not np.array_equal(source_index, np.arange(len(train)))
    trainer = make_trainer(MLP(), trainer_args(tmp_path, num_train_epochs=2), train, [])
    cld = attach(trainer, query, mode)
    trainer.train()
    assert cld.store.num_snapshots == 3
    scored = cld.scored_dataset(train)
    np.testing.assert_array_equal(np.asarray(scored["sample_index"][:]), source_index)
    if mode == "sweep":  # the Trainer dropped sample_index from what it fed the model: say so
        with pytest.raises(ValueError, match=r"removed the column 'sample_index'.*scored_dataset"):
            cld.scored_dataset()
    # row i of the store is row i of the training set
    assert cld.store.train_losses()[:, 0] == pytest.approx(recompute_losses(MLP(), train), abs=1e-6)


def test_sweep_needs_no_trainer_and_train_pass_asks_for_it(tmp_path, digits):
    train, query = digits
    trainer = make_trainer(MLP(), trainer_args(tmp_path / "a", num_train_epochs=2), train, [])
    sweep = CLDCallback(query, progress=False)
    trainer.add_callback(sweep)  # built from the events' train_dataloader in on_train_begin
    trainer.train()
    assert sweep.store.num_snapshots == 3

    match = r"trainer\.add_callback\(CLDCallback\(query_ds, trainer=trainer"
    with pytest.raises(ValueError, match=match):
        CLDCallback(query, mode="train_pass")

    trainer = make_trainer(MLP(), trainer_args(tmp_path / "c", num_train_epochs=2), train, [])
    passes = CLDCallback(query, trainer=trainer, mode="train_pass", progress=False)
    trainer.add_callback(passes)
    trainer.train()
    assert passes.store.num_snapshots == 3


def test_train_pass_reads_the_table_a_plain_trainer_reads(tmp_path, digits):
    """train_pass wraps what the Trainer's own remove_unused_columns gives, even when no column
    is unused (remove_columns rebuilds the table with its metadata, read faster batch by batch),
    and leaves the user's dataset alone."""
    train, query = digits
    plain = make_trainer(MLP(), trainer_args(tmp_path / "p"), train, [])
    expected = plain.get_train_dataloader().dataset
    assert expected.column_names == train.column_names  # the model takes every column
    trainer = make_trainer(MLP(), trainer_args(tmp_path / "t"), train, [])
    attach(trainer, query, mode="train_pass")
    wrapped = trainer.train_dataset.dataset
    assert wrapped is not train
    assert wrapped.column_names == expected.column_names
    assert wrapped._fingerprint == expected._fingerprint  # the same transformation of train
    assert trainer.args.remove_unused_columns is False


def test_callback_events_without_a_training_loader_say_what_is_missing(tmp_path, digits):
    from transformers import TrainerControl, TrainerState

    _, query = digits
    cld = CLDCallback(query)
    with pytest.raises(ValueError, match="needs the Trainer's training data loader"):
        cld.on_train_begin(trainer_args(tmp_path), TrainerState(), TrainerControl(), model=MLP())


# --------------------------------------------------------------------------- errors


def test_query_class_missing_fails_when_the_trainer_is_built(tmp_path, digits):
    train, query = digits
    no_three = query.filter(lambda row: row["label"] != 3)
    trainer = make_trainer(MLP(), trainer_args(tmp_path), train, [CLDCallback(no_three)])
    with pytest.raises(ValueError, match=r"no query sample: \[3\]"):
        trainer.train()  # in on_train_begin, before any step
    assert trainer.state.global_step == 0
    with pytest.raises(ValueError, match=r"no query sample: \[3\]"):  # given the Trainer: now
        CLDCallback(no_three, trainer=trainer)


def test_signals_that_need_a_sweep_or_a_store_fail_at_construction(digits):
    _, query = digits
    with pytest.raises(ValueError, match="mode='sweep'"):
        CLDCallback(query, mode="train_pass", signals=["correct"])
    with pytest.raises(ValueError, match="streaming=True keeps none"):
        CLDCallback(query, streaming=True, signals=["probs"])


def test_empty_query_set_is_an_error(digits):
    _, query = digits
    with pytest.raises(ValueError, match="query_dataset is empty.*stratified_query_split"):
        CLDCallback(query.select([]))


def test_model_without_logits_fails_before_training_with_the_fix(tmp_path, digits):
    train, query = digits
    trainer = make_trainer(NoLogits(), trainer_args(tmp_path), train,
                           [CLDCallback(query, progress=False)])
    with pytest.raises(ValueError, match=r"no 'logits'.*per_sample_loss"):
        trainer.train()
    assert trainer.state.global_step == 0


# --------------------------------------------------------------------------- epochs, resume


def test_every_n_epochs_and_record_initial(tmp_path, digits):
    train, query = digits
    every2 = CLDCallback(query, every_n_epochs=2, progress=False)
    make_trainer(MLP(), trainer_args(tmp_path / "a", num_train_epochs=4), train, [every2]).train()
    assert [s["epoch"] for s in every2.recorder.snapshot_info] == [0.0, 2.0, 4.0]

    authors = CLDCallback(query, record_initial=False, progress=False)
    make_trainer(MLP(), trainer_args(tmp_path / "b", num_train_epochs=3), train, [authors]).train()
    assert [s["epoch"] for s in authors.recorder.snapshot_info] == [1.0, 2.0, 3.0]
    assert np.isfinite(authors.scores()).all()


@pytest.mark.parametrize("mode, streaming, checkpoint", [
    ("sweep", False, 6),         # end of epoch 1
    ("sweep", False, 9),         # mid-epoch 2 (save_steps)
    ("train_pass", False, 6),
    ("sweep", True, 12),         # streaming: the scorer state saved with the checkpoint
], ids=["sweep-epoch", "sweep-mid-epoch", "train_pass-epoch", "streaming-epoch"])
def test_resume_from_checkpoint_equals_uninterrupted_run(tmp_path, digits, mode, streaming,
                                                         checkpoint):
    train, query = digits
    save = dict(save_strategy="steps", save_steps=3)  # 6 steps per epoch

    def run(resume=None, **options):
        trainer = make_trainer(MLP(seed=0), trainer_args(tmp_path, **save), train, [])
        cld = attach(trainer, query, mode, streaming=streaming, **options)
        trainer.train(resume_from_checkpoint=resume)
        return cld

    first = run()  # a run that got to the end: 4 snapshots (steps 0, 6, 12, 18) on disk
    want = first.scores().copy()
    want_losses = None if streaming else first.store.train_losses().copy()
    resumed = run(resume=str(tmp_path / f"checkpoint-{checkpoint}"))
    assert [s["step"] for s in resumed.recorder.snapshot_info] == [0, 6, 12, 18]
    np.testing.assert_allclose(resumed.scores(), want, atol=1e-6)
    if not streaming:
        np.testing.assert_allclose(resumed.store.train_losses(), want_losses, atol=1e-6)


def test_resume_without_the_recording_is_an_error(tmp_path, digits):
    train, query = digits
    args = trainer_args(tmp_path, num_train_epochs=2, save_strategy="epoch")
    make_trainer(MLP(), args, train, [CLDCallback(query, progress=False)]).train()
    shutil.rmtree(tmp_path / "cld")
    trainer = make_trainer(MLP(), args, train, [CLDCallback(query, progress=False)])
    with pytest.raises(FileNotFoundError, match="holds no CLD recording"):
        trainer.train(resume_from_checkpoint=str(tmp_path / "checkpoint-6"))


# --------------------------------------------------------------------------- two processes


@pytest.mark.multiprocess
def test_two_process_trainer_snapshots_equal_one_process_losses_from_its_checkpoints(digits):
    """torchrun --nproc_per_node 2 (gloo): 82 samples, batch 16 per process."""
    out = mp_results()
    train, query = digits
    sweep_dir = out / "trainer_sweep"
    result = json.loads((sweep_dir / "result.json").read_text())
    assert result["num_processes"] == 2
    store = LossTrajectories(sweep_dir / "cld")
    assert [s["step"] for s in store.snapshot_info] == [0, 3, 6, 9]  # 3 steps/epoch: 2 processes
    models = [MLP(seed=0)] + [load_mlp_checkpoint(sweep_dir / f"checkpoint-{s}") for s in (3, 6, 9)]
    want_t = np.stack([recompute_losses(m, train) for m in models], 1)
    want_q = np.stack([recompute_losses(m, query) for m in models], 1)
    np.testing.assert_allclose(store.train_losses(), want_t, atol=1e-5)
    np.testing.assert_allclose(store.query_losses(), want_q, atol=1e-5)
    want = cld_scores(want_t, store.train_labels, want_q, store.query_labels)
    np.testing.assert_allclose(result["scores"], want, atol=1e-5)

    # train_pass, lr 0, gradient accumulation 2, padded last batches: each snapshot complete and
    # equal to the one-process losses of the (unchanged) initial weights
    passes = LossTrajectories(out / "trainer_train_pass" / "cld")
    assert passes.num_snapshots == 4
    initial = recompute_losses(MLP(seed=0), train)
    for s in range(4):
        np.testing.assert_allclose(passes.train_losses()[:, s], initial, atol=1e-5)
