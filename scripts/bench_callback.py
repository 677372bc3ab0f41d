"""Benchmark: per-epoch wall time of a small image model with the plain Trainer and with
CLDCallback in each mode, in one run; prints the overhead ratios and the recording cost.

A tiny ResNet (built from a config, no download) trains on scikit-learn's digits upscaled to
32x32, with a stratified 10% query hold-out. Every configuration (plain Trainer, mode="sweep",
mode="train_pass") trains for the same epochs with the same seed; the configurations take turns
(``--repeats`` rounds); the headline is the median over rounds of each round's ratio to the plain
Trainer (paired, so that slow drifts of a shared machine cancel), with the median and the best
(minimum) epoch times beside it. An
epoch is timed from ``on_epoch_begin`` to the end of ``on_epoch_end`` (after the callback's
recording), so it includes everything the callback adds; the snapshot before training
(``record_initial``) is reported separately.

    python scripts/bench_callback.py                  # ~2 minutes on 2 CPU cores
    python scripts/bench_callback.py --epochs 2 --repeats 1 --json out.json

Recording cost in the paper's terms (Appendix E.4): per recorded epoch, ``Q`` forward passes for
the query set, plus ``N`` for the training set in sweep mode, against about ``3N``
forward-equivalents for a training epoch (forward + backward). The floors of the overhead ratio
are therefore ``1 + (N + Q) / 3N`` (sweep) and ``1 + Q / 3N`` (train_pass).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time


def digits_images(size: int, query_fraction: float):
    """(train, query): scikit-learn's digits as 1-channel ``size x size`` images, split per class
    (:func:`~cld_hf.splits.stratified_split_indices`), each built with ``Dataset.from_dict`` so
    that rows are read from contiguous Arrow buffers."""
    import datasets
    import numpy as np
    import torch
    from sklearn.datasets import load_digits

    from cld_hf import stratified_split_indices

    x, y = load_digits(return_X_y=True)
    pix = torch.tensor(x.reshape(-1, 1, 8, 8) / 16.0, dtype=torch.float32)
    pix = torch.nn.functional.interpolate(pix, size=(size, size), mode="bilinear").numpy()
    features = datasets.Features({"pixel_values": datasets.Array3D((1, size, size), "float32"),
                                  "label": datasets.ClassLabel(num_classes=10)})
    train_idx, query_idx = stratified_split_indices(y, fraction=query_fraction, seed=0)

    def make(idx):
        columns = {"pixel_values": pix[idx], "label": y[idx].astype(np.int64)}
        return datasets.Dataset.from_dict(columns, features=features).with_format("torch")

    return make(train_idx), make(query_idx)


def tiny_resnet(seed: int):
    import torch
    from transformers import ResNetConfig, ResNetForImageClassification

    torch.manual_seed(seed)
    config = ResNetConfig(num_channels=1, embedding_size=32, hidden_sizes=[32, 64], depths=[1, 1],
                          layer_type="basic", num_labels=10, downsample_in_first_stage=False)
    return ResNetForImageClassification(config)


class EpochTimer:
    """A TrainerCallback (built lazily) timing each epoch and the train-begin hooks."""

    def __new__(cls):
        from transformers import TrainerCallback

        class _Timer(TrainerCallback):
            def __init__(self):
                self.epochs = []
                self.begin = None
                self._t = None

            def on_train_begin(self, args, state, control, **kwargs):
                self.begin = time.perf_counter()

            def on_epoch_begin(self, args, state, control, **kwargs):
                self._t = time.perf_counter()

            def on_epoch_end(self, args, state, control, **kwargs):
                self.epochs.append(time.perf_counter() - self._t)

        return _Timer()


def run_one(mode, train, query, args_kwargs, seed, eval_batch_size):
    from transformers import Trainer, TrainingArguments

    from cld_hf import CLDCallback

    from transformers import PrinterCallback

    before, timer = EpochTimer(), EpochTimer()
    cld = None
    with tempfile.TemporaryDirectory() as out:
        args = TrainingArguments(out, **args_kwargs, seed=seed)
        trainer = Trainer(model=tiny_resnet(seed), args=args, train_dataset=train,
                          callbacks=[before])
        if mode != "plain":  # train_pass prepares the Trainer's batches: it takes the Trainer
            cld = CLDCallback(query, mode=mode, progress=False, log_summary=False,
                              trainer=trainer if mode == "train_pass" else None,
                              sweep_batch_size=eval_batch_size)
            trainer.add_callback(cld)
        trainer.add_callback(timer)  # its on_epoch_end runs after the recording
        trainer.remove_callback(PrinterCallback)
        trainer.train()
    return {"epochs": timer.epochs, "initial_s": timer.begin - before.begin,
            "snapshots": None if cld is None else cld.recorder.num_snapshots}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=3, help="epochs per training run")
    parser.add_argument("--repeats", type=int, default=2, help="rounds over the configurations")
    parser.add_argument("--size", type=int, default=32, help="image side in pixels")
    parser.add_argument("--batch-size", type=int, default=64, help="per-device train batch size")
    parser.add_argument("--eval-batch-size", type=int, default=256,
                        help="per-device batch size of the recording sweeps")
    parser.add_argument("--query-fraction", type=float, default=0.1)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    parser.add_argument("--markdown", help="also write the table to this Markdown file")
    args = parser.parse_args(argv)

    import torch
    import transformers

    transformers.logging.set_verbosity_error()
    torch.set_num_threads(args.threads)
    train, query = digits_images(args.size, args.query_fraction)
    n, q = len(train), len(query)
    args_kwargs = dict(num_train_epochs=args.epochs, per_device_train_batch_size=args.batch_size,
                       per_device_eval_batch_size=args.eval_batch_size, learning_rate=0.05,
                       optim="sgd", save_strategy="no", logging_strategy="no", report_to=[],
                       disable_tqdm=True, use_cpu=True, dataloader_num_workers=0)
    modes = ["plain", "sweep", "train_pass"]
    runs = {m: [] for m in modes}
    for _ in range(args.repeats):
        for m in modes:
            runs[m].append(run_one(m, train, query, args_kwargs, seed=0,
                                   eval_batch_size=args.eval_batch_size))

    def epoch_times(m):
        return [t for r in runs[m] for t in r["epochs"]]

    median = {m: statistics.median(epoch_times(m)) for m in modes}
    best = {m: min(epoch_times(m)) for m in modes}  # robust to other jobs on a shared machine
    # Paired: within a round the configurations run back to back, so slow drifts of the machine
    # cancel in the ratio; the median over rounds is the headline figure.
    def round_median(m, r):
        return statistics.median(runs[m][r]["epochs"])

    paired = {m: [round_median(m, r) / round_median("plain", r) for r in range(args.repeats)]
              for m in modes}
    floors = {"sweep": 1 + (n + q) / (3 * n), "train_pass": 1 + q / (3 * n)}
    print(f"tiny ResNet ({sum(p.numel() for p in tiny_resnet(0).parameters()):,} parameters) on "
          f"digits {args.size}x{args.size}; N={n} training, Q={q} query samples; batch "
          f"{args.batch_size}, sweep batch {args.eval_batch_size}; {args.epochs} epochs x "
          f"{args.repeats} rounds; torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"{'configuration':<22}{'paired ratio':>13}{'(rounds min-max)':>18}"
          f"{'median epoch (s)':>17}{'best epoch (s)':>15}{'floor':>7}{'extra fwd/epoch':>16}")
    extra = {"plain": 0, "sweep": n + q, "train_pass": q}
    for m in modes:
        name = "plain Trainer" if m == "plain" else f"CLDCallback {m}"
        spread = f"{min(paired[m]):.3f}-{max(paired[m]):.3f}"
        print(f"{name:<22}{statistics.median(paired[m]):>13.3f}{spread:>18}{median[m]:>17.3f}"
              f"{best[m]:>15.3f}{floors.get(m, 1.0):>7.3f}{extra[m]:>16,}")
    initial = {m: statistics.median(r["initial_s"] for r in runs[m]) for m in modes[1:]}
    print(f"snapshot 0 before training (record_initial): sweep {initial['sweep']:.3f} s, "
          f"train_pass {initial['train_pass']:.3f} s (both sweep N + Q = {n + q:,} samples)")
    per_sample = statistics.mean([initial["sweep"], initial["train_pass"]]) / (n + q)
    sweep_s, query_s = per_sample * (n + q), per_sample * q
    print(f"from that sweep, less noisy than the epoch ratios: the per-epoch recording adds "
          f"~{sweep_s:.3f} s in sweep mode ({sweep_s / median['plain']:.1%} of a plain epoch) "
          f"and ~{query_s:.3f} s for the query sweep in train_pass mode "
          f"({query_s / median['plain']:.1%}) plus the loss hook")
    print(f"paper terms (Appendix E.4): a training epoch costs ~3N = {3 * n:,} forward-equivalents;"
          f" recording adds Q = {q:,} forwards (train_pass) or N + Q = {n + q:,} (sweep) per "
          f"recorded epoch, i.e. {q / (3 * n):.1%} or {(n + q) / (3 * n):.1%}.")
    results = {"N": n, "Q": q, "median_epoch_s": median, "best_epoch_s": best,
               "ratio_paired": {m: statistics.median(paired[m]) for m in modes},
               "ratio_paired_rounds": paired, "floor": floors,
               "epoch_times_s": {m: epoch_times(m) for m in modes}, "initial_snapshot_s": initial,
               "extra_forwards_per_epoch": extra}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    if args.markdown:
        rows = ["| configuration | epoch time ratio (rounds) | floor `1 + extra forwards / 3N` | "
                "extra forwards per epoch |", "|---|---|---|---|"]
        for m in modes:
            name = "plain Trainer" if m == "plain" else f'`CLDCallback(mode="{m}")`'
            rows.append(f"| {name} | {statistics.median(paired[m]):.2f} "
                        f"({min(paired[m]):.2f}-{max(paired[m]):.2f}) | "
                        f"{floors.get(m, 1.0):.2f} | {extra[m]:,} |")
        rows.append(f"\nN = {n:,} training and Q = {q:,} query samples, batch {args.batch_size}, "
                    f"sweep batch {args.eval_batch_size}, {args.epochs} epochs x {args.repeats} "
                    f"rounds, {torch.get_num_threads()} torch thread(s). Measured from the "
                    f"snapshot-0 sweep: the per-epoch recording adds ~{sweep_s:.3f} s in sweep "
                    f"mode ({sweep_s / median['plain']:.0%} of a plain epoch) and ~{query_s:.3f} s "
                    f"of query sweep in train_pass mode ({query_s / median['plain']:.0%}).")
        with open(args.markdown, "w") as f:
            f.write("\n".join(rows) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
