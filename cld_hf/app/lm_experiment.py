"""The text job (``cld-hf run --task causal-lm``): CLD, S2L and random coresets of a corpus of
Python docstrings for a tiny GPT-2, scored by test perplexity.

``run_lm_experiment(args, config)``:

1. the corpus: the docstrings of the Python standard library, one document each, grouped by
   top-level package (:func:`cld_hf.app.text.load_stdlib_corpus`); a test split (15% of each
   group) and a query split (``query_fraction`` of each group of the rest), both stratified by
   group; a byte-level BPE tokenizer trained on the training documents only;
2. a tiny GPT-2 (the proxy) trains on the training documents with ``transformers.Trainer`` +
   :class:`~cld_hf.callback.CLDCallback`, which records every document's and every query
   document's mean token loss before training and after every epoch;
3. for each fraction, with the same per-group budgets (:func:`cld_hf.class_budgets`, equal),
   one coreset per method: ``cld`` (the top CLD scores of each group, Algorithm 1), ``s2l``
   (:func:`cld_hf.baselines.s2l.s2l_select` on the same loss trajectories) and ``random``;
4. a fresh GPT-2 of the same shape (the target) trains from scratch on each coreset and on the
   full training set, for ``seeds`` seeds; its test perplexity is ``exp`` of the mean token loss
   over every token of the test split (:func:`cld_hf.app.text.perplexity`);
5. ``results.json`` / ``results.md`` (the perplexity table shaped like the image run's accuracy
   table, the training tokens of each coreset and the selection cost) are written first, then
   the optional outputs (the proxy model, the CLD coresets as datasets).

Groups reach the recorder as ``RecorderConfig(group_column="group")`` (:func:`group_recording`):
one query trajectory and one budget per top-level package.

Sizes (chosen for minutes on two CPU cores): about 2,050 docstrings of CPython 3.11 in 20
groups (1,567 training, 175 query, 307 test documents), 64 tokens at most (the median docstring
has 36), a 2,048-token vocabulary, GPT-2 with 2 layers, width 64, 2 heads (0.24 M parameters);
with :data:`LM_DEFAULTS` and 5 seeds, the whole job took 17 minutes on one torch thread of two
shared cores (load 2.4-4), so about 11 with the default 3 seeds.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from .lm_results import paired_differences, paired_markdown, perplexity_markdown, tokens_markdown

logger = logging.getLogger(__name__)

__all__ = [
    "LM_METHODS",
    "LM_DEFAULTS",
    "S2L_OPTIONS",
    "TEXT_DATASETS",
    "run_lm_experiment",
    "lm_settings",
    "group_recording",
    "length_matched_random",
]

LM_METHODS = ("cld", "random", "s2l", "random_length")
"""The methods of the text job. ``random_length`` is a control, not a method: in each group,
random documents with the lengths of the CLD coreset's (:func:`length_matched_random`), so that
CLD's gain can be told apart from training on more tokens. The other baselines read
classification signals (class logits, a classifier head's features), which a language model
does not have."""

TEXT_DATASETS = ("stdlib-docstrings",)
"""The built-in text corpora (``RunArguments.dataset``)."""

LM_DEFAULTS = {"dataset": "stdlib-docstrings", "proxy_epochs": 8, "target_epochs": 8,
               "batch_size": 32, "learning_rate": 3e-3, "methods": ["cld", "random", "s2l"]}
"""The text job's sizes (minutes on two CPU cores): ``RunArguments``' own defaults are the image
job's (15 and 20 epochs, batch 64, AdamW at 1e-2, which trains this GPT-2 worse: test perplexity
152 against 125 at 3e-3 on the full set). ``scripts/compare_lm.py`` uses these; ``cld-hf run
--task causal-lm`` takes them as its defaults."""

S2L_OPTIONS = {"n_clusters": 10}
"""S2L's options here. The official K = 100 clusters per source fits sources of thousands of
samples; this corpus's groups hold 30-200 training documents, where K = 100 would leave nearly
every cluster below S2L's 3-member minimum, and S2L would draw at random."""

MODEL = {"n_layer": 2, "n_embd": 64, "n_head": 2}
MAX_LENGTH = 64
VOCAB_SIZE = 2048
TEST_FRACTION = 0.15

OUTPUTS = ("trajectories", "tokenizer.json", "selections.arrow", "results.json", "results.md",
           "proxy_model", "coreset-cld-*", "proxy_training", "target_training")
"""What the text job writes into its output directory (the only paths it ever removes)."""

# ------------------------------------------------------------------------------ options


def lm_settings(args) -> dict:
    """The options of ``args`` the text job reads, checked: the dataset and the methods.

    Examples
    --------
    >>> from cld_hf.app.arguments import RunArguments
    >>> args = RunArguments(dataset="stdlib-docstrings", target_epochs=3)
    >>> s = lm_settings(args)
    >>> s["dataset"], s["target_epochs"], s["methods"]
    ('stdlib-docstrings', 3, ['cld', 'random'])
    >>> args.methods = ["cld", "forgetting"]
    >>> lm_settings(args)
    Traceback (most recent call last):
    ...
    ValueError: methods == ['cld', 'forgetting']: the causal-lm task runs ['cld', ...] only ...
    """
    if args.dataset not in TEXT_DATASETS:
        raise ValueError(
            f"dataset == {args.dataset!r}: the causal-lm task runs on the built-in text corpus "
            f"{list(TEXT_DATASETS)} (the Python standard library's docstrings); pass "
            f"--dataset {TEXT_DATASETS[0]}."
        )
    methods = list(args.methods)
    unknown = [m for m in methods if m not in LM_METHODS]
    if unknown or not methods:
        raise ValueError(
            f"methods == {methods}: the causal-lm task runs {list(LM_METHODS)} only (the other "
            f"baselines read classification signals: class logits or a classifier head's "
            f"features, which a language model has not); drop {unknown or 'nothing'}."
        )
    if len(set(methods)) != len(methods):
        raise ValueError(f"methods == {methods} names a method twice; give each once.")
    out = {name: getattr(args, name) for name in
           ("dataset", "proxy_epochs", "target_epochs", "batch_size", "learning_rate", "seeds",
            "seed", "query_fraction")}
    out["fractions"] = [float(f) for f in args.fractions]
    out["methods"] = methods
    return out


def group_recording(dataset):
    """How the recorder learns each document's group: ``(dataset, RecorderConfig options)``.

    The ``group`` column (the top-level package's number) is the recorder's ``group_column``;
    the loss is the mean next-token loss of each document.

    Examples
    --------
    >>> from datasets import Dataset
    >>> ds, options = group_recording(Dataset.from_dict({"group": [2, 0]}))
    >>> options
    {'group_column': 'group', 'loss_type': 'causal_lm'}
    """
    return dataset, {"group_column": "group", "loss_type": "causal_lm"}


def length_matched_random(labels, lengths, reference, *, bins: int = 8, seed: int = 0):
    """Random documents with the group and length profile of the ``reference`` selection.

    In each group the documents are split into ``bins`` length quantiles; from each bin as many
    documents are drawn uniformly at random (without replacement) as ``reference`` holds there.
    The result has the same per-group counts as ``reference`` and nearly its length
    distribution (its token count), but is otherwise random: the control that tells a
    selection's effect apart from its document lengths.

    Parameters
    ----------
    labels : int array of shape (N,)
        Group of each document.
    lengths : int array of shape (N,)
        Tokens of each document.
    reference : int array
        The selection to match (e.g. the CLD coreset), row indices.
    bins : int, default 8
    seed : int, default 0

    Returns
    -------
    numpy.ndarray of int64, ascending.

    Examples
    --------
    >>> labels = np.zeros(8, dtype=int)
    >>> lengths = np.array([5, 6, 7, 8, 50, 60, 70, 80])
    >>> sel = length_matched_random(labels, lengths, [6, 7], bins=2, seed=0)
    >>> len(sel), bool((lengths[sel] >= 50).all())        # two long ones, as the reference
    (2, True)
    """
    from .._validation import check_int, check_labels

    lab = check_labels(labels, "labels")
    length = np.asarray(lengths)
    ref = np.asarray(reference, dtype=np.int64)
    if length.shape != lab.shape:
        raise ValueError(f"lengths has shape {length.shape} but labels has {lab.shape}; pass one "
                         f"length per document.")
    check_int("bins", bins, min_val=1)
    rng = np.random.default_rng(seed)
    chosen = []
    for g in np.unique(lab[ref]):
        idx = np.flatnonzero(lab == g)
        edges = np.quantile(length[idx], np.linspace(0, 1, bins + 1)[1:-1])
        where = np.searchsorted(edges, length[idx], side="right")
        ref_bins = np.searchsorted(edges, length[ref[lab[ref] == g]], side="right")
        for b, count in zip(*np.unique(ref_bins, return_counts=True)):
            chosen.append(rng.choice(idx[where == b], size=int(count), replace=False))
    return np.sort(np.concatenate(chosen)).astype(np.int64) if chosen else ref[:0]


# ------------------------------------------------------------------------------ output dir


def _existing_outputs(out: Path) -> list[Path]:
    from ..cli.common import existing_outputs

    return existing_outputs(out, OUTPUTS)


def _check_output_dir(args) -> Path:
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
    from ..cli.common import remove_outputs

    remove_outputs(out, OUTPUTS)
    return out


# ------------------------------------------------------------------------------ training


def _train(model, dataset, collator, *, output_dir, epochs, batch_size, lr, seed, callbacks=None,
           progress=False):
    import torch
    from transformers import Trainer
    from transformers.trainer_callback import PrinterCallback

    from .training import training_arguments

    targs = training_arguments(output_dir, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed,
                               per_device_eval_batch_size=batch_size, disable_tqdm=not progress,
                               warmup_steps=0.05, remove_unused_columns=False,  # keep group
                               dataloader_pin_memory=torch.cuda.is_available())
    trainer = Trainer(model=model, args=targs, train_dataset=dataset, data_collator=collator,
                      callbacks=callbacks)
    trainer.remove_callback(PrinterCallback)
    trainer.train()
    return trainer


def _num_tokens(dataset) -> int:
    return int(sum(len(ids) for ids in dataset["input_ids"]))


def _cost_row(method, seconds, computed, store_bytes):
    from ..baselines.s2l import S2L_COST, S2L_REFERENCE, S2L_STORAGE
    from .comparison import CLD_COST

    spec = {
        "cld": (["loss"], CLD_COST["cost"], CLD_COST["storage"], CLD_COST["reference"]),
        "s2l": (["loss"], S2L_COST, S2L_STORAGE, S2L_REFERENCE),
        "random": ([], "3k T f_large (no selection cost)", "O(1)",
                   "uniform group-balanced sampling"),
        "random_length": (["loss"], "as CLD (it matches the CLD coreset's lengths)",
                          CLD_COST["storage"], "control: random with CLD's length profile"),
    }[method]
    return {"method": method, "signals": spec[0], "seconds": seconds,
            "seconds_per_coreset": seconds / max(computed, 1),
            "extra_bytes": int(sum(store_bytes.get(s, 0) for s in spec[0])),
            "compute": spec[1], "storage": spec[2], "reference": spec[3]}


def _select(store, methods, fractions, seeds, lengths):
    """Every coreset (``comparison.Coreset``), and the measured cost rows."""
    from ..baselines.s2l import s2l_select
    from ..selection import class_budgets, select_random_per_class, select_top_per_class
    from .comparison import Coreset

    labels = np.asarray(store.train_labels)
    coresets, seconds, computed = [], dict.fromkeys(methods, 0.0), dict.fromkeys(methods, 0)
    cache = {}
    for method in methods:
        for f in fractions:
            budgets = class_budgets(labels, fraction=f, balance="equal")
            fixed = None
            for seed in range(seeds):
                if fixed is not None:  # CLD is deterministic: one coreset per fraction
                    coresets.append(Coreset(method, f, seed, fixed, 0.0))
                    continue
                start = time.perf_counter()
                if method == "cld":
                    if "scores" not in cache:
                        cache["scores"] = store.scores()
                    idx = select_top_per_class(cache["scores"], labels, budgets=budgets)
                elif method == "s2l":
                    if "loss" not in cache:
                        cache["loss"] = store.train_losses()
                    idx = s2l_select(labels, budgets, cache["loss"], seed=seed, **S2L_OPTIONS)
                elif method == "random_length":
                    if "scores" not in cache:
                        cache["scores"] = store.scores()
                    cld_idx = select_top_per_class(cache["scores"], labels, budgets=budgets)
                    idx = length_matched_random(labels, lengths, cld_idx, seed=seed)
                else:
                    idx = select_random_per_class(labels, budgets=budgets, seed=seed)
                took = time.perf_counter() - start
                coresets.append(Coreset(method, f, seed, np.asarray(idx, np.int64), took))
                seconds[method] += took
                computed[method] += 1
                if method == "cld":
                    fixed = coresets[-1].indices
    sizes = store.signal_nbytes()
    costs = [_cost_row(m, seconds[m], computed[m], sizes) for m in methods]
    return coresets, costs


# ------------------------------------------------------------------------------ the job


def run_lm_experiment(args, config=None, *, max_docs_per_group: int | None = None,
                      command: str | None = None) -> dict:
    """Run the text job (see the module docstring); returns the results dict also written to
    ``<output_dir>/results.json``.

    Parameters
    ----------
    args : cld_hf.app.arguments.RunArguments
        Reads ``dataset`` (``stdlib-docstrings``), ``fractions``, ``seeds``,
        ``proxy_epochs``, ``target_epochs``, ``batch_size``, ``learning_rate``,
        ``query_fraction``, ``seed``, ``methods`` (any of :data:`LM_METHODS`), ``threads``,
        ``output_dir`` and ``overwrite_output_dir``. Its defaults are the image job's:
        :data:`LM_DEFAULTS` are the text job's (``cld-hf run --task causal-lm`` applies them
        to every option not typed).
    config : cld_hf.RecorderConfig, optional
        The recording options (the loss type and the group column are set here; extra signals
        are refused: they are classification signals).
    max_docs_per_group : int, optional
        Use only the first documents of each group (quick runs, tests).
    command : str, optional
        The command line, kept in ``results.json``.

    Returns
    -------
    dict with ``table_markdown`` (test perplexity, mean ± std over seeds), ``tokens_markdown``,
    ``cost_markdown``, ``runs`` (one row per coreset and seed: ``fraction``, ``method``,
    ``seed``, ``size``, ``tokens``, ``perplexity``), ``full_data_perplexity``,
    ``proxy_test_perplexity``, ``settings``, ``corpus``, ``costs`` and ``seconds``.

    Examples
    --------
    Twelve documents per group, few epochs (a smoke run of about a minute on one CPU core)::

        from cld_hf.app.arguments import RunArguments
        args = RunArguments(dataset="stdlib-docstrings", output_dir="lm_quick", proxy_epochs=2,
                            target_epochs=1, seeds=1, fractions=[0.3], batch_size=32,
                            learning_rate=3e-3)
        args.methods = ["cld", "random", "s2l"]  # until METHODS has "s2l"
        print(run_lm_experiment(args, max_docs_per_group=12)["table_markdown"])
    """
    import torch
    from transformers import set_seed

    from ..callback import CLDCallback
    from ..dataset_adapters import stratified_query_split
    from ..recording.config import RecorderConfig, make_config
    from ..trajectories import LossTrajectories
    from .arguments import default_threads
    from .comparison import write_selections
    from .text import (CausalLMCollator, EOS_TOKEN, load_stdlib_corpus, make_causal_lm,
                       perplexity, tokenize_corpus, train_tokenizer)

    settings = lm_settings(args)
    config = RecorderConfig() if config is None else config
    if config.signals:
        raise ValueError(
            f"signals == {config.signals}: these are classification signals (class logits, a "
            f"classifier head's features); the causal-lm task records the loss only. Drop "
            f"--signals."
        )
    if config.mode != "sweep":
        raise ValueError(
            f"mode == {config.mode!r}: the causal-lm task records in eval-mode sweeps only "
            f"(mode='sweep', the default)."
        )
    snapshots = settings["proxy_epochs"] // config.every_n_epochs + int(config.record_initial)
    if snapshots < 3:
        raise ValueError(
            f"proxy_epochs == {settings['proxy_epochs']} with every_n_epochs == "
            f"{config.every_n_epochs} and record_initial == {config.record_initial} records "
            f"{snapshots} snapshot(s); CLD needs at least 3: train the proxy longer."
        )
    threads = getattr(args, "threads", None) or default_threads()
    torch.set_num_threads(threads)
    started = time.perf_counter()
    out = _check_output_dir(args)
    train, test, corpus = load_stdlib_corpus(test_fraction=TEST_FRACTION, seed=args.seed,
                                             max_docs_per_group=max_docs_per_group)
    group_names = train.features["group"].names
    train, options = group_recording(train)
    train_ds, query_ds = stratified_query_split(
        train, fraction=args.query_fraction, seed=args.seed, label_column=options.get(
            "label_column", "group"), source_name=settings["dataset"], source_split="train")
    tokenizer = train_tokenizer(train_ds["text"], vocab_size=VOCAB_SIZE)
    train_ds, query_ds, test = (tokenize_corpus(d, tokenizer, max_length=MAX_LENGTH)
                                for d in (train_ds, query_ds, test))
    out = _prepare_output_dir(out)
    tokenizer.save(str(out / "tokenizer.json"))
    eos = tokenizer.token_to_id(EOS_TOKEN)
    collator = CausalLMCollator(eos)
    vocab = tokenizer.get_vocab_size()

    def make_model(seed):
        return make_causal_lm(vocab, n_positions=MAX_LENGTH, eos_token_id=eos, seed=seed,
                              **MODEL)

    logger.info("Corpus: %d training, %d query, %d test documents in %d groups", len(train_ds),
                len(query_ds), len(test), len(group_names))
    train_kwargs = dict(batch_size=settings["batch_size"], lr=settings["learning_rate"])

    # 1. proxy training with CLD recording
    set_seed(args.seed)
    recording = make_config(config, options)
    cld = CLDCallback(query_ds, recording, output_dir=out / "trajectories")
    proxy = _train(make_model(args.seed), train_ds, collator, output_dir=out / "proxy_training",
                   epochs=settings["proxy_epochs"], seed=args.seed, callbacks=[cld],
                   progress=True, **train_kwargs)
    proxy_ppl, test_tokens = perplexity(proxy.model, test, collator,
                                        batch_size=settings["batch_size"])
    logger.info("Proxy test perplexity %.2f (%d snapshots)", proxy_ppl,
                cld.recorder.num_snapshots)

    # 2. coresets, then the target on each (and on the full set)
    store = LossTrajectories(out / "trajectories")
    lengths = np.array([len(ids) for ids in train_ds["input_ids"]])
    selections, costs = _select(store, settings["methods"], [float(f) for f in args.fractions],
                                args.seeds, lengths)
    write_selections(out / "selections.arrow", selections)
    chosen = {(c.method, c.fraction, c.seed): c.indices for c in selections}
    runs = []
    for fraction in args.fractions:
        for seed in range(args.seeds):
            for method in settings["methods"]:
                idx = chosen[(method, float(fraction), seed)]
                subset = train_ds.select(idx)
                trainer = _train(make_model(1000 + seed), subset, collator,
                                 output_dir=out / "target_training",
                                 epochs=settings["target_epochs"], seed=seed, **train_kwargs)
                ppl, _ = perplexity(trainer.model, test, collator,
                                    batch_size=settings["batch_size"])
                runs.append({"fraction": float(fraction), "method": method, "seed": seed,
                             "size": len(idx), "tokens": _num_tokens(subset), "perplexity": ppl})
                logger.info("fraction %g, %s, seed %d: test perplexity %.2f", fraction, method,
                            seed, ppl)
    full = []
    for seed in range(args.seeds):
        trainer = _train(make_model(1000 + seed), train_ds, collator,
                         output_dir=out / "target_training", epochs=settings["target_epochs"],
                         seed=seed, **train_kwargs)
        full.append(perplexity(trainer.model, test, collator,
                               batch_size=settings["batch_size"])[0])
    shutil.rmtree(out / "target_training", ignore_errors=True)
    shutil.rmtree(out / "proxy_training", ignore_errors=True)

    # 3. results first
    from .comparison import cost_markdown

    full_tokens = _num_tokens(train_ds)
    results = {
        "task": "causal-lm",
        "command": command,
        "arguments": asdict(args) if dataclasses.is_dataclass(args) else dict(vars(args)),
        "settings": settings,
        "recording": recording.to_dict(),
        "corpus": dict(corpus, groups=group_names, num_train=len(train_ds),
                       num_query=len(query_ds), num_test=len(test), test_tokens=test_tokens,
                       train_tokens=full_tokens),
        "model": dict(MODEL, type="GPT2LMHeadModel", vocab_size=vocab, n_positions=MAX_LENGTH,
                      parameters=int(sum(p.numel() for p in proxy.model.parameters()))),
        "s2l_options": dict(S2L_OPTIONS),
        "threads": threads,
        "proxy_test_perplexity": proxy_ppl,
        "full_data_perplexity": full,
        "runs": runs,
        "table_markdown": perplexity_markdown(runs, full_perplexity=full),
        "tokens_markdown": tokens_markdown(runs, full_tokens=full_tokens),
        "paired": paired_differences(runs) if "random" in settings["methods"] else [],
        "paired_length": (paired_differences(runs, baseline="random_length")
                          if "random_length" in settings["methods"] else []),
        "costs": costs,
        "cost_markdown": cost_markdown(costs),
        "selections": str(out / "selections.arrow"),
        "seconds": time.perf_counter() - started,
    }
    _write_results(out, results)

    # 4. optional outputs, each failing alone with a clear message
    def proxy_model():
        proxy.model.save_pretrained(str(out / "proxy_model"))

    def coresets():
        from ..selection import class_budgets, select_top_per_class

        scored = cld.scored_dataset(train_ds).remove_columns(["input_ids"])
        scores = np.asarray(scored.with_format("numpy", columns=["cld_score"])["cld_score"][:])
        labels = np.asarray(store.train_labels)
        for fraction in args.fractions:
            budgets = class_budgets(labels, fraction=fraction, balance="equal")
            idx = select_top_per_class(scores, labels, budgets=budgets)
            scored.select(idx).with_format(None).save_to_disk(
                str(out / f"coreset-cld-{100 * fraction:g}pct"))

    for name, step in (("proxy model", proxy_model), ("CLD coresets", coresets)):
        try:
            step()
        except Exception as err:  # an optional step: the results stay, the error is reported
            message = f"{type(err).__name__}: {err}".splitlines()[0]
            logger.error("The %s step failed (the results are saved in %s): %s", name, out,
                         message)
            results.setdefault("failed_steps", []).append({"step": name, "error": message})
    results["seconds"] = time.perf_counter() - started
    _write_results(out, results)
    return results


def _write_results(out: Path, results: dict) -> None:
    from ..cli.common import write_json

    write_json(out / "results.json", results)
    s, c = results["settings"], results["corpus"]
    header = (
        f"# cld-hf run --task causal-lm: {s['dataset']}\n\n"
        f"{c['num_train']} training, {c['num_query']} query and {c['num_test']} test documents "
        f"(Python {c['python']} docstrings, {len(c['groups'])} groups); GPT-2 "
        f"{results['model']['n_layer']} layers x {results['model']['n_embd']} "
        f"({results['model']['parameters']:,} parameters); proxy {s['proxy_epochs']} epochs, "
        f"target {s['target_epochs']} epochs, batch {s['batch_size']}, lr {s['learning_rate']}."
        f"\n\nProxy test perplexity: {results['proxy_test_perplexity']:.2f}. Target test "
        f"perplexity (lower is better), mean ± std over "
        f"{len(results['full_data_perplexity'])} seed(s):\n\n")
    tokens = "\n\n## Training tokens per coreset\n\n" + results["tokens_markdown"]
    paired = ""
    if results["paired"]:
        paired = ("\n\n## Paired with random (same seed)\n\nPerplexity minus random's, mean ± "
                  "std over seeds (negative: better than random).\n\n"
                  + paired_markdown(results["paired"]))
    if results["paired_length"]:
        paired += ("\n\nPaired with the length-matched random control (same seed):\n\n"
                   + paired_markdown(results["paired_length"], baseline="random_length"))
    cost = ("\n\n## Selection cost\n\nSeconds of scoring and selection measured in this run "
            "(all coresets of the method; per coreset in parentheses), the bytes of the recorded "
            "signals it reads, and the Appendix E formulas.\n\n" + results["cost_markdown"])
    failed = "".join(f"\n\n**The {f['step']} step failed:** {f['error']}"
                     for f in results.get("failed_steps", []))
    (out / "results.md").write_text(header + results["table_markdown"] + tokens + paired + cost
                                    + failed + "\n")
