"""Regenerate every figure of README.md: rerun the runs and benchmarks, rewrite the tables.

Each figure is a command whose Markdown output this script saves as ``scripts/figures/<name>.md``
(first line: when, on what machine, with which versions, by which command, how long), then
copies into README.md between ``<!-- figure: <name> -->`` and ``<!-- /figure: <name> -->``.
Nothing in those blocks is typed by hand; ``tests/test_readme_figures.py`` checks that each block
is the file the last run wrote. CI does not run this script (it takes long); run it on an idle
machine, one figure at a time, since the timings are ratios measured within one run:

    python scripts/readme_figures.py --list
    python scripts/readme_figures.py                       # every figure (hours on 2 cores)
    python scripts/readme_figures.py --only default_run noisy_run
    python scripts/readme_figures.py --readme-only         # copy saved figures into README.md
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIGURES_DIR = ROOT / "scripts" / "figures"
README = ROOT / "README.md"
BLOCK = re.compile(r"(<!-- figure: (?P<name>[a-z0-9_]+) -->\n)(?P<body>.*?)(<!-- /figure: (?P=name) -->)",
                   re.S)


def machine() -> str:
    """Cores, CPU model, GPU, and the versions that matter, in one line."""
    import numpy
    import torch
    import transformers

    import datasets

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (f"{cores} CPU cores ({cpu}), {gpu}; Python {platform.python_version()}, torch "
            f"{torch.__version__}, transformers {transformers.__version__}, datasets "
            f"{datasets.__version__}, numpy {numpy.__version__}")


def run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1",
               TRANSFORMERS_VERBOSITY="error")
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, **kwargs)
    if proc.returncode != 0:
        raise RuntimeError(f"{shlex.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return proc


def python(*args) -> list[str]:
    return [sys.executable, *map(str, args)]


# ------------------------------------------------------------------------------------ figures


def fig_scoring(tmp: Path) -> tuple[str, str]:
    cmd = python("scripts/bench_scoring.py", "--streaming", "--attribution", "--repeats", "5",
                 "--json", tmp / "scoring.json")
    run(cmd)
    d = json.loads((tmp / "scoring.json").read_text())
    lines = ["| scorer | time (median) | vs authors' loop | vs one read of the array | "
             "extra peak memory | vs trajectory |", "|---|---|---|---|---|---|"]
    for name, r in d["rows"].items():
        ratio = r["over_read_sum"]
        ratio = f"{sorted(ratio)[len(ratio) // 2]:.2f}x" if ratio else ""
        peak, share = r["extra_peak_gib"], r["extra_peak_over_trajectory"]
        peak = "" if peak is None else f"{peak:.3f} GiB"
        share = "" if share is None else f"{share:.3f}x"
        lines.append(f"| {name} | {r['median_seconds']:.3f} s | {r['speedup_vs_authors']:.1f}x | "
                     f"{ratio} | {peak} | {share} |")
    diffs = ", ".join(f"{name} {value:.1e}" for name, value in d["score_differences"].items()
                      if name.startswith("cld_scores"))
    text = "\n".join(lines) + (
        f"\n\nN = {d['N']:,}, Q = {d['Q']:,}, S = {d['S']}, C = {d['C']} ({d['trajectory_gib']:.3f} "
        f"GiB of float32 trajectory); largest score difference to the authors' loop: {diffs}; "
        f"load average {d['load_average_before'][0]:.2f} at the start.")
    if d.get("first_call"):
        f = d["first_call"]
        text += (
            f" `(numba)`: the compiled kernel (`pip install \"cld-hf[fast]\"`, what "
            f"`kernel=\"auto\"` runs at this size when numba is installed), timed warm, on "
            f"{d['kernel_threads']} threads; its first call in a fresh process costs "
            f"{f['compile_extra_seconds']:.2f} s more than the NumPy kernel's with an empty numba "
            f"cache (compiling) and {f['cached_extra_seconds']:.2f} s more once the cache holds it "
            f"(loading). `(numpy)`: the NumPy kernel, one thread.")
    if "streaming_over_batch" in d:
        text += (f" {d['streaming_name']} (90 updates and `scores()`) takes "
                 f"{d['streaming_over_batch']:.2f}x "
                 f"the `{d['streaming_batch_reference']}` call; its largest score difference to "
                 f"that call is {d['streaming_max_abs_difference']:.1e}; at this N, "
                 f"`StreamingCLD(kernel=\"auto\")` updates with `{d['streaming_auto_kernel']}` "
                 f"(the compiled update from 2**22 rows, where it repays its compilation).")
    return text, shlex.join(cmd[1:])


def _table_of(path: Path) -> str:
    return path.read_text().strip()


def fig_baselines_scale(tmp: Path) -> tuple[str, str]:
    cmd = python("scripts/bench_baselines.py", "--threads", "1", "--out", tmp / "baselines.md")
    run(cmd, timeout=4 * 3600)
    return _table_of(tmp / "baselines.md"), shlex.join(cmd[1:])


def fig_recording_overhead(tmp: Path) -> tuple[str, str]:
    cmd = python("scripts/bench_callback.py", "--epochs", "3", "--repeats", "5",
                 "--markdown", tmp / "callback.md")
    run(cmd)
    return _table_of(tmp / "callback.md"), shlex.join(cmd[1:])


def fig_threads(tmp: Path) -> tuple[str, str]:
    cmd = python("scripts/bench_threads.py", "--markdown", tmp / "threads.md")
    run(cmd)
    return _table_of(tmp / "threads.md"), shlex.join(cmd[1:])


def fig_sft(tmp: Path) -> tuple[str, str]:
    cmd = python("scripts/bench_sft.py", "--json", tmp / "sft.json")
    run(cmd, timeout=2 * 3600)
    d = json.loads((tmp / "sft.json").read_text())
    lines = ["| configuration | paired ratio to the plain epoch (median, rounds min-max) | "
             "median epoch | from the snapshot-0 sweep | paper estimate |", "|---|---|---|---|---|"]
    for c, ratio in d["ratio_paired"].items():
        rounds = d["ratio_paired_rounds"][c]
        extra = d["overhead_from_initial_sweep"].get(c)
        extra = "" if extra is None else f"+{100 * extra:.1f}% of an epoch"
        estimate = d["paper_estimate"].get(c.split()[0])
        estimate = "" if estimate is None else f"{estimate:.3f}"
        lines.append(f"| {c} | {ratio:.3f} ({min(rounds):.3f}-{max(rounds):.3f}) | "
                     f"{d['median_epoch_s'][c]:.2f} s | {extra} | {estimate} |")
    text = "\n".join(lines) + (f"\n\nN = {d['N']} training and Q = {d['Q']} query documents; "
                                f"the packed configurations are paired with the plain packed "
                                f"epoch.")
    return text, shlex.join(cmd[1:])


def _cld_hf_run(tmp: Path, name: str, *options: str) -> tuple[str, str]:
    out = tmp / name
    cmd = python("-m", "cld_hf.cli", "run", "--output-dir", out, *options)
    run(cmd)
    results = json.loads((out / "results.json").read_text())
    text = results["table_markdown"]
    noisy = [r for r in results["runs"] if "noisy_share" in r]
    if noisy:
        shares = {}
        for r in noisy:
            shares.setdefault((r["fraction"], r["method"]), []).append(r["noisy_share"])
        lines = ["\n| fraction | method | flipped labels in the coreset |", "|---|---|---|"]
        for (fraction, method), values in sorted(shares.items()):
            lines.append(f"| {100 * fraction:g}% | {method} | "
                         f"{100 * sum(values) / len(values):.1f}% |")
        text += "\n" + "\n".join(lines)
    text += f"\n\nProxy test accuracy {100 * results['proxy_test_accuracy']:.2f}%."
    shown = ["cld-hf", "run", *options]
    return text, shlex.join(shown)


def fig_default_run(tmp: Path) -> tuple[str, str]:
    return _cld_hf_run(tmp, "default")


def fig_noisy_run(tmp: Path) -> tuple[str, str]:
    return _cld_hf_run(tmp, "noisy", "--label-noise", "0.2")


def _compare(tmp: Path, dataset: str, *options: str) -> tuple[str, str]:
    out = tmp / f"compare-{dataset}"
    cmd = python("scripts/compare_methods.py", "--dataset", dataset, "--output_dir", out,
                 "--threads", "1", *options)
    run(cmd, timeout=4 * 3600)
    results = json.loads((out / "results.json").read_text())
    return results["table_markdown"], shlex.join(cmd[1:]).replace(str(out), f"compare-{dataset}")


def fig_compare_digits(tmp: Path) -> tuple[str, str]:
    return _compare(tmp, "digits", "--fractions", "0.1", "0.3", "0.5", "--seeds", "3",
                    "--target_epochs", "30")


def fig_compare_mnist1d(tmp: Path) -> tuple[str, str]:
    return _compare(tmp, "mnist1d", "--fractions", "0.1", "0.3", "0.5", "--seeds", "3",
                    "--target_epochs", "12")


def _strategies(tmp: Path, *options: str) -> tuple[str, str]:
    out = tmp / "strategies"
    cmd = python("scripts/compare_strategies.py", "--seeds", "20", "--threads", "1", *options,
                 "--output_dir", out)
    run(cmd, timeout=6 * 3600)
    text = (out / "results.md").read_text()
    table = text[text.index("| setting |"):]
    table = table[: table.index("\n\n")] if "\n\n" in table else table
    return table.strip(), shlex.join(cmd[1:]).replace(str(out), "strategies")


def fig_strategies(tmp: Path) -> tuple[str, str]:
    return _strategies(tmp)


def fig_query_spread(tmp: Path) -> tuple[str, str]:
    return _strategies(tmp, "--noise", "0", "--strategies", "top", "top_query_spread", "random")


def fig_snapshot0(tmp: Path) -> tuple[str, str]:
    cmd = python("scripts/study_snapshot0.py", "--output", tmp / "snapshot0.md")
    run(cmd)
    return _table_of(tmp / "snapshot0.md"), shlex.join(cmd[1:])


def fig_cards(tmp: Path) -> tuple[str, str]:
    cmd = python("scripts/render_cards.py", "--output", tmp / "cards", "--body-only")
    run(cmd)
    parts = []
    for name, title in (("coreset_dataset_card.md", "The dataset card"),
                        ("proxy_model_card.md", "The model card")):
        text = (tmp / "cards" / name).read_text().strip()
        fence = "`" * max(4, max((len(m) for m in re.findall(r"`+", text)), default=0) + 1)
        parts.append(f"<details><summary>{title} ({name})</summary>\n\n{fence}markdown\n{text}\n"
                     f"{fence}\n\n</details>")
    return "\n\n".join(parts), shlex.join(cmd[1:]).replace(str(tmp / "cards"), "cards")


def fig_lm(tmp: Path) -> tuple[str, str]:
    out = tmp / "compare_lm"
    cmd = python("scripts/compare_lm.py", "--seeds", "5", "--threads", "1", "--methods", "cld",
                 "random", "s2l", "random_length", "--output_dir", out)
    run(cmd, timeout=4 * 3600)
    text = (out / "compare_lm.md").read_text()
    body = text[text.index("## Test perplexity"):text.index("## Selection cost")]
    body = body.replace("## ", "#### ")
    return body.strip(), shlex.join(cmd[1:]).replace(str(out), "compare_lm")


def _study(tmp: Path, name: str) -> tuple[str, str]:
    out = tmp / name
    cmd = python("-m", "cld_hf.cli", "study", name, "--output-dir", out, "--threads", "1")
    run(cmd, timeout=4 * 3600)
    results = json.loads((out / "results.json").read_text())
    captions = STUDY_CAPTIONS[name]
    text = "\n\n".join(f"{caption}\n\n{results[key]}" for key, caption in captions.items())
    proxy = results["proxy_test_accuracy"]
    if isinstance(proxy, dict):  # one proxy per seed
        values = list(proxy.values())
        text += (f"\n\nProxy test accuracy {100 * min(values):.2f}-{100 * max(values):.2f}% "
                 f"over {len(values)} proxy seeds.")
    else:
        text += f"\n\nProxy test accuracy {100 * proxy:.2f}%."
    return text, shlex.join(["cld-hf", "study", name])


STUDY_CAPTIONS = {
    "lds": {"table_markdown": "Linear datamodeling score (Spearman, mean over query samples ± "
                              "bootstrap std over subsets):"},
    "seed-stability": {"table_markdown": "CLD scores of proxies trained with different seeds:"},
    "fraction-sweep": {"table_markdown": "Target test accuracy (%), mean ± std over seeds:",
                       "smallest_markdown": "Smallest fraction within a tolerance of the full "
                                            "training set's accuracy:"},
    "brittleness": {"table_markdown": "Query predictions flipped (%) after removing the top-k "
                                      "training samples and retraining, mean ± std over seeds:",
                    "test_table_markdown": "Test predictions flipped (%):"},
}


def fig_study_lds(tmp: Path) -> tuple[str, str]:
    return _study(tmp, "lds")


def fig_study_seed_stability(tmp: Path) -> tuple[str, str]:
    return _study(tmp, "seed-stability")


def fig_study_fraction_sweep(tmp: Path) -> tuple[str, str]:
    return _study(tmp, "fraction-sweep")


def fig_study_brittleness(tmp: Path) -> tuple[str, str]:
    return _study(tmp, "brittleness")


FIGURES: dict[str, Callable[[Path], tuple[str, str]]] = {
    "default_run": fig_default_run,
    "noisy_run": fig_noisy_run,
    "snapshot0": fig_snapshot0,
    "cards": fig_cards,
    "compare_digits": fig_compare_digits,
    "compare_mnist1d": fig_compare_mnist1d,
    "strategies": fig_strategies,
    "query_spread": fig_query_spread,
    "scoring": fig_scoring,
    "recording_overhead": fig_recording_overhead,
    "baselines_scale": fig_baselines_scale,
    "threads": fig_threads,
    "sft": fig_sft,
    "lm": fig_lm,
    "study_lds": fig_study_lds,
    "study_seed_stability": fig_study_seed_stability,
    "study_fraction_sweep": fig_study_fraction_sweep,
    "study_brittleness": fig_study_brittleness,
}
"""Figure name -> function that runs it and returns ``(markdown, command shown)``."""


def write_figure(name: str, markdown: str, command: str, seconds: float) -> Path:
    """Save one figure with its provenance line."""
    FIGURES_DIR.mkdir(parents=True, exist_ok=True)
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    header = (f"<sub>Measured {when} on {machine()}; load average {load:.2f} at the end; "
              f"`{command}`; {seconds:.0f} s.</sub>")
    path = FIGURES_DIR / f"{name}.md"
    path.write_text(header + "\n\n" + markdown.strip() + "\n")
    return path


def update_readme(readme: Path = README, figures_dir: Path = FIGURES_DIR) -> list[str]:
    """Copy every saved figure into its README block; returns the names updated."""
    text = readme.read_text()
    updated = []

    def fill(m):
        path = figures_dir / f"{m.group('name')}.md"
        if not path.is_file():
            return m.group(0)
        updated.append(m.group("name"))
        return m.group(1) + path.read_text() + m.group(4)

    readme.write_text(BLOCK.sub(fill, text))
    return updated


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="+", choices=list(FIGURES), help="these figures only")
    parser.add_argument("--list", action="store_true", help="list the figures and exit")
    parser.add_argument("--readme-only", action="store_true",
                        help="copy the saved figures into README.md, run nothing")
    args = parser.parse_args(argv)
    if args.list:
        print("\n".join(FIGURES))
        return 0
    if not args.readme_only:
        for name in args.only or list(FIGURES):
            with tempfile.TemporaryDirectory(prefix=f"cld-figure-{name}-") as tmp:
                start = time.perf_counter()
                print(f"{name}: running...", flush=True)
                markdown, command = FIGURES[name](Path(tmp))
                command = command.replace(f"{tmp}/", "")  # the scratch folder is not the point
                seconds = time.perf_counter() - start
                print(f"{name}: {seconds:.0f} s -> {write_figure(name, markdown, command, seconds)}")
    print("README.md updated:", ", ".join(update_readme()) or "nothing")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
