"""`LossTrajectories`: the one store of a recording, one checksummed Arrow file per snapshot.

Layout of a store directory::

    store/
      store.json                  format, version, N, Q, streaming, identity, metadata
      labels.arrow                sample_index, split ("train"/"query"), label   (N + Q rows)
      manifest.json               every file below with its size and SHA-256 (cld_hf.manifest)
      snapshot-00000.arrow        one float32 column "loss": N training then Q query losses,
                                  then one column per extra signal (e.g. "margin", "correct")
      snapshot-00001.arrow        ... one file per snapshot
      array-embeddings.safetensors  end-of-training arrays of the training samples (optional)
      streaming-state-00016.safetensors  the StreamingCLD state (streaming stores, no snapshots)
      scores.arrow                sample_index, label, cld_score (saved scores, optional)

Everything the recorder persists lives here: the snapshots, their epoch and step, the streaming
scorer's state and the recorder's options (in ``metadata``); there is no second state file.

Guarantees
----------
- Every file is written atomically (:mod:`cld_hf.fileio`): a crash loses at most the snapshot
  being written; reopening picks up every complete one.
- Opening checks the manifest against the directory (names and sizes); reading a file checks
  its SHA-256. A missing, truncated, corrupted, duplicated or foreign file is a
  :class:`~cld_hf.manifest.StoreIntegrityError` naming the file and the fix.
- A store opened for reading (the default) never writes or deletes anything, so readers (a
  notebook, ``cld-hf inspect``) are safe beside a writer and on read-only media. A store opened
  with ``writable=True`` (or made by :meth:`LossTrajectories.create`) removes only files it
  wrote itself: temporary files whose writer process is gone, and what :meth:`truncate` drops.

Storage: ``(N + Q) * S * 4`` bytes plus a few hundred per file. Row ``i`` of every snapshot is
training sample ``i`` (keyed by sample index, never by loader order). The baselines' signals,
arrays and ``to_dataset`` are in :mod:`cld_hf.store_signals`; streaming states and saved scores
in :mod:`cld_hf.store_state`. NumPy and pyarrow only (``datasets`` inside ``to_dataset``).
"""

from __future__ import annotations

import json
import logging
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc

from ._validation import check_int, check_json, check_labels
from .fileio import (
    atomic_write,
    atomic_write_bytes,
    arrow_file_bytes,
    atomic_write_json,
    is_abandoned_temp,
    read_json,
)
from .manifest import (
    ARRAY_RE,
    MANIFEST,
    SNAPSHOT_RE,
    STATE_RE,
    Manifest,
    StoreIntegrityError,
    bytes_sha256,
    file_sha256,
    legacy_manifest,
    snapshot_name,
    verify_bytes,
)
from .scoring import StreamingCLD, cld_scores, snapshot_window
from .store_signals import SignalsMixin, trajectory_column
from .store_state import StateMixin

logger = logging.getLogger(__name__)

__all__ = ["LossTrajectories", "trajectory_column", "StoreIntegrityError"]

FORMAT_NAME = "cld-hf-loss-trajectories"
FORMAT_VERSION = 2
_META = "store.json"
_LABELS = "labels.arrow"
_SCORES = "scores.arrow"
_LOSS = "loss"
_LEGACY_FILES = ("recorder.json",)  # written by cld-hf 0.1 beside a store


class LossTrajectories(SignalsMixin, StateMixin):
    """Training and query loss snapshots, persisted one checksummed file per snapshot.

    Open an existing store with ``LossTrajectories(directory)`` (read-only) or
    ``LossTrajectories(directory, writable=True)``; make a new one with :meth:`create`.

    Parameters
    ----------
    directory : str or os.PathLike
        A directory written by :meth:`create`.
    writable : bool, default False
        Open for appending, truncating and saving arrays. Only a writable store ever changes
        the directory (see the module docstring).

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

    def __init__(self, directory, *, writable: bool = False):
        self.directory = Path(directory)
        self.writable = bool(writable)
        meta_path = self.directory / _META
        if not meta_path.is_file():
            raise FileNotFoundError(
                f"{self.directory} is not a loss-trajectory store (no {_META}). "
                f"Create one with LossTrajectories.create(directory, train_labels, query_labels)."
            )
        meta = read_json(meta_path)
        if meta.get("format") != FORMAT_NAME or int(meta.get("version", 0)) > FORMAT_VERSION:
            raise ValueError(
                f"{meta_path} has format {meta.get('format')!r} version {meta.get('version')}; "
                f"this cld-hf reads {FORMAT_NAME!r} up to version {FORMAT_VERSION}. Upgrade cld-hf."
            )
        self.metadata: dict = meta.get("metadata", {})
        self.identity: dict = meta.get("identity", {})
        self.streaming: bool = bool(meta.get("streaming", False))
        self.store_id: str | None = meta.get("store_id")
        self.num_train = int(meta["num_train"])
        self.num_query = int(meta["num_query"])
        self._verified: dict[str, tuple[int, int]] = {}  # file -> (size, mtime_ns) checked
        labels_entry = {"sha256": meta.get("labels_sha256")}
        labels = self._read_verified_table(self.directory / _LABELS, labels_entry, "the labels")
        all_labels = labels.column("label").to_numpy()
        if len(all_labels) != self.num_train + self.num_query:
            raise StoreIntegrityError(
                f"{self.directory / _LABELS} has {len(all_labels)} rows; {_META} says N + Q = "
                f"{self.num_train + self.num_query}: the store's files come from different "
                f"recordings. Record again into an empty directory.",
                path=self.directory / _LABELS,
            )
        self.train_labels = all_labels[: self.num_train]
        self.query_labels = all_labels[self.num_train :]
        self.refresh()

    # ---------------------------------------------------------------- construction / recovery
    @classmethod
    def create(cls, directory, train_labels, query_labels, *, metadata: dict | None = None,
               identity: dict | None = None, streaming: bool = False,
               overwrite: bool = False) -> LossTrajectories:
        """Create an empty store for ``N`` training and ``Q`` query samples (opened writable).

        Parameters
        ----------
        directory : str or os.PathLike
            Created if missing. An existing store there is an error unless ``overwrite=True``.
        train_labels, query_labels : int arrays of shape (N,) and (Q,)
            Class of each training / query sample, in sample-index order.
        metadata : dict, optional
            JSON-serialisable information kept with the store (model name, options, ...).
        identity : dict, optional
            Which datasets the sample indices refer to (see :mod:`cld_hf.identity`).
        streaming : bool, default False
            The store keeps no snapshot files, only the streaming scorer's state.
        overwrite : bool, default False
            Replace an existing store in ``directory``: only the files that store wrote are
            removed; other files in the directory stay.

        Examples
        --------
        >>> import tempfile
        >>> store = LossTrajectories.create(tempfile.mkdtemp(), [0, 1, 1], [0, 1])
        >>> store.num_train, store.num_query, store.num_snapshots
        (3, 2, 0)
        """
        directory = Path(directory)
        tl = check_labels(train_labels, "train_labels").astype(np.int64)
        ql = check_labels(query_labels, "query_labels").astype(np.int64)
        metadata = check_json("metadata", metadata)
        identity = check_json("identity", identity)
        if (directory / _META).exists():
            if not overwrite:
                raise FileExistsError(
                    f"{directory} already holds a loss-trajectory store. Open it with "
                    f"LossTrajectories({str(directory)!r}), or pass overwrite=True to replace it."
                )
            cls(directory, writable=True).delete()
        directory.mkdir(parents=True, exist_ok=True)
        labels = pa.table({
            "sample_index": pa.array(np.concatenate([np.arange(len(tl)), np.arange(len(ql))]),
                                     pa.int64()),
            "split": pa.array(["train"] * len(tl) + ["query"] * len(ql), pa.string())
            .dictionary_encode(),
            "label": pa.array(np.concatenate([tl, ql]), pa.int64()),
        })
        labels_data = arrow_file_bytes(labels)
        atomic_write_bytes(directory / _LABELS, memoryview(labels_data))
        Manifest().save(directory)
        atomic_write_json(directory / _META, {
            "format": FORMAT_NAME, "version": FORMAT_VERSION, "store_id": uuid.uuid4().hex,
            "labels_sha256": bytes_sha256(labels_data),
            "num_train": int(len(tl)), "num_query": int(len(ql)), "streaming": bool(streaming),
            "identity": identity, "metadata": metadata,
        })
        return cls(directory, writable=True)

    def refresh(self) -> None:
        """Re-read the manifest (a reader beside a writer sees the snapshots added since)."""
        names = {p.name for p in self.directory.iterdir()}
        if MANIFEST in names:
            manifest = Manifest.load(self.directory)
        else:
            manifest = legacy_manifest(self.directory, names)
        last = manifest.snapshots[-1] if manifest.snapshots else None
        if last is not None and not last.get("complete", True):
            if last["file"] in names and file_sha256(self.directory / last["file"]) == last["sha256"]:
                last["complete"] = True  # written before the crash: its checksum was recorded
            else:
                manifest.snapshots.pop()  # never written: the snapshot being written is lost
                names.discard(last["file"])
        manifest.check_directory(self.directory, names=names)
        self._manifest = manifest
        if self.writable:
            self._recover_writer(names)

    def _recover_writer(self, names) -> None:
        """Writable open: drop temporary files whose writer is gone; give a format-1 store its
        manifest (checksums of its files as they are now)."""
        for name in names:
            if is_abandoned_temp(name):
                logger.warning("Removing %s: a temporary file of a writer that no longer runs.",
                               self.directory / name)
                (self.directory / name).unlink(missing_ok=True)
        if MANIFEST not in names:
            for entry in [*self._manifest.snapshots, *self._manifest.arrays.values()]:
                path = self.directory / entry["file"]
                entry["bytes"], entry["sha256"] = path.stat().st_size, file_sha256(path)
            self._save_manifest()
            meta = read_json(self.directory / _META)
            meta.update(version=FORMAT_VERSION, store_id=meta.get("store_id") or uuid.uuid4().hex)
            atomic_write_json(self.directory / _META, meta)
            logger.info("Upgraded the store %s to format %d (a manifest with checksums).",
                        self.directory, FORMAT_VERSION)

    def _save_manifest(self) -> None:
        self._manifest.save(self.directory)

    def _check_writable(self, what: str) -> None:
        if not self.writable:
            raise PermissionError(
                f"{what} changes the store {str(self.directory)!r}, which was opened read-only. "
                f"Open it with LossTrajectories({str(self.directory)!r}, writable=True)."
            )

    def delete(self) -> None:
        """Remove every file this store wrote (and nothing else) from its directory.

        Examples
        --------
        >>> import os, tempfile
        >>> d = tempfile.mkdtemp(); _ = open(os.path.join(d, "notes.txt"), "w").write("mine")
        >>> LossTrajectories.create(d, [0], [0]).delete()
        >>> os.listdir(d)
        ['notes.txt']
        """
        self._check_writable("delete()")
        names = self._manifest.listed_files() | {_META, _LABELS, MANIFEST, *_LEGACY_FILES}
        for p in self.directory.iterdir():
            if p.name in names or is_abandoned_temp(p.name) or (
                    MANIFEST not in names and (SNAPSHOT_RE.match(p.name) or ARRAY_RE.match(p.name)
                                               or STATE_RE.match(p.name) or p.name == _SCORES)):
                p.unlink(missing_ok=True)
        self._manifest = Manifest()

    # ---------------------------------------------------------------- writing
    def append(self, train_losses, query_losses, *, epoch=None, step=None, signals=None) -> int:
        """Persist one snapshot: ``(N,)`` training losses, ``(Q,)`` query losses, extra signals.

        The file is complete on disk, and listed with its checksum, when this returns. Returns
        the snapshot's index.

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
            Extra per-sample values of this snapshot, one column each: shape ``(N,)`` for the
            training samples only (the query rows are stored as nulls) or ``(N + Q,)``.
            Booleans stay booleans; other real values are stored as float32.

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
        self._check_writable("append()")
        if self.streaming:
            raise ValueError("This store streams (streaming=True): it keeps no snapshot files; "
                             "use append_streamed().")
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
        data = arrow_file_bytes(pa.Table.from_arrays(
            [pa.array(np.concatenate([tr, qr])), *columns.values()], schema=schema))
        entry = {**info, "file": snapshot_name(index), "bytes": data.size,
                 "sha256": bytes_sha256(data), "columns": list(columns), "complete": False}
        self._manifest.snapshots.append(entry)
        self._save_manifest()  # pending: its checksum is known before the file lands
        atomic_write_bytes(self.directory / entry["file"], memoryview(data))
        entry["complete"] = True
        self._save_manifest()
        return index

    def truncate(self, num_snapshots: int) -> None:
        """Keep only the first ``num_snapshots`` snapshots (e.g. to resume from a checkpoint).

        Arrays and saved scores taken after them, and streaming states after them, go too.

        Examples
        --------
        >>> import tempfile
        >>> store = LossTrajectories.create(tempfile.mkdtemp(), [0], [0])
        >>> for t in range(4):
        ...     _ = store.append([t], [t])
        >>> store.truncate(2); store.num_snapshots
        2
        """
        self._check_writable("truncate()")
        check_int("num_snapshots", num_snapshots, min_val=0, max_val=self.num_snapshots)
        m = self._manifest
        dropped = [s["file"] for s in m.snapshots[num_snapshots:] if s.get("file")]
        dropped += [m.arrays.pop(k)["file"] for k in [k for k, a in m.arrays.items()
                                                      if a["num_snapshots"] > num_snapshots]]
        dropped += [m.states.pop(k)["file"] for k in [k for k in m.states
                                                      if int(k) > num_snapshots]]
        if m.scores and m.scores["num_snapshots"] > num_snapshots:
            dropped.append(m.scores["file"])
            m.scores = None
        del m.snapshots[num_snapshots:]
        m.pinned = [p for p in m.pinned if p <= num_snapshots]
        self._save_manifest()  # first the manifest: a crash now leaves unlisted files only
        for name in dropped:
            (self.directory / name).unlink(missing_ok=True)

    # ---------------------------------------------------------------- reading
    @property
    def num_snapshots(self) -> int:
        return len(self._manifest.snapshots)

    @property
    def snapshot_info(self) -> list[dict]:
        """Per snapshot: ``{"index", "epoch", "step"}`` as given to :meth:`append`."""
        return [{k: s.get(k) for k in ("index", "epoch", "step")} for s in self._manifest.snapshots]

    @property
    def nbytes(self) -> int:
        """Bytes the store's own files take on disk."""
        names = self._manifest.listed_files() | {_META, _LABELS, MANIFEST}
        return sum((self.directory / n).stat().st_size for n in names
                   if (self.directory / n).is_file())

    def _read_verified_table(self, path: Path, entry: dict | None, what: str) -> pa.Table:
        try:
            with pa.memory_map(str(path), "r") as source:
                buffer = source.read_buffer()
        except FileNotFoundError:
            raise StoreIntegrityError(f"{path} ({what}) is missing from the store.",
                                      path=path) from None
        if entry is not None:
            stat = path.stat()
            key = (stat.st_size, stat.st_mtime_ns)
            if self._verified.get(path.name) != key:
                verify_bytes(buffer, entry, path, what)
                self._verified[path.name] = key
        try:
            return ipc.open_file(buffer).read_all()
        except pa.ArrowInvalid as err:
            raise StoreIntegrityError(
                f"{path} ({what}) is not a readable Arrow file ({err}): it is damaged. Restore "
                f"it, or rewind the store to before it and record it again.", path=path,
            ) from None

    def read_verified_bytes(self, entry: dict, what: str) -> bytes:
        """The bytes of a file the manifest lists (its ``entry``), checked against its checksum
        (used by :meth:`load_array`, :meth:`load_streaming_state` and :meth:`verify`)."""
        path = self.directory / entry["file"]
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise StoreIntegrityError(f"{path} ({what}) is missing from the store.",
                                      path=path) from None
        verify_bytes(data, entry, path, what)
        return data

    def _snapshot_table(self, index: int) -> pa.Table:
        if not 0 <= index < self.num_snapshots:
            raise IndexError(f"snapshot {index} out of range: the store holds {self.num_snapshots}.")
        entry = self._manifest.snapshots[index]
        if entry.get("file") is None:
            raise ValueError(
                "This store streamed its snapshots (streaming=True): it keeps no losses, only "
                "the scorer's state. Record with streaming=False to keep the trajectories."
            )
        return self._read_verified_table(self.directory / entry["file"], entry,
                                         f"snapshot {index}")

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
        loss = self._snapshot_table(index).column(_LOSS).to_numpy()
        return loss[: self.num_train], loss[self.num_train :]

    def verify(self) -> dict:
        """Check every file against its checksum; returns what was checked, raises
        :class:`~cld_hf.manifest.StoreIntegrityError` on the first mismatch.

        Examples
        --------
        >>> import tempfile
        >>> store = LossTrajectories.create(tempfile.mkdtemp(), [0, 1], [1])
        >>> _ = store.append([0.5, 0.7], [0.9])
        >>> store.verify()["snapshots"]
        1
        """
        self._verified.clear()
        self.refresh()
        m = self._manifest
        unchecked = []
        for i, s in enumerate(m.snapshots):
            if s.get("file"):
                self._snapshot_table(i)
                if s.get("sha256") is None:
                    unchecked.append(s["file"])
        for entry in [*m.arrays.values(), *m.states.values(), *([m.scores] if m.scores else [])]:
            self.read_verified_bytes(entry, entry["file"])
            if entry.get("sha256") is None:
                unchecked.append(entry["file"])
        return {"snapshots": self.num_snapshots, "arrays": len(m.arrays),
                "streaming_states": len(m.states), "scores": m.scores is not None,
                "without_checksum": unchecked}

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
        (memory O(N) instead of the full ``(N, S)`` trajectory). A streaming store gives the
        scores of its latest scorer state. Other keywords go to
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
        if self.streaming:
            if first is not None or every != 1:
                raise ValueError("first= and every= need the stored trajectory; this store "
                                 "streamed its snapshots (streaming=True).")
            scorer = StreamingCLD(self.train_labels, self.query_labels, **kwargs)
            if self.num_snapshots:
                scorer.load_state_dict(self.load_streaming_state(self.num_snapshots))
            return scorer.scores()
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

    def copy_to(self, directory) -> LossTrajectories:
        """Copy the store (e.g. into a checkpoint folder) and open the copy (writable).

        Examples
        --------
        >>> import tempfile
        >>> store = LossTrajectories.create(tempfile.mkdtemp(), [0, 1], [1])
        >>> _ = store.append([0.5, 0.7], [0.9])
        >>> store.copy_to(tempfile.mkdtemp()).num_snapshots
        1
        """
        directory = Path(directory)
        if (directory / _META).exists():
            LossTrajectories(directory, writable=True).delete()
        directory.mkdir(parents=True, exist_ok=True)
        names = sorted(self._manifest.listed_files()) + [_LABELS]
        for name in names:
            atomic_write(directory / name, lambda tmp, n=name: shutil.copy2(self.directory / n, tmp))
        self._manifest.save(directory)
        atomic_write_bytes(directory / _META, (self.directory / _META).read_bytes())
        return LossTrajectories(directory, writable=True)

    def __repr__(self) -> str:
        return (f"LossTrajectories(directory={str(self.directory)!r}, num_train={self.num_train}, "
                f"num_query={self.num_query}, num_snapshots={self.num_snapshots}"
                f"{', streaming=True' if self.streaming else ''})")

