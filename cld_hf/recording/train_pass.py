"""``mode="train_pass"``: per-sample losses taken from the training forward passes of an epoch.

Instead of sweeping the training set after the epoch, the recorder is fed the unreduced loss of
each training batch as it is computed (:meth:`LossRecorder.feed
<cld_hf.recording.recorder.LossRecorder.feed>`, or forward hooks installed by
:meth:`LossRecorder.capture <cld_hf.recording.recorder.LossRecorder.capture>`, which hold a
:class:`CaptureHandle`). This saves ``N`` forward passes per epoch, but approximates the sweep:
the losses are taken in training mode (dropout, batch-norm batch statistics, augmentation) at
weights that move during the epoch. :class:`FedLosses` is the buffer of one epoch.
"""

from __future__ import annotations

import logging

import numpy as np
import torch

from .gather import IncompleteSnapshotError, gather_arrays, place_by_index
from .indexing import INDEX_KEY
from .losses import LABELS_COPY_KEY, unwrap_model

logger = logging.getLogger(__name__)

__all__ = ["FedLosses", "CaptureHandle"]


class FedLosses:
    """The ``(index, loss)`` pairs fed during one epoch, with the order they came in.

    Fed tensors stay on their device (detached) until :meth:`arrays` copies them to the CPU once
    at the end of the epoch, so feeding a GPU batch costs no host transfer or synchronisation.

    Examples
    --------
    >>> fed = FedLosses()
    >>> fed.feed([3, 1], [0.25, 0.5]); fed.feed([0, 3], [1.0, 2.0])
    >>> fed.num_fed, fed.num_batches
    (4, 2)
    >>> [a.tolist() for a in fed.arrays()]   # index, loss, batch order
    [[3, 1, 0, 3], [0.25, 0.5, 1.0, 2.0], [0, 0, 1, 1]]
    """

    def __init__(self):
        self.clear()

    def clear(self) -> None:
        self._index: list[torch.Tensor] = []
        self._loss: list[torch.Tensor] = []
        self._order: list[torch.Tensor] = []
        self.num_batches = 0

    def feed(self, sample_index, losses) -> None:
        index = torch.as_tensor(sample_index).detach().reshape(-1).to(torch.long)
        loss = torch.as_tensor(losses).detach().reshape(-1).to(torch.float32)
        if index.shape != loss.shape:
            raise ValueError(
                f"feed() got {index.numel()} sample indices and {loss.numel()} losses: pass one "
                f"loss per sample of the batch (reduction='none')."
            )
        self._index.append(index)
        self._loss.append(loss)
        self._order.append(torch.full_like(index, self.num_batches))
        self.num_batches += 1

    @property
    def num_fed(self) -> int:
        return int(sum(t.numel() for t in self._index))

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(index int64, loss float32, order int64)`` of everything fed."""
        parts = ((self._index, np.int64), (self._loss, np.float32), (self._order, np.int64))
        return tuple(torch.cat([t.to(x[0].device) for t in x]).cpu().numpy() if x
                     else np.zeros(0, dtype) for x, dtype in parts)


class CaptureHandle:
    """Forward hooks that feed a recorder the per-sample losses of the training forwards.

    Before the forward, a pre-hook takes ``cld_hf_index`` (and the label copy
    ``cld_hf_labels``) out of the keyword arguments, so the model never sees them; after it, a
    hook computes the per-sample losses (``recorder.per_sample_loss``) and feeds them. Only
    forwards in training mode whose batch carries ``cld_hf_index`` are captured, and only while
    ``recorder.capturing``. :meth:`remove` (or leaving a ``with`` block) takes the hooks off.

    Examples
    --------
    Made by ``recorder.capture(model)``:

    >>> recorder, model = toy_recorder(mode="train_pass")
    >>> with recorder.capture(model) as handle:
    ...     _ = model(x=torch.zeros(2, 1), labels=torch.tensor([0, 1]),
    ...               cld_hf_index=torch.tensor([0, 1]))
    >>> recorder.num_fed, len(handle._handles)
    (2, 0)
    """

    def __init__(self, recorder, model: torch.nn.Module):
        self.recorder = recorder
        self.model = model
        self._pending: list = []
        self._handles = [
            model.register_forward_pre_hook(self._pre, with_kwargs=True),
            model.register_forward_hook(self._post, with_kwargs=True),
        ]

    def _pre(self, module, args, kwargs):
        if INDEX_KEY not in kwargs and LABELS_COPY_KEY not in kwargs:
            self._pending.append(None)
            return None
        kwargs = dict(kwargs)
        index = kwargs.pop(INDEX_KEY, None)
        labels = kwargs.pop(LABELS_COPY_KEY, None)
        self._pending.append((index, labels))
        return args, kwargs

    def _post(self, module, args, kwargs, output):
        pending = self._pending.pop() if self._pending else None
        if pending is None or pending[0] is None:
            return None
        if not (module.training and self.recorder.capturing):
            return None
        index, labels = pending
        batch = dict(kwargs)
        if labels is not None:
            batch[LABELS_COPY_KEY] = labels
        batch[INDEX_KEY] = index
        self.recorder.feed(index, self.recorder.per_sample_loss(output, batch, model=module))
        return None

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.remove()
        return False


class TrainPassMixin:
    """The ``train_pass`` side of :class:`~cld_hf.recording.recorder.LossRecorder`: feeding,
    capturing, and assembling an epoch's fed losses into a snapshot."""

    def feed(self, sample_index, losses) -> None:
        """Add the per-sample losses of one training batch (``train_pass`` mode).

        Call it on every process for every training batch of the epoch, then :meth:`record` at
        the end of the epoch. A sample fed twice in one epoch keeps its first loss.

        Parameters
        ----------
        sample_index : int tensor or array of shape (B,)
            ``batch["cld_hf_index"]`` (see :class:`~cld_hf.recording.indexing.IndexedDataset`).
        losses : float tensor or array of shape (B,)
            One unreduced loss per sample, e.g. ``recorder.per_sample_loss(outputs, batch)``.

        Examples
        --------
        >>> recorder, model = toy_recorder(mode="train_pass")
        >>> recorder.record(model, epoch=0)            # nothing fed yet: a sweep
        True
        >>> recorder.feed([3, 1], [0.25, 0.5])           # the batches of epoch 1, shuffled
        >>> recorder.feed([0, 2], [1.0, 2.0])
        >>> recorder.record(model, epoch=1)
        True
        >>> recorder.store.snapshot(1)[0].tolist()       # row i = sample i
        [1.0, 0.5, 2.0, 0.25]
        """
        self._fed.feed(sample_index, losses)

    @property
    def num_fed(self) -> int:
        """Losses fed on this process since the last snapshot."""
        return self._fed.num_fed

    def capture(self, model) -> CaptureHandle:
        """Capture per-sample training losses from ``model``'s forward passes (``train_pass``).

        Registers two hooks on ``model`` (the module inside DDP; see
        :class:`~cld_hf.recording.train_pass.CaptureHandle`): ``cld_hf_index`` never reaches the
        model's forward. Returns the handle; ``handle.remove()`` (or leaving the ``with`` block)
        removes the hooks; ``recorder.capturing = False`` pauses capture.

        Examples
        --------
        >>> from torch.utils.data import DataLoader
        >>> from cld_hf import IndexCollator, IndexedDataset
        >>> recorder, model = toy_recorder(mode="train_pass", epochs=1)
        >>> loader = DataLoader(IndexedDataset(recorder.train_dataset), batch_size=2,
        ...                     shuffle=True, collate_fn=IndexCollator())
        >>> optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        >>> with recorder.capture(model):
        ...     for batch in loader:
        ...         logits = model(**batch)["logits"]
        ...         torch.nn.functional.cross_entropy(logits, batch["labels"]).backward()
        ...         optimizer.step()
        ...         optimizer.zero_grad()
        >>> recorder.num_fed                          # one loss per training sample
        4
        """
        return CaptureHandle(self, unwrap_model(model))

    @property
    def capturing(self) -> bool:
        """Whether :meth:`capture` hooks feed losses (switch off for epochs not recorded)."""
        return self._capturing

    @capturing.setter
    def capturing(self, value: bool) -> None:
        self._capturing = bool(value)

    def _train_pass_losses(self, model, epoch) -> np.ndarray:
        n = self.num_train
        idx, loss, order = gather_arrays(*self._fed.arrays(), device=self.device)
        what = f"Training-pass losses at epoch {epoch}"
        try:
            return place_by_index(n, idx, loss, order=order, what=what).values
        except IncompleteSnapshotError as err:
            if self.config.unseen == "error":
                raise IncompleteSnapshotError(
                    f"{err} These training samples were never seen by a training batch fed to the"
                    f" recorder this epoch (a dropped last batch: dataloader_drop_last=True; a "
                    f"mid-epoch resume; a loop that did not feed every batch). Fix: do not drop "
                    f"the last batch, use mode='sweep', or pass unseen='sweep' to record these "
                    f"samples with an eval-mode forward at the end of the epoch.",
                    missing=err.missing,
                ) from None
            missing = np.asarray(err.missing, dtype=np.int64)
            logger.info("Epoch %s: %d training sample(s) unseen by the training pass; sweeping "
                        "them (unseen='sweep').", epoch, len(missing))
        extra_idx, extra_loss, _ = self._sweep_all(model, self.train_dataset, n, missing,
                                                   desc="CLD sweep (unseen)")
        keep = idx >= 0
        last = np.full(len(extra_idx), np.iinfo(np.int64).max, np.int64)  # after every fed one
        return place_by_index(n, np.concatenate([idx[keep], extra_idx]),
                              np.concatenate([loss[keep], extra_loss]),
                              order=np.concatenate([order[keep], last]), what=what).values

