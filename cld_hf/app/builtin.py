"""Built-in datasets and models for demos and tests, available offline.

- ``digits``: scikit-learn's 1,797 real 8x8 handwritten digits, as a ``datasets.DatasetDict``
  with ``pixel_values`` (float32, 1x8x8, scaled to [0, 1]) and ``label`` (``ClassLabel``).
- ``mnist1d``: MNIST-1D (the ``mnist1d`` package generates it offline with ``make_dataset``),
  40-sample 1-D signals presented as 1x1x40 images.

Models are ``transformers`` models built from a config (no download): a small ResNet.
"""

from __future__ import annotations

import numpy as np

__all__ = ["BUILTIN_DATASETS", "load_builtin_dataset", "make_image_classifier"]

BUILTIN_DATASETS = ("digits", "mnist1d")


def _to_dataset_dict(x_train, y_train, x_test, y_test, num_classes: int, description: str):
    import datasets

    shape = tuple(x_train.shape[1:])
    features = datasets.Features(
        {
            "pixel_values": datasets.Array3D(shape=shape, dtype="float32"),
            "label": datasets.ClassLabel(names=[str(i) for i in range(num_classes)]),
        }
    )
    info = datasets.DatasetInfo(description=description, features=features)

    def make(x, y, split):
        return datasets.Dataset.from_dict(
            {"pixel_values": x.astype(np.float32), "label": y.astype(np.int64)},
            features=features, info=info, split=split,
        )

    return datasets.DatasetDict(
        {"train": make(x_train, y_train, "train"), "test": make(x_test, y_test, "test")}
    )


def load_builtin_dataset(name: str = "digits", *, seed: int = 0, test_fraction: float = 0.25):
    """A built-in dataset as a ``DatasetDict`` with ``train`` and ``test`` splits.

    Parameters
    ----------
    name : {"digits", "mnist1d"}
    seed : int, default 0
        Seed of the stratified train/test split (digits) or of the generator (mnist1d).
    test_fraction : float, default 0.25
        Share of digits held out as the test split (MNIST-1D has its own: 4000/1000).

    Examples
    --------
    >>> ds = load_builtin_dataset("digits")
    >>> ds["train"].num_rows, ds["test"].num_rows, ds["train"].features["pixel_values"].shape
    (1347, 450, (1, 8, 8))
    """
    if name == "digits":
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split

        bunch = load_digits()
        x = (bunch.images / 16.0)[:, None, :, :]  # (N, 1, 8, 8) in [0, 1]
        x_tr, x_te, y_tr, y_te = train_test_split(
            x, bunch.target, test_size=test_fraction, random_state=seed, stratify=bunch.target
        )
        return _to_dataset_dict(x_tr, y_tr, x_te, y_te, 10,
                                "scikit-learn digits: 1,797 real 8x8 handwritten digits")
    if name == "mnist1d":
        from mnist1d.data import get_dataset_args, make_dataset

        args = get_dataset_args()
        args.seed = seed
        data = make_dataset(args)
        x_tr = np.asarray(data["x"], dtype=np.float32)[:, None, None, :]
        x_te = np.asarray(data["x_test"], dtype=np.float32)[:, None, None, :]
        return _to_dataset_dict(x_tr, np.asarray(data["y"]), x_te, np.asarray(data["y_test"]), 10,
                                "MNIST-1D (generated offline with mnist1d.make_dataset)")
    raise ValueError(
        f"name == {name!r} is not a built-in dataset; choose one of {list(BUILTIN_DATASETS)} or "
        f"pass a saved dataset directory."
    )


def make_image_classifier(num_labels: int, *, num_channels: int = 1, width: int = 16,
                          seed: int | None = None):
    """A small ``transformers`` ResNet for image classification, built from a config.

    Parameters
    ----------
    num_labels : int
    num_channels : int, default 1
    width : int, default 16
        Channels of the stem and first stage (the second stage has twice as many).
    seed : int, optional
        Seed for the initial weights.

    Examples
    --------
    >>> model = make_image_classifier(10)
    >>> type(model).__name__, model.config.num_labels
    ('ResNetForImageClassification', 10)
    """
    import torch
    from transformers import ResNetConfig, ResNetForImageClassification

    config = ResNetConfig(
        num_channels=num_channels,
        embedding_size=width,
        hidden_sizes=[width, 2 * width],
        depths=[1, 1],
        layer_type="basic",
        num_labels=num_labels,
        downsample_in_first_stage=False,
    )
    if seed is not None:
        torch.manual_seed(seed)
    return ResNetForImageClassification(config)
