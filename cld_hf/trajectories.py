"""`LossTrajectories`: the on-disk store of per-sample loss snapshots, one Arrow file per snapshot.

Layout of a store directory::

    store/
      store.json                  format, version, N, Q, user metadata
      labels.arrow                sample_index, split ("train"/"query"), label   (N + Q rows)
      snapshot-00000.arrow        one float32 column "loss": N training then Q query losses
      snapshot-00001.arrow        ... one file per snapshot, written atomically (tmp + rename)

A snapshot file appears only when it is complete (written under a temporary name, then renamed),
so a crash loses at most the snapshot being written. Reopening the directory picks up every
complete snapshot. Storage is ``(N + Q) * S * 4`` bytes plus a few hundred bytes per file.

Sample ``i`` of the training set is row ``i`` of every snapshot: the store is keyed by the
integer sample index, never by the order in which a data loader produced the samples.

This module uses NumPy and pyarrow; only :meth:`LossTrajectories.to_dataset` imports ``datasets``.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc

from .scoring import StreamingCLD, _check_labels, cld_scores, snapshot_window

logger = logging.getLogger(__name__)

__all__ = ["LossTrajectories", "trajectory_column"]

FORMAT_NAME = "cld-hf-loss-trajectories"
FORMAT_VERSION = 1
_META = "store.json"
_LABELS = "labels.arrow"
_SNAPSHOT_RE = re.compile(r"^snapshot-(\d{5,})\.arrow$")


def _snapshot_name(index: int) -> str:
    return f"snapshot-{index:05d}.arrow"


def _write_atomic(path: Path, table: pa.Table) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with pa.OSFile(str(tmp), "wb") as sink, ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
    with open(tmp, "rb") as f:  # make the bytes durable before the rename makes them visible
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _read_table(path: Path) -> pa.Table:
    with pa.memory_map(str(path), "r") as source:
        return ipc.open_file(source).read_all()


def trajectory_column(matrix: np.ndarray) -> pa.FixedSizeListArray:
    """An Arrow ``FixedSizeListArray`` over an ``(N, S)`` float32 matrix, without Python lists.

    This is the storage of a ``datasets`` feature ``List(Value("float32"), length=S)``.

    Examples
    --------
    >>> col = trajectory_column(np.arange(6, dtype=np.float32).reshape(2, 3))
    >>> col.type
    FixedSizeListType(fixed_size_list<item: float>[3])
    >>> col.to_pylist()
    [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]]
    """
    m = np.ascontiguousarray(matrix, dtype=np.float32)
    if m.ndim != 2:
        raise ValueError(f"matrix must be 2-D (samples, snapshots), got shape {m.shape}.")
    return pa.FixedSizeListArray.from_arrays(pa.array(m.reshape(-1)), m.shape[1])


class LossTrajectories:
    """Training and query loss snapshots, persisted one snapshot per file as they land.

    Open an existing store with ``LossTrajectories(directory)``; make a new one with
    :meth:`create`.

    Parameters
    ----------
    directory : str or os.PathLike
        A directory written by :meth:`create`.

    Examples
    --------
    >>> import tempfile
    >>> d = tempfile.mkdtemp()
    >>> store = LossTrajectories.create(d, train_labels=[0, 0, 1], query_labels=[0, 1])
    >>> train = [[3.0, 2.0, 1.0], [2.0, 2.0, 3.0], [1.5, 2.0, 3.0], [0.5, 2.0, 5.0]]
    >>> query = [[2.5, 1.0], [1.5, 2.0], [1.0, 2.0], [0.0, 3.0]]
    >>> for epoch in range(4):
    ...     _ = store.append(train[epoch], query[epoch], epoch=epoch)
    >>> reopened = LossTrajectories(d)
    >>> reopened.num_snapshots, reopened.train_losses().shape
    (4, (3, 4))
    >>> reopened.scores().tolist()
    [1.0, 0.0, 1.0]
    """

    def __init__(self, directory):
        self.directory = Path(directory)
        meta_path = self.directory / _META
        if not meta_path.is_file():
            raise FileNotFoundError(
                f"{self.directory} is not a loss-trajectory store (no {_META}). "
                f"Create one with LossTrajectories.create(directory, train_labels, query_labels)."
            )
        meta = json.loads(meta_path.read_text())
        if meta.get("format") != FORMAT_NAME or meta.get("version", 0) > FORMAT_VERSION:
            raise ValueError(
                f"{meta_path} has format {meta.get('format')!r} version {meta.get('version')}; "
                f"this cld-hf reads {FORMAT_NAME!r} up to version {FORMAT_VERSION}. Upgrade cld-hf."
            )
        self.metadata: dict = meta.get("metadata", {})
        self.num_train = int(meta["num_train"])
        self.num_query = int(meta["num_query"])
        labels = _read_table(self.directory / _LABELS)
        all_labels = labels.column("label").to_numpy()
        self.train_labels = all_labels[: self.num_train]
        self.query_labels = all_labels[self.num_train :]
        self._snapshot_info: list[dict] = []
        self._recover()

    # ---------------------------------------------------------------- construction / recovery
    @classmethod
    def create(
        cls,
        directory,
        train_labels,
        query_labels,
        *,
        metadata: dict | None = None,
        overwrite: bool = False,
    ) -> LossTrajectories:
        """Create an empty store for ``N`` training and ``Q`` query samples.

        Parameters
        ----------
        directory : str or os.PathLike
            Created if missing. An existing store there is an error unless ``overwrite=True``.
        train_labels, query_labels : int arrays of shape (N,) and (Q,)
            Class of each training / query sample, in sample-index order.
        metadata : dict, optional
            JSON-serialisable information kept with the store (model name, query seed, ...).
        overwrite : bool, default False
            Replace an existing store in ``directory``.

        Examples
        --------
        >>> import tempfile
        >>> store = LossTrajectories.create(tempfile.mkdtemp(), [0, 1, 1], [0, 1])
        >>> store.num_train, store.num_query, store.num_snapshots
        (3, 2, 0)
        """
        directory = Path(directory)
        tl = _check_labels(train_labels, "train_labels").astype(np.int64)
        ql = _check_labels(query_labels, "query_labels").astype(np.int64)
        if (directory / _META).exists():
            if not overwrite:
                raise FileExistsError(
                    f"{directory} already holds a loss-trajectory store. Open it with "
                    f"LossTrajectories({str(directory)!r}), or pass overwrite=True to replace it."
                )
            for p in directory.iterdir():
                if p.name in (_META, _LABELS) or _SNAPSHOT_RE.match(p.name) or p.suffix == ".tmp":
                    p.unlink()
        directory.mkdir(parents=True, exist_ok=True)
        labels = pa.table(
            {
                "sample_index": pa.array(
                    np.concatenate([np.arange(len(tl)), np.arange(len(ql))]), pa.int64()
                ),
                "split": pa.array(["train"] * len(tl) + ["query"] * len(ql), pa.string())
                .dictionary_encode(),
                "label": pa.array(np.concatenate([tl, ql]), pa.int64()),
            }
        )
        _write_atomic(directory / _LABELS, labels)
        meta = {
            "format": FORMAT_NAME,
            "version": FORMAT_VERSION,
            "num_train": int(len(tl)),
            "num_query": int(len(ql)),
            "metadata": metadata or {},
        }
        tmp = directory / (_META + ".tmp")
        tmp.write_text(json.dumps(meta, indent=2))
        os.replace(tmp, directory / _META)
        return cls(directory)

    def _recover(self) -> None:
        """Find the complete snapshots; drop temporary files a crash left behind."""
        indices = []
        for p in self.directory.iterdir():
            if p.name.endswith(".tmp"):
                logger.warning("Removing incomplete snapshot file %s (interrupted write).", p)
                p.unlink()
                continue
            m = _SNAPSHOT_RE.match(p.name)
            if m:
                indices.append(int(m.group(1)))
        indices.sort()
        if indices != list(range(len(indices))):
            raise ValueError(
                f"{self.directory} has snapshot files {indices}, which are not numbered 0..S-1 "
                f"without gaps. Remove the files after the first gap (truncate the store) and "
                f"record those snapshots again."
            )
        self._snapshot_info = [self._read_info(i) for i in indices]

    def _read_info(self, index: int) -> dict:
        with pa.memory_map(str(self._path(index)), "r") as source:
            schema = ipc.open_file(source).schema
        raw = (schema.metadata or {}).get(b"cld_hf", b"{}")
        return json.loads(raw)

    def _path(self, index: int) -> Path:
        return self.directory / _snapshot_name(index)

    # ---------------------------------------------------------------- writing
    def append(self, train_losses, query_losses, *, epoch=None, step=None) -> int:
        """Persist one snapshot: ``(N,)`` training losses and ``(Q,)`` query losses.

        The file is complete on disk when this returns. Returns the snapshot's index.

        Parameters
        ----------
        train_losses : array of shape (N,)
            Loss of training sample ``i`` at position ``i``.
        query_losses : array of shape (Q,)
        epoch : float, optional
            Training epoch of the snapshot (0 before training), kept for resuming.
        step : int, optional
            Global optimisation step of the snapshot.

        Examples
        --------
        >>> import tempfile
        >>> store = LossTrajectories.create(tempfile.mkdtemp(), [0, 1], [1])
        >>> store.append([0.5, 0.7], [0.9], epoch=0)
        0
        """
        tr = np.asarray(train_losses, dtype=np.float32)
        qr = np.asarray(query_losses, dtype=np.float32)
        if tr.shape != (self.num_train,) or qr.shape != (self.num_query,):
            raise ValueError(
                f"append() got train_losses of shape {tr.shape} and query_losses of shape "
                f"{qr.shape}; this store holds N={self.num_train} training and "
                f"Q={self.num_query} query samples: pass one loss per sample, by sample index."
            )
        bad = int(np.count_nonzero(~np.isfinite(tr))) + int(np.count_nonzero(~np.isfinite(qr)))
        if bad:
            logger.warning(
                "Snapshot %d holds %d NaN/inf loss(es); it is stored, but scoring will refuse "
                "it. First training rows: %s", self.num_snapshots, bad,
                np.flatnonzero(~np.isfinite(tr))[:10].tolist(),
            )
        index = self.num_snapshots
        info = {"index": index, "epoch": None if epoch is None else float(epoch),
                "step": None if step is None else int(step)}
        schema = pa.schema([pa.field("loss", pa.float32())],
                           metadata={"cld_hf": json.dumps(info)})
        table = pa.Table.from_arrays([pa.array(np.concatenate([tr, qr]))], schema=schema)
        _write_atomic(self._path(index), table)
        self._snapshot_info.append(info)
        return index

    def truncate(self, num_snapshots: int) -> None:
        """Keep only the first ``num_snapshots`` snapshots (e.g. to resume from a checkpoint).

        Examples
        --------
        >>> import tempfile
        >>> store = LossTrajectories.create(tempfile.mkdtemp(), [0], [0])
        >>> for t in range(4):
        ...     _ = store.append([t], [t])
        >>> store.truncate(2); store.num_snapshots
        2
        """
        if not 0 <= num_snapshots <= self.num_snapshots:
            raise ValueError(
                f"num_snapshots == {num_snapshots}, must be between 0 and the "
                f"{self.num_snapshots} snapshots held."
            )
        for i in range(self.num_snapshots - 1, num_snapshots - 1, -1):  # newest first
            self._path(i).unlink()
        del self._snapshot_info[num_snapshots:]

    # ---------------------------------------------------------------- reading
    @property
    def num_snapshots(self) -> int:
        return len(self._snapshot_info)

    @property
    def snapshot_info(self) -> list[dict]:
        """Per snapshot: ``{"index", "epoch", "step"}`` as given to :meth:`append`."""
        return [dict(i) for i in self._snapshot_info]

    @property
    def nbytes(self) -> int:
        """Bytes the store takes on disk (labels, metadata and snapshots)."""
        return sum(p.stat().st_size for p in self.directory.iterdir() if p.is_file())

    def snapshot(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """``(train_losses, query_losses)`` of one snapshot, memory-mapped, read-only.

        Examples
        --------
        >>> import tempfile
        >>> store = LossTrajectories.create(tempfile.mkdtemp(), [0, 1], [1])
        >>> _ = store.append([0.5, 0.7], [0.9])
        >>> [a.tolist() for a in store.snapshot(0)]
        [[0.5, 0.699999988079071], [0.8999999761581421]]
        """
        if not 0 <= index < self.num_snapshots:
            raise IndexError(f"snapshot {index} out of range: the store holds {self.num_snapshots}.")
        loss = _read_table(self._path(index)).column("loss").to_numpy()
        return loss[: self.num_train], loss[self.num_train :]

    def iter_snapshots(self, snapshots=None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield ``(train_losses, query_losses)`` per snapshot, one file in memory at a time."""
        for i in range(self.num_snapshots) if snapshots is None else snapshots:
            yield self.snapshot(int(i))

    def _matrix(self, part: int, snapshots) -> np.ndarray:
        cols = list(range(self.num_snapshots)) if snapshots is None else [int(i) for i in snapshots]
        rows = self.num_train if part == 0 else self.num_query
        out = np.empty((rows, len(cols)), dtype=np.float32)
        for j, i in enumerate(cols):
            out[:, j] = self.snapshot(i)[part]
        return out

    def train_losses(self, snapshots=None) -> np.ndarray:
        """The ``(N, S)`` float32 training trajectory (row = sample index, column = snapshot).

        ``snapshots`` selects columns (e.g. ``snapshot_window(S, first=30)``)."""
        return self._matrix(0, snapshots)

    def query_losses(self, snapshots=None) -> np.ndarray:
        """The ``(Q, S)`` float32 query trajectory."""
        return self._matrix(1, snapshots)

    def scores(self, *, first=None, every=1, streaming=False, **kwargs) -> np.ndarray:
        """CLD scores of the training samples from the stored snapshots.

        With ``streaming=True`` the snapshots are read one at a time into :class:`StreamingCLD`
        (memory O(N) instead of the full ``(N, S)`` trajectory). Other keywords go to
        :func:`~cld_hf.scoring.cld_scores` / :class:`~cld_hf.scoring.StreamingCLD`.

        Examples
        --------
        >>> import tempfile
        >>> store = LossTrajectories.create(tempfile.mkdtemp(), [0, 0], [0])
        >>> for t, q in [([3, 1], [3]), ([2, 2], [2]), ([0, 4], [0])]:
        ...     _ = store.append(t, q)
        >>> store.scores().tolist(), store.scores(streaming=True).tolist()
        ([1.0, -1.0], [1.0, -1.0])
        """
        cols = snapshot_window(self.num_snapshots, first=first, every=every)
        if streaming:
            scorer = StreamingCLD(self.train_labels, self.query_labels, **kwargs)
            for train_t, query_t in self.iter_snapshots(cols):
                scorer.update(train_t, query_t)
            return scorer.scores()
        return cld_scores(
            self.train_losses(cols), self.train_labels, self.query_losses(cols),
            self.query_labels, **kwargs,
        )

    def to_dataset(self, split: str = "train", *, snapshots=None):
        """A ``datasets.Dataset``: ``sample_index``, ``label`` and ``loss_trajectory``.

        ``loss_trajectory`` has the feature ``List(Value("float32"), length=S)``, built from a
        pyarrow ``FixedSizeListArray`` (no Python lists); ``with_format("numpy")`` reads it back
        as an ``(N, S)`` array.

        Examples
        --------
        >>> import tempfile
        >>> store = LossTrajectories.create(tempfile.mkdtemp(), [0, 1], [1])
        >>> _ = store.append([0.5, 0.25], [1.0]); _ = store.append([0.25, 0.125], [0.5])
        >>> ds = store.to_dataset()
        >>> ds.features["loss_trajectory"]
        List(Value('float32'), length=2)
        >>> ds.with_format("numpy")["loss_trajectory"][:].tolist()
        [[0.5, 0.25], [0.25, 0.125]]
        """
        import datasets

        if split not in ("train", "query"):
            raise ValueError(f"split == {split!r}, must be 'train' or 'query'.")
        part = 0 if split == "train" else 1
        matrix = self._matrix(part, snapshots)
        labels = self.train_labels if part == 0 else self.query_labels
        features = datasets.Features(
            {
                "sample_index": datasets.Value("int64"),
                "label": datasets.Value("int64"),
                "loss_trajectory": datasets.List(datasets.Value("float32"), length=matrix.shape[1]),
            }
        )
        table = pa.Table.from_arrays(
            [pa.array(np.arange(len(labels)), pa.int64()), pa.array(labels, pa.int64()),
             trajectory_column(matrix)],
            schema=features.arrow_schema,
        )
        return datasets.Dataset(datasets.table.InMemoryTable(table),
                                info=datasets.DatasetInfo(features=features), split=split)

    def copy_to(self, directory) -> LossTrajectories:
        """Copy the store (e.g. into a checkpoint folder) and open the copy."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        for p in directory.iterdir():  # a store there before: its snapshots must not linger
            if _SNAPSHOT_RE.match(p.name):
                p.unlink()
        names = [_META, _LABELS] + [_snapshot_name(i) for i in range(self.num_snapshots)]
        for name in names:
            shutil.copy2(self.directory / name, directory / name)
        return LossTrajectories(directory)

    def __repr__(self) -> str:
        return (f"LossTrajectories(directory={str(self.directory)!r}, num_train={self.num_train}, "
                f"num_query={self.num_query}, num_snapshots={self.num_snapshots})")
