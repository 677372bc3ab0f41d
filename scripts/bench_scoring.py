"""Benchmark: cld-hf's CLD scorer against the authors' per-class NumPy loop and against a plain
NumPy read of the same array, in one run.

Synthetic loss trajectories of ImageNet shape (N = 1,268,355 training samples, Q = 12,812 query
samples, S = 90 snapshots, C = 1000 classes), float32. Every scorer gets the same arrays. The
fast rows take turns for ``--repeats`` rounds, and each round's ratio to the read of that round is
reported (paired, so that a shared machine's slow drifts cancel: median and range over rounds);
the authors' loop runs ``--authors-repeats`` times (default once; the speed-ups divide its
median by each row's median). Extra peak memory is measured in a separate run under tracemalloc
(NumPy's allocations beyond the inputs). The largest difference between score vectors checks
that every row computes the same thing.

    python scripts/bench_scoring.py                      # ImageNet shape, ~1 minute, ~3 GB
    python scripts/bench_scoring.py --streaming          # + StreamingCLD, 90 updates
    python scripts/bench_scoring.py --attribution        # + CLD_inf1, N=50,000 x Q=1,000 x S=90
    python scripts/bench_scoring.py --scale 0.1 --json out.json

Rows:

- ``read: train.sum()`` and ``read: einsum rows`` (``np.einsum("ij->i", train)``): one pass over
  the trajectory with NumPy, the floor any scorer that reads the array has to pay.
- ``cld_scores`` (Algorithm 1) and ``cld_scores query_spread`` (``normalize="query_spread"``),
  each with ``kernel="numba"`` (the compiled one-pass kernel, ``pip install "cld-hf[fast]"``;
  what ``kernel="auto"`` runs at this size when numba is installed) and ``kernel="numpy"``
  (cache-sized NumPy chunks). The compiled rows are timed warm; its first call in a fresh
  process is timed apart (``--first-call``, on by default): once with an empty numba cache
  (compiling) and once with the cache that run left (loading), each as the extra seconds of a
  tiny ``cld_scores`` call over the same call with ``kernel="numpy"``.
- ``authors' class loop``: the authors' computation (their ``Compute_CLD_scores.py``): the
  trajectory as an (E, N) float64 array, ``np.diff`` over epochs, then for each class a boolean
  mask, standardisation and a mean of products. It returns scores instead of sorted indices so
  the results can be compared.
- ``StreamingCLD`` (``--streaming``): ``update()`` once per snapshot with contiguous (N,) arrays,
  as the recorder feeds it (the columns are copied out of the trajectory before the clock starts),
  then ``scores()``; with the compiled update (``kernel="numba"``) and with NumPy's (what ``"auto"``
  runs below 2**22 rows, as at ImageNet's N). Its ratio is to the first ``cld_scores`` row.
- ``cld_attribution`` (``--attribution``): the (N, Q) CLD_inf1 matrix, float32.

The script benchmarks the checkout it lives in (it puts the repository root first on sys.path).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cld_hf.attribution import cld_attribution  # noqa: E402
from cld_hf.scoring import StreamingCLD, cld_scores  # noqa: E402
from cld_hf.scoring.kernels import (  # noqa: E402
    AUTO_MIN_STREAM_ROWS,
    choose_kernel,
    kernel_threads,
    numba_available,
)

FIRST_CALL = """
import sys, time
import numpy as np
sys.path.insert(0, {root!r})
from cld_hf.scoring import cld_scores
rng = np.random.default_rng(0)
train = rng.random((2000, 10), dtype=np.float32)
train[0] = 1.0  # a constant row: the float64 path runs (and is compiled) too
query, tl, ql = rng.random((50, 10), dtype=np.float32), np.arange(2000) % 5, np.arange(50) % 5
start = time.perf_counter()
cld_scores(train, tl, query, ql, kernel={kernel!r})
print(time.perf_counter() - start)
"""


def first_call_seconds(kernel: str, cache_dir: str) -> float:
    """Seconds of the first ``cld_scores`` call (2,000 x 10, float32) in a fresh process whose
    numba cache is ``cache_dir``; with ``kernel="numba"`` that includes importing numba and
    compiling the kernel or loading it from the cache."""
    env = dict(os.environ, NUMBA_CACHE_DIR=cache_dir)
    code = FIRST_CALL.format(root=str(ROOT), kernel=kernel)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True)
    return float(out.stdout.split()[-1])


def first_call_costs() -> dict:
    """The compiled kernel's first call in a fresh process, beyond the NumPy kernel's: with an
    empty numba cache (compiling) and with the cache that call left (loading)."""
    with tempfile.TemporaryDirectory() as cache:
        numpy_s = first_call_seconds("numpy", cache)
        compile_s = first_call_seconds("numba", cache)
        load_s = first_call_seconds("numba", cache)
    return {"numpy_seconds": numpy_s, "compile_extra_seconds": compile_s - numpy_s,
            "cached_extra_seconds": load_s - numpy_s}


def synthetic_trajectories(n, q, s, c, seed=0):
    """Loss curves that decay per class with per-sample noise, float32, (rows, snapshots)."""
    rng = np.random.default_rng(seed)
    t = np.arange(s, dtype=np.float32)
    rates = rng.uniform(0.02, 0.2, size=c).astype(np.float32)

    def make(rows):
        labels = rng.permutation(np.arange(rows) % c)  # every class present, as when stratified
        base = 4.0 * np.exp(-np.outer(rates[labels], t)).astype(np.float32)
        noise = rng.standard_normal((rows, s), dtype=np.float32)
        noise *= np.float32(0.05)
        base += noise
        return base, labels

    train, train_labels = make(n)
    query, query_labels = make(q)
    return train, train_labels, query, query_labels


def authors_per_class_loop(train, train_labels, query, query_labels, num_classes):
    """The authors' per-class computation, returning scores in sample order."""
    train_losses = np.asarray(train.T, dtype=float)  # (E, N), as their np.vstack of epochs
    val_losses = np.asarray(query.T, dtype=float)
    d_train = np.diff(train_losses, axis=0)
    scores = np.zeros(train_losses.shape[1])
    for i in range(num_classes):
        train_mask = train_labels == i
        val_mask = query_labels == i
        if not np.any(train_mask) or not np.any(val_mask):
            continue
        d_avg_val = np.diff(val_losses[:, val_mask].mean(axis=1))
        x = d_train[:, train_mask]
        x_mean = x.mean(axis=0)
        x_std = x.std(axis=0)
        y = d_avg_val
        x_std_safe = np.where(x_std == 0, 1.0, x_std)
        y_std_safe = 1.0 if y.std() == 0 else y.std()
        xz = (x - x_mean) / x_std_safe
        yz = (y - y.mean()) / y_std_safe
        scores[train_mask] = (xz * yz[:, None]).mean(axis=0)
    return scores


def read_sum(train):
    return train.sum()


def read_einsum_rows(train):
    return np.einsum("ij->i", train)


def streaming(columns, query_columns, train_labels, query_labels, kernel="auto"):
    scorer = StreamingCLD(train_labels, query_labels, kernel=kernel)
    for train_t, query_t in zip(columns, query_columns):
        scorer.update(train_t, query_t)
    return scorer.scores()


def timed(fn, *args, **kwargs):
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t0


def extra_peak(fn, *args, **kwargs) -> int:
    """Peak bytes NumPy allocates while ``fn`` runs (the inputs already exist)."""
    tracemalloc.start()
    tracemalloc.reset_peak()
    fn(*args, **kwargs)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of ImageNet's N and Q")
    parser.add_argument("--snapshots", type=int, default=90)
    parser.add_argument("--classes", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3, help="rounds of the fast rows")
    parser.add_argument("--authors-repeats", type=int, default=1,
                        help="runs of the authors' loop (its median is the speed-up's base)")
    parser.add_argument("--streaming", action="store_true", help="also time StreamingCLD")
    parser.add_argument("--attribution", action="store_true",
                        help="also time cld_attribution (N x Q matrix, see --attribution-size)")
    parser.add_argument("--attribution-size", type=int, nargs=2, default=[50_000, 1_000],
                        metavar=("N", "Q"))
    parser.add_argument("--no-first-call", dest="first_call", action="store_false",
                        help="do not time the compiled kernel's first call in fresh processes")
    parser.add_argument("--json", default=None, help="write the figures here")
    args = parser.parse_args(argv)

    started = datetime.datetime.now().isoformat(timespec="seconds")
    load_before = os.getloadavg()
    n = int(round(1_268_355 * args.scale))
    q = int(round(12_812 * args.scale))
    s, c = args.snapshots, args.classes
    train, tl, query, ql = synthetic_trajectories(n, q, s, c)
    traj_bytes = train.nbytes
    print(f"{started}  load average {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f}"
          f" ({os.cpu_count()} CPUs)")
    print(f"N={n:,} Q={q:,} S={s} C={c}; float32 trajectory {traj_bytes / 2**30:.3f} GiB; "
          f"store (N+Q)*S*4 = {(n + q) * s * 4 / 1e9:.3f} GB")

    kernels = ["numba", "numpy"] if numba_available() else ["numpy"]
    if len(kernels) == 1:
        print("numba is not installed: only kernel='numpy' is timed (pip install 'cld-hf[fast]')")
    fast = {
        "read: train.sum()": (read_sum, (train,), {}),
        "read: einsum rows": (read_einsum_rows, (train,), {}),
    }
    for normalize in ("none", "query_spread"):
        for kernel in kernels:
            name = "cld_scores" + (" query_spread" if normalize == "query_spread" else "")
            fast[f"{name} ({kernel})"] = (cld_scores, (train, tl, query, ql),
                                          {"normalize": normalize, "kernel": kernel})
    headline = f"cld_scores ({kernels[0]})"
    first_call = first_call_costs() if args.first_call and kernels[0] == "numba" else None
    if kernels[0] == "numba":  # compiled (or loaded from the cache) before the clock starts
        cld_scores(train[:1000], tl[:1000], query, ql, kernel="numba")
        cld_scores(train[:1000], tl[:1000], query, ql, kernel="numba", normalize="query_spread")
        streaming(list(train[:1000].T), list(query.T), tl[:1000], ql, kernel="numba")
    stream_head = f"StreamingCLD ({kernels[0]})"
    if args.streaming:
        columns = [np.ascontiguousarray(train[:, t]) for t in range(s)]
        query_columns = [np.ascontiguousarray(query[:, t]) for t in range(s)]
        for kernel in kernels:
            fast[f"StreamingCLD ({kernel})"] = (streaming, (columns, query_columns, tl, ql),
                                                {"kernel": kernel})
    seconds = {name: [] for name in fast}
    outputs = {}
    for _ in range(max(1, args.repeats)):
        for name, (fn, fargs, fkwargs) in fast.items():
            outputs[name], sec = timed(fn, *fargs, **fkwargs)
            seconds[name].append(sec)
    peaks = {name: extra_peak(fn, *fargs, **fkwargs) for name, (fn, fargs, fkwargs) in fast.items()
             if not name.startswith("read")}
    seconds["authors' class loop"] = []
    for _ in range(max(1, args.authors_repeats)):
        ref, sec = timed(authors_per_class_loop, train, tl, query, ql, c)
        seconds["authors' class loop"].append(sec)
    t_ref = statistics.median(seconds["authors' class loop"])
    peaks["authors' class loop"] = extra_peak(authors_per_class_loop, train, tl, query, ql, c)
    ours = outputs[headline]
    diffs = {name: float(np.max(np.abs(outputs[name].astype(np.float64) - ref)))
             for name in outputs if name.startswith("cld_scores (")}
    if args.streaming:
        for kernel in kernels:
            name = f"StreamingCLD ({kernel})"
            diffs[name] = float(np.max(np.abs(outputs[name] - ours)))
            del fast[name]
        del columns, query_columns

    attribution = None
    if args.attribution:
        na, qa = args.attribution_size
        at, _, aq, _ = synthetic_trajectories(na, qa, s, 10, seed=1)
        _, t_attr = timed(cld_attribution, at, aq)
        peak_attr = extra_peak(cld_attribution, at, aq)
        out_bytes = na * qa * 4
        attribution = {"N": na, "Q": qa, "S": s, "seconds": t_attr,
                       "extra_peak_gib": peak_attr / 2**30, "output_gib": out_bytes / 2**30,
                       "extra_peak_beyond_output_gib": (peak_attr - out_bytes) / 2**30,
                       "input_gib": at.nbytes / 2**30}
    load_after = os.getloadavg()

    def ratios(name, ref_name):
        return [a / b for a, b in zip(seconds[name], seconds[ref_name])]

    print(f"\n{'':26s} {'seconds (median, range)':>26s} {'x read.sum':>17s} {'speed-up':>9s}"
          f" {'extra peak':>11s} {'x traj.':>7s}")
    rows = {}
    for name in seconds:
        sec = seconds[name]
        med = statistics.median(sec)
        rr = None if name == "authors' class loop" else ratios(name, "read: train.sum()")
        rng = f"{med:8.3f} ({min(sec):.3f}-{max(sec):.3f})"
        ratio = "" if rr is None else f"{statistics.median(rr):6.2f} ({min(rr):.2f}-{max(rr):.2f})"
        speed = t_ref / med
        peak = peaks.get(name)
        peak_txt = "" if peak is None else f"{peak / 2**30:7.3f} GiB {peak / traj_bytes:7.3f}"
        print(f"{name:26s} {rng:>26s} {ratio:>17s} {speed:8.1f}x {peak_txt}")
        rows[name] = {"seconds": sec, "median_seconds": med, "speedup_vs_authors": speed,
                      "over_read_sum": rr, "extra_peak_gib": None if peak is None else peak / 2**30,
                      "extra_peak_over_trajectory": None if peak is None else peak / traj_bytes}
    if args.streaming:
        st = statistics.median(seconds[stream_head])
        per = ratios(stream_head, headline)
        print(f"{stream_head}: {s} updates + scores() = {statistics.median(per):.2f}x one batch "
              f"{headline} call (range {min(per):.2f}-{max(per):.2f}); {st / s * 1e3:.2f} ms per "
              f"update")
    print("max |score difference|: " + ", ".join(f"{k} {v:.2e}" for k, v in diffs.items())
          + f" (cld_scores vs the authors' loop; StreamingCLD vs {headline})")
    if attribution:
        print(f"cld_attribution N={attribution['N']:,} x Q={attribution['Q']:,} x S={s}: "
              f"{attribution['seconds']:.2f} s, extra peak {attribution['extra_peak_gib']:.3f} GiB "
              f"(output {attribution['output_gib']:.3f} GiB + "
              f"{attribution['extra_peak_beyond_output_gib']:.3f} GiB working memory; input "
              f"{attribution['input_gib']:.3f} GiB)")
    if first_call:
        print(f"compiled kernel's first call in a fresh process, beyond the NumPy kernel's "
              f"({first_call['numpy_seconds']:.2f} s): {first_call['compile_extra_seconds']:.2f} s "
              f"compiling (empty numba cache), {first_call['cached_extra_seconds']:.2f} s loading "
              f"it from the cache")
    print(f"load average after: {load_after[0]:.2f} {load_after[1]:.2f} {load_after[2]:.2f}")

    t_ours = statistics.median(seconds[headline])
    result = {
        "date": started, "load_average_before": load_before, "load_average_after": load_after,
        "cpus": os.cpu_count(), "N": n, "Q": q, "S": s, "C": c, "repeats": args.repeats,
        "trajectory_gib": traj_bytes / 2**30,
        "cld_hf_seconds": t_ours, "authors_loop_seconds": t_ref, "speedup": t_ref / t_ours,
        "read_sum_seconds": statistics.median(seconds["read: train.sum()"]),
        "cld_hf_over_read_sum": statistics.median(ratios(headline, "read: train.sum()")),
        "headline": headline, "first_call": first_call, "kernel_threads": kernel_threads(None),
        "cld_hf_extra_peak_gib": peaks[headline] / 2**30,
        "authors_loop_extra_peak_gib": peaks["authors' class loop"] / 2**30,
        "cld_hf_extra_peak_over_trajectory": peaks[headline] / traj_bytes,
        "authors_extra_peak_over_trajectory": peaks["authors' class loop"] / traj_bytes,
        "max_abs_score_difference": diffs[headline], "score_differences": diffs,
        "rows": rows,
    }
    if args.streaming:
        result.update(streaming_seconds=statistics.median(seconds[stream_head]),
                      streaming_over_batch=statistics.median(ratios(stream_head, headline)),
                      streaming_name=stream_head,
                      streaming_auto_kernel=choose_kernel("auto", n, train.dtype,
                                                          auto_min=AUTO_MIN_STREAM_ROWS),
                      streaming_batch_reference=headline,
                      streaming_extra_peak_gib=peaks[stream_head] / 2**30,
                      streaming_max_abs_difference=diffs[stream_head])
    if attribution:
        result["attribution"] = attribution
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    return result


if __name__ == "__main__":
    main()
