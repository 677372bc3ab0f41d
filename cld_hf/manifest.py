"""The store's manifest: every file the store wrote, with its size and SHA-256, in one JSON file.

:class:`~cld_hf.trajectories.LossTrajectories` lists each snapshot (index, epoch, step, file,
bytes, sha256, columns), each end-of-training array, each streaming state and the saved scores
in ``manifest.json``, written atomically after every change. Opening a store checks the manifest
against the directory (cheap: names and sizes); reading a file checks its checksum. Every
mismatch is a :class:`StoreIntegrityError` that names the file and the fix:

- a listed file that is missing or has another size (deleted, truncated);
- a file whose bytes do not match their checksum (corrupted, replaced by another store's file
  with the same number of rows, or a copy of another snapshot);
- a ``snapshot-*.arrow`` that the manifest does not list (copied in from elsewhere).

A snapshot is written in three steps: the manifest lists it as *pending* with the checksum of
the bytes about to be written, the file is written atomically, the manifest marks it complete. A
crash in between leaves either no file (the pending entry is dropped when the store is next
opened for writing: the snapshot being written is lost, nothing else) or the complete file
(adopted, since its checksum was recorded before it was written).

Stores of format version 1 (cld-hf 0.1, no manifest) open read-only as before; opening one for
writing (a resume) writes their manifest first.

NumPy-free; standard library only.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

from .fileio import atomic_write_json, read_json

__all__ = [
    "MANIFEST",
    "StoreIntegrityError",
    "Manifest",
    "bytes_sha256",
    "file_sha256",
    "SNAPSHOT_RE",
    "ARRAY_RE",
    "STATE_RE",
    "snapshot_name",
    "array_name",
    "state_name",
    "verify_bytes",
    "legacy_manifest",
]

MANIFEST = "manifest.json"
MANIFEST_FORMAT = "cld-hf-store-manifest"
MANIFEST_VERSION = 1

SNAPSHOT_RE = re.compile(r"^snapshot-(\d{5,})\.arrow$")
ARRAY_RE = re.compile(r"^array-([A-Za-z_][A-Za-z0-9_]*)\.safetensors$")
STATE_RE = re.compile(r"^streaming-state-(\d{5,})\.safetensors$")


def snapshot_name(index: int) -> str:
    """The file name of snapshot ``index``.

    Examples
    --------
    >>> snapshot_name(3)
    'snapshot-00003.arrow'
    """
    return f"snapshot-{index:05d}.arrow"


def array_name(name: str) -> str:
    """The file name of the end-of-training array ``name``.

    Examples
    --------
    >>> array_name("embeddings")
    'array-embeddings.safetensors'
    """
    return f"array-{name}.safetensors"


def state_name(num_snapshots: int) -> str:
    """The file name of the streaming scorer's state after ``num_snapshots`` snapshots.

    Examples
    --------
    >>> state_name(5)
    'streaming-state-00005.safetensors'
    """
    return f"streaming-state-{num_snapshots:05d}.safetensors"


class StoreIntegrityError(ValueError):
    """The store's files do not match its manifest; :attr:`path` is the offending file.

    Examples
    --------
    >>> err = StoreIntegrityError("snapshot-00002.arrow is missing", path="store/snapshot-00002.arrow")
    >>> err.path
    'store/snapshot-00002.arrow'
    """

    def __init__(self, message: str, *, path=None):
        super().__init__(message)
        self.path = None if path is None else str(path)


def bytes_sha256(data) -> str:
    """Hex SHA-256 of a bytes-like object (``bytes``, ``memoryview``, a pyarrow ``Buffer``).

    Examples
    --------
    >>> bytes_sha256(b"abc")[:16]
    'ba7816bf8f01cfea'
    """
    return hashlib.sha256(memoryview(data)).hexdigest()


def file_sha256(path) -> str:
    """Hex SHA-256 of a file, read in 8 MiB blocks.

    Examples
    --------
    >>> import os, tempfile
    >>> p = os.path.join(tempfile.mkdtemp(), "f"); _ = open(p, "wb").write(b"abc")
    >>> file_sha256(p) == bytes_sha256(b"abc")
    True
    """
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(8 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass
class Manifest:
    """What a store holds, as recorded when it was written.

    Attributes
    ----------
    snapshots : list of dict
        Per snapshot: ``index``, ``epoch``, ``step``, ``file`` (``None`` for a streamed snapshot,
        which keeps no file), ``bytes``, ``sha256`` (``None`` in a store upgraded from format 1
        before the file was first checked), ``columns``, ``complete``.
    arrays : dict
        ``{name: {"file", "bytes", "sha256", "num_snapshots"}}``.
    states : dict
        Streaming states, ``{str(num_snapshots): {"file", "bytes", "sha256"}}``.
    pinned : list of int
        Streaming states a checkpoint refers to (kept until a rewind drops them).
    scores : dict or None
        The saved scores file: ``{"file", "bytes", "sha256", "num_snapshots"}``.

    Examples
    --------
    >>> import tempfile
    >>> d = tempfile.mkdtemp()
    >>> m = Manifest(); m.snapshots.append({"index": 0, "file": None, "complete": True})
    >>> m.save(d); Manifest.load(d).snapshots[0]["index"]
    0
    """

    snapshots: list = field(default_factory=list)
    arrays: dict = field(default_factory=dict)
    states: dict = field(default_factory=dict)
    pinned: list = field(default_factory=list)
    scores: dict | None = None

    @classmethod
    def load(cls, directory) -> Manifest:
        path = Path(directory) / MANIFEST
        data = read_json(path)
        if data.get("format") != MANIFEST_FORMAT or int(data.get("version", 0)) > MANIFEST_VERSION:
            raise StoreIntegrityError(
                f"{path} is not a cld-hf store manifest this version reads (format "
                f"{data.get('format')!r}, version {data.get('version')}). Upgrade cld-hf.",
                path=path,
            )
        return cls(snapshots=list(data.get("snapshots", [])), arrays=dict(data.get("arrays", {})),
                   states=dict(data.get("states", {})), pinned=list(data.get("pinned", [])),
                   scores=data.get("scores"))

    def save(self, directory) -> None:
        atomic_write_json(Path(directory) / MANIFEST, {
            "format": MANIFEST_FORMAT, "version": MANIFEST_VERSION,
            "snapshots": self.snapshots, "arrays": self.arrays, "states": self.states,
            "pinned": sorted(set(self.pinned)), "scores": self.scores,
        })

    def listed_files(self) -> set[str]:
        """Names of every file the manifest lists."""
        names = {s["file"] for s in self.snapshots if s.get("file")}
        names |= {a["file"] for a in self.arrays.values()}
        names |= {s["file"] for s in self.states.values()}
        if self.scores:
            names.add(self.scores["file"])
        return names

    def check_directory(self, directory, *, names=None) -> None:
        """The cheap check on open: every listed complete file is there with its size, and no
        unlisted snapshot file is. Raises :class:`StoreIntegrityError`."""
        directory = Path(directory)
        present = set(names) if names is not None else {p.name for p in directory.iterdir()}
        entries = [(f"snapshot {s['index']}", s) for s in self.snapshots
                   if s.get("file") and s.get("complete", True)]
        entries += [(f"array {k!r}", a) for k, a in self.arrays.items()]
        entries += [(f"streaming state after {k} snapshots", s) for k, s in self.states.items()]
        if self.scores:
            entries.append(("the saved scores", self.scores))
        for what, entry in entries:
            path = directory / entry["file"]
            if entry["file"] not in present:
                raise StoreIntegrityError(
                    f"{path} ({what}) is missing from the store {str(directory)!r}, though its "
                    f"manifest lists it. Restore the file, or rewind the store to before it "
                    f"(LossTrajectories(..., writable=True).truncate(n)) and record it again.",
                    path=path,
                )
            size = path.stat().st_size
            if entry.get("bytes") is not None and size != entry["bytes"]:
                raise StoreIntegrityError(
                    f"{path} ({what}) has {size} bytes; the manifest recorded {entry['bytes']}: "
                    f"the file was truncated or replaced. Restore it, or rewind the store to "
                    f"before it and record it again.",
                    path=path,
                )
        pending = {s["file"] for s in self.snapshots if s.get("file") and not s.get("complete", True)}
        listed = self.listed_files()
        for name in sorted(present):
            if SNAPSHOT_RE.match(name) and name not in listed and name not in pending:
                raise StoreIntegrityError(
                    f"{directory / name} is not listed in the store's manifest: it was not "
                    f"written by this store (a file copied from another recording, or a "
                    f"duplicate). Remove it; the store holds {len(self.snapshots)} snapshot(s).",
                    path=directory / name,
                )


def verify_bytes(data, entry: dict, path, what: str) -> None:
    """Check bytes read from ``path`` against their manifest entry (no-op without a checksum).

    Examples
    --------
    >>> verify_bytes(b"abc", {"sha256": bytes_sha256(b"abc")}, "f", "snapshot 0")
    >>> verify_bytes(b"abd", {"sha256": bytes_sha256(b"abc")}, "f", "snapshot 0")
    Traceback (most recent call last):
    ...
    cld_hf.manifest.StoreIntegrityError: f (snapshot 0) does not match its checksum ...
    """
    expected = entry.get("sha256")
    if expected is None:
        return
    if bytes_sha256(data) != expected:
        raise StoreIntegrityError(
            f"{path} ({what}) does not match its checksum in the store's manifest: its bytes "
            f"changed after it was written (disk corruption, an edit, or a file from another "
            f"store or snapshot copied over it). Restore the file, or rewind the store to before "
            f"it and record it again.",
            path=path,
        )


def legacy_manifest(directory, names) -> Manifest:
    """The manifest of a format-1 store (cld-hf 0.1), built from its files (no checksums).

    Examples
    --------
    >>> import tempfile
    >>> legacy_manifest(Path(tempfile.mkdtemp()), set()).snapshots
    []
    """
    import json

    import pyarrow as pa
    import pyarrow.ipc as ipc

    directory = Path(directory)
    manifest = Manifest()
    indices = sorted(int(m.group(1)) for n in names if (m := SNAPSHOT_RE.match(n)))
    if indices != list(range(len(indices))):
        raise StoreIntegrityError(
            f"{directory} has snapshot files {indices}, which are not numbered 0..S-1 "
            f"without gaps. Remove the files after the first gap and record those snapshots "
            f"again.", path=directory,
        )
    for i in indices:
        path = directory / snapshot_name(i)
        with pa.memory_map(str(path), "r") as source:
            schema = ipc.open_file(source).schema
        info = json.loads((schema.metadata or {}).get(b"cld_hf", b"{}"))
        manifest.snapshots.append({
            "index": i, "epoch": info.get("epoch"), "step": info.get("step"),
            "file": path.name, "bytes": path.stat().st_size, "sha256": None,
            "columns": [n for n in schema.names if n != "loss"], "complete": True})
    for n in sorted(names):
        m = ARRAY_RE.match(n)
        if m:
            from safetensors import safe_open

            with safe_open(str(directory / n), framework="numpy") as f:
                taken = int((f.metadata() or {}).get("num_snapshots", 0))
            manifest.arrays[m.group(1)] = {"file": n, "bytes": None, "sha256": None,
                                           "num_snapshots": taken}
    return manifest
