# /// script
# requires-python = ">=3.10"
# dependencies = ["cld-hf"]
# ///
"""Train a CLD proxy model with the authors' CIFAR recipe in a custom accelerate loop.

torchvision's ResNet-18 adapted to 32x32 inputs (3x3 stem, no max-pool); SGD lr 0.1, momentum
0.9, Nesterov, weight decay 5e-4, batch 128, 164 epochs, lr x0.1 at epochs 81 and 121; random
crop (padding 4) and horizontal flip for training, no augmentation for recording; a stratified
query hold-out (10%). ``LossRecorder`` records every training and query loss before training and
after every epoch (an eval-mode sweep, gathered across processes by sample index). The recording
options are those of ``cld_hf.RecorderConfig`` (``--mode``, ``--every_n_epochs``,
``--record_initial``, ``--streaming``, ``--sweep_batch_size``, ``--label_column``, ...).

Writes to ``--output_dir``: ``trajectories/`` (the loss store), ``scored/`` (the training set +
``cld_score`` + ``loss_trajectory``, ``save_to_disk``, with ``cld_run.json``), ``model/``
(``model.safetensors`` + ``config.json``) and ``query/`` (the query split).

    # a few epochs on CPU, scikit-learn's digits upscaled to 32x32:
    python scripts/train_proxy.py --dataset digits --epochs 3 --output_dir proxy-digits --cpu
    # the paper's recipe on CIFAR-100 saved with save_to_disk, on every GPU of the machine:
    accelerate launch scripts/train_proxy.py --dataset path/to/cifar100 --output_dir proxy-c100
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

logger = logging.getLogger("train_proxy")


@dataclass
class ProxyArguments:
    # Data
    dataset: str = field(default="digits", metadata={
        "help": "built-in 'digits'/'mnist1d', a save_to_disk directory, an imagefolder, or a Hub id"})
    train_split: str = field(default="train", metadata={"help": "split to score"})
    test_split: str = field(default="test", metadata={"help": "split for test accuracy"})
    image_column: str | None = field(default=None, metadata={
        "help": "column of images/arrays (default: image, img, then pixel_values)"})
    image_size: int = field(default=32, metadata={"help": "images are resized to this square size"})
    max_train_samples: int | None = field(default=None, metadata={
        "help": "use only the first K training rows (quick checks)"})
    query_fraction: float = field(default=0.1, metadata={"help": "stratified query hold-out"})
    seed: int = field(default=0, metadata={"help": "seed of the split, the model and the loader"})
    # Recipe
    arch: str = field(default="resnet18", metadata={"help": "resnet18/34/50, vgg19_bn, densenet121"})
    epochs: int = field(default=164, metadata={"help": "training epochs"})
    batch_size: int = field(default=128, metadata={"help": "total batch size over processes"})
    learning_rate: float = field(default=0.1, metadata={"help": "SGD learning rate"})
    momentum: float = field(default=0.9)
    weight_decay: float = field(default=5e-4)
    nesterov: bool = field(default=True)
    milestones: list[int] = field(default_factory=lambda: [81, 121], metadata={
        "help": "epochs after which the learning rate is multiplied by --gamma"})
    gamma: float = field(default=0.1)
    hflip: bool = field(default=True, metadata={"help": "random horizontal flip in training"})
    # Output
    output_dir: str = field(default="proxy", metadata={"help": "where everything is written"})
    cpu: bool = field(default=False, metadata={"help": "run on CPU even if a GPU is present"})
    num_workers: int = field(default=0, metadata={"help": "DataLoader workers"})


def main(args: ProxyArguments, config=None) -> dict:
    import numpy as np
    import torch
    from accelerate import Accelerator
    from accelerate.utils import set_seed
    from safetensors.torch import save_model

    from cld_hf import INDEX_COLUMN, LossRecorder, RecorderConfig, stratified_query_split
    from cld_hf.recording import INDEX_KEY, IndexedDataset
    from cld_hf.app.data import load_data
    from cld_hf.app.vision import (
        find_image_column,
        image_collator,
        image_transforms,
        make_small_image_model,
        sgd_recipe,
        top1_accuracy,
    )

    config = RecorderConfig() if config is None else config
    accelerator = Accelerator(cpu=args.cpu)
    set_seed(args.seed)
    out = Path(args.output_dir)
    train, test, label_column, names = load_data(args.dataset, train_split=args.train_split,
                                                 test_split=args.test_split,
                                                 label_column=config.label_column, seed=args.seed)
    if args.max_train_samples is not None:
        train = train.select(range(min(args.max_train_samples, len(train))))
    image_column = find_image_column(train.column_names, args.image_column)
    keep = [image_column, label_column]
    index = [INDEX_COLUMN] if INDEX_COLUMN in train.column_names else []  # rows of the source
    train_ds, query_ds = stratified_query_split(train.select_columns(keep + index),
                                                fraction=args.query_fraction, seed=args.seed,
                                                label_column=label_column,
                                                source_name=args.dataset,
                                                source_split=args.train_split)
    num_classes = len(names) if names else int(max(train[label_column][:])) + 1
    probe = image_transforms(image_column=image_column, size=args.image_size, train=False)
    in_channels = int(probe(train_ds[:1])["pixel_values"][0].shape[0])

    train_tf = image_transforms(image_column=image_column, size=args.image_size, train=True,
                                hflip=args.hflip)
    eval_tf = image_transforms(image_column=image_column, size=args.image_size, train=False)

    collate = image_collator(label_column)  # keeps the sample index of training batches
    per_process = max(1, args.batch_size // accelerator.num_processes)
    loader = torch.utils.data.DataLoader(IndexedDataset(train_ds.with_transform(train_tf)),
                                         batch_size=per_process, shuffle=True, collate_fn=collate,
                                         num_workers=args.num_workers)
    sweep_batch_size = config.sweep_batch_size or 256
    test_loader = torch.utils.data.DataLoader(test.select_columns(keep).with_transform(eval_tf),
                                              batch_size=sweep_batch_size, collate_fn=collate)
    model = make_small_image_model(args.arch, num_classes, in_channels=in_channels, seed=args.seed)
    optimizer, scheduler = sgd_recipe(model.parameters(), lr=args.learning_rate,
                                      momentum=args.momentum, weight_decay=args.weight_decay,
                                      nesterov=args.nesterov, milestones=args.milestones,
                                      gamma=args.gamma)
    model, optimizer, loader, test_loader = accelerator.prepare(model, optimizer, loader,
                                                                test_loader)

    recorder = LossRecorder(
        train_ds, query_ds, config, output_dir=out / "trajectories", accelerator=accelerator,
        eval_transform=eval_tf, collate_fn=collate, label_column=label_column,
        sweep_batch_size=sweep_batch_size,
        metadata={"proxy_model": f"torchvision {args.arch}, 3x3 stem, no max-pool",
                  "recipe": asdict(args)})
    if config.record_initial:
        recorder.record(model, epoch=0, step=0)
    step = 0
    for epoch in range(1, args.epochs + 1):
        model.train()
        for batch in loader:
            index = batch.pop(INDEX_KEY)
            logits = model(pixel_values=batch["pixel_values"])["logits"]
            per_sample = torch.nn.functional.cross_entropy(logits, batch["labels"],
                                                           reduction="none")
            accelerator.backward(per_sample.mean())
            optimizer.step()
            optimizer.zero_grad()
            step += 1
            if config.mode == "train_pass" and recorder.will_record(epoch):
                recorder.feed(index, per_sample)  # the training forward's own losses
        scheduler.step()
        recorder.record(model, epoch=epoch, step=step)
        logger.info("epoch %d/%d done (lr %.4g)", epoch, args.epochs, scheduler.get_last_lr()[0])

    accuracy = top1_accuracy(model, test_loader, accelerator)
    result = {"test_accuracy": accuracy, "num_snapshots": recorder.num_snapshots,
              "num_train": len(train_ds), "num_query": len(query_ds)}
    if accelerator.is_main_process:
        scored = recorder.scored_dataset()  # train_ds carries sample_index: rows of the split source
        scored.save_to_disk(str(out / "scored"))
        query_ds.save_to_disk(str(out / "query"))
        info = {"proxy_model": f"torchvision {args.arch}, 3x3 stem, no max-pool",
                "epochs": args.epochs, "num_snapshots": recorder.num_snapshots,
                "record_mode": config.mode, "recording": config.to_dict(),
                "query_fraction": args.query_fraction,
                "query_seed": args.seed, "num_train": len(train_ds), "num_query": len(query_ds),
                "proxy_test_accuracy": accuracy, "dataset": args.dataset,
                "command": "python scripts/train_proxy.py " + " ".join(
                    f"--{k} {v}" for k, v in asdict(args).items() if v is not None)}
        (out / "scored" / "cld_run.json").write_text(json.dumps(info, indent=2))
        (out / "model").mkdir(parents=True, exist_ok=True)
        save_model(accelerator.unwrap_model(model), str(out / "model" / "model.safetensors"))
        (out / "model" / "config.json").write_text(json.dumps(
            {"cld_hf_format": "torchvision-small-image", "arch": args.arch,
             "num_classes": num_classes, "in_channels": in_channels,
             "image_size": args.image_size}, indent=2))
        (out / "result.json").write_text(json.dumps(result, indent=2))
        logger.info("test accuracy %.4f; %d snapshots; outputs in %s", accuracy,
                    recorder.num_snapshots, out)
    accelerator.wait_for_everyone()
    accelerator.end_training()
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    return result


def make_parser():
    from transformers import HfArgumentParser

    from cld_hf import RecorderConfig

    return HfArgumentParser((ProxyArguments, RecorderConfig), description=__doc__)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    parsed, recording = make_parser().parse_args_into_dataclasses()
    snapshots = parsed.epochs // recording.every_n_epochs + int(recording.record_initial)
    if snapshots < 3:
        raise SystemExit(
            f"--epochs {parsed.epochs} records {snapshots} snapshot(s); CLD needs at least 3 "
            f"(2 loss differences). Train longer, record every epoch, or keep --record_initial.")
    if not 0 < parsed.query_fraction < 1:
        raise SystemExit(f"--query_fraction {parsed.query_fraction} must be in (0, 1).")
    print(json.dumps(main(parsed, recording)))
