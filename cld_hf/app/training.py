"""Training for ``cld-hf run``: the proxy and target models, ``train_and_evaluate``."""

from __future__ import annotations

import logging

import numpy as np

from .arguments import RunArguments
from .builtin import make_image_classifier, make_text_classifier

logger = logging.getLogger(__name__)

__all__ = ["train_and_evaluate", "training_arguments", "model_factory"]


def training_arguments(output_dir, *, epochs, batch_size, lr, seed, **overrides):
    """The ``TrainingArguments`` of every training of a run: no saving, logging or reporting,
    pinned memory only when a GPU is there (on a CPU it only warns).

    Examples
    --------
    >>> import tempfile
    >>> args = training_arguments(tempfile.mkdtemp(), epochs=2, batch_size=8, lr=0.1, seed=0)
    >>> args.num_train_epochs, args.save_strategy, args.report_to
    (2, <SaveStrategy.NO: 'no'>, [])
    """
    import torch
    from transformers import TrainingArguments

    kwargs = dict(
        output_dir=str(output_dir), num_train_epochs=epochs, per_device_train_batch_size=batch_size,
        per_device_eval_batch_size=max(batch_size, 256), learning_rate=lr, seed=seed,
        report_to=[], save_strategy="no", logging_strategy="no", eval_strategy="no",
        dataloader_num_workers=0, remove_unused_columns=True,
        dataloader_pin_memory=torch.cuda.is_available(),
    )
    kwargs.update(overrides)
    return TrainingArguments(**kwargs)


def model_factory(args: RunArguments, num_labels: int, num_channels: int | None, names, *,
                  task: str = "image-classification", tokenizer=None):
    """``make(seed) -> model``: the proxy and target model of a run, freshly initialised.

    ``args.model`` names a model to fine-tune (its classification head replaced for
    ``num_labels`` classes); otherwise the built-in small ResNet (images) or BERT (text, over
    ``tokenizer``'s vocabulary). Class names go into ``config.id2label``.

    Examples
    --------
    >>> make = model_factory(RunArguments(), 3, 1, ["a", "b", "c"])
    >>> make(0).config.id2label
    {0: 'a', 1: 'b', 2: 'c'}
    """
    def make(seed: int):
        import torch

        if args.model is None:
            if task == "text-classification":
                model = make_text_classifier(num_labels, tokenizer, max_length=args.max_length,
                                             seed=seed)
            else:
                model = make_image_classifier(num_labels, num_channels=num_channels, seed=seed)
        else:
            from transformers import (AutoModelForImageClassification,
                                      AutoModelForSequenceClassification)

            auto = (AutoModelForSequenceClassification if task == "text-classification"
                    else AutoModelForImageClassification)
            torch.manual_seed(seed)
            model = auto.from_pretrained(args.model, num_labels=num_labels,
                                         ignore_mismatched_sizes=True)
        if names:
            model.config.id2label = dict(enumerate(str(n) for n in names))
            model.config.label2id = {str(n): i for i, n in enumerate(names)}
        return model

    return make


def train_and_evaluate(model, train_dataset, test_dataset, *, output_dir, epochs, batch_size,
                       learning_rate, seed, label_column="label", callbacks=None,
                       progress=False, data_collator=None, trainer_callbacks=(), **overrides):
    """Train ``model`` with ``Trainer`` and return ``(trainer, test accuracy)``.

    Accuracy comes from the ``evaluate`` accuracy module shipped with cld-hf. With a
    ``data_collator`` (:meth:`cld_hf.app.inputs.ModelInputs.collate` on datasets of
    :meth:`~cld_hf.app.inputs.ModelInputs.view`), the Trainer keeps every column
    (``remove_unused_columns=False``): the collator builds the model's batch. ``progress=True``
    shows the Trainer's own progress bar; otherwise the Trainer prints nothing (no bars, no
    metric dicts). ``trainer_callbacks`` are functions ``fn(trainer) -> TrainerCallback`` for
    callbacks that need the Trainer (``CLDCallback(..., trainer=trainer, mode="train_pass")``),
    added before the ``callbacks`` that follow them in the list.

    Examples
    --------
    ::

        trainer, accuracy = train_and_evaluate(model, train_ds, test_ds, output_dir="tmp",
                                               epochs=3, batch_size=64, learning_rate=1e-2,
                                               seed=0)
    """
    from transformers import Trainer
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    from .metrics import load_metric

    metric = load_metric("accuracy")

    def compute_metrics(p):
        return metric.compute(predictions=np.argmax(p.predictions, axis=-1), references=p.label_ids)

    if len(train_dataset) % batch_size == 1 and "dataloader_drop_last" not in overrides:
        # A last batch of one sample breaks batch norm in training mode ("Expected more than 1
        # value per channel"): drop it (one random sample per epoch, the loader shuffles).
        logger.info("%d training samples leave a last batch of 1 with batch size %d: it is "
                    "dropped each epoch.", len(train_dataset), batch_size)
        overrides["dataloader_drop_last"] = True
    if data_collator is not None:
        overrides.setdefault("remove_unused_columns", False)
    targs = training_arguments(output_dir, epochs=epochs, batch_size=batch_size, lr=learning_rate,
                               seed=seed, disable_tqdm=not progress, **overrides)
    trainer = Trainer(model=model, args=targs, train_dataset=train_dataset,
                      eval_dataset=test_dataset, compute_metrics=compute_metrics,
                      callbacks=callbacks, data_collator=data_collator)
    if trainer_callbacks:
        given = [c for c in trainer.callback_handler.callbacks if any(c is x for x in callbacks or ())]
        for callback in given:
            trainer.remove_callback(callback)
        for make in trainer_callbacks:
            trainer.add_callback(make(trainer))
        for callback in given:
            trainer.add_callback(callback)
    trainer.remove_callback(PrinterCallback)  # no per-run metric dicts on stdout
    if not progress:
        trainer.remove_callback(ProgressCallback)
    trainer.train()
    # drop_last is for the training batches only: the evaluation keeps every test sample
    trainer.args.dataloader_drop_last = False
    metrics = trainer.evaluate()
    if "eval_accuracy" not in metrics:
        raise ValueError(f"The evaluation on {len(test_dataset)} test samples gave no accuracy "
                         f"(metrics {sorted(metrics)}): is the test split empty?")
    return trainer, float(metrics["eval_accuracy"])
