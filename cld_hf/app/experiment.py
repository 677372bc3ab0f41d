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

import logging
import shlex
import shutil
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from .arguments import NOISE_COLUMN, RunArguments, check_run, default_threads, signals_needed
from .builtin import BUILTIN_DATASETS
from .data import apply_label_noise, load_data, to_pixel_values
from .results import results_markdown
from .training import model_factory, train_and_evaluate

logger = logging.getLogger(__name__)

__all__ = ["run_experiment"]

# ------------------------------------------------------------------------------ the job


OUTPUTS = ("trajectories", "scored", "coreset-cld-*", "proxy_model", "hub", "plots",
           "selections.arrow", "results.json", "results.md", "proxy_training", "target_training")
"""What ``cld-hf run`` writes into its output directory (the only paths it ever removes)."""


def _existing_outputs(out: Path) -> list[Path]:
    return sorted(p for pattern in OUTPUTS for p in out.glob(pattern)) if out.is_dir() else []


def _check_output_dir(args: RunArguments) -> Path:
    """Before anything is loaded: refuse to write over a previous run's outputs unless asked."""
    out = Path(args.output_dir)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"--output-dir {str(out)!r} is a file; pass a directory.")
    existing = _existing_outputs(out)
    if existing and not args.overwrite_output_dir:
        raise FileExistsError(
            f"--output-dir {str(out)!r} holds the outputs of a previous run "
            f"({', '.join(p.name for p in existing[:5])}); choose another --output-dir or pass "
            f"--overwrite-output-dir (which removes those outputs only, once the data loaded)."
        )
    return out


def _prepare_output_dir(out: Path) -> Path:
    """After the inputs loaded: remove the previous run's outputs (nothing else) and make it."""
    for path in _existing_outputs(out):
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
    out.mkdir(parents=True, exist_ok=True)
    return out


def _command_line() -> str:
    return " ".join(shlex.quote(a) for a in ["cld-hf", *sys.argv[1:]]) if sys.argv else "cld-hf run"


def run_experiment(args: RunArguments, config=None, *, command: str | None = None) -> dict:
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

    from ..recording.config import RecorderConfig, make_config

    from ..callback import CLDCallback
    from ..cli.common import RUN_INFO_FILE, write_json
    from ..dataset_adapters import stratified_query_split
    from ..identity import add_index_column
    from ..selection import class_budgets, select_top_per_class
    from ..trajectories import LossTrajectories
    from .comparison import cost_markdown, cost_rows, select_coresets, write_selections

    import torch

    config = RecorderConfig() if config is None else config
    check_run(args, config)
    torch.set_num_threads(args.threads or default_threads())
    started = time.perf_counter()
    out = _check_output_dir(args)
    train, test, label_column, names = load_data(
        args.dataset, train_split=args.train_split, test_split=args.test_split,
        label_column=config.label_column, seed=args.seed)
    labels_all = np.asarray(train.with_format("numpy", columns=[label_column])[label_column][:])
    num_labels = len(names) if names else int(labels_all.max()) + 1
    train, num_channels = to_pixel_values(train, args.image_size)
    test, _ = to_pixel_values(test, args.image_size)
    if num_channels is None:
        num_channels = int(train.features["pixel_values"].shape[0])
    # sample_index: the row in the (clean) training split, recorded before any label is flipped
    train = add_index_column(train, name=args.dataset, split=args.train_split,
                             label_column=label_column)
    if args.label_noise > 0:
        train = apply_label_noise(train, args.label_noise, label_column=label_column,
                                  num_classes=num_labels, seed=args.seed)
    train_ds, query_ds = stratified_query_split(train, fraction=args.query_fraction, seed=args.seed,
                                                label_column=label_column)
    out = _prepare_output_dir(out)  # the data loaded: now a previous run's outputs may go
    logger.info("Data: %d training, %d query, %d test samples, %d classes", len(train_ds),
                len(query_ds), len(test), num_labels)
    make_model = model_factory(args, num_labels, num_channels, names)

    # 1. proxy training with CLD recording (+ the signals of the other methods, same sweeps)
    signals = signals_needed(args.methods)
    set_seed(args.seed)
    recording = make_config(config, {"label_column": label_column,
                                     "signals": list(dict.fromkeys([*config.signals, *signals]))})
    cld = CLDCallback(query_ds, recording, output_dir=out / "trajectories")
    proxy_trainer, proxy_acc = train_and_evaluate(
        make_model(args.seed), train_ds, test, output_dir=out / "proxy_training",
        epochs=args.proxy_epochs, batch_size=args.batch_size, learning_rate=args.learning_rate,
        seed=args.seed, label_column=label_column, callbacks=[cld], progress=True)
    scored = cld.scored_dataset(train_ds)
    proxy_trainer.model.save_pretrained(str(out / "proxy_model"))  # safetensors + config, no pickle
    scores = np.asarray(scored.with_format("numpy", columns=["cld_score"])["cld_score"][:])
    labels = np.asarray(scored.with_format("numpy", columns=[label_column])[label_column][:])
    method_info = {
        "proxy_model": args.model or "ResNet (transformers, built from a config: "
                                     "embedding 16, hidden sizes [16, 32], depths [1, 1])",
        "epochs": args.proxy_epochs,
        "num_snapshots": cld.recorder.num_snapshots,
        "record_mode": config.mode,
        "recording": recording.to_dict(),
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
        "recording": recording.to_dict(),
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
    results["seconds"] = time.perf_counter() - started
    _write_results(out, args, results, proxy_acc)  # the results first: nothing after loses them

    # 4. optional steps, each failing alone with a clear message
    first = args.fractions[0]
    # Local copies of both repos with their cards, exactly as a push sends them; the namespace
    # is a placeholder unless --push-to-hub names the repo.
    repo_id = args.push_to_hub or f"your-namespace/{Path(args.dataset).name}-cld-{100 * first:g}pct"

    def plots():
        from .cli_plot import make_plots
        from .plots import plot_accuracy_vs_fraction

        written = make_plots(scored, out / "plots", store=store, label_column=label_column,
                             class_names=names)
        written.append(plot_accuracy_vs_fraction(
            runs, out / "plots" / "accuracy_vs_fraction.png", full_accuracy=full,
            title=f"{Path(args.dataset).name}: accuracy vs coreset fraction "
                  f"(mean ± std, {args.seeds} seed(s))"))
        results["plots"] = [str(p) for p in written]

    def export():
        from ..hub import export_coreset_repos

        exported = export_coreset_repos(
            coresets[first], out / "hub", repo_id=repo_id, model=proxy_trainer.model,
            model_repo_id=f"{repo_id}-proxy", method_info=dict(method_info, fraction=first),
            source_dataset=method_info["source_dataset"],
            eval_results={"accuracy": proxy_acc} if method_info["source_dataset"] else None)
        results["cards"] = [str(exported.dataset_dir / "README.md"),
                            str(exported.model_dir / "README.md")]

    def push():
        from ..hub import push_coreset_to_hub

        push_coreset_to_hub(coresets[first], args.push_to_hub, model=proxy_trainer.model,
                            model_repo_id=f"{args.push_to_hub}-proxy",
                            method_info=dict(method_info, fraction=first),
                            private=args.hub_private)

    steps = [("plots", plots)] if args.plots else []
    steps.append(("hub export", export))
    if args.push_to_hub:
        steps.append(("push to the Hub", push))
    for name, step in steps:
        try:
            step()
        except Exception as err:  # an optional step: the results stay, the error is reported
            message = f"{type(err).__name__}: {err}".splitlines()[0]
            logger.error("The %s step failed (the results are saved in %s): %s", name, out,
                         message)
            results.setdefault("failed_steps", []).append({"step": name, "error": message})
        results["seconds"] = time.perf_counter() - started
        _write_results(out, args, results, proxy_acc)
    return results


def _write_results(out: Path, args: RunArguments, results: dict, proxy_acc: float) -> None:
    from ..cli.common import write_json

    write_json(out / "results.json", results)
    header = (f"# cld-hf run: {args.dataset}\n\nProxy test accuracy: {100 * proxy_acc:.2f}%. "
              f"Target test accuracy (%), mean ± std over {args.seeds} seed(s):\n\n")
    cost_header = ("\n\n## Selection cost\n\nSeconds of scoring and selection measured in this "
                   "run (all coresets of the method; per coreset in parentheses), the bytes of the "
                   "recorded signals each method reads, and the seed's Appendix E formulas (f: "
                   "proxy forward, f_large: target forward, T: epochs, k: coreset size).\n\n")
    failed = "".join(f"\n\n**The {f['step']} step failed:** {f['error']}"
                     for f in results.get("failed_steps", []))
    (out / "results.md").write_text(header + results["table_markdown"] + cost_header
                                    + results["cost_markdown"] + failed + "\n")
