"""How the sample index travels: datasets and collators that carry it, and the column rules.

A sample is known by its integer index in the dataset given to the recorder, never by its position
in a batch: :class:`IndexedDataset` adds the row's index under ``"cld_hf_index"``
(:data:`INDEX_KEY`) to every row it returns, *after* the dataset's own transform, so a transform,
a shuffled sampler or ``remove_unused_columns`` cannot lose it; :class:`IndexCollator` turns those
into a ``LongTensor`` of the batch. The key is the recorder's own: a ``sample_index`` column of the
dataset (its rows in the source it was split from) is left alone, as data.

The grouping rules (class, ``group_column`` or label-free) are in :mod:`cld_hf.groups`, which
imports no torch; their names are re-exported here.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Mapping

import torch

from ..groups import (  # noqa: F401  (re-exported: the recorder's column rules)
    GROUP_COLUMN,
    Grouping,
    add_group_column,
    check_class_ids,
    dataset_labels,
    has_class_column,
    is_token_column,
    resolve_groups,
)
from .losses import LABEL_KEYS, LABELS_COPY_KEY

logger = logging.getLogger(__name__)

__all__ = [
    "INDEX_KEY",
    "IndexedDataset",
    "IndexCollator",
    "is_hf_dataset",
    "forward_parameters",
    "model_input_columns",
    "dataset_labels",
    "check_class_ids",
    "GROUP_COLUMN",
    "Grouping",
    "resolve_groups",
    "is_token_column",
    "has_class_column",
    "add_group_column",
]

INDEX_KEY = "cld_hf_index"
"""Batch key of the sample's row number in the dataset given to the recorder (see
:class:`IndexedDataset`); never passed to the model."""


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
        if n > 1 and indices[-1] - indices[0] == n - 1 and is_hf_dataset(self.dataset) and (
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


def is_hf_dataset(dataset) -> bool:
    """Whether ``dataset`` is a ``datasets.Dataset`` (without importing ``datasets`` otherwise).

    Examples
    --------
    >>> is_hf_dataset([1, 2])
    False
    """
    import sys

    if "datasets" not in sys.modules:
        return False
    import datasets

    return isinstance(dataset, datasets.Dataset)


def forward_parameters(model) -> set[str] | None:
    """Keyword names ``model.forward`` accepts; ``None`` if it takes ``**kwargs``.

    Examples
    --------
    >>> forward_parameters(torch.nn.Linear(2, 2))
    {'input'}
    """
    try:
        params = inspect.signature(model.forward).parameters.values()
    except (TypeError, ValueError):
        return None
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return None
    return {p.name for p in params if p.kind is not inspect.Parameter.VAR_POSITIONAL}


def model_input_columns(model, label_column: str | None) -> set[str] | None:
    """The named parameters of ``model.forward`` plus the label names, as the Trainer keeps
    (``Trainer._set_signature_columns_if_needed``); ``None`` (keep every column) when forward
    names no parameter at all (``forward(self, **batch)``).

    Examples
    --------
    >>> sorted(model_input_columns(torch.nn.Linear(2, 2), "target"))
    ['input', 'label', 'label_ids', 'labels', 'target']

    Under PEFT the base model's forward is read, as the Trainer does (``PeftModel.forward`` takes
    ``**kwargs``).
    """
    if callable(getattr(model, "get_base_model", None)) and hasattr(model, "peft_config"):
        model = model.get_base_model()
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
