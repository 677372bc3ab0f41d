"""`CLDCallback`: record CLD loss trajectories during ``transformers.Trainer`` training.

A thin adapter over :class:`~cld_hf.recording.LossRecorder`: it builds the recorder from the
Trainer (accelerator, training set, data collator, batch size, column handling), calls
:meth:`~cld_hf.recording.LossRecorder.record` before training and after every epoch, rewinds the
recording when training resumes from a checkpoint, and scores the training set at the end.

Finding the Trainer
-------------------
Callback events receive the model, the optimizer and the data loaders, but not the Trainer
(``CallbackHandler.call_event``). Every event is called from a Trainer method, so with the plain
``Trainer(callbacks=[cld])`` the callback finds the Trainer as ``self`` of a calling frame in
``on_init_end`` (and ``on_train_begin``), and checks that the Trainer holds this very callback.
Where that cannot work (a driver that is not a ``transformers.Trainer``), pass the Trainer:
``trainer.add_callback(CLDCallback(query_ds, trainer=trainer))``.

Resuming
--------
Each snapshot is stored with the global step at which it was recorded. Snapshots of epoch ``e``
are recorded in ``on_epoch_end``, before the Trainer saves that epoch's checkpoint, so a
checkpoint at step ``g`` covers exactly the snapshots with ``step <= g``. With
``trainer.train(resume_from_checkpoint=...)`` the callback rewinds the recording in
``output_dir`` to those snapshots (``LossRecorder.rewind(step=g)``) and goes on: the final scores
equal those of an uninterrupted run. The state lives in ``output_dir`` (Arrow snapshots,
``recorder.json``, and the streaming states saved in ``on_save``), not in ``trainer_state.json``:
the callback is not an ``ExportableState``, whose restoring would rebuild it from JSON without
its query dataset.
"""

from __future__ import annotations

import inspect
import logging
import math
import os
from collections.abc import Callable

import numpy as np
from transformers import TrainerCallback

from .recording import (
    INDEX_KEY,
    IndexCollator,
    IndexedDataset,
    FINAL_SIGNALS,
    LossRecorder,
    _check_choice,
    _check_signals,
    _check_positive_int,
    _dataset_labels,
    class_score_summary,
    MODES,
    LOSS_TYPES,
    UNSEEN,
)
from .scoring import StreamingCLD

logger = logging.getLogger(__name__)

__all__ = ["CLDCallback"]

_MAX_FRAMES = 16
_MAX_LOGGED_CLASSES = 100  # per-class keys in the Trainer log up to this many classes


class CLDCallback(TrainerCallback):
    """Record per-sample training and query losses every epoch and score the training set by CLD.

    Parameters
    ----------
    query_dataset : datasets.Dataset
        The held-out query set (e.g. from :func:`~cld_hf.splits.stratified_query_split`), in the
        same format as the training set (same columns, same collator).
    trainer : transformers.Trainer, optional
        Only needed when the callback cannot find the Trainer that calls it (see the module
        docstring): ``trainer.add_callback(CLDCallback(query_ds, trainer=trainer))``.
    mode : {"sweep", "train_pass"}, default "sweep"
        ``"sweep"``: after each epoch, an eval-mode pass over the training and query sets
        (Algorithm 1). ``"train_pass"``: the training losses are captured from the training
        forward passes of the epoch (no extra pass over the training set; the query set is
        still swept; snapshot 0, before training, is a sweep). This approximates the sweep: the
        losses are taken in training mode (dropout, batch-norm batch statistics, augmentation)
        and at weights that move during the epoch. The training batches then carry a
        ``cld_hf_index`` (the Trainer's ``train_dataset`` is wrapped in
        :class:`~cld_hf.recording.IndexedDataset`), which a forward hook removes before the
        model sees it.
    record_initial : bool, default True
        Record snapshot 0 before training. ``False`` reproduces the authors' code (``T`` epochs
        give ``T - 1`` loss differences).
    every_n_epochs : int, default 1
        Record after every ``k``-th epoch only (for long runs).
    output_dir : str, optional
        Where the recording goes; ``<TrainingArguments.output_dir>/cld`` by default.
    streaming : bool, default False
        Score with :class:`~cld_hf.scoring.StreamingCLD` as the snapshots land and keep no
        trajectory (``scored_dataset`` then has no ``loss_trajectory``).
    eval_transform : callable, optional
        ``datasets`` transform used for the recording sweeps of both sets instead of their own
        (e.g. no augmentation). See :class:`~cld_hf.recording.LossRecorder`.
    per_sample_loss : callable, optional
        ``fn(outputs, batch) -> Tensor[B]`` for tasks other than classification and language
        modelling.
    loss_type : {"auto", "classification", "causal_lm", "token"}, default "auto"
    label_column : str, optional
        Found as ``labels`` then ``label`` when not given.
    batch_size : int, optional
        Per-device batch size of the sweeps; ``per_device_eval_batch_size`` by default.
    missing_query_class : {"error", "global"}, default "error"
        A training class without query samples fails when the Trainer is built, or is scored
        against the all-class query trajectory.
    unseen : {"error", "sweep"}, default "error"
        ``train_pass`` only: a training sample no training batch contained during a recorded
        epoch (``dataloader_drop_last=True``, mid-epoch resume) raises an error naming it, or is
        swept in eval mode at the end of the epoch.
    log_summary : bool, default True
        At the end of training, log the score summary to the Trainer's log (``cld/score_mean``,
        ``cld/class_<c>/mean`` and ``/std`` for up to 100 classes, else the spread of the class
        means) and a per-class table (count, mean, std, min, max) to the Python log.
    progress : bool, default True
        Progress bars for the sweeps (also off with ``disable_tqdm=True``).
    signals : iterable of str, default ()
        Extra signals for the baselines (:mod:`cld_hf.baselines`), recorded from the logits of
        the same sweeps (see :class:`~cld_hf.recording.LossRecorder`): per snapshot
        ``correct``, ``true_prob``, ``margin``, ``el2n``, ``grad_projection``; at the end of
        training ``embeddings`` and ``probs``, taken in the sweep of the last epoch (or, if that
        epoch is not recorded or training stops early, in a sweep at ``on_train_end``). Read them
        with ``cld.store.train_signal(name)`` and ``cld.store.load_array(name)``.
    feature_module : str or torch.nn.Module, optional
        The module whose input is the ``embeddings`` signal (default: the last ``Linear`` with
        one output per class; see :func:`~cld_hf.recording.find_feature_module`).

    Examples
    --------
    >>> from datasets import Dataset
    >>> query_ds = Dataset.from_dict({"x": [[0.5], [2.5]], "label": [0, 1]})
    >>> CLDCallback(query_dataset=query_ds, mode="train_pass", every_n_epochs=2)
    CLDCallback(mode='train_pass', record_initial=True, every_n_epochs=2, streaming=False, \
num_query=2)

    In a training script (``full_train`` a labelled dataset, ``model`` a classifier):

    >>> from transformers import Trainer, TrainingArguments
    >>> from cld_hf import select_coreset, stratified_query_split
    >>> train_ds, query_ds = stratified_query_split(full_train, fraction=0.1)  # doctest: +SKIP
    >>> cld = CLDCallback(query_dataset=query_ds)                              # doctest: +SKIP
    >>> trainer = Trainer(model=model, args=TrainingArguments("out", num_train_epochs=3),
    ...                   train_dataset=train_ds, callbacks=[cld])             # doctest: +SKIP
    >>> trainer.train()                                                        # doctest: +SKIP
    >>> scored = cld.scored_dataset()   # + "cld_score", "loss_trajectory"   # doctest: +SKIP
    >>> coreset = select_coreset(scored, fraction=0.1)                         # doctest: +SKIP
    """

    def __init__(
        self,
        query_dataset,
        *,
        trainer=None,
        mode: str = "sweep",
        record_initial: bool = True,
        every_n_epochs: int = 1,
        output_dir: str | None = None,
        streaming: bool = False,
        eval_transform: Callable | None = None,
        per_sample_loss: Callable | None = None,
        loss_type: str = "auto",
        label_column: str | None = None,
        batch_size: int | None = None,
        missing_query_class: str = "error",
        unseen: str = "error",
        log_summary: bool = True,
        progress: bool = True,
        signals=(),
        feature_module=None,
    ):
        # User-provided options
        _check_choice(mode, "mode", MODES)
        _check_choice(loss_type, "loss_type", LOSS_TYPES)
        _check_choice(unseen, "unseen", UNSEEN)
        if missing_query_class not in ("error", "global"):
            raise ValueError(
                f"missing_query_class == {missing_query_class!r}, must be 'error' or 'global'."
            )
        if query_dataset is None or len(query_dataset) == 0:
            raise ValueError(
                "query_dataset is empty: CLD compares every training sample with the loss "
                "trajectory of the held-out query samples of its class. Hold out a stratified "
                "query set: train_ds, query_ds = stratified_query_split(ds, fraction=0.1)."
            )
        self.query_dataset = query_dataset
        self.mode = mode
        self.record_initial = bool(record_initial)
        self.every_n_epochs = _check_positive_int(every_n_epochs, "every_n_epochs")
        self.output_dir = output_dir
        self.streaming = bool(streaming)
        self.eval_transform = eval_transform
        self.per_sample_loss = per_sample_loss
        self.loss_type = loss_type
        self.label_column = label_column
        self.batch_size = (None if batch_size is None
                           else _check_positive_int(batch_size, "batch_size"))
        self.missing_query_class = missing_query_class
        self.unseen = unseen
        self.log_summary = bool(log_summary)
        self.progress = bool(progress)
        self.signals = _check_signals(signals, mode=mode, streaming=self.streaming)
        self.feature_module = feature_module
        if not hasattr(query_dataset, "column_names"):
            raise TypeError(
                f"query_dataset must be a datasets.Dataset (with a label column), not "
                f"{type(query_dataset).__name__}. For other datasets, use LossRecorder with "
                f"query_labels= in a custom loop."
            )
        self.query_labels = _dataset_labels(query_dataset, label_column, None, "query")

        # Internal state
        self._trainer = None
        self._train_dataset = None  # the Trainer's training set as given (before any wrapping)
        self._collator = None  # the Trainer's data collator as given
        self._wired = False  # train_pass: batches carry cld_hf_index
        self._recorder: LossRecorder | None = None
        self._capture = None
        self._scores: np.ndarray | None = None
        if trainer is not None:
            self._attach(trainer, before_loader=True)

    # ------------------------------------------------------------------ the Trainer
    def _find_trainer(self):
        """The Trainer whose event called us: ``self`` of a calling frame (see module doc)."""
        if self._trainer is not None:
            return self._trainer
        from transformers import Trainer

        frame = inspect.currentframe()
        try:
            f = frame.f_back if frame is not None else None
            for _ in range(_MAX_FRAMES):
                if f is None:
                    break
                obj = f.f_locals.get("self")
                if isinstance(obj, Trainer) and any(
                    cb is self for cb in obj.callback_handler.callbacks
                ):
                    return obj
                f = f.f_back
        finally:
            del frame
        raise RuntimeError(
            "CLDCallback could not find the transformers.Trainer it is attached to (callback "
            "events do not receive it; the callback looks for the Trainer that calls them). "
            "Pass it explicitly: trainer.add_callback(CLDCallback(query_ds, trainer=trainer))."
        )

    def _attach(self, trainer, *, before_loader: bool) -> None:
        """Bind the Trainer's training set and collator; ``before_loader``: the training data
        loader is not built yet, so train_pass can still make its batches carry the index."""
        self._trainer = trainer
        if self._train_dataset is not None or trainer.train_dataset is None:
            return  # bound already, or nothing to record yet (checked in on_train_begin)
        self._train_dataset = trainer.train_dataset
        self._collator = trainer.data_collator
        # Fail at construction, not after training: labels, classes without query samples.
        train_labels = _dataset_labels(self._train_dataset, self.label_column, None, "train")
        StreamingCLD(train_labels, self.query_labels, missing_query_class=self.missing_query_class)
        if self.mode == "train_pass" and before_loader:
            self._wire_train_pass(trainer)

    def _wire_train_pass(self, trainer) -> None:
        """Make every training batch carry ``cld_hf_index`` (kept by remove_unused_columns)."""
        if getattr(trainer.args, "n_gpu", 1) > 1:
            raise ValueError(
                f"mode='train_pass' does not support torch.nn.DataParallel (n_gpu == "
                f"{trainer.args.n_gpu} in one process). Launch one process per device "
                f"(torchrun / accelerate launch), or use mode='sweep'."
            )
        import datasets

        trainer._set_signature_columns_if_needed()
        if INDEX_KEY not in trainer._signature_columns:
            trainer._signature_columns.append(INDEX_KEY)
        train = trainer.train_dataset
        if isinstance(train, datasets.Dataset) and trainer.args.remove_unused_columns:
            # What the Trainer would do to a datasets.Dataset; the wrapper below is not one.
            train = trainer._remove_unused_columns(train, description="training")
        trainer.train_dataset = IndexedDataset(train)
        trainer.data_collator = IndexCollator(trainer.data_collator, keep_labels=True)
        self._wired = True

    # ------------------------------------------------------------------ events
    def on_init_end(self, args, state, control, **kwargs):
        self._attach(self._find_trainer(), before_loader=True)

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        trainer = self._find_trainer()
        self._attach(trainer, before_loader=False)
        if self._train_dataset is None:
            raise ValueError(
                "CLDCallback needs the Trainer's train_dataset to record losses; the Trainer has "
                "none. Pass Trainer(..., train_dataset=train_ds)."
            )
        if self.mode == "train_pass" and not self._wired:
            raise RuntimeError(
                "mode='train_pass' must prepare the training batches before the Trainer builds "
                "its data loader, which happened before this callback was found. Pass the "
                "callback to the constructor, Trainer(..., callbacks=[cld]), or give it the "
                "Trainer: trainer.add_callback(CLDCallback(query_ds, trainer=trainer, "
                "mode='train_pass'))."
            )
        fresh = state.global_step == 0
        output_dir = self.output_dir or os.path.join(args.output_dir, "cld")
        recorder_exists = os.path.isfile(os.path.join(output_dir, "recorder.json"))
        if not fresh and not recorder_exists:
            raise FileNotFoundError(
                f"Training resumes at step {state.global_step}, but {output_dir!r} holds no CLD "
                f"recording: the loss snapshots taken before the checkpoint are needed. Set "
                f"CLDCallback(output_dir=...) to the recording of the interrupted run (by default "
                f"<output_dir>/cld), or train from scratch."
            )
        if fresh and recorder_exists:
            logger.warning("Replacing the CLD recording in %s (training starts from scratch).",
                           output_dir)
        trainer._set_signature_columns_if_needed()
        columns = [c for c in trainer._signature_columns if c != INDEX_KEY]
        self._recorder = LossRecorder(
            trainer.accelerator,
            self._train_dataset,
            self.query_dataset,
            output_dir=output_dir,
            mode=self.mode,
            every_n_epochs=self.every_n_epochs,
            streaming=self.streaming,
            eval_transform=self.eval_transform,
            collate_fn=self._collator,
            batch_size=self.batch_size or args.per_device_eval_batch_size,
            per_sample_loss=self.per_sample_loss,
            loss_type=self.loss_type,
            label_column=self.label_column,
            remove_unused_columns=args.remove_unused_columns,
            input_columns=columns,
            missing_query_class=self.missing_query_class,
            unseen=self.unseen,
            if_exists="overwrite" if fresh else "resume",
            num_workers=args.dataloader_num_workers,
            progress=self.progress and not args.disable_tqdm,
            metadata={"model": type(model).__name__ if model is not None else None,
                      "record_initial": self.record_initial},
            signals=self.signals,
            feature_module=self.feature_module,
        )
        self._scores = None
        if not fresh:
            kept = self._recorder.rewind(step=state.global_step)
            logger.info("Resuming at step %d (epoch %.2f): kept %d CLD snapshot(s).",
                        state.global_step, state.epoch, kept)
        if self._capture is not None:  # a previous train() call's hooks
            self._capture.remove()
            self._capture = None
        if self.mode == "train_pass":
            self._capture = self._recorder.capture(model)
        if fresh and self.record_initial:
            self._recorder.record(model, epoch=0, step=0)

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
        if self._recorder is not None and self.streaming:
            self._recorder.state_dict()  # keeps the streaming state this checkpoint resumes from

    def on_train_end(self, args, state, control, **kwargs):
        recorder = self._recorder
        if recorder is None:
            return
        # The hooks stay (inert) while the Trainer's wrapped training set can still produce
        # batches with cld_hf_index (e.g. trainer.evaluate(trainer.train_dataset)): they keep it
        # away from the model. The next train() replaces them.
        recorder.capturing = False
        if any(s in FINAL_SIGNALS for s in self.signals) and not recorder.final_features_recorded:
            model = kwargs.get("model")
            recorder.record_final_features(model if model is not None else self._trainer.model)
        if recorder.num_snapshots < 3:
            logger.warning(
                "CLD needs at least 3 snapshots to score; %d were recorded. Train for more "
                "epochs (or record_initial=True, every_n_epochs=1).", recorder.num_snapshots)
            return
        self._scores = recorder.scores()
        path = recorder.save_scores(self._scores)
        logger.info("CLD scores of %d training samples written to %s.", len(self._scores), path)
        if self.log_summary:
            self._log_summary(args, state)

    def _log_summary(self, args, state) -> None:
        summary = class_score_summary(self._scores, self._recorder.train_labels)
        logs = {"cld/num_snapshots": float(self._recorder.num_snapshots),
                "cld/score_mean": float(self._scores.mean()),
                "cld/score_std": float(self._scores.std())}
        lines = ["CLD score per class:", f"{'class':>8} {'count':>7} {'mean':>8} {'std':>8} "
                 f"{'min':>8} {'max':>8}"]
        per_class = len(summary) <= _MAX_LOGGED_CLASSES
        means = np.array([s["mean"] for s in summary.values()])
        if not per_class:  # e.g. ImageNet: the spread of the class means, not 2000 keys
            logs.update({"cld/class_mean_min": float(means.min()),
                         "cld/class_mean_median": float(np.median(means)),
                         "cld/class_mean_max": float(means.max())})
        for c, s in summary.items():
            if per_class:
                logs[f"cld/class_{c}/mean"] = s["mean"]
                logs[f"cld/class_{c}/std"] = s["std"]
            lines.append(f"{c:>8} {s['count']:>7} {s['mean']:>8.4f} {s['std']:>8.4f} "
                         f"{s['min']:>8.4f} {s['max']:>8.4f}")
        logger.info("\n".join(lines))
        if self._trainer is not None:
            self._trainer.log(logs)

    # ------------------------------------------------------------------ results
    @property
    def recorder(self) -> LossRecorder:
        """The :class:`~cld_hf.recording.LossRecorder` (exists once training has begun)."""
        if self._recorder is None:
            raise RuntimeError(
                "CLDCallback has recorded nothing yet: call trainer.train() first."
            )
        return self._recorder

    @property
    def store(self):
        """The :class:`~cld_hf.trajectories.LossTrajectories` store (``None`` when streaming)."""
        return self.recorder._read_store() if not self.streaming else None

    def scores(self) -> np.ndarray:
        """CLD score of every training sample (float32, by row of the training set).

        Examples
        --------
        >>> cld = _example_callback()        # after trainer.train() with callbacks=[cld]
        >>> cld.scores().shape, cld.scores().dtype
        ((8,), dtype('float32'))
        """
        if self._scores is None:
            self._scores = self.recorder.scores()
        return self._scores

    def scored_dataset(self, *, include_trajectory: bool | None = None):
        """The Trainer's training dataset + ``cld_score`` (float32) + ``loss_trajectory``.

        ``loss_trajectory`` is ``List(Value("float32"), length=S)`` (absent when streaming).

        Examples
        --------
        >>> cld = _example_callback()        # after trainer.train() with callbacks=[cld]
        >>> scored = cld.scored_dataset()
        >>> scored.column_names
        ['x', 'label', 'cld_score', 'loss_trajectory']
        >>> scored.features["loss_trajectory"]          # snapshot 0 + 3 epochs
        List(Value('float32'), length=4)
        """
        return self.recorder.scored_dataset(include_trajectory=include_trajectory,
                                            scores=self.scores())

    def __repr__(self) -> str:
        signals = f", signals={list(self.signals)}" if self.signals else ""
        return (f"CLDCallback(mode={self.mode!r}, record_initial={self.record_initial}, "
                f"every_n_epochs={self.every_n_epochs}, streaming={self.streaming}, "
                f"num_query={len(self.query_dataset)}{signals})")


_EXAMPLE = {}


def _example_callback() -> CLDCallback:
    """Doctest fixture (not API): a CLDCallback after a 3-epoch Trainer run on a toy problem
    (8 training and 4 query samples); trained once per process."""
    if "cld" not in _EXAMPLE:
        import contextlib
        import io

        import torch
        from datasets import Dataset
        from transformers import Trainer, TrainingArguments

        from .recording import _example_dir, _ToyNet

        xs = [[0.0], [1.0], [2.0], [3.0], [0.2], [1.2], [2.2], [3.2]]
        train = Dataset.from_dict({"x": xs, "label": [0, 1, 0, 1] * 2})
        query = Dataset.from_dict({"x": [[0.5], [1.5], [2.5], [3.5]], "label": [0, 1, 0, 1]})
        torch.manual_seed(0)
        cld = CLDCallback(query, progress=False, log_summary=False)
        args = TrainingArguments(_example_dir(), num_train_epochs=3,
                                 per_device_train_batch_size=4, learning_rate=0.5, optim="sgd",
                                 use_cpu=True, report_to=[], disable_tqdm=True,
                                 logging_strategy="no", save_strategy="no")
        trainer = Trainer(model=_ToyNet(), args=args, train_dataset=train, callbacks=[cld])
        with contextlib.redirect_stdout(io.StringIO()):
            trainer.train()
        _EXAMPLE["cld"] = cld
    return _EXAMPLE["cld"]
