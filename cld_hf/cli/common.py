"""Helpers shared by the subcommands: argument types, loading saved datasets, JSON output."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..hub.spec import RUN_INFO_FILE  # cld_run.json, beside saved datasets: how they were made


def fraction_type(text: str) -> float:
    """argparse type: a float in (0, 1]."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number; give e.g. 0.1") from None
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(f"{value} is not in (0, 1]; give e.g. 0.1")
    return value


def positive_int(text: str) -> int:
    """argparse type: an int >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be >= 1")
    return value


def load_saved_dataset(path, split: str | None = None):
    """``datasets.load_from_disk`` for a Dataset or one split of a DatasetDict, with clear errors."""
    import datasets

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist; pass a directory written by save_to_disk.")
    try:
        ds = datasets.load_from_disk(str(path))
    except FileNotFoundError as err:
        raise FileNotFoundError(
            f"{path} is not a dataset saved with save_to_disk ({err}). "
            f"Save it with dataset.save_to_disk({str(path)!r}) first."
        ) from None
    if isinstance(ds, datasets.DatasetDict):
        if split is None:
            if len(ds) == 1:
                return next(iter(ds.values()))
            raise ValueError(f"{path} holds several splits {list(ds)}; choose one with --split.")
        if split not in ds:
            raise ValueError(f"--split {split!r} not in {path}; splits: {list(ds)}.")
        return ds[split]
    return ds


def write_json(path, obj) -> None:
    """Write ``obj`` as JSON atomically, creating the folder (see :mod:`cld_hf.fileio`).

    Examples
    --------
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "a", "run.json")
    >>> write_json(path, {"seed": 0}); json.loads(open(path).read())
    {'seed': 0}
    """
    from ..fileio import atomic_write_json

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, obj)


def read_run_info(directory) -> dict:
    """The ``cld_run.json`` beside a saved dataset (``{}`` when there is none).

    Examples
    --------
    >>> import tempfile
    >>> read_run_info(tempfile.mkdtemp())
    {}
    """
    p = Path(directory) / RUN_INFO_FILE
    return json.loads(p.read_text()) if p.is_file() else {}
