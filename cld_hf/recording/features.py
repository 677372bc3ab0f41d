"""The signals the baselines read, from the same forward pass as the loss.

The training-dynamics signals (:func:`classification_signals`: correctness, margin, true-class
probability, EL2N, ...) come from a batch's ``(B, C)`` logits; the penultimate features
(``embeddings``) from a forward pre-hook on the classifier head (:class:`FeatureCatcher`, the
head found by :func:`find_feature_module`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .losses import unwrap_model

__all__ = ["classification_signals", "find_feature_module", "FeatureCatcher"]


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
