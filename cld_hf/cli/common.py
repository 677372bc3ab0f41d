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


class UsageError(ValueError):
    """A bad argument found after parsing: ``cld-hf`` reports it like argparse (exit 2).

    Examples
    --------
    >>> isinstance(UsageError("x"), ValueError)   # Python callers catch it as a ValueError
    True
    """


class CommandError(RuntimeError):
    """The work failed for a reason the message explains: ``cld-hf`` exits 1 with it.

    Examples
    --------
    >>> str(CommandError("the causal-lm task is not in this build"))
    'the causal-lm task is not in this build'
    """


SAVED_DATASET_OUTPUTS = ("data-*.arrow", "state.json", "dataset_info.json", "dataset_dict.json",
                         "cache-*.arrow", RUN_INFO_FILE)
"""What ``save_to_disk`` (and cld-hf beside it) writes into a dataset directory: the only paths
``--overwrite-output-dir`` removes there."""


def add_dataset_output_arguments(parser, what: str) -> None:
    """``-o/--output-dir`` (required) and ``--overwrite-output-dir`` for a command that saves
    ``what`` (a dataset) with ``save_to_disk``; :func:`check_output_dir` applies the rule.

    Examples
    --------
    >>> import argparse
    >>> p = argparse.ArgumentParser()
    >>> add_dataset_output_arguments(p, "the coreset")
    >>> p.parse_args(["-o", "out", "--overwrite"])
    Namespace(output_dir='out', overwrite_output_dir=True)
    """
    parser.add_argument("-o", "--output-dir", required=True,
                        help=f"where to save {what} (refused when it exists and is not empty, "
                        "unless --overwrite-output-dir)")
    parser.add_argument("--overwrite-output-dir", "--overwrite", action="store_true",
                        help="write into an existing -o, removing only a saved dataset there")


def existing_outputs(directory, outputs) -> list[Path]:
    """The paths in ``directory`` that match the glob patterns ``outputs``.

    Examples
    --------
    >>> import tempfile
    >>> d = Path(tempfile.mkdtemp()); (d / "state.json").write_text("{}"); (d / "notes.txt").touch()
    2
    >>> [p.name for p in existing_outputs(d, SAVED_DATASET_OUTPUTS)]
    ['state.json']
    """
    directory = Path(directory)
    if not directory.is_dir():
        return []
    return sorted({p for pattern in outputs for p in directory.glob(pattern)})


def check_output_dir(directory, *, overwrite: bool, outputs, flag: str = "--output-dir",
                     inputs=()) -> Path:
    """Before any work: an existing non-empty ``directory`` is refused unless ``overwrite``;
    ``directory`` may not be one of the ``inputs`` (``save_to_disk`` cannot write over the
    dataset it reads). The same rule for ``cld-hf run``, ``score`` and ``select``.

    Raises
    ------
    FileExistsError
        Naming ``--overwrite-output-dir`` (which removes only the ``outputs`` patterns).
    UsageError
        ``directory`` is a file, or one of ``inputs``.

    Examples
    --------
    >>> import tempfile
    >>> d = Path(tempfile.mkdtemp()); (d / "notes.txt").touch()
    >>> check_output_dir(d, overwrite=False, outputs=["*.arrow"], flag="-o")
    Traceback (most recent call last):
    ...
    FileExistsError: -o ... is not empty (notes.txt); choose another -o or pass --overwrite-output-dir (which removes only what this command writes: *.arrow).
    >>> check_output_dir(d, overwrite=True, outputs=["*.arrow"]) == d
    True
    """
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise UsageError(f"{flag} {str(directory)!r} is a file; pass a directory.")
    for source in inputs:
        if source is not None and Path(source).exists() and \
                Path(source).resolve() == directory.resolve():
            raise UsageError(f"{flag} {str(directory)!r} is the input dataset: save_to_disk cannot "
                             f"write over the dataset it reads. Choose another {flag}.")
    if directory.is_dir() and not overwrite:
        present = sorted(p.name for p in directory.iterdir())
        if present:
            shown = ", ".join(present[:5]) + (f", ... ({len(present)} entries)"
                                              if len(present) > 5 else "")
            raise FileExistsError(
                f"{flag} {str(directory)!r} is not empty ({shown}); choose another {flag} or pass "
                f"--overwrite-output-dir (which removes only what this command writes: "
                f"{', '.join(outputs)}).")
    return directory


def remove_outputs(directory, outputs) -> list[Path]:
    """Remove what a previous run of the command wrote (the ``outputs`` patterns) and nothing
    else; create ``directory``. Returns the removed paths.

    Examples
    --------
    >>> import tempfile
    >>> d = Path(tempfile.mkdtemp()); (d / "state.json").write_text("{}"); (d / "notes.txt").touch()
    2
    >>> [p.name for p in remove_outputs(d, SAVED_DATASET_OUTPUTS)], sorted(p.name for p in d.iterdir())
    (['state.json'], ['notes.txt'])
    """
    import shutil

    removed = existing_outputs(directory, outputs)
    for path in removed:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
    Path(directory).mkdir(parents=True, exist_ok=True)
    return removed


def quiet_datasets():
    """A context in which ``datasets`` shows no progress bars (restored on exit): the
    subcommands print one line of their own instead.

    Examples
    --------
    >>> import datasets
    >>> with quiet_datasets():
    ...     datasets.is_progress_bar_enabled()
    False
    """
    import contextlib

    import datasets

    @contextlib.contextmanager
    def quiet():
        enabled = datasets.is_progress_bar_enabled()
        datasets.disable_progress_bars()
        try:
            yield
        finally:
            if enabled:
                datasets.enable_progress_bars()

    return quiet()
