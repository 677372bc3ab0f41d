"""Per-sample losses and the signals the baselines read, from a model's outputs.

One loss per sample, never a batch mean: cross entropy for classification (label smoothing
ignored), the mean token loss of each sequence for causal and masked language models (ignoring
``-100``), or a user's ``per_sample_loss(outputs, batch) -> Tensor[B]``. The training-dynamics
signals (:func:`classification_signals`) come from the same logits, and the penultimate features
(``embeddings``) from a forward pre-hook on the classifier head (:class:`FeatureCatcher`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Literal

import torch
import torch.nn.functional as F

from .config import LOSS_TYPES

__all__ = [
    "LABEL_KEYS",
    "LABELS_COPY_KEY",
    "per_sample_cross_entropy",
    "per_sequence_token_loss",
    "default_per_sample_loss",
    "find_logits",
    "find_labels",
    "is_causal_lm",
    "classification_signals",
    "find_feature_module",
    "FeatureCatcher",
    "unwrap_model",
    "batch_size_of",
]

LossType = Literal["auto", "classification", "causal_lm", "token"]

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


def per_sequence_token_loss(
    logits: torch.Tensor, labels: torch.Tensor, *, shift: bool = False, ignore_index: int = -100
) -> torch.Tensor:
    """Mean token cross entropy of each sequence, ignoring ``ignore_index`` labels, in float32.

    ``shift=True`` predicts token ``t + 1`` from position ``t`` (causal language models, whose
    ``labels`` are the inputs); ``shift=False`` compares position by position (masked LM, token
    classification). A sequence without any target token gets ``nan`` (the recorder reports it).

    Examples
    --------
    >>> logits = torch.zeros(1, 3, 4)           # uniform over 4 tokens: loss log(4) per token
    >>> round(per_sequence_token_loss(logits, torch.tensor([[1, -100, 2]])).item(), 4)
    1.3863
    >>> per_sequence_token_loss(logits, torch.tensor([[-100, -100, -100]])).isnan().item()
    True
    """
    if logits.ndim != 3:
        raise ValueError(
            f"logits must have shape (batch, length, vocab) for a token loss, got "
            f"{tuple(logits.shape)}. Use loss_type='classification' for (batch, classes)."
        )
    logits = logits.detach()
    labels = labels.long()
    if shift:
        logits = logits[:, :-1, :]
        labels = labels[:, 1:]
    if logits.shape[:2] != labels.shape:
        raise ValueError(
            f"labels of shape {tuple(labels.shape)} do not match logits of shape "
            f"{tuple(logits.shape)}: pass one label per token (-100 for tokens to ignore)."
        )
    b, length, v = logits.shape
    token = F.cross_entropy(
        logits.reshape(b * length, v).float(), labels.reshape(-1), reduction="none",
        ignore_index=ignore_index,
    ).reshape(b, length)
    count = (labels != ignore_index).sum(dim=1)
    total = token.sum(dim=1)
    return torch.where(count > 0, total / count.clamp(min=1), torch.full_like(total, math.nan))


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


def is_causal_lm(model) -> bool:
    """Whether ``model`` is a causal language model (a ``*ForCausalLM`` / ``*LMHeadModel``).

    Examples
    --------
    >>> is_causal_lm(torch.nn.Linear(2, 2))
    False
    """
    if model is None:
        return False
    name = type(model).__name__
    return name.endswith("ForCausalLM") or name.endswith("LMHeadModel")


def default_per_sample_loss(outputs, batch, *, loss_type: LossType = "auto", model=None):
    """One loss per sample from a model's ``logits`` and the batch's labels.

    Parameters
    ----------
    outputs : Mapping or ModelOutput
        What the model returned; must hold ``logits``.
    batch : Mapping
        The collated batch; labels are found as ``labels``, ``label`` or ``label_ids``.
    loss_type : {"auto", "classification", "causal_lm", "token"}, default "auto"
        ``"classification"``: cross entropy of ``(B, C)`` logits. ``"causal_lm"``: mean loss of
        the next-token predictions of each sequence. ``"token"``: mean loss over the labelled
        positions (masked LM, token classification). ``"auto"`` picks classification for 2-D
        logits and, for 3-D logits, causal LM when ``model`` is a ``*ForCausalLM`` /
        ``*LMHeadModel``, else token.
    model : torch.nn.Module, optional
        Only used by ``"auto"`` to recognise a causal language model.

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
    logits = find_logits(outputs)
    labels = find_labels(batch)
    if loss_type == "auto":
        if logits.ndim == 2:
            loss_type = "classification"
        elif logits.ndim == 3:
            loss_type = "causal_lm" if is_causal_lm(model) else "token"
        else:
            raise ValueError(
                f"Cannot infer the loss from logits of shape {tuple(logits.shape)}: pass "
                f"loss_type= or per_sample_loss=fn(outputs, batch) -> Tensor[B]."
            )
    if loss_type == "classification":
        return per_sample_cross_entropy(logits, labels)
    return per_sequence_token_loss(logits, labels, shift=loss_type == "causal_lm")


def classification_signals(logits: torch.Tensor, labels: torch.Tensor, names) -> dict:
    """Per-sample training-dynamics signals of a batch, from its ``(B, C)`` logits.

    Computed in float32 from the same logits as the loss (no extra forward):

    - ``correct``: ``argmax(logits) == label`` (bool; ties go to the lower class, as
      ``torch.argmax``);
    - ``true_prob``: ``softmax(logits)[label]``;
    - ``margin``: ``logits[label] - max_{c != label} logits[c]`` (AUM's margin);
    - ``el2n``: ``||softmax(logits) - onehot(label)||_2``;
    - ``probs``: ``softmax(logits)``, shape ``(B, C)``.

    Parameters
    ----------
    logits : torch.Tensor of shape (B, C)
    labels : int torch.Tensor of shape (B,)
    names : iterable of str
        Which of the signals above to return.

    Returns
    -------
    dict of str to torch.Tensor (detached, on the logits' device).

    Examples
    --------
    >>> logits = torch.tensor([[2.0, 0.0, 0.0], [1.0, 3.0, 0.0]])
    >>> out = classification_signals(logits, torch.tensor([0, 0]), ["correct", "margin"])
    >>> out["correct"].tolist(), out["margin"].tolist()
    ([True, False], [2.0, -2.0])
    """
    names = list(names)
    unknown = sorted(set(names) - {"correct", "true_prob", "margin", "el2n", "probs"})
    if unknown:
        raise ValueError(
            f"names contains {unknown}; the per-batch signals are 'correct', 'true_prob', "
            f"'margin', 'el2n' and 'probs'."
        )
    if logits.ndim != 2:
        raise ValueError(
            f"Training-dynamics signals need classification logits of shape (batch, classes), "
            f"got {tuple(logits.shape)}. Record signals only for classification models, or "
            f"record the loss alone (signals=())."
        )
    z = logits.detach().float()
    y = labels.detach().reshape(-1).long().to(z.device)
    num_classes = z.shape[1]
    if y.numel() != z.shape[0]:
        raise ValueError(
            f"{y.numel()} labels for a batch of {z.shape[0]} logits: pass one class id per sample."
        )
    if y.numel() and (int(y.min()) < 0 or int(y.max()) >= num_classes):
        raise ValueError(
            f"labels must be class ids in [0, {num_classes - 1}] to record signals (the model has "
            f"{num_classes} outputs); got values in [{int(y.min())}, {int(y.max())}]."
        )
    out = {}
    rows = torch.arange(len(y), device=z.device)
    p = torch.softmax(z, dim=1) if {"true_prob", "el2n", "probs"} & set(names) else None
    for name in names:
        if name == "correct":
            out[name] = z.argmax(dim=1) == y
        elif name == "true_prob":
            out[name] = p[rows, y]
        elif name == "margin":
            other = z.masked_fill(F.one_hot(y, num_classes).bool(), -math.inf)
            out[name] = z[rows, y] - other.max(dim=1).values
        elif name == "el2n":
            out[name] = torch.linalg.vector_norm(p - F.one_hot(y, num_classes).float(), dim=1)
        else:
            out[name] = p
    return out


def find_feature_module(model, *, num_classes: int | None = None, feature_module=None):
    """The module whose *input* is the penultimate feature vector (the ``embeddings`` signal).

    The rule: the **last** ``torch.nn.Linear`` of ``model.named_modules()`` (registration order)
    whose ``out_features`` equals ``num_classes`` (any ``Linear`` when ``num_classes`` is None),
    i.e. the classifier head of Hugging Face models (``classifier``, ``fc``, ``head``) and of
    plain ``nn.Sequential`` stacks. Its input, flattened to ``(B, D)``, is captured with a forward
    pre-hook during the sweep. When the rule picks the wrong module (a head of several layers
    whose last one is not the classifier, or no ``Linear`` at all), name it: ``feature_module=``
    the name in ``model.named_modules()`` (e.g. ``"classifier.1"``), or the module itself.

    Returns
    -------
    (name, module)

    Examples
    --------
    >>> net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    >>> find_feature_module(net, num_classes=3)[0]
    '2'
    >>> find_feature_module(net, feature_module="0")[0]
    '0'
    """
    model = unwrap_model(model)
    names = dict(model.named_modules())
    if feature_module is not None:
        if isinstance(feature_module, torch.nn.Module):
            for name, module in names.items():
                if module is feature_module:
                    return name, module
            raise ValueError(
                f"feature_module == {type(feature_module).__name__} is not a submodule of the "
                f"model; pass one of model.named_modules(), or its name."
            )
        if feature_module not in names:
            some = [n for n in names if n][-10:]
            raise ValueError(
                f"feature_module == {feature_module!r} is not a module of the model; names end "
                f"with {some}. Pass the name of the classifier's last layer (its input is taken "
                f"as the embedding)."
            )
        return feature_module, names[feature_module]
    found = None
    for name, module in names.items():
        if isinstance(module, torch.nn.Linear) and (
            num_classes is None or module.out_features == num_classes
        ):
            found = (name, module)
    if found is None:
        raise ValueError(
            f"Cannot find the classifier head: the model has no torch.nn.Linear with "
            f"out_features == {num_classes} (the number of logits). Pass feature_module= the "
            f"name of the module whose input is the penultimate feature vector."
        )
    return found


class FeatureCatcher:
    """Forward pre-hooks that keep the last input of the feature module, flattened to ``(B, D)``.

    Without ``feature_module``, every ``Linear`` is hooked for the first batch; once the logits
    give the number of classes, :func:`find_feature_module`'s rule picks one and the other hooks
    go, so no forward pass is repeated. :meth:`remove` takes the hooks off the model.

    Examples
    --------
    >>> net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    >>> catcher = FeatureCatcher(net)
    >>> logits = net(torch.ones(5, 4))
    >>> catcher.take(batch_size=5, num_classes=3).shape   # the input of the last Linear
    torch.Size([5, 8])
    >>> catcher.remove()
    """

    def __init__(self, model, feature_module=None):
        self.model = model
        self.name = None
        self._values: dict[str, torch.Tensor] = {}
        self._handles = {}
        if feature_module is not None:
            self.name, module = find_feature_module(model, feature_module=feature_module)
            self._hook_module(self.name, module)
        else:
            for name, module in model.named_modules():
                if isinstance(module, torch.nn.Linear):
                    self._hook_module(name, module)

    def _hook_module(self, name, module):
        def hook(mod, args):
            if args and isinstance(args[0], torch.Tensor):
                self._values[name] = args[0].detach()
            return None

        self._handles[name] = module.register_forward_pre_hook(hook)

    def take(self, batch_size: int, num_classes: int) -> torch.Tensor:
        if self.name is None:
            self.name, _ = find_feature_module(self.model, num_classes=num_classes)
            for name in [n for n in self._handles if n != self.name]:
                self._handles.pop(name).remove()
        name = self.name
        value = self._values.pop(name, None)
        self._values.clear()
        if value is None:
            raise RuntimeError(
                f"The feature module {name!r} did not run in the forward pass, so there are no "
                f"embeddings. Pass feature_module= the name of the classifier's last layer."
            )
        value = value.float().reshape(value.shape[0], -1) if value.ndim != 2 else value.float()
        if value.shape[0] != batch_size:
            raise RuntimeError(
                f"The input of the feature module {name!r} has {value.shape[0]} rows for a batch "
                f"of {batch_size} samples (shape {tuple(value.shape)}): it is not per-sample. "
                f"Pass feature_module= the classifier's last layer."
            )
        return value

    def remove(self) -> None:
        for handle in self._handles.values():
            handle.remove()
        self._handles = {}


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
