"""Sharding, gathering and placing by sample index: how a snapshot is assembled across processes.

Each process computes ``(index, loss)`` pairs for its shard of the samples
(:func:`shard_indices`, accelerate's ``PartialState.split_between_processes`` with padding, so
every process runs the same number of batches, which a collective forward such as FSDP needs);
the pairs of all processes are gathered (:func:`gather_arrays`, accelerate's ``gather`` after
``pad_across_processes``) and written into an ``(N,)`` array at their indices
(:func:`place_by_index`, NumPy only). Padding duplicates, dropped batches and uneven shards
therefore cannot misplace a loss; a missing index is an :class:`IncompleteSnapshotError` naming
the samples, and a duplicated one an error too.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from .._validation import MAX_NAMED

logger = logging.getLogger(__name__)

__all__ = [
    "IncompleteSnapshotError",
    "Placed",
    "place_by_index",
    "shard_indices",
    "gather_arrays",
    "any_process",
    "check_process_group",
]


class IncompleteSnapshotError(ValueError):
    """A snapshot lacks the loss of some samples (their indices are in :attr:`missing`).

    Examples
    --------
    >>> err = IncompleteSnapshotError("2 samples never seen", missing=[3, 7])
    >>> err.missing
    [3, 7]
    """

    def __init__(self, message: str, *, missing=()):
        super().__init__(message)
        self.missing = [int(i) for i in missing]


@dataclass
class Placed:
    """What :func:`place_by_index` returns: ``values[i]`` is sample ``i``'s value, and each array
    of ``extra`` has row ``i`` = sample ``i``.

    Examples
    --------
    >>> placed = place_by_index(2, [1, 0], [0.5, 0.25], extra={"correct": [True, False]})
    >>> placed.values.tolist(), placed.extra["correct"].tolist()
    ([0.25, 0.5], [False, True])
    """

    values: np.ndarray
    extra: dict = field(default_factory=dict)


def place_by_index(n: int, index, values, *, order=None, extra=None, what: str = "Snapshot",
                   check_finite: bool = True) -> Placed:
    """Write gathered ``(index, value)`` pairs into an ``(n,)`` array, every index exactly once.

    Parameters
    ----------
    n : int
        Number of samples.
    index : int array of shape (M,)
        Sample index of each pair; ``-1`` marks padding (ignored).
    values : float array of shape (M,)
    order : int array of shape (M,), optional
        When a sample may appear several times (a training pass: accelerate pads the last
        batches of an epoch with samples from its start), the pair with the lowest order (first
        seen) wins. Without ``order`` a repeated index is an error.
    extra : dict of str to array with M rows, optional
        Placed by the same indices (e.g. the baselines' signals of the same sweep).
    what : str
        Names the snapshot in errors, e.g. ``"Training losses at epoch 3"``.
    check_finite : bool, default True
        A NaN or infinite value is an error naming the samples.

    Returns
    -------
    Placed
        ``.values`` (float32, shape ``(n,)``) and ``.extra`` (same keys, row ``i`` = sample ``i``).

    Raises
    ------
    IncompleteSnapshotError
        Some sample has no value.
    ValueError
        An index is out of range or repeated, or a value is not finite.

    Examples
    --------
    Two processes gathered their shards (process 1 padded with ``-1``):

    >>> placed = place_by_index(3, [2, 0, 1, -1], [0.2, 0.0, 0.1, 9.9])
    >>> placed.values.tolist()
    [0.0, 0.10000000149011612, 0.20000000298023224]
    >>> place_by_index(3, [2, 0], [0.2, 0.0])
    Traceback (most recent call last):
    ...
    cld_hf.recording.gather.IncompleteSnapshotError: Snapshot: 1 of 3 samples have no loss, first [1].
    """
    index = np.asarray(index, dtype=np.int64).reshape(-1)
    values = np.asarray(values).reshape(-1)
    if index.shape != values.shape:
        raise ValueError(f"{what}: {len(index)} indices for {len(values)} values.")
    keep = index >= 0  # -1 marks padding added for the gather
    rows = np.flatnonzero(keep)  # the rows of the gathered arrays that end up placed
    index, values = index[keep], values[keep]
    if len(index) and int(index.max()) >= n:
        bad = np.unique(index[index >= n])[:MAX_NAMED].tolist()
        raise ValueError(
            f"{what}: sample indices {bad} are out of range for {n} samples. The indices must be "
            f"row numbers of the dataset given to the recorder (use IndexedDataset)."
        )
    if order is not None:
        order = np.asarray(order, dtype=np.int64).reshape(-1)[keep]
        by_time = np.lexsort((order,))  # stable: equal orders keep gather (process) order
        index, values, rows = index[by_time], values[by_time], rows[by_time]
        _, first = np.unique(index, return_index=True)
        if len(index) - len(first):
            logger.debug("%s: %d repeated sample(s) kept their first loss.", what,
                         len(index) - len(first))
        index, values, rows = index[first], values[first], rows[first]
    counts = np.bincount(index, minlength=n)
    dup = np.flatnonzero(counts > 1)
    if len(dup):
        raise ValueError(
            f"{what}: {len(dup)} sample index(es) received more than one loss, first "
            f"{dup[:MAX_NAMED].tolist()}. Each sample must appear once in a snapshot: check that "
            f"the datasets are not sharded twice (pass the full dataset to every process; the "
            f"recorder splits it)."
        )
    missing = np.flatnonzero(counts == 0)
    if len(missing):
        raise IncompleteSnapshotError(
            f"{what}: {len(missing)} of {n} samples have no loss, first "
            f"{missing[:MAX_NAMED].tolist()}.", missing=missing,
        )
    out = np.empty(n, dtype=np.float32)
    out[index] = values
    if check_finite:
        bad = np.flatnonzero(~np.isfinite(out))
        if len(bad):
            raise ValueError(
                f"{what}: {len(bad)} sample(s) have a NaN or infinite loss, first "
                f"{bad[:MAX_NAMED].tolist()}. A sequence without any target token (all labels "
                f"-100) has no loss: drop it from the dataset. Otherwise the model diverged "
                f"(lower the learning rate)."
            )
    placed = {}
    for name, arr in (extra or {}).items():
        arr = np.asarray(arr)[rows]
        full = np.empty((n, *arr.shape[1:]), dtype=arr.dtype)
        full[index] = arr
        placed[name] = full
    return Placed(out, placed)


def shard_indices(indices, state=None) -> tuple[list[int], int]:
    """This process's share of ``indices``: ``(padded shard, number of real items)``.

    ``PartialState.split_between_processes(..., apply_padding=True)`` gives contiguous shards
    whose sizes differ by at most one and pads the short ones with their last item, so every
    process has the same number of items; the items past ``real`` are padding.

    Examples
    --------
    >>> shard_indices([0, 1, 2, 3, 4])    # one process: everything
    ([0, 1, 2, 3, 4], 5)
    """
    from accelerate import PartialState

    state = state or PartialState()
    items = [int(i) for i in indices]
    if state.num_processes == 1 or not items:
        return items, len(items)
    with state.split_between_processes(items) as real:
        real_count = len(real)
    with state.split_between_processes(items, apply_padding=True) as padded:
        return list(padded), real_count


def gather_arrays(*arrays: np.ndarray, device=None) -> list[np.ndarray]:
    """Concatenate 1-D or N-D arrays of possibly different lengths across processes.

    Each is padded to the longest (``-1`` for integers, ``0`` otherwise) with accelerate's
    ``pad_across_processes`` and gathered with ``accelerate.utils.gather``; booleans travel as
    ``uint8`` (gloo gathers no bool tensors). With one process, the arrays come back unchanged.

    Examples
    --------
    >>> [a.tolist() for a in gather_arrays(np.array([1, 2]), np.array([0.5, 1.5]))]
    [[1, 2], [0.5, 1.5]]
    """
    from accelerate import PartialState

    state = PartialState()
    if state.num_processes == 1:
        return list(arrays)
    import torch
    from accelerate.utils import gather, pad_across_processes

    device = device if device is not None else state.device
    out = []
    for arr in arrays:
        is_bool = arr.dtype == bool
        a = arr.astype(np.uint8) if is_bool else arr
        t = torch.from_numpy(np.ascontiguousarray(a)).to(device)
        pad = -1 if arr.dtype.kind == "i" else 0
        g = gather(pad_across_processes(t, dim=0, pad_index=pad)).cpu().numpy()
        out.append(g.astype(bool) if is_bool else g)
    return out


def any_process(flag: bool) -> bool:
    """``flag`` or-ed over the processes, so that they all take the same branch.

    Examples
    --------
    >>> any_process(False), any_process(True)
    (False, True)
    """
    (flags,) = gather_arrays(np.array([int(flag)], dtype=np.int64))
    return bool((flags > 0).any())


def check_process_group(state) -> None:
    """Refuse a ``PartialState`` that sees one process while ``torch.distributed`` has several.

    accelerate (1.15) leaves ``PartialState()`` at one process on a CPU-only machine launched
    with ``torchrun`` unless it is told ``cpu=True``; every process would then write the
    recording as the main one.

    Examples
    --------
    >>> from accelerate import PartialState
    >>> check_process_group(PartialState())    # one process, no process group
    """
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1 and (
            state.num_processes == 1):
        raise RuntimeError(
            f"torch.distributed runs {dist.get_world_size()} processes, but accelerate's "
            f"PartialState sees {state.num_processes} (distributed_type "
            f"{state.distributed_type}): every process would write the recording. Initialise "
            f"accelerate for them before the recorder: Accelerator(cpu=True) or "
            f"PartialState(cpu=True) on CPU, Accelerator() on GPUs."
        )
