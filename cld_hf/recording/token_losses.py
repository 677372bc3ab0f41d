"""Token losses of language models, one value per sequence: the mean cross entropy of the
tokens a model trains on (``labels != -100``), shifted for causal LMs, position-wise for
seq2seq targets and masked LMs, padding-free batches split by ``position_ids``, and TRL's fused
LM head read directly. Re-exported by :mod:`.losses`, which picks among them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
import torch.nn.functional as F

__all__ = ["per_sequence_token_loss", "sequence_means", "fused_per_sequence_loss"]


def per_sequence_token_loss(
    logits: torch.Tensor, labels: torch.Tensor, *, shift: bool = False, ignore_index: int = -100,
    position_ids: torch.Tensor | None = None, num_sequences: int | None = None,
    return_counts: bool = False,
):
    """Mean token cross entropy of each sequence, ignoring ``ignore_index`` labels, in float32.

    ``shift=True`` predicts token ``t + 1`` from position ``t`` (causal language models, whose
    ``labels`` are the inputs); ``shift=False`` compares position by position (seq2seq targets,
    masked LM, token classification). A sequence without any target token gets ``nan`` (the
    recorder reports it).

    Padding-free batches (TRL's ``padding_free=True``, packed rows) hold ``num_sequences``
    sequences flattened into one row of shape ``(1, L)``: pass ``position_ids`` (a sequence
    starts where its position is 0) and ``num_sequences``, and each sequence gets its own mean
    (tokens after the last sequence, e.g. ``pad_to_multiple_of`` padding, must be ignored ones).

    Parameters
    ----------
    logits : (B, L, V) tensor
    labels : (B, L) tensor of token ids, ``ignore_index`` where no loss is taken
    shift : bool, default False
    ignore_index : int, default -100
    position_ids : (1, L) tensor, optional
    num_sequences : int, optional
        Sequences in the batch (default: ``B``).
    return_counts : bool, default False
        Also return the number of target tokens of each sequence.

    Examples
    --------
    >>> logits = torch.zeros(1, 3, 4)           # uniform over 4 tokens: loss log(4) per token
    >>> round(per_sequence_token_loss(logits, torch.tensor([[1, -100, 2]])).item(), 4)
    1.3863
    >>> per_sequence_token_loss(logits, torch.tensor([[-100, -100, -100]])).isnan().item()
    True

    Two sequences of lengths 2 and 1 flattened into one row:

    >>> loss, count = per_sequence_token_loss(
    ...     logits, torch.tensor([[1, 2, 3]]), position_ids=torch.tensor([[0, 1, 0]]),
    ...     num_sequences=2, return_counts=True)
    >>> loss.shape, count.tolist()
    (torch.Size([2]), [2, 1])
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
    # In row chunks of at most ~64M logits: the float32 copy of a language model's (B, L, V)
    # logits would otherwise double the sweep's memory.
    rows = max(1, (1 << 26) // max(1, length * v))
    token = torch.cat([F.cross_entropy(
        logits[i:i + rows].reshape(-1, v).float(), labels[i:i + rows].reshape(-1),
        reduction="none", ignore_index=ignore_index).reshape(-1, length)
        for i in range(0, b, rows)]) if b else logits.new_zeros(0, length, dtype=torch.float32)
    return sequence_means(token, labels != ignore_index, shifted=shift, position_ids=position_ids,
                          num_sequences=num_sequences, return_counts=return_counts)


def sequence_means(token_loss: torch.Tensor, mask: torch.Tensor, *, shifted: bool = False,
                   position_ids: torch.Tensor | None = None, num_sequences: int | None = None,
                   return_counts: bool = False):
    """Mean of ``token_loss`` over the ``mask`` tokens of each sequence (``nan`` for none).

    ``token_loss`` and ``mask`` have shape ``(B, L)``, one row per sequence, or ``(1, L)`` for
    ``num_sequences`` sequences flattened into one row, split where ``position_ids`` is 0
    (``shifted=True``: column ``t`` scores the token at position ``t + 1``, as the next-token
    losses of a causal language model do).

    Examples
    --------
    >>> token = torch.tensor([[1.0, 3.0, 5.0, 7.0]])
    >>> mask = torch.tensor([[True, True, False, True]])
    >>> sequence_means(token, mask).tolist()
    [3.6666667461395264]
    >>> sequence_means(token, mask, position_ids=torch.tensor([[0, 1, 0, 1]]),
    ...                num_sequences=2).tolist()
    [2.0, 7.0]
    """
    token_loss = token_loss.float() * mask
    rows = token_loss.shape[0]
    n = rows if num_sequences is None else int(num_sequences)
    if n == rows:
        total, count = token_loss.sum(dim=1), mask.sum(dim=1)
    else:
        if rows != 1 or position_ids is None:
            raise ValueError(
                f"The batch holds {n} samples but its outputs have {rows} row(s) and no "
                f"position_ids to split them: a padding-free (flattened) batch needs the "
                f"position_ids of its tokens (each sequence starts at position 0). Keep "
                f"position_ids in the batch, or use a padding collator."
            )
        positions = position_ids.reshape(-1).to(token_loss.device)
        segment = torch.cumsum((positions == 0).long(), dim=0) - 1
        if shifted:
            segment = segment[1:]
        segment = segment[: token_loss.shape[1]].clamp(min=0)
        found = int(segment.max()) + 1 if segment.numel() else 0
        size = max(found, n)
        total = torch.zeros(size, dtype=token_loss.dtype, device=token_loss.device)
        count = torch.zeros(size, dtype=torch.long, device=token_loss.device)
        total.index_add_(0, segment, token_loss[0])
        count.index_add_(0, segment, mask[0].long())
        if found < n or bool(count[n:].any()):
            raise ValueError(
                f"The padding-free batch holds {n} samples, but its position_ids start "
                f"{found} sequences with target tokens {count.tolist()[:10]}: each sample must be "
                f"one sequence starting at position 0 (packed rows of several documents cannot "
                f"be split into samples; record on unpacked documents, packing=False)."
            )
        total, count = total[:n], count[:n]
    mean = torch.where(count > 0, total / count.clamp(min=1), torch.full_like(total, math.nan))
    return (mean, count) if return_counts else mean


def _is_fused_output(outputs) -> bool:
    get = outputs.get if isinstance(outputs, Mapping) else lambda k: getattr(outputs, k, None)
    return (isinstance(get("log_probs"), torch.Tensor) and isinstance(get("label_mask"),
                                                                      torch.Tensor)
            and get("logits") is None)


def fused_per_sequence_loss(outputs, *, position_ids=None, num_sequences=None) -> torch.Tensor:
    """Per-sequence mean loss from the per-token ``log_probs`` and ``label_mask`` of TRL's fused
    LM head (``model(..., fused_lm_head=True)``, what ``SFTTrainer`` trains with): already the
    next-token log-probabilities of the trained tokens, so nothing is recomputed.

    Examples
    --------
    >>> out = {"log_probs": torch.tensor([[-1.0, -3.0, 0.0]]),
    ...        "label_mask": torch.tensor([[True, True, False]])}
    >>> fused_per_sequence_loss(out).tolist()
    [2.0]
    """
    get = outputs.get if isinstance(outputs, Mapping) else lambda k: getattr(outputs, k)
    return sequence_means(-get("log_probs").detach(), get("label_mask"), shifted=True,
                          position_ids=position_ids, num_sequences=num_sequences)
