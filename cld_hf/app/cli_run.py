"""``cld-hf run``: the whole job on a built-in or your own dataset, from proxy training to results.

The options are the fields of :class:`~cld_hf.app.arguments.RunArguments` and of
:class:`~cld_hf.recording.config.RecorderConfig`, parsed with ``transformers.HfArgumentParser``
and then presented the way the other subcommands are: hyphenated spellings (the underscore ones
still parse), grouped, every default shown, and each ``--no-...`` switch with its own help.
"""

from __future__ import annotations

import argparse
import sys

EPILOG = """\
examples:
  cld-hf run                                        # scikit-learn digits, a few minutes on CPU
  cld-hf run --dataset mnist1d --fractions 0.1 0.3 0.5 --seeds 3
  cld-hf run --dataset path/to/imagefolder          # class sub-folders of images
  cld-hf run --dataset path/to/saved --label-column target   # save_to_disk, any class column
  cld-hf run --dataset path/to/texts                # a save_to_disk dataset with a 'text' column
  cld-hf run --methods cld random forgetting el2n aum herding kcenter grand   # the baselines too
  cld-hf run --label-noise 0.2 --output-dir noisy   # what CLD does with flipped labels
  cld-hf run --dataset path/to/saved --model path/to/model --proxy-epochs 30
  cld-hf run --push-to-hub me/digits-cld-10pct      # also push coreset + proxy (needs a token)
  cld-hf -v run ...                                 # with the info logs

writes to --output-dir: trajectories/ (the loss store, with the signals the --methods read),
scored/, coreset-cld-<pct>pct/, selections.arrow (every method's coreset per fraction and seed),
proxy_model/, hub/ (both repos with their cards, as a push would send them), results.json,
results.md (the accuracy table and the selection-cost table) and plots/. An existing non-empty
--output-dir is refused unless --overwrite-output-dir, which removes only those outputs.

exit codes: 0 done; 1 the work failed (one line says why); 2 a bad argument.
"""

RUN_GROUPS = {
    "data": ("dataset", "train_split", "test_split", "task", "image_column", "text_column",
             "image_size", "max_length", "label_noise"),
    "method": ("query_fraction", "seed", "fractions", "balance", "proxy_epochs", "methods"),
    "models and training": ("model", "target_epochs", "seeds", "batch_size", "learning_rate",
                            "full_baseline", "threads"),
    "output": ("output_dir", "overwrite_output_dir", "push_to_hub", "hub_private", "plots"),
}
"""Help groups of the RunArguments fields (every field is in one)."""

NEGATIVE_HELP = {
    "full_baseline": "skip the target runs on the full training set",
    "plots": "write no PNG plots",
    "record_initial": "do not record snapshot 0 before training (the authors' code)",
    "remove_unused_columns": "give the model every column of the recording sweeps",
    "progress": "no progress display (the job's one bar: phase, run i of n, ETA)",
    "log_summary": "do not print the per-class score summary at the end",
}
"""Help of the ``--no-<field>`` switch of each boolean field that defaults to True."""

HELP_OVERRIDES = {
    "label_column": "the class column of the dataset, kept with its ClassLabel names (default: "
                    "labels, then label)",
}
"""Help of RecorderConfig fields whose meaning in ``cld-hf run`` is more specific."""

ALIASES = {"overwrite_output_dir": ["--overwrite"]}


class RunHelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Hyphenated spellings only, ``--flag`` alone for switches, and the default of each option
    (switches: none; ``--no-x``: what it turns off)."""

    def _format_action_invocation(self, action):
        if not action.option_strings:
            return super()._format_action_invocation(action)
        shown = [o for o in action.option_strings if "_" not in o] or action.option_strings[:1]
        if action.nargs == 0 or getattr(action, "_cld_switch", False):
            return ", ".join(shown)
        return ", ".join(shown) + " " + self._format_args(action, self._get_default_metavar_for_optional(action))

    def _get_help_string(self, action):
        text = action.help or ""
        if getattr(action, "_cld_switch", False) or action.nargs == 0:
            return text
        if action.default is None or action.default is argparse.SUPPRESS or "(default" in text:
            return text
        value = action.default
        if isinstance(value, (list, tuple)):
            value = " ".join(str(v) for v in value) if value else "none"
        return f"{text} (default: {str(value).replace('%', '%%')})"


def make_run_parser(subparsers=None, prog: str = "cld-hf run"):
    """The parser of ``cld-hf run`` (a subparser of ``subparsers``, or a standalone one).

    Examples
    --------
    >>> parser = make_run_parser()
    >>> args = parser.parse_args(["--no-full-baseline", "--fractions", "0.2", "--label-column", "y"])
    >>> args.full_baseline, args.fractions, args.label_column
    (False, [0.2], 'y')
    >>> "--no-plots" in parser.format_help(), "--no_plots" in parser.format_help()
    (True, False)
    """
    from transformers import HfArgumentParser

    from ..recording.config import RecorderConfig
    from .arguments import RunArguments

    import textwrap

    kwargs = dict(
        help="the whole job: proxy + CLD scores + coresets + target accuracy table",
        usage=f"{prog} [options]",
        description=textwrap.fill("Split a stratified query set, train a proxy model with Trainer + "
        "CLDCallback (recording in the same sweeps the signals the --methods need), select one "
        "coreset per method and fraction with the same class budgets (CLD, random and the "
        "baselines of cld_hf.baselines), train the target on each (several seeds) and print a "
        "table like the paper's Table 2 and the selection cost of each method. Any image- or "
        "text-classification dataset works: a built-in one (digits, mnist1d), an imagefolder, "
        "a save_to_disk dataset (PIL images, image arrays, nested lists, or a text column) or "
        "a Hub id. Defaults: scikit-learn's digits, a small ResNet built from a config, "
        "--methods cld random.", width=95),
        epilog=EPILOG,
        formatter_class=RunHelpFormatter,
    )
    if subparsers is None:
        from ..cli import CLIArgumentParser

        kwargs.pop("help")
        parser = CLIArgumentParser(prog=prog, **kwargs)
    else:
        parser = subparsers.add_parser("run", **kwargs)
    groups = {}
    for title, names in RUN_GROUPS.items():
        groups.update({n: parser.add_argument_group(title) for n in names[:1]})
        for n in names[1:]:
            groups[n] = groups[names[0]]
    recording = parser.add_argument_group(
        "recording (RecorderConfig, shared with the library's CLDCallback)")
    for cls in (RunArguments, RecorderConfig):
        source = HfArgumentParser(cls, add_help=False)
        for action in source._actions:
            field = action.dest
            if field == "help":
                continue
            _present(action, field)
            (groups.get(field, recording) if cls is RunArguments else recording)._add_action(action)
    parser.set_defaults(func=run)
    return parser


def _present(action, field: str) -> None:
    """Hyphenated spelling first, switches marked, the ``--no-`` help, the aliases."""
    options = action.option_strings
    action.option_strings = sorted(options, key=lambda o: "_" in o)
    switch = action.type is not None and getattr(action.type, "__name__", "") == "string_to_bool"
    if isinstance(action, argparse._StoreFalseAction):
        action.help = NEGATIVE_HELP.get(field, f"turn --{field.replace('_', '-')} off")
        action._cld_switch = True
    elif switch:
        action._cld_switch = True
        if action.default is True:
            action.help = argparse.SUPPRESS  # the --no- switch says it
        else:
            action.help = f"{action.help} (default: off)"
    if field in HELP_OVERRIDES and action.help is not argparse.SUPPRESS and not isinstance(
            action, argparse._StoreFalseAction):
        action.help = HELP_OVERRIDES[field]
    if field in ALIASES and not isinstance(action, argparse._StoreFalseAction):
        action.option_strings += ALIASES[field]


def register(subparsers) -> None:
    make_run_parser(subparsers)


def _build_arguments(args):
    """``(RunArguments, RecorderConfig)`` from the parsed namespace; a bad value is a
    :class:`~cld_hf.cli.common.UsageError` (exit 2) naming the option."""
    import dataclasses

    from ..cli.common import UsageError
    from ..recording.config import RecorderConfig
    from .arguments import RunArguments, check_run

    try:
        run_args, config = (cls(**{f.name: getattr(args, f.name) for f in dataclasses.fields(cls)})
                            for cls in (RunArguments, RecorderConfig))
        check_run(run_args, config)
    except (ValueError, TypeError) as err:
        raise UsageError(_as_flags(str(err))) from None
    return run_args, config


def _as_flags(message: str) -> str:
    """``fractions contains 1.5, ...`` -> ``--fractions contains 1.5, ...``: the field named as
    the option the user typed."""
    import dataclasses
    import re

    from ..recording.config import RecorderConfig
    from .arguments import RunArguments

    names = sorted({f.name for cls in (RunArguments, RecorderConfig)
                    for f in dataclasses.fields(cls)}, key=len, reverse=True)
    pattern = r"(?<![-\w'])(" + "|".join(map(re.escape, names)) + r")(?=\s*(==|contains|is|gives|"\
              r"with|and|must|lists|needs|,))"
    return re.sub(pattern, lambda m: "--" + m.group(1).replace("_", "-"), message, count=3)


def _given_options(argv) -> set[str]:
    """The fields the user typed after ``run`` in ``argv`` (the defaults left out)."""
    if not argv or "run" not in argv:
        return set()
    parser = make_run_parser()
    for action in parser._actions:
        action.default = argparse.SUPPRESS
    given, _ = parser.parse_known_args(argv[argv.index("run") + 1:])
    return set(vars(given)) - {"func"}


def _apply_task_defaults(args) -> None:
    """``--task causal-lm`` (or ``--dataset stdlib-docstrings``): the text job's sizes
    (:data:`~cld_hf.app.lm_experiment.LM_DEFAULTS`) for every option the user did not type."""
    from .experiment import LM_DATASETS

    if args.task != "causal-lm" and not (args.task == "auto" and args.dataset in LM_DATASETS):
        return
    from .lm_experiment import LM_DEFAULTS

    given = _given_options(getattr(args, "_cli_argv", None))
    for name, value in LM_DEFAULTS.items():
        if name not in given:
            setattr(args, name, list(value) if isinstance(value, list) else value)


def run(args) -> int:
    from .experiment import run_experiment

    _apply_task_defaults(args)
    run_args, config = _build_arguments(args)
    argv = getattr(args, "_cli_argv", None)
    command = None
    if argv is not None:
        import shlex

        command = " ".join(shlex.quote(a) for a in ["cld-hf", *argv])
    results = run_experiment(run_args, config, command=command,
                             verbose=bool(getattr(args, "verbose", False)))
    if results.get("score_summary_text") and config.log_summary:
        print("CLD scores per class (Pearson r of each sample's loss differences with its "
              "class's query trajectory):\n")
        print(results["score_summary_text"])
        print()
    if results.get("task") == "causal-lm":
        print(f"Target test perplexity (lower is better), mean ± std over {run_args.seeds} "
              f"seed(s):\n")
        print(results["table_markdown"])
        print("\nTraining tokens of each coreset:\n")
        print(results["tokens_markdown"])
    else:
        print(f"Target test accuracy (%), mean ± std over {run_args.seeds} seed(s):\n")
        print(results["table_markdown"])
    print("\nSelection cost (seconds measured; extra storage; Appendix E):\n")
    print(results["cost_markdown"])
    proxy = results.get("proxy_test_accuracy")
    proxy_text = f"proxy test accuracy {100 * proxy:.2f}%; " if proxy is not None else ""
    if results.get("proxy_test_perplexity") is not None:
        proxy_text = f"proxy test perplexity {results['proxy_test_perplexity']:.1f}; "
    print(f"\n{proxy_text}{results['seconds']:.0f} s; outputs in {run_args.output_dir} "
          f"(results.md, plots/, hub/)")
    for failed in results.get("failed_steps", []):
        print(f"cld-hf run: error: the {failed['step']} step failed: {failed['error']} "
              f"(the results are saved in {run_args.output_dir})", file=sys.stderr)
    return 1 if results.get("failed_steps") else 0
