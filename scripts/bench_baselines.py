# /// script
# requires-python = ">=3.10"
# dependencies = ["cld-hf", "numpy", "scipy"]
# ///
"""Time and peak memory of every baseline's selection at ImageNet shape ("Close to the limits").

Synthetic signals with class structure at the seed's ImageNet scenario (Appendix E): N = 1,268,355
training samples, C = 1000 classes (sizes 732-1300, as ImageNet-1k), 512-d penultimate features,
90 snapshots of the per-snapshot signals, Q = 12,812 query samples, R = 10 curvature probes and
K_max = 50 PGD steps. Each method runs by name through :func:`cld_hf.baselines.select_baseline`
with its registry defaults and the class budgets of a 10% coreset, in a fresh process that
generates only the signals it reads, so one method's memory never counts against the next.

Reported per method: the Appendix E cost formula (``METHODS[m].cost``), the scale and N it ran
at, the GiB of its input signals, the wall-clock and CPU seconds of scoring + selection, and the
peak resident memory of the process during selection (inputs included; Linux ``VmHWM``, reset
before the selection). A method whose inputs do not fit in ``--max-gib`` runs at the largest
scale (halving) that fits; nothing is extrapolated.

Usage::

    python scripts/bench_baselines.py                    # full ImageNet scale, every method
    python scripts/bench_baselines.py --scale 0.01       # N = 12,684, C = 253: seconds
    python scripts/bench_baselines.py --methods cal d2_pruning --out bench.md
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import time

N_IMAGENET = 1_268_355
Q_IMAGENET = 12_812
CLASSES = 1000
DIM = 512
SNAPSHOTS = 90
PROBES = 10
K_MAX = 50
_CHUNK = 1 << 16  # rows generated at once


def _shape(scale: float) -> dict:
    n = max(40, int(round(N_IMAGENET * scale)))
    c = min(CLASSES, max(2, n // 50))
    q = max(2 * c, int(round(Q_IMAGENET * scale)))
    return {"n": n, "c": c, "q": q}


def _signal_bytes(name: str, n: int, c: int, q: int) -> int:
    per_row = {
        "correct": SNAPSHOTS, "true_prob": 4 * SNAPSHOTS, "margin": 4 * SNAPSHOTS,
        "loss": 4 * SNAPSHOTS,
        "el2n": 4 * SNAPSHOTS, "grad_projection": 4 * SNAPSHOTS, "tdds_kl": 4 * SNAPSHOTS,
        "embeddings": 4 * DIM, "probs": 4 * c, "curvature": 4 * PROBES, "boundary_steps": 8,
    }
    per_query = {"query_probs": 4 * c, "query_embeddings": 4 * DIM, "query_labels": 8}
    if name in per_query:
        return q * per_query[name]
    return n * per_row[name]


def _needed(method: str) -> tuple[str, ...]:
    from cld_hf.baselines import METHODS

    spec = METHODS[method]
    extra = METHODS[spec.difficulty].signals if spec.difficulty is not None else ()
    return tuple(dict.fromkeys((*spec.signals, *extra)))


_PER_SNAPSHOT = ("correct", "true_prob", "margin", "loss", "el2n", "grad_projection", "tdds_kl")


def _inputs_gib(method: str, scale: float) -> float:
    s = _shape(scale)
    total = 8 * s["n"] + sum(_signal_bytes(x, s["n"], s["c"], s["q"]) for x in _needed(method))
    return total / 2**30


def _needs_gib(method: str, scale: float) -> float:
    """A generous guess of the peak: (N, S) signals are checked as float64 (3x their float32
    bytes with the original); the (N, C) and (N, D) arrays are read a class at a time."""
    s = _shape(scale)
    total = 8 * s["n"]
    for x in _needed(method):
        b = _signal_bytes(x, s["n"], s["c"], s["q"])
        total += 3 * b if x in _PER_SNAPSHOT else 1.2 * b
    return total / 2**30 + 1.0


# ------------------------------------------------------------------------------ synthetic data


def _labels(n: int, c: int, rng):
    """Class ids of ``n`` samples over ``c`` classes of uneven sizes (ImageNet-like), shuffled."""
    import numpy as np

    sizes = rng.integers(732, 1301, size=c).astype(float)  # ImageNet-1k's class sizes
    counts = np.floor(sizes / sizes.sum() * n).astype(np.int64)
    counts[: n - counts.sum()] += 1
    return rng.permutation(np.repeat(np.arange(c), counts))


def _generate(names, n: int, c: int, q: int, seed: int = 0) -> dict:
    """Signals with class structure, float32 like the recorder's, generated in row chunks."""
    import numpy as np

    rng = np.random.default_rng(seed)
    labels = _labels(n, c, rng)
    out = {"labels": labels}
    noisy = rng.random(n) < 0.1  # 10% of the labels disagree with the features
    seen = np.where(noisy, rng.integers(0, c, size=n), labels)
    speed = rng.gamma(2.0, 1.0, size=n).astype(np.float32)  # how fast each sample is learned
    speed[noisy] *= -0.5
    centres = rng.standard_normal((c, DIM), dtype=np.float32)
    q_labels = np.arange(q) % c  # every class has query samples (q >= 2c)
    t = (np.arange(SNAPSHOTS, dtype=np.float32) + 1.0) / SNAPSHOTS

    def rows():
        for start in range(0, n, _CHUNK):
            yield slice(start, min(n, start + _CHUNK))

    def per_snapshot(fill):
        arr = np.empty((n, SNAPSHOTS), dtype=np.float32)
        for r in rows():
            arr[r] = fill(r)
        return arr

    def margin(r):
        m = speed[r, None] * 6.0 * t[None, :] - 1.0
        return m + rng.standard_normal(m.shape, dtype=np.float32)

    def softmax_rows(logits):
        logits -= logits.max(axis=1, keepdims=True)
        np.exp(logits, out=logits)
        logits /= logits.sum(axis=1, keepdims=True)
        return logits

    for name in names:
        if name in ("margin", "true_prob", "el2n", "correct"):
            m = per_snapshot(margin)
            if name == "margin":
                out[name] = m
            elif name == "correct":
                out[name] = m > 0
            else:
                p = 1.0 / (1.0 + np.exp(-m))
                out[name] = p if name == "true_prob" else (1.0 - p) * np.float32(np.sqrt(2.0))
            del m
        elif name == "loss":  # decaying trajectories, the noisy samples staying high
            decay = np.exp(-np.arange(SNAPSHOTS, dtype=np.float32) / 10.0)
            out[name] = per_snapshot(lambda r: (
                (1.0 + noisy[r, None]) * decay[None, :] * (1.0 + 0.1 * rng.standard_normal(
                    (r.stop - r.start, SNAPSHOTS), dtype=np.float32))).astype(np.float32))
        elif name == "grad_projection":
            out[name] = per_snapshot(lambda r: rng.standard_normal(
                (r.stop - r.start, SNAPSHOTS), dtype=np.float32))
        elif name == "tdds_kl":
            kl = per_snapshot(lambda r: np.abs(rng.standard_normal(
                (r.stop - r.start, SNAPSHOTS), dtype=np.float32)) * 0.1)
            kl[:, 0] = 0.0
            out[name] = kl
        elif name == "embeddings":
            emb = np.empty((n, DIM), dtype=np.float32)
            for r in rows():
                emb[r] = centres[seen[r]] + rng.standard_normal((r.stop - r.start, DIM),
                                                                 dtype=np.float32)
            out[name] = emb
        elif name == "probs":
            probs = np.empty((n, c), dtype=np.float32)
            for r in rows():
                z = rng.standard_normal((r.stop - r.start, c), dtype=np.float32)
                z[np.arange(r.stop - r.start), seen[r]] += 4.0
                probs[r] = softmax_rows(z)
            out[name] = probs
        elif name == "query_labels":
            out[name] = q_labels
        elif name == "query_embeddings":
            out[name] = (centres[q_labels]
                         + rng.standard_normal((q, DIM), dtype=np.float32))
        elif name == "query_probs":
            z = rng.standard_normal((q, c), dtype=np.float32)
            z[np.arange(q), q_labels] += 4.0
            out[name] = softmax_rows(z)
        elif name == "curvature":
            out[name] = np.abs(rng.standard_normal((n, PROBES), dtype=np.float32)) * (
                1.0 + noisy[:, None])
        elif name == "boundary_steps":
            out[name] = np.clip(rng.poisson(8.0, size=n) * (~noisy), 0, K_MAX).astype(np.int64)
        else:
            raise ValueError(f"no generator for the signal {name!r}")
    return out


# ---------------------------------------------------------------------------------- one method


def _rss_gib(field: str) -> float | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 2**20
    except OSError:
        return None
    return None


def _reset_peak() -> bool:
    try:  # Linux: writing 5 resets the peak resident set size (VmHWM)
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def run_one(method: str, scale: float, fraction: float) -> dict:
    """Generate the method's inputs at ``scale``, then time its selection (in this process)."""
    import gc
    import resource

    from cld_hf import class_budgets
    from cld_hf.baselines import select_baseline

    s = _shape(scale)
    data = _generate(_needed(method), s["n"], s["c"], s["q"])
    labels = data.pop("labels")
    budgets = class_budgets(labels, fraction=fraction)
    gc.collect()
    before = _rss_gib("VmRSS")
    reset = _reset_peak()
    wall, cpu = time.perf_counter(), time.process_time()
    idx = select_baseline(method, labels, budgets=budgets, signals=data, seed=0)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    peak = _rss_gib("VmHWM") if reset else None
    if peak is None:  # ru_maxrss: KiB on Linux, bytes on macOS; includes the generation
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (
            2**30 if sys.platform == "darwin" else 2**20)
    assert len(idx) == sum(budgets.values())
    inputs = sum(a.nbytes for a in data.values()) + labels.nbytes
    return {"method": method, "scale": scale, "n": s["n"], "classes": s["c"], "k": len(idx),
            "inputs_gib": inputs / 2**30, "seconds": wall, "cpu_seconds": cpu,
            "rss_before_gib": before, "peak_gib": peak, "peak_is_selection_only": reset}


# -------------------------------------------------------------------------------------- driver


def _available_gib() -> float:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return 8.0


def _child(method: str, scale: float, fraction: float, max_gib: float, timeout: float,
           threads: int | None = None) -> dict:
    import cld_hf

    cmd = [sys.executable, os.path.abspath(__file__), "--one", method, "--scale", repr(scale),
           "--fraction", repr(fraction), "--max-gib", repr(max_gib)]
    root = os.path.dirname(os.path.dirname(os.path.abspath(cld_hf.__file__)))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [root] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
    if threads is not None:  # BLAS threads of the child (1 is steadier on a shared machine)
        for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            env[var] = str(threads)
    try:  # the child imports the same cld_hf as this process
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return {"method": method, "scale": scale, "error": f"timeout after {timeout:.0f} s"}
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or [f"rc {proc.returncode}"]
        return {"method": method, "scale": scale, "error": tail[0][:200],
                "memory": "MemoryError" in proc.stderr or proc.returncode < 0}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def bench(methods, scale: float, fraction: float, max_gib: float, timeout: float,
          threads: int | None = None, progress=print) -> list[dict]:
    """Every method at ``scale``, or at the largest halved scale whose inputs fit in max_gib."""
    rows = []
    for method in methods:
        s = scale
        while _needs_gib(method, s) > max_gib and s > 1e-4:
            s /= 2
        while True:
            row = _child(method, s, fraction, max_gib, timeout, threads)
            if "error" in row and row.get("memory") and s > 1e-4:
                s /= 2  # did not fit: halve and try again
                continue
            break
        rows.append(row)
        progress(json.dumps(row))
    return rows


def markdown(rows, *, header: str = "") -> str:
    from cld_hf.baselines import METHODS

    lines = [header] if header else []
    lines += [
        "| method | Appendix E cost | scale (N) | inputs GiB | seconds | CPU s | peak GiB |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        cost = METHODS[r["method"]].cost.replace("|", "/")
        if "error" in r:
            lines.append(f"| {r['method']} | {cost} | {r['scale']:g} | - | {r['error']} | - | - |")
            continue
        lines.append(
            f"| {r['method']} | {cost} | {r['scale']:g} ({r['n']:,}) | {r['inputs_gib']:.2f} | "
            f"{r['seconds']:.1f} | {r['cpu_seconds']:.1f} | {r['peak_gib']:.2f} |"
        )
    return "\n".join(lines)


def _load_average() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def make_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scale", type=float, default=1.0,
                   help="fraction of ImageNet's N (1.0: 1,268,355 samples; classes shrink below "
                        "N/50)")
    p.add_argument("--fraction", type=float, default=0.1, help="coreset fraction (default 0.1)")
    p.add_argument("--methods", nargs="+", default=None, help="default: every registered method")
    p.add_argument("--max-gib", type=float, default=None,
                   help="memory a method may use (default: 75%% of MemAvailable)")
    p.add_argument("--timeout", type=float, default=3600.0, help="seconds per method")
    p.add_argument("--threads", type=int, default=None,
                   help="BLAS threads per method (default: the library's own choice)")
    p.add_argument("--out", default=None, help="also write the markdown table here")
    p.add_argument("--one", default=None, help=argparse.SUPPRESS)  # child: one method
    return p


def main(argv: list[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    max_gib = args.max_gib if args.max_gib is not None else 0.75 * _available_gib()
    if args.one is not None:
        try:
            import resource

            cap = int(max_gib * 2**30)
            resource.setrlimit(resource.RLIMIT_AS, (cap, cap))  # fail, do not swap or OOM
        except (ImportError, ValueError, OSError):
            pass
        print(json.dumps(run_one(args.one, args.scale, args.fraction)))
        return 0
    from cld_hf.baselines import METHODS

    methods = args.methods or list(METHODS)
    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        raise SystemExit(f"--methods {unknown}: not in the registry {sorted(METHODS)}")
    start = datetime.datetime.now().astimezone()
    load_before = _load_average()
    rows = bench(methods, args.scale, args.fraction, max_gib, args.timeout, args.threads,
                 progress=lambda line: print(line, file=sys.stderr, flush=True))
    import cld_hf

    header = (
        f"Baseline selection at ImageNet shape (cld-hf {cld_hf.__version__}), "
        f"{args.fraction:g} coreset, scale {args.scale:g}; "
        f"{start:%Y-%m-%d %H:%M %Z}; {os.cpu_count()} CPUs, BLAS threads "
        f"{args.threads if args.threads is not None else 'default'}, load average before "
        f"{load_before}, after {_load_average()}; memory cap {max_gib:.1f} GiB; "
        f"{platform.python_implementation()} {platform.python_version()}.\n"
    )
    table = markdown(rows, header=header)
    print(table)
    if args.out:
        with open(args.out, "w") as f:
            f.write(table + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
