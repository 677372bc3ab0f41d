"""How samples are grouped for scoring, from the dataset's columns. NumPy and ``datasets``; no
torch.

Algorithm 1 scores each sample against the query trajectory of its class and keeps a budget per
class. :func:`resolve_groups` decides the grouping (:class:`Grouping`): by class (a scalar
integer class column, ``labels`` then ``label``, or ``label_column``), by a named
``group_column`` (a task, source or domain column: any scalar values), or not at all
(``label_free``: one query trajectory and one budget, the one-class case). A token-level
``labels`` column (language models) is never taken for a class; token data without a class
column is label-free. A scored dataset whose grouping is not its class column carries the group
of each row as ``cld_group`` (:data:`GROUP_COLUMN`, :func:`add_group_column`), which selection
reads back (:func:`cld_hf.select_coreset`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from ._validation import check_labels
from .columns import LABEL_CANDIDATES, find_label_column

logger = logging.getLogger(__name__)

__all__ = [
    "GROUP_COLUMN",
    "Grouping",
    "resolve_groups",
    "dataset_labels",
    "check_class_ids",
    "is_token_column",
    "has_class_column",
    "add_group_column",
    "no_class_column_message",
    "selection_column",
]

GROUP_COLUMN = "cld_group"
"""Column of a scored dataset holding the group each row was scored in (``ClassLabel``), added
when the grouping is not the dataset's own class column (label-free, or a ``group_column``):
``select_coreset(scored, label_column="cld_group")`` then gives the same budgets."""

def dataset_labels(dataset, label_column, given, name: str) -> np.ndarray:
    """The class id of every row of ``dataset`` (``name`` is ``"train"`` or ``"query"``).

    ``given`` labels win (one per row); otherwise the label column is read (one column, without
    the dataset's transform): ``label_column``, else ``labels``, then ``label``.

    Examples
    --------
    >>> from datasets import Dataset
    >>> dataset_labels(Dataset.from_dict({"x": [1, 2], "label": [1, 0]}), None, None, "train")
    array([1, 0])
    """
    _check_map_style(dataset, name)
    if given is not None:
        labels = check_labels(given, f"{name}_labels")
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
            f"cannot be read from a column: pass a datasets.Dataset with a label column, or, in "
            f"your own loop, LossRecorder(..., {name}_labels=<one int per row>), or "
            f"label_free=True to score without classes."
        )
    col = _class_column(dataset, label_column)  # never a token-level 'labels' unless named
    if col is None:
        raise ValueError(no_class_column_message(column_names, f"{name}_dataset"))
    # One column only, without the dataset's transform: reads N ints, not the rows.
    values = np.asarray(dataset.with_format("numpy", columns=[col])[col][:])
    if values.size == 0:
        return np.zeros(0, dtype=np.int64)  # an empty column reads back as float
    if values.ndim > 1 or values.dtype == object:
        raise ValueError(
            f"{name}_dataset[{col!r}] holds a sequence per row (shape {values.shape}), not one "
            f"class id: a token-level 'labels' column (language models) is not a class. Name the "
            f"class column with label_column=..., or pass label_free=True (one group) or "
            f"group_column='<task/source column>'."
        )
    labels = check_labels(values, f"{name}_dataset[{col!r}]").astype(np.int64)
    return check_class_ids(labels, f"{name}_dataset[{col!r}]")


def check_class_ids(labels: np.ndarray, name: str, num_classes: int | None = None) -> np.ndarray:
    """Class ids must be ``0 .. num_classes - 1``; ``-100`` (an ignored token) is no class.

    Examples
    --------
    >>> check_class_ids(np.array([0, 2]), "labels", 3).tolist()
    [0, 2]
    >>> check_class_ids(np.array([0, -100]), "labels")
    Traceback (most recent call last):
    ...
    ValueError: labels holds 1 negative label(s) (e.g. -100 at row 1): class ids are >= 0...
    """
    if len(labels) and labels.min() < 0:
        bad = np.flatnonzero(labels < 0)
        raise ValueError(
            f"{name} holds {len(bad)} negative label(s) (e.g. {int(labels[bad[0]])} at row "
            f"{int(bad[0])}): class ids are >= 0, and -100 marks tokens a loss ignores, not a "
            f"class. Drop or relabel those rows before recording."
        )
    if num_classes is not None and len(labels) and labels.max() >= num_classes:
        bad = np.flatnonzero(labels >= num_classes)
        raise ValueError(
            f"{name} holds label {int(labels[bad[0]])} at row {int(bad[0])}, but the model has "
            f"{num_classes} outputs (classes 0..{num_classes - 1}): give the model "
            f"num_labels={int(labels.max()) + 1}, or fix the labels."
        )
    return labels


# ---------------------------------------------------------------------- grouping
_TOKEN_INPUTS = ("input_ids", "decoder_input_ids", "inputs_embeds")


def is_token_column(dataset, column: str) -> bool:
    """Whether ``dataset[column]`` holds a sequence per row (token-level labels), from its
    feature when there is one, else from the first row.

    Examples
    --------
    >>> from datasets import Dataset
    >>> ds = Dataset.from_dict({"labels": [[5, 6, -100], [7, -100, -100]], "label": [0, 1]})
    >>> is_token_column(ds, "labels"), is_token_column(ds, "label")
    (True, False)
    """
    import datasets

    features = getattr(dataset, "features", None) or {}
    feature = features.get(column)
    if feature is not None:
        return isinstance(feature, (datasets.List, datasets.Sequence, datasets.LargeList)) or (
            isinstance(feature, (list, tuple)))
    if not len(dataset):
        return False
    value = dataset[0][column]
    return hasattr(value, "__len__") and not isinstance(value, (str, bytes))


def _is_token_data(dataset) -> bool:
    names = list(getattr(dataset, "column_names", None) or ())
    return any(c in names for c in _TOKEN_INPUTS) or ("labels" in names
                                                      and is_token_column(dataset, "labels"))


def _class_column(dataset, label_column: str | None) -> str | None:
    """The class column: ``label_column``, else the first scalar one of ``labels``, ``label``."""
    names = list(dataset.column_names)
    if label_column is not None:
        return find_label_column(names, label_column)
    for name in LABEL_CANDIDATES:
        if name in names and not is_token_column(dataset, name):
            return name
    return None


def has_class_column(dataset) -> bool:
    """Whether ``dataset`` has a class column (``labels`` or ``label`` holding one value per row).

    Examples
    --------
    >>> from datasets import Dataset
    >>> has_class_column(Dataset.from_dict({"labels": [[1, 2]]})), has_class_column(
    ...     Dataset.from_dict({"label": [1]}))
    (False, True)
    """
    return getattr(dataset, "column_names", None) is not None and _class_column(
        dataset, None) is not None


@dataclass(frozen=True)
class Grouping:
    """How the samples are grouped for scoring: each group has its own query trajectory and, in
    selection, its own budget.

    ``kind`` is ``"class"`` (Algorithm 1: the class ids of ``column``, or labels given
    directly), ``"group"`` (the values of ``column``, any scalars, numbered in sorted order:
    ``names[i]`` is group ``i``) or ``"none"`` (label-free: one group, ``names == ("all",)``).
    ``implicit`` is True when ``"none"`` was chosen because token data had no class column.

    Examples
    --------
    >>> from datasets import Dataset
    >>> ds = Dataset.from_dict({"text": ["a", "b", "c"], "source": ["os", "json", "os"]})
    >>> grouping = Grouping("group", "source", ("json", "os"))
    >>> grouping.ids(ds).tolist(), grouping.describe()
    ([1, 0, 1], "per group of 'source' (2 groups)")
    >>> Grouping("none", names=("all",)).ids(ds).tolist()
    [0, 0, 0]
    """

    kind: str
    column: str | None = None
    names: tuple | None = None
    implicit: bool = False

    @property
    def num_groups(self) -> int | None:
        return None if self.names is None else len(self.names)

    def ids(self, dataset, name: str = "train") -> np.ndarray:
        """The group id of every row of ``dataset`` under this grouping (int64)."""
        if self.kind == "none":
            return np.zeros(len(dataset), dtype=np.int64)
        if self.kind == "class":
            return dataset_labels(dataset, self.column, None, name)
        values = _group_values(dataset, self.column, name)
        index = {v: i for i, v in enumerate(self.names)}
        unknown = [v for v in dict.fromkeys(values.tolist()) if v not in index]
        if unknown:
            raise ValueError(
                f"{name}_dataset[{self.column!r}] holds group(s) {unknown[:5]} that the recording "
                f"does not know (its groups: {list(self.names)[:10]}): pass the dataset that was "
                f"recorded, with the same {self.column!r} values."
            )
        return np.array([index[v] for v in values.tolist()], dtype=np.int64)

    def describe(self) -> str:
        """A few words for logs and errors."""
        if self.kind == "none":
            return "label-free (one group)"
        if self.kind == "class":
            return f"per class of {self.column!r}" if self.column else "per class (given labels)"
        return f"per group of {self.column!r} ({self.num_groups} groups)"

    def to_dict(self) -> dict:
        """JSON-able record (kept in the store's metadata)."""
        names = None if self.names is None else [str(n) for n in self.names]
        return {"kind": self.kind, "column": self.column, "names": names,
                "implicit": self.implicit}


def _group_values(dataset, column: str, name: str) -> np.ndarray:
    names = list(getattr(dataset, "column_names", None) or ())
    if column not in names:
        raise ValueError(
            f"group_column {column!r} is not in {name}_dataset. Current columns in the dataset: "
            f"{names}. Both the training and the query set need it (a Trainer with "
            f"remove_unused_columns=True drops columns the model does not take: pass the "
            f"dataset given to the trainer, or TrainingArguments(remove_unused_columns=False))."
        )
    if is_token_column(dataset, column):
        raise ValueError(
            f"group_column {column!r} of {name}_dataset holds a sequence per row; a group is one "
            f"value per row (a task, source or domain name)."
        )
    values = np.asarray(dataset.with_format("numpy", columns=[column])[column][:])
    if values.dtype == object and any(v is None for v in values.tolist()):
        row = next(i for i, v in enumerate(values.tolist()) if v is None)
        raise ValueError(f"{name}_dataset[{column!r}] is missing at row {row}: give every row a "
                         f"group.")
    return values


def _group_names(train_values: np.ndarray, query_values: np.ndarray) -> tuple:
    try:
        return tuple(sorted(set(train_values.tolist()) | set(query_values.tolist())))
    except TypeError:  # mixed types (e.g. ints and strings): order by their text
        return tuple(sorted(set(train_values.tolist()) | set(query_values.tolist()), key=str))


def resolve_groups(train_dataset, query_dataset, *, label_column: str | None = None,
                   group_column: str | None = None, label_free: bool = False,
                   train_labels=None, query_labels=None):
    """Decide how samples are grouped and read every row's group id: ``(grouping, train_ids,
    query_ids)``.

    In order: ``label_free=True`` (one group); ``group_column`` (any scalar values, numbered in
    sorted order over both sets); labels given directly (classes); ``label_column``; else the
    first scalar integer column of ``labels``, ``label`` (classes, Algorithm 1). Without any of
    these, token data (an ``input_ids`` column or token-level ``labels``) is label-free, and
    anything else an error naming the three ways out.

    Examples
    --------
    >>> from datasets import Dataset
    >>> lm = Dataset.from_dict({"input_ids": [[1, 2], [3]], "labels": [[1, 2], [3]]})
    >>> grouping, train_ids, query_ids = resolve_groups(lm, lm)
    >>> grouping.kind, train_ids.tolist()
    ('none', [0, 0])
    >>> tasks = lm.add_column("task", ["qa", "sum"])
    >>> resolve_groups(tasks, tasks, group_column="task")[1].tolist()
    [0, 1]
    >>> resolve_groups(Dataset.from_dict({"x": [1.0]}), Dataset.from_dict({"x": [2.0]}))
    Traceback (most recent call last):
    ...
    ValueError: No class column found in train_dataset (columns ['x'])...
    """
    if label_free or group_column is not None:
        if train_labels is not None or query_labels is not None:
            raise ValueError(
                f"train_labels/query_labels give class ids, but "
                f"{'label_free=True' if label_free else f'group_column={group_column!r}'} says "
                f"to group otherwise: pass one of them."
            )
        for name, dataset in (("train", train_dataset), ("query", query_dataset)):
            _check_map_style(dataset, name)
    if label_free:
        grouping = Grouping("none", names=("all",))
        return grouping, grouping.ids(train_dataset), grouping.ids(query_dataset)
    if group_column is not None:
        train_values = _group_values(train_dataset, group_column, "train")
        query_values = _group_values(query_dataset, group_column, "query")
        grouping = Grouping("group", group_column, _group_names(train_values, query_values))
        return grouping, grouping.ids(train_dataset, "train"), grouping.ids(query_dataset,
                                                                           "query")
    if train_labels is not None or query_labels is not None or label_column is not None or (
            getattr(train_dataset, "column_names", None) is None):
        grouping = Grouping("class", label_column)
        return (grouping, dataset_labels(train_dataset, label_column, train_labels, "train"),
                dataset_labels(query_dataset, label_column, query_labels, "query"))
    _check_map_style(train_dataset, "train")
    column = _class_column(train_dataset, None)
    if column is not None:
        grouping = Grouping("class", column)
        return (grouping, dataset_labels(train_dataset, column, None, "train"),
                dataset_labels(query_dataset, column, None, "query"))
    if _is_token_data(train_dataset):
        logger.info("No class column in the training set (token data): CLD is label-free, every "
                    "sample is scored against the mean of all query samples. Pass "
                    "group_column= to score per task/source/domain.")
        grouping = Grouping("none", names=("all",), implicit=True)
        return grouping, grouping.ids(train_dataset), grouping.ids(query_dataset)
    raise ValueError(no_class_column_message(train_dataset.column_names, "train_dataset"))


def no_class_column_message(columns, where: str) -> str:
    """The error for a dataset without a class column: how to name it or go label-free.

    Examples
    --------
    >>> no_class_column_message(["text"], "train_dataset").split(":")[0]
    "No class column found in train_dataset (columns ['text'])"
    """
    return (
        f"No class column found in {where} (columns {list(columns)}): looked for a scalar "
        f"integer column named {list(LABEL_CANDIDATES)} (a token-level 'labels' column is not a "
        f"class). For classification, name it: label_column='<column with the class ids>'. For "
        f"data without classes (language modelling, instruction tuning), pass label_free=True "
        f"(one query trajectory and one budget for all samples) or group_column='<a task, "
        f"source or domain column>' (one per group)."
    )


def _check_map_style(dataset, name: str) -> None:
    if not hasattr(dataset, "__len__") or not hasattr(dataset, "__getitem__"):
        raise TypeError(
            f"{name}_dataset is a {type(dataset).__name__} without a length: the recorder needs a "
            f"map-style dataset (e.g. a datasets.Dataset, not an IterableDataset) so that every "
            f"sample has an index."
        )


def add_group_column(dataset, grouping: Grouping, ids):
    """``dataset`` + ``cld_group`` (a ``ClassLabel`` of the group names) when ``grouping`` is not
    the dataset's own classes; ``dataset`` unchanged otherwise.

    Examples
    --------
    >>> from datasets import Dataset
    >>> ds = add_group_column(Dataset.from_dict({"text": ["a", "b"]}),
    ...                       Grouping("none", names=("all",)), [0, 0])
    >>> ds.features["cld_group"]
    ClassLabel(names=['all'])
    """
    import datasets

    if grouping.kind == "class":
        return dataset
    ids = np.asarray(ids, dtype=np.int64)
    if GROUP_COLUMN in dataset.column_names:
        old = np.asarray(dataset.with_format("numpy", columns=[GROUP_COLUMN])[GROUP_COLUMN][:])
        if old.shape == ids.shape and np.array_equal(old, ids):
            return dataset
        raise ValueError(
            f"The dataset already has a column {GROUP_COLUMN!r} with other groups than this "
            f"recording's; remove it (dataset.remove_columns({GROUP_COLUMN!r})) first."
        )
    feature = datasets.ClassLabel(names=[str(n) for n in grouping.names])
    return dataset.add_column(GROUP_COLUMN, ids, feature=feature)


def selection_column(dataset, label_column: str | None = None) -> str:
    """The column a scored dataset's budgets are per: ``label_column`` when given, else
    ``cld_group`` when the dataset has it (a label-free or grouped recording), else the first
    scalar one of ``labels``, ``label``; no such column is an error naming the ways out.

    Examples
    --------
    >>> from datasets import Dataset
    >>> selection_column(Dataset.from_dict({"labels": [[1, 2]], "cld_group": [0]}))
    'cld_group'
    >>> selection_column(Dataset.from_dict({"label": [1], "x": [0.0]}))
    'label'
    """
    if label_column is None and GROUP_COLUMN in dataset.column_names:
        return GROUP_COLUMN
    column = _class_column(dataset, label_column)
    if column is None:
        raise ValueError(no_class_column_message(dataset.column_names, "the dataset"))
    return column
