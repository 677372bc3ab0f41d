"""The baselines' signals of :class:`~cld_hf.recording.recorder.LossRecorder` (a mixin).

Per snapshot, from the logits of the loss sweep itself (no extra forward): ``correct``,
``true_prob``, ``margin``, ``el2n``, ``grad_projection`` (from the snapshot's softmax and
penultimate features) and ``tdds_kl`` (from this snapshot's softmax and the previous one's, one
``(N, C)`` buffer kept by sample index). Once, at the end of training: ``embeddings`` and
``probs`` of the training set (the last sweep), ``query_embeddings`` and ``query_probs`` (a
sweep of the query set), ``curvature`` and ``boundary_steps`` (input-gradient passes,
:mod:`cld_hf.recording.probes`). Everything lands in the store, checksummed, by sample index.
"""

from __future__ import annotations

import logging

import numpy as np

from .config import SNAPSHOT_SIGNALS
from .gather import place_by_index, shard_indices

logger = logging.getLogger(__name__)

__all__ = []

TRAIN_SWEEP_FINALS = ("embeddings", "probs")
QUERY_FINALS = {"query_embeddings": "embeddings", "query_probs": "probs"}
PROBE_FINALS = ("curvature", "boundary_steps")
_TDDS_BUFFER = "tdds_prev_probs"


class RecorderSignalsMixin:
    """What the recorder does for ``signals=`` (see the module docstring)."""

    def _sweep_signal_names(self, final_names) -> tuple[str, ...]:
        """Per-batch signals a training sweep computes for this snapshot."""
        wanted = [s for s in self.signals if s in SNAPSHOT_SIGNALS
                  and s not in ("grad_projection", "tdds_kl")]
        if "grad_projection" in self.signals:
            wanted += ["probs", "embeddings"]  # the snapshot's softmax and features
        if "tdds_kl" in self.signals:
            wanted += ["probs"]
        return tuple(dict.fromkeys([*wanted, *final_names]))

    def _split_signals(self, placed: dict, final_names) -> tuple[dict, dict]:
        """``(per-snapshot signals to store, final arrays)`` from the placed sweep signals."""
        per_snapshot = {k: placed[k] for k in self.signals if k in SNAPSHOT_SIGNALS and k in placed}
        if "grad_projection" in self.signals:
            from ..baselines.gradients import gradient_projections

            per_snapshot["grad_projection"] = gradient_projections(
                placed["probs"], placed["embeddings"], self.train_labels)
        if "tdds_kl" in self.signals:
            from ..baselines.tdds import tdds_kl_terms

            probs = placed["probs"].astype(np.float32, copy=False)
            prev = getattr(self, "_tdds_prev", None)
            per_snapshot["tdds_kl"] = (np.zeros(len(probs), np.float32) if prev is None
                                       else tdds_kl_terms(prev, probs))
            self._tdds_prev = probs
        return per_snapshot, {k: placed[k] for k in final_names}

    def _save_signal_state(self) -> None:
        """With a checkpoint: the previous softmax of ``tdds_kl``, so that a resume goes on."""
        prev = getattr(self, "_tdds_prev", None)
        if "tdds_kl" in self.signals and prev is not None and self.is_main_process:
            self.store.save_array(_TDDS_BUFFER, prev)

    def _load_signal_state(self, num_snapshots: int) -> None:
        self._tdds_prev = None
        if "tdds_kl" not in self.signals or num_snapshots == 0:
            return
        store = self.read_store()
        if (_TDDS_BUFFER not in store.array_names
                or store.array_snapshot(_TDDS_BUFFER) != num_snapshots):
            raise ValueError(
                f"signals include 'tdds_kl', whose next value needs the softmax of snapshot "
                f"{num_snapshots - 1}; the store keeps it only for the latest checkpoint "
                f"({store.array_snapshot(_TDDS_BUFFER) if _TDDS_BUFFER in store.array_names else 'none'}"
                f" snapshot(s)). Resume from the latest checkpoint, or record without tdds_kl."
            )
        self._tdds_prev = store.load_array(_TDDS_BUFFER)

    def record_final_features(self, model, names=None) -> list[str]:
        """Record the end-of-training signals: by default every final signal of ``signals=``.

        ``embeddings`` and ``probs`` come from a sweep of the training set, ``query_embeddings``
        and ``query_probs`` from one of the query set, ``curvature`` and ``boundary_steps`` from
        input-gradient passes (:mod:`cld_hf.recording.probes`); each is saved to the store as
        ``array-<name>.safetensors``. Use it when the last :meth:`record` was not called with
        ``final=True``. Returns the names recorded.

        Examples
        --------
        >>> recorder, model = toy_recorder(epochs=3, signals=["embeddings", "probs",
        ...                                                    "query_probs"])
        >>> recorder.record_final_features(model)
        ['embeddings', 'probs', 'query_probs']
        >>> recorder.store.load_array("embeddings").shape   # the input of model.lin: 1 feature
        (4, 1)
        >>> recorder.store.load_array("query_probs").shape  # 2 query samples, 2 classes
        (2, 2)
        """
        names = list(self.config.final_signals if names is None else names)
        n, q = self.num_train, self.num_query
        train_names = [s for s in names if s in TRAIN_SWEEP_FINALS]
        if train_names:
            idx, loss, extras = self._sweep_all(model, self.train_dataset, n, signals=train_names,
                                                desc="CLD sweep (final features)")
            self._save_final(place_by_index(n, idx, loss, extra=extras,
                                            what="Final features").extra)
        query_names = [s for s in names if s in QUERY_FINALS]
        if query_names:
            wanted = [QUERY_FINALS[s] for s in query_names]
            idx, loss, extras = self._sweep_all(model, self.query_dataset, q, signals=wanted,
                                                desc="CLD sweep (final query features)")
            placed = place_by_index(q, idx, loss, extra=extras, what="Final query features").extra
            self._save_final({s: placed[QUERY_FINALS[s]] for s in query_names}, part="query")
        for name in (s for s in names if s in PROBE_FINALS):
            self._save_final({name: self._probe(model, name)})
        return [s for s in names if s in (*TRAIN_SWEEP_FINALS, *QUERY_FINALS, *PROBE_FINALS)]

    def _probe(self, model, name: str) -> np.ndarray:
        from . import probes
        from .gather import gather_arrays
        from .sweep import sweep_dataset

        n = self.num_train
        shard, real = shard_indices(np.arange(n), self.state)
        columns = self._columns_for(model)
        common = dict(collate_fn=self.collate_fn, columns=columns, batch_size=self.batch_size,
                      device=self.device, with_labels=self._loss.with_labels)
        data = sweep_dataset(self.train_dataset, eval_transform=self.eval_transform,
                             columns=columns)
        if name == "curvature":
            idx, values = probes.input_curvature(model, data, shard, real, **common)
        else:
            idx, values = probes.boundary_steps(model, data, shard, real, **common)
        idx, values = gather_arrays(idx, values, device=self.device)
        return place_by_index(n, idx, np.zeros(len(idx), np.float32), extra={name: values},
                              what=f"The {name} signal").extra[name]

    def _save_final(self, values: dict, *, part: str = "train") -> None:
        if self.is_main_process:
            for name, array in values.items():
                self.store.save_array(name, array, part=part)
        self._barrier()
        logger.info("Recorded the end-of-training signals %s of the %s samples.",
                    sorted(values), part)

    @property
    def final_features_recorded(self) -> bool:
        """Whether every requested final signal is stored and was taken after the last snapshot
        (True when none was requested)."""
        store = self.read_store()
        return all(name in store.array_names and store.array_snapshot(name) == self.num_snapshots
                   for name in self.config.final_signals)
