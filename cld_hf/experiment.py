"""The main job end to end: proxy training with CLD recording, scoring, coresets, target training.

``run_experiment(RunArguments(...))`` is what ``cld-hf run`` calls:

1. load the data (a built-in dataset, a ``save_to_disk`` directory, an imagefolder or a Hub id),
   optionally flip a share of the training labels (``label_noise``);
2. split a stratified query set off the training split;
3. train a proxy model with ``transformers.Trainer`` + :class:`~cld_hf.callback.CLDCallback`;
   (recording, in the same sweeps, the signals the chosen ``methods`` need: see
   :mod:`cld_hf.comparison`);
4. score, and for each fraction select one coreset per method (CLD, random and any baseline of
   :mod:`cld_hf.baselines`), all with the same per-class budgets;
5. train the target model from scratch on each coreset (and on the full training set) for
   several seeds and evaluate test accuracy (the shipped ``evaluate`` accuracy module);
6. write everything to ``output_dir``: the scored dataset, the CLD coresets, every selection
   (``selections.arrow``), the proxy model, the cards, ``results.json`` / ``results.md`` (the
   accuracy table shaped like the seed's Table 2 and the selection-cost table) and the plots;
   optionally push to the Hub.
"""

from __future__ import annotations

import json
import logging
import shlex
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from .builtin import BUILTIN_DATASETS, load_builtin_dataset, make_image_classifier
from .columns import INDEX_COLUMN, SCORE_COLUMN, find_label_column

logger = logging.getLogger(__name__)

__all__ = ["RunArguments", "run_experiment", "results_markdown", "train_and_evaluate"]

NOISE_COLUMN = "label_is_noisy"
ORIGINAL_LABEL_COLUMN = "original_label"


@dataclass
class RunArguments:
    """Options of ``cld-hf run`` (and of ``HfArgumentParser`` in scripts); see each field's help.

    > Data: ``dataset``, ``train_split``, ``test_split``, ``label_column``, ``image_size``,
    ``label_noise``.

    > Method: ``query_fraction``, ``seed``, ``fractions``, ``balance``, ``record_mode``,
    ``proxy_epochs``, ``methods``.

    > Models and training: ``model``, ``target_epochs``, ``seeds``, ``batch_size``,
    ``learning_rate``, ``full_baseline``.

    > Output: ``output_dir``, ``overwrite_output_dir``, ``push_to_hub``, ``hub_private``,
    ``plots``.

    Examples
    --------
    >>> RunArguments(fractions=[0.2], seeds=2).fractions
    [0.2]
    >>> RunArguments(query_fraction=1.5)
    Traceback (most recent call last):
    ...
    ValueError: query_fraction == 1.5, must be in (0, 1).
    >>> RunArguments(methods=["cld", "random", "forgetting", "el2n"]).methods
    ['cld', 'random', 'forgetting', 'el2n']
    """

    # Data
    dataset: str = field(default="digits", metadata={
        "help": "built-in 'digits' (scikit-learn) or 'mnist1d', a save_to_disk directory, an "
                "imagefolder directory, or a Hub dataset id (when online)"})
    train_split: str = field(default="train", metadata={"help": "split to select from"})
    test_split: str = field(default="test", metadata={
        "help": "split for test accuracy (if missing, 20%% of the training split is held out)"})
    label_column: str | None = field(default=None, metadata={
        "help": "label column (default: 'labels', then 'label')"})
    image_size: int = field(default=32, metadata={
        "help": "side of the square images fed to the model when the data holds PIL images"})
    label_noise: float = field(default=0.0, metadata={
        "help": "share of training labels flipped to another class (recorded in a column)"})
    # Method
    query_fraction: float = field(default=0.1, metadata={
        "help": "share of each class held out as the CLD query set"})
    seed: int = field(default=0, metadata={"help": "seed of the query split, noise and proxy"})
    fractions: list[float] = field(default_factory=lambda: [0.1, 0.3], metadata={
        "help": "coreset fractions (one or several)"})
    balance: Literal["equal", "proportional"] = field(default="equal", metadata={
        "help": "per-class budgets: 'equal' (the paper's) or 'proportional'"})
    record_mode: Literal["sweep", "train_pass"] = field(default="sweep", metadata={
        "help": "'sweep' (eval pass each epoch, as the authors) or 'train_pass'"})
    proxy_epochs: int = field(default=15, metadata={"help": "proxy training epochs"})
    methods: list[str] = field(default_factory=lambda: ["cld", "random"], metadata={
        "help": "coreset methods to compare, each with the same class budgets: 'cld' and any of "
                "random forgetting el2n aum ccs_aum dyn_unc dual dual_beta herding moderate "
                "kcenter graphcut d2_pruning cal grand craig tdds (cld_hf.baselines.METHODS); the "
                "proxy run records the signals they need in its loss sweeps"})
    # Models and training
    model: str | None = field(default=None, metadata={
        "help": "local directory or Hub id of an image-classification model for proxy and "
                "target (default: a small ResNet built from a config)"})
    target_epochs: int = field(default=20, metadata={"help": "target training epochs"})
    seeds: int = field(default=3, metadata={"help": "target runs (seeds) per coreset"})
    batch_size: int = field(default=64, metadata={"help": "per-device batch size"})
    learning_rate: float = field(default=1e-2, metadata={"help": "AdamW learning rate"})
    full_baseline: bool = field(default=True, metadata={
        "help": "also train the target on the full training set"})
    # Output
    output_dir: str = field(default="cld_run", metadata={"help": "where everything is written"})
    overwrite_output_dir: bool = field(default=False, metadata={
        "help": "write into an existing non-empty output directory"})
    push_to_hub: str | None = field(default=None, metadata={
        "help": "dataset repo id to push the first coreset to (the proxy goes to <id>-proxy)"})
    hub_private: bool = field(default=False, metadata={"help": "make pushed repos private"})
    plots: bool = field(default=True, metadata={"help": "write PNG plots"})

    def __post_init__(self):
        if not 0.0 < self.query_fraction < 1.0:
            raise ValueError(f"query_fraction == {self.query_fraction}, must be in (0, 1).")
        if not 0.0 <= self.label_noise < 1.0:
            raise ValueError(f"label_noise == {self.label_noise}, must be in [0, 1).")
        if not self.fractions:
            raise ValueError("fractions is empty; give at least one, e.g. --fractions 0.1 0.3.")
        for f in self.fractions:
            if not 0.0 < f <= 1.0:
                raise ValueError(f"fractions contains {f}, each must be in (0, 1].")
        if self.balance not in ("equal", "proportional"):
            raise ValueError(f"balance == {self.balance!r}, must be 'equal' or 'proportional'.")
        if self.record_mode not in ("sweep", "train_pass"):
            raise ValueError(f"record_mode == {self.record_mode!r}, must be 'sweep' or 'train_pass'.")
        if self.push_to_hub is not None and self.push_to_hub.count("/") != 1:
            raise ValueError(
                f"push_to_hub == {self.push_to_hub!r}, must be a dataset repo id "
                f"'<namespace>/<name>' (the proxy model goes to '<namespace>/<name>-proxy')."
            )
        for name in ("proxy_epochs", "target_epochs", "seeds", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} == {getattr(self, name)}, must be >= 1.")
        if self.proxy_epochs < 2:
            raise ValueError(
                f"proxy_epochs == {self.proxy_epochs}: CLD needs at least 3 loss snapshots "
                f"(the initial one and 2 epochs); use proxy_epochs >= 2."
            )
        from .comparison import check_methods, min_snapshots

        self.methods = check_methods(self.methods)
        need = min_snapshots(self.methods)
        if self.proxy_epochs + 1 < need:
            windowed = [m for m in self.methods if min_snapshots([m]) == need]
            raise ValueError(
                f"proxy_epochs == {self.proxy_epochs} gives {self.proxy_epochs + 1} snapshots, but "
                f"methods {windowed} use a window of {need} snapshots; use proxy_epochs >= "
                f"{need - 1} or drop them from methods."
            )
        if self.record_mode != "sweep" and any(
                s not in ("embeddings", "probs") for s in signals_needed(self.methods)):
            raise ValueError(
                f"record_mode == {self.record_mode!r}, but methods {self.methods} read training "
                f"dynamics recorded in the eval sweeps: use record_mode='sweep'."
            )


def signals_needed(methods) -> tuple[str, ...]:
    """The recorder signals of ``methods`` (:func:`cld_hf.comparison.signals_for_methods`).

    Examples
    --------
    >>> signals_needed(["cld", "random", "forgetting", "herding"])
    ('correct', 'embeddings')
    """
    from .comparison import signals_for_methods

    return signals_for_methods(methods)


# ------------------------------------------------------------------------------------ data


def _to_pixel_values(dataset, image_size: int):
    """Give a dataset of PIL images a ``pixel_values`` float tensor view (set_transform)."""
    image_column = next((c for c in ("image", "img") if c in dataset.column_names), None)
    if "pixel_values" in dataset.column_names:
        return dataset.with_format("torch", columns=None), None
    if image_column is None:
        raise ValueError(
            f"Cannot find the inputs: the dataset needs a 'pixel_values' column or an 'image'/"
            f"'img' column of images. Columns: {dataset.column_names}."
        )
    from torchvision import transforms

    mode = "L" if dataset.features[image_column].mode == "L" else "RGB"
    tf = transforms.Compose([transforms.Resize((image_size, image_size)), transforms.ToTensor()])

    def transform(batch):
        batch["pixel_values"] = [tf(img.convert(mode)) for img in batch[image_column]]
        return batch

    dataset.set_transform(transform)
    return dataset, 1 if mode == "L" else 3


def load_data(dataset: str, *, train_split: str = "train", test_split: str = "test",
              label_column: str | None = None, seed: int = 0):
    """``(train, test, label_column, class_names)`` as ``datasets.Dataset`` objects.

    ``dataset`` is a built-in name (``digits``, ``mnist1d``), a ``save_to_disk`` directory, an
    imagefolder directory or a Hub id (when online). Without a ``test_split``, 20% of the
    training split is held out (stratified, ``seed``).

    Examples
    --------
    >>> train, test, label_column, names = load_data("digits")
    >>> len(train), len(test), label_column, names[:3]
    (1347, 450, 'label', ['0', '1', '2'])
    """
    import datasets

    if dataset in BUILTIN_DATASETS:
        dd = load_builtin_dataset(dataset, seed=0)
    else:
        path = Path(dataset)
        if (path / "dataset_info.json").exists() or (path / "dataset_dict.json").exists():
            dd = datasets.load_from_disk(str(path))
        elif path.is_dir():
            dd = datasets.load_dataset("imagefolder", data_dir=str(path))
        else:
            dd = datasets.load_dataset(dataset)
    if isinstance(dd, datasets.Dataset):
        dd = datasets.DatasetDict({train_split: dd})
    if train_split not in dd:
        raise ValueError(f"train_split {train_split!r} not in the dataset; splits: {list(dd)}.")
    train = dd[train_split]
    label_column = find_label_column(train.column_names, label_column)
    if test_split in dd:
        test = dd[test_split]
    else:
        logger.warning("No %r split: holding out 20%% of %r as the test set.", test_split,
                       train_split)
        parts = train.train_test_split(test_size=0.2, seed=seed, stratify_by_column=label_column)
        train, test = parts["train"], parts["test"]
    names = getattr(train.features[label_column], "names", None)
    return train, test, label_column, names


def apply_label_noise(dataset, share: float, *, label_column: str, num_classes: int, seed: int):
    """Flip ``share`` of the labels to another class, uniformly; keep the truth in columns.

    Adds ``original_label`` and ``label_is_noisy`` (bool). Returns the new dataset.

    Examples
    --------
    >>> from datasets import Dataset
    >>> ds = Dataset.from_dict({"label": [0, 1, 2, 0, 1, 2, 0, 1, 2, 0]})
    >>> noisy = apply_label_noise(ds, 0.3, label_column="label", num_classes=3, seed=0)
    >>> sum(noisy["label_is_noisy"][:]), all(
    ...     (a != b) == f for a, b, f in zip(noisy["label"][:], noisy["original_label"][:],
    ...                                      noisy["label_is_noisy"][:]))
    (3, True)
    """
    import datasets

    labels = np.asarray(dataset.with_format("numpy", columns=[label_column])[label_column][:])
    rng = np.random.default_rng(seed)
    flip = np.zeros(len(labels), dtype=bool)
    flip[rng.choice(len(labels), size=int(round(share * len(labels))), replace=False)] = True
    noisy = labels.copy()
    shift = rng.integers(1, num_classes, size=int(flip.sum()))  # never the true class
    noisy[flip] = (labels[flip] + shift) % num_classes
    feature = dataset.features[label_column]
    out = dataset.rename_column(label_column, ORIGINAL_LABEL_COLUMN)
    out = out.add_column(label_column, noisy, feature=feature)
    return out.add_column(NOISE_COLUMN, flip, feature=datasets.Value("bool"))


# ------------------------------------------------------------------------------- training


def _training_arguments(output_dir, *, epochs, batch_size, lr, seed, **overrides):
    from transformers import TrainingArguments

    kwargs = dict(
        output_dir=str(output_dir), num_train_epochs=epochs, per_device_train_batch_size=batch_size,
        per_device_eval_batch_size=max(batch_size, 256), learning_rate=lr, seed=seed,
        report_to=[], save_strategy="no", logging_strategy="no", eval_strategy="no",
        dataloader_num_workers=0, remove_unused_columns=True,
    )
    kwargs.update(overrides)
    return TrainingArguments(**kwargs)


def _model_factory(args: RunArguments, num_labels: int, num_channels: int, names):
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
    targs = _training_arguments(output_dir, epochs=epochs, batch_size=batch_size, lr=learning_rate,
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


# -------------------------------------------------------------------------------- results


def results_markdown(rows, *, full_accuracy=None) -> str:
    """A Markdown table shaped like the paper's Table 2: fraction rows, method columns.

    Each cell is ``mean ± std`` of the test accuracy (in %) over seeds.

    Examples
    --------
    >>> rows = [{"fraction": 0.1, "method": "cld", "accuracy": 0.9},
    ...         {"fraction": 0.1, "method": "cld", "accuracy": 0.8},
    ...         {"fraction": 0.1, "method": "random", "accuracy": 0.7}]
    >>> print(results_markdown(rows))
    | fraction | cld | random |
    |---|---|---|
    | 10% | 85.00 ± 5.00 | 70.00 ± 0.00 |
    """
    methods = list(dict.fromkeys(r["method"] for r in rows))
    fractions = sorted({float(r["fraction"]) for r in rows})
    lines = ["| fraction | " + " | ".join(methods) + " |", "|---" * (len(methods) + 1) + "|"]
    for f in fractions:
        cells = []
        for m in methods:
            acc = [100 * r["accuracy"] for r in rows if r["method"] == m and float(r["fraction"]) == f]
            cells.append(f"{np.mean(acc):.2f} ± {np.std(acc):.2f}" if acc else "-")
        lines.append(f"| {100 * f:g}% | " + " | ".join(cells) + " |")
    if full_accuracy:
        acc = [100 * a for a in full_accuracy]
        lines.append(f"\nFull training set: {np.mean(acc):.2f} ± {np.std(acc):.2f}")
    return "\n".join(lines)


# ------------------------------------------------------------------------------ the job


def _prepare_output_dir(args: RunArguments) -> Path:
    out = Path(args.output_dir)
    if out.exists() and any(out.iterdir()) and not args.overwrite_output_dir:
        raise FileExistsError(
            f"output_dir {str(out)!r} exists and is not empty; choose another --output-dir or "
            f"pass --overwrite-output-dir."
        )
    if out.exists() and args.overwrite_output_dir:
        shutil.rmtree(out)
    out.mkdir(parents=True)
    return out


def _command_line() -> str:
    return " ".join(shlex.quote(a) for a in ["cld-hf", *sys.argv[1:]]) if sys.argv else "cld-hf run"


def run_experiment(args: RunArguments, *, command: str | None = None) -> dict:
    """Run the whole job (see the module docstring); returns the results dict also written to
    ``<output_dir>/results.json``.

    Examples
    --------
    A quick run on scikit-learn's digits (about a minute on two CPU cores)::

        results = run_experiment(RunArguments(output_dir="quick", proxy_epochs=3,
                                              target_epochs=2, seeds=1, fractions=[0.2]))
        print(results["table_markdown"])
    """
    from transformers import set_seed

    from .callback import CLDCallback
    from .commands._common import RUN_INFO_FILE, write_json
    from .comparison import cost_markdown, cost_rows, select_coresets, write_selections
    from .dataset_adapters import add_index_column, stratified_query_split
    from .selection import class_budgets, select_top_per_class
    from .trajectories import LossTrajectories

    started = time.perf_counter()
    out = _prepare_output_dir(args)
    train, test, label_column, names = load_data(
        args.dataset, train_split=args.train_split, test_split=args.test_split,
        label_column=args.label_column, seed=args.seed)
    labels_all = np.asarray(train.with_format("numpy", columns=[label_column])[label_column][:])
    num_labels = len(names) if names else int(labels_all.max()) + 1
    train, num_channels = _to_pixel_values(train, args.image_size)
    test, _ = _to_pixel_values(test, args.image_size)
    if num_channels is None:
        num_channels = int(train.features["pixel_values"].shape[0])
    if args.label_noise > 0:
        train = apply_label_noise(train, args.label_noise, label_column=label_column,
                                  num_classes=num_labels, seed=args.seed)
    train = add_index_column(train) if INDEX_COLUMN not in train.column_names else train
    train_ds, query_ds = stratified_query_split(train, fraction=args.query_fraction, seed=args.seed,
                                                label_column=label_column)
    logger.info("Data: %d training, %d query, %d test samples, %d classes", len(train_ds),
                len(query_ds), len(test), num_labels)
    make_model = _model_factory(args, num_labels, num_channels, names)

    # 1. proxy training with CLD recording (+ the signals of the other methods, same sweeps)
    signals = signals_needed(args.methods)
    set_seed(args.seed)
    cld = CLDCallback(query_dataset=query_ds, mode=args.record_mode, label_column=label_column,
                      output_dir=str(out / "trajectories"), signals=signals)
    proxy_trainer, proxy_acc = train_and_evaluate(
        make_model(args.seed), train_ds, test, output_dir=out / "proxy_training",
        epochs=args.proxy_epochs, batch_size=args.batch_size, learning_rate=args.learning_rate,
        seed=args.seed, label_column=label_column, callbacks=[cld], progress=True)
    scored = cld.scored_dataset()
    proxy_trainer.model.save_pretrained(str(out / "proxy_model"))  # safetensors + config, no pickle
    scores = np.asarray(scored.with_format("numpy", columns=["cld_score"])["cld_score"][:])
    labels = np.asarray(scored.with_format("numpy", columns=[label_column])[label_column][:])
    method_info = {
        "proxy_model": args.model or "ResNet (transformers, built from a config: "
                                     "embedding 16, hidden sizes [16, 32], depths [1, 1])",
        "epochs": args.proxy_epochs,
        "num_snapshots": cld.recorder.num_snapshots,
        "record_mode": args.record_mode,
        "query_fraction": args.query_fraction,
        "query_seed": args.seed,
        "num_train": len(train_ds),
        "num_query": len(query_ds),
        # A Hub id only: not a built-in dataset, nor a local directory (not a repo id).
        "source_dataset": (None if args.dataset in BUILTIN_DATASETS or Path(args.dataset).exists()
                           else args.dataset),
        "dataset": args.dataset,
        "balance": args.balance,
        "label_noise": args.label_noise,
        "methods": list(args.methods),
        "signals": list(signals),
        "command": command or _command_line(),
        "proxy_test_accuracy": proxy_acc,
    }
    scored.with_format(None).save_to_disk(str(out / "scored"))  # plain format for the user
    write_json(out / "scored" / RUN_INFO_FILE, method_info)
    logger.info("Proxy test accuracy %.4f; %d snapshots recorded", proxy_acc,
                method_info["num_snapshots"])

    # 2. one coreset per method, fraction and seed (same budgets), then target training
    store = LossTrajectories(out / "trajectories")
    selections = select_coresets(store, args.methods, fractions=args.fractions, seeds=args.seeds,
                                 balance=args.balance)
    write_selections(out / "selections.arrow", selections)
    costs = cost_rows(store, selections)
    chosen = {(c.method, c.fraction, c.seed): c.indices for c in selections}
    runs, coresets = [], {}
    for fraction in args.fractions:
        budgets = class_budgets(labels, fraction=fraction, balance=args.balance)
        cld_idx = select_top_per_class(scores, labels, budgets=budgets)
        name = f"coreset-cld-{100 * fraction:g}pct"
        coreset = scored.select(cld_idx).with_format(None)
        coreset.save_to_disk(str(out / name))
        info = dict(method_info, fraction=fraction, size=len(cld_idx), source_size=len(scored),
                    budgets={str(k): int(v) for k, v in budgets.items()})
        write_json(out / name / RUN_INFO_FILE, info)
        coresets[fraction] = coreset
        for seed in range(args.seeds):
            for method in args.methods:
                idx = chosen[(method, float(fraction), seed)]
                subset = train_ds.select(idx)
                _, acc = train_and_evaluate(
                    make_model(1000 + seed), subset, test,
                    output_dir=out / "target_training", epochs=args.target_epochs,
                    batch_size=args.batch_size, learning_rate=args.learning_rate, seed=seed,
                    label_column=label_column)
                row = {"fraction": fraction, "method": method, "seed": seed, "size": len(idx),
                       "accuracy": acc}
                if NOISE_COLUMN in train_ds.column_names:
                    noisy = np.asarray(subset.with_format("numpy", columns=[NOISE_COLUMN])[NOISE_COLUMN][:])
                    row["noisy_share"] = float(noisy.mean())
                runs.append(row)
                logger.info("fraction %g, %s, seed %d: accuracy %.4f", fraction, method, seed, acc)
    full = []
    if args.full_baseline:
        for seed in range(args.seeds):
            _, acc = train_and_evaluate(
                make_model(1000 + seed), train_ds, test, output_dir=out / "target_training",
                epochs=args.target_epochs, batch_size=args.batch_size,
                learning_rate=args.learning_rate, seed=seed, label_column=label_column)
            full.append(acc)
    shutil.rmtree(out / "target_training", ignore_errors=True)
    shutil.rmtree(out / "proxy_training", ignore_errors=True)

    # 3. results, plots, cards
    table = results_markdown(runs, full_accuracy=full)
    cost_table = cost_markdown(costs)
    results = {
        "arguments": asdict(args),
        "proxy_test_accuracy": proxy_acc,
        "full_data_accuracy": full,
        "runs": runs,
        "table_markdown": table,
        "costs": costs,
        "cost_markdown": cost_table,
        "recording_bytes": store.signal_nbytes(),
        "selections": str(out / "selections.arrow"),
        "seconds": None,
    }
    if args.label_noise > 0:
        train_noise = float(np.asarray(train_ds.with_format("numpy", columns=[NOISE_COLUMN])[NOISE_COLUMN][:]).mean())
        results["noisy_share_in_training_set"] = train_noise
    if args.plots:
        from .commands.plot import make_plots
        from .plots import plot_accuracy_vs_fraction

        written = make_plots(scored, out / "plots", store=store, label_column=label_column,
                             class_names=names)
        written.append(plot_accuracy_vs_fraction(
            runs, out / "plots" / "accuracy_vs_fraction.png", full_accuracy=full,
            title=f"{Path(args.dataset).name}: accuracy vs coreset fraction "
                  f"(mean ± std, {args.seeds} seed(s))"))
        results["plots"] = [str(p) for p in written]
    first = args.fractions[0]
    # Local copies of both repos with their cards, exactly as a push sends them; the namespace
    # is a placeholder unless --push-to-hub names the repo.
    repo_id = args.push_to_hub or f"your-namespace/{Path(args.dataset).name}-cld-{100 * first:g}pct"
    from .hub import export_coreset_repos

    exported = export_coreset_repos(
        coresets[first], out / "hub", repo_id=repo_id, model=proxy_trainer.model,
        model_repo_id=f"{repo_id}-proxy", method_info=dict(method_info, fraction=first),
        source_dataset=method_info["source_dataset"],
        eval_results={"accuracy": proxy_acc} if method_info["source_dataset"] else None)
    results["cards"] = [str(exported.dataset_dir / "README.md"),
                        str(exported.model_dir / "README.md")]
    if args.push_to_hub:
        from .hub import push_coreset_to_hub

        push_coreset_to_hub(coresets[first], args.push_to_hub, model=proxy_trainer.model,
                            model_repo_id=f"{args.push_to_hub}-proxy",
                            method_info=dict(method_info, fraction=first),
                            private=args.hub_private)
    results["seconds"] = time.perf_counter() - started
    write_json(out / "results.json", results)
    header = (f"# cld-hf run: {args.dataset}\n\nProxy test accuracy: {100 * proxy_acc:.2f}%. "
              f"Target test accuracy (%), mean ± std over {args.seeds} seed(s):\n\n")
    cost_header = ("\n\n## Selection cost\n\nSeconds of scoring and selection measured in this "
                   "run (all coresets of the method; per coreset in parentheses), the bytes of the "
                   "recorded signals each method reads, and the seed's Appendix E formulas (f: "
                   "proxy forward, f_large: target forward, T: epochs, k: coreset size).\n\n")
    (out / "results.md").write_text(header + table + cost_header + cost_table + "\n")
    return results
