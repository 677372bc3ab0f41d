"""Per-sample losses and the signals the baselines read, from a model's outputs.

One loss per sample, never a batch mean: cross entropy for classification (label smoothing
ignored), the mean loss of the trained tokens of each sequence for language models (ignoring
``-100``: the next-token predictions of a causal LM, the target tokens of a seq2seq model, the
labelled positions of a masked LM; padding-free batches split by ``position_ids``), or a user's
``per_sample_loss(outputs, batch) -> Tensor[B]``. :class:`PerSampleLoss` resolves the token
loss from what the model computes and checks it against the model's own loss. The baselines'
signals from the same forward are in :mod:`.features`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Literal

import torch
import torch.nn.functional as F

from .config import LOSS_TYPES
from .token_losses import (  # noqa: F401  (the token losses are part of this module's API)
    _is_fused_output,
    fused_per_sequence_loss,
    per_sequence_token_loss,
    sequence_means,
)

__all__ = [
    "LABEL_KEYS",
    "LABELS_COPY_KEY",
    "per_sample_cross_entropy",
    "per_sequence_token_loss",
    "sequence_means",
    "fused_per_sequence_loss",
    "default_per_sample_loss",
    "PerSampleLoss",
    "base_model_of",
    "model_loss_kind",
    "find_logits",
    "find_labels",
    "is_causal_lm",
    "unwrap_model",
    "batch_size_of",
]

LossType = Literal["auto", "classification", "causal_lm", "seq2seq", "token"]

LABEL_KEYS = ("labels", "label", "label_ids")
"""Where the labels are looked for in a batch, in order."""

LABELS_COPY_KEY = "cld_hf_labels"
"""Batch key of a copy of the labels, for training steps that pop ``labels`` before the forward
(label smoothing, ``compute_loss_func``); removed again before the model sees the batch."""


def unwrap_model(model):
    """The module inside ``DistributedDataParallel`` / ``DataParallel``.

    Other wrappers (FSDP, DeepSpeed) stay: their forward is collective, which is why every
    process runs the same number of sweep batches.

    Examples
    --------
    >>> net = torch.nn.Linear(2, 2)
    >>> unwrap_model(torch.nn.DataParallel(net)) is net
    True
    """
    while isinstance(model, (torch.nn.parallel.DistributedDataParallel, torch.nn.DataParallel)):
        model = model.module
    return model


def per_sample_cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Unreduced cross entropy of ``(B, C)`` logits against ``(B,)`` class ids, in float32.

    Label smoothing is deliberately not applied: CLD records the plain loss.

    Examples
    --------
    >>> logits = torch.tensor([[2.0, 0.0], [0.0, 0.0]])
    >>> [round(v, 4) for v in per_sample_cross_entropy(logits, torch.tensor([0, 1])).tolist()]
    [0.1269, 0.6931]
    """
    if logits.ndim != 2:
        raise ValueError(
            f"logits must have shape (batch, num_classes) for a classification loss, got "
            f"{tuple(logits.shape)}. For token-level outputs use loss_type='causal_lm' or "
            f"'token', or pass per_sample_loss=fn(outputs, batch) -> Tensor[B]."
        )
    if labels.dtype.is_floating_point or labels.dtype == torch.bool:
        raise TypeError(
            f"labels must hold integer class ids for a classification loss, got dtype "
            f"{labels.dtype} (regression or multi-label?). Pass per_sample_loss=fn(outputs, "
            f"batch) -> Tensor[B] that computes the loss of your task per sample."
        )
    labels = labels.reshape(-1).long()
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= logits.shape[1]):
        raise ValueError(
            f"labels must be class ids in [0, {logits.shape[1] - 1}] (the model has "
            f"{logits.shape[1]} outputs); got values in [{int(labels.min())}, "
            f"{int(labels.max())}]. Give the model one output per class, or fix the labels."
        )
    return F.cross_entropy(logits.detach().float(), labels, reduction="none")


def find_logits(outputs):
    """The ``logits`` tensor of a model's outputs (a dict or ``ModelOutput``), or an error that
    says what to return or pass.

    Examples
    --------
    >>> find_logits({"logits": torch.zeros(2, 3)}).shape
    torch.Size([2, 3])
    """
    if isinstance(outputs, Mapping):  # dict and transformers' ModelOutput
        logits = outputs.get("logits")
        keys = list(outputs.keys())
    else:
        logits = getattr(outputs, "logits", None)
        keys = type(outputs).__name__
    if not isinstance(logits, torch.Tensor):
        raise ValueError(
            f"The model's output has no 'logits' (got {keys}), so the per-sample loss cannot be "
            f"computed from it. Return logits from forward (a dict or ModelOutput with 'logits'),"
            f" or pass per_sample_loss=fn(outputs, batch) -> Tensor[B] that computes one loss "
            f"per sample (reduction='none')."
        )
    return logits


def find_labels(batch):
    """The labels tensor of a batch: ``cld_hf_labels`` (a copy kept for training steps that pop
    ``labels``), then ``labels``, ``label``, ``label_ids``.

    Examples
    --------
    >>> find_labels({"x": torch.zeros(2), "label": torch.tensor([1, 0])}).tolist()
    [1, 0]
    """
    for key in (LABELS_COPY_KEY, *LABEL_KEYS):
        value = batch.get(key) if isinstance(batch, Mapping) else None
        if isinstance(value, torch.Tensor):
            return value
    keys = list(batch.keys()) if isinstance(batch, Mapping) else type(batch).__name__
    raise ValueError(
        f"The batch has no labels: looked for {list(LABEL_KEYS)} in its keys {keys}. Keep the "
        f"label column in the dataset (its name is found as 'labels' then 'label'), or pass "
        f"per_sample_loss=fn(outputs, batch) -> Tensor[B]."
    )


def base_model_of(model):
    """The model that computes the outputs: inside DDP, FSDP, ``torch.compile`` and PEFT
    wrappers (``PeftModel.get_base_model()``), for reading its structure, never for running it.

    Examples
    --------
    >>> net = torch.nn.Linear(2, 2)
    >>> base_model_of(torch.nn.DataParallel(net)) is net
    True
    """
    seen = set()
    while model is not None and id(model) not in seen:
        seen.add(id(model))
        if isinstance(model, (torch.nn.parallel.DistributedDataParallel, torch.nn.DataParallel)):
            model = model.module
        elif hasattr(model, "_orig_mod"):  # torch.compile
            model = model._orig_mod
        elif callable(getattr(model, "get_base_model", None)) and hasattr(model, "peft_config"):
            model = model.get_base_model()
        elif type(model).__name__ in ("FullyShardedDataParallel", "FSDPModule") and hasattr(
                model, "module"):
            model = model.module
        else:
            break
    return model


def model_loss_kind(model) -> str | None:
    """What the model's structure says its token loss is: ``"seq2seq"`` (an encoder-decoder:
    targets without shift), ``"causal_lm"`` (a model that generates left to right), ``"token"``
    (other transformers models: masked LM, token classification), from the base model under
    PEFT and other wrappers; for a plain ``torch.nn.Module``, ``"causal_lm"`` when its class is
    named ``*ForCausalLM`` / ``*LMHeadModel``, else None.

    Used only when the model returned no ``loss`` to compare with (see
    :class:`PerSampleLoss`).

    Examples
    --------
    >>> from transformers import GPT2Config, GPT2LMHeadModel
    >>> config = GPT2Config(n_layer=1, n_embd=8, n_head=2, vocab_size=10, bos_token_id=0,
    ...                     eos_token_id=0)
    >>> model_loss_kind(GPT2LMHeadModel(config))
    'causal_lm'
    >>> model_loss_kind(torch.nn.Linear(2, 2)) is None
    True
    """
    base = base_model_of(model)
    if base is None:
        return None
    config = getattr(base, "config", None)
    if config is not None and hasattr(config, "is_encoder_decoder"):
        if config.is_encoder_decoder:
            return "seq2seq"
        can_generate = getattr(base, "can_generate", None)
        if callable(can_generate):
            return "causal_lm" if can_generate() else "token"
    name = type(base).__name__
    if name.endswith("ForCausalLM") or name.endswith("LMHeadModel"):
        return "causal_lm"
    return None


def is_causal_lm(model) -> bool:
    """Whether ``model`` (or the base model under PEFT and other wrappers) is a causal language
    model, by :func:`model_loss_kind`.

    Examples
    --------
    >>> is_causal_lm(torch.nn.Linear(2, 2))
    False
    """
    return model is not None and model_loss_kind(model) == "causal_lm"


def _shift_for(loss_type: str) -> bool:
    return loss_type == "causal_lm"


def default_per_sample_loss(outputs, batch, *, loss_type: LossType = "auto", model=None,
                            num_samples: int | None = None):
    """One loss per sample from a model's ``logits`` and the batch's labels.

    Parameters
    ----------
    outputs : Mapping or ModelOutput
        What the model returned; must hold ``logits`` (or, from TRL's fused LM head,
        ``log_probs`` and ``label_mask``).
    batch : Mapping
        The collated batch; labels are found as ``labels``, ``label`` or ``label_ids``.
    loss_type : {"auto", "classification", "causal_lm", "seq2seq", "token"}, default "auto"
        ``"classification"``: cross entropy of ``(B, C)`` logits. ``"causal_lm"``: mean loss of
        the next-token predictions of each sequence. ``"seq2seq"`` / ``"token"``: mean loss over
        the labelled positions, no shift (decoder targets; masked LM, token classification).
        ``"auto"``: classification for 2-D logits; for 3-D logits :func:`model_loss_kind` of
        ``model`` (:class:`PerSampleLoss` also checks against the model's own loss).
    model : torch.nn.Module, optional
        Only used by ``"auto"``.
    num_samples : int, optional
        Samples in the batch when its rows are flattened (padding-free): split by
        ``position_ids``.

    Returns
    -------
    torch.Tensor of float32, shape (B,).

    Examples
    --------
    >>> out = {"logits": torch.tensor([[2.0, 0.0], [0.0, 0.0]])}
    >>> losses = default_per_sample_loss(out, {"labels": torch.tensor([0, 1])})
    >>> [round(v, 4) for v in losses.tolist()]
    [0.1269, 0.6931]
    """
    if loss_type not in LOSS_TYPES:
        raise ValueError(f"loss_type == {loss_type!r}, must be one of {list(LOSS_TYPES)}.")
    position_ids = batch.get("position_ids") if isinstance(batch, Mapping) else None
    if _is_fused_output(outputs):
        return fused_per_sequence_loss(outputs, position_ids=position_ids,
                                       num_sequences=num_samples)
    logits = find_logits(outputs)
    labels = find_labels(batch)
    if loss_type == "auto":
        loss_type = _structural_loss_type(logits, model)
    if loss_type == "classification":
        return per_sample_cross_entropy(logits, labels)
    return per_sequence_token_loss(logits, labels, shift=_shift_for(loss_type),
                                   position_ids=position_ids, num_sequences=num_samples)


def _structural_loss_type(logits, model) -> str:
    if logits.ndim == 2:
        return "classification"
    if logits.ndim == 3:
        return model_loss_kind(model) or "token"
    raise ValueError(
        f"Cannot infer the loss from logits of shape {tuple(logits.shape)}: pass "
        f"loss_type= or per_sample_loss=fn(outputs, batch) -> Tensor[B]."
    )


class PerSampleLoss:
    """The recorder's per-sample loss: the user's ``fn(outputs, batch)``, or
    :func:`default_per_sample_loss` with the token loss resolved from what the model computes.

    With ``loss_type="auto"`` and 3-D logits, the shift is the one whose token-weighted batch
    mean reproduces the model's own ``outputs.loss`` (next-token for causal language models,
    none for seq2seq targets); the first batch decides and every later batch is checked, so a
    per-sample loss that does not match the loss the model trains with is an error, never a
    silent score. Without ``outputs.loss`` the structure decides (:func:`model_loss_kind`). An
    explicit ``loss_type`` is trusted and not checked.

    Parameters
    ----------
    fn : callable, optional
        ``fn(outputs, batch) -> Tensor[B]``; when given, used as is.
    loss_type : str, default "auto"
    label_column : str, optional
        A class column also offered to the loss as ``labels``.
    classless : bool, default False
        The grouping is label-free because no class column was found: 2-D (classification)
        logits are then an error naming ``label_column=`` and ``label_free=True``.

    Examples
    --------
    >>> loss = PerSampleLoss()
    >>> logits = torch.zeros(1, 3, 4); logits[0, 0, 2] = 5.0   # position 0 predicts token 2
    >>> batch = {"labels": torch.tensor([[2, 2, 3]])}
    >>> own = torch.nn.functional.cross_entropy(logits[0, :-1], batch["labels"][0, 1:])
    >>> round(loss({"logits": logits, "loss": own}, batch).item(), 4) == round(own.item(), 4)
    True
    >>> loss.resolved
    'causal_lm'
    """

    def __init__(self, fn=None, *, loss_type: str = "auto", label_column: str | None = None,
                 classless: bool = False):
        if loss_type not in LOSS_TYPES:
            raise ValueError(f"loss_type == {loss_type!r}, must be one of {list(LOSS_TYPES)}.")
        self.fn = fn
        self.loss_type = loss_type
        self.label_column = label_column
        self.classless = classless
        self.resolved: str | None = None if loss_type == "auto" else loss_type

    def __call__(self, outputs, batch, model=None) -> torch.Tensor:
        size = batch_size_of(batch)
        if self.fn is not None:
            losses = self.fn(outputs, batch)
        else:
            losses = self._default(outputs, self.with_labels(batch), model, size)
        if not isinstance(losses, torch.Tensor):
            losses = torch.as_tensor(losses)
        if losses.ndim != 1 or (size is not None and losses.shape[0] != size):
            raise ValueError(
                f"per_sample_loss returned shape {tuple(losses.shape)} for a batch of {size} "
                f"samples: return one loss per sample (reduction='none'), shape (B,)."
            )
        return losses.detach().float()

    def with_labels(self, batch):
        """The batch with a custom label column also under ``labels``."""
        col = self.label_column
        if (col and isinstance(batch, Mapping) and col in batch
                and not any(k in batch for k in (LABELS_COPY_KEY, *LABEL_KEYS))):
            batch = {**batch, "labels": batch[col]}
        return batch

    def _default(self, outputs, batch, model, size):
        if _is_fused_output(outputs):
            return default_per_sample_loss(outputs, batch, model=model, num_samples=size)
        logits = find_logits(outputs)
        if logits.ndim == 2 and self.classless and self.loss_type in ("auto", "classification"):
            raise ValueError(
                "The model returns classification logits of shape "
                f"{tuple(logits.shape)}, but the training set has no class column, so the "
                "recording went label-free. Name the class column: label_column='<column with "
                "the class ids>' (Algorithm 1, per class), or pass label_free=True to score all "
                "samples against one query trajectory on purpose."
            )
        if self.loss_type != "auto" or logits.ndim != 3:
            return default_per_sample_loss(outputs, batch, loss_type=self.loss_type, model=model,
                                           num_samples=size)
        labels = find_labels(batch)
        position_ids = batch.get("position_ids") if isinstance(batch, Mapping) else None

        def run(kind):
            return per_sequence_token_loss(logits, labels, shift=_shift_for(kind),
                                           position_ids=position_ids, num_sequences=size,
                                           return_counts=True)

        own = _own_loss(outputs)
        # A Trainer step passes num_items_in_batch (the label tokens of every micro-batch of the
        # optimisation step, on every process): the model's loss is then its sum over that.
        scale = batch.get("num_items_in_batch") if isinstance(batch, Mapping) else None
        scale = float(scale) if isinstance(scale, (int, float, torch.Tensor)) else None

        def batch_loss(result):
            return _weighted_mean(*result, denominator=scale)

        if self.resolved is None and own is None:
            self.resolved = _structural_loss_type(logits, model)
        if self.resolved is not None:
            result = run(self.resolved)
            if own is not None and not _close(batch_loss(result), own):
                self._mismatch(own, {self.resolved: batch_loss(result)}, model)
            return result[0]
        # First batch: the shift that reproduces the model's own loss.
        structural = _structural_loss_type(logits, model)
        no_shift = structural if structural in ("seq2seq", "token") else "seq2seq"
        results = {"causal_lm": run("causal_lm"), no_shift: run(no_shift)}
        means = {kind: batch_loss(value) for kind, value in results.items()}
        matching = [kind for kind, mean in means.items() if _close(mean, own)]
        if not matching:
            self._mismatch(own, means, model)
        self.resolved = structural if len(matching) > 1 and structural in matching else matching[0]
        return results[self.resolved][0]

    @staticmethod
    def _mismatch(own: float, means: dict, model) -> None:
        got = ", ".join(f"{_describe(kind)} {mean:.4f}" for kind, mean in means.items())
        raise ValueError(
            f"The model's own loss of this batch is {own:.4f}, but the per-sample token losses "
            f"average to {got} ({type(base_model_of(model)).__name__}): the recorded losses "
            f"would not be the loss the model trains with. Pass loss_type= ('causal_lm', "
            f"'seq2seq' or 'token') if the model adds other terms to its loss (e.g. a router "
            f"loss), or per_sample_loss=fn(outputs, batch) -> Tensor[B]."
        )


def _own_loss(outputs) -> float | None:
    loss = outputs.get("loss") if isinstance(outputs, Mapping) else getattr(outputs, "loss", None)
    if isinstance(loss, torch.Tensor) and loss.numel() == 1 and torch.isfinite(loss).all():
        return float(loss.detach().float())
    return None


def _weighted_mean(mean: torch.Tensor, count: torch.Tensor, denominator=None) -> float:
    keep = count > 0
    if not bool(keep.any()):
        return math.nan
    total = (mean[keep].double() * count[keep]).sum()
    return float(total / (count[keep].sum() if denominator is None else denominator))


def _close(a: float, b: float) -> bool:
    return math.isfinite(a) and abs(a - b) <= 1e-4 + 1e-3 * abs(b)


def _describe(kind: str) -> str:
    return {"causal_lm": "next-token (causal_lm)", "seq2seq": "position-wise (seq2seq/token)",
            "token": "position-wise (token)"}.get(kind, kind)


def batch_size_of(batch) -> int | None:
    """The number of samples in a collated batch (from its index, labels or first tensor).

    Examples
    --------
    >>> batch_size_of({"x": torch.zeros(3, 2), "labels": torch.tensor([0, 1, 1])})
    3
    """
    if isinstance(batch, Mapping):
        for key in ("cld_hf_index", *LABEL_KEYS):
            value = batch.get(key)
            if isinstance(value, torch.Tensor) and value.ndim >= 1:
                return int(value.shape[0])
        for value in batch.values():
            if isinstance(value, torch.Tensor) and value.ndim >= 1:
                return int(value.shape[0])
    return None
