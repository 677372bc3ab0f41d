"""Benchmark: cld-hf's CLD scorer against the authors' per-class NumPy loop, in one run.

Synthetic loss trajectories of ImageNet shape (N = 1,268,355 training samples, Q = 12,812 query
samples, S = 90 snapshots, C = 1000 classes), float32. Both scorers get the same arrays; the
script reports wall time, extra peak memory (tracemalloc: NumPy's allocations beyond the inputs),
their ratios, and the largest difference between the two score vectors.

    python scripts/bench_scoring.py                 # ImageNet shape, ~1 minute, ~2 GB
    python scripts/bench_scoring.py --scale 0.1     # a tenth of the samples
    python scripts/bench_scoring.py --json out.json

The reference loop reproduces the authors' computation (their ``Compute_CLD_scores.py``): the
trajectory as an (E, N) float64 array, ``np.diff`` over epochs, then for each class a boolean mask,
standardisation and a mean of products. It returns scores instead of sorted indices so the two
results can be compared.
"""

from __future__ import annotations

import argparse
import json
import time
import tracemalloc

import numpy as np

from cld_hf.scoring import StreamingCLD, cld_scores


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


def measure(fn, *args, **kwargs):
    tracemalloc.start()
    tracemalloc.reset_peak()
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    seconds = time.perf_counter() - t0
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return out, seconds, peak


def streaming(train, train_labels, query, query_labels):
    scorer = StreamingCLD(train_labels, query_labels)
    for t in range(train.shape[1]):
        scorer.update(train[:, t], query[:, t])
    return scorer.scores()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of ImageNet's N and Q")
    parser.add_argument("--snapshots", type=int, default=90)
    parser.add_argument("--classes", type=int, default=1000)
    parser.add_argument("--streaming", action="store_true", help="also time StreamingCLD")
    parser.add_argument("--json", default=None, help="write the figures here")
    args = parser.parse_args(argv)

    n = int(round(1_268_355 * args.scale))
    q = int(round(12_812 * args.scale))
    s, c = args.snapshots, args.classes
    train, tl, query, ql = synthetic_trajectories(n, q, s, c)
    traj_bytes = train.nbytes
    print(f"N={n:,} Q={q:,} S={s} C={c}; float32 trajectory {traj_bytes / 2**30:.3f} GiB; "
          f"store (N+Q)*S*4 = {(n + q) * s * 4 / 1e9:.3f} GB")

    ours, t_ours, m_ours = measure(cld_scores, train, tl, query, ql)
    ref, t_ref, m_ref = measure(authors_per_class_loop, train, tl, query, ql, c)
    diff = float(np.max(np.abs(ours.astype(np.float64) - ref)))
    result = {
        "N": n, "Q": q, "S": s, "C": c,
        "trajectory_gib": traj_bytes / 2**30,
        "cld_hf_seconds": t_ours, "authors_loop_seconds": t_ref,
        "speedup": t_ref / t_ours,
        "cld_hf_extra_peak_gib": m_ours / 2**30, "authors_loop_extra_peak_gib": m_ref / 2**30,
        "cld_hf_extra_peak_over_trajectory": m_ours / traj_bytes,
        "authors_extra_peak_over_trajectory": m_ref / traj_bytes,
        "max_abs_score_difference": diff,
    }
    if args.streaming:
        st, t_st, m_st = measure(streaming, train, tl, query, ql)
        result.update(streaming_seconds=t_st, streaming_extra_peak_gib=m_st / 2**30,
                      streaming_max_abs_difference=float(np.max(np.abs(st - ours))))
    print(f"cld-hf cld_scores   : {t_ours:8.2f} s, extra peak {m_ours / 2**30:6.3f} GiB "
          f"({m_ours / traj_bytes:.3f}x trajectory)")
    print(f"authors' class loop : {t_ref:8.2f} s, extra peak {m_ref / 2**30:6.3f} GiB "
          f"({m_ref / traj_bytes:.3f}x trajectory)")
    print(f"speed-up {t_ref / t_ours:.1f}x; max |score difference| {diff:.2e}")
    if args.streaming:
        print(f"StreamingCLD        : {t_st:8.2f} s for {s} updates, extra peak "
              f"{m_st / 2**30:6.3f} GiB; max |difference| {result['streaming_max_abs_difference']:.2e}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    return result


if __name__ == "__main__":
    main()
