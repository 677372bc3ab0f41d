"""One eval-mode sweep of a dataset: this process's ``(index, loss, signals)`` for its shard.

The sweep runs under ``torch.no_grad`` (no autograd state is kept; not ``torch.inference_mode``,
whose tensors a sharded model would keep: FSDP's unsharded parameters made in an inference-mode
forward cannot be updated by the training step that follows) and under a forked
random-number generator (``torch.random.fork_rng``, CPU and the current CUDA device): building
and iterating the sweep's ``DataLoader`` draws from torch's global RNG, which would otherwise
change the dropout masks and shuffles of the training that follows. Recording therefore never
changes the training it observes. Losses stay on the device until the end of the sweep (one
transfer, not one per batch); ``pin_memory`` and non-blocking copies are used only on a GPU.

A transformers model is run with ``use_cache=False`` (as the Trainer's training step does): a
key/value cache is of no use to a loss, and with one transformers does not build the
block-diagonal attention of padding-free (flattened) batches, so documents would attend to each
other. Every process runs the same number of batches (the shards are padded), so a sharded
model (FSDP), whose forward is collective, runs the sweep like any other.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import numpy as np
import torch

from .indexing import INDEX_KEY, IndexCollator, IndexedDataset, forward_parameters
from .features import FeatureCatcher, classification_signals
from .losses import base_model_of, find_labels, find_logits, unwrap_model

__all__ = ["sweep_losses", "sweep_dataset", "preserved_rng"]


def preserved_rng(device: torch.device):
    """A context that restores torch's CPU RNG (and the CUDA RNG of ``device``) on exit.

    Examples
    --------
    >>> _ = torch.manual_seed(0); expected = torch.rand(1)
    >>> _ = torch.manual_seed(0)
    >>> with preserved_rng(torch.device("cpu")):
    ...     _ = torch.rand(3)        # draws inside do not move the generator outside
    >>> bool(torch.rand(1) == expected)
    True
    """
    devices = [device.index if device.index is not None else torch.cuda.current_device()] if (
        device.type == "cuda") else []
    return torch.random.fork_rng(devices=devices)


def sweep_dataset(dataset, *, eval_transform=None, columns=None):
    """The dataset as a sweep reads it: ``eval_transform`` instead of the dataset's own
    transform, or, without a custom transform, only the ``columns`` the model takes (so unused
    columns are not read or decoded).

    Examples
    --------
    >>> from datasets import Dataset
    >>> ds = Dataset.from_dict({"x": [1, 2], "label": [0, 1], "text": ["a", "b"]})
    >>> sweep_dataset(ds, columns={"x", "label"}).column_names
    ['x', 'label']
    """
    if eval_transform is not None:
        return dataset.with_transform(eval_transform)
    fmt = getattr(dataset, "format", None)
    plain_format = isinstance(fmt, dict) and fmt.get("type") != "custom"
    if columns is not None and plain_format and hasattr(dataset, "select_columns"):
        keep = [c for c in dataset.column_names if c in columns]
        if keep and len(keep) < len(dataset.column_names):
            return dataset.select_columns(keep)
    return dataset


def sweep_losses(model, dataset, shard: list[int], real: int, *,
                 per_sample_loss: Callable, collate_fn=None, columns=None, batch_size: int = 64,
                 num_workers: int = 0, device=None, autocast=None, signals=(),
                 feature_module=None, with_labels: Callable = lambda batch: batch,
                 progress: bool = False, desc: str = "CLD sweep"):
    """Per-sample losses of the rows ``shard`` of ``dataset``, in eval mode.

    Parameters
    ----------
    model : torch.nn.Module
        Put in eval mode for the sweep and back in its previous mode afterwards.
    dataset : map-style dataset of dict rows
    shard : list of int
        The row indices this process sweeps (padded so every process has as many).
    real : int
        How many of ``shard`` are real; the rest is padding, returned with index ``-1``.
    per_sample_loss : callable
        ``fn(outputs, batch, model) -> Tensor[B]``.
    collate_fn, columns, batch_size, num_workers
        The loader: the collator of the rows, the columns to keep (``None``: all).
    device : torch.device, optional
        Where the model runs (default: the model's first parameter's device).
    autocast : callable, optional
        A context manager factory for mixed precision (``accelerator.autocast``).
    signals : iterable of str
        Per-batch signals (:func:`~cld_hf.recording.features.classification_signals` names and
        ``embeddings``), returned as ``{name: array with one row per shard item}``.
    feature_module : str or torch.nn.Module, optional
        See :func:`~cld_hf.recording.features.find_feature_module`.
    with_labels : callable
        Maps a batch to one whose labels the signals find (a custom label column).
    progress : bool
        A tqdm bar.

    Returns
    -------
    (index, loss, extras): int64 ``(len(shard),)`` with ``-1`` for padding, float32 losses, and
    the signals.

    Examples
    --------
    >>> from datasets import Dataset
    >>> from cld_hf.recording.losses import default_per_sample_loss
    >>> class Net(torch.nn.Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.lin = torch.nn.Linear(1, 2)
    ...     def forward(self, x, labels=None):
    ...         return {"logits": self.lin(x)}
    >>> ds = Dataset.from_dict({"x": [[0.0], [1.0], [2.0]], "label": [0, 1, 0]})
    >>> idx, loss, _ = sweep_losses(Net(), ds, [2, 0, 1, 1], 3,
    ...                             per_sample_loss=lambda o, b, m: default_per_sample_loss(o, b))
    >>> idx.tolist(), loss.shape
    ([2, 0, 1, -1], (4,))
    """
    from torch.utils.data import DataLoader
    from tqdm.auto import tqdm

    if not shard:
        return np.zeros(0, np.int64), np.zeros(0, np.float32), {}
    net = unwrap_model(model)
    if device is None:
        param = next(net.parameters(), None)
        device = param.device if param is not None else torch.device("cpu")
    device = torch.device(device)
    on_gpu = device.type == "cuda"
    data = IndexedDataset(dataset)
    loader = DataLoader(
        data, batch_size=batch_size, sampler=shard, shuffle=False,
        collate_fn=IndexCollator(collate_fn, columns=columns),
        num_workers=num_workers, pin_memory=on_gpu,
    )
    accepted = forward_parameters(net)  # None: forward takes **kwargs, pass the whole batch
    no_cache = _takes_use_cache(net, accepted)
    signals = list(signals)
    batch_signals = [n for n in signals if n != "embeddings"]
    was_training = net.training
    out_index, out_loss = [], []
    out_signals = {name: [] for name in signals}
    catcher = FeatureCatcher(net, feature_module) if "embeddings" in signals else None
    bar = tqdm(total=len(loader), desc=desc, unit="batch", leave=False, disable=not progress)
    try:
        with preserved_rng(device), torch.no_grad():
            net.eval()
            for batch in loader:
                index = batch.pop(INDEX_KEY)
                batch = _to_device(batch, device, non_blocking=on_gpu)
                inputs = batch if accepted is None else {
                    k: v for k, v in batch.items() if k in accepted}
                if no_cache:
                    inputs = {**inputs, "use_cache": False}
                with autocast() if callable(autocast) else contextlib.nullcontext():
                    outputs = net(**inputs)
                out_index.append(index)
                # The index tells the loss how many samples a flattened (padding-free) batch holds.
                out_loss.append(per_sample_loss(outputs, {**batch, INDEX_KEY: index}, net))
                if signals:
                    logits = find_logits(outputs)
                    values = classification_signals(logits, find_labels(with_labels(batch)),
                                                    batch_signals)
                    if catcher is not None:
                        values["embeddings"] = catcher.take(len(index), logits.shape[-1])
                    for name, value in values.items():
                        out_signals[name].append(value)
                bar.update(1)
    finally:
        bar.close()
        if catcher is not None:
            catcher.remove()
        net.train(was_training)
    idx = torch.cat(out_index).numpy()
    loss = torch.cat(out_loss).float().cpu().numpy()
    idx[real:] = -1  # the repeated items that evened out the shards
    extras = {name: torch.cat(parts).cpu().numpy() for name, parts in out_signals.items()}
    return idx, loss, extras


def _takes_use_cache(net, accepted) -> bool:
    config = getattr(base_model_of(net), "config", None)
    if getattr(config, "use_cache", None) is None:
        return False
    return accepted is None or "use_cache" in accepted


def _to_device(batch, device, *, non_blocking: bool):
    from accelerate.utils import send_to_device

    return send_to_device(batch, device, non_blocking=non_blocking)
