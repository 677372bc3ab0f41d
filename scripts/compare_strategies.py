# /// script
# requires-python = ">=3.10"
# dependencies = ["cld-hf"]
# ///
"""Compare the selection strategies of ``cld_hf.strategies`` on clean and noisy built-in data.

For each setting (a built-in dataset, with or without flipped labels) one proxy run is recorded
as ``cld-hf run`` records it (labels flipped before a stratified 10% query split, a small ResNet
trained 15 epochs with ``CLDCallback(signals=("embeddings",))``); every strategy then selects a
coreset per fraction with the same class budgets, and the target model is trained from scratch on
each (AdamW, the same seeds for every strategy, so that the differences to random are paired).

Reported per setting, fraction and strategy: test accuracy (mean ± std over seeds), the paired
difference to random and to top-k (mean ± std over seeds, and on how many seeds the strategy
won), and the share of flipped labels in the coreset. Written to ``--output_dir``:

- ``results.md``: the tables and the diagnosis (``cld_hf.diagnosis``) of every proxy run;
- ``runs.json``: every target run, the diagnoses, the settings, timing and machine load;
- ``strategies.png``: the paired differences to random;
- ``<setting>/trajectories``: the recorded stores; ``<setting>/runs.jsonl``: the runs as they
  finish (a rerun with the same ``--output_dir`` skips the runs already there).

    python scripts/compare_strategies.py --seeds 5 --output_dir compare_strategies
    python scripts/compare_strategies.py --datasets digits --noise 0.2 --seeds 3 --threads 1
    python scripts/compare_strategies.py --report_only --output_dir compare_strategies
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import shutil
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

logger = logging.getLogger("compare_strategies")

TARGET_EPOCHS = {"digits": 20, "mnist1d": 12}
STRATEGIES = ("top", "noise_adaptive", "coverage", "random")
# Named variants: strategy name -> (registered strategy, options). "coverage" is
# allocation="proportional" (its default since the first measurement, which ran
# "one_per_cluster", then the default, under the name "coverage_one_per_cluster").
VARIANTS = {"coverage_one_per_cluster": ("coverage", {"allocation": "one_per_cluster"}),
            "coverage_proportional": ("coverage", {"allocation": "proportional"}),
            "coverage_cld": ("coverage", {"within": "cld"})}
NOISE_COLUMN = "label_is_noisy"


def make_parser(prog: str | None = None) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--datasets", nargs="+", default=["digits", "mnist1d"],
                   choices=sorted(TARGET_EPOCHS), help="built-in datasets")
    p.add_argument("--noise", nargs="+", type=float, default=[0.0, 0.2],
                   help="shares of flipped training labels, one setting each")
    p.add_argument("--fractions", nargs="+", type=float, default=[0.1, 0.3])
    p.add_argument("--seeds", type=int, default=5, help="target runs per coreset")
    p.add_argument("--first_seed", type=int, default=0,
                   help="seeds first_seed .. first_seed + seeds - 1 (fresh seeds for a "
                        "confirmation run)")
    p.add_argument("--strategies", nargs="+", default=list(STRATEGIES),
                   help="names of cld_hf.strategies.STRATEGIES, the variants "
                        f"{sorted(VARIANTS)}, and 'top_query_spread' (top-k of "
                        "cld_scores(..., normalize='query_spread'))")
    p.add_argument("--proxy_epochs", type=int, default=15)
    p.add_argument("--digits_target_epochs", type=int, default=TARGET_EPOCHS["digits"])
    p.add_argument("--mnist1d_target_epochs", type=int, default=TARGET_EPOCHS["mnist1d"])
    p.add_argument("--batch_size", type=int, default=64)
    p.add_argument("--learning_rate", type=float, default=1e-2)
    p.add_argument("--query_fraction", type=float, default=0.1)
    p.add_argument("--proxy_seed", type=int, default=0,
                   help="seed of the label noise, the query split and the proxy")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    p.add_argument("--output_dir", default="compare_strategies")
    p.add_argument("--report_only", action="store_true",
                   help="only rebuild results.md, runs.json and the plot from output_dir")
    return p


# ------------------------------------------------------------------------------- statistics


def _mean_std(values) -> tuple[float, float]:
    a = np.asarray(values, dtype=np.float64)
    return float(a.mean()), float(a.std(ddof=1)) if len(a) > 1 else 0.0


def summarize(runs: list[dict]) -> list[dict]:
    """One row per (setting, fraction, strategy): accuracy and paired differences (in points).

    Examples
    --------
    >>> runs = [dict(setting="s", fraction=0.1, strategy=m, seed=k, accuracy=a, flipped_share=0.0)
    ...         for m, accs in [("random", [0.5, 0.6]), ("top", [0.6, 0.6])]
    ...         for k, a in enumerate(accs)]
    >>> row = [r for r in summarize(runs) if r["strategy"] == "top"][0]
    >>> [round(v, 2) for v in (*row["vs_random"], row["se_vs_random"])], row["wins_vs_random"]
    ([5.0, 7.07, 5.0], '1/2')
    """
    out = []
    keys = list(dict.fromkeys((r["setting"], r["fraction"], r["strategy"]) for r in runs))
    index = {(r["setting"], r["fraction"], r["strategy"], r["seed"]): r for r in runs}
    for setting, fraction, strategy in keys:
        mine = {r["seed"]: r for r in runs if (r["setting"], r["fraction"], r["strategy"]) == (
            setting, fraction, strategy)}
        seeds = sorted(mine)
        row = {"setting": setting, "fraction": fraction, "strategy": strategy,
               "seeds": len(seeds),
               "accuracy": _mean_std([100 * mine[s]["accuracy"] for s in seeds]),
               "flipped_share": (None if mine[seeds[0]].get("flipped_share") is None else
                                 float(np.mean([100 * mine[s]["flipped_share"] for s in seeds])))}
        for other in ("random", "top"):
            paired = [s for s in seeds if (setting, fraction, other, s) in index]
            if other == strategy or not paired:
                row[f"vs_{other}"], row[f"wins_vs_{other}"] = None, None
                row[f"se_vs_{other}"] = None
                continue
            diff = [100 * (mine[s]["accuracy"] - index[(setting, fraction, other, s)]["accuracy"])
                    for s in paired]
            row[f"vs_{other}"] = _mean_std(diff)
            row[f"se_vs_{other}"] = float(row[f"vs_{other}"][1] / np.sqrt(len(diff)))
            row[f"wins_vs_{other}"] = f"{sum(d > 0 for d in diff)}/{len(diff)}"
        out.append(row)
    return out


def _pm(value, signed=False) -> str:
    if value is None:
        return "-"
    mean, std = value
    return f"{mean:+.2f} ± {std:.2f}" if signed else f"{mean:.2f} ± {std:.2f}"


def markdown_table(rows: list[dict]) -> str:
    lines = ["| setting | fraction | strategy | seeds | accuracy (%) | Δ vs random (paired) | "
             "se | wins vs random | Δ vs top (paired) | se | flipped labels in coreset (%) |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        flipped = "-" if r["flipped_share"] is None else f"{r['flipped_share']:.1f}"
        se_r = "-" if r["se_vs_random"] is None else f"{r['se_vs_random']:.2f}"
        se_t = "-" if r["se_vs_top"] is None else f"{r['se_vs_top']:.2f}"
        lines.append(
            f"| {r['setting']} | {100 * r['fraction']:g}% | {r['strategy']} | {r['seeds']} | "
            f"{_pm(r['accuracy'])} | {_pm(r['vs_random'], True)} | {se_r} | "
            f"{r['wins_vs_random'] or '-'} | {_pm(r['vs_top'], True)} | {se_t} | {flipped} |")
    return "\n".join(lines)


def plot(rows: list[dict], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    settings = list(dict.fromkeys(r["setting"] for r in rows))
    strategies = [s for s in dict.fromkeys(r["strategy"] for r in rows) if s != "random"]
    fractions = sorted({r["fraction"] for r in rows})
    cols = min(2, len(settings))
    nrows = (len(settings) + cols - 1) // cols
    fig, axes = plt.subplots(nrows, cols, figsize=(6 * cols, 3.6 * nrows), squeeze=False)
    width = 0.8 / max(len(strategies), 1)
    for ax, setting in zip(axes.flat, settings):
        for i, strategy in enumerate(strategies):
            got = {r["fraction"]: r["vs_random"] for r in rows
                   if r["setting"] == setting and r["strategy"] == strategy and r["vs_random"]}
            xs = [j + (i - (len(strategies) - 1) / 2) * width for j, f in enumerate(fractions)
                  if f in got]
            ax.bar(xs, [got[f][0] for f in fractions if f in got], width,
                   yerr=[got[f][1] for f in fractions if f in got], capsize=3, label=strategy)
        ax.axhline(0.0, color="black", linewidth=0.8)
        ax.set_xticks(range(len(fractions)), [f"{100 * f:g}%" for f in fractions])
        ax.set_title(setting)
        ax.set_ylabel("accuracy − random (points, paired)")
    for ax in list(axes.flat)[len(settings):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=8)
    fig.suptitle("Selection strategies vs random: paired difference, mean ± std over seeds")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


# ------------------------------------------------------------------------------------ report


def _read_setting(setting_dir: Path) -> tuple[dict | None, list[dict]]:
    info_path = setting_dir / "setting.json"
    info = json.loads(info_path.read_text()) if info_path.is_file() else None
    runs_path = setting_dir / "runs.jsonl"
    runs = ([json.loads(line) for line in runs_path.read_text().splitlines() if line.strip()]
            if runs_path.is_file() else [])
    return info, runs


def write_report(out: Path, meta: dict) -> str:
    from cld_hf.diagnosis import diagnose, format_diagnosis

    settings, runs = [], []
    fractions = meta.get("arguments", {}).get("fractions", [0.1, 0.3])
    for setting_dir in sorted(p for p in out.iterdir() if (p / "setting.json").is_file()):
        info, setting_runs = _read_setting(setting_dir)
        if (setting_dir / "trajectories").is_dir():  # with the diagnosis code of this checkout
            info["diagnosis"] = diagnose(setting_dir / "trajectories", fractions=fractions)
            info["diagnosis_text"] = format_diagnosis(info["diagnosis"])
        settings.append(info)
        runs += setting_runs
    order = {s["setting"]: i for i, s in enumerate(settings)}
    strategy_order = {s: i for i, s in enumerate(meta.get("strategies", STRATEGIES))}
    runs.sort(key=lambda r: (order[r["setting"]], r["fraction"],
                             strategy_order.get(r["strategy"], 99), r["seed"]))
    rows = summarize(runs)
    table = markdown_table(rows)
    runs_of = "\n".join(
        f"- `{inv['command']}`: {inv['date']}, {inv['machine']}, load average (1, 5, 15 min) "
        f"{inv['load_start']} at start, {inv.get('load_end', '?')} at end, "
        f"{inv.get('minutes', '?')} min" for inv in meta.get("invocations", []))
    parts = ["# Selection strategies on clean and noisy built-in data\n",
             "Measured by (each invocation adds the runs missing in the output folder):\n",
             runs_of + "\n",
             "Accuracy in %, mean ± std (ddof=1) over seeds; Δ: the paired difference of the "
             "accuracy to random (or to top-k) on the same seed (same target initialisation and "
             "data order), mean ± std over seeds, and its standard error (std / sqrt(seeds)); "
             "wins: seeds on which the strategy beat random.\n",
             table, "\n## Proxy runs\n"]
    for s in settings:
        parts.append(f"### {s['setting']}\n\nProxy test accuracy {100 * s['proxy_accuracy']:.2f}%"
                     f", {s['num_snapshots']} snapshots, {s['num_train']} training / "
                     f"{s['num_query']} query samples, flipped labels in the training set "
                     f"{100 * s['flipped_share']:.1f}%, {s['seconds'] / 60:.1f} min.\n")
        parts.append("```\n" + s["diagnosis_text"] + "\n```\n")
    text = "\n".join(parts)
    (out / "results.md").write_text(text)
    (out / "runs.json").write_text(json.dumps(
        {"meta": meta, "settings": settings, "summary": rows, "runs": runs}, indent=1))
    if rows:
        plot(rows, out / "strategies.png")
    return table


# ---------------------------------------------------------------------------------------- run


def _load_avg() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:  # pragma: no cover - not on every platform
        return "n/a"


def main(argv: list[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    meta_path = out / "meta.json"
    if args.report_only:
        meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
        print(write_report(out, meta))
        return 0

    # Library and application imports, in one place.
    import torch
    from transformers import set_seed

    from cld_hf import (
        LossTrajectories,
        add_index_column,
        class_budgets,
        cld_scores,
        select_top_per_class,
        stratified_query_split,
    )
    from cld_hf.app.builtin import load_builtin_dataset, make_image_classifier
    from cld_hf.callback import CLDCallback
    from cld_hf.diagnosis import diagnose, format_diagnosis
    from cld_hf.app.data import apply_label_noise
    from cld_hf.app.training import train_and_evaluate
    from cld_hf.strategies import STRATEGIES as REGISTRY
    from cld_hf.strategies import select_with_strategy

    strategies = []
    for name in args.strategies:
        if name != "top_query_spread" and name not in REGISTRY and name not in VARIANTS:
            raise SystemExit(f"--strategies: {name!r} is not one of {list(REGISTRY)}, "
                             f"{sorted(VARIANTS)} or 'top_query_spread'.")
        strategies.append(name)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    started = time.perf_counter()
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    invocation = {
        "command": " ".join(["python scripts/compare_strategies.py",
                             *(sys.argv[1:] if argv is None else argv)]),
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.node()}, {os.cpu_count()} CPU cores, torch "
                   f"{torch.__version__}, {torch.get_num_threads()} torch thread(s)",
        "load_start": _load_avg(),
    }
    meta.setdefault("invocations", []).append(invocation)
    meta.update({"strategies": list(dict.fromkeys([*meta.get("strategies", []), *strategies])),
                 "arguments": vars(args)})
    meta_path.write_text(json.dumps(meta, indent=1))
    epochs_of = {"digits": args.digits_target_epochs, "mnist1d": args.mnist1d_target_epochs}

    for dataset in args.datasets:
        for noise in args.noise:
            setting = f"{dataset}-noise{100 * noise:g}"
            sdir = out / setting
            t0 = time.perf_counter()
            dd = load_builtin_dataset(dataset, seed=0)
            train, test = dd["train"].with_format("torch"), dd["test"].with_format("torch")
            num_labels = train.features["label"].num_classes
            num_channels = int(train.features["pixel_values"].shape[0])
            if noise > 0:
                train = apply_label_noise(train, noise, label_column="label",
                                          num_classes=num_labels, seed=args.proxy_seed)
            train = add_index_column(train)
            train_ds, query_ds = stratified_query_split(
                train, fraction=args.query_fraction, seed=args.proxy_seed, label_column="label")

            def make_model(seed):
                return make_image_classifier(num_labels, num_channels=num_channels, seed=seed)

            store_dir = sdir / "trajectories"
            info_path = sdir / "setting.json"
            if info_path.is_file():
                info = json.loads(info_path.read_text())
                logger.info("%s: reusing the proxy run in %s", setting, store_dir)
            else:
                shutil.rmtree(sdir, ignore_errors=True)
                set_seed(args.proxy_seed)
                cld = CLDCallback(query_dataset=query_ds, mode="sweep", label_column="label",
                                  output_dir=str(store_dir), signals=("embeddings",),
                                  progress=False, log_summary=False)
                _, proxy_acc = train_and_evaluate(
                    make_model(args.proxy_seed), train_ds, test, output_dir=sdir / "tmp",
                    epochs=args.proxy_epochs, batch_size=args.batch_size,
                    learning_rate=args.learning_rate, seed=args.proxy_seed,
                    label_column="label", callbacks=[cld])
                store = LossTrajectories(store_dir)
                diag = diagnose(store, fractions=args.fractions)
                flipped_all = (np.asarray(train_ds.with_format("numpy", columns=[NOISE_COLUMN])
                                          [NOISE_COLUMN][:]) if noise > 0 else None)
                info = {"setting": setting, "dataset": dataset, "noise": noise,
                        "proxy_accuracy": proxy_acc, "num_snapshots": store.num_snapshots,
                        "num_train": len(train_ds), "num_query": len(query_ds),
                        "flipped_share": 0.0 if flipped_all is None else float(flipped_all.mean()),
                        "target_epochs": epochs_of[dataset], "seconds": time.perf_counter() - t0,
                        "diagnosis": diag, "diagnosis_text": format_diagnosis(diag)}
                info_path.write_text(json.dumps(info, indent=1))
            print(f"\n## {setting}\n\n{info['diagnosis_text']}\n", flush=True)

            store = LossTrajectories(store_dir)
            labels = np.asarray(store.train_labels)
            scores = store.scores()
            query_losses = store.query_losses()
            embeddings = store.load_array("embeddings")
            flipped = (np.asarray(train_ds.with_format("numpy", columns=[NOISE_COLUMN])
                                  [NOISE_COLUMN][:]) if noise > 0 else None)
            spread = None
            if "top_query_spread" in strategies:
                spread = cld_scores(store.train_losses(), labels, query_losses,
                                    store.query_labels, normalize="query_spread")
            _, done = _read_setting(sdir)
            done_keys = {(r["fraction"], r["strategy"], r["seed"]) for r in done}
            with open(sdir / "runs.jsonl", "a") as log:
                for fraction in args.fractions:
                    budgets = class_budgets(labels, fraction=fraction)
                    for seed in range(args.first_seed, args.first_seed + args.seeds):
                        for strategy in strategies:
                            if (fraction, strategy, seed) in done_keys:
                                continue
                            t1 = time.perf_counter()
                            if strategy == "top_query_spread":
                                idx = select_top_per_class(spread, labels, budgets=budgets)
                            else:
                                name, options = VARIANTS.get(strategy, (strategy, {}))
                                idx = select_with_strategy(
                                    scores, labels, budgets=budgets, strategy=name, seed=seed,
                                    query_losses=query_losses, embeddings=embeddings, **options)
                            select_s = time.perf_counter() - t1
                            _, acc = train_and_evaluate(
                                make_model(1000 + seed), train_ds.select(idx), test,
                                output_dir=sdir / "tmp", epochs=epochs_of[dataset],
                                batch_size=args.batch_size, learning_rate=args.learning_rate,
                                seed=seed, label_column="label")
                            row = {"setting": setting, "dataset": dataset, "noise": noise,
                                   "fraction": fraction, "strategy": strategy, "seed": seed,
                                   "size": int(len(idx)), "accuracy": acc,
                                   "flipped_share": (None if flipped is None
                                                     else float(flipped[idx].mean())),
                                   "select_seconds": select_s,
                                   "seconds": time.perf_counter() - t1,
                                   "indices": idx.tolist()}
                            log.write(json.dumps(row) + "\n")
                            log.flush()
                            logger.info("%s %g %s seed %d: %.4f (%.0f s)", setting, fraction,
                                        strategy, seed, acc, row["seconds"])
            shutil.rmtree(sdir / "tmp", ignore_errors=True)

    invocation["load_end"] = _load_avg()
    invocation["minutes"] = round((time.perf_counter() - started) / 60, 1)
    meta["invocations"][-1] = invocation
    meta_path.write_text(json.dumps(meta, indent=1))
    print(write_report(out, meta))
    print(f"\n{(time.perf_counter() - started) / 60:.1f} min; outputs in {out}")
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("transformers").setLevel(logging.WARNING)
    raise SystemExit(main())
