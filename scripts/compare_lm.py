# /// script
# requires-python = ">=3.10"
# dependencies = ["cld-hf"]
# ///
"""Measure CLD, S2L and random coresets on the text job: test perplexity, paired with random.

Runs ``cld_hf.app.lm_experiment.run_lm_experiment`` (the job of ``cld-hf run --task causal-lm``:
the standard library's docstrings, a tiny GPT-2 as proxy and target) and writes a Markdown
report: the command, the date, the machine and its load, the perplexity table (mean ± std over
seeds), the paired differences against random of the same seed (mean ± std; negative = lower
perplexity than random), the training tokens of each coreset and the selection cost.

    python scripts/compare_lm.py --seeds 5 --output_dir compare_lm --threads 1
    python scripts/compare_lm.py --fractions 0.1 0.3 --seeds 3 --max_docs_per_group 40

Every option of ``cld-hf run`` is accepted (``--help``); the defaults are the text job's
(``cld_hf.app.lm_experiment.LM_DEFAULTS``: 8 proxy and 8 target epochs, batch 32, learning
rate 3e-3, methods cld random s2l). The report goes to ``<output_dir>/compare_lm.md`` (or
``--report``).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import platform
import shlex
import sys
import time
from pathlib import Path


def make_parser():
    from transformers import HfArgumentParser

    from cld_hf import RecorderConfig
    from cld_hf.app.arguments import RunArguments
    from cld_hf.app.lm_experiment import LM_DEFAULTS

    parser = HfArgumentParser((RunArguments, RecorderConfig), description=__doc__)
    parser.set_defaults(**LM_DEFAULTS, output_dir="compare_lm", seeds=5)
    parser.add_argument("--report", default=None,
                        help="Markdown report path (default: <output_dir>/compare_lm.md)")
    parser.add_argument("--max_docs_per_group", type=int, default=None,
                        help="use only the first documents of each group (quicker runs)")
    return parser


def _dataclasses(namespace):
    """``RunArguments`` and ``RecorderConfig`` from the parsed options. The methods are set after
    construction: ``RunArguments`` validates them against ``cld_hf.baselines.METHODS``, which may
    not list ``s2l`` yet (the text job checks them itself)."""
    from cld_hf import RecorderConfig
    from cld_hf.app.arguments import RunArguments

    values = vars(namespace)
    names = {f.name for f in dataclasses.fields(RunArguments)}
    methods = values["methods"]
    run_args = RunArguments(**{k: v for k, v in values.items() if k in names and k != "methods"})
    run_args.methods = list(methods)
    config = RecorderConfig(**{f.name: values[f.name] for f in dataclasses.fields(RecorderConfig)})
    return run_args, config


def _machine() -> str:
    load = os.getloadavg() if hasattr(os, "getloadavg") else ("?", "?", "?")
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    import torch

    return (f"{platform.processor() or platform.machine()}, {cores} cores available, load "
            f"average {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f} (1 / 5 / 15 min); Python "
            f"{platform.python_version()}, torch {torch.__version__}, {torch.get_num_threads()} "
            f"torch thread(s)")


def report_markdown(results: dict, *, command: str, started: str, machine_before: str,
                    machine_after: str) -> str:
    """The report: what ran, where, and the tables."""
    from cld_hf.app.lm_results import paired_markdown

    s, c = results["settings"], results["corpus"]
    lines = [
        "# CLD vs S2L vs random on the standard library's docstrings (tiny GPT-2)",
        "",
        f"- command: `{command}`",
        f"- started: {started}; took {results['seconds']:.0f} s",
        f"- machine at the start: {machine_before}",
        f"- machine at the end: {machine_after}",
        f"- corpus: {c['num_train']} training, {c['num_query']} query, {c['num_test']} test "
        f"documents ({c['test_tokens']} test tokens), {len(c['groups'])} groups, Python "
        f"{c['python']}, sha256 {c['sha256'][:12]}",
        f"- model: GPT-2, {results['model']['n_layer']} layers, width "
        f"{results['model']['n_embd']}, {results['model']['parameters']:,} parameters, vocabulary "
        f"{results['model']['vocab_size']}, {results['model']['n_positions']} tokens; proxy "
        f"{s['proxy_epochs']} epochs, target {s['target_epochs']} epochs, batch "
        f"{s['batch_size']}, AdamW lr {s['learning_rate']}; S2L {results['s2l_options']}",
        f"- proxy test perplexity {results['proxy_test_perplexity']:.2f}",
        "",
        "## Test perplexity (lower is better), mean ± std over seeds",
        "",
        results["table_markdown"],
    ]
    if results["paired"]:
        lines += ["", "## Paired with random (same seed): perplexity minus random's",
                  "", "Mean ± std over seeds; negative = better than random.", "",
                  paired_markdown(results["paired"])]
    if results.get("paired_length"):
        lines += ["", "Paired with `random_length` (random documents with the CLD coreset's "
                  "group and length profile, same seed):", "",
                  paired_markdown(results["paired_length"], baseline="random_length")]
    lines += ["", "## Training tokens per coreset (mean over seeds)", "",
              results["tokens_markdown"], "", "## Selection cost", "", results["cost_markdown"],
              ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    namespace = make_parser().parse_args(args=argv)
    run_args, config = _dataclasses(namespace)
    from cld_hf.app.lm_experiment import run_lm_experiment

    command = " ".join(["python scripts/compare_lm.py",
                        *map(shlex.quote, sys.argv[1:] if argv is None else argv)])
    started = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    before = _machine()
    results = run_lm_experiment(run_args, config,
                                max_docs_per_group=namespace.max_docs_per_group)
    text = report_markdown(results, command=command, started=started, machine_before=before,
                           machine_after=_machine())
    path = Path(namespace.report or Path(run_args.output_dir) / "compare_lm.md")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    print(text)
    print(f"report: {path}")
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    raise SystemExit(main())
