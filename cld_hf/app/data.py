"""Data for ``cld-hf run``: built-in, saved, imagefolder or Hub datasets, and label noise.

:func:`load_run_data` loads the dataset, finds and checks the label column (``ClassLabel``,
integers or strings, which become a ``ClassLabel``), drops the columns a previous cld-hf run
added (``cld_score``, ``loss_trajectory``: a coreset folder can be fed back), adds
``sample_index`` to the training split *before* any hold-out or label noise (so the index counts
rows of the real source split), and holds 20% of it out as the test set when the dataset has no
test split.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..columns import INDEX_COLUMN, LABEL_CANDIDATES, SCORE_COLUMN, TRAJECTORY_COLUMN
from .arguments import NOISE_COLUMN, ORIGINAL_LABEL_COLUMN
from .builtin import BUILTIN_DATASETS, load_builtin_dataset

logger = logging.getLogger(__name__)

__all__ = ["RunData", "load_run_data", "load_data", "load_dataset_dict", "find_label_column_for",
           "apply_label_noise", "HOLD_OUT_FRACTION"]

HOLD_OUT_FRACTION = 0.2
"""Share of each class of the training split held out as the test set when there is no test
split."""

PREVIOUS_RUN_COLUMNS = (SCORE_COLUMN, TRAJECTORY_COLUMN)
"""Columns a previous cld-hf run added; dropped on load so its outputs can be fed back."""


@dataclass
class RunData:
    """The data of a run, as :func:`load_run_data` returns it.

    ``train`` has ``sample_index`` (rows of the source training split); ``test`` is the test
    split, or the held-out part of the training split (``held_out``).

    Examples
    --------
    >>> data = load_run_data("digits")
    >>> data.num_labels, data.class_names[:2], data.held_out, "sample_index" in data.train.column_names
    (10, ['0', '1'], False, True)
    """

    train: object
    test: object
    label_column: str
    class_names: list[str] | None
    num_labels: int
    held_out: bool = False
    test_source: str = "test"
    dropped_columns: list[str] = field(default_factory=list)

    def class_name(self, c: int) -> str:
        """The name of class id ``c`` (its id as text when the labels have no names).

        Examples
        --------
        >>> load_run_data("digits").class_name(3)
        '3'
        """
        names = self.class_names
        return str(names[c]) if names is not None and 0 <= c < len(names) else str(c)


def load_dataset_dict(dataset: str):
    """The ``DatasetDict`` of ``--dataset``: a built-in name, a ``save_to_disk`` directory, an
    imagefolder directory (class sub-folders of images, or ``train/`` and ``test/`` holding
    them) or a Hub id (when online).

    Examples
    --------
    >>> sorted(load_dataset_dict("digits"))
    ['test', 'train']
    >>> load_dataset_dict("./no/such/dir")
    Traceback (most recent call last):
    ...
    FileNotFoundError: --dataset './no/such/dir' does not exist: ...
    """
    import datasets

    if dataset in BUILTIN_DATASETS:
        dd = load_builtin_dataset(dataset, seed=0)
    else:
        path = Path(dataset)
        if path.is_dir():
            if any((path / f).exists() for f in ("dataset_info.json", "dataset_dict.json",
                                                 "state.json")):
                dd = datasets.load_from_disk(str(path))
            else:
                try:
                    dd = datasets.load_dataset("imagefolder", data_dir=str(path))
                except Exception as err:  # datasets raises several types for a wrong folder
                    raise ValueError(
                        f"--dataset {dataset!r} is a directory, but neither a save_to_disk "
                        f"dataset (it has no dataset_info.json or dataset_dict.json) nor an "
                        f"imagefolder (class sub-folders of images): "
                        f"{str(err).splitlines()[0] if str(err) else type(err).__name__}"
                    ) from None
        elif path.exists():
            raise ValueError(f"--dataset {dataset!r} is a file; pass a directory (save_to_disk "
                             f"or imagefolder), a built-in name {list(BUILTIN_DATASETS)} or a Hub "
                             f"id.")
        elif dataset.startswith((".", "/", "~")) or dataset.count("/") > 1:
            raise FileNotFoundError(
                f"--dataset {dataset!r} does not exist: pass a save_to_disk or imagefolder "
                f"directory, a built-in name {list(BUILTIN_DATASETS)} or a Hub id.")
        else:
            dd = datasets.load_dataset(dataset)
    if isinstance(dd, datasets.Dataset):
        dd = datasets.DatasetDict({"train": dd})
    return dd


def find_label_column_for(features, label_column: str | None = None) -> str:
    """The label column: ``label_column`` if given, else ``labels``, then ``label``; an error
    names ``--label-column`` and the ``ClassLabel`` columns that could be it.

    Examples
    --------
    >>> from datasets import ClassLabel, Features, Value
    >>> find_label_column_for(Features({"x": Value("int64"), "label": Value("int64")}))
    'label'
    >>> find_label_column_for(Features({"x": Value("int64"), "kind": ClassLabel(names=["a"])}))
    Traceback (most recent call last):
    ...
    ValueError: No label column: looked for ['labels', 'label'] in the columns ['x', 'kind']. Pass --label-column NAME (the column with each row's class); 'kind' is a ClassLabel column: --label-column kind.
    """
    names = list(features)
    if label_column is not None:
        if label_column not in names:
            raise ValueError(f"--label-column {label_column!r} is not a column of the dataset; "
                             f"its columns are {names}.")
        return label_column
    for name in LABEL_CANDIDATES:
        if name in names:
            return name
    hints = [n for n, f in features.items() if type(f).__name__ == "ClassLabel"]
    hint = "".join(f"; {n!r} is a ClassLabel column: --label-column {n}" for n in hints[:1])
    raise ValueError(f"No label column: looked for {list(LABEL_CANDIDATES)} in the columns "
                     f"{names}. Pass --label-column NAME (the column with each row's class)"
                     f"{hint}.")


def _encode_labels(dd, label_column: str, splits):
    """Every split's label column as class ids: strings become one ``ClassLabel`` (the training
    split's classes), integers are checked."""
    import datasets

    train_split = splits[0]
    feature = dd[train_split].features[label_column]
    if type(feature).__name__ == "ClassLabel":
        return dd
    dtype = getattr(feature, "dtype", None)
    if dtype in ("string", "large_string"):
        values = dd[train_split].unique(label_column)
        if any(v is None for v in values):
            raise ValueError(f"--label-column {label_column!r} has empty (None) values in "
                             f"{train_split!r}; every row needs a class.")
        names = sorted(values)
        label = datasets.ClassLabel(names=names)
        for split in splits:
            extra = sorted(set(dd[split].unique(label_column)) - set(names))
            if extra:
                raise ValueError(f"Split {split!r} has classes {extra[:5]} that the training "
                                 f"split {train_split!r} lacks.")
            dd[split] = dd[split].cast_column(label_column, label)
        return dd
    if dtype is None or not (dtype.startswith("int") or dtype.startswith("uint")
                             or dtype == "bool"):
        raise ValueError(
            f"--label-column {label_column!r} holds {feature!r}: a class column holds integer "
            f"class ids, strings or a ClassLabel. Pass --label-column with the class column.")
    for split in splits:
        values = np.asarray(dd[split].with_format("numpy", columns=[label_column])[label_column][:])
        if len(values) and values.min() < 0:
            raise ValueError(f"--label-column {label_column!r} has negative class ids (min "
                             f"{int(values.min())}) in {split!r}: class ids are 0, 1, ...")
    return dd


def load_run_data(dataset: str, *, train_split: str = "train", test_split: str = "test",
                  label_column: str | None = None, seed: int = 0) -> RunData:
    """Load ``--dataset`` for a run (see the module docstring).

    Examples
    --------
    >>> data = load_run_data("digits")
    >>> len(data.train), len(data.test), data.label_column, data.test_source
    (1347, 450, 'label', 'test')
    """
    from ..identity import add_index_column
    from ..splits import stratified_split_indices

    dd = load_dataset_dict(dataset)
    if train_split not in dd:
        raise ValueError(f"--train-split {train_split!r} is not a split of {dataset!r}; its "
                         f"splits are {list(dd)}.")
    has_test = test_split in dd and test_split != train_split
    splits = [train_split, test_split] if has_test else [train_split]
    label_column = find_label_column_for(dd[train_split].features, label_column)
    if has_test and label_column not in dd[test_split].column_names:
        raise ValueError(f"The test split {test_split!r} has no column {label_column!r}; its "
                         f"columns are {dd[test_split].column_names}. Pass --test-split NAME.")
    dropped = [c for c in PREVIOUS_RUN_COLUMNS if c in dd[train_split].column_names]
    dd = {s: dd[s] for s in splits}
    for split in splits:
        gone = [c for c in PREVIOUS_RUN_COLUMNS if c in dd[split].column_names]
        if gone:
            dd[split] = dd[split].remove_columns(gone)
    if dropped:
        logger.info("Dropped the columns %s a previous cld-hf run added.", dropped)
    dd = _encode_labels(dd, label_column, splits)
    train = dd[train_split]
    if len(train) == 0:
        raise ValueError(f"The training split {train_split!r} of {dataset!r} is empty.")
    # The index first: it counts rows of the source split, before any hold-out or label noise.
    train = add_index_column(train, name=dataset, split=train_split, label_column=label_column)
    held_out = not has_test
    if has_test:
        test, test_source = dd[test_split], test_split
        if INDEX_COLUMN in test.column_names:
            test = test.remove_columns(INDEX_COLUMN)
    else:
        labels = np.asarray(train.with_format("numpy", columns=[label_column])[label_column][:])
        keep, hold = stratified_split_indices(labels, fraction=HOLD_OUT_FRACTION, seed=seed)
        logger.warning("No %r split in %s: holding out %d%% of %r (stratified, seed %d) as the "
                       "test set.", test_split, dataset, 100 * HOLD_OUT_FRACTION, train_split,
                       seed)
        train, test = train.select(keep), train.select(hold).remove_columns(INDEX_COLUMN)
        test_source = f"{100 * HOLD_OUT_FRACTION:g}% of {train_split!r} held out"
    feature = train.features[label_column]
    names = list(feature.names) if hasattr(feature, "names") else None
    if names:
        num_labels = len(names)
    else:
        top = [np.asarray(d.with_format("numpy", columns=[label_column])[label_column][:]).max()
               for d in (train, test) if len(d)]
        num_labels = int(max(top)) + 1
    return RunData(train, test, label_column, names, num_labels, held_out=held_out,
                   test_source=test_source, dropped_columns=dropped)


def load_data(dataset: str, *, train_split: str = "train", test_split: str = "test",
              label_column: str | None = None, seed: int = 0):
    """``(train, test, label_column, class_names)`` of :func:`load_run_data`.

    Examples
    --------
    >>> train, test, label_column, names = load_data("digits")
    >>> len(train), len(test), label_column, names[:3]
    (1347, 450, 'label', ['0', '1', '2'])
    """
    data = load_run_data(dataset, train_split=train_split, test_split=test_split,
                         label_column=label_column, seed=seed)
    return data.train, data.test, data.label_column, data.class_names


def apply_label_noise(dataset, share: float, *, label_column: str, num_classes: int, seed: int):
    """Flip ``share`` of the labels to another class, uniformly; keep the truth in columns.

    Adds ``original_label`` and ``label_is_noisy`` (bool). Returns the new dataset.

    Examples
    --------
    >>> from datasets import Dataset
    >>> ds = Dataset.from_dict({"label": [0, 1, 2, 0, 1, 2, 0, 1, 2, 0]})
    >>> noisy = apply_label_noise(ds, 0.3, label_column="label", num_classes=3, seed=0)
    >>> sum(noisy["label_is_noisy"][:]), all(
    ...     (a != b) == f for a, b, f in zip(noisy["label"][:], noisy["original_label"][:],
    ...                                      noisy["label_is_noisy"][:]))
    (3, True)
    """
    import datasets

    labels = np.asarray(dataset.with_format("numpy", columns=[label_column])[label_column][:])
    rng = np.random.default_rng(seed)
    flip = np.zeros(len(labels), dtype=bool)
    flip[rng.choice(len(labels), size=int(round(share * len(labels))), replace=False)] = True
    noisy = labels.copy()
    shift = rng.integers(1, num_classes, size=int(flip.sum()))  # never the true class
    noisy[flip] = (labels[flip] + shift) % num_classes
    feature = dataset.features[label_column]
    out = dataset.rename_column(label_column, ORIGINAL_LABEL_COLUMN)
    out = out.add_column(label_column, noisy, feature=feature)
    return out.add_column(NOISE_COLUMN, flip, feature=datasets.Value("bool"))


