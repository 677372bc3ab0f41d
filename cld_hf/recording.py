"""`LossRecorder`: per-sample losses of the training and query sets, gathered by sample index.

This is the one implementation of recording in cld-hf: the Trainer callback
(:class:`~cld_hf.callback.CLDCallback`) and custom ``accelerate`` loops both use it. Each call to
:meth:`LossRecorder.record` produces one snapshot, the loss of every training and query sample at
that point of training, and appends it to a :class:`~cld_hf.trajectories.LossTrajectories` store
(or to a :class:`~cld_hf.scoring.StreamingCLD` scorer with ``streaming=True``).

How a loss finds its sample
---------------------------
A sample is known by its integer index in the dataset given to the recorder, never by its position
in a gathered batch:

- :class:`IndexedDataset` adds the row's index under ``"cld_hf_index"`` (:data:`INDEX_KEY`) to
  every row it returns, *after* the dataset's own transform, so a transform, a shuffled sampler
  or ``remove_unused_columns`` cannot lose it; :class:`IndexCollator` turns those into a
  ``LongTensor`` in the batch. The key is the recorder's own: a ``sample_index`` column of the
  dataset (e.g. indices into the dataset it was split from) is left alone, as data.
- Each process computes ``(index, loss)`` pairs for its part of the data; the pairs of all
  processes are gathered and written into an ``(N,)`` array at their indices. Padding duplicates
  (``even_batches``), dropped batches and uneven shards therefore cannot misplace a loss.
- A snapshot in which an index is missing is an error (:class:`IncompleteSnapshotError`) that
  names the samples; a duplicated index in a sweep is an error too. In ``train_pass`` mode a
  sample seen twice in one epoch (accelerate pads the last batches of an epoch with samples from
  its start) keeps the loss of its first sighting.

Modes
-----
``"sweep"`` (default, Algorithm 1 and the authors' code)
    An eval-mode pass (``model.eval()``, ``torch.no_grad()``, fixed weights, no augmentation when
    ``eval_transform`` is given) over the whole training set and the query set.
``"train_pass"``
    The training losses come from the training forward passes of the epoch (fed with
    :meth:`LossRecorder.feed` or captured with :meth:`LossRecorder.capture`); only the query set
    is swept. This costs ``Q`` instead of ``N + Q`` extra forward passes per epoch, but it is an
    approximation of the sweep: each loss is taken in training mode (dropout active, batch-norm
    batch statistics, augmented inputs) and at the weights of the moment the sample's batch was
    seen, which move during the epoch; the sweep measures all samples at the end-of-epoch weights.

Extra signals for the baselines
-------------------------------
``LossRecorder(..., signals=[...])`` also records what the baselines of :mod:`cld_hf.baselines`
read, from the logits of the same sweep (no extra forward pass), gathered by sample index like
the loss; classification only (``(batch, classes)`` logits). Per snapshot, stored as columns of
the snapshot file (:meth:`~cld_hf.trajectories.LossTrajectories.train_signal`):
``correct`` (argmax == label), ``true_prob`` (softmax of the label), ``margin`` (label logit minus
the largest other logit), ``el2n`` (``||softmax - onehot||``) and ``grad_projection`` (TDDS: the
last-layer gradient of each sample projected on the snapshot's mean gradient, from the gathered
softmax and penultimate features). Once, at the end of training (``record(model, final=True)``
or :meth:`LossRecorder.record_final_features`), stored as safetensors arrays
(:meth:`~cld_hf.trajectories.LossTrajectories.load_array`): ``embeddings`` (penultimate
features, see :func:`find_feature_module`) and ``probs`` (softmax). Only the training samples
get signals.

Cost (Appendix E.4 of the paper): per recorded epoch, ``Q`` forward passes for the query set plus
``N`` for the training set in sweep mode, against roughly ``3N`` forward-equivalents for one
training epoch (forward + backward), hence an overhead of about ``(N + Q) / 3N`` (sweep) or
``Q / 3N`` (train_pass). Memory: one snapshot (``N`` floats and indices) per process beyond the
store; datasets are read batch by batch (``__getitems__``), never materialised.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import logging
import math
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F

from .columns import INDEX_COLUMN, SCORE_COLUMN, TRAJECTORY_COLUMN, find_label_column
from ._validation import check_labels as _check_labels
from .scoring import StreamingCLD, class_score_summary
from .trajectories import LossTrajectories, trajectory_column

logger = logging.getLogger(__name__)

__all__ = [
    "LossRecorder",
    "INDEX_KEY",
    "IndexedDataset",
    "IndexCollator",
    "IncompleteSnapshotError",
    "per_sample_cross_entropy",
    "per_sequence_token_loss",
    "default_per_sample_loss",
    "classification_signals",
    "find_feature_module",
    "class_score_summary",
    "SNAPSHOT_SIGNALS",
    "FINAL_SIGNALS",
]

Mode = Literal["sweep", "train_pass"]
LossType = Literal["auto", "classification", "causal_lm", "token"]
IfExists = Literal["error", "overwrite", "resume"]
Unseen = Literal["error", "sweep"]

MODES = ("sweep", "train_pass")
LOSS_TYPES = ("auto", "classification", "causal_lm", "token")
IF_EXISTS = ("error", "overwrite", "resume")
UNSEEN = ("error", "sweep")

SNAPSHOT_SIGNALS = ("correct", "true_prob", "margin", "el2n", "grad_projection")
"""Signals :class:`LossRecorder` can record at every snapshot (``signals=``), one column each."""

FINAL_SIGNALS = ("embeddings", "probs")
"""Signals recorded once, at the end of training (``record(model, final=True)``)."""

LABEL_KEYS = ("labels", "label", "label_ids")
"""Where the labels are looked for in a batch, in order."""

INDEX_KEY = "cld_hf_index"
"""Batch key of the sample's row number in the dataset given to the recorder (see
:class:`IndexedDataset`); never passed to the model."""

LABELS_COPY_KEY = "cld_hf_labels"
"""Batch key of a copy of the labels, for training steps that pop ``labels`` before the forward
(label smoothing, ``compute_loss_func``); removed again before the model sees the batch."""

RECORDER_FORMAT = "cld-hf-loss-recorder"
RECORDER_VERSION = 1
_RECORDER_META = "recorder.json"
_SCORES_FILE = "scores.arrow"
_MAX_NAMED = 10


class IncompleteSnapshotError(ValueError):
    """A snapshot lacks the loss of some samples (their indices are in :attr:`missing`).

    Examples
    --------
    >>> err = IncompleteSnapshotError("2 samples never seen", missing=[3, 7])
    >>> err.missing
    [3, 7]
    """

    def __init__(self, message: str, *, missing=()):
        super().__init__(message)
        self.missing = [int(i) for i in missing]


# --------------------------------------------------------------------------------------------
# Per-sample losses
# --------------------------------------------------------------------------------------------


def per_sample_cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Unreduced cross entropy of ``(B, C)`` logits against ``(B,)`` class ids, in float32.

    Label smoothing is deliberately not applied: CLD records the plain loss.

    Examples
    --------
    >>> logits = torch.tensor([[2.0, 0.0], [0.0, 0.0]])
    >>> [round(v, 4) for v in per_sample_cross_entropy(logits, torch.tensor([0, 1])).tolist()]
    [0.1269, 0.6931]
    """
    if logits.ndim != 2:
        raise ValueError(
            f"logits must have shape (batch, num_classes) for a classification loss, got "
            f"{tuple(logits.shape)}. For token-level outputs use loss_type='causal_lm' or "
            f"'token', or pass per_sample_loss=fn(outputs, batch) -> Tensor[B]."
        )
    if labels.dtype.is_floating_point or labels.dtype == torch.bool:
        raise TypeError(
            f"labels must hold integer class ids for a classification loss, got dtype "
            f"{labels.dtype} (regression or multi-label?). Pass per_sample_loss=fn(outputs, "
            f"batch) -> Tensor[B] that computes the loss of your task per sample."
        )
    return F.cross_entropy(logits.detach().float(), labels.reshape(-1).long(), reduction="none")


def per_sequence_token_loss(
    logits: torch.Tensor, labels: torch.Tensor, *, shift: bool = False, ignore_index: int = -100
) -> torch.Tensor:
    """Mean token cross entropy of each sequence, ignoring ``ignore_index`` labels, in float32.

    ``shift=True`` predicts token ``t + 1`` from position ``t`` (causal language models, whose
    ``labels`` are the inputs); ``shift=False`` compares position by position (masked LM, token
    classification). A sequence without any target token gets ``nan`` (the recorder reports it).

    Examples
    --------
    >>> logits = torch.zeros(1, 3, 4)           # uniform over 4 tokens: loss log(4) per token
    >>> round(per_sequence_token_loss(logits, torch.tensor([[1, -100, 2]])).item(), 4)
    1.3863
    >>> per_sequence_token_loss(logits, torch.tensor([[-100, -100, -100]])).isnan().item()
    True
    """
    if logits.ndim != 3:
        raise ValueError(
            f"logits must have shape (batch, length, vocab) for a token loss, got "
            f"{tuple(logits.shape)}. Use loss_type='classification' for (batch, classes)."
        )
    logits = logits.detach()
    labels = labels.long()
    if shift:
        logits = logits[:, :-1, :]
        labels = labels[:, 1:]
    if logits.shape[:2] != labels.shape:
        raise ValueError(
            f"labels of shape {tuple(labels.shape)} do not match logits of shape "
            f"{tuple(logits.shape)}: pass one label per token (-100 for tokens to ignore)."
        )
    b, length, v = logits.shape
    token = F.cross_entropy(
        logits.reshape(b * length, v).float(), labels.reshape(-1), reduction="none",
        ignore_index=ignore_index,
    ).reshape(b, length)
    count = (labels != ignore_index).sum(dim=1)
    total = token.sum(dim=1)
    return torch.where(count > 0, total / count.clamp(min=1), torch.full_like(total, math.nan))


def _find_logits(outputs):
    if isinstance(outputs, Mapping):  # dict and transformers' ModelOutput
        logits = outputs.get("logits")
        keys = list(outputs.keys())
    else:
        logits = getattr(outputs, "logits", None)
        keys = type(outputs).__name__
    if not isinstance(logits, torch.Tensor):
        raise ValueError(
            f"The model's output has no 'logits' (got {keys}), so the per-sample loss cannot be "
            f"computed from it. Return logits from forward (a dict or ModelOutput with 'logits'),"
            f" or pass per_sample_loss=fn(outputs, batch) -> Tensor[B] that computes one loss "
            f"per sample (reduction='none')."
        )
    return logits


def _find_labels(batch):
    for key in (LABELS_COPY_KEY, *LABEL_KEYS):
        value = batch.get(key) if isinstance(batch, Mapping) else None
        if isinstance(value, torch.Tensor):
            return value
    keys = list(batch.keys()) if isinstance(batch, Mapping) else type(batch).__name__
    raise ValueError(
        f"The batch has no labels: looked for {list(LABEL_KEYS)} in its keys {keys}. Keep the "
        f"label column in the dataset (its name is found as 'labels' then 'label'), or pass "
        f"per_sample_loss=fn(outputs, batch) -> Tensor[B]."
    )


def _is_causal_lm(model) -> bool:
    if model is None:
        return False
    name = type(model).__name__
    return name.endswith("ForCausalLM") or name.endswith("LMHeadModel")


def default_per_sample_loss(outputs, batch, *, loss_type: LossType = "auto", model=None):
    """One loss per sample from a model's ``logits`` and the batch's labels.

    Parameters
    ----------
    outputs : Mapping or ModelOutput
        What the model returned; must hold ``logits``.
    batch : Mapping
        The collated batch; labels are found as ``labels``, ``label`` or ``label_ids``.
    loss_type : {"auto", "classification", "causal_lm", "token"}, default "auto"
        ``"classification"``: cross entropy of ``(B, C)`` logits. ``"causal_lm"``: mean loss of
        the next-token predictions of each sequence. ``"token"``: mean loss over the labelled
        positions (masked LM, token classification). ``"auto"`` picks classification for 2-D
        logits and, for 3-D logits, causal LM when ``model`` is a ``*ForCausalLM`` /
        ``*LMHeadModel``, else token.
    model : torch.nn.Module, optional
        Only used by ``"auto"`` to recognise a causal language model.

    Returns
    -------
    torch.Tensor of float32, shape (B,).

    Examples
    --------
    >>> out = {"logits": torch.tensor([[2.0, 0.0], [0.0, 0.0]])}
    >>> losses = default_per_sample_loss(out, {"labels": torch.tensor([0, 1])})
    >>> [round(v, 4) for v in losses.tolist()]
    [0.1269, 0.6931]
    """
    if loss_type not in LOSS_TYPES:
        raise ValueError(f"loss_type == {loss_type!r}, must be one of {list(LOSS_TYPES)}.")
    logits = _find_logits(outputs)
    labels = _find_labels(batch)
    if loss_type == "auto":
        if logits.ndim == 2:
            loss_type = "classification"
        elif logits.ndim == 3:
            loss_type = "causal_lm" if _is_causal_lm(model) else "token"
        else:
            raise ValueError(
                f"Cannot infer the loss from logits of shape {tuple(logits.shape)}: pass "
                f"loss_type= or per_sample_loss=fn(outputs, batch) -> Tensor[B]."
            )
    if loss_type == "classification":
        return per_sample_cross_entropy(logits, labels)
    return per_sequence_token_loss(logits, labels, shift=loss_type == "causal_lm")


def classification_signals(logits: torch.Tensor, labels: torch.Tensor, names) -> dict:
    """Per-sample training-dynamics signals of a batch, from its ``(B, C)`` logits.

    Computed in float32 from the same logits as the loss (no extra forward):

    - ``correct``: ``argmax(logits) == label`` (bool; ties go to the lower class, as
      ``torch.argmax``);
    - ``true_prob``: ``softmax(logits)[label]``;
    - ``margin``: ``logits[label] - max_{c != label} logits[c]`` (AUM's margin);
    - ``el2n``: ``||softmax(logits) - onehot(label)||_2``;
    - ``probs``: ``softmax(logits)``, shape ``(B, C)``.

    Parameters
    ----------
    logits : torch.Tensor of shape (B, C)
    labels : int torch.Tensor of shape (B,)
    names : iterable of str
        Which of the signals above to return.

    Returns
    -------
    dict of str to torch.Tensor (detached, on the logits' device).

    Examples
    --------
    >>> logits = torch.tensor([[2.0, 0.0, 0.0], [1.0, 3.0, 0.0]])
    >>> out = classification_signals(logits, torch.tensor([0, 0]), ["correct", "margin"])
    >>> out["correct"].tolist(), out["margin"].tolist()
    ([True, False], [2.0, -2.0])
    """
    names = list(names)
    unknown = sorted(set(names) - {"correct", "true_prob", "margin", "el2n", "probs"})
    if unknown:
        raise ValueError(
            f"names contains {unknown}; the per-batch signals are 'correct', 'true_prob', "
            f"'margin', 'el2n' and 'probs'."
        )
    if logits.ndim != 2:
        raise ValueError(
            f"Training-dynamics signals need classification logits of shape (batch, classes), "
            f"got {tuple(logits.shape)}. Record signals only for classification models, or "
            f"record the loss alone (signals=())."
        )
    z = logits.detach().float()
    y = labels.detach().reshape(-1).long().to(z.device)
    num_classes = z.shape[1]
    if y.numel() != z.shape[0]:
        raise ValueError(
            f"{y.numel()} labels for a batch of {z.shape[0]} logits: pass one class id per sample."
        )
    if y.numel() and (int(y.min()) < 0 or int(y.max()) >= num_classes):
        raise ValueError(
            f"labels must be class ids in [0, {num_classes - 1}] to record signals (the model has "
            f"{num_classes} outputs); got values in [{int(y.min())}, {int(y.max())}]."
        )
    out = {}
    rows = torch.arange(len(y), device=z.device)
    p = torch.softmax(z, dim=1) if {"true_prob", "el2n", "probs"} & set(names) else None
    for name in names:
        if name == "correct":
            out[name] = z.argmax(dim=1) == y
        elif name == "true_prob":
            out[name] = p[rows, y]
        elif name == "margin":
            other = z.masked_fill(F.one_hot(y, num_classes).bool(), -math.inf)
            out[name] = z[rows, y] - other.max(dim=1).values
        elif name == "el2n":
            out[name] = torch.linalg.vector_norm(p - F.one_hot(y, num_classes).float(), dim=1)
        else:
            out[name] = p
    return out


def find_feature_module(model, *, num_classes: int | None = None, feature_module=None):
    """The module whose *input* is the penultimate feature vector (the ``embeddings`` signal).

    The rule: the **last** ``torch.nn.Linear`` of ``model.named_modules()`` (registration order)
    whose ``out_features`` equals ``num_classes`` (any ``Linear`` when ``num_classes`` is None),
    i.e. the classifier head of Hugging Face models (``classifier``, ``fc``, ``head``) and of
    plain ``nn.Sequential`` stacks. Its input, flattened to ``(B, D)``, is captured with a forward
    pre-hook during the sweep. When the rule picks the wrong module (a head of several layers
    whose last one is not the classifier, or no ``Linear`` at all), name it: ``feature_module=``
    the name in ``model.named_modules()`` (e.g. ``"classifier.1"``), or the module itself.

    Returns
    -------
    (name, module)

    Examples
    --------
    >>> net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    >>> find_feature_module(net, num_classes=3)[0]
    '2'
    >>> find_feature_module(net, feature_module="0")[0]
    '0'
    """
    model = _unwrap(model)
    names = dict(model.named_modules())
    if feature_module is not None:
        if isinstance(feature_module, torch.nn.Module):
            for name, module in names.items():
                if module is feature_module:
                    return name, module
            raise ValueError(
                f"feature_module == {type(feature_module).__name__} is not a submodule of the "
                f"model; pass one of model.named_modules(), or its name."
            )
        if feature_module not in names:
            some = [n for n in names if n][-10:]
            raise ValueError(
                f"feature_module == {feature_module!r} is not a module of the model; names end "
                f"with {some}. Pass the name of the classifier's last layer (its input is taken "
                f"as the embedding)."
            )
        return feature_module, names[feature_module]
    found = None
    for name, module in names.items():
        if isinstance(module, torch.nn.Linear) and (
            num_classes is None or module.out_features == num_classes
        ):
            found = (name, module)
    if found is None:
        raise ValueError(
            f"Cannot find the classifier head: the model has no torch.nn.Linear with "
            f"out_features == {num_classes} (the number of logits). Pass feature_module= the "
            f"name of the module whose input is the penultimate feature vector."
        )
    return found


class _FeatureCatcher:
    """Forward pre-hooks that keep the last input of the feature module, flattened to ``(B, D)``.

    Without ``feature_module``, every ``Linear`` is hooked for the first batch; once the logits
    give the number of classes, :func:`find_feature_module`'s rule picks one and the other hooks
    go, so no forward pass is repeated.
    """

    def __init__(self, model, feature_module=None):
        self.model = model
        self.name = None
        self._values: dict[str, torch.Tensor] = {}
        self._handles = {}
        if feature_module is not None:
            self.name, module = find_feature_module(model, feature_module=feature_module)
            self._hook_module(self.name, module)
        else:
            for name, module in model.named_modules():
                if isinstance(module, torch.nn.Linear):
                    self._hook_module(name, module)

    def _hook_module(self, name, module):
        def hook(mod, args):
            if args and isinstance(args[0], torch.Tensor):
                self._values[name] = args[0].detach()
            return None

        self._handles[name] = module.register_forward_pre_hook(hook)

    def take(self, batch_size: int, num_classes: int) -> torch.Tensor:
        if self.name is None:
            self.name, _ = find_feature_module(self.model, num_classes=num_classes)
            for name in [n for n in self._handles if n != self.name]:
                self._handles.pop(name).remove()
        name = self.name
        value = self._values.pop(name, None)
        self._values.clear()
        if value is None:
            raise RuntimeError(
                f"The feature module {name!r} did not run in the forward pass, so there are no "
                f"embeddings. Pass feature_module= the name of the classifier's last layer."
            )
        value = value.float().reshape(value.shape[0], -1) if value.ndim != 2 else value.float()
        if value.shape[0] != batch_size:
            raise RuntimeError(
                f"The input of the feature module {name!r} has {value.shape[0]} rows for a batch "
                f"of {batch_size} samples (shape {tuple(value.shape)}): it is not per-sample. "
                f"Pass feature_module= the classifier's last layer."
            )
        return value

    def remove(self) -> None:
        for handle in self._handles.values():
            handle.remove()
        self._handles = {}


# --------------------------------------------------------------------------------------------
# Datasets and collation that carry the sample index
# --------------------------------------------------------------------------------------------


class IndexedDataset(torch.utils.data.Dataset):
    """A map-style dataset whose rows carry their index under ``"cld_hf_index"``.

    The index is added after the wrapped dataset's own transform, so no transform or column
    removal can drop it. Batched reads (``__getitems__``) go to the wrapped dataset, so a
    memory-mapped ``datasets.Dataset`` is read batch by batch, never materialised.

    Parameters
    ----------
    dataset : map-style dataset whose rows are dicts (e.g. ``datasets.Dataset``)
    column : str, default "cld_hf_index"

    Examples
    --------
    >>> from datasets import Dataset
    >>> ds = IndexedDataset(Dataset.from_dict({"x": [10, 20, 30]}))
    >>> ds[2]
    {'x': 30, 'cld_hf_index': 2}
    >>> ds.__getitems__([1, 0])
    [{'x': 20, 'cld_hf_index': 1}, {'x': 10, 'cld_hf_index': 0}]
    """

    def __init__(self, dataset, *, column: str = INDEX_KEY):
        self.dataset = dataset
        self.column = column

    def __len__(self) -> int:
        return len(self.dataset)

    def _tag(self, row, index: int) -> dict:
        if not isinstance(row, Mapping):
            raise TypeError(
                f"Row {index} of the dataset is a {type(row).__name__}, not a dict: the recorder "
                f"needs rows as dicts of columns (e.g. a datasets.Dataset, or return "
                f"{{'pixel_values': x, 'labels': y}} from __getitem__)."
            )
        if self.column in row and int(row[self.column]) != index:
            raise ValueError(
                f"Row {index} already has a column {self.column!r} with value {row[self.column]}:"
                f" that name is reserved for the recorder's row index. Rename the column."
            )
        out = dict(row)
        out[self.column] = index
        return out

    def __getitem__(self, index):
        index = int(index)
        return self._tag(self.dataset[index], index)

    def __getitems__(self, indices):
        indices = [int(i) for i in indices]
        n = len(indices)
        if n > 1 and indices[-1] - indices[0] == n - 1 and _is_hf_dataset(self.dataset) and (
            indices == list(range(indices[0], indices[0] + n))
        ):
            # A contiguous run (the sweeps read in order): datasets reads a range as one slice,
            # ~20x faster than a list of row indices. Same rows, same format and transform.
            batch = self.dataset[range(indices[0], indices[0] + n)]
            rows = [{col: values[i] for col, values in batch.items()} for i in range(n)]
        else:
            getitems = getattr(self.dataset, "__getitems__", None)
            rows = getitems(indices) if getitems is not None else [self.dataset[i] for i in indices]
        return [self._tag(row, i) for row, i in zip(rows, indices)]

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]

    def __repr__(self) -> str:
        return f"IndexedDataset({self.dataset!r}, column={self.column!r})"


class IndexCollator:
    """Collate rows that carry ``cld_hf_index``: the index becomes a ``LongTensor`` of the batch.

    The index is taken out of every row before the wrapped collator sees it (so a padding
    collator is not confused by it) and put back as ``batch["cld_hf_index"]``. Rows without an
    index (e.g. an evaluation set) pass through unchanged.

    Parameters
    ----------
    collate_fn : callable, optional
        The collator of the rows without their index; ``transformers.default_data_collator``
        when not given.
    columns : iterable of str, optional
        Keep only these keys of every row (what ``remove_unused_columns`` does in the Trainer).
    keep_labels : bool, default False
        Also store the collated labels under ``"cld_hf_labels"`` (for training steps that pop
        ``labels`` before the forward, such as label smoothing).

    Examples
    --------
    >>> collate = IndexCollator()
    >>> batch = collate([{"x": 1.0, "label": 0, "cld_hf_index": 4},
    ...                  {"x": 2.0, "label": 1, "cld_hf_index": 9}])
    >>> batch["cld_hf_index"].tolist(), batch["labels"].tolist()
    ([4, 9], [0, 1])
    """

    def __init__(self, collate_fn: Callable | None = None, *, columns=None, keep_labels=False,
                 column: str = INDEX_KEY):
        if collate_fn is None:
            from transformers import default_data_collator

            collate_fn = default_data_collator
        self.collate_fn = collate_fn
        self.columns = None if columns is None else frozenset(columns)
        self.keep_labels = keep_labels
        self.column = column

    def __call__(self, features):
        features = list(features)
        has = [isinstance(f, Mapping) and self.column in f for f in features]
        if not any(has):
            rows = [self._keep(f) for f in features]
            return self.collate_fn(rows)
        if not all(has):
            raise ValueError(
                f"Some rows of the batch carry {self.column!r} and others do not: wrap the whole "
                f"dataset in IndexedDataset (or add the column to every row)."
            )
        index = torch.tensor([int(f[self.column]) for f in features], dtype=torch.long)
        rows = [self._keep({k: v for k, v in f.items() if k != self.column}) for f in features]
        batch = self.collate_fn(rows)
        if not isinstance(batch, Mapping):
            raise TypeError(
                f"The collator returned a {type(batch).__name__}; IndexCollator needs a dict-like "
                f"batch to add {self.column!r} to."
            )
        if not isinstance(batch, dict):  # BatchEncoding and other Mappings: keep the type if it can
            try:
                batch[self.column] = index
            except TypeError:
                batch = dict(batch)
                batch[self.column] = index
        else:
            batch[self.column] = index
        if self.keep_labels:
            for key in LABEL_KEYS:
                if isinstance(batch.get(key), torch.Tensor):
                    batch[LABELS_COPY_KEY] = batch[key]
                    break
        return batch

    def _keep(self, row):
        if self.columns is None or not isinstance(row, Mapping):
            return row
        return {k: v for k, v in row.items() if k in self.columns}

    def __repr__(self) -> str:
        return f"IndexCollator({self.collate_fn!r}, keep_labels={self.keep_labels})"


def _is_hf_dataset(dataset) -> bool:
    import datasets

    return isinstance(dataset, datasets.Dataset)


def _forward_parameters(model) -> set[str] | None:
    """Keyword names ``model.forward`` accepts; ``None`` if it takes ``**kwargs``."""
    try:
        params = inspect.signature(model.forward).parameters.values()
    except (TypeError, ValueError):
        return None
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return None
    return {p.name for p in params if p.kind is not inspect.Parameter.VAR_POSITIONAL}


def _model_input_columns(model, label_column: str | None) -> set[str] | None:
    """The named parameters of ``model.forward`` plus the label names, as the Trainer keeps
    (``Trainer._set_signature_columns_if_needed``); ``None`` (keep every column) when forward
    names no parameter at all (``forward(self, **batch)``)."""
    try:
        params = inspect.signature(model.forward).parameters.values()
    except (TypeError, ValueError):
        return None
    named = {p.name for p in params
             if p.kind not in (inspect.Parameter.VAR_KEYWORD, inspect.Parameter.VAR_POSITIONAL)}
    if not named:
        return None
    names = named | set(LABEL_KEYS)
    if label_column is not None:
        names.add(label_column)
    return names


def _unwrap(model):
    """The module inside DDP / DataParallel. Other wrappers (FSDP, DeepSpeed) stay: their forward
    is collective, which is why every process runs the same number of sweep batches."""
    while isinstance(model, (torch.nn.parallel.DistributedDataParallel, torch.nn.DataParallel)):
        model = model.module
    return model


def _dataset_labels(dataset, label_column, given, name: str) -> np.ndarray:
    if not hasattr(dataset, "__len__") or not hasattr(dataset, "__getitem__"):
        raise TypeError(
            f"{name}_dataset is a {type(dataset).__name__} without a length: the recorder needs a "
            f"map-style dataset (e.g. a datasets.Dataset, not an IterableDataset) so that every "
            f"sample has an index."
        )
    if given is not None:
        labels = _check_labels(given, f"{name}_labels")
        if len(labels) != len(dataset):
            raise ValueError(
                f"{name}_labels has {len(labels)} entries but {name}_dataset has {len(dataset)} "
                f"rows: pass one label per row, in row order."
            )
        return labels.astype(np.int64)
    column_names = getattr(dataset, "column_names", None)
    if column_names is None:
        raise TypeError(
            f"{name}_dataset is a {type(dataset).__name__}, not a datasets.Dataset, so its labels "
            f"cannot be read from a column: pass {name}_labels= (one int per row)."
        )
    col = find_label_column(column_names, label_column)
    # One column only, without the dataset's transform: reads N ints, not the rows.
    values = np.asarray(dataset.with_format("numpy", columns=[col])[col][:])
    if values.size == 0:
        return np.zeros(0, dtype=np.int64)  # an empty column reads back as float
    return _check_labels(values, f"{name}_dataset[{col!r}]").astype(np.int64)


def _write_json_atomic(path: Path, data: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2))
    os.replace(tmp, path)


def _check_choice(value, name: str, choices) -> None:
    if value not in choices:
        raise ValueError(f"{name} == {value!r}, must be one of {list(choices)}.")


def _check_positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} == {value!r}, must be an integer >= 1.")
    return int(value)


def _check_signals(signals, *, mode: str, streaming: bool) -> tuple[str, ...]:
    """The requested signals as a tuple without duplicates, or an error naming the fix."""
    if isinstance(signals, str):
        raise TypeError(f"signals == {signals!r}: pass a list of names, e.g. signals=[{signals!r}].")
    names = tuple(dict.fromkeys(signals or ()))
    valid = SNAPSHOT_SIGNALS + FINAL_SIGNALS
    unknown = [n for n in names if n not in valid]
    if unknown:
        raise ValueError(f"signals contains {unknown}, each must be one of {list(valid)}.")
    if names and streaming:
        raise ValueError(
            f"signals == {list(names)} needs the store, but streaming=True keeps none. Record "
            f"with streaming=False to record signals."
        )
    per_snapshot = [n for n in names if n in SNAPSHOT_SIGNALS]
    if per_snapshot and mode != "sweep":
        raise ValueError(
            f"signals {per_snapshot} are taken from the eval-mode sweep of every snapshot, but "
            f"mode == {mode!r} takes the training losses from the training forward passes. Use "
            f"mode='sweep', or record only {list(FINAL_SIGNALS)} (a sweep at the end)."
        )
    return names


# --------------------------------------------------------------------------------------------
# The recorder
# --------------------------------------------------------------------------------------------


class LossRecorder:
    """Record the per-sample losses of a training set and a query set, one snapshot per epoch.

    Every process runs :meth:`record` at the same point; the losses of all processes are gathered
    by sample index into one snapshot, which the main process appends to a
    :class:`~cld_hf.trajectories.LossTrajectories` store in ``output_dir``.

    Parameters
    ----------
    accelerator : accelerate.Accelerator
        Gives the device, the processes and mixed precision (``accelerator.autocast``).
    train_dataset : datasets.Dataset or map-style dataset of dict rows
        The training set, ``N`` rows. Sample ``i`` is row ``i``.
    query_dataset : same kind
        The held-out query set, ``Q >= 1`` rows, with samples of every training class.
    output_dir : str or os.PathLike
        Where the store (``snapshot-*.arrow``), ``recorder.json`` and ``scores.arrow`` go.
    mode : {"sweep", "train_pass"}, default "sweep"
        Where the training losses come from (see the module docstring): an eval-mode sweep after
        each epoch (Algorithm 1), or the training forward passes of the epoch (:meth:`feed`,
        :meth:`capture`). In ``train_pass`` mode the first snapshot, taken before any training
        pass has been fed, is a sweep.
    every_n_epochs : int, default 1
        Record only epochs ``0, k, 2k, ...`` (``record`` returns False for the others).
    streaming : bool, default False
        Keep no trajectory: feed each snapshot into a :class:`~cld_hf.scoring.StreamingCLD`
        (``O(N)`` state, saved as ``streaming-state-*.safetensors``). ``scored_dataset`` then has
        no ``loss_trajectory`` column.
    eval_transform : callable, optional
        A ``datasets`` batch transform (``Dataset.with_transform`` semantics) used *instead of*
        the datasets' own transforms for every recording sweep of the training and query sets,
        e.g. resize and normalise without augmentation. ``None`` reads each dataset as it is.
    collate_fn : callable, optional
        Collator of the rows (``transformers.default_data_collator`` by default); use the one of
        your training loader, e.g. ``DataCollatorWithPadding(tokenizer)`` for text.
    batch_size : int, default 64
        Per-process batch size of the sweeps.
    per_sample_loss : callable, optional
        ``fn(outputs, batch) -> Tensor[B]``: the loss of each sample of a batch. By default the
        loss is derived from ``outputs.logits`` and the batch's labels (see ``loss_type``).
    loss_type : {"auto", "classification", "causal_lm", "token"}, default "auto"
        See :func:`default_per_sample_loss`.
    label_column : str, optional
        Label column of both datasets (found as ``labels`` then ``label`` when not given).
    train_labels, query_labels : int arrays, optional
        Labels given directly, for datasets without a label column (e.g. torch datasets).
    remove_unused_columns : bool, default True
        Give the model only the columns its ``forward`` accepts (and the labels), as the Trainer
        does; columns are dropped after ``eval_transform``.
    input_columns : iterable of str, optional
        The columns to keep when ``remove_unused_columns``; inferred from ``model.forward``.
    missing_query_class : {"error", "global"}, default "error"
        A training class without query samples: fail now, or score it against the all-class
        query trajectory (see :func:`~cld_hf.scoring.cld_scores`).
    unseen : {"error", "sweep"}, default "error"
        ``train_pass`` mode: a training sample that no fed batch contained (dropped last batch,
        mid-epoch resume) is an :class:`IncompleteSnapshotError` naming it, or (``"sweep"``) its
        loss is taken by an eval-mode forward at the end of the epoch.
    if_exists : {"error", "overwrite", "resume"}, default "error"
        What to do when ``output_dir`` already holds a recording: refuse, start over, or continue
        it (then rewind to a checkpoint with :meth:`load_state_dict` or :meth:`rewind`).
    num_workers : int, default 0
        DataLoader workers of the sweeps.
    progress : bool, default True
        tqdm progress bars for the sweeps, on the main process.
    metadata : dict, optional
        JSON-serialisable information kept in the store.
    signals : iterable of str, default ()
        Extra signals of the training samples for the baselines (module docstring), computed
        from the logits of the loss sweep (classification only): per snapshot any of
        :data:`SNAPSHOT_SIGNALS` (``correct``, ``true_prob``, ``margin``, ``el2n``,
        ``grad_projection``), and at the end of training any of :data:`FINAL_SIGNALS`
        (``embeddings``, ``probs``; taken by ``record(model, final=True)`` or
        :meth:`record_final_features`). Needs ``mode="sweep"`` for the per-snapshot signals and
        ``streaming=False`` (they live in the store).
    feature_module : str or torch.nn.Module, optional
        The module whose input is the ``embeddings`` signal (also used by ``grad_projection``);
        by default the last ``Linear`` with one output per class (see
        :func:`find_feature_module`).

    Examples
    --------
    Four training and two query samples; a bias shift stands in for an epoch of training:

    >>> import tempfile
    >>> from accelerate import Accelerator
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
    >>> recorder = LossRecorder(Accelerator(cpu=True), train, query,
    ...                         output_dir=tempfile.mkdtemp(), progress=False)
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

    With two processes, a sweep batch size of 16 and 82 training samples, each process computes
    the losses of 41 samples (3 batches); the gathered snapshot holds 82 losses, one per sample
    index, whatever order the loaders produced them in.
    """

    def __init__(
        self,
        accelerator,
        train_dataset,
        query_dataset,
        *,
        output_dir,
        mode: Mode = "sweep",
        every_n_epochs: int = 1,
        streaming: bool = False,
        eval_transform: Callable | None = None,
        collate_fn: Callable | None = None,
        batch_size: int = 64,
        per_sample_loss: Callable | None = None,
        loss_type: LossType = "auto",
        label_column: str | None = None,
        train_labels=None,
        query_labels=None,
        remove_unused_columns: bool = True,
        input_columns=None,
        missing_query_class: str = "error",
        unseen: Unseen = "error",
        if_exists: IfExists = "error",
        num_workers: int = 0,
        progress: bool = True,
        metadata: dict | None = None,
        signals=(),
        feature_module=None,
    ):
        # User-provided options
        _check_choice(mode, "mode", MODES)
        _check_choice(loss_type, "loss_type", LOSS_TYPES)
        _check_choice(unseen, "unseen", UNSEEN)
        _check_choice(if_exists, "if_exists", IF_EXISTS)
        if per_sample_loss is not None and not callable(per_sample_loss):
            raise TypeError(
                f"per_sample_loss must be a callable fn(outputs, batch) -> Tensor[B], not "
                f"{type(per_sample_loss).__name__}."
            )
        if eval_transform is not None and not callable(eval_transform):
            raise TypeError(
                f"eval_transform must be callable, not {type(eval_transform).__name__}."
            )
        if eval_transform is not None and not hasattr(train_dataset, "with_transform"):
            raise TypeError(
                f"eval_transform needs datasets.Dataset inputs (it is applied with "
                f"Dataset.with_transform); train_dataset is a {type(train_dataset).__name__}. "
                f"Apply the transform in your dataset instead."
            )
        self.accelerator = accelerator
        self.train_dataset = train_dataset
        self.query_dataset = query_dataset
        self.output_dir = Path(output_dir)
        self.mode = mode
        self.every_n_epochs = _check_positive_int(every_n_epochs, "every_n_epochs")
        self.streaming = bool(streaming)
        self.eval_transform = eval_transform
        self.collate_fn = collate_fn
        self.batch_size = _check_positive_int(batch_size, "batch_size")
        self.per_sample_loss_fn = per_sample_loss
        self.loss_type = loss_type
        self.label_column = label_column
        self.remove_unused_columns = bool(remove_unused_columns)
        self.input_columns = None if input_columns is None else set(input_columns)
        self.missing_query_class = missing_query_class
        self.unseen = unseen
        self.num_workers = int(num_workers)
        self.progress = bool(progress)
        self.signals = _check_signals(signals, mode=mode, streaming=self.streaming)
        self.feature_module = feature_module

        self.train_labels = _dataset_labels(train_dataset, label_column, train_labels, "train")
        self.query_labels = _dataset_labels(query_dataset, label_column, query_labels, "query")
        if len(self.train_labels) == 0:
            raise ValueError("train_dataset is empty: there is nothing to score.")
        if len(self.query_labels) == 0:
            raise ValueError(
                "query_dataset is empty (Q == 0): CLD compares every training sample with the "
                "loss trajectory of the held-out query samples of its class. Hold out a "
                "stratified query set, e.g. train, query = stratified_query_split(ds, "
                "fraction=0.1)."
            )
        # Validates the classes now (a training class without query samples), not after training.
        self._scorer = StreamingCLD(
            self.train_labels, self.query_labels, missing_query_class=missing_query_class
        )

        # Internal state
        self.store: LossTrajectories | None = None
        self._snapshots: list[dict] = []  # {"index", "epoch", "step"} per snapshot
        self._pinned: set[int] = set()  # streaming states referenced by a checkpoint
        self._last_epoch: float | None = None
        self._fed_index: list[torch.Tensor] = []
        self._fed_loss: list[torch.Tensor] = []
        self._fed_order: list[torch.Tensor] = []
        self._num_fed_batches = 0
        self._capturing = True
        self._open(if_exists, metadata)

    # ------------------------------------------------------------------ processes
    @property
    def is_main_process(self) -> bool:
        return bool(getattr(self.accelerator, "is_main_process", True))

    @property
    def num_processes(self) -> int:
        return int(getattr(self.accelerator, "num_processes", 1))

    @property
    def process_index(self) -> int:
        return int(getattr(self.accelerator, "process_index", 0))

    @property
    def device(self) -> torch.device:
        return torch.device(getattr(self.accelerator, "device", "cpu"))

    def _barrier(self) -> None:
        if self.num_processes > 1:
            self.accelerator.wait_for_everyone()

    @property
    def num_train(self) -> int:
        return len(self.train_labels)

    @property
    def num_query(self) -> int:
        return len(self.query_labels)

    # ------------------------------------------------------------------ persistence
    def _exists(self) -> bool:
        return (self.output_dir / _RECORDER_META).is_file() or (
            self.output_dir / "store.json"
        ).is_file()

    def _open(self, if_exists: str, metadata: dict | None) -> None:
        exists = self._exists()
        self._barrier()  # every process has looked before the main one writes anything
        if exists and if_exists == "error":
            raise FileExistsError(
                f"output_dir {str(self.output_dir)!r} already holds a loss recording. Pass "
                f"if_exists='overwrite' to start a new one there, if_exists='resume' to continue "
                f"it (then rewind it to your checkpoint with accelerator.load_state or "
                f"recorder.rewind), or choose another output_dir."
            )
        resume = exists and if_exists == "resume"
        if resume:
            self._load_meta()
        error = None
        if self.is_main_process:
            try:
                self._open_store(resume, metadata)
            except (OSError, ValueError) as err:
                error = err
        # Every process learns whether the main one failed, so that none waits for it forever.
        if self._any_process(error is not None):
            if error is not None:
                raise error
            raise RuntimeError(f"The main process could not open the recording in "
                               f"{str(self.output_dir)!r}; its error says why.")
        self._barrier()
        if resume:
            if not self.streaming:
                store = self._read_store()
                self._snapshots = [
                    {"index": i["index"], "epoch": i["epoch"], "step": i["step"]}
                    for i in store.snapshot_info
                ]
            n = len(self._snapshots)
            if self.streaming and n and not self._streaming_path(n).is_file():
                raise FileNotFoundError(
                    f"output_dir {str(self.output_dir)!r} lists {n} streamed snapshots but has no "
                    f"streaming state for them ({self._streaming_path(n).name}). Rewind to a "
                    f"checkpoint (accelerator.load_state or recorder.rewind), or pass "
                    f"if_exists='overwrite' to start over."
                )
            if self.streaming and n:
                self._load_streaming(n)
            if self._snapshots:
                self._last_epoch = self._snapshots[-1]["epoch"]
            logger.info("Resuming the loss recording in %s at %d snapshot(s).", self.output_dir, n)
        else:
            self._snapshots = []
            self._pinned = set()
        self._save_meta()

    def _open_store(self, resume: bool, metadata: dict | None) -> None:
        """Main process: create (or, resuming, open and check) the store in ``output_dir``."""
        self.output_dir.mkdir(parents=True, exist_ok=True)
        if not resume:
            self._clear_streaming_files(keep=())
            (self.output_dir / _SCORES_FILE).unlink(missing_ok=True)
        if self.streaming:
            return
        if resume and (self.output_dir / "store.json").is_file():
            self.store = LossTrajectories(self.output_dir)
            self._check_store(self.store)
        else:
            meta = {"mode": self.mode, "every_n_epochs": self.every_n_epochs,
                    "signals": list(self.signals), **(metadata or {})}
            self.store = LossTrajectories.create(
                self.output_dir, self.train_labels, self.query_labels, metadata=meta,
                overwrite=True,
            )

    def _check_store(self, store: LossTrajectories) -> None:
        if (store.num_train, store.num_query) != (self.num_train, self.num_query) or not (
            np.array_equal(store.train_labels, self.train_labels)
            and np.array_equal(store.query_labels, self.query_labels)
        ):
            raise ValueError(
                f"The store in {str(self.output_dir)!r} was recorded for N={store.num_train} "
                f"training and Q={store.num_query} query samples (or other labels); this recorder "
                f"has N={self.num_train}, Q={self.num_query}. Ensure the same datasets are used "
                f"to resume, or pass if_exists='overwrite' to start over."
            )

    def _read_store(self) -> LossTrajectories:
        if self.store is not None:
            return self.store
        return LossTrajectories(self.output_dir)  # non-main processes read the main one's files

    def _load_meta(self) -> None:
        path = self.output_dir / _RECORDER_META
        if not path.is_file():
            return
        meta = json.loads(path.read_text())
        if meta.get("format") != RECORDER_FORMAT or meta.get("version", 0) > RECORDER_VERSION:
            raise ValueError(f"{path} is not a cld-hf recorder file this version reads.")
        if bool(meta.get("streaming")) != self.streaming:
            raise ValueError(
                f"The recording in {str(self.output_dir)!r} was made with streaming="
                f"{meta.get('streaming')}, this recorder has streaming={self.streaming}: use the "
                f"same setting to resume, or pass if_exists='overwrite'."
            )
        if (meta.get("num_train"), meta.get("num_query")) != (self.num_train, self.num_query):
            raise ValueError(
                f"The recording in {str(self.output_dir)!r} has N={meta.get('num_train')}, "
                f"Q={meta.get('num_query')}; this recorder has N={self.num_train}, "
                f"Q={self.num_query}. Ensure the same datasets are used to resume."
            )
        self._snapshots = [dict(s) for s in meta.get("snapshots", [])]
        self._pinned = {int(p) for p in meta.get("pinned", [])}

    def _save_meta(self) -> None:
        if not self.is_main_process:
            return
        _write_json_atomic(self.output_dir / _RECORDER_META, self._meta())

    def _meta(self) -> dict:
        return {
            "format": RECORDER_FORMAT,
            "version": RECORDER_VERSION,
            "mode": self.mode,
            "streaming": self.streaming,
            "every_n_epochs": self.every_n_epochs,
            "num_train": self.num_train,
            "num_query": self.num_query,
            "snapshots": [dict(s) for s in self._snapshots],
            "pinned": sorted(self._pinned),
        }

    def _streaming_path(self, num_snapshots: int) -> Path:
        return self.output_dir / f"streaming-state-{num_snapshots:05d}.safetensors"

    def _save_streaming(self) -> None:
        if not self.is_main_process:
            return
        from safetensors.numpy import save_file

        state = self._scorer.state_dict()
        counters = {k: str(int(state.pop(k))) for k in ("num_updates", "num_used")}
        n = self.num_snapshots
        path = self._streaming_path(n)
        tmp = path.with_name(path.name + ".tmp")
        arrays = {k: np.ascontiguousarray(v) for k, v in state.items()}
        save_file(arrays, str(tmp), metadata=counters)
        os.replace(tmp, path)
        self._clear_streaming_files(keep={n, *self._pinned})

    def _load_streaming(self, num_snapshots: int) -> None:
        scorer = StreamingCLD(
            self.train_labels, self.query_labels, missing_query_class=self.missing_query_class
        )
        if num_snapshots:
            from safetensors import safe_open

            path = self._streaming_path(num_snapshots)
            if not path.is_file():
                raise FileNotFoundError(
                    f"No streaming state for {num_snapshots} snapshots in "
                    f"{str(self.output_dir)!r} ({path.name}): states are kept for the latest "
                    f"snapshot and for those saved with a checkpoint (state_dict). Rewind to one "
                    f"of those: {sorted(self._streaming_counts())}."
                )
            with safe_open(str(path), framework="numpy") as f:
                state = {k: f.get_tensor(k) for k in f.keys()}
                state.update({k: int(v) for k, v in (f.metadata() or {}).items()})
            scorer.load_state_dict(state)
        self._scorer = scorer

    def _streaming_counts(self) -> list[int]:
        out = []
        for p in self.output_dir.glob("streaming-state-*.safetensors"):
            out.append(int(p.name[len("streaming-state-") : -len(".safetensors")]))
        return out

    def _clear_streaming_files(self, keep) -> None:
        if not self.output_dir.is_dir():
            return
        keep = set(keep)
        for n in self._streaming_counts():
            if n not in keep:
                self._streaming_path(n).unlink(missing_ok=True)

    # ------------------------------------------------------------------ snapshot bookkeeping
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
        >>> recorder, model = _example_recorder(every_n_epochs=3)
        >>> [e for e in range(8) if recorder.will_record(e)]
        [0, 3, 6]
        """
        return math.isclose(float(epoch) % self.every_n_epochs, 0.0, abs_tol=1e-9)

    # ------------------------------------------------------------------ train_pass feed
    def feed(self, sample_index, losses) -> None:
        """Add the per-sample losses of one training batch (``train_pass`` mode).

        Call it on every process for every training batch of the epoch, then :meth:`record` at
        the end of the epoch. A sample fed twice in one epoch keeps its first loss.

        Parameters
        ----------
        sample_index : int tensor or array of shape (B,)
            ``batch["cld_hf_index"]`` (see :class:`IndexedDataset`).
        losses : float tensor or array of shape (B,)
            One unreduced loss per sample, e.g. ``recorder.per_sample_loss(outputs, batch)``.

        Examples
        --------
        In a loop: ``index = batch.pop(INDEX_KEY); outputs = model(**batch);
        recorder.feed(index, recorder.per_sample_loss(outputs, batch))``. By hand:

        >>> recorder, model = _example_recorder(mode="train_pass")
        >>> recorder.record(model, epoch=0)            # nothing fed yet: a sweep
        True
        >>> recorder.feed([3, 1], [0.25, 0.5])           # the batches of epoch 1, shuffled
        >>> recorder.feed([0, 2], [1.0, 2.0])
        >>> recorder.record(model, epoch=1)
        True
        >>> recorder.store.snapshot(1)[0].tolist()       # row i = sample i
        [1.0, 0.5, 2.0, 0.25]
        """
        index = torch.as_tensor(sample_index).detach().reshape(-1).to("cpu", torch.long)
        loss = torch.as_tensor(losses).detach().reshape(-1).to("cpu", torch.float32)
        if index.shape != loss.shape:
            raise ValueError(
                f"feed() got {index.numel()} sample indices and {loss.numel()} losses: pass one "
                f"loss per sample of the batch (reduction='none')."
            )
        self._fed_index.append(index)
        self._fed_loss.append(loss)
        self._fed_order.append(torch.full_like(index, self._num_fed_batches))
        self._num_fed_batches += 1

    def _clear_fed(self) -> None:
        self._fed_index, self._fed_loss, self._fed_order = [], [], []
        self._num_fed_batches = 0

    @property
    def num_fed(self) -> int:
        """Losses fed on this process since the last snapshot."""
        return int(sum(t.numel() for t in self._fed_index))

    def capture(self, model):
        """Capture per-sample training losses from ``model``'s forward passes (``train_pass``).

        Registers two hooks on ``model`` (the module inside DDP): before the forward, one takes
        ``cld_hf_index`` (and the label copy of :class:`IndexCollator` ``keep_labels=True``) out
        of the keyword arguments, so the model never sees them; after the forward, the other
        computes the per-sample losses and :meth:`feed`\\ s them. Only forwards in training mode
        whose batch carries ``cld_hf_index`` are captured; ``recorder.capturing = False`` pauses
        capture. Returns a handle; ``handle.remove()`` (or leaving the ``with`` block) removes
        the hooks.

        Examples
        --------
        >>> from torch.utils.data import DataLoader
        >>> recorder, model = _example_recorder(mode="train_pass", epochs=1)
        >>> loader = DataLoader(IndexedDataset(recorder.train_dataset), batch_size=2,
        ...                     shuffle=True, collate_fn=IndexCollator())
        >>> optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        >>> with recorder.capture(model):
        ...     for batch in loader:                 # batch["cld_hf_index"] never reaches forward
        ...         logits = model(**batch)["logits"]
        ...         torch.nn.functional.cross_entropy(logits, batch["labels"]).backward()
        ...         optimizer.step()
        ...         optimizer.zero_grad()
        >>> recorder.num_fed                          # one loss per training sample
        4
        >>> recorder.record(model, epoch=1)
        True
        """
        return _CaptureHandle(self, _unwrap(model))

    @property
    def capturing(self) -> bool:
        """Whether :meth:`capture` hooks feed losses (switch off for epochs not recorded)."""
        return self._capturing

    @capturing.setter
    def capturing(self, value: bool) -> None:
        self._capturing = bool(value)

    # ------------------------------------------------------------------ losses
    def per_sample_loss(self, outputs, batch, model=None) -> torch.Tensor:
        """The loss of each sample of ``batch`` (shape ``(B,)``), as the recorder computes it.

        Uses ``per_sample_loss`` when given, else :func:`default_per_sample_loss`.

        Examples
        --------
        >>> recorder, model = _example_recorder()
        >>> batch = IndexCollator()([recorder.train_dataset[0], recorder.train_dataset[3]])
        >>> recorder.per_sample_loss(model(**batch), batch).shape
        torch.Size([2])
        """
        if self.per_sample_loss_fn is not None:
            losses = self.per_sample_loss_fn(outputs, batch)
        else:
            batch = self._with_labels(batch)
            losses = default_per_sample_loss(outputs, batch, loss_type=self.loss_type, model=model)
        if not isinstance(losses, torch.Tensor):
            losses = torch.as_tensor(losses)
        size = _batch_size(batch)
        if losses.ndim != 1 or (size is not None and losses.shape[0] != size):
            raise ValueError(
                f"per_sample_loss returned shape {tuple(losses.shape)} for a batch of {size} "
                f"samples: return one loss per sample (reduction='none'), shape (B,)."
            )
        return losses.detach().float()

    def _with_labels(self, batch):
        """The batch with a custom label column also under ``labels``."""
        if (self.label_column and isinstance(batch, Mapping) and self.label_column in batch
                and not any(k in batch for k in (LABELS_COPY_KEY, *LABEL_KEYS))):
            batch = {**batch, "labels": batch[self.label_column]}
        return batch

    # ------------------------------------------------------------------ sweeps
    def _columns_for(self, model) -> frozenset | None:
        if not self.remove_unused_columns:
            return None
        cols = self.input_columns
        if cols is None:
            cols = _model_input_columns(_unwrap(model), self.label_column)
            if cols is None:
                return None
        extra = set(LABEL_KEYS) | ({self.label_column} if self.label_column else set())
        return frozenset(set(cols) | extra)

    def _sweep_dataset(self, dataset, columns):
        if self.eval_transform is not None:
            return dataset.with_transform(self.eval_transform)
        fmt = getattr(dataset, "format", None)
        plain_format = isinstance(fmt, dict) and fmt.get("type") != "custom"
        if columns is not None and plain_format and hasattr(dataset, "select_columns"):
            # No custom transform: drop the unused columns before they are read and decoded.
            keep = [c for c in dataset.column_names if c in columns]
            if keep and len(keep) < len(dataset.column_names):
                return dataset.select_columns(keep)
        return dataset

    def _sweep(self, model, dataset, num_rows: int, indices=None, *, desc: str, signals=()):
        """This process's ``(index, loss, signals)`` for its shard of ``indices`` (all rows by
        default); ``signals`` names per-batch signals (:func:`classification_signals` and
        ``embeddings``), returned as ``{name: array with one row per index}``.

        Every process gets the same number of items (the short shards repeat their last one and
        drop it again), hence the same number of batches, so a collective forward (FSDP) lines up.
        """
        from torch.utils.data import DataLoader
        from tqdm.auto import tqdm

        indices = np.arange(num_rows, dtype=np.int64) if indices is None else np.asarray(indices)
        world, rank = self.num_processes, self.process_index
        per = -(-len(indices) // world) if len(indices) else 0
        shard = indices[rank * per : (rank + 1) * per].tolist()
        real = len(shard)
        if per and real < per:
            shard += [shard[-1] if shard else int(indices[0])] * (per - real)
        if per == 0:
            return np.zeros(0, np.int64), np.zeros(0, np.float32), {}

        columns = self._columns_for(model)
        data = IndexedDataset(self._sweep_dataset(dataset, columns))
        loader = DataLoader(
            data, batch_size=self.batch_size, sampler=shard, shuffle=False,
            collate_fn=IndexCollator(self.collate_fn, columns=columns),
            num_workers=self.num_workers, pin_memory=self.device.type == "cuda",
        )
        net = _unwrap(model)
        accepted = _forward_parameters(net)  # None: forward takes **kwargs, pass the whole batch
        was_training = net.training
        net.eval()
        autocast = getattr(self.accelerator, "autocast", None)
        out_index, out_loss = [], []
        out_signals = {name: [] for name in signals}
        batch_signals = [n for n in signals if n != "embeddings"]
        catcher = _FeatureCatcher(net, self.feature_module) if "embeddings" in signals else None
        bar = tqdm(total=len(loader), desc=desc, unit="batch", leave=False,
                   disable=not (self.progress and self.is_main_process))
        try:
            with torch.no_grad():
                for batch in loader:
                    index = batch.pop(INDEX_KEY)
                    batch = _to_device(batch, self.device)
                    inputs = batch if accepted is None else {
                        k: v for k, v in batch.items() if k in accepted}
                    with autocast() if callable(autocast) else contextlib.nullcontext():
                        outputs = net(**inputs)
                    out_index.append(index)
                    out_loss.append(self.per_sample_loss(outputs, batch, model=net).cpu())
                    if signals:
                        logits = _find_logits(outputs)
                        labels = _find_labels(self._with_labels(batch))
                        values = classification_signals(logits, labels, batch_signals)
                        if catcher is not None:
                            values["embeddings"] = catcher.take(len(index), logits.shape[-1])
                        for name, value in values.items():
                            out_signals[name].append(value.cpu())
                    bar.update(1)
        finally:
            bar.close()
            if catcher is not None:
                catcher.remove()
            net.train(was_training)
        idx = torch.cat(out_index).numpy()
        loss = torch.cat(out_loss).numpy().astype(np.float32, copy=False)
        idx[real:] = -1  # the repeated items that evened out the shards
        extras = {name: torch.cat(parts).numpy() for name, parts in out_signals.items()}
        return idx, loss, extras

    # ------------------------------------------------------------------ gathering
    def _gather(self, *arrays: np.ndarray) -> list[np.ndarray]:
        """Concatenate arrays of equal length across processes (padded, since lengths differ)."""
        if self.num_processes == 1:
            return list(arrays)
        from accelerate.utils import gather, pad_across_processes

        out = []
        for arr in arrays:
            is_bool = arr.dtype == bool
            a = arr.astype(np.uint8) if is_bool else arr  # gloo gathers no bool tensors
            t = torch.from_numpy(np.ascontiguousarray(a)).to(self.device)
            pad = -1 if arr.dtype.kind == "i" else 0
            g = gather(pad_across_processes(t, dim=0, pad_index=pad)).cpu().numpy()
            out.append(g.astype(bool) if is_bool else g)
        return out

    def _assemble(self, n: int, index, loss, order=None, *, what: str, extra=None):
        """Write gathered ``(index, loss)`` pairs into an ``(n,)`` array; check every index once.

        ``order`` (train_pass) resolves a sample seen twice: the lowest order (first seen) wins.
        ``extra`` (``{name: array}``, rows aligned with ``index``) is placed by the same indices;
        then ``(losses, {name: array with row i = sample i})`` is returned.
        """
        keep = index >= 0  # -1 marks padding added for the gather
        rows = np.flatnonzero(keep)  # the rows of the gathered arrays that end up placed
        index, loss = index[keep], loss[keep]
        if len(index) and int(index.max()) >= n:
            bad = np.unique(index[index >= n])[:_MAX_NAMED].tolist()
            raise ValueError(
                f"{what}: sample indices {bad} are out of range for {n} samples. The indices must "
                f"be row numbers of the dataset given to the recorder (use IndexedDataset)."
            )
        if order is not None:
            order = order[keep]
            by_time = np.lexsort((order,))  # stable: equal orders keep gather (process) order
            index, loss, rows = index[by_time], loss[by_time], rows[by_time]
            _, first = np.unique(index, return_index=True)
            duplicates = len(index) - len(first)
            if duplicates:
                logger.debug("%s: %d repeated sample(s) kept their first loss.", what, duplicates)
            index, loss, rows = index[first], loss[first], rows[first]
        counts = np.bincount(index, minlength=n)
        dup = np.flatnonzero(counts > 1)
        if len(dup):
            raise ValueError(
                f"{what}: {len(dup)} sample index(es) received more than one loss, first "
                f"{dup[:_MAX_NAMED].tolist()}. Each sample must appear once in a snapshot: "
                f"check that the datasets are not sharded twice (pass the full dataset to every "
                f"process; the recorder splits it)."
            )
        missing = np.flatnonzero(counts == 0)
        if len(missing):
            raise IncompleteSnapshotError(
                f"{what}: {len(missing)} of {n} samples have no loss, first "
                f"{missing[:_MAX_NAMED].tolist()}.", missing=missing,
            )
        out = np.empty(n, dtype=np.float32)
        out[index] = loss
        bad = np.flatnonzero(~np.isfinite(out))
        if len(bad):
            raise ValueError(
                f"{what}: {len(bad)} sample(s) have a NaN or infinite loss, first "
                f"{bad[:_MAX_NAMED].tolist()}. A sequence without any target token (all labels "
                f"-100) has no loss: drop it from the dataset. Otherwise the model diverged "
                f"(lower the learning rate)."
            )
        if extra is None:
            return out
        placed = {}
        for name, values in extra.items():
            values = values[rows]
            arr = np.empty((n, *values.shape[1:]), dtype=values.dtype)
            arr[index] = values
            placed[name] = arr
        return out, placed

    def _sweep_all(self, model, dataset, n: int, indices=None, *, desc: str, signals=()):
        """Sweep and gather: ``(index, loss)``, or ``(index, loss, {name: array})`` when
        ``signals`` are asked for."""
        idx, loss, extras = self._sweep(model, dataset, n, indices, desc=desc, signals=signals)
        if not signals:
            return self._gather(idx, loss)
        names = list(extras)
        idx, loss, *values = self._gather(idx, loss, *(extras[k] for k in names))
        return idx, loss, dict(zip(names, values))

    def _any_process(self, flag: bool) -> bool:
        """``flag`` or'ed over the processes, so that they all take the same branch."""
        if self.num_processes == 1:
            return bool(flag)
        (flags,) = self._gather(np.array([int(flag)], dtype=np.int64))
        return bool((flags > 0).any())

    # ------------------------------------------------------------------ recording
    def record(self, model, *, epoch=None, step=None, final: bool = False) -> bool:
        """Record one snapshot of the training and query losses, on every process.

        Parameters
        ----------
        model : torch.nn.Module
            The model (DDP-wrapped or not). It is put in eval mode for the sweeps and back in
            its previous mode afterwards.
        epoch : int or float, optional
            Epochs completed (0 before training). Defaults to the previous call's epoch + 1
            (0 for the first call): pass it when you do not record before training or skip calls.
        step : int, optional
            Global optimisation step, kept with the snapshot (used to resume at a checkpoint).
        final : bool, default False
            This is the end of training: also capture the requested :data:`FINAL_SIGNALS`
            (``embeddings``, ``probs``) in the same sweep (in ``train_pass`` mode, in a sweep of
            the training set after the snapshot). Nothing more when none was requested.

        Returns
        -------
        bool: False when ``every_n_epochs`` skips this epoch (nothing is recorded, not even the
        final signals: call :meth:`record_final_features`).

        Raises
        ------
        IncompleteSnapshotError
            When a training sample has no loss (``train_pass`` with ``unseen="error"``).

        Examples
        --------
        >>> recorder, model = _example_recorder(every_n_epochs=2)
        >>> [recorder.record(model, epoch=e) for e in range(4)]
        [True, False, True, False]
        >>> recorder.num_snapshots
        2
        """
        if epoch is None:
            epoch = 0 if self._last_epoch is None else self._last_epoch + 1
        self._last_epoch = epoch
        if not self.will_record(epoch):
            self._clear_fed()
            return False
        n, q = self.num_train, self.num_query
        final_names = [s for s in self.signals if s in FINAL_SIGNALS] if final else []
        signals, final_values = {}, {}
        # train_pass: the first snapshot, before any training pass was fed, is a sweep.
        if self.mode == "train_pass" and (
            self.num_snapshots or self._any_process(self._num_fed_batches > 0)
        ):
            train = self._train_pass_losses(model, epoch)
        else:
            what = f"Training losses at epoch {epoch}"
            wanted = self._sweep_signal_names(final_names) if self.mode == "sweep" else ()
            if wanted:
                idx, loss, extras = self._sweep_all(model, self.train_dataset, n,
                                                    desc="CLD sweep (train)", signals=wanted)
                train, placed = self._assemble(n, idx, loss, what=what, extra=extras)
                signals, final_values = self._split_signals(placed, final_names)
            else:
                idx, loss = self._sweep_all(model, self.train_dataset, n, desc="CLD sweep (train)")
                train = self._assemble(n, idx, loss, what=what)
        idx, loss = self._sweep_all(model, self.query_dataset, q, desc="CLD sweep (query)")
        query = self._assemble(q, idx, loss, what=f"Query losses at epoch {epoch}")
        self._clear_fed()
        self._append(train, query, epoch=epoch, step=step, signals=signals)
        if final_names and not final_values:  # train_pass: the training losses were not swept
            self.record_final_features(model)
        elif final_values:
            self._save_final(final_values)
        return True

    def _sweep_signal_names(self, final_names) -> tuple[str, ...]:
        """Per-batch signals a training sweep computes for this snapshot."""
        wanted = [s for s in self.signals if s in SNAPSHOT_SIGNALS and s != "grad_projection"]
        if "grad_projection" in self.signals:
            wanted += ["probs", "embeddings"]  # the snapshot's softmax and features
        wanted += list(final_names)
        return tuple(dict.fromkeys(wanted))

    def _split_signals(self, placed: dict, final_names) -> tuple[dict, dict]:
        """``(per-snapshot signals to store, final arrays)`` from the placed sweep signals."""
        per_snapshot = {k: placed[k] for k in self.signals if k in SNAPSHOT_SIGNALS and k in placed}
        if "grad_projection" in self.signals:
            from .baselines.gradients import gradient_projections

            per_snapshot["grad_projection"] = gradient_projections(
                placed["probs"], placed["embeddings"], self.train_labels)
        return per_snapshot, {k: placed[k] for k in final_names}

    def record_final_features(self, model) -> list[str]:
        """Record the end-of-training signals (``embeddings``, ``probs``) of the training set.

        A sweep of the training set in eval mode (as :meth:`record`, gathered by sample index),
        saved to the store as ``array-<name>.safetensors``. Use it when the last :meth:`record`
        was not called with ``final=True`` (``record(model, final=True)`` takes them in the
        snapshot's own sweep). Returns the names recorded (none when no final signal was asked
        for in ``signals=``).

        Examples
        --------
        >>> recorder, model = _example_recorder(epochs=3, signals=["embeddings", "probs"])
        >>> recorder.record_final_features(model)
        ['embeddings', 'probs']
        >>> recorder.store.load_array("embeddings").shape   # the input of model.lin: 1 feature
        (4, 1)
        """
        names = [s for s in self.signals if s in FINAL_SIGNALS]
        if not names:
            return []
        n = self.num_train
        idx, loss, extras = self._sweep_all(model, self.train_dataset, n,
                                            desc="CLD sweep (final features)", signals=tuple(names))
        _, placed = self._assemble(n, idx, loss, what="Final features", extra=extras)
        self._save_final(placed)
        return names

    def _save_final(self, values: dict) -> None:
        if self.is_main_process:
            for name, array in values.items():
                self.store.save_array(name, array)
        self._barrier()
        logger.info("Recorded the end-of-training signals %s of %d training samples.",
                    sorted(values), self.num_train)

    @property
    def final_features_recorded(self) -> bool:
        """Whether every requested final signal is stored and was taken after the last snapshot
        (True when none was requested)."""
        names = [s for s in self.signals if s in FINAL_SIGNALS]
        if not names:
            return True
        store = self._read_store()
        return all(name in store.array_names
                   and store.array_snapshot(name) == self.num_snapshots for name in names)

    def _train_pass_losses(self, model, epoch) -> np.ndarray:
        n = self.num_train
        parts = ((self._fed_index, np.int64), (self._fed_loss, np.float32),
                 (self._fed_order, np.int64))
        fed = [torch.cat(x).numpy() if x else np.zeros(0, dtype) for x, dtype in parts]
        idx, loss, order = self._gather(*fed)
        what = f"Training-pass losses at epoch {epoch}"
        try:
            return self._assemble(n, idx, loss, order, what=what)
        except IncompleteSnapshotError as err:
            if self.unseen == "error":
                raise IncompleteSnapshotError(
                    f"{err} These training samples were never seen by a training batch fed to the"
                    f" recorder this epoch (a dropped last batch: dataloader_drop_last=True; a "
                    f"mid-epoch resume; a loop that did not feed every batch). Fix: do not drop "
                    f"the last batch, use mode='sweep', or pass unseen='sweep' to record these "
                    f"samples with an eval-mode forward at the end of the epoch.",
                    missing=err.missing,
                ) from None
            missing = np.asarray(err.missing, dtype=np.int64)
            logger.info("Epoch %s: %d training sample(s) unseen by the training pass; sweeping "
                        "them (unseen='sweep').", epoch, len(missing))
        extra_idx, extra_loss = self._sweep_all(model, self.train_dataset, n, missing,
                                                desc="CLD sweep (unseen)")
        keep = idx >= 0
        order_extra = np.full(len(extra_idx), np.iinfo(np.int64).max, np.int64)
        return self._assemble(
            n, np.concatenate([idx[keep], extra_idx]), np.concatenate([loss[keep], extra_loss]),
            np.concatenate([order[keep], order_extra]), what=what,
        )

    def _append(self, train: np.ndarray, query: np.ndarray, *, epoch, step, signals=None) -> None:
        info = {"index": self.num_snapshots,
                "epoch": None if epoch is None else float(epoch),
                "step": None if step is None else int(step)}
        if self.streaming:
            self._scorer.update(train, query)
        elif self.is_main_process:
            self.store.append(train, query, epoch=epoch, step=step, signals=signals or None)
        self._snapshots.append(info)
        if self.streaming:
            self._save_streaming()
        self._save_meta()
        self._barrier()
        logger.info("Recorded loss snapshot %d (epoch %s): mean train loss %.4f, mean query loss "
                    "%.4f.", info["index"], epoch, float(train.mean()), float(query.mean()))

    # ------------------------------------------------------------------ resume
    def rewind(self, *, num_snapshots: int | None = None, step: int | None = None) -> int:
        """Drop the snapshots recorded after a checkpoint; returns the number kept.

        Give ``num_snapshots`` (keep that many) or ``step`` (keep those recorded at a global step
        ``<= step``, e.g. the ``global_step`` of the checkpoint being resumed).

        Examples
        --------
        >>> recorder, model = _example_recorder()
        >>> for epoch, step in [(0, 0), (1, 10), (2, 20)]:
        ...     _ = recorder.record(model, epoch=epoch, step=step)
        >>> recorder.rewind(step=15)           # resume from a checkpoint saved at step 15
        2
        """
        if (num_snapshots is None) == (step is None):
            raise ValueError(
                f"Pass exactly one of num_snapshots= or step=; got num_snapshots={num_snapshots!r},"
                f" step={step!r}."
            )
        if step is not None:
            num_snapshots = 0
            for s in self._snapshots:
                if s["step"] is None:
                    raise ValueError(
                        f"Snapshot {s['index']} was recorded without step=, so the recorder cannot "
                        f"tell whether it came before step {step}: rewind(num_snapshots=...)."
                    )
                if s["step"] <= step:
                    num_snapshots += 1
        if not 0 <= num_snapshots <= self.num_snapshots:
            raise ValueError(
                f"num_snapshots == {num_snapshots}, must be between 0 and the {self.num_snapshots} "
                f"snapshots recorded in {str(self.output_dir)!r}. The recording is behind the "
                f"checkpoint: was it made in another output_dir?"
            )
        if self.streaming:
            self._load_streaming(num_snapshots)
            if self.is_main_process:
                for n in self._streaming_counts():
                    if n > num_snapshots:
                        self._streaming_path(n).unlink(missing_ok=True)
            self._pinned = {p for p in self._pinned if p <= num_snapshots}
        elif self.is_main_process:
            self.store.truncate(num_snapshots)
        del self._snapshots[num_snapshots:]
        self._last_epoch = self._snapshots[-1]["epoch"] if self._snapshots else None
        self._clear_fed()
        self._save_meta()
        self._barrier()
        return num_snapshots

    def state_dict(self) -> dict:
        """Small JSON-serialisable state for ``accelerator.register_for_checkpointing``.

        The losses stay in the Arrow store (``output_dir``); the state records how many
        snapshots the checkpoint covers. With ``streaming=True`` the scorer's ``O(N)`` state is
        written to ``output_dir/streaming-state-<S>.safetensors`` (kept while a checkpoint refers
        to it).

        Examples
        --------
        With ``accelerator.register_for_checkpointing(recorder)``, ``accelerator.save_state``
        saves this state and ``accelerator.load_state`` rewinds the recording to it:

        >>> import json
        >>> recorder, model = _example_recorder(epochs=2)
        >>> state = json.loads(json.dumps(recorder.state_dict()))   # JSON, no pickle needed
        >>> recorder.record(model)
        True
        >>> recorder.load_state_dict(state)
        >>> recorder.num_snapshots, recorder.store.num_snapshots
        (2, 2)
        """
        if self.streaming:
            self._pinned.add(self.num_snapshots)
            self._save_streaming()
            self._save_meta()
        return {
            "format": RECORDER_FORMAT,
            "version": RECORDER_VERSION,
            "num_train": self.num_train,
            "num_query": self.num_query,
            "num_snapshots": self.num_snapshots,
            "snapshots": self.snapshot_info,
            "last_epoch": self._last_epoch,
            "streaming": self.streaming,
        }

    def load_state_dict(self, state: dict) -> None:
        """Rewind to the state of :meth:`state_dict` (the snapshots of that checkpoint)."""
        if state.get("format") != RECORDER_FORMAT:
            raise ValueError(f"state is not a LossRecorder state (format {state.get('format')!r}).")
        if (state["num_train"], state["num_query"]) != (self.num_train, self.num_query):
            raise ValueError(
                f"The checkpoint's recorder state is for N={state['num_train']}, "
                f"Q={state['num_query']}; this recorder has N={self.num_train}, "
                f"Q={self.num_query}. Ensure the same datasets are used to resume."
            )
        if bool(state.get("streaming")) != self.streaming:
            raise ValueError(
                f"The checkpoint was saved with streaming={state.get('streaming')}; this recorder "
                f"has streaming={self.streaming}."
            )
        self.rewind(num_snapshots=int(state["num_snapshots"]))
        self._last_epoch = state.get("last_epoch")

    # ------------------------------------------------------------------ results
    def scores(self, *, first: int | None = None, every: int = 1) -> np.ndarray:
        """CLD scores of the training samples (float32, shape ``(N,)``), on every process.

        ``first`` / ``every`` score a window of the snapshots (not with ``streaming=True``).

        Examples
        --------
        >>> recorder, model = _example_recorder(epochs=3)
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
        return self._read_store().scores(
            first=first, every=every, missing_query_class=self.missing_query_class
        )

    def save_scores(self, scores=None) -> Path:
        """Write ``sample_index``, ``label``, ``cld_score`` to ``output_dir/scores.arrow``.

        Only the main process writes; returns the path.

        Examples
        --------
        >>> recorder, model = _example_recorder(epochs=3)
        >>> recorder.save_scores().name
        'scores.arrow'
        """
        import pyarrow as pa
        import pyarrow.ipc as ipc

        scores = self.scores() if scores is None else np.asarray(scores, np.float32)
        path = self.output_dir / _SCORES_FILE
        if self.is_main_process:
            table = pa.table({
                INDEX_COLUMN: pa.array(np.arange(self.num_train), pa.int64()),
                "label": pa.array(self.train_labels, pa.int64()),
                SCORE_COLUMN: pa.array(scores, pa.float32()),
            })
            tmp = path.with_name(path.name + ".tmp")
            with pa.OSFile(str(tmp), "wb") as sink, ipc.new_file(sink, table.schema) as writer:
                writer.write_table(table)
            os.replace(tmp, path)
        return path

    def scored_dataset(self, *, include_trajectory: bool | None = None, scores=None):
        """The training dataset with ``cld_score`` (float32) and ``loss_trajectory`` columns.

        ``loss_trajectory`` is ``List(Value("float32"), length=S)``, built from an Arrow
        ``FixedSizeListArray`` (no Python lists). With ``streaming=True`` there is no trajectory.
        A custom transform set on the dataset (``with_transform``) is not carried over, since it
        would hide the new columns. ``datasets`` flattens an indices mapping (a dataset made by
        ``select``) to add the columns.

        Examples
        --------
        >>> recorder, model = _example_recorder(epochs=3)
        >>> scored = recorder.scored_dataset()
        >>> scored.features["cld_score"], scored.features["loss_trajectory"]
        (Value('float32'), List(Value('float32'), length=3))
        """
        import datasets

        from .dataset_adapters import add_cld_scores

        if not isinstance(self.train_dataset, datasets.Dataset):
            raise TypeError(
                f"scored_dataset() needs a datasets.Dataset training set, got "
                f"{type(self.train_dataset).__name__}: use recorder.scores() instead."
            )
        if include_trajectory is None:
            include_trajectory = not self.streaming
        if include_trajectory and self.streaming:
            raise ValueError(
                "include_trajectory=True needs the stored trajectory, but this recorder streams "
                "(streaming=True keeps no trajectory). Record with streaming=False."
            )
        scores = self.scores() if scores is None else scores
        ds = self.train_dataset
        if ds.format.get("type") == "custom":
            ds = ds.with_format(None)
        for col in (SCORE_COLUMN, TRAJECTORY_COLUMN):
            if col in ds.column_names:
                raise ValueError(
                    f"The training dataset already has a column {col!r}; remove it "
                    f"(dataset.remove_columns({col!r})) before recording."
                )
        ds = add_cld_scores(ds, scores)
        if include_trajectory:
            matrix = self._read_store().train_losses()
            ds = ds.add_column(
                TRAJECTORY_COLUMN, trajectory_column(matrix),
                feature=datasets.List(datasets.Value("float32"), length=matrix.shape[1]),
            )
        return ds

    def __repr__(self) -> str:
        return (f"LossRecorder(output_dir={str(self.output_dir)!r}, mode={self.mode!r}, "
                f"num_train={self.num_train}, num_query={self.num_query}, "
                f"num_snapshots={self.num_snapshots}, streaming={self.streaming})")


def _batch_size(batch) -> int | None:
    if isinstance(batch, Mapping):
        for key in (INDEX_KEY, *LABEL_KEYS):
            value = batch.get(key)
            if isinstance(value, torch.Tensor) and value.ndim >= 1:
                return int(value.shape[0])
        for value in batch.values():
            if isinstance(value, torch.Tensor) and value.ndim >= 1:
                return int(value.shape[0])
    return None


def _to_device(batch, device):
    from accelerate.utils import send_to_device

    return send_to_device(batch, device)


class _CaptureHandle:
    """Forward hooks of :meth:`LossRecorder.capture`; removable, usable as a context manager."""

    def __init__(self, recorder: LossRecorder, model):
        self.recorder = recorder
        self.model = model
        self._pending: list[tuple[torch.Tensor, Any]] = []
        self._handles = [
            model.register_forward_pre_hook(self._pre, with_kwargs=True),
            model.register_forward_hook(self._post, with_kwargs=True),
        ]

    def _pre(self, module, args, kwargs):
        if INDEX_KEY not in kwargs and LABELS_COPY_KEY not in kwargs:
            self._pending.append(None)
            return None
        kwargs = dict(kwargs)
        index = kwargs.pop(INDEX_KEY, None)
        labels = kwargs.pop(LABELS_COPY_KEY, None)
        self._pending.append((index, labels))
        return args, kwargs

    def _post(self, module, args, kwargs, output):
        pending = self._pending.pop() if self._pending else None
        if pending is None or pending[0] is None:
            return None
        if not (module.training and self.recorder.capturing):
            return None
        index, labels = pending
        batch = dict(kwargs)
        if labels is not None:
            batch[LABELS_COPY_KEY] = labels
        batch[INDEX_KEY] = index
        losses = self.recorder.per_sample_loss(output, batch, model=module)
        self.recorder.feed(index, losses)
        return None

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.remove()
        return False


class _ToyNet(torch.nn.Module):
    """Doctest fixture: a linear classifier of 1-feature inputs."""

    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(1, 2)
        with torch.no_grad():
            self.lin.weight.copy_(torch.tensor([[1.0], [-1.0]]))
            self.lin.bias.zero_()

    def forward(self, x, labels=None):
        logits = self.lin(x)
        if labels is None:
            return {"logits": logits}
        return {"loss": F.cross_entropy(logits, labels), "logits": logits}


def _example_dir() -> str:
    """Doctest fixture: a temporary folder removed when the interpreter exits."""
    import atexit
    import shutil
    import tempfile

    path = tempfile.mkdtemp(prefix="cld-example-")
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


def _example_recorder(*, epochs: int = 0, **options):
    """Doctest fixture (not API): a recorder over 4 training and 2 query samples of a toy
    problem, and its model, after ``epochs`` snapshots taken while a bias shift stands in for
    training."""
    from accelerate import Accelerator
    from datasets import Dataset

    train = Dataset.from_dict({"x": [[0.0], [1.0], [2.0], [3.0]], "label": [0, 1, 0, 1]})
    query = Dataset.from_dict({"x": [[0.5], [2.5]], "label": [0, 1]})
    model = _ToyNet()
    options.setdefault("progress", False)
    recorder = LossRecorder(Accelerator(cpu=True), train, query,
                            output_dir=_example_dir(), **options)
    for epoch in range(epochs):
        with torch.no_grad():
            model.lin.bias.add_(torch.tensor([0.5, -0.5]) * epoch * epoch)
        recorder.record(model, epoch=epoch)
    return recorder, model
