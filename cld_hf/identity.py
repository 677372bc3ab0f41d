"""Sample identity: which dataset a ``sample_index`` refers to, from the first split to the Hub.

A sample is known by its row in a named source dataset. cld-hf writes that row into the
``sample_index`` column (:func:`add_index_column`, which :func:`~cld_hf.dataset_adapters.
stratified_query_split` calls before splitting), and describes the source in the column's own
feature: ``Value("int64", id=...)`` holds a small JSON record ::

    {"cld_hf_index": {"name": "uoft-cs/cifar100", "split": "train", "num_rows": 50000,
                      "fingerprint": "<sha256 of the row count and the label column>"}}

The record travels with the column through ``select``, ``remove_columns``, ``map``,
``save_to_disk`` and Parquet (the Hub), so a scored dataset, a coreset and a pushed ``indices``
config all say what their index counts rows of. :func:`dataset_fingerprint` is cld-hf's content
fingerprint (cheap: it reads one column), so anyone holding the source can check it
(:func:`check_source`). A ``sample_index`` column cld-hf did not write is an error, never
silently taken for a row index.

NumPy only here; ``datasets`` is imported inside the functions that build features.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np

from .columns import INDEX_COLUMN, find_label_column

__all__ = [
    "dataset_fingerprint",
    "labels_fingerprint",
    "content_fingerprint",
    "source_identity",
    "index_identity",
    "add_index_column",
    "index_feature",
    "check_source",
    "describe_identity",
    "recording_identity",
]

_KEY = "cld_hf_index"


def dataset_fingerprint(dataset, *, label_column: str | None = None) -> str:
    """cld-hf's content fingerprint of a dataset: SHA-256 of its row count and label values.

    It depends on the rows and their order, not on the transformations that made them, and
    reads a single column, so it is cheap at ImageNet scale. A dataset without a label column
    is fingerprinted by its row count and column names.

    Examples
    --------
    >>> from datasets import Dataset
    >>> a = Dataset.from_dict({"x": [1, 2, 3], "label": [0, 1, 1]})
    >>> dataset_fingerprint(a) == dataset_fingerprint(a.select([0, 1, 2]))
    True
    >>> dataset_fingerprint(a) == dataset_fingerprint(a.select([2, 1, 0]))  # reordered
    False
    """
    try:
        column = find_label_column(dataset.column_names, label_column)
        values = np.asarray(dataset.with_format("numpy", columns=[column])[column][:])
        if values.ndim > 1 or values.dtype == object:  # token-level labels: no class column
            raise ValueError(column)
    except ValueError:
        content = content_fingerprint(dataset)
        if content is not None:
            return content
        digest = hashlib.sha256(f"rows={len(dataset)}".encode())
        digest.update(json.dumps(sorted(dataset.column_names)).encode())
        return digest.hexdigest()
    return labels_fingerprint(values)


CONTENT_COLUMNS = ("input_ids", "text", "prompt", "messages", "completion")
"""Columns that identify the rows of a dataset without classes (a text corpus), in the order
:func:`content_fingerprint` looks for them."""


def content_fingerprint(dataset) -> str | None:
    """SHA-256 of the row count and the values of the first :data:`CONTENT_COLUMNS` column of
    ``dataset`` (``None`` without one): the fingerprint of a corpus without classes. It reads
    that one column, in batches.

    Examples
    --------
    >>> from datasets import Dataset
    >>> a = Dataset.from_dict({"text": ["x", "y"]})
    >>> content_fingerprint(a) == content_fingerprint(a.select([0, 1])), content_fingerprint(
    ...     a) == content_fingerprint(a.select([1, 0]))
    (True, False)
    """
    names = list(getattr(dataset, "column_names", None) or ())
    column = next((c for c in CONTENT_COLUMNS if c in names), None)
    if column is None:
        return None
    digest = hashlib.sha256(f"rows={len(dataset)};column={column}".encode())
    view = dataset.select_columns([column]).with_format(None)
    for batch in view.iter(batch_size=4096):
        digest.update(json.dumps(batch[column], sort_keys=True, default=str).encode())
    return digest.hexdigest()


def labels_fingerprint(labels) -> str:
    """:func:`dataset_fingerprint` from the label column's values alone (the same digest).

    Examples
    --------
    >>> from datasets import Dataset
    >>> labels_fingerprint([0, 1, 1]) == dataset_fingerprint(Dataset.from_dict({"label": [0, 1, 1]}))
    True
    """
    values = np.asarray(labels)
    digest = hashlib.sha256(f"rows={len(values)}".encode())
    digest.update(np.ascontiguousarray(values.astype(np.int64, copy=False)
                                       if values.dtype.kind in "iub" else values).tobytes())
    return digest.hexdigest()


def source_identity(dataset, *, name: str | None = None, split: str | None = None,
                    label_column: str | None = None) -> dict:
    """The identity record of ``dataset`` as a source: name, split, rows, fingerprint.

    ``name`` defaults to ``dataset.info.dataset_name`` (set by ``load_dataset``), ``split`` to
    ``dataset.split``.

    Examples
    --------
    >>> from datasets import Dataset
    >>> ds = Dataset.from_dict({"label": [0, 1]})
    >>> record = source_identity(ds, name="me/toy", split="train")
    >>> record["name"], record["split"], record["num_rows"], len(record["fingerprint"])
    ('me/toy', 'train', 2, 64)
    """
    info = getattr(dataset, "info", None)
    split_attr = getattr(dataset, "split", None)
    return {
        "name": name if name is not None else getattr(info, "dataset_name", None),
        "split": split if split is not None else (str(split_attr) if split_attr else None),
        "num_rows": int(len(dataset)),
        "fingerprint": dataset_fingerprint(dataset, label_column=label_column),
    }


def index_identity(dataset) -> dict | None:
    """The source record of the ``sample_index`` column, or ``None`` when there is no such
    column. A ``sample_index`` that cld-hf did not write is an error naming the fix.

    Examples
    --------
    >>> from datasets import Dataset
    >>> ds = add_index_column(Dataset.from_dict({"label": [0, 1, 1]}), name="me/toy")
    >>> index_identity(ds.select([2]))["num_rows"]   # rows of the source, not of the selection
    3
    """
    features = getattr(dataset, "features", None) or {}
    if INDEX_COLUMN not in features:
        return None
    feature = features[INDEX_COLUMN]
    record = None
    try:
        record = json.loads(getattr(feature, "id", None) or "null")
    except json.JSONDecodeError:
        pass
    if not isinstance(record, dict) or _KEY not in record:
        raise ValueError(
            f"The dataset has a column {INDEX_COLUMN!r} that cld-hf did not write (its feature "
            f"{feature!r} does not say which dataset it indexes), so it cannot be trusted as "
            f"the row of each sample in a source. Rename it "
            f"(dataset.rename_column({INDEX_COLUMN!r}, 'original_index')) and let cld-hf add its "
            f"own with cld_hf.add_index_column(dataset, name=..., split=...)."
        )
    return dict(record[_KEY])


def add_index_column(dataset, *, name: str | None = None, split: str | None = None,
                     label_column: str | None = None):
    """Add ``sample_index`` (int64): each row's index in ``dataset``, which becomes the source.

    The column's feature records the source (:func:`source_identity`), so every selection made
    from the result can say what its index counts rows of. A dataset that already has a
    ``sample_index`` written by cld-hf is returned unchanged; one written by anything else is an
    error (see :func:`index_identity`).

    Examples
    --------
    >>> from datasets import Dataset
    >>> ds = add_index_column(Dataset.from_dict({"x": [5, 6]}), name="me/toy", split="train")
    >>> ds["sample_index"][:], index_identity(ds)["name"]
    ([0, 1], 'me/toy')
    """
    if index_identity(dataset) is not None:
        return dataset
    record = source_identity(dataset, name=name, split=split, label_column=label_column)
    return dataset.add_column(INDEX_COLUMN, np.arange(len(dataset), dtype=np.int64),
                              feature=index_feature(record))


def index_feature(record: dict):
    """The ``datasets`` feature of a ``sample_index`` column indexing the source ``record``.

    Examples
    --------
    >>> feature = index_feature({"name": "me/toy", "split": "train", "num_rows": 2,
    ...                          "fingerprint": "0" * 64})
    >>> feature.dtype, '"num_rows": 2' in feature.id
    ('int64', True)
    """
    import datasets

    return datasets.Value("int64", id=json.dumps({_KEY: dict(record)}, sort_keys=True))


def check_source(source, identity: dict, *, label_column: str | None = None) -> None:
    """Check that ``source`` is the dataset ``identity`` describes (rows and fingerprint).

    Examples
    --------
    >>> from datasets import Dataset
    >>> src = Dataset.from_dict({"label": [0, 1, 1]})
    >>> check_source(src, source_identity(src))
    >>> check_source(src.select([2, 1, 0]), source_identity(src))
    Traceback (most recent call last):
    ...
    ValueError: The dataset has 3 rows and fingerprint ... but the index refers to ...
    """
    rows = len(source)
    fingerprint = dataset_fingerprint(source, label_column=label_column)
    if rows != identity.get("num_rows") or fingerprint != identity.get("fingerprint"):
        raise ValueError(
            f"The dataset has {rows} rows and fingerprint {fingerprint[:12]}, but the index "
            f"refers to {describe_identity(identity)}: not the same rows in the same order. "
            f"Pass the dataset the index was made from (same rows, same order)."
        )


def describe_identity(identity: dict | None) -> str:
    """A sentence naming the source an index refers to.

    Examples
    --------
    >>> describe_identity({"name": "me/toy", "split": "train", "num_rows": 3,
    ...                    "fingerprint": "ab12cd34ef56" + "0" * 52})
    "the 'train' split of 'me/toy' (3 rows, fingerprint ab12cd34ef56)"
    """
    if not identity:
        return "an unknown dataset"
    where = f"the {identity['split']!r} split of " if identity.get("split") else ""
    name = repr(identity["name"]) if identity.get("name") else "an unnamed dataset"
    return (f"{where}{name} ({identity.get('num_rows')} rows, fingerprint "
            f"{str(identity.get('fingerprint'))[:12]})")


def recording_identity(train_dataset, train_labels, query_dataset, query_labels, *,
                       by_content: bool = False) -> dict:
    """What a store records about the datasets its rows are: per part (``train``, ``query``)
    name, split, rows and label fingerprint, and the source record of a ``sample_index``.
    ``by_content=True`` (a recording without classes) fingerprints the content column instead
    (:func:`content_fingerprint`), when the dataset has one.

    Examples
    --------
    >>> from datasets import Dataset
    >>> ds = Dataset.from_dict({"label": [0, 1]})
    >>> record = recording_identity(ds, [0, 1], ds, [0, 1])
    >>> record["train"]["num_rows"], record["train_index"]
    (2, None)
    """
    out = {}
    for part, dataset, labels in (("train", train_dataset, train_labels),
                                  ("query", query_dataset, query_labels)):
        info = getattr(dataset, "info", None)
        split = getattr(dataset, "split", None)
        out[part] = {"name": getattr(info, "dataset_name", None),
                     "split": str(split) if split else None, "num_rows": int(len(labels)),
                     "fingerprint": (by_content and hasattr(dataset, "column_names")
                                     and content_fingerprint(dataset)) or labels_fingerprint(labels)}
        out[f"{part}_index"] = index_identity(dataset) if hasattr(dataset, "features") else None
    return out
