"""Per-epoch last-layer signals for TracIn: softmax and penultimate features at every checkpoint.

The recorder (:class:`~cld_hf.recording.LossRecorder`) records ``probs``, ``embeddings``,
``query_probs`` and ``query_embeddings`` once, at the end of training
(:data:`cld_hf.recording.config.FINAL_SIGNALS`); TracInCP (Pruthi et al., 2020) needs them at
every checkpoint. :class:`EpochFeatures` is a small ``TrainerCallback`` that takes them after
every epoch, next to the CLD recording, with the mean learning rate of the epoch (TracInCP's
step-size weight). Each pass runs in eval mode under ``torch.inference_mode`` over the rows in
order, with no data loader and no random numbers, so training is unchanged.
"""

from __future__ import annotations

import numpy as np
from transformers import TrainerCallback

__all__ = ["EpochFeatures", "predict"]


def _inputs(dataset, start: int, stop: int):
    import torch

    x = dataset[start:stop]["pixel_values"]
    if isinstance(x, (list, tuple)):
        x = torch.stack([torch.as_tensor(v) for v in x])
    return torch.as_tensor(x, dtype=torch.float32)


def predict(model, dataset, *, batch_size: int = 512, features: bool = False):
    """Logits of ``model`` on every row of ``dataset`` (its ``pixel_values``), in row order.

    Parameters
    ----------
    model : transformers image-classification model
        Called as ``model(pixel_values=x).logits``, in eval mode (its mode is restored).
    dataset : datasets.Dataset
        With a ``pixel_values`` column (any format or transform that yields tensors or arrays).
    batch_size : int, default 512
    features : bool, default False
        Also return the penultimate features: the input of the classifier head
        (:func:`cld_hf.recording.find_feature_module`), flattened to ``(n, D)``.

    Returns
    -------
    numpy.ndarray (n, C) of float32, or ``(logits, features)`` with ``features=True``.

    Examples
    --------
    >>> from datasets import Dataset
    >>> from cld_hf.app.builtin import make_image_classifier
    >>> ds = Dataset.from_dict({"pixel_values": np.zeros((3, 1, 8, 8), np.float32)})
    >>> logits, h = predict(make_image_classifier(4, seed=0), ds.with_format("torch"),
    ...                     features=True)
    >>> logits.shape, h.shape
    ((3, 4), (3, 32))
    """
    import torch

    from ...recording import find_feature_module

    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    caught, handle = [], None
    if features:
        num_classes = getattr(getattr(model, "config", None), "num_labels", None)
        _, head = find_feature_module(model, num_classes=num_classes)
        handle = head.register_forward_pre_hook(
            lambda module, args: caught.append(args[0].detach().flatten(1).float().cpu()))
    logits = []
    try:
        with torch.inference_mode():
            for start in range(0, len(dataset), batch_size):
                x = _inputs(dataset, start, min(start + batch_size, len(dataset))).to(device)
                logits.append(model(pixel_values=x).logits.float().cpu())
    finally:
        if handle is not None:
            handle.remove()
        model.train(was_training)
    out = torch.cat(logits).numpy() if logits else np.zeros((0, 0), np.float32)
    if features:
        return out, torch.cat(caught).numpy()
    return out


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits.astype(np.float64) - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


class EpochFeatures(TrainerCallback):
    """Record the softmax and penultimate features of the training and query samples after
    every epoch, and the epoch's mean learning rate: the inputs of
    :func:`cld_hf.attribution.tracin_last_layer` at every checkpoint.

    Parameters
    ----------
    train_dataset, query_dataset : datasets.Dataset
        The rows the Trainer trains on (in the order of the recording's sample indices) and the
        query rows, each with ``pixel_values``.
    batch_size : int, default 512
        Rows per forward pass.

    Attributes
    ----------
    probs, embeddings, query_probs, query_embeddings : list of numpy.ndarray
        One ``(N, C)`` / ``(N, D)`` / ``(Q, C)`` / ``(Q, D)`` array per epoch.
    learning_rates : list of float
        The mean learning rate of the steps of each epoch.

    Examples
    --------
    With a ``Trainer`` (see :func:`cld_hf.app.studies.train_proxy`)::

        features = EpochFeatures(train_ds, query_ds)
        trainer = Trainer(model=model, args=args, train_dataset=train_ds,
                          callbacks=[CLDCallback(query_ds), features])
        trainer.train()
        tracin = tracin_last_layer(features.probs, features.embeddings, train_labels,
                                   features.query_probs, features.query_embeddings,
                                   query_labels, learning_rates=features.learning_rates)
    """

    def __init__(self, train_dataset, query_dataset, *, batch_size: int = 512):
        # User-provided
        self.train_dataset = train_dataset
        self.query_dataset = query_dataset
        self.batch_size = int(batch_size)
        # Internal state
        self.probs, self.embeddings = [], []
        self.query_probs, self.query_embeddings = [], []
        self.learning_rates: list[float] = []
        self._epoch_lrs: list[float] = []
        self._last_epoch = None

    def on_epoch_begin(self, args, state, control, **kwargs):
        self._epoch_lrs = []

    def on_step_begin(self, args, state, control, lr_scheduler=None, **kwargs):
        if lr_scheduler is not None:
            self._epoch_lrs.append(float(lr_scheduler.get_last_lr()[0]))

    def on_epoch_end(self, args, state, control, model=None, **kwargs):
        if state.epoch == self._last_epoch:  # guard against a double firing
            return
        self._last_epoch = state.epoch
        for ds, probs, feats in ((self.train_dataset, self.probs, self.embeddings),
                                 (self.query_dataset, self.query_probs, self.query_embeddings)):
            logits, h = predict(model, ds, batch_size=self.batch_size, features=True)
            probs.append(_softmax(logits))
            feats.append(h.astype(np.float32))
        self.learning_rates.append(float(np.mean(self._epoch_lrs)) if self._epoch_lrs
                                   else float(args.learning_rate))

    @property
    def num_checkpoints(self) -> int:
        """Epochs recorded so far."""
        return len(self.probs)
