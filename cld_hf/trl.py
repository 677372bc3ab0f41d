"""TRL adapters: record CLD trajectories of a ``trl.SFTTrainer`` run, one loss per document.

``SFTTrainer`` prepares its ``train_dataset`` itself in ``__init__`` (chat template or EOS,
tokenisation, completion / assistant masks as ``-100`` labels, truncation to ``max_length``,
optionally packing), so a query set given in the same raw form must go through the same
preparation. :func:`sft_documents` runs the trainer's own preparation, the one
``SFTTrainer.evaluate`` applies to an evaluation set passed at call time (nothing of TRL's code
is copied here), with packing off: one prepared row per document, in the order of the given
dataset. :func:`check_sft_recording` says which trainer settings can be recorded by document.

With ``packing=True`` the trainer's training rows are packs of several documents, so the
recording sweeps the documents themselves (prepared the same way, unpacked): a document's loss
is the mean loss of the tokens the trainer trains on, which under TRL's document-aware packing
(``position_ids`` restart at every document, ``use_cache=False``) is the loss the document has
inside its pack.

``trl`` is imported only when a TRL trainer is handed in: importing this module needs no TRL.
"""

from __future__ import annotations

import logging
import sys

import numpy as np

from ._validation import MAX_NAMED

logger = logging.getLogger(__name__)

__all__ = ["DOCUMENT_COLUMN", "is_sft_trainer", "sft_documents", "check_sft_recording",
           "is_packed"]

DOCUMENT_COLUMN = "cld_hf_document"
"""Temporary column carrying each document's row through TRL's preparation (removed after)."""


def is_sft_trainer(trainer) -> bool:
    """Whether ``trainer`` is a ``trl.SFTTrainer`` (without importing TRL otherwise).

    Examples
    --------
    >>> is_sft_trainer(None)
    False
    """
    trl = sys.modules.get("trl")
    if trl is None or trainer is None:
        return False
    try:
        from trl import SFTTrainer
    except ImportError:  # pragma: no cover - an incomplete TRL install
        return False
    return isinstance(trainer, SFTTrainer)


def is_packed(dataset) -> bool:
    """Whether the rows of ``dataset`` are packs of several documents (TRL's ``pack_dataset``
    adds ``seq_lengths``: the length of each document in the row).

    Examples
    --------
    >>> from datasets import Dataset
    >>> is_packed(Dataset.from_dict({"input_ids": [[1, 2, 3]], "seq_lengths": [[2, 1]]}))
    True
    """
    return "seq_lengths" in (getattr(dataset, "column_names", None) or ())


def check_sft_recording(args, *, mode: str, documents_given: bool) -> None:
    """Refuse, with the fix, the ``SFTConfig`` settings under which the training rows cannot be
    recorded as documents.

    - ``packing_strategy="wrapped"``: documents are cut anywhere, so no per-document loss
      exists; use ``"bfd"`` (TRL's default) or ``packing=False``.
    - ``mode="train_pass"`` with ``packing=True``: the training forwards see packs, whose
      documents TRL does not identify; use ``mode="sweep"`` (the default) or ``packing=False``.
    - ``mode="train_pass"`` with ``shuffle_dataset=True``: the training rows are no longer in the
      order of the documents; set ``shuffle_dataset=False`` (the sampler still shuffles every
      epoch) or use ``mode="sweep"``.
    - ``mode="sweep"`` with packing or ``shuffle_dataset=True`` needs the documents
      (``CLDCallback(query, trainer=trainer, train_dataset=train_docs)``).
    - ``packing=True`` with ``truncation_mode="keep_end"``: packing keeps the start of a long
      document, the recording's unpacked documents would keep its end; use ``"keep_start"``.
    - ``packing_strategy="bfd_split"`` (a warning): a document longer than ``max_length`` is
      recorded by its first ``max_length`` tokens, the document as prepared without packing.

    Examples
    --------
    >>> from types import SimpleNamespace
    >>> args = SimpleNamespace(packing=True, packing_strategy="bfd", shuffle_dataset=False)
    >>> check_sft_recording(args, mode="sweep", documents_given=True)
    >>> check_sft_recording(args, mode="train_pass", documents_given=True)
    Traceback (most recent call last):
    ...
    ValueError: mode='train_pass' takes the training losses from the training forwards, but ...
    """
    packing = bool(getattr(args, "packing", False))
    strategy = getattr(args, "packing_strategy", "bfd")
    shuffled = bool(getattr(args, "shuffle_dataset", False))
    if packing and strategy == "wrapped":
        raise ValueError(
            "SFTConfig(packing=True, packing_strategy='wrapped') cuts documents anywhere and fills "
            "each row with pieces of several, so there is no per-document loss to record. Use "
            "packing_strategy='bfd' (TRL's default: documents stay whole) or packing=False."
        )
    if packing and getattr(args, "truncation_mode", "keep_start") == "keep_end":
        raise ValueError(
            "SFTConfig(packing=True, truncation_mode='keep_end'): TRL's packing keeps the start of "
            "a document longer than max_length (truncation_mode applies only without packing), "
            "so the documents prepared for the recording would end differently from those the "
            "trainer trains on. Use truncation_mode='keep_start' (the default) or packing=False."
        )
    if packing and strategy == "bfd_split":
        logger.warning(
            "packing_strategy='bfd_split' trains the tokens of a document beyond max_length as "
            "separate pieces; its recorded loss covers its first max_length tokens (the document "
            "as prepared without packing).")
    if mode == "train_pass" and packing:
        raise ValueError(
            "mode='train_pass' takes the training losses from the training forwards, but with "
            "SFTConfig(packing=True) those see packs of several documents that TRL does not "
            "identify, so no loss could be given to a document. Use mode='sweep' (the default: "
            "one loss per document from an eval-mode pass over the documents, training keeps "
            "packing) or packing=False."
        )
    if mode == "train_pass" and shuffled:
        raise ValueError(
            "mode='train_pass' records the trainer's training rows, but SFTConfig("
            "shuffle_dataset=True) reordered them, so scores would not follow the documents of "
            "train_dataset. Set shuffle_dataset=False (the sampler still shuffles every epoch) or "
            "use mode='sweep' with train_dataset=."
        )
    if mode == "sweep" and (packing or shuffled) and not documents_given:
        why = "packs of several documents" if packing else "reordered (shuffle_dataset=True)"
        raise ValueError(
            f"The SFTTrainer's training rows are {why}, so they cannot be scored as the "
            f"documents of its train_dataset. Give the callback the documents: "
            f"CLDCallback(query_dataset, trainer=trainer, train_dataset=train_docs) (the same "
            f"train_dataset given to SFTTrainer): they are prepared as the trainer prepares them, "
            f"without packing, and each gets one loss per recorded epoch; training is unchanged."
        )


def sft_documents(trainer, dataset, *, name: str = "cld_query", missing: str = "error"):
    """``dataset`` prepared exactly as ``trainer`` prepares its training set, one row per
    document, in the order of ``dataset``.

    The preparation is the trainer's own (``SFTTrainer._prepare_dataset``, which
    ``SFTTrainer.evaluate`` applies to evaluation sets passed at call time: chat template or
    EOS, tokenisation, completion and assistant masks, truncation to ``max_length``), with
    packing off. With ``dataset_kwargs={"skip_prepare_dataset": True}`` the trainer prepares
    nothing and ``dataset`` is returned as it is. The other columns of ``dataset`` (e.g. a group
    column or ``sample_index``) are kept.

    Parameters
    ----------
    trainer : trl.SFTTrainer
    dataset : datasets.Dataset
        In the form given to the trainer as ``train_dataset`` (text, messages,
        prompt/completion, or already tokenised).
    name : str, default "cld_query"
        Shown in TRL's progress bars.
    missing : {"error", "drop"}, default "error"
        TRL drops a document left without any trained token (e.g. a prompt that fills
        ``max_length``): an error naming the rows, or drop them with a warning (query sets).

    Returns
    -------
    datasets.Dataset

    Examples
    --------
    Given an ``SFTTrainer`` (see :class:`~cld_hf.callback.CLDCallback`)::

        query_rows = sft_documents(trainer, query_docs)   # input_ids, labels (-100 masked), ...
    """
    import datasets

    if not isinstance(dataset, datasets.Dataset):
        raise TypeError(
            f"The {name} dataset must be a datasets.Dataset (as SFTTrainer's train_dataset), not "
            f"{type(dataset).__name__}."
        )
    if getattr(trainer, "_skip_prepare_dataset", False):
        return dataset
    prepare = getattr(trainer, "_prepare_dataset", None)
    if prepare is None:
        raise RuntimeError(
            f"This TRL release ({_trl_version()}) has no SFTTrainer._prepare_dataset, the "
            f"preparation SFTTrainer applies to its evaluation sets, so the {name} set cannot be "
            f"prepared like the training set here. Prepare it through the trainer instead: pass "
            f"SFTTrainer(..., eval_dataset={{'cld': query_docs}}) and "
            f"CLDCallback(trainer.eval_dataset['cld'], trainer=trainer)."
        )
    if DOCUMENT_COLUMN in dataset.column_names:
        raise ValueError(f"The {name} dataset has a column {DOCUMENT_COLUMN!r}, a name reserved "
                         f"for the recorder: rename it.")
    n = len(dataset)
    tagged = dataset.add_column(DOCUMENT_COLUMN, np.arange(n, dtype=np.int64))
    prepared = prepare(tagged, trainer.processing_class, trainer.args, False,
                       getattr(trainer, "_formatting_func", None), name)
    rows = np.asarray(prepared.with_format("numpy", columns=[DOCUMENT_COLUMN])[
        DOCUMENT_COLUMN][:], dtype=np.int64)
    if len(rows) != n or not np.array_equal(rows, np.arange(n)):
        lost = np.setdiff1d(np.arange(n), rows)
        if len(lost) and missing == "error":
            raise ValueError(
                f"{len(lost)} document(s) of the {name} dataset have no token the trainer trains "
                f"on once prepared (rows {lost[:MAX_NAMED].tolist()}): SFTTrainer drops them "
                f"(truncation to max_length={getattr(trainer.args, 'max_length', None)} left only "
                f"masked tokens), so they have no loss. Drop them before training, or raise "
                f"max_length."
            )
        if len(lost):
            logger.warning("%d %s document(s) have no trained token once prepared and are left "
                           "out (rows %s).", len(lost), name, lost[:MAX_NAMED].tolist())
        prepared = prepared.select(np.argsort(rows, kind="stable"))
    return prepared.remove_columns(DOCUMENT_COLUMN)


def _trl_version() -> str:
    try:
        from importlib.metadata import version

        return f"trl {version('trl')}"
    except Exception:  # pragma: no cover
        return "trl ?"
