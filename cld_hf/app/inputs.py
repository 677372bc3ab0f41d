"""Model inputs for ``cld-hf run``: which column feeds the model, and how rows become batches.

A dataset of a user's own reaches the run in many shapes: an imagefolder (PIL images in an
``image`` column), a ``save_to_disk`` dataset with PIL images, image arrays (``Array2D`` /
``Array3D``, HWC ``uint8`` or CHW floats) or nested lists (``pixel_values`` as cld-hf's own
``scored/`` and coreset folders store it), or text (a ``text`` column). :func:`detect_task` finds
the input column; :func:`image_inputs` and :func:`text_inputs` return a :class:`ModelInputs`:
a *view* of a dataset (its input and label columns only, through ``Dataset.with_format``) and
the collator that turns rows of the view into ``pixel_values`` (or ``input_ids``) and
``labels``.

The raw dataset keeps every column for the scored dataset and the coresets, and the Trainer
runs with ``remove_unused_columns=False``: it never drops the image column before the collator
reads it, and a label column of any name reaches the model as ``labels``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "ModelInputs",
    "TASKS",
    "IMAGE_COLUMNS",
    "TEXT_COLUMNS",
    "detect_task",
    "image_layout",
    "image_inputs",
    "text_inputs",
]

TASKS = ("auto", "image-classification", "text-classification", "causal-lm")
"""Values of ``--task``; ``auto`` is decided from the dataset's columns (:func:`detect_task`)."""

IMAGE_COLUMNS = ("pixel_values", "image", "img")
"""Where images are looked for, after any column with the ``datasets.Image`` feature."""

TEXT_COLUMNS = ("text", "sentence")
"""Where texts are looked for (a string column)."""

_GRAY_MODES = ("1", "L", "LA", "I", "I;16", "F", "P;L")


def _is_image_feature(feature) -> bool:
    return type(feature).__name__ == "Image"


def _is_string_feature(feature) -> bool:
    return getattr(feature, "dtype", None) in ("string", "large_string")


def detect_task(features, *, task: str = "auto", image_column: str | None = None,
                text_column: str | None = None, label_column: str | None = None) -> tuple[str, str]:
    """``(task, input column)`` of a classification dataset, from its features.

    ``task="auto"``: ``image-classification`` when a column has the ``Image`` feature or is
    named ``pixel_values``, ``image`` or ``img``; else ``text-classification`` when a string
    column is named ``text`` or ``sentence``. ``image_column`` / ``text_column`` name the column
    (and, with ``auto``, the task). A dataset without a usable column is an error naming the
    flags to pass.

    Parameters
    ----------
    features : datasets.Features (or a dict of column name to feature)
    task : {"auto", "image-classification", "text-classification"}
    image_column, text_column, label_column : str, optional

    Examples
    --------
    >>> from datasets import Features, Image, Value, ClassLabel
    >>> detect_task(Features({"image": Image(), "label": ClassLabel(names=["a", "b"])}))
    ('image-classification', 'image')
    >>> detect_task(Features({"text": Value("string"), "target": Value("int64")}))
    ('text-classification', 'text')
    >>> detect_task(Features({"x": Value("float32"), "label": Value("int64")}))
    Traceback (most recent call last):
    ...
    ValueError: Cannot find the model inputs: no image column (...) and no text column (...) ...
    """
    names = list(features)
    if task not in TASKS or task == "causal-lm":
        raise ValueError(f"task == {task!r}: detect_task handles "
                         f"{[t for t in TASKS if t != 'causal-lm']}.")
    for flag, column in (("--image-column", image_column), ("--text-column", text_column)):
        if column is not None and column not in names:
            raise ValueError(f"{flag} {column!r} is not a column of the dataset; its columns are "
                             f"{names}.")
    if image_column is not None and text_column is not None:
        raise ValueError(f"--image-column {image_column!r} and --text-column {text_column!r} "
                         f"both given: pass one, the column the model reads.")
    if image_column is not None or (task == "image-classification" and text_column is None):
        if task == "text-classification":
            raise ValueError(f"--image-column {image_column!r} with --task text-classification: "
                             f"pass --text-column for a text dataset.")
        column = image_column or _find_image_column(features, label_column)
        if column is None:
            raise ValueError(
                f"--task image-classification, but no image column: looked for a column with "
                f"the Image feature or named {list(IMAGE_COLUMNS)} in {names}. Pass "
                f"--image-column NAME.")
        return "image-classification", column
    if text_column is not None or task == "text-classification":
        if task == "image-classification":
            raise ValueError(f"--text-column {text_column!r} with --task image-classification: "
                             f"pass --image-column for an image dataset.")
        column = text_column or _find_text_column(features)
        if column is None:
            raise ValueError(
                f"--task text-classification, but no text column: looked for a string column "
                f"named {list(TEXT_COLUMNS)} in {names}. Pass --text-column NAME.")
        if not _is_string_feature(features[column]):
            raise ValueError(f"--text-column {column!r} holds {features[column]!r}, not strings; "
                             f"pass the column that holds the texts.")
        return "text-classification", column
    column = _find_image_column(features, label_column)
    if column is not None:
        return "image-classification", column
    column = _find_text_column(features)
    if column is not None:
        return "text-classification", column
    raise ValueError(
        f"Cannot find the model inputs: no image column (a column with the Image feature, or "
        f"named {list(IMAGE_COLUMNS)}) and no text column (a string column named "
        f"{list(TEXT_COLUMNS)}) in the dataset's columns {names}. Pass --image-column NAME or "
        f"--text-column NAME.")


def _find_image_column(features, label_column=None) -> str | None:
    for name, feature in features.items():
        if _is_image_feature(feature) and name != label_column:
            return name
    return next((n for n in IMAGE_COLUMNS if n in features and n != label_column), None)


def _find_text_column(features) -> str | None:
    return next((n for n in TEXT_COLUMNS if n in features and _is_string_feature(features[n])),
                None)


# ------------------------------------------------------------------------------ images
def image_layout(value, column: str = "image") -> dict:
    """How to read one stored image: ``{"kind", "channels", "axes", "scale"}``.

    ``kind`` is ``"pil"`` for PIL images, ``"array"`` for arrays and nested lists. Arrays are
    ``(H, W)``, ``(C, H, W)`` or ``(H, W, C)`` with 1, 3 or 4 channels (an alpha channel is
    dropped; when both readings fit, ``pixel_values`` is CHW, any other column HWC); integer
    pixels are scaled by 1/255, floats are used as they are.

    Examples
    --------
    >>> image_layout(np.zeros((28, 28, 3), dtype=np.uint8))
    {'kind': 'array', 'channels': 3, 'axes': 'hwc', 'scale': 0.00392156862745098}
    >>> image_layout([[[0.5] * 8] * 8], "pixel_values")      # nested lists, (1, 8, 8)
    {'kind': 'array', 'channels': 1, 'axes': 'chw', 'scale': 1.0}
    >>> image_layout(np.zeros((5, 5, 5)))
    Traceback (most recent call last):
    ...
    ValueError: The image column 'image' holds arrays of shape (5, 5, 5): ...
    """
    if hasattr(value, "mode") and hasattr(value, "convert"):
        return {"kind": "pil", "channels": 1 if value.mode in _GRAY_MODES else 3, "axes": "hwc",
                "scale": 1 / 255}
    arr = np.asarray(value)
    if arr.dtype == object or arr.dtype.kind not in "biuf":
        raise ValueError(
            f"The image column {column!r} holds {type(value).__name__} values that are not "
            f"images or numeric arrays; pass --image-column with the column of images.")
    scale = 1 / 255 if arr.dtype.kind in "biu" else 1.0
    if arr.ndim == 2:
        return {"kind": "array", "channels": 1, "axes": "hw", "scale": scale}
    if arr.ndim == 3:
        chw, hwc = arr.shape[0] in (1, 3, 4), arr.shape[-1] in (1, 3, 4)
        if chw and hwc:  # e.g. (3, 8, 3): pixel_values are CHW by convention, images HWC
            chw = column == "pixel_values"
            hwc = not chw
        if chw:
            axes, channels = "chw", arr.shape[0]
        elif hwc:
            axes, channels = "hwc", arr.shape[-1]
        else:
            axes = channels = None
        if axes is not None:
            return {"kind": "array", "channels": 3 if channels == 4 else int(channels),
                    "axes": axes, "scale": scale}
    raise ValueError(
        f"The image column {column!r} holds arrays of shape {arr.shape}: expected (H, W), "
        f"(C, H, W) or (H, W, C) with 1, 3 or 4 channels. Pass --image-column with the column "
        f"of images.")


def _pil_layout(values, column):
    """Grayscale only when every inspected image is grayscale (mixed folders become RGB)."""
    layouts = [image_layout(v, column) for v in values if v is not None]
    if not layouts:
        raise ValueError(f"The image column {column!r} holds no images in its first rows.")
    layout = dict(layouts[0])
    if layout["kind"] == "pil":
        layout["channels"] = 1 if all(lay["channels"] == 1 for lay in layouts) else 3
    return layout


def _to_chw(value, layout: dict, size: int | None) -> np.ndarray:
    """One image as a float32 (C, H, W) array."""
    if layout["kind"] == "pil":
        from PIL import Image

        img = value.convert("L" if layout["channels"] == 1 else "RGB")
        if size is not None and img.size != (size, size):
            img = img.resize((size, size), Image.BILINEAR)
        arr = np.asarray(img, dtype=np.float32) * np.float32(layout["scale"])
        return arr[None] if arr.ndim == 2 else np.ascontiguousarray(arr.transpose(2, 0, 1))
    arr = np.asarray(value, dtype=np.float32)
    if layout["scale"] != 1.0:
        arr = arr * np.float32(layout["scale"])
    if layout["axes"] == "hw":
        arr = arr[None]
    elif layout["axes"] == "hwc":
        arr = arr.transpose(2, 0, 1)
    if arr.shape[0] == 4:
        arr = arr[:3]
    return np.ascontiguousarray(arr)


@dataclass
class ModelInputs:
    """How rows become model inputs: the input column, the dataset view the model reads and the
    collator of its rows.

    Built by :func:`image_inputs` or :func:`text_inputs`. :meth:`view` gives the dataset the
    model reads: only the input and label columns, in NumPy format for image arrays (fast, no
    Python lists) and Python format for PIL images and texts; :meth:`collate` turns a list of
    those rows into a batch: ``pixel_values`` (float32, CHW; PIL images converted and resized,
    integer pixels scaled to [0, 1]) or ``input_ids`` + ``attention_mask`` (tokenized, padded),
    and ``labels``.

    Examples
    --------
    >>> from datasets import Dataset
    >>> ds = Dataset.from_dict({"pixel_values": [[[[0.0] * 5] * 5]] * 2, "target": [1, 0]})
    >>> inputs = image_inputs(ds, column="pixel_values", label_column="target")
    >>> view = inputs.view(ds)
    >>> batch = inputs.collate([view[0], view[1]])
    >>> tuple(batch["pixel_values"].shape), batch["labels"].tolist()
    ((2, 1, 5, 5), [1, 0])
    """

    task: str
    column: str
    label_column: str
    num_channels: int | None = None
    layout: dict = field(default_factory=dict)
    image_size: int | None = None
    tokenizer: object = None
    max_length: int = 128

    def view(self, dataset):
        """``dataset`` as the model reads it: the input and label columns only (a format, no
        copy), so the Trainer can run with ``remove_unused_columns=False``."""
        missing = [c for c in (self.column, self.label_column) if c not in dataset.column_names]
        if missing:
            raise ValueError(f"Columns {missing} not in the dataset; its columns are "
                             f"{dataset.column_names}.")
        arrays = self.task == "image-classification" and self.layout.get("kind") == "array"
        return dataset.with_format("numpy" if arrays else None,
                                   columns=[self.column, self.label_column])

    def collate(self, rows: Sequence[dict]) -> dict:
        """A batch of rows of :meth:`view` (see the class docstring)."""
        import torch

        labels = torch.tensor([int(r[self.label_column]) for r in rows], dtype=torch.long)
        if self.task == "image-classification":
            pixels = np.stack([_to_chw(r[self.column], self.layout, self.image_size)
                               for r in rows])
            return {"pixel_values": torch.from_numpy(pixels), "labels": labels}
        encoded = self.tokenizer([str(r[self.column]) for r in rows], truncation=True,
                                 max_length=self.max_length, padding=True, return_tensors="pt")
        return {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"],
                "labels": labels}

    def __call__(self, rows):
        return self.collate(rows)

    def pixels(self, row) -> np.ndarray:
        """One row of :meth:`view` as the (C, H, W) float32 image the model sees.

        Examples
        --------
        >>> from datasets import Dataset
        >>> ds = Dataset.from_dict({"img": [np.full((2, 2, 3), 255, np.uint8)], "label": [0]})
        >>> inputs = image_inputs(ds, column="img", label_column="label")
        >>> inputs.pixels(inputs.view(ds)[0]).shape, float(inputs.pixels(inputs.view(ds)[0]).max())
        ((3, 2, 2), 1.0)
        """
        return _to_chw(row[self.column], self.layout, self.image_size)

    def describe(self) -> str:
        """One line for the logs and the cards.

        Examples
        --------
        >>> ModelInputs("image-classification", "image", "label", 3, {"kind": "pil"}, 32).describe()
        "column 'image' (PIL images, resized to 32x32, 3 channel(s))"
        """
        if self.task == "image-classification":
            kind = ("PIL images, resized to "
                    f"{self.image_size}x{self.image_size}" if self.layout.get("kind") == "pil"
                    else f"arrays ({self.layout.get('axes', '?').upper()})")
            return f"column {self.column!r} ({kind}, {self.num_channels} channel(s))"
        return f"column {self.column!r} (text, at most {self.max_length} tokens)"


def image_inputs(dataset, *, column: str, label_column: str, image_size: int = 32,
                 probe_rows: int = 32) -> ModelInputs:
    """:class:`ModelInputs` for the images in ``column`` of ``dataset``.

    The layout comes from the first ``probe_rows`` images: PIL images are converted to RGB
    unless all of them are grayscale, and resized to ``image_size``; arrays and nested lists
    keep their size (see :func:`image_layout`).

    Examples
    --------
    >>> from datasets import Dataset
    >>> ds = Dataset.from_dict({"image": [np.zeros((6, 6, 3), dtype=np.uint8)], "label": [0]})
    >>> inputs = image_inputs(ds, column="image", label_column="label")
    >>> inputs.num_channels, inputs.pixels(inputs.view(ds)[0]).shape
    (3, (3, 6, 6))
    """
    if len(dataset) == 0:
        raise ValueError("The training split is empty.")
    probe = dataset.select_columns([column]).select(range(min(probe_rows, len(dataset))))
    layout = _pil_layout(probe[column][:], column)
    size = image_size if layout["kind"] == "pil" else None
    first = _to_chw(probe[0][column], layout, size)
    return ModelInputs("image-classification", column, label_column,
                       num_channels=int(first.shape[0]), layout=layout, image_size=size)


def text_inputs(dataset, *, column: str, label_column: str, tokenizer,
                max_length: int = 128) -> ModelInputs:
    """:class:`ModelInputs` for the texts in ``column``, tokenized by ``tokenizer``.

    Examples
    --------
    >>> from datasets import Dataset
    >>> from cld_hf.app.builtin import train_text_tokenizer
    >>> ds = Dataset.from_dict({"text": ["a cat", "a dog sat"], "label": [0, 1]})
    >>> inputs = text_inputs(ds, column="text", label_column="label",
    ...                      tokenizer=train_text_tokenizer(ds["text"][:], vocab_size=40))
    >>> batch = inputs.collate([inputs.view(ds)[i] for i in range(2)])
    >>> batch["input_ids"].shape[0], batch["attention_mask"].sum(1).tolist()
    (2, [4, 5])
    """
    return ModelInputs("text-classification", column, label_column, tokenizer=tokenizer,
                       max_length=max_length)
