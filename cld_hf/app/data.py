"""Data for ``cld-hf run``: built-in, saved, imagefolder or Hub datasets, and label noise."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from ..columns import find_label_column
from .arguments import NOISE_COLUMN, ORIGINAL_LABEL_COLUMN
from .builtin import BUILTIN_DATASETS, load_builtin_dataset

logger = logging.getLogger(__name__)

__all__ = ["load_data", "apply_label_noise", "to_pixel_values"]



def to_pixel_values(dataset, image_size: int):
    """Give a dataset of PIL images a ``pixel_values`` float tensor view (set_transform)."""
    image_column = next((c for c in ("image", "img") if c in dataset.column_names), None)
    if "pixel_values" in dataset.column_names:
        return dataset.with_format("torch", columns=None), None
    if image_column is None:
        raise ValueError(
            f"Cannot find the inputs: the dataset needs a 'pixel_values' column or an 'image'/"
            f"'img' column of images. Columns: {dataset.column_names}."
        )
    from torchvision import transforms

    mode = "L" if dataset.features[image_column].mode == "L" else "RGB"
    tf = transforms.Compose([transforms.Resize((image_size, image_size)), transforms.ToTensor()])

    def transform(batch):
        batch["pixel_values"] = [tf(img.convert(mode)) for img in batch[image_column]]
        return batch

    dataset.set_transform(transform)
    return dataset, 1 if mode == "L" else 3


def load_data(dataset: str, *, train_split: str = "train", test_split: str = "test",
              label_column: str | None = None, seed: int = 0):
    """``(train, test, label_column, class_names)`` as ``datasets.Dataset`` objects.

    ``dataset`` is a built-in name (``digits``, ``mnist1d``), a ``save_to_disk`` directory, an
    imagefolder directory or a Hub id (when online). Without a ``test_split``, 20% of the
    training split is held out (stratified, ``seed``).

    Examples
    --------
    >>> train, test, label_column, names = load_data("digits")
    >>> len(train), len(test), label_column, names[:3]
    (1347, 450, 'label', ['0', '1', '2'])
    """
    import datasets

    if dataset in BUILTIN_DATASETS:
        dd = load_builtin_dataset(dataset, seed=0)
    else:
        path = Path(dataset)
        if (path / "dataset_info.json").exists() or (path / "dataset_dict.json").exists():
            dd = datasets.load_from_disk(str(path))
        elif path.is_dir():
            dd = datasets.load_dataset("imagefolder", data_dir=str(path))
        else:
            dd = datasets.load_dataset(dataset)
    if isinstance(dd, datasets.Dataset):
        dd = datasets.DatasetDict({train_split: dd})
    if train_split not in dd:
        raise ValueError(f"train_split {train_split!r} not in the dataset; splits: {list(dd)}.")
    train = dd[train_split]
    label_column = find_label_column(train.column_names, label_column)
    if test_split in dd:
        test = dd[test_split]
    else:
        logger.warning("No %r split: holding out 20%% of %r as the test set.", test_split,
                       train_split)
        parts = train.train_test_split(test_size=0.2, seed=seed, stratify_by_column=label_column)
        train, test = parts["train"], parts["test"]
    names = getattr(train.features[label_column], "names", None)
    return train, test, label_column, names


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


