"""Input-gradient probes of the trained proxy, for SloCurv and BoundarySet-CCS (run once, at the end).

Unlike the loss sweeps, these need gradients with respect to the model's *input*, so they run
with autograd on a copy of each batch's input tensor (the model's parameters get no gradient and
are not changed; the model is in eval mode, as for the sweeps):

- :func:`input_curvature` (the ``curvature`` signal, SloCurv, seed E.3.1): for ``R`` Rademacher
  probes ``v_r`` (entries +-1, from a seeded generator of its own), the norm of
  ``grad_x CE(f(x + h v_r), y) - grad_x CE(f(x), y)`` per sample: ``R + 1`` backward passes.
- :func:`boundary_steps` (the ``boundary_steps`` signal, BoundarySet-CCS, seed E.2.4): the number
  of steps ``x <- x + alpha sign(grad_x CE(f(x), y))`` after which the prediction is no longer
  ``y``; 0 when the proxy already misclassifies ``x``, ``k_max`` when it never flips: at most
  ``k_max`` backward passes.

Both read batches through the same :class:`~cld_hf.recording.indexing.IndexedDataset` and
collator as the sweeps and return ``(index, values)`` for this process's shard, to be gathered
and placed by sample index like a loss.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .indexing import INDEX_KEY, IndexCollator, IndexedDataset, forward_parameters
from .losses import find_labels, find_logits, unwrap_model
from .sweep import preserved_rng

__all__ = ["input_curvature", "boundary_steps", "find_input_key"]


def find_input_key(batch, accepted, input_key=None) -> str:
    """The batch key of the model's floating-point input tensor (e.g. ``pixel_values``).

    Examples
    --------
    >>> find_input_key({"pixel_values": torch.zeros(2, 3), "labels": torch.tensor([0, 1])}, None)
    'pixel_values'
    """
    if input_key is not None:
        if input_key not in batch:
            raise ValueError(f"input_key == {input_key!r} is not in the batch (keys "
                             f"{sorted(batch)}).")
        return input_key
    for key, value in batch.items():
        if (isinstance(value, torch.Tensor) and value.is_floating_point()
                and (accepted is None or key in accepted) and key != "labels"):
            return key
    raise ValueError(
        f"The input-gradient signals (curvature, boundary_steps) need a floating-point input "
        f"tensor (e.g. pixel_values); the batch has {sorted(batch)} (token ids have no input "
        f"gradient). Record them for image models only, or name it with input_key=."
    )


def _batches(model, dataset, shard, *, collate_fn, columns, batch_size, device, with_labels):
    from torch.utils.data import DataLoader

    loader = DataLoader(IndexedDataset(dataset), batch_size=batch_size, sampler=shard,
                        shuffle=False, collate_fn=IndexCollator(collate_fn, columns=columns))
    accepted = forward_parameters(model)
    for batch in loader:
        index = batch.pop(INDEX_KEY)
        batch = {k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in batch.items()}
        labels = find_labels(with_labels(batch)).to(device).long()
        inputs = batch if accepted is None else {k: v for k, v in batch.items() if k in accepted}
        inputs = {k: v for k, v in inputs.items() if k not in ("labels", "label", "label_ids")}
        yield index, inputs, labels, accepted


def _probe_batches(model, dataset, shard, *, device, input_key, **loader):
    """Eval mode, torch's RNG preserved, the parameters untouched: yield
    ``(net, index, inputs, key, x, labels)`` per batch, with ``x`` the float input tensor."""
    net = unwrap_model(model)
    device = torch.device(device or next(net.parameters()).device)
    was_training = net.training
    try:
        with preserved_rng(device):
            net.eval()
            for index, inputs, labels, accepted in _batches(net, dataset, shard, device=device,
                                                            **loader):
                key = find_input_key(inputs, accepted, input_key)
                yield net, index, inputs, key, inputs[key].float(), labels
    finally:
        net.train(was_training)
        net.zero_grad(set_to_none=True)


def _input_grad(net, inputs, key, x, labels):
    x = x.detach().requires_grad_(True)
    logits = find_logits(net(**{**inputs, key: x})).float()
    loss = F.cross_entropy(logits, labels, reduction="sum")  # per-sample gradients: independent
    (grad,) = torch.autograd.grad(loss, x)
    return grad, logits.detach()


def input_curvature(model, dataset, shard, real, *, num_probes: int = 10, h: float = 1e-3,
                    seed: int = 0, collate_fn=None, columns=None, batch_size: int = 64,
                    device=None, input_key=None, with_labels=lambda b: b):
    """Per-sample input-loss curvature of ``model`` (the ``curvature`` signal, ``(B, R)``).

    Returns ``(index, values)`` for the rows ``shard`` (index ``-1`` past ``real``: padding).

    Examples
    --------
    >>> from datasets import Dataset
    >>> class Net(torch.nn.Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.lin = torch.nn.Linear(2, 2)
    ...     def forward(self, pixel_values, labels=None):
    ...         return {"logits": self.lin(pixel_values) ** 2}
    >>> ds = Dataset.from_dict({"pixel_values": [[0.0, 1.0], [1.0, 0.5]], "label": [0, 1]})
    >>> idx, curv = input_curvature(Net(), ds.with_format("torch"), [0, 1], 2, num_probes=3)
    >>> idx.tolist(), curv.shape
    ([0, 1], (2, 3))
    """
    gen = torch.Generator(device="cpu").manual_seed(int(seed))
    out_index, out_values = [], []
    for net, index, inputs, key, x, labels in _probe_batches(
            model, dataset, shard, device=device, input_key=input_key, collate_fn=collate_fn,
            columns=columns, batch_size=batch_size, with_labels=with_labels):
        base, _ = _input_grad(net, inputs, key, x, labels)
        values = []
        for _ in range(num_probes):
            v = torch.randint(0, 2, x.shape, generator=gen).to(x.device, x.dtype) * 2 - 1
            moved, _ = _input_grad(net, inputs, key, x + h * v, labels)
            values.append(torch.linalg.vector_norm((moved - base).flatten(1), dim=1))
        out_index.append(index)
        out_values.append(torch.stack(values, dim=1).cpu())
    idx = torch.cat(out_index).numpy()
    idx[real:] = -1
    return idx, torch.cat(out_values).numpy().astype(np.float32)


def boundary_steps(model, dataset, shard, real, *, alpha: float = 1e-4, k_max: int = 50,
                   collate_fn=None, columns=None, batch_size: int = 64, device=None,
                   input_key=None, with_labels=lambda b: b):
    """PGD steps until the prediction of ``model`` flips (the ``boundary_steps`` signal).

    Returns ``(index, steps)`` (int64) for the rows ``shard`` (index ``-1`` past ``real``).

    Examples
    --------
    >>> from datasets import Dataset
    >>> class Net(torch.nn.Module):
    ...     def forward(self, pixel_values, labels=None):
    ...         return {"logits": torch.stack([pixel_values[:, 0], -pixel_values[:, 0]], 1)}
    >>> net = Net(); net.register_parameter("w", torch.nn.Parameter(torch.zeros(1)))
    >>> ds = Dataset.from_dict({"pixel_values": [[0.3], [-0.1]], "label": [0, 0]})
    >>> idx, steps = boundary_steps(net, ds.with_format("torch"), [0, 1], 2, alpha=0.1, k_max=10)
    >>> steps.tolist()          # 0.3 crosses 0 after 3 steps of 0.1; -0.1 is misclassified
    [4, 0]
    """
    out_index, out_steps = [], []
    for net, index, inputs, key, x, labels in _probe_batches(
            model, dataset, shard, device=device, input_key=input_key, collate_fn=collate_fn,
            columns=columns, batch_size=batch_size, with_labels=with_labels):
        with torch.no_grad():
            pred = find_logits(net(**inputs)).argmax(dim=1)
        steps = torch.where(pred != labels, 0, k_max).to(torch.int64)
        active = pred == labels
        for k in range(1, k_max + 1):
            if not active.any():
                break
            grad, _ = _input_grad(net, inputs, key, x, labels)
            x = (x + alpha * grad.sign()).detach()
            with torch.no_grad():
                flipped = find_logits(net(**{**inputs, key: x})).argmax(dim=1) != labels
            steps[active & flipped] = k
            active &= ~flipped
        out_index.append(index)
        out_steps.append(steps.cpu())
    idx = torch.cat(out_index).numpy()
    idx[real:] = -1
    return idx, torch.cat(out_steps).numpy()
