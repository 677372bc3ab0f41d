"""What the Trainer feeds the model, for the callback: the rows its sweeps record, checked
against the query set, and the sweep's defaults from ``TrainingArguments``.
"""

from __future__ import annotations

from .trl import is_packed, is_sft_trainer

__all__ = ["training_rows", "default_sweep_batch_size"]


def training_rows(train_dataloader, trainer, config, query_dataset, args):
    """The training rows the sweeps record: ``train_dataloader.dataset`` (the rows the Trainer
    trains on), or ``trainer.train_dataset`` when it is the same rows with the columns the
    recording needs (a ``label_column`` or ``group_column`` the Trainer removed; an SFT
    trainer's prepared documents). Packed rows, and training rows with model inputs the query
    set lacks, are errors naming the fix.

    Examples
    --------
    >>> from datasets import Dataset
    >>> from cld_hf import RecorderConfig
    >>> from torch.utils.data import DataLoader
    >>> rows = Dataset.from_dict({"x": [1.0, 2.0], "label": [0, 1]})
    >>> len(training_rows(DataLoader(rows), None, RecorderConfig(), rows, None))
    2
    """
    train = getattr(train_dataloader, "dataset", None)
    if train is None:
        raise ValueError(
            "CLDCallback needs the Trainer's training data loader to record losses; the "
            "Trainer has none. Pass Trainer(..., train_dataset=train_ds)."
        )
    if not hasattr(train, "__len__"):
        raise TypeError(
            f"The training set is a {type(train).__name__} without a length: the "
            f"recorder needs a map-style dataset (a datasets.Dataset, not an "
            f"IterableDataset) so that every sample has an index."
        )
    if is_packed(train):
        raise ValueError(
            "The training rows are packs of several documents (a 'seq_lengths' column: TRL's "
            "SFTConfig(packing=True)), so a loss per row is not a loss per document. Give the "
            "callback the trainer and the documents: trainer.add_callback(CLDCallback("
            "query_docs, trainer=trainer, train_dataset=train_docs)), or train with "
            "packing=False."
        )
    full = getattr(trainer, "train_dataset", None)
    if is_sft_trainer(trainer) and full is not None and len(full) == len(train) and (
            not is_packed(full)):
        train = full  # the same prepared rows, with the columns of the documents (text, ...)
    columns = list(getattr(train, "column_names", None) or ())
    needed = [c for c in (config.label_column, config.group_column) if c]
    missing = [c for c in needed if columns and c not in columns]
    if missing and full is not None and len(full) == len(train) and all(
            c in (getattr(full, "column_names", None) or ()) for c in missing):
        train = full  # the Trainer's own train_dataset still has the column
    elif missing:
        option = "label_column" if missing[0] == config.label_column else "group_column"
        other = (" or name the class column 'labels' or 'label', or pass "
                 "TrainingArguments(remove_unused_columns=False)" if option == "label_column"
                 else "")
        raise ValueError(
            f"{option} {missing[0]!r} is not in the training set the Trainer feeds the model "
            f"(columns {columns}): the Trainer removed it (remove_unused_columns=True drops "
            f"columns the model's forward does not take). Pass the trainer so the callback "
            f"reads it from trainer.train_dataset: trainer.add_callback(CLDCallback(query, "
            f"trainer=trainer, {option}={missing[0]!r})){other}."
        )
    query_columns = set(query_dataset.column_names)
    lacking = [c for c in ("input_ids", "decoder_input_ids", "pixel_values")
               if c in columns and c not in query_columns]
    if lacking:
        sft = "SFTConfig" in type(args).__name__
        raise ValueError(
            f"The training rows the trainer feeds the model have {lacking}, the query set "
            f"does not (its columns: {sorted(query_columns)}): "
            + ("TRL's SFTTrainer prepares its train_dataset itself (tokenisation, EOS, "
               "completion masks). Pass the trainer so the callback prepares the raw query "
               "set the same way: trainer = SFTTrainer(...); trainer.add_callback("
               "CLDCallback(query_docs, trainer=trainer))." if sft else
               "give the query set in the same format as the training set (the same "
               "tokenisation or transform).")
        )
    return train


def default_sweep_batch_size(args) -> int:
    """The callback's sweep batch size when ``RecorderConfig.sweep_batch_size`` is not set: the
    larger of the Trainer's ``per_device_eval_batch_size`` and twice its
    ``per_device_train_batch_size``. A sweep runs without autograd, so it holds no activations
    for a backward pass and no gradients: a batch twice the training one needs less memory than
    a training step, and fewer, larger batches make the sweep cheaper.

    Examples
    --------
    >>> from transformers import TrainingArguments
    >>> default_sweep_batch_size(TrainingArguments("out", per_device_train_batch_size=64))
    128
    >>> default_sweep_batch_size(TrainingArguments("out", per_device_train_batch_size=2,
    ...                                            per_device_eval_batch_size=32))
    32
    """
    return max(int(args.per_device_eval_batch_size), 2 * int(args.per_device_train_batch_size))
