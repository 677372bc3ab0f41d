"""``cld-hf study <name>``: the paper's studies (Appendix D.1, D.2, F and F.1) at small scale.

Each study is a function of :mod:`cld_hf.app.studies`; this module maps its options onto
the function's keywords (an option left out keeps the function's default) and prints the
``results.md`` it wrote.
"""

from __future__ import annotations

import argparse
import shlex

EPILOG = """\
examples:
  cld-hf study lds                       # Appendix F: LDS of CLD_inf1, TracIn, random (digits)
  cld-hf study lds --alphas 0.5 --subsets 64 --seeds 0 1
  cld-hf study seed-stability --seeds 0 1 2 3 4          # Appendix D.1
  cld-hf study fraction-sweep --seeds 0 1 2              # Appendix D.2
  cld-hf study brittleness --k 50 100 200                # Appendix F.1
  cld-hf study lds --dataset mnist1d --output-dir lds-mnist1d
  cld-hf study <name> --help                             # the options of one study

each writes results.json and results.md (and what it trained on: the proxy's store, the
subsets, the selections) to --output-dir (default: study-<name>); it removes only its own
outputs, and only with --overwrite-output-dir.
"""

STUDY_HELP = {
    "lds": ("Appendix F / Figure 8a: linear datamodeling score of CLD_inf1, last-layer TracIn "
            "and random scores at several sampling ratios"),
    "seed-stability": ("Appendix D.1 / Figure 7a: pairwise MAE of the CLD scores of proxies "
                       "of several seeds, and the overlap of their coresets"),
    "fraction-sweep": ("Appendix D.2 / Figure 7b: accuracy of CLD and random coresets over a "
                       "fraction sweep; the smallest fraction within 0.5 points of full data"),
    "brittleness": ("Appendix F.1 / Figure 8b: share of query predictions that flip when the "
                    "top-k training samples are removed and the model retrained"),
}

# option dest -> study function keyword (the common ones; each study adds its own)
_COMMON = ("dataset", "output_dir", "seed", "seeds", "epochs", "batch_size", "learning_rate",
           "query_fraction", "max_train", "threads", "overwrite_output_dir")


def _common(p: argparse.ArgumentParser, name: str, seeds_help: str) -> None:
    from ..cli.common import fraction_type, positive_int

    g = p.add_argument_group("data and training")
    g.add_argument("--dataset", default=None,
                   help="built-in 'digits' (default) or 'mnist1d', or a save_to_disk directory")
    g.add_argument("--output-dir", default=f"study-{name}",
                   help=f"where the results go (default: study-{name})")
    g.add_argument("--overwrite-output-dir", action="store_true", default=None,
                   help="replace a previous run's outputs of this study (only those)")
    g.add_argument("--seed", type=int, default=None,
                   help="seed of the query split and the proxy (default 0)")
    g.add_argument("--seeds", type=int, nargs="+", default=None, metavar="SEED",
                   help=seeds_help)
    g.add_argument("--epochs", type=positive_int, default=None,
                   help="epochs of the proxy and of every model trained (default 10)")
    g.add_argument("--batch-size", type=positive_int, default=None, help="default 64")
    g.add_argument("--learning-rate", type=float, default=None, help="AdamW, default 0.01")
    g.add_argument("--query-fraction", type=fraction_type, default=None,
                   help="share of each class held out as the query set (default 0.1)")
    g.add_argument("--max-train", type=positive_int, default=None,
                   help="subsample the training split to about this many rows (quick runs)")
    g.add_argument("--threads", type=positive_int, default=None,
                   help="torch CPU threads (default: one fewer than the cores)")


def register(subparsers) -> None:
    from ..cli.common import positive_int

    p = subparsers.add_parser(
        "study",
        help="the paper's studies: lds, seed-stability, fraction-sweep, brittleness",
        description="Run one of the paper's appendix studies at small scale on a built-in "
        "dataset: " + "; ".join(f"{k}: {v}" for k, v in STUDY_HELP.items()) + ".",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    studies = p.add_subparsers(dest="study", metavar="<study>", required=True)

    def add(name, seeds_help):
        sp = studies.add_parser(name, help=STUDY_HELP[name], description=STUDY_HELP[name] + ".",
                                epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
        _common(sp, name, seeds_help)
        sp.set_defaults(func=run)
        return sp.add_argument_group(f"{name}")

    g = add("lds", "retraining seeds of every subset model (default: 0)")
    g.add_argument("--alphas", type=float, nargs="+", default=None, metavar="ALPHA",
                   help="sampling ratios in (0, 1) (default 0.25 0.5 0.75)")
    g.add_argument("--subsets", dest="num_subsets", type=positive_int, default=None,
                   help="random subsets per alpha (default 40; the paper: 100)")
    g = add("seed-stability", "proxy seeds, at least 2 (default: 0 1 2 3 4)")
    g.add_argument("--fractions", type=float, nargs="+", default=None, metavar="F",
                   help="coreset fractions whose overlap is measured (default 0.1 0.3)")
    g.add_argument("--no-repeat", dest="repeat_first", action="store_false", default=None,
                   help="do not train the first seed twice (the determinism check)")
    g = add("fraction-sweep", "target seeds (default: 0 1 2)")
    g.add_argument("--fractions", type=float, nargs="+", default=None, metavar="F",
                   help="coreset fractions (default 0.1 0.2 ... 0.9)")
    g.add_argument("--methods", nargs="+", default=None,
                   help="coreset methods reading only the losses (default: cld random)")
    g.add_argument("--tolerance", type=float, default=None,
                   help="accuracy below full data still counted as recovered (default 0.005)")
    g = add("brittleness", "retraining seeds (default: 0 1 2 3 4)")
    g.add_argument("--k", dest="ks", type=positive_int, nargs="+", default=None, metavar="K",
                   help="numbers of training samples removed (default 50 100 200)")
    g.add_argument("--methods", nargs="+", default=None,
                   help="removal rules: cld cld_inf1 tracin random (default: cld tracin random)")


_STUDY_OPTIONS = {
    "lds": ("alphas", "num_subsets"),
    "seed-stability": ("fractions", "repeat_first"),
    "fraction-sweep": ("fractions", "methods", "tolerance"),
    "brittleness": ("ks", "methods"),
}


def _flag(dest: str) -> str:
    return {"num_subsets": "--subsets", "ks": "--k", "repeat_first": "--no-repeat"}.get(
        dest, "--" + dest.replace("_", "-"))


def study_kwargs(args) -> dict:
    """The study function's keywords from parsed options (those left out are not passed).

    Examples
    --------
    >>> ns = argparse.Namespace(study="lds", dataset=None, output_dir="out", seed=None,
    ...                         seeds=[0, 1], epochs=None, batch_size=None, learning_rate=None,
    ...                         query_fraction=None, max_train=None, threads=None,
    ...                         overwrite_output_dir=None, alphas=[0.5], num_subsets=None)
    >>> study_kwargs(ns)
    {'output_dir': 'out', 'seeds': [0, 1], 'alphas': [0.5]}
    """
    names = (*_COMMON, *_STUDY_OPTIONS[args.study])
    return {k: getattr(args, k) for k in names if getattr(args, k, None) is not None}


def command_line(study: str, kwargs: dict) -> str:
    """The ``cld-hf study`` command that gives these keywords.

    Examples
    --------
    >>> command_line("lds", {"output_dir": "out", "seeds": [0, 1], "overwrite_output_dir": True})
    'cld-hf study lds --output-dir out --seeds 0 1 --overwrite-output-dir'
    """
    parts = ["cld-hf", "study", study]
    for k, v in kwargs.items():
        if isinstance(v, bool):
            if k == "repeat_first" and not v:
                parts.append(_flag(k))
            elif v and k != "repeat_first":
                parts.append(_flag(k))
        elif isinstance(v, (list, tuple)):
            parts += [_flag(k), *map(str, v)]
        else:
            parts += [_flag(k), str(v)]
    return " ".join(shlex.quote(p) for p in parts)


def run(args) -> int:
    from .studies import STUDIES

    kwargs = study_kwargs(args)
    results = STUDIES[args.study](**kwargs, command=command_line(args.study, kwargs))
    print(results["markdown"])
    print(f"outputs in {kwargs['output_dir']}")
    return 0
