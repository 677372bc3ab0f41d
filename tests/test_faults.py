"""Faults injected for real: killed writers, damaged files, racing readers, read-only stores,
recordings that do not match, and the promise that recording never changes training.

Each test does the damage (SIGKILL, a flipped byte, a deleted or copied file, a concurrent
process) and checks that cld-hf either recovers exactly what it promises (a crash loses at most
the snapshot being written) or stops with an error naming the file and the fix.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from helpers import MLP, digits_dataset

from cld_hf import CLDCallback, LossRecorder, LossTrajectories
from cld_hf.manifest import StoreIntegrityError


def make_store(path, n=40, q=10, s=6, seed=0):
    rng = np.random.default_rng(seed)
    train, query = rng.random((n, s), dtype=np.float32), rng.random((q, s), dtype=np.float32)
    store = LossTrajectories.create(path, np.arange(n) % 3, np.arange(q) % 3)
    for t in range(s):
        store.append(train[:, t], query[:, t], epoch=t, step=10 * t)
    return store, train, query


# ------------------------------------------------------------------------------ killed writers


WRITER = """
import sys, numpy as np
from cld_hf import LossTrajectories
path, n = sys.argv[1], int(sys.argv[2])
store = LossTrajectories(path, writable=True)
for t in range(store.num_snapshots, 1000):
    rng = np.random.default_rng(t)   # snapshot t's content is a function of t alone
    store.append(rng.random(n, dtype=np.float32), rng.random(8, dtype=np.float32), epoch=t)
    print(t, flush=True)
"""


def expected_snapshot(t, n):
    rng = np.random.default_rng(t)
    return rng.random(n, dtype=np.float32), rng.random(8, dtype=np.float32)


def test_sigkill_during_appends_loses_at_most_the_snapshot_being_written(tmp_path):
    """A writer appending 2 MB snapshots is killed (SIGKILL) at 6 random moments; after each
    kill the store holds exactly the snapshots whose append returned, and recording resumes."""
    n = 500_000
    path = tmp_path / "store"
    LossTrajectories.create(path, np.zeros(n, np.int64), np.zeros(8, np.int64))
    rng = np.random.default_rng(0)
    for attempt in range(6):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(n)],
                                stdout=subprocess.PIPE, text=True)
        done = [int(proc.stdout.readline())]  # it has written at least one snapshot
        time.sleep(float(rng.uniform(0.0, 0.3)))
        proc.send_signal(signal.SIGKILL)
        out, _ = proc.communicate()
        done += [int(x) for x in out.split()]
        reader = LossTrajectories(path)
        # every append that returned is kept; the one interrupted, if any, is lost or complete
        assert reader.num_snapshots in (done[-1] + 1, done[-1] + 2)
        for t in (0, reader.num_snapshots - 1):
            train, query = reader.snapshot(t)
            want_train, want_query = expected_snapshot(t, n)
            np.testing.assert_array_equal(train, want_train)
            np.testing.assert_array_equal(query, want_query)
        assert reader.verify()["snapshots"] == reader.num_snapshots
    writer = LossTrajectories(path, writable=True)  # removes the dead writers' temp files
    assert not [p.name for p in path.iterdir() if p.name.endswith(".tmp")]
    assert writer.num_snapshots == reader.num_snapshots


KILLED_TRAINER = """
import sys
sys.path.insert(0, sys.argv[2])
from helpers import MLP, digits_dataset
from transformers import Trainer, TrainerCallback, TrainingArguments
from cld_hf import CLDCallback

class Report(TrainerCallback):
    def on_step_end(self, args, state, control, **kwargs):
        print(state.global_step, flush=True)

train, query = digits_dataset(n_train=82, n_query=30)
args = TrainingArguments(sys.argv[1], num_train_epochs=3, per_device_train_batch_size=16,
                         learning_rate=0.5, optim="sgd", lr_scheduler_type="constant",
                         save_strategy="steps", save_steps=4, logging_strategy="no",
                         report_to=[], disable_tqdm=True, use_cpu=True, seed=0)
trainer = Trainer(model=MLP(seed=0), args=args, train_dataset=train,
                  callbacks=[CLDCallback(query, progress=False), Report()])
trainer.train()
"""


def test_sigkill_mid_epoch_then_resume_equals_the_uninterrupted_run(tmp_path):
    """A Trainer run is killed (SIGKILL) in the middle of epoch 2; resuming from its last
    checkpoint gives the scores and trajectories of a run that was never interrupted."""
    from helpers import TESTS_DIR
    from transformers import Trainer, TrainingArguments

    train, query = digits_dataset(n_train=82, n_query=30)

    def args(out):
        return TrainingArguments(str(out), num_train_epochs=3, per_device_train_batch_size=16,
                                 learning_rate=0.5, optim="sgd", lr_scheduler_type="constant",
                                 save_strategy="steps", save_steps=4, logging_strategy="no",
                                 report_to=[], disable_tqdm=True, use_cpu=True, seed=0)

    whole = CLDCallback(query, progress=False)
    Trainer(model=MLP(seed=0), args=args(tmp_path / "whole"), train_dataset=train,
            callbacks=[whole]).train()

    out = tmp_path / "killed"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-c", KILLED_TRAINER, str(out), str(TESTS_DIR)],
                            stdout=subprocess.PIPE, text=True, env=env)
    for line in proc.stdout:  # 6 steps per epoch: step 9 is in the middle of epoch 2
        if int(line) >= 9:
            proc.send_signal(signal.SIGKILL)
            break
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    last = max(int(p.name.split("-")[1]) for p in out.glob("checkpoint-*"))
    assert last == 8  # saved mid-epoch 2, after the epoch-1 snapshot
    resumed = CLDCallback(query, progress=False)
    Trainer(model=MLP(seed=0), args=args(out), train_dataset=train,
            callbacks=[resumed]).train(resume_from_checkpoint=str(out / f"checkpoint-{last}"))
    assert [s["step"] for s in resumed.recorder.snapshot_info] == [0, 6, 12, 18]
    np.testing.assert_array_equal(resumed.store.train_losses(), whole.store.train_losses())
    np.testing.assert_array_equal(resumed.scores(), whole.scores())


# ------------------------------------------------------------------------------ damaged files


def test_every_flipped_byte_of_a_snapshot_is_an_error_naming_the_file(tmp_path):
    """One flipped byte anywhere in a snapshot file is detected when it is read (cld-hf 0.1
    changed the scores silently at 208 of 842 byte positions)."""
    store, _, _ = make_store(tmp_path / "store", n=20, q=5, s=4)
    path = tmp_path / "store" / "snapshot-00002.arrow"
    original = path.read_bytes()
    missed = []
    for position in range(len(original)):
        damaged = bytearray(original)
        damaged[position] ^= 0x5A
        path.write_bytes(bytes(damaged))
        try:
            LossTrajectories(tmp_path / "store").scores()
        except StoreIntegrityError as err:
            assert "snapshot-00002.arrow" in str(err) and "checksum" in str(err)
        else:
            missed.append(position)
    path.write_bytes(original)
    assert missed == [] and len(original) > 500
    LossTrajectories(tmp_path / "store").verify()


@pytest.mark.parametrize("damage, match, when", [
    ("delete_last", r"snapshot-00005.arrow \(snapshot 5\) is missing", "open"),
    ("truncate", r"snapshot-00003.arrow \(snapshot 3\) has \d+ bytes; the manifest recorded", "open"),
    ("duplicate", r"snapshot-00003.arrow \(snapshot 3\) does not match its checksum", "read"),
    ("foreign", r"snapshot-00004.arrow \(snapshot 4\) does not match its checksum", "read"),
    ("extra", r"snapshot-00006.arrow is not listed in the store's manifest", "open"),
    ("unreadable", r"snapshot-00001.arrow \(snapshot 1\) has 7 bytes", "open"),
])
def test_missing_extra_duplicated_foreign_or_truncated_files_are_named(tmp_path, damage, match,
                                                                       when):
    root = tmp_path / "store"
    make_store(root)
    other, _, _ = make_store(tmp_path / "other", seed=1)  # same N + Q, other losses
    if damage == "delete_last":
        (root / "snapshot-00005.arrow").unlink()
    elif damage == "truncate":
        data = (root / "snapshot-00003.arrow").read_bytes()
        (root / "snapshot-00003.arrow").write_bytes(data[: len(data) // 2])
    elif damage == "duplicate":
        shutil.copy(root / "snapshot-00002.arrow", root / "snapshot-00003.arrow")
    elif damage == "foreign":
        shutil.copy(tmp_path / "other" / "snapshot-00004.arrow", root / "snapshot-00004.arrow")
    elif damage == "extra":
        shutil.copy(tmp_path / "other" / "snapshot-00005.arrow", root / "snapshot-00006.arrow")
    elif damage == "unreadable":
        (root / "snapshot-00001.arrow").write_bytes(b"garbage")
    if when == "open":
        with pytest.raises(StoreIntegrityError, match=match):
            LossTrajectories(root)
    else:
        store = LossTrajectories(root)  # the cheap check on open sees the right sizes
        with pytest.raises(StoreIntegrityError, match=match):
            store.train_losses()
        with pytest.raises(StoreIntegrityError, match=match):
            store.verify()


def test_cld_hf_inspect_verify_reports_damage_with_exit_code_1(tmp_path, capsys):
    from cld_hf.cli import main

    make_store(tmp_path / "store")
    assert main(["inspect", str(tmp_path / "store"), "--verify"]) == 0
    assert "every checksum matches" in capsys.readouterr().out
    data = bytearray((tmp_path / "store" / "snapshot-00001.arrow").read_bytes())
    data[-40] ^= 1
    (tmp_path / "store" / "snapshot-00001.arrow").write_bytes(bytes(data))
    assert main(["inspect", str(tmp_path / "store"), "--verify"]) == 1
    err = capsys.readouterr().err
    assert "snapshot-00001.arrow (snapshot 1) does not match its checksum" in err
    assert err.count("\n") == 1  # one line


# ------------------------------------------------------------------------------ readers


READER_RACE_WRITER = """
import sys, numpy as np
from cld_hf import LossTrajectories
store = LossTrajectories(sys.argv[1], writable=True)
for t in range(40):
    store.append(np.full(20000, t, np.float32), np.full(10, t, np.float32), epoch=t)
"""


def test_a_reader_racing_a_writer_never_sees_a_partial_snapshot_nor_disturbs_it(tmp_path):
    path = tmp_path / "store"
    LossTrajectories.create(path, np.zeros(20000, np.int64), np.zeros(10, np.int64))
    writer = subprocess.Popen([sys.executable, "-c", READER_RACE_WRITER, str(path)],
                              stderr=subprocess.PIPE, text=True)
    seen = 0
    while writer.poll() is None or seen < 40:
        reader = LossTrajectories(path)  # every open checks the manifest against the files
        if reader.num_snapshots:
            losses = reader.train_losses()
            assert (losses == np.arange(reader.num_snapshots, dtype=np.float32)).all()
        seen = reader.num_snapshots
        if writer.poll() is not None and seen == 40:
            break
    assert writer.wait() == 0, writer.stderr.read()
    assert LossTrajectories(path).verify()["snapshots"] == 40


def test_a_reader_changes_nothing_even_with_temp_files_and_read_only_media(tmp_path):
    path = tmp_path / "store"
    make_store(path)
    from cld_hf.fileio import temp_name

    (path / temp_name("snapshot-00006.arrow")).write_bytes(b"a writer's file in progress")
    (path / "notes.tmp").write_text("the user's own notes")
    before = {p.name: p.read_bytes() for p in path.iterdir()}
    os.chmod(path, 0o555)
    try:
        store = LossTrajectories(path)
        store.scores()
        store.verify()
        from cld_hf.cli import main

        assert main(["inspect", str(path)]) == 0
    finally:
        os.chmod(path, 0o755)
    assert {p.name: p.read_bytes() for p in path.iterdir()} == before


# ------------------------------------------------------------------------------ recordings kept


def test_an_existing_recording_is_never_deleted_without_overwrite(tmp_path):
    train, query = digits_dataset(n_train=40, n_query=30)
    first = LossRecorder(train, query, output_dir=tmp_path, progress=False)
    first.record(MLP())
    first.save_scores(np.zeros(40))  # scores.arrow is the store's own
    (tmp_path / "my-notes.txt").write_text("keep me")
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    with pytest.raises(FileExistsError, match="Nothing was changed"):
        LossRecorder(train, query, output_dir=tmp_path, progress=False)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    LossRecorder(train, query, output_dir=tmp_path, progress=False, if_exists="overwrite")
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "labels.arrow", "manifest.json", "my-notes.txt", "store.json"]


def test_training_again_without_resume_refuses_to_wipe_the_recording(tmp_path):
    from transformers import Trainer, TrainingArguments

    train, query = digits_dataset(n_train=40, n_query=30)
    args = TrainingArguments(str(tmp_path), num_train_epochs=2, per_device_train_batch_size=16,
                             save_strategy="no", report_to=[], disable_tqdm=True, use_cpu=True)
    cld = CLDCallback(query, progress=False)
    trainer = Trainer(model=MLP(), args=args, train_dataset=train, callbacks=[cld])
    trainer.train()
    before = cld.store.train_losses().copy()
    with pytest.raises(FileExistsError, match="if_exists='overwrite'"):
        trainer.train()  # a second run from scratch into the same output_dir
    np.testing.assert_array_equal(LossTrajectories(tmp_path / "cld").train_losses(), before)


def test_resuming_onto_a_recording_of_another_run_is_an_error(tmp_path):
    """cld-hf 0.1 'resumed' a restarted run onto the recording of an earlier one and gave
    snapshots [(0, 0), (5, 35), (6, 42)]."""
    from transformers import Trainer, TrainingArguments

    train, query = digits_dataset(n_train=82, n_query=30)

    def args(epochs, save):
        return TrainingArguments(str(tmp_path), num_train_epochs=epochs,
                                 per_device_train_batch_size=16, save_strategy=save,
                                 report_to=[], disable_tqdm=True, use_cpu=True, seed=0)

    Trainer(model=MLP(), args=args(3, "epoch"), train_dataset=train,
            callbacks=[CLDCallback(query, progress=False)]).train()  # checkpoints 6, 12, 18
    # a second run from scratch overwrites the recording (2 snapshots), without checkpoints
    Trainer(model=MLP(), args=args(1, "no"), train_dataset=train,
            callbacks=[CLDCallback(query, progress=False, if_exists="overwrite")]).train()
    resumed = Trainer(model=MLP(), args=args(3, "epoch"), train_dataset=train,
                      callbacks=[CLDCallback(query, progress=False)])
    with pytest.raises(ValueError, match=r"does not match the checkpoint at step 12.*epochs "
                                         r"\[0.0, 1.0\].*needs \[0, 1, 2\]"):
        resumed.train(resume_from_checkpoint=str(tmp_path / "checkpoint-12"))


# ------------------------------------------------------------------------------ training unchanged


class DropoutMLP(torch.nn.Module):
    def __init__(self, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.net = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(),
                                       torch.nn.Dropout(0.3), torch.nn.Linear(32, 10))

    def forward(self, pixel_values, labels=None):
        logits = self.net(pixel_values)
        out = {"logits": logits}
        if labels is not None:
            out["loss"] = torch.nn.functional.cross_entropy(logits, labels)
        return out


def _train(out, train, callbacks, *, epochs=3, resume=None, save="no", trainer_hook=None):
    from transformers import Trainer, TrainingArguments

    args = TrainingArguments(str(out), num_train_epochs=epochs, per_device_train_batch_size=16,
                             learning_rate=0.3, optim="sgd", lr_scheduler_type="constant",
                             save_strategy=save, save_steps=2, logging_strategy="no",
                             report_to=[], disable_tqdm=True, use_cpu=True, seed=0)
    model = DropoutMLP()
    trainer = Trainer(model=model, args=args, train_dataset=train, callbacks=callbacks)
    if trainer_hook is not None:
        trainer_hook(trainer)
    with contextlib.redirect_stdout(io.StringIO()):
        trainer.train(resume_from_checkpoint=resume)
    return model


@pytest.mark.parametrize("mode", ["sweep", "train_pass"])
def test_training_with_the_callback_is_bit_identical_to_training_without_it(tmp_path, mode):
    """A dropout model: every sweep draws from its own forked RNG, so the dropout masks and the
    shuffles of training are the ones a run without the callback uses (0.1 differed by 0.02)."""
    train, query = digits_dataset(n_train=82, n_query=30)
    plain = _train(tmp_path / "plain", train, [])
    if mode == "sweep":
        recorded = _train(tmp_path / "cld", train, [CLDCallback(query, progress=False)])
    else:
        recorded = _train(tmp_path / "cld", train, [], trainer_hook=lambda t: t.add_callback(
            CLDCallback(query, trainer=t, mode="train_pass", progress=False)))
    for (name, a), b in zip(plain.state_dict().items(), recorded.state_dict().values()):
        assert torch.equal(a, b), name


@pytest.mark.parametrize("mode", ["sweep", "train_pass"])
@pytest.mark.parametrize("checkpoint", [6, 8], ids=["end-of-epoch", "mid-epoch"])
def test_resume_of_a_dropout_model_equals_the_uninterrupted_run(tmp_path, mode, checkpoint):
    """0.1 differed by up to 0.27 in scores (1.12 in train_pass) after an end-of-epoch resume."""
    train, query = digits_dataset(n_train=82, n_query=30)

    def callbacks(trainer=None):
        if mode == "sweep":
            return CLDCallback(query, progress=False)
        return CLDCallback(query, trainer=trainer, mode="train_pass", progress=False)

    holder = {}

    def hook(trainer):
        holder["cld"] = callbacks(trainer)
        trainer.add_callback(holder["cld"])

    _train(tmp_path, train, [], save="steps", trainer_hook=hook)
    whole = holder["cld"]
    want_losses, want_scores = whole.store.train_losses().copy(), whole.scores().copy()
    resume = str(tmp_path / f"checkpoint-{checkpoint}")
    if mode == "train_pass" and checkpoint == 8:
        # resumed mid-epoch, the Trainer skips the batches of epoch 2 seen before step 8: no
        # training step gives their loss, and the recorder says so instead of inventing one
        from cld_hf import IncompleteSnapshotError

        with pytest.raises(IncompleteSnapshotError, match="mid-epoch resume"):
            _train(tmp_path, train, [], save="steps", trainer_hook=hook, resume=resume)
        return
    _train(tmp_path, train, [], save="steps", trainer_hook=hook, resume=resume)
    resumed = holder["cld"]
    assert [s["step"] for s in resumed.recorder.snapshot_info] == [0, 6, 12, 18]
    np.testing.assert_array_equal(resumed.store.train_losses(), want_losses)
    np.testing.assert_array_equal(resumed.scores(), want_scores)


def test_iterable_or_unlabelled_query_sets_are_refused_with_the_fix(tmp_path):
    from datasets import Dataset

    train, query = digits_dataset(n_train=40, n_query=30)
    with pytest.raises(TypeError, match="IterableDataset has no row indices"):
        CLDCallback(query.to_iterable_dataset())
    with pytest.raises(ValueError, match="-100 marks tokens a loss ignores"):
        CLDCallback(Dataset.from_dict({"x": [[0.0]] * 3, "label": [0, -100, 1]}))


def test_labels_out_of_the_models_range_fail_before_training(tmp_path):
    from transformers import Trainer, TrainingArguments

    train, query = digits_dataset(n_train=40, n_query=30)
    tiny = TrainingArguments(str(tmp_path), num_train_epochs=1, report_to=[], use_cpu=True,
                             disable_tqdm=True, save_strategy="no")
    from helpers import tiny_resnet

    image_train, image_query = digits_dataset(n_train=40, n_query=30, image=True)
    model = tiny_resnet(num_classes=5)  # 10 classes in the data
    trainer = Trainer(model=model, args=tiny, train_dataset=image_train)
    with pytest.raises(ValueError, match=r"model has 5 outputs .*num_labels=10"):
        CLDCallback(image_query, trainer=trainer)
    trainer.add_callback(CLDCallback(image_query, progress=False))
    with pytest.raises(ValueError, match=r"model has 5 outputs .*num_labels=10"):
        trainer.train()
    assert trainer.state.global_step == 0
    with pytest.raises(ValueError, match="already has a column 'cld_score'"):
        LossRecorder(train.add_column("cld_score", [0.0] * 40), query, output_dir=tmp_path / "r")


def test_cld_hf_run_overwrite_removes_only_its_outputs_after_the_data_loaded(tmp_path, capsys):
    from cld_hf.cli import main

    out = tmp_path / "run"
    (out / "trajectories").mkdir(parents=True)
    (out / "results.json").write_text("{}")
    (out / "my-thesis.tex").write_text("unrelated")
    code = main(["run", "--dataset", str(tmp_path / "missing"), "--output-dir", str(out),
                 "--overwrite-output-dir", "--proxy-epochs", "2"])
    assert code == 1 and "missing" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["my-thesis.tex", "results.json",
                                                     "trajectories"]
    assert main(["run", "--output-dir", str(out), "--proxy-epochs", "2"]) == 1
    assert "--overwrite-output-dir" in capsys.readouterr().err
