"""What the studies share: the data, the proxy run, training a model on rows, the outputs.

Every study follows the same steps as ``cld-hf run`` (:mod:`cld_hf.app.experiment`): a built-in
or saved dataset, a stratified query split, a proxy trained with ``transformers.Trainer`` +
:class:`~cld_hf.callback.CLDCallback` into a :class:`~cld_hf.trajectories.LossTrajectories`
store, and target models trained from scratch with
:func:`~cld_hf.app.training.train_and_evaluate`, the small ResNet of
:func:`~cld_hf.app.builtin.make_image_classifier` throughout. A study writes ``results.json``
and ``results.md`` first; it removes only its own outputs, and only with
``overwrite_output_dir=True`` once the data loaded.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..._validation import check_float, check_int

__all__ = ["StudyData", "ProxyRun", "load_study_data", "train_proxy", "train_on_rows",
           "check_output_dir", "prepare_output_dir", "write_study_results", "run_info",
           "check_seeds"]

TRAINING_DIR = "_training"
"""Scratch folder of the Trainer inside a study's output directory (removed at the end)."""

DEFAULT_EPOCHS = 10
"""Proxy and target epochs of every study (``cld-hf run`` trains 15 / 20; see the README)."""


@dataclass
class StudyData:
    """The data of one study: training, query and test rows, their labels, the model's shape.

    Attributes
    ----------
    train, query, test : datasets.Dataset
        Torch-formatted, with ``pixel_values``, the label column and (train, query)
        ``sample_index``; ``train`` row ``i`` is sample ``i`` of the recorded store.
    train_labels, query_labels, test_labels : numpy.ndarray of int64
    label_column : str
    num_labels, num_channels : int
    dataset : str
        What was loaded (a built-in name or a path).

    Examples
    --------
    >>> data = load_study_data("digits", max_train=100)
    >>> data.train_labels.shape, data.query_labels.shape, data.num_channels
    ((90,), (10,), 1)
    """

    train: object
    query: object
    test: object
    train_labels: np.ndarray
    query_labels: np.ndarray
    test_labels: np.ndarray
    label_column: str
    num_labels: int
    num_channels: int
    dataset: str

    def describe(self) -> dict:
        """Sizes for the results (``num_train``, ``num_query``, ``num_test``, ``num_labels``).

        Examples
        --------
        >>> load_study_data("digits", max_train=100).describe()["num_train"]
        90
        """
        return {"dataset": self.dataset, "num_train": len(self.train_labels),
                "num_query": len(self.query_labels), "num_test": len(self.test_labels),
                "num_labels": self.num_labels}


def _labels(ds, column: str) -> np.ndarray:
    return np.asarray(ds.with_format("numpy", columns=[column])[column][:]).astype(np.int64)


def _pixel_values(dataset, label_column: str, image_size: int):
    """``dataset`` with a ``pixel_values`` tensor column: in torch format when it holds one,
    else a transform of its images (:func:`cld_hf.app.inputs.image_inputs`); and the number of
    channels when it was read from the images (``None`` otherwise)."""
    if "pixel_values" in dataset.column_names:
        return dataset.with_format("torch"), None
    import torch

    from ..inputs import detect_task, image_inputs

    task, column = detect_task(dataset.features, label_column=label_column)
    if task != "image-classification":
        raise ValueError(f"The studies train the small image ResNet; {dataset.column_names} "
                         f"holds no images (a {task} dataset).")
    inputs = image_inputs(dataset, column=column, label_column=label_column,
                          image_size=image_size)

    def transform(batch):
        rows = [{column: value} for value in batch[column]]
        out = {k: v for k, v in batch.items() if k != column}
        out["pixel_values"] = [torch.from_numpy(inputs.pixels(r)) for r in rows]
        for name, values in out.items():
            if name != "pixel_values":
                out[name] = torch.as_tensor(values)
        return out

    dataset.set_transform(transform)
    return dataset, inputs.num_channels


def load_study_data(dataset: str = "digits", *, seed: int = 0, query_fraction: float = 0.1,
                    max_train: int | None = None, image_size: int = 32) -> StudyData:
    """Load a dataset (as ``cld-hf run`` does) and split a stratified query set off it.

    Parameters
    ----------
    dataset : str, default "digits"
        A built-in name (``digits``, ``mnist1d``), a ``save_to_disk`` directory, an imagefolder
        or a Hub id (see :func:`cld_hf.app.data.load_data`).
    seed : int, default 0
        Seed of the query split (and of the ``max_train`` subsample).
    query_fraction : float, default 0.1
        Share of each class held out as the query set.
    max_train : int, optional
        Keep a stratified subsample of about this many rows of the training split before the query
        split (small studies and tests); the test split is kept whole.
    image_size : int, default 32
        Side of the images fed to the model when the data holds PIL images.

    Returns
    -------
    StudyData

    Raises
    ------
    ValueError
        A ``query_fraction`` outside (0, 1), a ``max_train`` below twice the number of classes.

    Examples
    --------
    >>> data = load_study_data("digits", max_train=200, query_fraction=0.2)
    >>> len(data.train), len(data.query), len(data.test), data.num_labels
    (159, 40, 450, 10)
    """
    from ...columns import INDEX_COLUMN
    from ...dataset_adapters import stratified_query_split
    from ...identity import add_index_column
    from ...splits import stratified_split_indices
    from ..data import load_data

    check_float("query_fraction", query_fraction)
    if not 0.0 < query_fraction < 1.0:
        raise ValueError(f"query_fraction == {query_fraction}, must be in (0, 1).")
    train, test, label_column, names = load_data(dataset, seed=seed)
    train = train.remove_columns(INDEX_COLUMN)  # indexed again below, after the subsample
    labels = _labels(train, label_column)
    num_labels = len(names) if names else int(labels.max()) + 1
    if max_train is not None:
        check_int("max_train", max_train, min_val=2 * num_labels)
        if max_train < len(labels):
            _, keep = stratified_split_indices(labels, fraction=max_train / len(labels),
                                               seed=seed)
            train = train.select(keep)
    train, num_channels = _pixel_values(train, label_column, image_size)
    test, _ = _pixel_values(test, label_column, image_size)
    if num_channels is None:
        num_channels = int(train.features["pixel_values"].shape[0])
    train = add_index_column(train, name=dataset, split="train", label_column=label_column)
    train_ds, query_ds = stratified_query_split(train, fraction=query_fraction, seed=seed,
                                                label_column=label_column)
    return StudyData(train=train_ds, query=query_ds, test=test,
                     train_labels=_labels(train_ds, label_column),
                     query_labels=_labels(query_ds, label_column),
                     test_labels=_labels(test, label_column), label_column=label_column,
                     num_labels=num_labels, num_channels=num_channels, dataset=str(dataset))


@dataclass
class ProxyRun:
    """A proxy trained on the whole training set, with its CLD recording.

    Attributes
    ----------
    store : LossTrajectories
        Losses of the training and query samples before training and after every epoch.
    model : the trained model
    test_accuracy : float
    checkpoints : EpochFeatures or None
        Per-epoch softmax, features and learning rate (``features=True``).
    seconds : float
        Wall-clock seconds of the proxy training, recording included.

    Examples
    --------
    ::

        proxy = train_proxy(load_study_data("digits"), store_dir="out/trajectories")
        proxy.store.scores()       # the CLD scores of the training samples
    """

    store: object
    model: object
    test_accuracy: float
    checkpoints: object = None
    seconds: float = 0.0

    def tracin(self, data: StudyData, *, final_only: bool = False) -> np.ndarray:
        """TracInCP on the last layer over the epoch checkpoints, ``(N, Q)``
        (:func:`cld_hf.attribution.tracin_last_layer`); ``final_only``: the last checkpoint,
        learning rate 1.

        Examples
        --------
        See :func:`cld_hf.app.studies.lds_study`::

            a = proxy.tracin(data)      # (N, Q), sum over epochs of lr * <g(z), g(z')>
        """
        from ...attribution import tracin_last_layer

        c = self.checkpoints
        if c is None or not c.num_checkpoints:
            raise ValueError("This proxy recorded no per-epoch features; train it with "
                             "train_proxy(..., features=True).")
        sl = slice(-1, None) if final_only else slice(None)
        return tracin_last_layer(c.probs[sl], c.embeddings[sl], data.train_labels,
                                 c.query_probs[sl], c.query_embeddings[sl], data.query_labels,
                                 learning_rates=1.0 if final_only else c.learning_rates[sl])


def _train(data: StudyData, rows, *, seed, epochs, batch_size, learning_rate, output_dir,
           callbacks=None):
    from ..builtin import make_image_classifier
    from ..training import train_and_evaluate

    train = data.train if rows is None else data.train.select(np.asarray(rows, np.int64))
    model = make_image_classifier(data.num_labels, num_channels=data.num_channels, seed=seed)
    trainer, acc = train_and_evaluate(
        model, train, data.test, output_dir=Path(output_dir) / TRAINING_DIR, epochs=epochs,
        batch_size=batch_size, learning_rate=learning_rate, seed=seed,
        label_column=data.label_column, callbacks=callbacks)
    return trainer.model, acc


def train_proxy(data: StudyData, *, store_dir, seed: int = 0, epochs: int = DEFAULT_EPOCHS,
                batch_size: int = 64, learning_rate: float = 1e-2,
                features: bool = False) -> ProxyRun:
    """Train the proxy on all of ``data.train`` with ``CLDCallback`` recording into
    ``store_dir`` (and, with ``features=True``, :class:`EpochFeatures` beside it).

    Parameters
    ----------
    data : StudyData
    store_dir : path
        An empty directory (or none) for the store.
    seed : int, default 0
        Seed of the initial weights and of the Trainer (data order).
    epochs, batch_size, learning_rate
        The Trainer's (AdamW, linear decay).
    features : bool, default False
        Also take the per-epoch softmax and penultimate features TracIn needs.

    Returns
    -------
    ProxyRun

    Examples
    --------
    ::

        data = load_study_data("digits")
        proxy = train_proxy(data, store_dir="out/trajectories", epochs=10, features=True)
        proxy.store.train_losses().shape    # (1212, 11)
    """
    from ...callback import CLDCallback
    from ...recording.config import RecorderConfig
    from ...trajectories import LossTrajectories
    from .checkpoints import EpochFeatures

    started = time.perf_counter()
    config = RecorderConfig(label_column=data.label_column, progress=False, log_summary=False)
    cld = CLDCallback(data.query, config, output_dir=store_dir)
    callbacks = [cld]
    checkpoints = None
    if features:
        checkpoints = EpochFeatures(data.train, data.query)
        callbacks.append(checkpoints)
    model, acc = _train(data, None, seed=seed, epochs=epochs, batch_size=batch_size,
                        learning_rate=learning_rate, output_dir=Path(store_dir).parent,
                        callbacks=callbacks)
    store = LossTrajectories(store_dir)
    if store.num_train != len(data.train_labels) or not np.array_equal(store.train_labels,
                                                                       data.train_labels):
        raise RuntimeError("The recorded store does not match the training rows; this is a bug.")
    return ProxyRun(store=store, model=model, test_accuracy=acc, checkpoints=checkpoints,
                    seconds=time.perf_counter() - started)


def train_on_rows(data: StudyData, rows, *, seed: int, epochs: int = DEFAULT_EPOCHS,
                  batch_size: int = 64, learning_rate: float = 1e-2, output_dir,
                  predict_on=("query",)):
    """Train a fresh model on ``data.train`` rows ``rows`` (all with ``None``) and predict.

    Parameters
    ----------
    data : StudyData
    rows : int array or None
        Training rows (sample indices of the store).
    seed : int
        Seed of the initial weights and of the Trainer.
    epochs, batch_size, learning_rate
    output_dir : path
        The study's output directory (the Trainer's scratch folder goes inside).
    predict_on : sequence of {"query", "test", "train"}, default ("query",)
        Which splits to return logits for.

    Returns
    -------
    (test_accuracy, {split: logits (n, C)})

    Examples
    --------
    ::

        acc, logits = train_on_rows(data, np.arange(100), seed=1000, output_dir="out")
        logits["query"].shape     # (Q, C)
    """
    from .checkpoints import predict

    model, acc = _train(data, rows, seed=seed, epochs=epochs, batch_size=batch_size,
                        learning_rate=learning_rate, output_dir=output_dir)
    splits = {"query": data.query, "test": data.test, "train": data.train}
    return acc, {name: predict(model, splits[name]) for name in predict_on}


# ------------------------------------------------------------------------------ arguments


def check_seeds(seeds, name: str = "seeds", *, min_count: int = 1) -> list[int]:
    """A list of distinct ints, at least ``min_count`` of them.

    Examples
    --------
    >>> check_seeds([0, 1, 2])
    [0, 1, 2]
    >>> check_seeds([3, 3])
    Traceback (most recent call last):
    ...
    ValueError: seeds == [3, 3] repeats a seed; give distinct seeds, e.g. [3, 4].
    """
    if isinstance(seeds, (int, np.integer)) or isinstance(seeds, str):
        raise TypeError(f"{name} == {seeds!r}: pass a list of seeds, e.g. [0, 1, 2].")
    out = [check_int(f"{name}[{i}]", s) for i, s in enumerate(seeds)]
    if len(out) < min_count:
        raise ValueError(f"{name} == {out} has {len(out)} seed(s), needs at least {min_count}; "
                         f"e.g. {list(range(min_count))}.")
    if len(set(out)) != len(out):
        raise ValueError(f"{name} == {out} repeats a seed; give distinct seeds, e.g. "
                         f"{sorted(set(out))[:1] + [sorted(set(out))[0] + 1]}.")
    return out


def check_fractions(name: str, values, *, upper_open: bool = True) -> list[float]:
    """Floats in (0, 1) (or (0, 1] with ``upper_open=False``), sorted, distinct.

    Examples
    --------
    >>> check_fractions("alphas", [0.5, 0.25])
    [0.25, 0.5]
    >>> check_fractions("alphas", [1.0])
    Traceback (most recent call last):
    ...
    ValueError: alphas contains 1.0, each must be in (0, 1).
    """
    if isinstance(values, (int, float, str)):
        raise TypeError(f"{name} == {values!r}: pass a list, e.g. [{values!r}].")
    out = sorted({float(check_float(f"{name}[{i}]", v)) for i, v in enumerate(values)})
    if not out:
        raise ValueError(f"{name} is empty; give at least one value, e.g. [0.5].")
    for v in out:
        if not (0.0 < v < 1.0 if upper_open else 0.0 < v <= 1.0):
            raise ValueError(f"{name} contains {v}, each must be in "
                             f"{'(0, 1)' if upper_open else '(0, 1]'}.")
    return out


# ------------------------------------------------------------------------------ outputs


def check_output_dir(output_dir, outputs, *, overwrite: bool) -> Path:
    """Before anything is loaded: refuse to write over a previous study's outputs unless asked.

    Parameters
    ----------
    output_dir : path
    outputs : sequence of str
        Glob patterns of what the study writes (the only paths it ever removes).
    overwrite : bool

    Examples
    --------
    >>> import tempfile
    >>> d = Path(tempfile.mkdtemp()); _ = (d / "results.json").write_text("{}")
    >>> check_output_dir(d, ["results.json"], overwrite=False)
    Traceback (most recent call last):
    ...
    FileExistsError: output_dir '...' holds the outputs of a previous study (results.json); ...
    """
    out = Path(output_dir)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"output_dir {str(out)!r} is a file; pass a directory.")
    from ...cli.common import existing_outputs

    existing = existing_outputs(out, outputs)
    if existing and not overwrite:
        raise FileExistsError(
            f"output_dir {str(out)!r} holds the outputs of a previous study "
            f"({', '.join(p.name for p in existing[:5])}); choose another output directory or "
            f"pass overwrite_output_dir=True (--overwrite-output-dir), which removes those "
            f"outputs only, once the data loaded."
        )
    return out


def prepare_output_dir(output_dir, outputs) -> Path:
    """After the inputs loaded: remove the previous study's outputs (nothing else), make the
    directory.

    Examples
    --------
    >>> import tempfile
    >>> d = Path(tempfile.mkdtemp()); _ = (d / "results.md").write_text("old")
    >>> _ = (d / "notes.txt").write_text("mine")
    >>> sorted(p.name for p in prepare_output_dir(d, ["results.md"]).iterdir())
    ['notes.txt']
    """
    from ...cli.common import remove_outputs

    remove_outputs(output_dir, outputs)
    return Path(output_dir)


def run_info(command: str | None = None) -> dict:
    """When and where a study ran: UTC date, host, CPUs, load averages, torch threads, versions.

    Examples
    --------
    >>> sorted(run_info("cld-hf study lds"))[:4]
    ['command', 'cpus', 'date_utc', 'host']
    """
    info = {
        "command": command,
        "date_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "host": platform.node(),
        "cpus": (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                 else os.cpu_count()),
        "load_average": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg")
        else None,
        "python": platform.python_version(),
    }
    try:
        import torch
        import transformers

        info.update(torch=torch.__version__, transformers=transformers.__version__,
                    torch_threads=torch.get_num_threads())
    except ImportError:  # pragma: no cover - the app always has them
        pass
    return info


def _plain(obj):
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _plain(obj.tolist())
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    return obj


def write_study_results(out, results: dict, markdown: str) -> None:
    """Write ``results.json`` (NumPy values as plain JSON; NaN as null) and ``results.md``.

    Examples
    --------
    >>> import tempfile
    >>> d = Path(tempfile.mkdtemp())
    >>> write_study_results(d, {"lds": np.float32(0.5), "x": [np.nan]}, "# t")
    >>> json.loads((d / "results.json").read_text()), (d / "results.md").read_text()
    ({'lds': 0.5, 'x': [None]}, '# t\\n')
    """
    from ...cli.common import write_json

    write_json(Path(out) / "results.json", _plain(results))
    from ...fileio import atomic_write_bytes

    atomic_write_bytes(Path(out) / "results.md", (markdown.rstrip("\n") + "\n").encode())


def footer(info: dict, seconds: float) -> str:
    """The provenance line under every study table.

    Examples
    --------
    >>> footer({"command": "cld-hf study lds", "date_utc": "2025-01-01 00:00 UTC", "cpus": 2,
    ...         "load_average": [1.0, 1.0, 1.0], "torch_threads": 1}, 61.0)[:62]
    '`cld-hf study lds`: 2025-01-01 00:00 UTC, 2 CPUs, load average'
    """
    load = " ".join(str(x) for x in info.get("load_average") or [])
    command = f"`{info['command']}`" if info.get("command") else "Called from Python"
    return (f"{command}: {info.get('date_utc')}, {info.get('cpus')} CPUs, load "
            f"average {load} at the start, {info.get('torch_threads')} torch thread(s), "
            f"{seconds:.0f} s.")


def set_threads(threads: int | None) -> int:
    """Set torch's CPU threads (default: :func:`cld_hf.app.arguments.default_threads`).

    Examples
    --------
    >>> set_threads(1)
    1
    """
    import torch

    from ..arguments import default_threads

    n = default_threads() if threads is None else check_int("threads", threads, min_val=1)
    torch.set_num_threads(n)
    return n


def cleanup_training_dir(out) -> None:
    """Remove the Trainer's scratch folder.

    Examples
    --------
    >>> cleanup_training_dir("/nonexistent-dir")
    """
    shutil.rmtree(Path(out) / TRAINING_DIR, ignore_errors=True)


def dump(obj) -> str:
    """Compact JSON of a small object (for logs).

    Examples
    --------
    >>> dump({"a": np.int64(1)})
    '{"a": 1}'
    """
    return json.dumps(_plain(obj))
