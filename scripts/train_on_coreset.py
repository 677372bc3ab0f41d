# /// script
# requires-python = ">=3.10"
# dependencies = ["cld-hf"]
# ///
"""Train a target model on a coreset with the authors' CIFAR recipe; report test accuracy.

One command per cell of the paper's cross-architecture experiment (Table 6): the coreset comes
from a saved coreset (``--coreset``) or from a scored dataset and a fraction (``--scored``
``--fraction``, CLD or a random class-balanced draw with ``--method random``); the target is a
torchvision ResNet-18/34/50, VGG-19-BN or DenseNet-121 adapted to 32x32 inputs, trained with
SGD lr 0.1, momentum 0.9, Nesterov, weight decay 5e-4, batch 128, 164 epochs, lr x0.1 at epochs
81 and 121, random crop + flip. Test accuracy is evaluated after every epoch; the best and the
final accuracy are printed and written to ``--output_dir/result.json``.

    python scripts/train_on_coreset.py --scored proxy-digits/scored --fraction 0.3 \\
        --dataset digits --arch resnet18 --epochs 3 --output_dir target --cpu
    accelerate launch scripts/train_on_coreset.py --coreset c100-cld-10pct \\
        --dataset path/to/cifar100 --arch densenet121 --output_dir t-densenet
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

logger = logging.getLogger("train_on_coreset")


@dataclass
class CoresetArguments:
    # Coreset
    coreset: str | None = field(default=None, metadata={"help": "a saved coreset (save_to_disk)"})
    scored: str | None = field(default=None, metadata={
        "help": "a saved scored dataset; with --fraction, the coreset is selected here"})
    fraction: float | None = field(default=None, metadata={"help": "coreset fraction with --scored"})
    balance: str = field(default="equal", metadata={"help": "'equal' or 'proportional' budgets"})
    method: str = field(default="cld", metadata={
        "help": "'cld' (top CLD scores per class) or 'random' (random class-balanced draw)"})
    # Data (for the test split)
    dataset: str = field(default="digits", metadata={
        "help": "the source dataset, for its test split (built-in name, directory or Hub id)"})
    test_split: str = field(default="test")
    label_column: str | None = field(default=None)
    image_column: str | None = field(default=None)
    image_size: int = field(default=32)
    # Recipe
    arch: str = field(default="resnet18", metadata={"help": "resnet18/34/50, vgg19_bn, densenet121"})
    epochs: int = field(default=164)
    batch_size: int = field(default=128, metadata={"help": "total batch size over processes"})
    learning_rate: float = field(default=0.1)
    momentum: float = field(default=0.9)
    weight_decay: float = field(default=5e-4)
    nesterov: bool = field(default=True)
    milestones: list[int] = field(default_factory=lambda: [81, 121])
    gamma: float = field(default=0.1)
    hflip: bool = field(default=True)
    seed: int = field(default=0, metadata={"help": "seed of the model, the loader and --method random"})
    # Output
    output_dir: str = field(default="target")
    cpu: bool = field(default=False)
    num_workers: int = field(default=0)
    eval_batch_size: int = field(default=256)


def load_coreset(args: CoresetArguments):
    """The coreset as a ``datasets.Dataset``, from --coreset or --scored + --fraction."""
    import numpy as np
    from datasets import load_from_disk

    from cld_hf import find_label_column, select_coreset
    from cld_hf import add_index_column
    from cld_hf.selection import select_random_per_class

    if (args.coreset is None) == (args.scored is None):
        raise SystemExit("Give exactly one of --coreset or --scored (with --fraction).")
    if args.coreset is not None:
        return load_from_disk(args.coreset)
    if args.fraction is None:
        raise SystemExit("--scored needs --fraction (e.g. 0.1).")
    scored = load_from_disk(args.scored)
    if args.method == "cld":
        return select_coreset(scored, fraction=args.fraction, label_column=args.label_column,
                              balance=args.balance)
    if args.method == "random":
        col = find_label_column(scored.column_names, args.label_column)
        labels = np.asarray(scored.with_format("numpy", columns=[col])[col][:])
        idx = select_random_per_class(labels, fraction=args.fraction, balance=args.balance,
                                      seed=args.seed)
        if "sample_index" not in scored.column_names:
            scored = add_index_column(scored)
        return scored.select(idx)
    raise SystemExit(f"--method {args.method!r}: choose 'cld' or 'random'.")


def main(args: CoresetArguments) -> dict:
    import torch
    from accelerate import Accelerator
    from accelerate.utils import set_seed

    from cld_hf import find_label_column
    from cld_hf.app.data import load_data
    from cld_hf.app.vision import (
        find_image_column,
        image_collator,
        image_transforms,
        make_small_image_model,
        sgd_recipe,
        top1_accuracy,
    )

    accelerator = Accelerator(cpu=args.cpu)
    set_seed(args.seed)
    coreset = load_coreset(args)
    _, test, label_column, names = load_data(args.dataset, test_split=args.test_split,
                                             label_column=args.label_column, seed=args.seed)
    core_label = find_label_column(coreset.column_names, args.label_column)
    image_column = find_image_column(coreset.column_names, args.image_column)
    num_classes = len(names) if names else int(max(test[label_column][:])) + 1
    train_tf = image_transforms(image_column=image_column, size=args.image_size, train=True,
                                hflip=args.hflip)
    eval_tf = image_transforms(image_column=find_image_column(test.column_names, args.image_column),
                               size=args.image_size, train=False)

    train_ds = coreset.select_columns([image_column, core_label]).with_transform(train_tf)
    in_channels = int(train_ds[0]["pixel_values"].shape[0])
    loader = torch.utils.data.DataLoader(
        train_ds, batch_size=max(1, args.batch_size // accelerator.num_processes), shuffle=True,
        collate_fn=image_collator(core_label), num_workers=args.num_workers)
    test_ds = test.select_columns([find_image_column(test.column_names, args.image_column), label_column])
    test_loader = torch.utils.data.DataLoader(test_ds.with_transform(eval_tf),
                                              batch_size=args.eval_batch_size,
                                              collate_fn=image_collator(label_column))
    model = make_small_image_model(args.arch, num_classes, in_channels=in_channels, seed=args.seed)
    optimizer, scheduler = sgd_recipe(model.parameters(), lr=args.learning_rate,
                                      momentum=args.momentum, weight_decay=args.weight_decay,
                                      nesterov=args.nesterov, milestones=args.milestones,
                                      gamma=args.gamma)
    model, optimizer, loader, test_loader = accelerator.prepare(model, optimizer, loader,
                                                                test_loader)

    history = []
    for epoch in range(1, args.epochs + 1):
        model.train()
        for batch in loader:
            loss = model(**batch)["loss"]
            accelerator.backward(loss)
            optimizer.step()
            optimizer.zero_grad()
        scheduler.step()
        history.append(top1_accuracy(model, test_loader, accelerator))
        logger.info("epoch %d/%d: test accuracy %.4f", epoch, args.epochs, history[-1])
    result = {"coreset_size": len(coreset), "arch": args.arch, "method": args.method,
              "fraction": args.fraction, "best_test_accuracy": max(history),
              "final_test_accuracy": history[-1], "test_accuracy_per_epoch": history,
              "arguments": asdict(args)}
    if accelerator.is_main_process:
        Path(args.output_dir).mkdir(parents=True, exist_ok=True)
        (Path(args.output_dir) / "result.json").write_text(json.dumps(result, indent=2))
    accelerator.wait_for_everyone()
    accelerator.end_training()
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    return result


if __name__ == "__main__":
    from transformers import HfArgumentParser

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    (parsed,) = HfArgumentParser(CoresetArguments, description=__doc__).parse_args_into_dataclasses()
    out = main(parsed)
    print(json.dumps({k: out[k] for k in ("coreset_size", "arch", "method",
                                          "best_test_accuracy", "final_test_accuracy")}))
