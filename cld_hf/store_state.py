"""What the recorder keeps in a store besides snapshots: the streaming scorer's state and the
saved scores (a mixin of :class:`~cld_hf.trajectories.LossTrajectories`).

A streaming store keeps no snapshot files: each snapshot is a manifest entry (epoch, step) and
the :class:`~cld_hf.scoring.StreamingCLD` state after it, ``streaming-state-<S>.safetensors``;
only the latest state and those a checkpoint pinned are kept. Every file is checksummed in the
manifest like the snapshots.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

from .fileio import arrow_file_bytes, atomic_write_bytes
from .manifest import bytes_sha256, state_name

__all__ = []

_SCORES = "scores.arrow"


class StateMixin:
    """Streaming states and saved scores of :class:`~cld_hf.trajectories.LossTrajectories`."""

    def append_streamed(self, state: dict, *, epoch=None, step=None) -> int:
        """Record a snapshot of a streaming store: its epoch and step, and the scorer ``state``
        after it (``StreamingCLD.state_dict()``), as ``streaming-state-<S>.safetensors``.

        Only the latest state and the pinned ones (:meth:`pin_streaming_state`) are kept.

        Examples
        --------
        >>> import tempfile
        >>> from cld_hf import LossTrajectories, StreamingCLD
        >>> store = LossTrajectories.create(tempfile.mkdtemp(), [0, 1], [0, 1], streaming=True)
        >>> scorer = StreamingCLD([0, 1], [0, 1]); scorer.update([1.0, 2.0], [1.0, 2.0])
        >>> store.append_streamed(scorer.state_dict(), epoch=0)
        0
        >>> store.load_streaming_state(1)["num_updates"]
        1
        """
        self._check_writable("append_streamed()")
        if not self.streaming:
            raise ValueError("append_streamed() is for streaming stores; use append().")
        index = self.num_snapshots
        self._manifest.snapshots.append({
            "index": index, "epoch": None if epoch is None else float(epoch),
            "step": None if step is None else int(step), "file": None, "complete": True})
        self._save_state(index + 1, state)
        self._prune_states()
        self._save_manifest()
        return index

    def _save_state(self, num_snapshots: int, state: dict) -> None:
        from safetensors.numpy import save

        state = dict(state)
        counters = {k: str(int(state.pop(k))) for k in list(state)
                    if not isinstance(state[k], np.ndarray)}
        data = save({k: np.ascontiguousarray(v) for k, v in state.items()}, metadata=counters)
        name = state_name(num_snapshots)
        atomic_write_bytes(self.directory / name, data)
        self._manifest.states[str(num_snapshots)] = {"file": name, "bytes": len(data),
                                                     "sha256": bytes_sha256(data)}

    def _prune_states(self) -> None:
        keep = {self.num_snapshots, *self._manifest.pinned}
        for key in [k for k in self._manifest.states if int(k) not in keep]:
            entry = self._manifest.states.pop(key)
            self._save_manifest()
            (self.directory / entry["file"]).unlink(missing_ok=True)

    def pin_streaming_state(self, num_snapshots: int | None = None) -> None:
        """Keep the streaming state after ``num_snapshots`` (default: now) until a rewind drops
        it: a checkpoint refers to it."""
        self._check_writable("pin_streaming_state()")
        n = self.num_snapshots if num_snapshots is None else int(num_snapshots)
        if n and str(n) not in self._manifest.states:
            raise KeyError(f"No streaming state after {n} snapshots in {str(self.directory)!r}; "
                           f"states kept: {self.streaming_state_counts}.")
        if n not in self._manifest.pinned:
            self._manifest.pinned.append(n)
            self._save_manifest()

    @property
    def streaming_state_counts(self) -> list[int]:
        """After how many snapshots a streaming state is kept."""
        return sorted(int(k) for k in self._manifest.states)

    def load_streaming_state(self, num_snapshots: int) -> dict:
        """The streaming scorer's state after ``num_snapshots`` snapshots (checksum verified)."""
        from safetensors.numpy import load

        entry = self._manifest.states.get(str(int(num_snapshots)))
        if entry is None:
            raise FileNotFoundError(
                f"No streaming state after {num_snapshots} snapshots in {str(self.directory)!r}: "
                f"states are kept for the latest snapshot and for those a checkpoint pinned "
                f"({self.streaming_state_counts}). Rewind to one of those."
            )
        path = self.directory / entry["file"]
        data = self.read_verified_bytes(entry, f"streaming state after {num_snapshots} snapshots")
        from safetensors import safe_open

        state = dict(load(data))
        with safe_open(str(path), framework="numpy") as f:
            state.update({k: int(v) for k, v in (f.metadata() or {}).items()})
        return state

    def save_scores(self, scores) -> Path:
        """Write ``sample_index``, ``label``, ``cld_score`` of the training samples to
        ``scores.arrow`` (checksummed; dropped by a :meth:`truncate` before them).

        Examples
        --------
        >>> import tempfile
        >>> from cld_hf import LossTrajectories, StreamingCLD
        >>> store = LossTrajectories.create(tempfile.mkdtemp(), [0, 1], [1])
        >>> store.save_scores([0.5, -0.5]).name, store.load_scores().tolist()
        ('scores.arrow', [0.5, -0.5])
        """
        self._check_writable("save_scores()")
        s = np.asarray(scores, dtype=np.float32)
        if s.shape != (self.num_train,):
            raise ValueError(f"scores has shape {s.shape}; the store holds N={self.num_train} "
                             f"training samples: pass one score per sample.")
        table = pa.table({"sample_index": pa.array(np.arange(self.num_train), pa.int64()),
                          "label": pa.array(self.train_labels, pa.int64()),
                          "cld_score": pa.array(s, pa.float32())})
        data = arrow_file_bytes(table)
        path = atomic_write_bytes(self.directory / _SCORES, memoryview(data))
        self._manifest.scores = {"file": _SCORES, "bytes": data.size, "sha256": bytes_sha256(data),
                                 "num_snapshots": self.num_snapshots}
        self._save_manifest()
        return path

    def load_scores(self) -> np.ndarray:
        """The scores saved with :meth:`save_scores` (checksum verified)."""
        if not self._manifest.scores:
            raise FileNotFoundError(f"No saved scores in {str(self.directory)!r}; compute them "
                                    f"with store.scores().")
        table = self._read_verified_table(self.directory / _SCORES, self._manifest.scores,
                                          "the saved scores")
        return table.column("cld_score").to_numpy()

