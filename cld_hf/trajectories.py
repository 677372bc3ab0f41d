"""`LossTrajectories`: the on-disk store of per-sample loss snapshots, one Arrow file per snapshot.

Layout of a store directory::

    store/
      store.json                  format, version, N, Q, user metadata
      labels.arrow                sample_index, split ("train"/"query"), label   (N + Q rows)
      snapshot-00000.arrow        one float32 column "loss": N training then Q query losses,
                                  then one column per extra signal (e.g. "margin", "correct")
      snapshot-00001.arrow        ... one file per snapshot, written atomically (tmp + rename)
      array-embeddings.safetensors  end-of-training arrays of the training samples (optional)

A snapshot file appears only when it is complete (written under a temporary name, then renamed),
so a crash loses at most the snapshot being written. Reopening the directory picks up every
complete snapshot. Storage is ``(N + Q) * S * 4`` bytes plus a few hundred bytes per file.

Extra signals
-------------
A snapshot may carry per-sample signals besides the loss (the training-dynamics signals of the
baselines in :mod:`cld_hf.baselines`: ``correct``, ``true_prob``, ``margin``, ``el2n``, ...), as
further columns of the same snapshot file, so that they land (and are lost in a crash, or dropped
by :meth:`LossTrajectories.truncate`) together with their loss. A column has ``N + Q`` rows like
``loss``; a signal recorded for the training samples only has nulls in its ``Q`` query rows.
Floats are stored as float32 (4 bytes per row), booleans bit-packed (1 bit per row), plus a
validity bitmap of ``(N + Q) / 8`` bytes when the query rows are null.
Arrays that describe the end of training (``embeddings`` ``(N, D)``, ``probs`` ``(N, C)``) are
``array-<name>.safetensors`` files (:meth:`LossTrajectories.save_array`), no pickle.

The format stays version 1: a store without extra columns or arrays reads as before, and a
reader that only knows the ``loss`` column reads a store with extra columns unchanged.

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

from ._validation import check_labels as _check_labels
from .scoring import StreamingCLD, cld_scores, snapshot_window

logger = logging.getLogger(__name__)

__all__ = ["LossTrajectories", "trajectory_column"]

FORMAT_NAME = "cld-hf-loss-trajectories"
FORMAT_VERSION = 1
_META = "store.json"
_LABELS = "labels.arrow"
_SNAPSHOT_RE = re.compile(r"^snapshot-(\d{5,})\.arrow$")
_ARRAY_RE = re.compile(r"^array-([A-Za-z_][A-Za-z0-9_]*)\.safetensors$")
_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_LOSS = "loss"


def _array_name(name: str) -> str:
    return f"array-{name}.safetensors"


def _check_name(name, what: str) -> str:
    if not isinstance(name, str) or not _NAME_RE.match(name) or name == _LOSS:
        raise ValueError(
            f"{what} name == {name!r}: use a Python identifier (letters, digits, '_') other "
            f"than 'loss', e.g. 'margin'."
        )
    return name


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
        self._signals: list[tuple[str, ...]] = []  # extra column names of each snapshot
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
                if (p.name in (_META, _LABELS) or _SNAPSHOT_RE.match(p.name)
                        or _ARRAY_RE.match(p.name) or p.suffix == ".tmp"):
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
        self._snapshot_info, self._signals = [], []
        for i in indices:
            info, names = self._read_info(i)
            self._snapshot_info.append(info)
            self._signals.append(names)

    def _read_info(self, index: int) -> tuple[dict, tuple[str, ...]]:
        """The snapshot's ``{"index", "epoch", "step"}`` and the names of its extra columns."""
        with pa.memory_map(str(self._path(index)), "r") as source:
            schema = ipc.open_file(source).schema
        raw = (schema.metadata or {}).get(b"cld_hf", b"{}")
        info = json.loads(raw)
        info.pop("signals", None)
        return info, tuple(n for n in schema.names if n != _LOSS)

    def _path(self, index: int) -> Path:
        return self.directory / _snapshot_name(index)

    # ---------------------------------------------------------------- writing
    def append(self, train_losses, query_losses, *, epoch=None, step=None, signals=None) -> int:
        """Persist one snapshot: ``(N,)`` training losses, ``(Q,)`` query losses, extra signals.

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
        signals : mapping of str to array, optional
            Extra per-sample values of this snapshot, one column each (see the module
            docstring): an array of shape ``(N,)`` holds the training samples only (the query
            rows are stored as nulls), one of shape ``(N + Q,)`` the training then the query
            samples, like the losses. Booleans stay booleans; other real values are stored as
            float32. Read them back with :meth:`train_signal`.

        Examples
        --------
        >>> import tempfile
        >>> store = LossTrajectories.create(tempfile.mkdtemp(), [0, 1], [1])
        >>> store.append([0.5, 0.7], [0.9], epoch=0)
        0
        >>> store.append([0.25, 0.5], [0.5], signals={"correct": [True, False]})
        1
        >>> store.train_signal("correct", snapshots=[1]).tolist()
        [[True], [False]]
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
        columns = self._signal_columns(signals)
        index = self.num_snapshots
        info = {"index": index, "epoch": None if epoch is None else float(epoch),
                "step": None if step is None else int(step)}
        fields = [pa.field(_LOSS, pa.float32())] + [
            pa.field(name, col.type) for name, col in columns.items()]
        schema = pa.schema(fields, metadata={"cld_hf": json.dumps(info)})
        table = pa.Table.from_arrays(
            [pa.array(np.concatenate([tr, qr])), *columns.values()], schema=schema)
        _write_atomic(self._path(index), table)
        self._snapshot_info.append(info)
        self._signals.append(tuple(columns))
        return index

    def _signal_columns(self, signals) -> dict[str, pa.Array]:
        """Arrow columns of ``N + Q`` rows for :meth:`append`'s ``signals``."""
        if signals is None:
            return {}
        if not hasattr(signals, "items"):
            raise TypeError(
                f"signals must be a mapping {{name: array}}, not {type(signals).__name__}; e.g. "
                f"signals={{'margin': margin}}."
            )
        n, q = self.num_train, self.num_query
        out = {}
        for name, values in signals.items():
            _check_name(name, "signal")
            a = np.asarray(values)
            if a.ndim != 1 or len(a) not in (n, n + q):
                raise ValueError(
                    f"signals[{name!r}] has shape {a.shape}; this store holds N={n} training and "
                    f"Q={q} query samples: pass shape ({n},) (training samples only) or "
                    f"({n + q},) (training then query samples), by sample index."
                )
            if a.dtype != bool and not (np.issubdtype(a.dtype, np.floating)
                                        or np.issubdtype(a.dtype, np.integer)):
                raise TypeError(
                    f"signals[{name!r}] has dtype {a.dtype}; pass booleans or real numbers "
                    f"(stored as float32)."
                )
            a = a if a.dtype == bool else a.astype(np.float32)
            if len(a) == n + q:
                out[name] = pa.array(a)
            else:
                full = np.concatenate([a, np.zeros(q, dtype=a.dtype)])
                mask = np.concatenate([np.zeros(n, bool), np.ones(q, bool)])
                out[name] = pa.array(full, mask=mask)
        return out

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
        for name, taken_at in self._array_snapshots().items():  # taken after the kept ones
            if taken_at > num_snapshots:
                (self.directory / _array_name(name)).unlink()
        for i in range(self.num_snapshots - 1, num_snapshots - 1, -1):  # newest first
            self._path(i).unlink()
        del self._snapshot_info[num_snapshots:]
        del self._signals[num_snapshots:]

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

    @property
    def signal_names(self) -> list[str]:
        """Names of the extra signals carried by every snapshot (empty for a loss-only store).

        Examples
        --------
        >>> import tempfile
        >>> store = LossTrajectories.create(tempfile.mkdtemp(), [0, 1], [1])
        >>> _ = store.append([0.5, 0.7], [0.9], signals={"margin": [1.0, -2.0]})
        >>> store.signal_names
        ['margin']
        """
        if not self._signals:
            return []
        common = set(self._signals[0]).intersection(*self._signals[1:])
        return [n for n in self._signals[0] if n in common]

    def _columns(self, snapshots) -> list[int]:
        cols = list(range(self.num_snapshots)) if snapshots is None else [int(i) for i in snapshots]
        for i in cols:
            if not 0 <= i < self.num_snapshots:
                raise IndexError(
                    f"snapshot {i} out of range: the store holds {self.num_snapshots}."
                )
        return cols

    def _signal_matrix(self, name: str, part: int, snapshots) -> np.ndarray:
        cols = self._columns(snapshots)
        lacking = [i for i in cols if name not in self._signals[i]]
        if lacking:
            raise KeyError(
                f"Signal {name!r} is not in snapshot(s) {lacking[:10]} of {str(self.directory)!r} "
                f"(signals in every snapshot: {self.signal_names}). Record it with "
                f"LossRecorder(..., signals=[{name!r}]) or CLDCallback(..., signals=[{name!r}])."
            )
        start, rows = (0, self.num_train) if part == 0 else (self.num_train, self.num_query)
        arrays = []
        for i in cols:
            col = _read_table(self._path(i)).column(name).slice(start, rows)
            if col.null_count:
                raise ValueError(
                    f"Signal {name!r} of snapshot {i} was recorded for the training samples "
                    f"only: it has no query values. Use train_signal({name!r})."
                )
            arrays.append(col.to_numpy())
        if not arrays:
            return np.zeros((rows, 0), dtype=np.float32)
        return np.stack(arrays, axis=1)

    def train_signal(self, name: str, snapshots=None) -> np.ndarray:
        """The ``(N, S)`` matrix of one extra signal of the training samples.

        Row = sample index, column = snapshot (all of them, or those in ``snapshots``); dtype
        bool for boolean signals, else float32.

        Raises
        ------
        KeyError
            When a requested snapshot does not carry the signal (the message lists those that
            every snapshot carries).

        Examples
        --------
        >>> import tempfile
        >>> store = LossTrajectories.create(tempfile.mkdtemp(), [0, 1], [1])
        >>> for t in range(3):
        ...     _ = store.append([1.0, 2.0], [0.5], signals={"margin": [t, -t]})
        >>> store.train_signal("margin")
        array([[ 0.,  1.,  2.],
               [ 0., -1., -2.]], dtype=float32)
        """
        return self._signal_matrix(name, 0, snapshots)

    def query_signal(self, name: str, snapshots=None) -> np.ndarray:
        """The ``(Q, S)`` matrix of a signal recorded for the query samples too.

        Examples
        --------
        >>> import tempfile
        >>> store = LossTrajectories.create(tempfile.mkdtemp(), [0, 1], [1])
        >>> _ = store.append([1.0, 2.0], [0.5], signals={"correct": [True, False, True]})
        >>> store.query_signal("correct").tolist()
        [[True]]
        """
        return self._signal_matrix(name, 1, snapshots)

    # ---------------------------------------------------------------- end-of-training arrays
    def save_array(self, name: str, array) -> Path:
        """Store an array of the training samples, e.g. the final ``embeddings`` ``(N, D)``.

        Written atomically as ``array-<name>.safetensors`` (no pickle), with the number of
        snapshots recorded when it was taken: :meth:`truncate` to fewer snapshots removes it, as
        it then describes a later point of training than the store.

        Parameters
        ----------
        name : str
            A Python identifier, e.g. ``"embeddings"`` or ``"probs"``.
        array : array of shape (N, ...)
            Row ``i`` describes training sample ``i``; bool or real (stored as float32).

        Examples
        --------
        >>> import tempfile
        >>> store = LossTrajectories.create(tempfile.mkdtemp(), [0, 1], [1])
        >>> store.save_array("probs", [[0.75, 0.25], [0.5, 0.5]]).name
        'array-probs.safetensors'
        >>> store.load_array("probs").tolist(), store.array_names
        ([[0.75, 0.25], [0.5, 0.5]], ['probs'])
        """
        from safetensors.numpy import save_file

        _check_name(name, "array")
        a = np.asarray(array)
        if a.ndim < 1 or a.shape[0] != self.num_train:
            raise ValueError(
                f"array {name!r} has shape {a.shape}; it must have one row per training sample "
                f"(N={self.num_train}), row i = sample i."
            )
        if a.dtype != bool and not (np.issubdtype(a.dtype, np.floating)
                                    or np.issubdtype(a.dtype, np.integer)):
            raise TypeError(f"array {name!r} has dtype {a.dtype}; pass booleans or real numbers.")
        a = np.ascontiguousarray(a if a.dtype == bool else a.astype(np.float32))
        path = self.directory / _array_name(name)
        tmp = path.with_name(path.name + ".tmp")
        save_file({name: a}, str(tmp), metadata={"num_snapshots": str(self.num_snapshots)})
        os.replace(tmp, path)
        return path

    def load_array(self, name: str) -> np.ndarray:
        """An array stored with :meth:`save_array`.

        Examples
        --------
        >>> import tempfile
        >>> store = LossTrajectories.create(tempfile.mkdtemp(), [0, 1], [1])
        >>> store.load_array("embeddings")
        Traceback (most recent call last):
        ...
        KeyError: "No array 'embeddings' in the store ... arrays there: []. ..."
        """
        from safetensors import safe_open

        path = self.directory / _array_name(name)
        if not path.is_file():
            raise KeyError(
                f"No array {name!r} in the store {str(self.directory)!r}; arrays there: "
                f"{self.array_names}. Record it with LossRecorder(..., signals=[{name!r}]) and "
                f"record(model, final=True) (or recorder.record_final_features(model))."
            )
        with safe_open(str(path), framework="numpy") as f:
            return f.get_tensor(name)

    @property
    def array_names(self) -> list[str]:
        """Names of the arrays stored with :meth:`save_array`, sorted."""
        return sorted(m.group(1) for p in self.directory.iterdir()
                      if (m := _ARRAY_RE.match(p.name)))

    def array_snapshot(self, name: str) -> int:
        """How many snapshots the store held when the array ``name`` was saved.

        Examples
        --------
        >>> import tempfile
        >>> store = LossTrajectories.create(tempfile.mkdtemp(), [0, 1], [1])
        >>> _ = store.append([0.5, 0.7], [0.9])
        >>> _ = store.save_array("probs", [[0.75, 0.25], [0.5, 0.5]])
        >>> store.array_snapshot("probs")
        1
        """
        from safetensors import safe_open

        path = self.directory / _array_name(name)
        if not path.is_file():
            raise KeyError(f"No array {name!r} in the store; arrays there: {self.array_names}.")
        with safe_open(str(path), framework="numpy") as f:
            return int((f.metadata() or {}).get("num_snapshots", 0))

    def _array_snapshots(self) -> dict[str, int]:
        return {name: self.array_snapshot(name) for name in self.array_names}

    def signal_nbytes(self) -> dict[str, int]:
        """Bytes each part of the recording takes: ``loss``, every extra signal, every array.

        For the snapshot columns, the Arrow buffers summed over the snapshots (values, and the
        validity bitmap of a training-only signal); for an array, its file. The few hundred
        bytes of framing per snapshot file are not attributed.

        Examples
        --------
        >>> import tempfile
        >>> store = LossTrajectories.create(tempfile.mkdtemp(), list(range(8)), [0])
        >>> for t in range(2):
        ...     _ = store.append(np.ones(8), [1.0], signals={"correct": np.ones(8, bool),
        ...                                                  "margin": np.ones(8)})
        >>> sizes = store.signal_nbytes()
        >>> sizes["loss"], sizes["margin"], sizes["correct"]   # 9 x 4 B; + bitmap; bits
        (72, 76, 8)
        """
        sizes: dict[str, int] = {_LOSS: 0}
        for i in range(self.num_snapshots):
            table = _read_table(self._path(i))
            for name in table.column_names:
                sizes[name] = sizes.get(name, 0) + int(table.column(name).nbytes)
        for name in self.array_names:
            sizes[name] = (self.directory / _array_name(name)).stat().st_size
        return sizes

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
            if _SNAPSHOT_RE.match(p.name) or _ARRAY_RE.match(p.name):
                p.unlink()
        names = [_META, _LABELS] + [_snapshot_name(i) for i in range(self.num_snapshots)]
        names += [_array_name(n) for n in self.array_names]
        for name in names:
            shutil.copy2(self.directory / name, directory / name)
        return LossTrajectories(directory)

    def __repr__(self) -> str:
        return (f"LossTrajectories(directory={str(self.directory)!r}, num_train={self.num_train}, "
                f"num_query={self.num_query}, num_snapshots={self.num_snapshots})")
