"""`LossRecorder`: per-sample losses of the training and query sets, gathered by sample index.

The one implementation of recording in cld-hf: the Trainer callback
(:class:`~cld_hf.callback.CLDCallback`) and custom ``accelerate`` loops both use it. Each
:meth:`LossRecorder.record` is one snapshot, the loss of every training and query sample at that
point of training, appended to the :class:`~cld_hf.trajectories.LossTrajectories` store (with
``streaming=True``, to a :class:`~cld_hf.scoring.StreamingCLD` whose state the store keeps).

Modes: ``"sweep"`` (default, Algorithm 1 and the authors' code), an eval-mode pass over both sets
after each epoch (:mod:`cld_hf.recording.sweep`); ``"train_pass"``, the training losses of the
epoch's forward passes, only the query set swept (:mod:`cld_hf.recording.train_pass`). Extra
signals for the baselines (``signals=``) come from the logits of the same sweep.

Cost (Appendix E.4 of the paper): per recorded epoch ``Q`` forward passes for the query set plus
``N`` for the training set in sweep mode, against roughly ``3N`` forward-equivalents for one
training epoch; memory: one snapshot per process beyond the store.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from .._validation import check_callable
from ..identity import recording_identity
from ..scoring import StreamingCLD
from ..trajectories import LossTrajectories
from .config import RecorderConfig, make_config
from .gather import (any_process, check_process_group, gather_arrays, place_by_index,
                     shard_indices)
from .indexing import add_group_column, model_input_columns, resolve_groups
from .losses import LABEL_KEYS, PerSampleLoss, unwrap_model
from .sweep import sweep_dataset, sweep_losses
from .checkpoints import CheckpointMixin
from .signals import TRAIN_SWEEP_FINALS, RecorderSignalsMixin
from .train_pass import FedLosses, TrainPassMixin

logger = logging.getLogger(__name__)

__all__ = ["LossRecorder"]

_DEFAULT_BATCH_SIZE = 64


class LossRecorder(RecorderSignalsMixin, TrainPassMixin, CheckpointMixin):
    """Record the per-sample losses of a training set and a query set, one snapshot per epoch.

    Every process runs :meth:`record` at the same point; the losses of all processes are gathered
    by sample index into one snapshot, which the main process appends to the store in
    ``output_dir``. Processes come from ``accelerate.PartialState`` (initialised by an
    ``Accelerator``, the Trainer, ``torchrun`` or ``accelerate launch``).

    Parameters
    ----------
    train_dataset : datasets.Dataset or map-style dataset of dict rows
        The training set, ``N`` rows. Sample ``i`` is row ``i``.
    query_dataset : same kind
        The held-out query set, ``Q >= 1`` rows, with samples of every training class.
    config : RecorderConfig, optional
        The options (:class:`~cld_hf.recording.config.RecorderConfig`); keyword ``**options``
        (e.g. ``mode="train_pass"``) override its fields.
    output_dir : str or os.PathLike
        Where the store goes (required).
    accelerator : accelerate.Accelerator, optional
        Only for its ``autocast`` (mixed precision in the sweeps) and device; processes and
        gathers go through ``PartialState`` either way.
    per_sample_loss : callable, optional
        ``fn(outputs, batch) -> Tensor[B]``: the loss of each sample. By default derived from
        ``outputs.logits`` and the batch's labels (``config.loss_type``).
    eval_transform : callable, optional
        A ``datasets`` batch transform used *instead of* the datasets' own transforms in every
        sweep (e.g. resize and normalise without augmentation).
    collate_fn : callable, optional
        Collator of the rows (``transformers.default_data_collator`` by default); use the one of
        your training loader, e.g. ``DataCollatorWithPadding(tokenizer)`` for text.
    train_labels, query_labels : int arrays, optional
        Class ids given directly, for datasets without a label column (e.g. torch datasets).
        Without classes, group by ``group_column=`` or pass ``label_free=True`` (see
        :class:`~cld_hf.recording.indexing.Grouping`); token data without a class column is
        label-free by default.
    metadata : dict, optional
        JSON-serialisable information kept in the store.

    What it changes
    ---------------
    The model is put in eval mode during a sweep and back in its previous mode after it; with
    :meth:`capture`, two forward hooks are registered on it until the handle is removed. Nothing
    else of the user's objects is changed. Files: only the store in ``output_dir``.

    Examples
    --------
    Four training and two query samples; a bias shift stands in for an epoch of training:

    >>> import tempfile
    >>> from datasets import Dataset
    >>> train = Dataset.from_dict({"x": [[0.0], [1.0], [2.0], [3.0]], "label": [0, 1, 0, 1]})
    >>> query = Dataset.from_dict({"x": [[0.5], [2.5]], "label": [0, 1]})
    >>> class Net(torch.nn.Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.lin = torch.nn.Linear(1, 2)
    ...     def forward(self, x, labels=None):
    ...         return {"logits": self.lin(x)}
    >>> model = Net()
    >>> recorder = LossRecorder(train, query, output_dir=tempfile.mkdtemp(), progress=False)
    >>> for epoch in range(4):
    ...     with torch.no_grad():
    ...         _ = model.lin.bias.add_(torch.tensor([0.5, -0.5]) * epoch)
    ...     _ = recorder.record(model, epoch=epoch)
    >>> recorder.store.train_losses().shape
    (4, 4)
    >>> recorder.scores().shape
    (4,)
    >>> recorder.scored_dataset().column_names
    ['x', 'label', 'cld_score', 'loss_trajectory']
    >>> recorder.rewind(num_snapshots=2), recorder.store.num_snapshots   # back to a checkpoint
    (2, 2)

    With two processes, a sweep batch size of 16 and 82 training samples, each process computes
    the losses of 41 samples (3 batches); the gathered snapshot holds 82 losses, one per sample
    index, whatever order the loaders produced them in.
    """

    def __init__(self, train_dataset, query_dataset, config: RecorderConfig | None = None, *,
                 output_dir=None, accelerator=None, per_sample_loss: Callable | None = None,
                 eval_transform: Callable | None = None, collate_fn: Callable | None = None,
                 train_labels=None, query_labels=None, metadata: dict | None = None, **options):
        from accelerate import PartialState

        # User-provided options
        self.config = make_config(config, options)
        if output_dir is None:
            raise ValueError("output_dir is required: LossRecorder(..., output_dir='cld') names "
                             "the directory of the recording.")
        check_callable("per_sample_loss", per_sample_loss, "fn(outputs, batch) -> Tensor[B]")
        check_callable("eval_transform", eval_transform, "datasets batch transform")
        if eval_transform is not None and not hasattr(train_dataset, "with_transform"):
            raise TypeError(
                f"eval_transform needs datasets.Dataset inputs (it is applied with "
                f"Dataset.with_transform); train_dataset is a {type(train_dataset).__name__}. "
                f"Apply the transform in your dataset instead."
            )
        self.accelerator = accelerator
        self.state = PartialState()
        check_process_group(self.state)
        self.train_dataset = train_dataset
        self.query_dataset = query_dataset
        self.eval_transform = eval_transform
        self.collate_fn = collate_fn
        self.output_dir = Path(output_dir)
        self.batch_size = self.config.sweep_batch_size or _DEFAULT_BATCH_SIZE
        self.num_workers = self.config.sweep_num_workers or 0
        self.grouping, self.train_labels, self.query_labels = resolve_groups(
            train_dataset, query_dataset, label_column=self.config.label_column,
            group_column=self.config.group_column, label_free=self.config.label_free,
            train_labels=train_labels, query_labels=query_labels)
        self._loss = PerSampleLoss(per_sample_loss, loss_type=self.config.loss_type,
                                   label_column=self.config.label_column,
                                   classless=self.grouping.implicit)
        if len(self.train_labels) == 0:
            raise ValueError("train_dataset is empty: there is nothing to score.")
        if len(self.query_labels) == 0:
            raise ValueError(
                "query_dataset is empty (Q == 0): CLD compares every training sample with the "
                "loss trajectory of the held-out query samples of its class. Hold out a "
                "stratified query set, e.g. train, query = stratified_query_split(ds, "
                "fraction=0.1)."
            )
        for column in ("cld_score", "loss_trajectory"):
            if column in (getattr(train_dataset, "column_names", None) or ()):
                raise ValueError(
                    f"The training dataset already has a column {column!r}, which the scored "
                    f"dataset adds; remove it (dataset.remove_columns({column!r})) before "
                    f"recording."
                )
        # Validates the classes now (a training class without query samples), not after training.
        self._scorer = self._new_scorer()

        # Internal state
        self.store: LossTrajectories | None = None
        self._snapshots: list[dict] = []  # {"index", "epoch", "step"} per snapshot, every process
        self._last_epoch: float | None = None
        self._fed = FedLosses()
        self._capturing = True
        self._open(metadata)

    def _new_scorer(self) -> StreamingCLD:
        return StreamingCLD(self.train_labels, self.query_labels,
                            missing_query_class=self.config.missing_query_class)

    # ------------------------------------------------------------------ processes
    @property
    def mode(self) -> str:
        return self.config.mode

    @property
    def streaming(self) -> bool:
        return self.config.streaming

    @property
    def signals(self) -> list[str]:
        return self.config.signals

    @property
    def loss_type(self) -> str:
        """The per-sample loss in use: ``config.loss_type``, or what ``"auto"`` resolved to
        from the model's outputs (``"auto"`` until the first batch)."""
        return self._loss.resolved or self.config.loss_type

    @property
    def is_main_process(self) -> bool:
        return self.state.is_main_process

    @property
    def device(self) -> torch.device:
        device = getattr(self.accelerator, "device", None)
        return torch.device(device if device is not None else self.state.device)

    def _barrier(self) -> None:
        if self.state.num_processes > 1:
            self.state.wait_for_everyone()

    @property
    def num_train(self) -> int:
        return len(self.train_labels)

    @property
    def num_query(self) -> int:
        return len(self.query_labels)

    # ------------------------------------------------------------------ the store
    def _open(self, metadata: dict | None) -> None:
        if_exists = self.config.if_exists
        exists = (self.output_dir / "store.json").is_file()
        self._barrier()  # every process has looked before the main one writes anything
        if exists and if_exists == "error":
            raise FileExistsError(
                f"output_dir {str(self.output_dir)!r} already holds a loss recording. Pass "
                f"if_exists='overwrite' to replace it (its files only), if_exists='resume' to "
                f"continue it (then rewind it to your checkpoint with recorder.rewind or "
                f"load_state_dict), or choose another output_dir. Nothing was changed."
            )
        resume = exists and if_exists == "resume"
        error = None
        if self.is_main_process:
            try:
                if resume:
                    self.store = LossTrajectories(self.output_dir, writable=True)
                    self._check_store(self.store)
                else:
                    self.output_dir.mkdir(parents=True, exist_ok=True)
                    meta = {"recorder": self.config.to_dict(),
                            "grouping": self.grouping.to_dict(), **(metadata or {})}
                    self.store = LossTrajectories.create(
                        self.output_dir, self.train_labels, self.query_labels, metadata=meta,
                        identity=recording_identity(
                            self.train_dataset, self.train_labels, self.query_dataset,
                            self.query_labels, by_content=self.grouping.kind != "class"),
                        streaming=self.streaming, overwrite=exists)
            except (OSError, ValueError) as err:
                error = err
        # Every process learns whether the main one failed, so that none waits for it forever.
        if any_process(error is not None):
            if error is not None:
                raise error
            raise RuntimeError(f"The main process could not open the recording in "
                               f"{str(self.output_dir)!r}; its error says why.")
        self._barrier()
        if not self.is_main_process:
            self.store = LossTrajectories(self.output_dir)  # reads the main process's files
        self._snapshots = self.store.snapshot_info
        if resume:
            self._load_streaming(len(self._snapshots))
            self._last_epoch = self._snapshots[-1]["epoch"] if self._snapshots else None
            logger.info("Resuming the loss recording in %s at %d snapshot(s).", self.output_dir,
                        len(self._snapshots))

    def read_store(self) -> LossTrajectories:
        """The store, with the snapshots the main process wrote so far (on every process)."""
        if not self.is_main_process:
            self.store.refresh()
        return self.store

    def _load_streaming(self, num_snapshots: int) -> None:
        scorer = self._new_scorer()
        if self.streaming and num_snapshots:
            scorer.load_state_dict(self.read_store().load_streaming_state(num_snapshots))
        self._scorer = scorer

    # ------------------------------------------------------------------ bookkeeping
    @property
    def num_snapshots(self) -> int:
        """Snapshots recorded so far."""
        return len(self._snapshots)

    @property
    def snapshot_info(self) -> list[dict]:
        """``{"index", "epoch", "step"}`` of every snapshot, in time order."""
        return [dict(s) for s in self._snapshots]

    def will_record(self, epoch) -> bool:
        """Whether :meth:`record` records a snapshot at ``epoch`` (``every_n_epochs``).

        Examples
        --------
        >>> recorder, model = toy_recorder(every_n_epochs=3)
        >>> [e for e in range(8) if recorder.will_record(e)]
        [0, 3, 6]
        """
        return math.isclose(float(epoch) % self.config.every_n_epochs, 0.0, abs_tol=1e-9)

    # ------------------------------------------------------------------ losses
    def per_sample_loss(self, outputs, batch, model=None) -> torch.Tensor:
        """The loss of each sample of ``batch`` (shape ``(B,)``), as the recorder computes it
        (:class:`~cld_hf.recording.losses.PerSampleLoss`: ``per_sample_loss`` when given, else
        from the logits, the token loss checked against the model's own loss).

        Examples
        --------
        >>> from cld_hf import IndexCollator
        >>> recorder, model = toy_recorder()
        >>> batch = IndexCollator()([recorder.train_dataset[0], recorder.train_dataset[3]])
        >>> recorder.per_sample_loss(model(**batch), batch).shape
        torch.Size([2])
        """
        return self._loss(outputs, batch, model)

    # ------------------------------------------------------------------ sweeps
    def _columns_for(self, model) -> frozenset | None:
        if not self.config.remove_unused_columns:
            return None
        cols = self.config.input_columns
        label_column = self.config.label_column
        if cols is None:
            cols = model_input_columns(unwrap_model(model), label_column)
            if cols is None:
                return None
        return frozenset(set(cols) | set(LABEL_KEYS) | ({label_column} if label_column else set()))

    def _sweep_all(self, model, dataset, n: int, indices=None, *, desc: str, signals=()):
        """Sweep this process's shard and gather: ``(index, loss, {signal: array})``."""
        indices = np.arange(n, dtype=np.int64) if indices is None else np.asarray(indices)
        shard, real = shard_indices(indices, self.state)
        columns = self._columns_for(model)
        idx, loss, extras = sweep_losses(
            model, sweep_dataset(dataset, eval_transform=self.eval_transform, columns=columns),
            shard, real, per_sample_loss=lambda out, batch, net: self.per_sample_loss(
                out, batch, model=net),
            collate_fn=self.collate_fn, columns=columns, batch_size=self.batch_size,
            num_workers=self.num_workers, device=self.device,
            autocast=getattr(self.accelerator, "autocast", None), signals=signals,
            feature_module=self.config.feature_module, with_labels=self._loss.with_labels,
            progress=self.config.progress and self.is_main_process, desc=desc)
        names = list(extras)
        idx, loss, *values = gather_arrays(idx, loss, *(extras[k] for k in names),
                                           device=self.device)
        return idx, loss, dict(zip(names, values))

    # ------------------------------------------------------------------ recording
    def record(self, model, *, epoch=None, step=None, final: bool = False) -> bool:
        """Record one snapshot of the training and query losses, on every process.

        Parameters
        ----------
        model : torch.nn.Module
            The model (DDP-wrapped or not); in eval mode for the sweeps, then back.
        epoch : int or float, optional
            Epochs completed (0 before training). Defaults to the previous call's epoch + 1
            (0 for the first call): pass it when you do not record before training or skip calls.
        step : int, optional
            Global optimisation step, kept with the snapshot (used to resume at a checkpoint).
        final : bool, default False
            This is the end of training: also capture the requested end-of-training signals
            (``embeddings``, ``probs``) in the same sweep (in ``train_pass`` mode, in a sweep of
            the training set after the snapshot).

        Returns
        -------
        bool: False when ``every_n_epochs`` skips this epoch (nothing is recorded).

        Raises
        ------
        IncompleteSnapshotError
            When a training sample has no loss (``train_pass`` with ``unseen="error"``).

        Examples
        --------
        >>> recorder, model = toy_recorder(every_n_epochs=2)
        >>> [recorder.record(model, epoch=e) for e in range(4)]
        [True, False, True, False]
        >>> recorder.num_snapshots
        2
        """
        if epoch is None:
            epoch = 0 if self._last_epoch is None else self._last_epoch + 1
        self._last_epoch = epoch
        if not self.will_record(epoch):
            self._fed.clear()
            return False
        n, q = self.num_train, self.num_query
        final_names = self.config.final_signals if final else []
        sweep_finals = [s for s in final_names if s in TRAIN_SWEEP_FINALS]
        signals, final_values = {}, {}
        # train_pass: the first snapshot, before any training pass was fed, is a sweep.
        if self.mode == "train_pass" and (
                self.num_snapshots or any_process(self._fed.num_batches > 0)):
            train = self._train_pass_losses(model, epoch)
        else:
            wanted = self._sweep_signal_names(sweep_finals) if self.mode == "sweep" else ()
            idx, loss, extras = self._sweep_all(model, self.train_dataset, n,
                                                desc="CLD sweep (train)", signals=wanted)
            placed = place_by_index(n, idx, loss, extra=extras,
                                    what=f"Training losses at epoch {epoch}")
            train = placed.values
            signals, final_values = self._split_signals(placed.extra, sweep_finals)
        idx, loss, _ = self._sweep_all(model, self.query_dataset, q, desc="CLD sweep (query)")
        query = place_by_index(q, idx, loss, what=f"Query losses at epoch {epoch}").values
        self._fed.clear()
        self._append(train, query, epoch=epoch, step=step, signals=signals)
        if final_values:
            self._save_final(final_values)
        rest = [s for s in final_names if s not in final_values]  # other sweeps, probes
        if rest:
            self.record_final_features(model, names=rest)
        return True

    def _append(self, train: np.ndarray, query: np.ndarray, *, epoch, step, signals=None) -> None:
        info = {"index": self.num_snapshots, "epoch": None if epoch is None else float(epoch),
                "step": None if step is None else int(step)}
        if self.streaming:
            self._scorer.update(train, query)
        if self.is_main_process:
            if self.streaming:
                self.store.append_streamed(self._scorer.state_dict(), epoch=epoch, step=step)
            else:
                self.store.append(train, query, epoch=epoch, step=step, signals=signals or None)
        self._snapshots.append(info)
        self._barrier()
        logger.info("Recorded loss snapshot %d (epoch %s): mean train loss %.4f, mean query loss "
                    "%.4f.", info["index"], epoch, float(train.mean()), float(query.mean()))

    # ------------------------------------------------------------------ results
    def scores(self, *, first: int | None = None, every: int = 1) -> np.ndarray:
        """CLD scores of the training samples (float32, shape ``(N,)``), on every process.

        ``first`` / ``every`` score a window of the snapshots (not with ``streaming=True``).

        Examples
        --------
        >>> recorder, model = toy_recorder(epochs=3)
        >>> recorder.scores().shape, recorder.scores().dtype
        ((4,), dtype('float32'))
        """
        if self.streaming:
            if first is not None or every != 1:
                raise ValueError(
                    "first= and every= need the stored trajectory; with streaming=True every "
                    "recorded snapshot is scored. Record with streaming=False to use a window."
                )
            return self._scorer.scores()
        return self.read_store().scores(first=first, every=every,
                                         missing_query_class=self.config.missing_query_class)

    def save_scores(self, scores=None) -> Path:
        """Save ``sample_index``, ``label``, ``cld_score`` in the store (``scores.arrow``).

        Only the main process writes; returns the path.

        Examples
        --------
        >>> recorder, model = toy_recorder(epochs=3)
        >>> recorder.save_scores().name
        'scores.arrow'
        """
        scores = self.scores() if scores is None else np.asarray(scores, np.float32)
        if self.is_main_process:
            self.store.save_scores(scores)
        self._barrier()
        return self.output_dir / "scores.arrow"

    def scored_dataset(self, *, include_trajectory: bool | None = None, scores=None):
        """The training dataset with ``cld_score`` (float32) and ``loss_trajectory`` columns
        (:func:`cld_hf.dataset_adapters.scored_dataset`; no trajectory when streaming).

        Examples
        --------
        >>> recorder, model = toy_recorder(epochs=3)
        >>> scored = recorder.scored_dataset()
        >>> scored.features["cld_score"], scored.features["loss_trajectory"]
        (Value('float32'), List(Value('float32'), length=3))
        """
        from ..dataset_adapters import scored_dataset

        if include_trajectory is None:
            include_trajectory = not self.streaming
        if include_trajectory and self.streaming:
            raise ValueError(
                "include_trajectory=True needs the stored trajectory, but this recorder streams "
                "(streaming=True keeps no trajectory). Record with streaming=False."
            )
        scores = self.scores() if scores is None else scores
        trajectory = self.read_store().train_losses() if include_trajectory else None
        scored = scored_dataset(self.train_dataset, scores, trajectory=trajectory)
        return add_group_column(scored, self.grouping, self.train_labels)

    def __repr__(self) -> str:
        return (f"LossRecorder(output_dir={str(self.output_dir)!r}, mode={self.mode!r}, "
                f"num_train={self.num_train}, num_query={self.num_query}, "
                f"num_snapshots={self.num_snapshots}, streaming={self.streaming})")

