"""Benchmark: torch CPU threads for ``cld-hf run``, on an idle machine and beside a busy process.

Times training steps of the default proxy (the small ResNet of ``cld-hf run``, on digits, batch
64) with each thread count, first on the idle machine, then while one other process keeps a core
busy (this script starts it: a pure-Python busy loop), in one run. It reports the median step
time of each configuration and its ratio to the best, which is how ``cld-hf run``'s default
(``--threads``: one fewer than the cores, at least 1) was chosen.

    python scripts/bench_threads.py                # ~1 minute
    python scripts/bench_threads.py --json out.json --markdown out.md
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time


def step_times(threads: int, steps: int, warmup: int = 3) -> list[float]:
    import torch

    from cld_hf.app.builtin import load_builtin_dataset, make_image_classifier

    torch.set_num_threads(threads)
    data = load_builtin_dataset("digits")["train"].with_format("numpy")
    x = torch.tensor(data["pixel_values"][:64])
    y = torch.tensor(data["label"][:64])
    model = make_image_classifier(10, num_channels=1, seed=0)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    times = []
    for i in range(warmup + steps):
        start = time.perf_counter()
        loss = model(pixel_values=x, labels=y).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return times


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=40, help="timed steps per configuration")
    parser.add_argument("--json", help="write the figures to this JSON file")
    parser.add_argument("--markdown", help="write the table to this Markdown file")
    args = parser.parse_args(argv)

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    counts = sorted({1, max(1, cores - 1), cores})
    rows = []
    for busy in (False, True):
        hog = None
        if busy:
            hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
            time.sleep(1.0)
        try:
            for threads in counts:
                times = step_times(threads, args.steps)
                rows.append({"busy_process": busy, "threads": threads,
                             "median_step_s": statistics.median(times),
                             "p90_step_s": sorted(times)[int(0.9 * len(times))]})
        finally:
            if hog is not None:
                hog.kill()
                hog.wait()
    best = min(r["median_step_s"] for r in rows if not r["busy_process"])
    lines = ["| machine | torch threads | median step (ms) | 90th percentile (ms) | vs idle best |",
             "|---|---|---|---|---|"]
    for r in rows:
        where = "one other busy process" if r["busy_process"] else "idle"
        lines.append(f"| {where} | {r['threads']} | {1000 * r['median_step_s']:.1f} | "
                     f"{1000 * r['p90_step_s']:.1f} | {r['median_step_s'] / best:.2f}x |")
    table = "\n".join(lines)
    print(f"{cores} cores; small ResNet of cld-hf run, digits, batch 64, {args.steps} steps each")
    print(table)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"cores": cores, "rows": rows}, f, indent=2)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(table + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
