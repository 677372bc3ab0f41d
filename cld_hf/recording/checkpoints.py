"""Resuming a recording: rewind to a checkpoint, a small JSON state, accelerate's save/load.

A mixin of :class:`~cld_hf.recording.recorder.LossRecorder`: the losses stay in the store, the
state only says how many snapshots a checkpoint covers.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .._validation import check_int
from .indexing import Grouping

__all__ = ["RECORDER_STATE_FORMAT"]

RECORDER_STATE_FORMAT = "cld-hf-loss-recorder"
_STATE_VERSION = 2


class CheckpointMixin:
    """Rewind, ``state_dict`` / ``load_state_dict`` and :meth:`checkpoint_with` for
    :class:`~cld_hf.recording.recorder.LossRecorder`."""

    def _check_store(self, store) -> None:
        """The store being resumed was recorded for these datasets, groups and settings."""
        if (store.num_train, store.num_query) != (self.num_train, self.num_query) or not (
            np.array_equal(store.train_labels, self.train_labels)
            and np.array_equal(store.query_labels, self.query_labels)
        ):
            raise ValueError(
                f"The store in {str(self.output_dir)!r} was recorded for N={store.num_train} "
                f"training and Q={store.num_query} query samples (or other labels); this recorder "
                f"has N={self.num_train}, Q={self.num_query}. Ensure the same datasets are used "
                f"to resume, or pass if_exists='overwrite' to start over."
            )
        recorded = (store.metadata or {}).get("grouping")
        if recorded is not None and recorded != self.grouping.to_dict():
            names = recorded.get("names")
            was = Grouping(recorded["kind"], recorded.get("column"),
                           None if names is None else tuple(names)).describe()
            raise ValueError(
                f"The store in {str(self.output_dir)!r} was recorded {was}, groups {names}; this "
                f"recorder scores {self.grouping.describe()}, groups "
                f"{self.grouping.to_dict()['names']}. Resume with the same grouping options and "
                f"data, or pass if_exists='overwrite'."
            )
        if store.streaming != self.streaming:
            raise ValueError(
                f"The recording in {str(self.output_dir)!r} was made with streaming="
                f"{store.streaming}, this recorder has streaming={self.streaming}: use the same "
                f"setting to resume, or pass if_exists='overwrite'."
            )

    def rewind(self, *, num_snapshots: int | None = None, step: int | None = None) -> int:
        """Drop the snapshots recorded after a checkpoint; returns the number kept.

        Give ``num_snapshots`` (keep that many) or ``step`` (keep those recorded at a global step
        ``<= step``, e.g. the ``global_step`` of the checkpoint being resumed).

        Examples
        --------
        >>> recorder, model = toy_recorder()
        >>> for epoch, step in [(0, 0), (1, 10), (2, 20)]:
        ...     _ = recorder.record(model, epoch=epoch, step=step)
        >>> recorder.rewind(step=15)           # resume from a checkpoint saved at step 15
        2
        """
        if (num_snapshots is None) == (step is None):
            raise ValueError(
                f"Pass exactly one of num_snapshots= or step=; got num_snapshots={num_snapshots!r},"
                f" step={step!r}."
            )
        if step is not None:
            num_snapshots = 0
            for s in self._snapshots:
                if s["step"] is None:
                    raise ValueError(
                        f"Snapshot {s['index']} was recorded without step=, so the recorder cannot "
                        f"tell whether it came before step {step}: rewind(num_snapshots=...)."
                    )
                num_snapshots += s["step"] <= step
        check_int("num_snapshots", num_snapshots, min_val=0)
        if num_snapshots > self.num_snapshots:
            raise ValueError(
                f"num_snapshots == {num_snapshots}, must be between 0 and the {self.num_snapshots} "
                f"snapshots recorded in {str(self.output_dir)!r}. The recording is behind the "
                f"checkpoint: was it made in another output_dir?"
            )
        if self.is_main_process:
            self.store.truncate(num_snapshots)
        self._barrier()
        del self._snapshots[num_snapshots:]
        self._load_streaming(num_snapshots)
        self._load_signal_state(num_snapshots)
        self._last_epoch = self._snapshots[-1]["epoch"] if self._snapshots else None
        self._fed.clear()
        return num_snapshots

    def state_dict(self) -> dict:
        """Small JSON state: how many snapshots a checkpoint covers (the losses stay in the store).

        With ``streaming=True`` the scorer's state after these snapshots is pinned in the store
        (kept while a checkpoint refers to it). :meth:`checkpoint_with` saves this state as JSON
        with ``accelerator.save_state``.

        Examples
        --------
        >>> import json
        >>> recorder, model = toy_recorder(epochs=2)
        >>> state = json.loads(json.dumps(recorder.state_dict()))   # JSON, no pickle needed
        >>> recorder.record(model)
        True
        >>> recorder.load_state_dict(state)
        >>> recorder.num_snapshots, recorder.store.num_snapshots
        (2, 2)
        """
        if self.streaming and self.is_main_process and self.num_snapshots:
            self.store.pin_streaming_state(self.num_snapshots)
        self._save_signal_state()
        return {"format": RECORDER_STATE_FORMAT, "version": _STATE_VERSION,
                "num_train": self.num_train, "num_query": self.num_query,
                "num_snapshots": self.num_snapshots, "snapshots": self.snapshot_info,
                "last_epoch": self._last_epoch, "streaming": self.streaming}

    def load_state_dict(self, state: dict) -> None:
        """Rewind to the state of :meth:`state_dict` (the snapshots of that checkpoint)."""
        if state.get("format") != RECORDER_STATE_FORMAT:
            raise ValueError(f"state is not a LossRecorder state (format {state.get('format')!r}).")
        if (state["num_train"], state["num_query"]) != (self.num_train, self.num_query):
            raise ValueError(
                f"The checkpoint's recorder state is for N={state['num_train']}, "
                f"Q={state['num_query']}; this recorder has N={self.num_train}, "
                f"Q={self.num_query}. Ensure the same datasets are used to resume."
            )
        if bool(state.get("streaming")) != self.streaming:
            raise ValueError(
                f"The checkpoint was saved with streaming={state.get('streaming')}; this recorder "
                f"has streaming={self.streaming}."
            )
        self.rewind(num_snapshots=int(state["num_snapshots"]))
        self._last_epoch = state.get("last_epoch")

    def checkpoint_with(self, accelerator) -> None:
        """Save this recorder's state with ``accelerator.save_state`` and rewind it on
        ``accelerator.load_state``, as JSON (``cld_recorder.json`` in the checkpoint folder).

        Uses accelerate's ``register_save_state_pre_hook`` / ``register_load_state_pre_hook``
        (``register_for_checkpointing`` would write a pickle).

        Examples
        --------
        >>> import tempfile
        >>> from accelerate import Accelerator
        >>> recorder, model = toy_recorder(epochs=2)
        >>> accelerator = Accelerator(cpu=True)
        >>> recorder.checkpoint_with(accelerator)
        >>> checkpoint = tempfile.mkdtemp()
        >>> _ = accelerator.save_state(checkpoint)   # writes cld_recorder.json there
        >>> sorted(p.name for p in Path(checkpoint).glob("*.json"))
        ['cld_recorder.json']
        >>> _ = recorder.record(model)
        >>> accelerator.load_state(checkpoint)
        >>> recorder.num_snapshots
        2
        """
        from ..fileio import atomic_write_json, read_json

        name = "cld_recorder.json"

        def save_hook(models, weights, output_dir):
            state = self.state_dict()
            if self.is_main_process:
                atomic_write_json(Path(output_dir) / name, state)

        def load_hook(models, input_dir):
            path = Path(input_dir) / name
            if not path.is_file():
                raise FileNotFoundError(
                    f"{path} is missing: the checkpoint was saved without the recorder's state "
                    f"(call recorder.checkpoint_with(accelerator) before accelerator.save_state)."
                )
            self.load_state_dict(read_json(path))

        accelerator.register_save_state_pre_hook(save_hook)
        accelerator.register_load_state_pre_hook(load_hook)

