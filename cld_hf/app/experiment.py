"""The main job end to end: proxy training with CLD recording, scoring, coresets, target training.

``run_experiment(RunArguments(...))`` is what ``cld-hf run`` calls:

1. load the data (a built-in dataset, a ``save_to_disk`` directory, an imagefolder or a Hub id;
   :func:`cld_hf.app.data.load_run_data`): ``sample_index`` is added to the training split
   first, then 20% of it is held out as the test set when there is no test split, then a share
   of the training labels is optionally flipped (``label_noise``);
2. find the model inputs (:mod:`cld_hf.app.inputs`: images of any storage, or texts, for which
   a WordPiece tokenizer is trained on the training split) and split a stratified query set off
   the training split;
3. train a proxy model with ``transformers.Trainer`` + :class:`~cld_hf.callback.CLDCallback`;
   (recording, in the same sweeps, the signals the chosen ``methods`` need: see
   :mod:`cld_hf.app.comparison`);
4. score, and for each fraction select one coreset per method (CLD, random and any baseline of
   :mod:`cld_hf.baselines`), all with the same per-class budgets;
5. train the target model from scratch on each coreset (and on the full training set) for
   several seeds and evaluate test accuracy (the shipped ``evaluate`` accuracy module);
6. write everything to ``output_dir``: the scored dataset, the CLD coresets, every selection
   (``selections.arrow``), the proxy model, ``results.json`` / ``results.md`` (the accuracy
   table shaped like the seed's Table 2 and the selection-cost table) first, then the optional
   steps, each failing alone: the plots, the cards (``hub/``) and the push to the Hub.

``task="causal-lm"`` (or ``--dataset stdlib-docstrings``) runs the language-model job of
:mod:`cld_hf.app.lm_experiment` instead, when this build has it.

One progress display covers the whole job (:class:`cld_hf.app.progress.JobProgress`); the
libraries' own bars and info logs are off while it runs.
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

from .arguments import (
    NOISE_COLUMN,
    ORIGINAL_LABEL_COLUMN,
    RunArguments,
    check_run,
    default_learning_rate,
    default_threads,
    signals_needed,
)
from .builtin import BUILTIN_DATASETS
from .data import apply_label_noise, load_run_data
from .progress import JobProgress, quiet_libraries, training_units
from .results import results_markdown
from .training import model_factory, train_and_evaluate

logger = logging.getLogger(__name__)

__all__ = ["run_experiment", "resolve_task", "check_output_dir", "prepare_output_dir", "OUTPUTS",
           "LM_DATASETS"]

# ------------------------------------------------------------------------------ the job


OUTPUTS = ("trajectories", "scored", "coreset-cld-*", "proxy_model", "hub", "plots",
           "selections.arrow", "results.json", "results.md", "proxy_training", "target_training")
"""What ``cld-hf run`` writes into its output directory (the only paths it ever removes)."""

LM_DATASETS = ("stdlib-docstrings",)
"""Built-in datasets of the causal-lm task (``task="auto"`` picks it for them)."""


def check_output_dir(args: RunArguments, outputs=OUTPUTS) -> Path:
    """Before anything is loaded: an existing non-empty ``args.output_dir`` is refused unless
    ``args.overwrite_output_dir`` (see :func:`cld_hf.cli.common.check_output_dir`).

    Examples
    --------
    >>> import tempfile
    >>> check_output_dir(RunArguments(output_dir=tempfile.mkdtemp())).is_dir()
    True
    """
    from ..cli.common import check_output_dir as check

    return check(args.output_dir, overwrite=args.overwrite_output_dir, outputs=outputs,
                 flag="--output-dir")


def prepare_output_dir(out: Path, outputs=OUTPUTS) -> Path:
    """After the inputs loaded: remove a previous run's ``outputs`` (nothing else) and make
    the directory.

    Examples
    --------
    >>> import tempfile
    >>> out = Path(tempfile.mkdtemp()); (out / "results.json").write_text("{}"); (out / "a.txt").touch()
    2
    >>> sorted(p.name for p in prepare_output_dir(out).iterdir())
    ['a.txt']
    """
    from ..cli.common import remove_outputs

    remove_outputs(out, outputs)
    return out


def resolve_task(args: RunArguments) -> str | None:
    """The task decided before loading any data: ``causal-lm`` for ``--task causal-lm`` or a
    built-in language-model corpus; ``args.task`` when it names a classification task; ``None``
    when it depends on the dataset's columns (:func:`cld_hf.app.inputs.detect_task`).

    Examples
    --------
    >>> resolve_task(RunArguments(dataset="stdlib-docstrings")), resolve_task(RunArguments())
    ('causal-lm', None)
    """
    if args.task == "causal-lm" or (args.task == "auto" and args.dataset in LM_DATASETS):
        return "causal-lm"
    return None if args.task == "auto" else args.task


def _command_line() -> str:
    return " ".join(shlex.quote(a) for a in ["cld-hf", *sys.argv[1:]]) if sys.argv else "cld-hf run"


def _run_causal_lm(args: RunArguments, config, command: str | None) -> dict:
    from .lm_experiment import run_lm_experiment

    return run_lm_experiment(args, config, command=command)


def run_experiment(args: RunArguments, config=None, *, command: str | None = None,
                   verbose: bool = False) -> dict:
    """Run the whole job (see the module docstring); returns the results dict also written to
    ``<output_dir>/results.json``.

    Parameters
    ----------
    args : RunArguments
    config : RecorderConfig, optional
        The recording options; ``config.progress`` shows the job's progress display (the
        sweeps' own bars are folded into it), ``config.label_column`` names the class column.
    command : str, optional
        The command line recorded in the cards (default: ``sys.argv``).
    verbose : bool, default False
        Keep the libraries' info logs (their progress bars stay off).

    Examples
    --------
    A quick run on scikit-learn's digits (about a minute on two CPU cores)::

        results = run_experiment(RunArguments(output_dir="quick", proxy_epochs=3,
                                              target_epochs=2, seeds=1, fractions=[0.2]))
        print(results["score_summary_text"])
        print(results["table_markdown"])
    """
    from ..recording.config import RecorderConfig

    config = RecorderConfig() if config is None else config
    check_run(args, config)
    if resolve_task(args) == "causal-lm":
        return _run_causal_lm(args, config, command)
    out = check_output_dir(args)
    with quiet_libraries(verbose=verbose):
        return _run_classification(args, config, out, command=command or _command_line())


def _plan(args, config, n_train: int, n_query: int, n_test: int, budget_sizes) -> tuple[float, int]:
    """``(progress units, trainings)`` of the job (see :class:`JobProgress`)."""
    bs = args.batch_size
    evaluate = n_test / (3 * bs)
    snapshots = args.proxy_epochs // config.every_n_epochs + int(config.record_initial)
    units = (training_units(n_train, epochs=args.proxy_epochs, batch_size=bs)
             + snapshots * (n_train + n_query) / (3 * bs) + evaluate)
    runs = 1
    for size in budget_sizes:
        per = training_units(size, epochs=args.target_epochs, batch_size=bs) + evaluate
        units += per * len(args.methods) * args.seeds
        runs += len(args.methods) * args.seeds
    if args.full_baseline:
        units += (training_units(n_train, epochs=args.target_epochs, batch_size=bs)
                  + evaluate) * args.seeds
        runs += args.seeds
    return units, runs


def _accuracy_summary(proxy_acc: float, runs, full, seeds: int) -> str:
    """One line for the cards: the proxy's test accuracy, each method's target accuracy per
    fraction, and the full set's."""
    parts = [f"proxy model: {100 * proxy_acc:.2f}"]
    for fraction in sorted({r["fraction"] for r in runs}):
        cells = []
        for method in dict.fromkeys(r["method"] for r in runs):
            acc = [100 * r["accuracy"] for r in runs
                   if r["method"] == method and r["fraction"] == fraction]
            if acc:
                cells.append(f"{method} {np.mean(acc):.2f} ± {np.std(acc):.2f}")
        parts.append(f"{100 * fraction:g}% coresets: " + ", ".join(cells))
    if full:
        parts.append(f"full training set: {100 * np.mean(full):.2f} ± {100 * np.std(full):.2f}")
    return "; ".join(parts) + (f" (test accuracy in %; the targets: mean ± std over {seeds} "
                               f"seed(s))")


def _run_classification(args: RunArguments, config, out: Path, *, command: str) -> dict:
    from transformers import set_seed

    import torch

    from ..callback import CLDCallback
    from ..scoring import format_score_summary
    from ..cli.common import RUN_INFO_FILE, write_json
    from ..dataset_adapters import stratified_query_split
    from ..recording.config import make_config
    from ..scoring import class_score_summary
    from ..selection import class_budgets, select_top_per_class
    from ..trajectories import LossTrajectories
    from .builtin import describe_builtin_model, train_text_tokenizer
    from .comparison import cost_markdown, cost_rows, select_coresets, write_selections
    from .inputs import detect_task, image_inputs, text_inputs

    torch.set_num_threads(args.threads or default_threads())
    started = time.perf_counter()
    data = load_run_data(args.dataset, train_split=args.train_split, test_split=args.test_split,
                         label_column=config.label_column, seed=args.seed)
    label_column, names, num_labels = data.label_column, data.class_names, data.num_labels
    task, column = detect_task(data.train.features, task=args.task,
                               image_column=args.image_column, text_column=args.text_column,
                               label_column=label_column)
    if column not in data.test.column_names:
        raise ValueError(f"The test split {args.test_split!r} has no column {column!r} (the "
                         f"training split's input); its columns are {data.test.column_names}.")
    train = data.train
    if args.label_noise > 0:
        taken = [c for c in (NOISE_COLUMN, ORIGINAL_LABEL_COLUMN) if c in train.column_names]
        if taken:
            raise ValueError(f"--label-noise {args.label_noise}: the dataset already has the "
                             f"columns {taken} of an earlier noisy run; pass --label-noise 0, "
                             f"or remove those columns.")
        train = apply_label_noise(train, args.label_noise, label_column=label_column,
                                  num_classes=num_labels, seed=args.seed)
    train_ds, query_ds = stratified_query_split(train, fraction=args.query_fraction,
                                                seed=args.seed, label_column=label_column)
    tokenizer = None
    if task == "image-classification":
        inputs = image_inputs(train_ds, column=column, label_column=label_column,
                              image_size=args.image_size)
    else:
        if args.model is not None:
            from transformers import AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(args.model)
        else:
            texts = train_ds.with_format(None, columns=[column])[column][:]
            tokenizer = train_text_tokenizer(texts, max_length=args.max_length)
        inputs = text_inputs(train_ds, column=column, label_column=label_column,
                             tokenizer=tokenizer, max_length=args.max_length)
    out = prepare_output_dir(out)  # the data loaded: now a previous run's outputs may go
    logger.info("Data: %d training, %d query, %d test samples (%s), %d classes; inputs: %s",
                len(train_ds), len(query_ds), len(data.test), data.test_source, num_labels,
                inputs.describe())
    make_model = model_factory(args, num_labels, inputs.num_channels, names, task=task,
                               tokenizer=tokenizer)
    lr = default_learning_rate(args, task)
    labels = np.asarray(train_ds.with_format("numpy", columns=[label_column])[label_column][:])
    sizes = [sum(class_budgets(labels, fraction=f, balance=args.balance).values())
             for f in args.fractions]
    total, num_runs = _plan(args, config, len(train_ds), len(query_ds), len(data.test), sizes)
    progress = JobProgress(total, num_runs=num_runs, enabled=config.progress)
    test_view = inputs.view(data.test)
    evaluate_units = len(data.test) / (3 * args.batch_size)

    def train(label, model, dataset, *, epochs, seed, output_dir, callbacks=(),
              trainer_callbacks=()):
        progress.start_run(label)
        trainer, acc = train_and_evaluate(
            model, inputs.view(dataset), test_view, output_dir=output_dir, epochs=epochs,
            batch_size=args.batch_size, learning_rate=lr, seed=seed, label_column=label_column,
            callbacks=[*callbacks, progress.callback()], data_collator=inputs.collate,
            trainer_callbacks=trainer_callbacks)
        progress.advance(evaluate_units)
        return trainer, acc

    finished = False
    try:
        with progress.logging_above():
            # 1. proxy training with CLD recording (+ the signals of the other methods, same sweeps)
            signals = signals_needed(args.methods)
            set_seed(args.seed)
            recording = make_config(config, {
                "label_column": label_column, "progress": False, "log_summary": False,
                "signals": list(dict.fromkeys([*config.signals, *signals]))})
            query_view = inputs.view(query_ds)
            made = []

            def with_trainer(trainer):  # train_pass reads the training steps: it needs the Trainer
                made.append(CLDCallback(query_view, recording, output_dir=out / "trajectories",
                                        trainer=trainer))
                return made[-1]

            if config.mode == "train_pass":
                before, after = [], [with_trainer]
            else:
                made.append(CLDCallback(query_view, recording, output_dir=out / "trajectories"))
                before, after = [made[0]], []
            sweeps = progress.callback(count_steps=False,
                                       sweep_units=(len(train_ds) + len(query_ds))
                                       / (3 * args.batch_size),
                                       record_initial=config.record_initial,
                                       every_n_epochs=config.every_n_epochs)
            proxy_trainer, proxy_acc = train(
                "proxy model, recording the loss trajectories", make_model(args.seed), train_ds,
                epochs=args.proxy_epochs, seed=args.seed, output_dir=out / "proxy_training",
                callbacks=[*before, sweeps], trainer_callbacks=after)
            cld = made[0]
            progress.phase("scoring")
            scored = cld.scored_dataset(train_ds)
            proxy_trainer.model.save_pretrained(str(out / "proxy_model"))  # safetensors, no pickle
            if tokenizer is not None:
                tokenizer.save_pretrained(str(out / "proxy_model"))
            scores = np.asarray(scored.with_format("numpy", columns=["cld_score"])["cld_score"][:])
            summary = class_score_summary(scores, labels)
            method_info = {
                "proxy_model": args.model or describe_builtin_model(task),
                "target_model": args.model or describe_builtin_model(task),
                "task": task,
                "epochs": args.proxy_epochs,
                "num_snapshots": cld.recorder.num_snapshots,
                "record_mode": config.mode,
                "query_fraction": args.query_fraction,
                "query_seed": args.seed,
                "num_train": len(train_ds),
                "num_query": len(query_ds),
                # A Hub id only: not a built-in dataset, nor a local directory (not a repo id).
                "source_dataset": (None if args.dataset in BUILTIN_DATASETS
                                   or Path(args.dataset).exists() else args.dataset),
                "source_split": args.train_split,
                "dataset": args.dataset,
                "test_split": data.test_source,
                "class_names": [data.class_name(c) for c in range(num_labels)],
                "input": inputs.describe(),
                "balance": args.balance,
                "label_noise": args.label_noise,
                "methods": list(args.methods),
                "signals": list(signals),
                "command": command,
                "proxy_test_accuracy": proxy_acc,
            }
            scored.with_format(None).save_to_disk(str(out / "scored"))  # plain format for the user
            write_json(out / "scored" / RUN_INFO_FILE, method_info)
            logger.info("Proxy test accuracy %.4f; %d snapshots recorded", proxy_acc,
                        method_info["num_snapshots"])

            # 2. one coreset per method, fraction and seed (same budgets), then target training
            progress.phase("selecting the coresets")
            store = LossTrajectories(out / "trajectories")
            selections = select_coresets(store, args.methods, fractions=args.fractions,
                                         seeds=args.seeds, balance=args.balance, progress=False)
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
                info = dict(method_info, fraction=fraction, size=len(cld_idx),
                            source_size=len(scored),
                            budgets={str(k): int(v) for k, v in budgets.items()})
                write_json(out / name / RUN_INFO_FILE, info)
                coresets[fraction] = coreset
                for seed in range(args.seeds):
                    for method in args.methods:
                        idx = chosen[(method, float(fraction), seed)]
                        subset = train_ds.select(idx)
                        _, acc = train(f"target on the {method} {100 * fraction:g}% coreset, "
                                       f"seed {seed}", make_model(1000 + seed), subset,
                                       epochs=args.target_epochs, seed=seed,
                                       output_dir=out / "target_training")
                        row = {"fraction": fraction, "method": method, "seed": seed,
                               "size": len(idx), "accuracy": acc}
                        if NOISE_COLUMN in train_ds.column_names:
                            noisy = np.asarray(subset.with_format("numpy", columns=[NOISE_COLUMN])
                                               [NOISE_COLUMN][:])
                            row["noisy_share"] = float(noisy.mean())
                        runs.append(row)
                        logger.info("fraction %g, %s, seed %d: accuracy %.4f", fraction, method,
                                    seed, acc)
            full = []
            if args.full_baseline:
                for seed in range(args.seeds):
                    _, acc = train(f"target on the full training set, seed {seed}",
                                   make_model(1000 + seed), train_ds, epochs=args.target_epochs,
                                   seed=seed, output_dir=out / "target_training")
                    full.append(acc)
                    logger.info("full training set, seed %d: accuracy %.4f", seed, acc)
            shutil.rmtree(out / "target_training", ignore_errors=True)
            shutil.rmtree(out / "proxy_training", ignore_errors=True)

            # 3. results first: nothing after loses them
            table = results_markdown(runs, full_accuracy=full)
            cost_table = cost_markdown(costs)
            summary_text = format_score_summary(summary, [data.class_name(c)
                                                          for c in range(num_labels)])
            results = {
                "arguments": asdict(args),
                "recording": recording.to_dict(),
                "task": task,
                "test_split": data.test_source,
                "class_names": method_info["class_names"],
                "proxy_test_accuracy": proxy_acc,
                "full_data_accuracy": full,
                "runs": runs,
                "table_markdown": table,
                "score_summary": {str(c): s for c, s in summary.items()},
                "score_summary_text": summary_text,
                "costs": costs,
                "cost_markdown": cost_table,
                "recording_bytes": store.signal_nbytes(),
                "selections": str(out / "selections.arrow"),
                "seconds": None,
            }
            if args.label_noise > 0:
                train_noise = float(np.asarray(train_ds.with_format(
                    "numpy", columns=[NOISE_COLUMN])[NOISE_COLUMN][:]).mean())
                results["noisy_share_in_training_set"] = train_noise
            results["seconds"] = time.perf_counter() - started
            _write_results(out, args, results, proxy_acc)
            method_info["test_accuracy"] = _accuracy_summary(proxy_acc, runs, full, args.seeds)

            # 4. optional steps, each failing alone with a clear message
            first = args.fractions[0]
            # Local copies of both repos with their cards, exactly as a push sends them; the
            # namespace is a placeholder unless --push-to-hub names the repo.
            repo_id = args.push_to_hub or (f"your-namespace/{Path(args.dataset).name}-cld-"
                                           f"{100 * first:g}pct")
            seed0 = {(c.method, float(c.fraction)): c.indices for c in selections if c.seed == 0}

            def plots():
                from .cli_plot import make_plots

                written = make_plots(
                    scored, out / "plots", store=store, results=results,
                    label_column=label_column, class_names=method_info["class_names"],
                    fractions=args.fractions, balance=args.balance, selections=seed0,
                    image_column=column if task == "image-classification" else None,
                    image_size=args.image_size, dataset_name=Path(args.dataset).name)
                results["plots"] = [str(p) for p in written]

            def export():
                from ..hub import export_coreset_repos

                exported = export_coreset_repos(
                    coresets[first], out / "hub", repo_id=repo_id, model=proxy_trainer.model,
                    processing_class=tokenizer, model_repo_id=f"{repo_id}-proxy",
                    method_info=dict(method_info, fraction=first), label_column=label_column,
                    source_dataset=method_info["source_dataset"],
                    source_split=args.train_split if method_info["source_dataset"] else None,
                    eval_results={"accuracy": proxy_acc} if method_info["source_dataset"]
                    else None)
                results["cards"] = [str(exported.dataset_dir / "README.md"),
                                    str(exported.model_dir / "README.md")]

            def push():
                from ..hub import push_coreset_to_hub

                push_coreset_to_hub(coresets[first], args.push_to_hub, model=proxy_trainer.model,
                                    processing_class=tokenizer,
                                    model_repo_id=f"{args.push_to_hub}-proxy",
                                    method_info=dict(method_info, fraction=first),
                                    label_column=label_column, private=args.hub_private)

            steps = [("plots", plots)] if args.plots else []
            steps.append(("hub export", export))
            if args.push_to_hub:
                steps.append(("push to the Hub", push))
            for name, step in steps:
                progress.phase({"plots": "writing the plots", "hub export": "writing the cards",
                                "push to the Hub": "pushing to the Hub"}[name])
                try:
                    step()
                except Exception as err:  # an optional step: the results stay, the error is told
                    message = f"{type(err).__name__}: {err}".splitlines()[0]
                    logger.error("The %s step failed (the results are saved in %s): %s", name,
                                 out, message)
                    results.setdefault("failed_steps", []).append({"step": name,
                                                                   "error": message})
                results["seconds"] = time.perf_counter() - started
                _write_results(out, args, results, proxy_acc)
            finished = True
    finally:
        progress.close(done=finished)
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
