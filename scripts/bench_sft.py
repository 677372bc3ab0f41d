"""Benchmark: recording overhead of CLDCallback on a TRL SFTTrainer run, as a ratio to the plain
SFTTrainer epoch, measured in one run.

A tiny GPT-2 (built from a config) is fine-tuned on docstrings of the Python standard library
with a byte-level BPE tokenizer trained locally (no download); a held-out share of the documents
is the query set, given raw (``CLDCallback(raw_query, trainer=trainer)`` prepares it). The
configurations (plain SFTTrainer, ``mode="sweep"``, ``mode="train_pass"``, and ``mode="sweep"``
with ``packing=True`` against a plain packed run) train for the same epochs with the same seed
and take turns in every round (``--repeats``), so that slow drifts of a shared machine cancel in
each round's ratio; the headline is the median over rounds of the paired ratios, with their
spread (min-max). An epoch is timed from ``on_epoch_begin`` to the end of ``on_epoch_end``
(after the callback's recording), so it includes everything the callback adds per epoch; the
snapshot before training is reported apart. The load average of the machine is printed before
and after every round.

    python scripts/bench_sft.py                    # ~9 minutes on 2 busy CPU cores
    python scripts/bench_sft.py --configs plain sweep train_pass   # ~3 minutes, no packing
    python scripts/bench_sft.py --epochs 1 --repeats 1 --docs 40 --json out.json

Recording cost in the paper's terms (Appendix E.4): per recorded epoch ``Q`` forwards for the
query set, plus ``N`` for the training documents in sweep mode, against about ``3N``
forward-equivalents for a training epoch, i.e. ratios of about ``1 + (N + Q) / 3N`` (sweep)
and ``1 + Q / 3N`` (train_pass), printed as "paper est.". An eval-mode forward without labels'
gradients costs less than a third of a training step here, so the measured costs are lower.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time

MODULES = ("json", "os", "os.path", "collections", "textwrap", "string", "functools",
           "itertools", "heapq", "bisect", "shlex", "fnmatch", "difflib", "statistics", "re",
           "pathlib", "argparse", "inspect", "typing", "dataclasses", "enum", "random", "math",
           "datetime", "logging", "subprocess", "shutil", "tempfile", "csv", "zipfile")


def docstrings(limit: int, max_chars: int):
    """Up to ``limit`` distinct docstrings of standard-library modules, whitespace-normalised."""
    import importlib
    import inspect

    seen, texts = set(), []
    for module_name in MODULES:
        module = importlib.import_module(module_name)
        for name in sorted(dir(module)):
            if name.startswith("_"):
                continue
            doc = inspect.getdoc(getattr(module, name, None))
            text = " ".join((doc or "").split())[:max_chars]
            if len(text) >= 60 and text not in seen:
                seen.add(text)
                texts.append(text)
            if len(texts) == limit:
                return texts
    return texts


def tokenizer_for(texts, vocab_size: int):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(texts, trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=["<pad>", "<eos>", "<unk>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False))
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>",
                                   unk_token="<unk>")


def tiny_gpt2(vocab_size: int, seed: int, width: int, layers: int):
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    config = GPT2Config(vocab_size=vocab_size, n_positions=512, n_embd=width, n_layer=layers,
                        n_head=4, pad_token_id=0, eos_token_id=1, bos_token_id=1)
    return GPT2LMHeadModel(config)


class EpochTimer:
    """A TrainerCallback (built lazily) timing each epoch and the train-begin hooks."""

    def __new__(cls):
        from transformers import TrainerCallback

        class _Timer(TrainerCallback):
            def __init__(self):
                self.epochs, self.begin, self._t = [], None, None

            def on_train_begin(self, args, state, control, **kwargs):
                self.begin = time.perf_counter()

            def on_epoch_begin(self, args, state, control, **kwargs):
                self._t = time.perf_counter()

            def on_epoch_end(self, args, state, control, **kwargs):
                self.epochs.append(time.perf_counter() - self._t)

        return _Timer()


CONFIGS = {  # name: (CLD mode or None, packing)
    "plain": (None, False),
    "sweep": ("sweep", False),
    "train_pass": ("train_pass", False),
    "plain packed": (None, True),
    "sweep packed": ("sweep", True),
}


def run_one(name, train, query, tokenizer, options, seed):
    from transformers import PrinterCallback
    from trl import SFTConfig, SFTTrainer

    from cld_hf import CLDCallback

    mode, packing = CONFIGS[name]
    before, timer = EpochTimer(), EpochTimer()
    with tempfile.TemporaryDirectory() as out:
        args = SFTConfig(out, packing=packing, seed=seed, **options)
        trainer = SFTTrainer(model=bench_model(tokenizer, seed), args=args, train_dataset=train,
                             processing_class=tokenizer)
        trainer.remove_callback(PrinterCallback)
        trainer.add_callback(before)
        cld = None
        if mode is not None:
            extra = {"train_dataset": train} if packing else {}
            cld = CLDCallback(query, trainer=trainer, mode=mode, progress=False,
                              log_summary=False, **extra)
            trainer.add_callback(cld)
        trainer.add_callback(timer)  # its on_epoch_end runs after the recording
        trainer.train()
    return {"epochs": timer.epochs, "initial_s": timer.begin - before.begin,
            "snapshots": None if cld is None else cld.recorder.num_snapshots}


_MODEL = {"width": 64, "layers": 2}  # set from the command line


def bench_model(tokenizer, seed):
    return tiny_gpt2(len(tokenizer), seed, _MODEL["width"], _MODEL["layers"])


def load() -> str:
    try:
        one, five, _ = os.getloadavg()
    except OSError:  # pragma: no cover - not on this platform
        return "load n/a"
    return f"load {one:.2f} (1 min) {five:.2f} (5 min) on {os.cpu_count()} cores"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=int, default=330, help="documents (training + query)")
    parser.add_argument("--query-fraction", type=float, default=0.1)
    parser.add_argument("--max-chars", type=int, default=400, help="characters per document")
    parser.add_argument("--max-length", type=int, default=128, help="SFTConfig.max_length")
    parser.add_argument("--epochs", type=int, default=2, help="epochs per training run")
    parser.add_argument("--repeats", type=int, default=3, help="rounds over the configurations")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--eval-batch-size", type=int, default=32,
                        help="per-device batch size of the recording sweeps")
    parser.add_argument("--width", type=int, default=64, help="GPT-2 n_embd")
    parser.add_argument("--layers", type=int, default=2, help="GPT-2 n_layer")
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--threads", type=int, default=1, help="torch threads (shared machine)")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    args = parser.parse_args(argv)

    import datasets
    import torch
    import transformers

    transformers.logging.set_verbosity_error()
    datasets.disable_progress_bars()
    torch.set_num_threads(args.threads)
    _MODEL.update(width=args.width, layers=args.layers)
    texts = docstrings(args.docs, args.max_chars)
    n_query = max(1, round(args.query_fraction * len(texts)))
    query = datasets.Dataset.from_dict({"text": texts[::len(texts) // n_query][:n_query]})
    held = set(query["text"])
    train = datasets.Dataset.from_dict({"text": [t for t in texts if t not in held]})
    tokenizer = tokenizer_for(texts, vocab_size=512)
    options = dict(num_train_epochs=args.epochs, per_device_train_batch_size=args.batch_size,
                   per_device_eval_batch_size=args.eval_batch_size, max_length=args.max_length,
                   learning_rate=1e-3, save_strategy="no", logging_strategy="no", report_to=[],
                   disable_tqdm=True, use_cpu=True, dataloader_num_workers=0)
    # Every configuration is paired with the plain run of the same packing setting.
    needed = {"plain"} | ({"plain packed"} if any("packed" in c for c in args.configs) else set())
    configs = [c for c in CONFIGS if c in set(args.configs) | needed]
    runs = {c: [] for c in configs}
    loads = [f"start: {load()}"]
    started = time.perf_counter()
    run_one("plain", train, query, tokenizer, dict(options, num_train_epochs=1), seed=0)  # warm-up
    for r in range(args.repeats):
        # Alternate the order, so that no configuration always runs first or last in a round.
        for c in (configs if r % 2 == 0 else configs[::-1]):
            runs[c].append(run_one(c, train, query, tokenizer, dict(options), seed=0))
        loads.append(f"after round {r + 1}: {load()}")
    minutes = (time.perf_counter() - started) / 60

    def round_median(c, r):
        return statistics.median(runs[c][r]["epochs"])

    def baseline(c):
        return "plain packed" if "packed" in c else "plain"

    paired = {c: [round_median(c, r) / round_median(baseline(c), r)
                  for r in range(args.repeats)] for c in configs}
    median_epoch = {c: statistics.median(t for run in runs[c] for t in run["epochs"])
                    for c in configs}
    n, q = len(train), len(query)
    floors = {"sweep": 1 + (n + q) / (3 * n), "train_pass": 1 + q / (3 * n)}  # paper's estimate
    model = bench_model(tokenizer, 0)
    size = sum(p.numel() for p in model.parameters())
    print(f"{time.strftime('%Y-%m-%d %H:%M %Z')}: tiny GPT-2 ({size:,}"
          f" parameters, width {args.width}, {args.layers} layers) on N={n} training and Q={q} "
          f"query docstrings (max_length {args.max_length}); batch {args.batch_size}, sweep "
          f"batch {args.eval_batch_size}; {args.epochs} epochs x {args.repeats} rounds; torch "
          f"{torch.__version__}, {torch.get_num_threads()} threads; {minutes:.1f} min")
    for line in loads:
        print(f"  {line}")
    print(f"{'configuration':<30}{'paired ratio':>13}{'(rounds min-max)':>18}"
          f"{'median epoch (s)':>17}{'paper est.':>11}")
    for c in configs:
        mode = CONFIGS[c][0]
        name = f"plain SFTTrainer{' (packing)' if 'packed' in c else ''}" if mode is None else (
            f"CLDCallback {mode}{' (packing)' if 'packed' in c else ''}")
        spread = f"{min(paired[c]):.3f}-{max(paired[c]):.3f}"
        floor = floors.get(mode, 1.0) if mode else 1.0
        print(f"{name:<30}{statistics.median(paired[c]):>13.3f}{spread:>18}"
              f"{median_epoch[c]:>17.3f}{floor:>11.3f}")
    initial = {c: statistics.median(r["initial_s"] for r in runs[c]) for c in configs}
    print("snapshot 0 before training (s; a sweep of N + Q documents): " + ", ".join(
        f"{c} {initial[c]:.3f}" for c in configs if CONFIGS[c][0]))
    # The snapshot before training is one sweep of N + Q documents, timed without a training
    # epoch around it: less noisy on a shared machine than the epoch ratios.
    estimate = {}
    for c in configs:
        mode, packed = CONFIGS[c]
        if mode is None:
            continue
        share = 1.0 if mode == "sweep" else q / (n + q)
        estimate[c] = initial[c] * share / median_epoch[baseline(c)]
        print(f"from that sweep: {c} adds ~{initial[c] * share:.3f} s per recorded epoch, "
              f"{estimate[c]:.1%} of a plain{' packed' if packed else ''} epoch"
              f"{' (the query sweep; plus the loss hook)' if mode == 'train_pass' else ''}")
    results = {"date": time.strftime("%Y-%m-%d %H:%M %Z"), "N": n, "Q": q,
               "loads": loads, "minutes": minutes, "median_epoch_s": median_epoch,
               "ratio_paired": {c: statistics.median(paired[c]) for c in configs},
               "ratio_paired_rounds": paired, "paper_estimate": floors,
               "initial_snapshot_s": initial,
               "overhead_from_initial_sweep": estimate,
               "epoch_times_s": {c: [t for run in runs[c] for t in run["epochs"]]
                                 for c in configs}}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
