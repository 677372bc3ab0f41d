"""`CLDCallback`: record CLD loss trajectories during ``transformers.Trainer`` training.

A thin adapter over :class:`~cld_hf.recording.recorder.LossRecorder`, built from what the
callback events pass: the ``model``, the ``train_dataloader`` (its ``.dataset`` and
``.collate_fn``: the rows and collator the Trainer trains on), the ``TrainingArguments`` and
the processes of ``accelerate.PartialState``. It records before training and after every epoch,
rewinds the recording when training resumes from a checkpoint, and scores the training set at
the end. The default sweep mode needs nothing else and changes nothing on the Trainer.

``mode="train_pass"`` takes the training losses from the training steps, so the training batches
must carry the sample index: pass the Trainer, ``trainer.add_callback(CLDCallback(query_ds,
trainer=trainer, mode="train_pass"))``, and the callback prepares it (see the class docstring
for exactly what it changes).

Language models (TRL's ``SFTTrainer``, ``Seq2SeqTrainer``, a causal LM with ``Trainer``, PEFT):
see "For language models" in the class docstring. ``SFTTrainer`` prepares its training set
itself, so the callback takes the trainer (``CLDCallback(raw_query, trainer=trainer)``) and
prepares the query set through it (:mod:`cld_hf.trl`).

Resuming
--------
Each snapshot is stored with the global step at which it was recorded. Snapshots of epoch ``e``
are recorded in ``on_epoch_end``, before the Trainer saves that epoch's checkpoint, so a
checkpoint at step ``g`` covers exactly the snapshots with ``step <= g``. With
``trainer.train(resume_from_checkpoint=...)`` the callback rewinds the recording to those
snapshots and goes on: the final scores equal those of an uninterrupted run. A recording that
does not match the checkpoint (too few snapshots, another run's) is an error, never a silent
mix. The state lives in the store (``output_dir``), not in ``trainer_state.json``.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable

import numpy as np
from transformers import TrainerCallback

from .recording.config import RecorderConfig, make_config
from .recording.indexing import (
    INDEX_KEY,
    Grouping,
    IndexCollator,
    IndexedDataset,
    add_group_column,
    has_class_column,
    resolve_groups,
)
from .recording.recorder import LossRecorder
from .scoring import StreamingCLD, class_score_summary, format_score_summary
from .trainer_data import default_sweep_batch_size, training_rows
from .trl import check_sft_recording, is_packed, is_sft_trainer, sft_documents

logger = logging.getLogger(__name__)

__all__ = ["CLDCallback", "default_sweep_batch_size", "format_score_summary"]


class CLDCallback(TrainerCallback):
    """Record per-sample training and query losses every epoch and score the training set by CLD.

    Parameters
    ----------
    query_dataset : datasets.Dataset
        The held-out query set (e.g. from :func:`~cld_hf.dataset_adapters.stratified_query_split`),
        in the same format as the training set (same columns, same collator). With TRL's
        ``SFTTrainer`` and ``trainer=``, in the same *raw* form as the ``train_dataset`` given to
        the trainer (text, messages, prompt/completion): the callback prepares it as the
        trainer prepares its training set.
    config : RecorderConfig, optional
        The recording options (:class:`~cld_hf.recording.config.RecorderConfig`); keyword
        ``**options`` (``mode="train_pass"``, ``every_n_epochs=2``, ``group_column="source"``,
        ``label_free=True``, ...) override its fields. ``sweep_batch_size`` defaults to the
        larger of ``per_device_eval_batch_size`` and twice ``per_device_train_batch_size``
        (:func:`default_sweep_batch_size`: a sweep keeps no activations for a backward pass),
        ``sweep_num_workers`` to ``dataloader_num_workers``.
    output_dir : str or os.PathLike, optional
        Where the recording goes; ``<TrainingArguments.output_dir>/cld`` by default.
    trainer : transformers.Trainer, optional
        Needed for ``mode="train_pass"`` (below) and for TRL's ``SFTTrainer``, which prepares its
        datasets itself: ``trainer.add_callback(CLDCallback(raw_query, trainer=trainer))``, as
        TRL's own callbacks take the trainer. Otherwise optional: it lets the callback read a
        ``group_column`` the Trainer's ``remove_unused_columns`` dropped from the training rows.
    train_dataset : datasets.Dataset, optional
        ``SFTTrainer`` only: the documents to score, the ``train_dataset`` given to the trainer,
        raw. Required when the trainer's training rows are not its documents (``packing=True``:
        packs of several; ``shuffle_dataset=True``: reordered); they are prepared as the trainer
        prepares them, without packing, and training is unchanged.
    per_sample_loss : callable, optional
        ``fn(outputs, batch) -> Tensor[B]`` for tasks other than classification and language
        modelling.
    eval_transform : callable, optional
        ``datasets`` transform used for the recording sweeps of both sets instead of their own
        (e.g. no augmentation).

    What it changes
    ---------------
    In the default ``mode="sweep"``: nothing on the Trainer. Each sweep leaves torch's random
    number generators as it found them, so training with the callback is bit-identical to
    training without it. The model is in eval mode during a sweep and back in its previous mode
    after it.

    With ``mode="train_pass"`` and ``trainer=``: ``trainer.train_dataset`` becomes an
    :class:`~cld_hf.recording.indexing.IndexedDataset` over it (the columns the model does not
    take removed first, as the Trainer would), ``trainer.data_collator`` an
    :class:`~cld_hf.recording.indexing.IndexCollator` around it that keeps only the model's
    columns, ``trainer.args.remove_unused_columns`` is set to ``False`` (that collator removes
    them instead, after any transform), and two forward hooks on the model take the index out
    of each training batch and feed the recorder.

    For language models
    -------------------
    A language-model corpus has no classes. Without a class column (a scalar integer ``labels``
    or ``label``; a token-level ``labels`` column is never taken for one), CLD is label-free:
    every document is scored against the mean loss differences of *all* query documents, and
    ``select_coreset`` keeps one budget. ``group_column="source"`` (a task, source or domain
    column of both sets) scores per group instead, with one query trajectory and one budget per
    group, the analogue of Algorithm 1's classes; the paper's guarantees speak of that
    per-class form, label-free is its one-class case. The scored dataset then carries
    ``cld_group`` (the group of each row), so ``select_coreset(scored, fraction=0.2,
    label_column="cld_group")`` applies the same grouping.

    The loss of a document is the mean loss over the tokens the trainer itself trains on
    (``labels != -100``): for a causal LM the next-token predictions (completion-only and
    assistant-only masks included), for a seq2seq model (T5, BART) the target tokens, with the
    shift that reproduces the model's own ``loss`` (checked on every batch, also under PEFT).
    Padding-free batches are split by ``position_ids``. With ``SFTTrainer(packing=True)`` the
    sweeps run on the unpacked documents, one loss per original document (the loss it has in
    its pack: TRL's packing keeps documents apart); ``mode="train_pass"`` needs
    ``packing=False``. Under FSDP every process runs the same sweep batches on its shard.

    With TRL's ``SFTTrainer``, pass the raw query set and the trainer::

        from trl import SFTConfig, SFTTrainer

        trainer = SFTTrainer(model=model, args=SFTConfig("out", num_train_epochs=3,
                                                         packing=True),
                             train_dataset=train_docs, processing_class=tokenizer)
        cld = CLDCallback(query_docs, trainer=trainer, train_dataset=train_docs)
        trainer.add_callback(cld)
        trainer.train()
        scored = cld.scored_dataset()              # train_docs + cld_score, loss_trajectory,
                                                   # cld_group
        coreset = select_coreset(scored, fraction=0.2, label_column="cld_group")

    (``train_dataset=`` is needed with ``packing=True`` or ``shuffle_dataset=True`` only.)

    Examples
    --------
    >>> from datasets import Dataset
    >>> query_ds = Dataset.from_dict({"x": [[0.5], [2.5]], "label": [0, 1]})
    >>> CLDCallback(query_ds, every_n_epochs=2)
    CLDCallback(mode='sweep', record_initial=True, every_n_epochs=2, streaming=False, num_query=2)

    After ``trainer.train()`` with ``Trainer(..., callbacks=[cld])``:

    >>> cld = toy_callback()
    >>> cld.scores().shape, cld.scores().dtype
    ((8,), dtype('float32'))
    >>> cld.scored_dataset().features["loss_trajectory"]   # snapshot 0 + 3 epochs
    List(Value('float32'), length=4)

    In a training script (``train_ds``, ``query_ds`` from ``stratified_query_split``)::

        cld = CLDCallback(query_dataset=query_ds)
        trainer = Trainer(model=model, args=args, train_dataset=train_ds, callbacks=[cld])
        trainer.train()
        scored = cld.scored_dataset(train_ds)           # + "cld_score", "loss_trajectory"
        coreset = select_coreset(scored, fraction=0.1)
    """

    def __init__(self, query_dataset, config: RecorderConfig | None = None, *, output_dir=None,
                 trainer=None, train_dataset=None,
                 per_sample_loss: Callable | None = None, eval_transform: Callable | None = None,
                 **options):
        # User-provided options
        self.config = make_config(config, options)
        if query_dataset is None or not hasattr(query_dataset, "__len__"):
            raise TypeError(
                f"query_dataset must be a datasets.Dataset (map-style, with a length), not "
                f"{type(query_dataset).__name__}. An IterableDataset has no row indices: "
                f"materialise the query set (Dataset.from_list(list(iterable)))."
            )
        if len(query_dataset) == 0:
            raise ValueError(
                "query_dataset is empty: CLD compares every training sample with the loss "
                "trajectory of the held-out query samples of its class. Hold out a stratified "
                "query set: train_ds, query_ds = stratified_query_split(ds, fraction=0.1)."
            )
        if not hasattr(query_dataset, "column_names"):
            raise TypeError(
                f"query_dataset must be a datasets.Dataset with a label column, not "
                f"{type(query_dataset).__name__}. For other datasets, use LossRecorder with "
                f"train_labels= and query_labels= in a custom loop."
            )
        if is_packed(query_dataset):
            raise ValueError(
                "query_dataset holds packs of several documents (a 'seq_lengths' column: TRL "
                "packing), so its rows are not query samples. Pass the query documents raw with "
                "the trainer, CLDCallback(query_docs, trainer=trainer): they are prepared "
                "without packing."
            )
        self._documents = None  # SFTTrainer: the prepared training documents (sweeps)
        self._raw_documents = None  # ... and as given (the default scored dataset)
        if is_sft_trainer(trainer):
            check_sft_recording(trainer.args, mode=self.config.mode,
                                documents_given=train_dataset is not None)
            query_dataset = sft_documents(trainer, query_dataset, name="cld_query",
                                          missing="drop")
            if train_dataset is not None:
                self._documents = sft_documents(trainer, train_dataset, name="cld_train")
                self._raw_documents = train_dataset
        elif train_dataset is not None:
            raise ValueError(
                f"train_dataset= gives the documents of a TRL SFTTrainer run whose training rows "
                f"are not documents (packing), but trainer is "
                f"{type(trainer).__name__ if trainer is not None else None}. With a "
                f"transformers Trainer the callback records the trainer's own train_dataset: "
                f"drop train_dataset=."
            )
        self.query_dataset = query_dataset
        self.output_dir = None if output_dir is None else os.fspath(output_dir)
        self.per_sample_loss = per_sample_loss
        self.eval_transform = eval_transform
        # The query set alone, to fail now on a missing class or group column (without a class
        # column and options, whether it is label-free depends on the training rows: later).
        c = self.config
        self.query_labels = None
        if c.label_free or c.group_column or c.label_column or has_class_column(query_dataset):
            self.query_labels = self._groups(query_dataset, query_dataset)[2]

        # Internal state
        self._trainer = trainer
        self._train_dataset = None  # train_pass: the training set before it was wrapped
        self._remove_unused_columns = None  # train_pass: the Trainer's setting before wiring
        self._recorder: LossRecorder | None = None
        self._capture = None
        self._scores: np.ndarray | None = None
        self.summary: dict | None = None
        if self.config.mode == "train_pass":
            if trainer is None:
                raise ValueError(
                    "mode='train_pass' takes the training losses from the training steps, so the "
                    "training batches must carry the sample index: pass the Trainer, "
                    "trainer.add_callback(CLDCallback(query_ds, trainer=trainer, "
                    "mode='train_pass')). mode='sweep' (the default) needs no Trainer."
                )
            self._wire_train_pass(trainer)
        elif self._documents is not None:
            self._check_labels(self._documents, trainer.model)
        elif trainer is not None and getattr(trainer, "train_dataset", None) is not None and (
                not is_packed(trainer.train_dataset)):
            self._check_labels(trainer.train_dataset, trainer.model)

    def _groups(self, train_dataset, query_dataset):
        """``(grouping, train_ids, query_ids)`` under the configured grouping."""
        c = self.config
        return resolve_groups(train_dataset, query_dataset, label_column=c.label_column,
                              group_column=c.group_column, label_free=c.label_free)

    def _check_labels(self, train_dataset, model=None) -> np.ndarray:
        """Fail before training: labels readable and in the model's range, every training class
        (or group) has query samples."""
        from .recording.indexing import check_class_ids
        from .recording.losses import model_loss_kind

        grouping, labels, self.query_labels = self._groups(train_dataset, self.query_dataset)
        num_labels = getattr(getattr(model, "config", None), "num_labels", None)
        generates = model_loss_kind(model) in ("causal_lm", "seq2seq")  # a language model
        if grouping.kind == "class" and isinstance(num_labels, int) and not generates and (
                self.config.loss_type in ("auto", "classification")):
            check_class_ids(labels, "train_dataset labels", num_labels)
            check_class_ids(self.query_labels, "query_dataset labels", num_labels)
        StreamingCLD(labels, self.query_labels,
                     missing_query_class=self.config.missing_query_class)
        return labels

    def _wire_train_pass(self, trainer) -> None:
        """Make every training batch carry ``cld_hf_index`` (see the class docstring)."""
        import datasets

        from .recording.indexing import model_input_columns

        if getattr(trainer.args, "n_gpu", 1) > 1:
            raise ValueError(
                f"mode='train_pass' does not support torch.nn.DataParallel (n_gpu == "
                f"{trainer.args.n_gpu} in one process). Launch one process per device "
                f"(torchrun / accelerate launch), or use mode='sweep'."
            )
        train = trainer.train_dataset
        if train is None:
            raise ValueError("mode='train_pass' needs the Trainer's train_dataset: pass "
                             "Trainer(..., train_dataset=train_ds) before adding the callback.")
        self._check_labels(train, trainer.model)
        self._train_dataset = train
        self._remove_unused_columns = bool(trainer.args.remove_unused_columns)
        columns = None
        if self._remove_unused_columns:
            columns = model_input_columns(trainer.model, self.config.label_column)
            if columns is not None:
                columns |= set(trainer.args.label_names or ())
        plain = isinstance(train, datasets.Dataset) and train.format.get("type") != "custom"
        if columns is not None and plain:
            unused = [c for c in train.column_names if c not in columns]
            if len(unused) < len(train.column_names):
                # What the Trainer does, even when no column is unused: remove_columns rebuilds
                # the table with its schema metadata, which datasets reads faster batch by
                # batch (a shuffled 64-row read of an Array3D column: ~4 ms against ~5.5 ms).
                train = train.remove_columns(unused)
        trainer.train_dataset = IndexedDataset(train)
        trainer.data_collator = IndexCollator(trainer.data_collator, columns=columns,
                                              keep_labels=True)
        trainer.args.remove_unused_columns = False

    # ------------------------------------------------------------------ events
    def _training_rows(self, args, train_dataloader):
        """The training set the sweeps record (sweep mode), checked against the query set."""
        if self._documents is not None:
            return self._documents
        return training_rows(train_dataloader, self._trainer, self.config, self.query_dataset,
                             args)

    def on_train_begin(self, args, state, control, model=None, train_dataloader=None, **kwargs):
        if self.config.mode == "train_pass":
            train = self._train_dataset
            remove_unused = self._remove_unused_columns
        else:
            train = self._training_rows(args, train_dataloader)
            remove_unused = args.remove_unused_columns
        self._check_labels(train, model)
        fresh = state.global_step == 0
        output_dir = self.output_dir or os.path.join(args.output_dir, "cld")
        exists = os.path.isfile(os.path.join(output_dir, "store.json"))
        if not fresh and not exists:
            raise FileNotFoundError(
                f"Training resumes at step {state.global_step}, but {output_dir!r} holds no CLD "
                f"recording: the loss snapshots taken before the checkpoint are needed. Set "
                f"output_dir= to the recording of the interrupted run (by default "
                f"<output_dir>/cld), or train from scratch."
            )
        columns = None
        if remove_unused:
            from .recording.indexing import model_input_columns

            columns = model_input_columns(model, self.config.label_column)
            if columns is not None:
                columns = sorted((columns | set(args.label_names or ())) - {INDEX_KEY})
        config = make_config(self.config, {
            "sweep_batch_size": self.config.sweep_batch_size or default_sweep_batch_size(args),
            "sweep_num_workers": (self.config.sweep_num_workers
                                  if self.config.sweep_num_workers is not None
                                  else args.dataloader_num_workers),
            "remove_unused_columns": bool(remove_unused) and self.config.remove_unused_columns,
            "input_columns": self.config.input_columns or columns,
            "progress": self.config.progress and not args.disable_tqdm,
            "if_exists": self.config.if_exists if fresh else "resume",
        })
        collate_fn = getattr(train_dataloader, "collate_fn", None)
        if self.config.mode == "train_pass" and isinstance(collate_fn, IndexCollator):
            collate_fn = collate_fn.collate_fn
        self._recorder = LossRecorder(
            train, self.query_dataset, config, output_dir=output_dir,
            per_sample_loss=self.per_sample_loss,
            eval_transform=self.eval_transform, collate_fn=collate_fn,
            metadata={"model": type(model).__name__ if model is not None else None},
        )
        self._scores = None
        if not fresh:
            self._resume(state)
        if self._capture is not None:  # a previous train() call's hooks
            self._capture.remove()
            self._capture = None
        if self.config.mode == "train_pass":
            self._capture = self._recorder.capture(model)
        if fresh and self.config.record_initial:
            self._recorder.record(model, epoch=0, step=0)

    def _resume(self, state) -> None:
        """Rewind to the checkpoint's step, and check the recording matches the checkpoint."""
        recorder = self._recorder
        kept = recorder.rewind(step=state.global_step)
        done = math.floor(state.epoch + 1e-9)  # epochs the checkpoint completed
        expected = [0] if self.config.record_initial else []
        expected += [e for e in range(1, done + 1) if recorder.will_record(e)]
        got = [s["epoch"] for s in recorder.snapshot_info]
        if [float(e) for e in expected] != [float(e) for e in got]:
            raise ValueError(
                f"The recording in {str(recorder.output_dir)!r} does not match the checkpoint at "
                f"step {state.global_step} (epoch {state.epoch:.2f}): it holds snapshots of "
                f"epochs {got} up to that step, the checkpoint needs {expected}. It was made by "
                f"another run, or training restarted without resume_from_checkpoint. Point "
                f"output_dir= at this run's recording, or train from scratch with "
                f"if_exists='overwrite'."
            )
        logger.info("Resuming at step %d (epoch %.2f): kept %d CLD snapshot(s).",
                    state.global_step, state.epoch, kept)

    def on_epoch_begin(self, args, state, control, **kwargs):
        if self._recorder is not None:
            epoch = math.floor(state.epoch + 1e-9) + 1  # the epoch about to run, 1-based
            self._recorder.capturing = self._recorder.will_record(epoch)

    def on_epoch_end(self, args, state, control, model=None, **kwargs):
        if self._recorder is None:
            return
        epoch = math.ceil(state.epoch - 1e-9)  # epochs completed (a partial last one counts)
        last = state.max_steps > 0 and state.global_step >= state.max_steps
        self._recorder.record(model, epoch=epoch, step=state.global_step, final=last)

    def on_save(self, args, state, control, **kwargs):
        if self._recorder is not None and self.config.streaming:
            self._recorder.state_dict()  # pins the streaming state this checkpoint resumes from

    def on_train_end(self, args, state, control, model=None, **kwargs):
        recorder = self._recorder
        if recorder is None:
            return
        # The hooks stay (inert) while the wrapped training set can still produce batches with
        # cld_hf_index (e.g. trainer.evaluate(trainer.train_dataset)). The next train() replaces
        # them.
        recorder.capturing = False
        if not recorder.final_features_recorded:
            recorder.record_final_features(model)
        if recorder.num_snapshots < 3:
            logger.warning(
                "CLD needs at least 3 snapshots to score; %d were recorded. Train for more "
                "epochs (or record_initial=True, every_n_epochs=1).", recorder.num_snapshots)
            return
        self._scores = recorder.scores()
        recorder.save_scores(self._scores)
        self.summary = class_score_summary(self._scores, recorder.train_labels)
        if self.config.log_summary and recorder.is_main_process:
            grouping = recorder.grouping
            logger.info("CLD scores of %d training samples (%d snapshots), %s:\n%s",
                        len(self._scores), recorder.num_snapshots, grouping.describe(),
                        format_score_summary(self.summary, self._class_names(recorder),
                                             header="class" if grouping.kind == "class"
                                             else "group"))

    @staticmethod
    def _class_names(recorder):
        grouping: Grouping = recorder.grouping
        if grouping.kind != "class":
            return [str(n) for n in grouping.names]
        features = getattr(recorder.train_dataset, "features", None) or {}
        for key in (grouping.column, "labels", "label"):
            if key and key in features and hasattr(features[key], "names"):
                return features[key].names
        return None

    # ------------------------------------------------------------------ results
    @property
    def recorder(self) -> LossRecorder:
        """The :class:`~cld_hf.recording.recorder.LossRecorder` (exists once training began)."""
        if self._recorder is None:
            raise RuntimeError("CLDCallback has recorded nothing yet: call trainer.train() first.")
        return self._recorder

    @property
    def store(self):
        """The :class:`~cld_hf.trajectories.LossTrajectories` store of the recording."""
        return self.recorder.read_store()

    def scores(self) -> np.ndarray:
        """CLD score of every training sample (float32, by row of the training set).

        Examples
        --------
        >>> cld = toy_callback()        # after trainer.train() with callbacks=[cld]
        >>> cld.scores().shape
        (8,)
        """
        if self._scores is None:
            self._scores = self.recorder.scores()
        return self._scores

    def scored_dataset(self, dataset=None, *, include_trajectory: bool | None = None):
        """The training dataset + ``cld_score`` (float32) + ``loss_trajectory`` (+ ``cld_group``
        when the grouping is label-free or a ``group_column``:
        :data:`~cld_hf.recording.indexing.GROUP_COLUMN`).

        Parameters
        ----------
        dataset : datasets.Dataset, optional
            The dataset given to the Trainer as ``train_dataset``, with all its columns. By
            default, the training set as the Trainer fed it to the model, which lacks the
            columns ``remove_unused_columns`` dropped (with ``SFTTrainer`` and
            ``train_dataset=``, those documents as given); pass ``dataset`` to keep them (its
            rows and groups are checked against the recording).
        include_trajectory : bool, optional
            Default: when the trajectory is stored (not streaming).

        Examples
        --------
        >>> cld = toy_callback()        # after trainer.train() with callbacks=[cld]
        >>> cld.scored_dataset().column_names
        ['x', 'label', 'cld_score', 'loss_trajectory']
        """
        from .columns import INDEX_COLUMN

        recorder = self.recorder
        if dataset is None and self._raw_documents is not None:
            dataset = self._raw_documents
        elif dataset is None:
            dataset = recorder.train_dataset
            columns = getattr(dataset, "column_names", [])
            if INDEX_COLUMN in self.query_dataset.column_names and INDEX_COLUMN not in columns:
                raise ValueError(
                    f"The Trainer removed the column {INDEX_COLUMN!r} (each row's index in the "
                    f"source dataset) from the training set it fed the model "
                    f"(remove_unused_columns=True), so this scored dataset could not say which "
                    f"source rows it holds. Pass the training set given to the Trainer: "
                    f"cld.scored_dataset(train_ds)."
                )
        else:
            labels = recorder.grouping.ids(dataset, "train")
            if len(labels) != recorder.num_train or not np.array_equal(labels,
                                                                      recorder.train_labels):
                sft = (" (SFTTrainer drops documents left without a trained token by truncation;"
                       " pass train_dataset= to the callback to have them named)"
                       if is_sft_trainer(self._trainer) or self._documents is not None else "")
                raise ValueError(
                    f"dataset has {len(labels)} rows (or other labels) but the recording holds "
                    f"{recorder.num_train} training samples: pass the train_dataset given to the "
                    f"Trainer, unchanged (same rows, same order){sft}."
                )
        if include_trajectory is None:
            include_trajectory = not self.config.streaming
        from .dataset_adapters import scored_dataset

        trajectory = recorder.read_store().train_losses() if include_trajectory else None
        scored = scored_dataset(dataset, self.scores(), trajectory=trajectory)
        return add_group_column(scored, recorder.grouping, recorder.train_labels)

    def __repr__(self) -> str:
        c = self.config
        signals = f", signals={list(c.signals)}" if c.signals else ""
        return (f"CLDCallback(mode={c.mode!r}, record_initial={c.record_initial}, "
                f"every_n_epochs={c.every_n_epochs}, streaming={c.streaming}, "
                f"num_query={len(self.query_dataset)}{signals})")
