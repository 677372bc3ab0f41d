"""Benchmark: per-epoch wall time of an image model with the plain Trainer and with CLDCallback
in each mode, in one run; prints the overhead ratios, the samples/s and the recording cost.

Two presets (``--preset``):

- ``cpu`` (default): a tiny ResNet (built from a config, no download) trains on scikit-learn's
  digits upscaled to 32x32, with a stratified 10% query hold-out; batch 64, sweep batch 256, one
  torch thread, no DataLoader workers.
- ``gpu``: a ResNet-18-sized ``transformers.ResNetConfig`` model (11.2M parameters, built
  locally) trains on CIFAR-shaped synthetic data made in the script (no download): N = 50,000
  training and Q = 5,000 query images of 3x32x32 float32 from a fixed-seed generator, each class
  a smooth pattern of its own plus noise (the nearest pattern names the class of ~85% of the
  images), so that the model learns without saturating; batch 256, sweep batch 1024,
  8 DataLoader workers, pinned memory, ``--bf16`` for bf16 autocast in training. It needs a
  CUDA device, and exits with a one-line error without one. An untimed warm-up (a few training
  steps and a sweep-sized forward) initialises CUDA and cuDNN before the timed runs.

Every configuration (plain Trainer, mode="sweep", mode="train_pass") trains for the same epochs
with the same seed; the configurations take turns (``--repeats`` rounds); the headline is the
median over rounds of each round's ratio to the plain Trainer (paired, so that slow drifts of a
shared machine cancel), with the median and the best (minimum) epoch times beside it. An
epoch is timed from ``on_epoch_begin`` to the end of ``on_epoch_end`` (after the callback's
recording), so it includes everything the callback adds; the snapshot before training
(``record_initial``) is reported separately. On a GPU every timing point first calls
``torch.cuda.synchronize()``, so that queued kernels count in the epoch that launched them.

The recording itself is timed from outside the library: a pair of timing callbacks sits just
before and just after the CLDCallback in the Trainer's callback list, so the time between the
first's ``on_epoch_end`` and the second's is the callback's ``on_epoch_end`` alone (the sweep of
N + Q samples in sweep mode, of the Q query samples in train_pass mode, and the write of the
snapshot). Dividing the samples swept by it gives the sweeps' samples/s; the same pair times
``on_train_begin``, i.e. snapshot 0 (N + Q samples in both modes).

    python scripts/bench_callback.py                  # ~2 minutes on 2 CPU cores
    python scripts/bench_callback.py --epochs 2 --repeats 1 --json out.json

On a machine with one CUDA GPU, one command (an estimate, not yet measured: 2-4 minutes on one
H200, for 18 timed epochs of 50,000 images, 12 recording sweeps, the synthetic data and the
warm-up; it logs each run's epoch times as it goes)::

    python scripts/bench_callback.py --preset gpu --json gpu.json --markdown gpu.md

With several GPUs visible, pick one (``CUDA_VISIBLE_DEVICES=0``): the Trainer would otherwise
wrap the model in ``DataParallel``, which ``mode="train_pass"`` refuses. The sweeps of
CLDCallback run in the model's dtype (float32) under ``--bf16`` too: the callback gives the
recorder no autocast.

Recording cost in the paper's terms (Appendix E.4): per recorded epoch, ``Q`` forward passes for
the query set, plus ``N`` for the training set in sweep mode, against about ``3N``
forward-equivalents for a training epoch (forward + backward). The floors of the overhead ratio
are therefore ``1 + (N + Q) / 3N`` (sweep) and ``1 + Q / 3N`` (train_pass).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import logging
import statistics
import sys
import tempfile
import time

logger = logging.getLogger("bench_callback")

MODES = ["plain", "sweep", "train_pass"]
# The defaults of each preset; an option given on the command line overrides its preset's value.
PRESETS = {
    "cpu": {"epochs": 3, "repeats": 2, "size": 32, "batch_size": 64, "eval_batch_size": 256,
            "query_fraction": 0.1, "threads": 1, "num_workers": 0, "warmup_steps": 0},
    "gpu": {"epochs": 3, "repeats": 2, "size": 32, "batch_size": 256, "eval_batch_size": 1024,
            "num_train": 50_000, "num_query": 5_000, "threads": None, "num_workers": 8,
            "warmup_steps": 5},
}
PRESET_ONLY = {"query_fraction": "cpu", "num_train": "gpu", "num_query": "gpu"}


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


def synthetic_images(num_train: int, num_query: int, *, size: int = 32, channels: int = 3,
                     num_classes: int = 10, signal: float = 0.07, seed: int = 0,
                     chunk: int = 8192):
    """(train, query): CIFAR-shaped synthetic images, made here from a fixed-seed generator.

    Each class has a smooth pattern of its own (a ``channels x 4 x 4`` normal draw upsampled to
    ``size x size``); an image is ``signal`` times its class's pattern plus standard normal noise,
    as float32 ``pixel_values`` of shape ``(channels, size, size)`` with a ``label`` column.
    The classes take turns (``i % num_classes``, then shuffled in the training set), so both sets
    are balanced and every class has query samples when ``num_query >= num_classes``. The same
    arguments give the same images. With the default ``signal``, the nearest pattern names the
    class of about 85% of the 32x32 images: learnable, with hard samples left.

    Examples
    --------
    >>> train, query = synthetic_images(40, 20, size=8)
    >>> len(train), len(query), tuple(train[0]["pixel_values"].shape)
    (40, 20, (3, 8, 8))
    >>> sorted(set(query[:]["label"].tolist())) == list(range(10))
    True
    """
    import datasets
    import numpy as np
    import torch

    gen = torch.Generator().manual_seed(seed)
    patterns = torch.randn(num_classes, channels, 4, 4, generator=gen)
    patterns = signal * torch.nn.functional.interpolate(patterns, size=(size, size),
                                                        mode="bilinear", align_corners=False)
    features = datasets.Features({
        "pixel_values": datasets.Array3D((channels, size, size), "float32"),
        "label": datasets.ClassLabel(num_classes=num_classes)})

    def make(n, shuffle):
        labels = torch.arange(n) % num_classes
        if shuffle:
            labels = labels[torch.randperm(n, generator=gen)]
        pix = np.empty((n, channels, size, size), np.float32)
        for start in range(0, n, chunk):  # in chunks: no second full-size float tensor
            y = labels[start:start + chunk]
            noise = torch.randn(len(y), channels, size, size, generator=gen)
            pix[start:start + chunk] = (patterns[y] + noise).numpy()
        columns = {"pixel_values": pix, "label": labels.numpy().astype(np.int64)}
        return datasets.Dataset.from_dict(columns, features=features).with_format("torch")

    return make(num_train, shuffle=True), make(num_query, shuffle=False)


def tiny_resnet(seed: int):
    """The ``cpu`` preset's model: a two-stage basic-block ResNet on 1-channel images."""
    import torch
    from transformers import ResNetConfig, ResNetForImageClassification

    torch.manual_seed(seed)
    config = ResNetConfig(num_channels=1, embedding_size=32, hidden_sizes=[32, 64], depths=[1, 1],
                          layer_type="basic", num_labels=10, downsample_in_first_stage=False)
    return ResNetForImageClassification(config)


def resnet18(seed: int, *, num_channels: int = 3, num_labels: int = 10):
    """The ``gpu`` preset's model: ResNet-18's layout (basic blocks, depths 2-2-2-2, widths
    64-512) as a ``transformers.ResNetConfig``, randomly initialised with ``seed``.

    Examples
    --------
    >>> f"{sum(p.numel() for p in resnet18(0).parameters()):,}"
    '11,181,642'
    """
    import torch
    from transformers import ResNetConfig, ResNetForImageClassification

    torch.manual_seed(seed)
    config = ResNetConfig(num_channels=num_channels, embedding_size=64,
                          hidden_sizes=[64, 128, 256, 512], depths=[2, 2, 2, 2],
                          layer_type="basic", num_labels=num_labels)
    return ResNetForImageClassification(config)


def timing_pair(*, cuda: bool = False):
    """``(before, after)``: two TrainerCallbacks that time the epochs and, when the CLDCallback
    sits between them in the callback list, its recording alone.

    ``after`` collects ``epochs`` (seconds from ``on_epoch_begin`` to its ``on_epoch_end``),
    ``recording`` (seconds from ``before``'s ``on_epoch_end`` to its own: the callbacks between
    them) and ``initial_s`` (the same for ``on_train_begin``: snapshot 0). With ``cuda=True``
    each timing point calls ``torch.cuda.synchronize()`` first.

    Examples
    --------
    >>> before, after = timing_pair()
    >>> trainer = Trainer(model, args, train_dataset=train, callbacks=[before])  # doctest: +SKIP
    >>> trainer.add_callback(CLDCallback(query))                                # doctest: +SKIP
    >>> trainer.add_callback(after)                                             # doctest: +SKIP
    >>> after.epochs, after.recording, after.initial_s
    ([], [], None)
    """
    import torch
    from transformers import TrainerCallback

    def now():
        if cuda:
            torch.cuda.synchronize()
        return time.perf_counter()

    class _Before(TrainerCallback):
        def __init__(self):
            self.train_begin = None
            self.epoch_end = None

        def on_train_begin(self, args, state, control, **kwargs):
            self.train_begin = now()

        def on_epoch_end(self, args, state, control, **kwargs):
            self.epoch_end = now()

    class _After(TrainerCallback):
        def __init__(self, first):
            self.before = first
            self.epochs, self.recording = [], []
            self.initial_s = None
            self._t = None

        def on_train_begin(self, args, state, control, **kwargs):
            self.initial_s = now() - self.before.train_begin

        def on_epoch_begin(self, args, state, control, **kwargs):
            self._t = now()

        def on_epoch_end(self, args, state, control, **kwargs):
            t = now()
            self.epochs.append(t - self._t)
            self.recording.append(t - self.before.epoch_end)

    before = _Before()
    return before, _After(before)


def warm_up(model, *, size: int, channels: int, batch_size: int, eval_batch_size: int,
            steps: int = 5, device: str = "cuda", bf16: bool = False) -> float:
    """A few untimed training steps at ``batch_size`` and one eval-mode forward at
    ``eval_batch_size`` on random inputs, so that the first timed epoch and sweep do not pay for
    CUDA's context, cuDNN's handles and the lazy loading of kernels. Returns its seconds.

    Examples
    --------
    >>> s = warm_up(tiny_resnet(0), size=8, channels=1, batch_size=4, eval_batch_size=8,
    ...             steps=1, device="cpu")
    >>> s > 0
    True
    """
    import torch

    start = time.perf_counter()
    model = model.to(device)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    amp = (torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16) if bf16
           else contextlib.nullcontext())
    labels = torch.zeros(batch_size, dtype=torch.long, device=device)
    for _ in range(steps):
        x = torch.randn(batch_size, channels, size, size, device=device)
        with amp:
            loss = model(pixel_values=x, labels=labels).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
    model.eval()
    with torch.inference_mode():
        model(pixel_values=torch.randn(eval_batch_size, channels, size, size, device=device))
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def run_one(mode, train, query, args_kwargs, seed, eval_batch_size, *, make_model=tiny_resnet,
            cuda=False):
    """One training run of ``mode`` (``plain``, ``sweep`` or ``train_pass``): its epoch and
    recording times, the snapshot-0 time and, with a CLDCallback, the mean query loss of the
    first and the last snapshot."""
    from transformers import PrinterCallback, Trainer, TrainingArguments

    from cld_hf import CLDCallback

    before, timer = timing_pair(cuda=cuda)
    cld = None
    query_loss = None
    with tempfile.TemporaryDirectory() as out:
        args = TrainingArguments(out, **args_kwargs, seed=seed)
        trainer = Trainer(model=make_model(seed), args=args, train_dataset=train,
                          callbacks=[before])
        if mode != "plain":  # train_pass prepares the Trainer's batches: it takes the Trainer
            cld = CLDCallback(query, mode=mode, progress=False, log_summary=False,
                              trainer=trainer if mode == "train_pass" else None,
                              sweep_batch_size=eval_batch_size)
            trainer.add_callback(cld)
        trainer.add_callback(timer)  # its on_epoch_end runs right after the recording
        trainer.remove_callback(PrinterCallback)
        trainer.train()
        if cld is not None:
            losses = cld.store.query_losses()
            query_loss = [float(losses[:, 0].mean()), float(losses[:, -1].mean())]
    snapshots = None if cld is None else cld.recorder.num_snapshots
    if args_kwargs.get("dataloader_persistent_workers") or cuda:
        # Free this run's persistent DataLoader workers and its model's GPU memory now, not at
        # some later garbage collection during another run's timed epochs.
        del trainer, cld
        gc.collect()
    return {"epochs": timer.epochs, "initial_s": timer.initial_s,
            "recording": timer.recording if mode != "plain" else [],
            "snapshots": snapshots, "query_loss_first_last": query_loss}


def parse_args(argv=None):
    """The options, each left unset on the command line taking its preset's value."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=sorted(PRESETS), default="cpu",
                        help="cpu: tiny ResNet on digits (default); gpu: ResNet-18 on CIFAR-shaped "
                             "synthetic data, on a CUDA device")
    parser.add_argument("--epochs", type=int, help="epochs per training run (3)")
    parser.add_argument("--repeats", type=int, help="rounds over the configurations (2)")
    parser.add_argument("--size", type=int, help="image side in pixels (32)")
    parser.add_argument("--batch-size", type=int,
                        help="per-device train batch size (cpu 64, gpu 256)")
    parser.add_argument("--eval-batch-size", type=int,
                        help="per-device batch size of the recording sweeps (cpu 256, gpu 1024)")
    parser.add_argument("--query-fraction", type=float,
                        help="cpu preset: stratified query hold-out of digits (0.1)")
    parser.add_argument("--num-train", type=int, help="gpu preset: training images (50,000)")
    parser.add_argument("--num-query", type=int, help="gpu preset: query images (5,000)")
    parser.add_argument("--num-workers", type=int,
                        help="DataLoader workers of training and sweeps (cpu 0, gpu 8)")
    parser.add_argument("--threads", type=int,
                        help="torch CPU threads (cpu 1; gpu: torch's default)")
    parser.add_argument("--warmup-steps", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--bf16", action="store_true",
                        help="bf16 autocast in training (TrainingArguments(bf16=True))")
    # Testing only: the gpu preset's code path on CPU (a smoke test with a tiny --num-train).
    parser.add_argument("--allow-cpu", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--json", help="also write the figures to this JSON file")
    parser.add_argument("--markdown", help="also write the table to this Markdown file")
    args = parser.parse_args(argv)
    for name, preset in PRESET_ONLY.items():
        if getattr(args, name) is not None and args.preset != preset:
            parser.error(f"--{name.replace('_', '-')} belongs to --preset {preset}")
    for name, value in PRESETS[args.preset].items():
        if getattr(args, name, None) is None:
            setattr(args, name, value)
    return args


def summarise(runs: dict, *, n: int, q: int, repeats: int) -> dict:
    """The figures of the runs of each configuration (``MODES``): epoch times, paired ratios,
    floors, recording times and samples/s."""
    def epoch_times(m):
        return [t for r in runs[m] for t in r["epochs"]]

    median = {m: statistics.median(epoch_times(m)) for m in MODES}
    best = {m: min(epoch_times(m)) for m in MODES}  # robust to other jobs on a shared machine
    # Paired: within a round the configurations run back to back, so slow drifts of the machine
    # cancel in the ratio; the median over rounds is the headline figure.
    def round_median(m, r):
        return statistics.median(runs[m][r]["epochs"])

    paired = {m: [round_median(m, r) / round_median("plain", r) for r in range(repeats)]
              for m in MODES}
    floors = {"sweep": 1 + (n + q) / (3 * n), "train_pass": 1 + q / (3 * n)}
    extra = {"plain": 0, "sweep": n + q, "train_pass": q}
    recorded = MODES[1:]
    initial = {m: statistics.median(r["initial_s"] for r in runs[m]) for m in recorded}
    per_sample = statistics.mean([initial["sweep"], initial["train_pass"]]) / (n + q)
    recording_times = {m: [t for r in runs[m] for t in r["recording"]] for m in recorded}
    recording = {m: statistics.median(recording_times[m]) for m in recorded}
    swept = {"sweep": n + q, "train_pass": q}  # samples swept per recorded epoch
    return {"N": n, "Q": q, "median_epoch_s": median, "best_epoch_s": best,
            "ratio_paired": {m: statistics.median(paired[m]) for m in MODES},
            "ratio_paired_rounds": paired, "floor": floors,
            "epoch_times_s": {m: epoch_times(m) for m in MODES}, "initial_snapshot_s": initial,
            "extra_forwards_per_epoch": extra,
            "estimated_from_initial_s": {"sweep": per_sample * (n + q),
                                         "train_pass": per_sample * q},
            "train_samples_per_s": {m: n / median[m] for m in MODES},
            "recording_epoch_s": recording, "recording_times_s": recording_times,
            "recording_samples": swept,
            "recording_samples_per_s": {m: swept[m] / recording[m] for m in recorded},
            "initial_snapshot_samples_per_s": {m: (n + q) / initial[m] for m in recorded},
            "query_loss_first_last": {m: runs[m][-1]["query_loss_first_last"]
                                      for m in recorded}}


def describe(results: dict) -> list[str]:
    """The printed report: a header, the table, and the recording and paper-terms lines."""
    r = results
    n, q, modes = r["N"], r["Q"], MODES
    median, paired, floors, extra = (r["median_epoch_s"], r["ratio_paired_rounds"], r["floor"],
                                     r["extra_forwards_per_epoch"])
    lines = [f"{r['model']} ({r['parameters']:,} parameters) on {r['data']}; N={n} training, "
             f"Q={q} query samples; batch {r['batch_size']}, sweep batch {r['eval_batch_size']}; "
             f"{r['epochs']} epochs x {r['repeats']} rounds; {r['device']}"
             f"{', bf16 autocast' if r['bf16'] else ''}; {r['num_workers']} DataLoader "
             f"worker(s); torch {r['torch']}, {r['threads']} threads",
             f"{'configuration':<22}{'paired ratio':>13}{'(rounds min-max)':>18}"
             f"{'median epoch (s)':>17}{'best epoch (s)':>15}{'samples/s':>11}{'floor':>7}"
             f"{'extra fwd/epoch':>16}{'recording (s)':>14}{'swept/s':>10}"]
    for m in modes:
        name = "plain Trainer" if m == "plain" else f"CLDCallback {m}"
        spread = f"{min(paired[m]):.3f}-{max(paired[m]):.3f}"
        rec = (f"{r['recording_epoch_s'][m]:>14.3f}{r['recording_samples_per_s'][m]:>10,.0f}"
               if m != "plain" else f"{'-':>14}{'-':>10}")
        lines.append(f"{name:<22}{statistics.median(paired[m]):>13.3f}{spread:>18}"
                     f"{median[m]:>17.3f}{r['best_epoch_s'][m]:>15.3f}"
                     f"{r['train_samples_per_s'][m]:>11,.0f}{floors.get(m, 1.0):>7.3f}"
                     f"{extra[m]:>16,}{rec}")
    initial, rate0 = r["initial_snapshot_s"], r["initial_snapshot_samples_per_s"]
    rec, rate = r["recording_epoch_s"], r["recording_samples_per_s"]
    lines.append(f"recording per epoch, timed around CLDCallback.on_epoch_end (median): sweep "
                 f"{rec['sweep']:.3f} s for N + Q = {n + q:,} samples ({rate['sweep']:,.0f} "
                 f"samples/s), train_pass {rec['train_pass']:.3f} s for the Q = {q:,} query "
                 f"samples ({rate['train_pass']:,.0f} samples/s)")
    lines.append(f"snapshot 0 before training (record_initial): sweep {initial['sweep']:.3f} s, "
                 f"train_pass {initial['train_pass']:.3f} s (both sweep N + Q = {n + q:,} "
                 f"samples: {rate0['sweep']:,.0f} and {rate0['train_pass']:,.0f} samples/s)")
    sweep_s, query_s = r["estimated_from_initial_s"]["sweep"], \
        r["estimated_from_initial_s"]["train_pass"]
    lines.append(f"from that sweep, less noisy than the epoch ratios: the per-epoch recording "
                 f"adds ~{sweep_s:.3f} s in sweep mode ({sweep_s / median['plain']:.1%} of a "
                 f"plain epoch) and ~{query_s:.3f} s for the query sweep in train_pass mode "
                 f"({query_s / median['plain']:.1%}) plus the loss hook")
    lines.append(f"paper terms (Appendix E.4): a training epoch costs ~3N = {3 * n:,} "
                 f"forward-equivalents; recording adds Q = {q:,} forwards (train_pass) or "
                 f"N + Q = {n + q:,} (sweep) per recorded epoch, i.e. {q / (3 * n):.1%} or "
                 f"{(n + q) / (3 * n):.1%}.")
    first, last = r["query_loss_first_last"]["sweep"]
    lines.append(f"mean query loss (sweep run), snapshot 0 -> last: {first:.3f} -> {last:.3f}")
    return lines


def markdown(results: dict) -> str:
    """The Markdown table and its note."""
    r = results
    n, q, paired = r["N"], r["Q"], r["ratio_paired_rounds"]
    rows = ["| configuration | epoch time ratio (rounds) | floor `1 + extra forwards / 3N` | "
            "extra forwards per epoch | samples/s | recording per epoch: s (swept samples/s) |",
            "|---|---|---|---|---|---|"]
    for m in MODES:
        name = "plain Trainer" if m == "plain" else f'`CLDCallback(mode="{m}")`'
        rec = ("-" if m == "plain" else f"{r['recording_epoch_s'][m]:.3f} "
               f"({r['recording_samples_per_s'][m]:,.0f})")
        rows.append(f"| {name} | {statistics.median(paired[m]):.2f} "
                    f"({min(paired[m]):.2f}-{max(paired[m]):.2f}) | "
                    f"{r['floor'].get(m, 1.0):.2f} | {r['extra_forwards_per_epoch'][m]:,} | "
                    f"{r['train_samples_per_s'][m]:,.0f} | {rec} |")
    sweep_s, query_s = (r["estimated_from_initial_s"][m] for m in ("sweep", "train_pass"))
    plain = r["median_epoch_s"]["plain"]
    rows.append(f"\n{r['model']} on {r['data']}, {r['device']}"
                f"{' (bf16 autocast)' if r['bf16'] else ''}. N = {n:,} training and Q = {q:,} "
                f"query samples, batch {r['batch_size']}, sweep batch {r['eval_batch_size']}, "
                f"{r['epochs']} epochs x {r['repeats']} rounds, {r['threads']} torch thread(s), "
                f"{r['num_workers']} DataLoader worker(s). Measured from the snapshot-0 sweep "
                f"({r['initial_snapshot_samples_per_s']['sweep']:,.0f} samples/s): the "
                f"per-epoch recording adds ~{sweep_s:.3f} s in sweep mode ({sweep_s / plain:.0%} "
                f"of a plain epoch) and ~{query_s:.3f} s of query sweep in train_pass mode "
                f"({query_s / plain:.0%}). Samples/s: N over the median epoch; the recording is "
                f"timed around `CLDCallback.on_epoch_end` (N + Q samples swept in sweep mode, Q "
                f"in train_pass mode).")
    return "\n".join(rows) + "\n"


def main(argv=None) -> int:
    args = parse_args(argv)
    # The script's progress at INFO; the library's warnings only (not its per-snapshot lines).
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s",
                        datefmt="%H:%M:%S")
    logger.setLevel(logging.INFO)

    import torch
    import transformers

    gpu = args.preset == "gpu"
    cuda = gpu and torch.cuda.is_available() and not args.allow_cpu
    if gpu and not cuda and not args.allow_cpu:
        sys.exit("bench_callback.py: error: --preset gpu needs a CUDA device, and "
                 "torch.cuda.is_available() is False here; run the cpu preset (the default).")
    if cuda and torch.cuda.device_count() > 1:
        sys.exit(f"bench_callback.py: error: {torch.cuda.device_count()} CUDA devices are "
                 f"visible; the benchmark uses one: run it with CUDA_VISIBLE_DEVICES=0.")
    transformers.logging.set_verbosity_error()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    start = time.perf_counter()
    if gpu:
        train, query = synthetic_images(args.num_train, args.num_query, size=args.size)
        channels, make_model, model_name = 3, resnet18, "ResNet-18"
        data = f"synthetic CIFAR-shaped 3x{args.size}x{args.size}"
    else:
        train, query = digits_images(args.size, args.query_fraction)
        channels, make_model, model_name = 1, tiny_resnet, "tiny ResNet"
        data = f"digits {args.size}x{args.size}"
    n, q = len(train), len(query)
    logger.info("data: %s, N=%d, Q=%d (%.1f s)", data, n, q, time.perf_counter() - start)
    args_kwargs = dict(num_train_epochs=args.epochs, per_device_train_batch_size=args.batch_size,
                       per_device_eval_batch_size=args.eval_batch_size, learning_rate=0.05,
                       optim="sgd", save_strategy="no", logging_strategy="no", report_to=[],
                       disable_tqdm=True, use_cpu=not cuda,
                       dataloader_num_workers=args.num_workers)
    if gpu:  # what a GPU run would use: pinned host memory, workers kept across epochs
        args_kwargs.update(dataloader_pin_memory=cuda,
                           dataloader_persistent_workers=args.num_workers > 0)
    if args.bf16:
        args_kwargs["bf16"] = True
    device = torch.cuda.get_device_name(0) if cuda else "CPU"
    if args.warmup_steps:
        seconds = warm_up(make_model(0), size=args.size, channels=channels,
                          batch_size=args.batch_size, eval_batch_size=args.eval_batch_size,
                          steps=args.warmup_steps, device="cuda" if cuda else "cpu",
                          bf16=args.bf16)
        logger.info("untimed warm-up on %s: %.1f s", device, seconds)
    runs = {m: [] for m in MODES}
    for rnd in range(args.repeats):
        for m in MODES:
            runs[m].append(run_one(m, train, query, args_kwargs, seed=0,
                                   eval_batch_size=args.eval_batch_size, make_model=make_model,
                                   cuda=cuda))
            logger.info("round %d/%d, %s: epochs %s s", rnd + 1, args.repeats, m,
                        ", ".join(f"{t:.2f}" for t in runs[m][-1]["epochs"]))
    results = summarise(runs, n=n, q=q, repeats=args.repeats)
    results.update(
        preset=args.preset, model=model_name, data=data, device=device, bf16=args.bf16,
        parameters=sum(p.numel() for p in make_model(0).parameters()),
        batch_size=args.batch_size, eval_batch_size=args.eval_batch_size, epochs=args.epochs,
        repeats=args.repeats, num_workers=args.num_workers, threads=torch.get_num_threads(),
        torch=torch.__version__, total_s=time.perf_counter() - start)
    print("\n".join(describe(results)))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(markdown(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
