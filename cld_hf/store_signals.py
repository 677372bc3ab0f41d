"""The extra signals and end-of-training arrays of a store (a mixin of ``LossTrajectories``).

Kept apart from :mod:`cld_hf.trajectories` so that each file holds one idea: the snapshots and
their integrity there, the baselines' signals (columns of the snapshot files), arrays
(``array-<name>.safetensors``) and the ``datasets`` export here. Every method reads through the
store's manifest, so each file is checked against its checksum.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

from .fileio import atomic_write_bytes
from .manifest import ARRAY_RE, array_name, bytes_sha256

__all__ = ["check_array_name", "trajectory_column"]


def check_array_name(name) -> str:
    """A signal or array name: a Python identifier other than ``loss``.

    Examples
    --------
    >>> check_array_name("margin")
    'margin'
    """
    if not isinstance(name, str) or not ARRAY_RE.match(array_name(name)) or name == "loss":
        raise ValueError(
            f"name == {name!r}: use a Python identifier (letters, digits, '_') other than "
            f"'loss', e.g. 'margin'."
        )
    return name


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


class SignalsMixin:
    """Signals, arrays and the ``datasets`` export of :class:`~cld_hf.trajectories.LossTrajectories`
    (see its docstring for the examples of the whole store)."""

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
            check_array_name(name)
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


    @property
    def signal_names(self) -> list[str]:
        """Names of the extra signals carried by every snapshot (empty for a loss-only store).

        Examples
        --------
        >>> import tempfile
        >>> from cld_hf import LossTrajectories
        >>> store = LossTrajectories.create(tempfile.mkdtemp(), [0, 1], [1])
        >>> _ = store.append([0.5, 0.7], [0.9], signals={"margin": [1.0, -2.0]})
        >>> store.signal_names
        ['margin']
        """
        cols = [tuple(s.get("columns", ())) for s in self._manifest.snapshots if s.get("file")]
        if not cols:
            return []
        common = set(cols[0]).intersection(*cols[1:])
        return [n for n in cols[0] if n in common]

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
        lacking = [i for i in cols if name not in self._manifest.snapshots[i].get("columns", ())]
        if lacking:
            raise KeyError(
                f"Signal {name!r} is not in snapshot(s) {lacking[:10]} of {str(self.directory)!r} "
                f"(signals in every snapshot: {self.signal_names}). Record it with "
                f"LossRecorder(..., signals=[{name!r}]) or CLDCallback(..., signals=[{name!r}])."
            )
        start, rows = (0, self.num_train) if part == 0 else (self.num_train, self.num_query)
        arrays = []
        for i in cols:
            col = self._snapshot_table(i).column(name).slice(start, rows)
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
        >>> from cld_hf import LossTrajectories
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
        >>> from cld_hf import LossTrajectories
        >>> store = LossTrajectories.create(tempfile.mkdtemp(), [0, 1], [1])
        >>> _ = store.append([1.0, 2.0], [0.5], signals={"correct": [True, False, True]})
        >>> store.query_signal("correct").tolist()
        [[True]]
        """
        return self._signal_matrix(name, 1, snapshots)

    # ---------------------------------------------------------------- end-of-training arrays
    def save_array(self, name: str, array, *, part: str = "train") -> Path:
        """Store an array of the training (or query) samples, e.g. the final ``embeddings``.

        Written atomically as ``array-<name>.safetensors`` (no pickle), with the number of
        snapshots recorded when it was taken: :meth:`truncate` to fewer snapshots removes it, as
        it then describes a later point of training than the store.

        Parameters
        ----------
        name : str
            A Python identifier, e.g. ``"embeddings"`` or ``"probs"``.
        array : array of shape (N, ...), or (Q, ...) with ``part="query"``
            Row ``i`` describes sample ``i``; bool, integer (int64) or real (float32).
        part : {"train", "query"}, default "train"
            Which samples the rows are.

        Examples
        --------
        >>> import tempfile
        >>> from cld_hf import LossTrajectories
        >>> store = LossTrajectories.create(tempfile.mkdtemp(), [0, 1], [1])
        >>> store.save_array("probs", [[0.75, 0.25], [0.5, 0.5]]).name
        'array-probs.safetensors'
        >>> store.load_array("probs").tolist(), store.array_names
        ([[0.75, 0.25], [0.5, 0.5]], ['probs'])
        """
        from safetensors.numpy import save

        self._check_writable("save_array()")
        check_array_name(name)
        if part not in ("train", "query"):
            raise ValueError(f"part == {part!r}, must be 'train' or 'query'.")
        rows = self.num_train if part == "train" else self.num_query
        a = np.asarray(array)
        if a.ndim < 1 or a.shape[0] != rows:
            what = "training" if part == "train" else "query"
            raise ValueError(
                f"array {name!r} has shape {a.shape}; it must have one row per {what} sample "
                f"({'N' if part == 'train' else 'Q'}={rows}), row i = sample i."
            )
        if a.dtype != bool and not (np.issubdtype(a.dtype, np.floating)
                                    or np.issubdtype(a.dtype, np.integer)):
            raise TypeError(f"array {name!r} has dtype {a.dtype}; pass booleans or real numbers.")
        a = np.ascontiguousarray(a if a.dtype == bool else a.astype(
            np.int64 if np.issubdtype(a.dtype, np.integer) else np.float32))
        data = save({name: a}, metadata={"num_snapshots": str(self.num_snapshots)})
        path = atomic_write_bytes(self.directory / array_name(name), data)
        self._manifest.arrays[name] = {"file": path.name, "bytes": len(data),
                                       "sha256": bytes_sha256(data),
                                       "num_snapshots": self.num_snapshots}
        self._manifest.save(self.directory)
        return path

    def load_array(self, name: str) -> np.ndarray:
        """An array stored with :meth:`save_array`.

        Examples
        --------
        >>> import tempfile
        >>> from cld_hf import LossTrajectories
        >>> store = LossTrajectories.create(tempfile.mkdtemp(), [0, 1], [1])
        >>> store.load_array("embeddings")
        Traceback (most recent call last):
        ...
        KeyError: "No array 'embeddings' in the store ... arrays there: []. ..."
        """
        from safetensors.numpy import load

        entry = self._manifest.arrays.get(name)
        if entry is None:
            raise KeyError(
                f"No array {name!r} in the store {str(self.directory)!r}; arrays there: "
                f"{self.array_names}. Record it with LossRecorder(..., signals=[{name!r}]) and "
                f"record(model, final=True) (or recorder.record_final_features(model))."
            )
        return load(self.read_verified_bytes(entry, f"array {name!r}"))[name]

    @property
    def array_names(self) -> list[str]:
        """Names of the arrays stored with :meth:`save_array`, sorted."""
        return sorted(self._manifest.arrays)

    def array_snapshot(self, name: str) -> int:
        """How many snapshots the store held when the array ``name`` was saved.

        Examples
        --------
        >>> import tempfile
        >>> from cld_hf import LossTrajectories
        >>> store = LossTrajectories.create(tempfile.mkdtemp(), [0, 1], [1])
        >>> _ = store.append([0.5, 0.7], [0.9])
        >>> _ = store.save_array("probs", [[0.75, 0.25], [0.5, 0.5]])
        >>> store.array_snapshot("probs")
        1
        """
        if name not in self._manifest.arrays:
            raise KeyError(f"No array {name!r} in the store; arrays there: {self.array_names}.")
        return int(self._manifest.arrays[name]["num_snapshots"])

    def signal_nbytes(self) -> dict[str, int]:
        """Bytes each part of the recording takes: ``loss``, every extra signal, every array.

        For the snapshot columns, the Arrow buffers summed over the snapshots (values, and the
        validity bitmap of a training-only signal); for an array, its file. The few hundred
        bytes of framing per snapshot file are not attributed.

        Examples
        --------
        >>> import tempfile
        >>> from cld_hf import LossTrajectories
        >>> store = LossTrajectories.create(tempfile.mkdtemp(), list(range(8)), [0])
        >>> for t in range(2):
        ...     _ = store.append(np.ones(8), [1.0], signals={"correct": np.ones(8, bool),
        ...                                                  "margin": np.ones(8)})
        >>> sizes = store.signal_nbytes()
        >>> sizes["loss"], sizes["margin"], sizes["correct"]   # 9 x 4 B; + bitmap; bits
        (72, 76, 8)
        """
        sizes: dict[str, int] = {"loss": 0}
        for i in range(self.num_snapshots):
            if not self._manifest.snapshots[i].get("file"):
                continue
            table = self._snapshot_table(i)
            for name in table.column_names:
                sizes[name] = sizes.get(name, 0) + int(table.column(name).nbytes)
        for name in self.array_names:
            sizes[name] = (self.directory / array_name(name)).stat().st_size
        return sizes


    def to_dataset(self, split: str = "train", *, snapshots=None):
        """A ``datasets.Dataset``: ``sample_index``, ``label`` and ``loss_trajectory``.

        ``loss_trajectory`` has the feature ``List(Value("float32"), length=S)``, built from a
        pyarrow ``FixedSizeListArray`` (no Python lists); ``with_format("numpy")`` reads it back
        as an ``(N, S)`` array.

        Examples
        --------
        >>> import tempfile
        >>> from cld_hf import LossTrajectories
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
        from .identity import index_feature, labels_fingerprint

        record = dict((self.identity or {}).get(split) or {})
        record.setdefault("name", None)
        record.setdefault("split", None)
        record.update(num_rows=len(labels), fingerprint=labels_fingerprint(labels))
        features = datasets.Features(
            {
                "sample_index": index_feature(record),
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

