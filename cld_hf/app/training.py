"""Training for ``cld-hf run``: the proxy and target models, ``train_and_evaluate``."""

from __future__ import annotations

import logging

import numpy as np

from .arguments import RunArguments
from .builtin import make_image_classifier

logger = logging.getLogger(__name__)

__all__ = ["train_and_evaluate", "training_arguments", "model_factory"]



def training_arguments(output_dir, *, epochs, batch_size, lr, seed, **overrides):
    from transformers import TrainingArguments

    kwargs = dict(
        output_dir=str(output_dir), num_train_epochs=epochs, per_device_train_batch_size=batch_size,
        per_device_eval_batch_size=max(batch_size, 256), learning_rate=lr, seed=seed,
        report_to=[], save_strategy="no", logging_strategy="no", eval_strategy="no",
        dataloader_num_workers=0, remove_unused_columns=True,
    )
    kwargs.update(overrides)
    return TrainingArguments(**kwargs)


def model_factory(args: RunArguments, num_labels: int, num_channels: int, names):
    def make(seed: int):
        import torch

        if args.model is None:
            model = make_image_classifier(num_labels, num_channels=num_channels, seed=seed)
        else:
            from transformers import AutoModelForImageClassification

            torch.manual_seed(seed)
            model = AutoModelForImageClassification.from_pretrained(
                args.model, num_labels=num_labels, ignore_mismatched_sizes=True)
        if names:
            model.config.id2label = dict(enumerate(names))
            model.config.label2id = {n: i for i, n in enumerate(names)}
        return model

    return make


def train_and_evaluate(model, train_dataset, test_dataset, *, output_dir, epochs, batch_size,
                       learning_rate, seed, label_column="label", callbacks=None,
                       progress=False, **overrides):
    """Train ``model`` with ``Trainer`` and return ``(trainer, test accuracy)``.

    Accuracy comes from the ``evaluate`` accuracy module shipped with cld-hf. ``progress=True``
    shows the Trainer's progress bars.
    """
    from transformers import Trainer

    from .metrics import load_metric

    metric = load_metric("accuracy")

    def compute_metrics(p):
        return metric.compute(predictions=np.argmax(p.predictions, axis=-1), references=p.label_ids)

    if len(train_dataset) % batch_size == 1 and "dataloader_drop_last" not in overrides:
        # A last batch of one sample breaks batch norm in training mode ("Expected more than 1
        # value per channel"): drop it (one random sample per epoch, the loader shuffles).
        logger.warning("%d training samples leave a last batch of 1 with batch size %d: it is "
                       "dropped each epoch.", len(train_dataset), batch_size)
        overrides["dataloader_drop_last"] = True
    targs = training_arguments(output_dir, epochs=epochs, batch_size=batch_size, lr=learning_rate,
                                seed=seed, disable_tqdm=not progress, **overrides)
    trainer = Trainer(model=model, args=targs, train_dataset=train_dataset,
                      eval_dataset=test_dataset, compute_metrics=compute_metrics,
                      callbacks=callbacks)
    if not progress:
        from transformers.trainer_callback import PrinterCallback

        trainer.remove_callback(PrinterCallback)  # no per-run metric dicts on stdout
    trainer.train()
    acc = trainer.evaluate()["eval_accuracy"]
    return trainer, float(acc)


