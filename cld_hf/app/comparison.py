"""CLD against the paper's baselines on one recorded proxy run: same budgets, same store.

The comparison of the seed's Tables 2-5 at small scale. One proxy run records, in the same
eval-mode sweeps, the losses CLD needs and the signals the chosen baselines read
(:func:`signals_for_methods` says which; :class:`~cld_hf.recording.LossRecorder` ``signals=``
records them into the :class:`~cld_hf.trajectories.LossTrajectories` store). Then, for every
fraction, every method selects a coreset with the **same class budgets**
(:func:`cld_hf.class_budgets`) from that one store (:func:`select_coresets`), and reports what the
selection cost: the seconds of scoring and selection measured here and the bytes of the signals it
read, next to the Appendix E formulas (:func:`cost_rows`, :func:`cost_markdown`).

``cld-hf run --methods ...`` and ``scripts/compare_methods.py`` train the target model on every
coreset and print the accuracy table shaped like the seed's Table 2.

NumPy and pyarrow only (no torch).

Examples
--------
>>> import tempfile
>>> from cld_hf import LossTrajectories
>>> rng = np.random.default_rng(0)
>>> store = LossTrajectories.create(tempfile.mkdtemp(), [0, 0, 0, 0, 1, 1, 1, 1], [0, 1])
>>> for t in range(4):
...     _ = store.append(rng.random(8), rng.random(2),
...                      signals={"correct": rng.random(8) > 0.5, "el2n": rng.random(8)})
>>> signals_for_methods(["cld", "forgetting", "el2n"])
('correct', 'el2n')
>>> coresets = select_coresets(store, ["cld", "forgetting", "random"], fractions=[0.5],
...                            seeds=2, progress=False)
>>> [(c.method, c.seed, len(c.indices)) for c in coresets]
[('cld', 0, 4), ('cld', 1, 4), ('forgetting', 0, 4), ('forgetting', 1, 4), ('random', 0, 4), ('random', 1, 4)]
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..baselines import METHODS, NOT_IMPLEMENTED, SIGNALS, select_baseline
from ..selection import class_budgets, select_top_per_class
from ..strategies import select_with_strategy
from ..fileio import atomic_write_arrow

logger = logging.getLogger(__name__)

__all__ = [
    "CLD_COST",
    "DEFAULT_METHODS",
    "METHOD_NAMES",
    "Coreset",
    "check_methods",
    "signals_for_methods",
    "min_snapshots",
    "load_signals",
    "select_coresets",
    "cost_rows",
    "cost_markdown",
    "write_selections",
    "read_selections",
]

CLD_STRATEGIES = {"cld": "top", "cld_noise_adaptive": "noise_adaptive",
                  "cld_coverage": "coverage"}
"""CLD with each selection strategy of :mod:`cld_hf.strategies` (``"cld"`` is Algorithm 1)."""

METHOD_NAMES: tuple[str, ...] = (*CLD_STRATEGIES, *METHODS)
"""Every method :func:`select_coresets` knows: the CLD strategies and the keys of
:data:`cld_hf.baselines.METHODS`."""

DEFAULT_METHODS: tuple[str, ...] = (
    "cld", "random", "forgetting", "el2n", "aum", "dyn_unc", "dual", "moderate", "herding",
    "kcenter", "grand",
)
"""The methods ``scripts/compare_methods.py`` compares by default: those cheap on a CPU."""

CLD_COST = {
    "cost": "3N T_proxy f + Q T_proxy f + 3k T f_large",
    "storage": "O((N + Q) T_proxy) (loss logs)",
    "reference": "Nagaraj et al., TMLR 2025 (E.4)",
}
"""Appendix E.4 of the seed: the cost of CLD, in the same notation as the baselines'."""

# Signals the recorder records per snapshot and at the end of training, in the order stored.
_SNAPSHOT = ("correct", "true_prob", "margin", "el2n", "grad_projection", "tdds_kl")
_FINAL = ("embeddings", "probs", "query_embeddings", "query_probs", "curvature",
          "boundary_steps")


@dataclass(frozen=True)
class Coreset:
    """One selected coreset.

    Attributes
    ----------
    method : str
    fraction : float
    seed : int
    indices : numpy.ndarray of int64
        Selected rows of the training set (sample indices of the store), ascending.
    seconds : float
        Wall-clock seconds of scoring and selection for this coreset (reading the store is not
        counted). A score computed once and reused (CLD's scores; a score method's scores across
        seeds) is counted in the first coreset that computed it.

    Examples
    --------
    >>> c = Coreset("cld", 0.1, 0, np.array([3, 7]), 0.002)
    >>> c.method, c.indices.tolist()
    ('cld', [3, 7])
    """

    method: str
    fraction: float
    seed: int
    indices: np.ndarray
    seconds: float


def check_methods(methods) -> list[str]:
    """The method names, checked: known, not repeated.

    Examples
    --------
    >>> check_methods(["cld", "random"])
    ['cld', 'random']
    >>> check_methods(["cld", "glister_online"])
    Traceback (most recent call last):
    ...
    ValueError: methods contains 'glister_online', which is not implemented: ...
    """
    if isinstance(methods, str):
        raise TypeError(f"methods == {methods!r}: pass a list of names, e.g. [{methods!r}].")
    names = list(methods)
    if not names:
        raise ValueError(f"methods is empty; give at least one of {list(METHOD_NAMES)}.")
    for name in names:
        if name in NOT_IMPLEMENTED:
            raise ValueError(
                f"methods contains {name!r}, which is not implemented: {NOT_IMPLEMENTED[name]}"
            )
        if name not in METHOD_NAMES:
            raise ValueError(
                f"methods contains {name!r}; each must be one of {list(METHOD_NAMES)}."
            )
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ValueError(f"methods names {repeated} more than once; give each method once.")
    return names


def _method_signals(name: str) -> tuple[str, ...]:
    """Signals a method reads, its difficulty method's included (``loss`` for CLD)."""
    if name in CLD_STRATEGIES:
        return ("loss", "embeddings") if name == "cld_coverage" else ("loss",)
    spec = METHODS[name]
    extra = METHODS[spec.difficulty].signals if spec.difficulty is not None else ()
    return tuple(dict.fromkeys((*spec.signals, *extra)))


def signals_for_methods(methods) -> tuple[str, ...]:
    """What the recorder must record for ``methods`` besides the loss (its ``signals=``).

    Per-snapshot signals first, then the end-of-training ones, each once.

    Examples
    --------
    >>> signals_for_methods(["cld", "aum", "herding", "d2_pruning"])
    ('correct', 'margin', 'embeddings')
    """
    needed = {s for m in check_methods(methods) for s in _method_signals(m)}
    return tuple(s for s in (*_SNAPSHOT, *_FINAL) if s in needed)


def min_snapshots(methods, options: Mapping | None = None) -> int:
    """The fewest snapshots the methods need: 3 for CLD (2 loss differences), the ``window`` of
    the windowed methods (Dyn-Unc, DUAL, TDDS: 10 by default), 1 otherwise.

    Examples
    --------
    >>> min_snapshots(["cld", "forgetting"]), min_snapshots(["dyn_unc"]), \\
    ...     min_snapshots(["dual"], {"dual": {"window": 4}})
    (3, 10, 4)
    """
    options = options or {}
    need = 1
    for m in check_methods(methods):
        if m in CLD_STRATEGIES:
            need = max(need, 3)
            continue
        window = dict(METHODS[m].defaults, **options.get(m, {})).get("window")
        if window is not None:
            need = max(need, int(window))
    return need


def load_signals(store, methods) -> dict[str, np.ndarray]:
    """The arrays ``methods`` read, from a store: ``{signal: (N, S) or (N, D) array}``.

    Per-snapshot signals come from :meth:`~cld_hf.trajectories.LossTrajectories.train_signal`,
    end-of-training ones from :meth:`~cld_hf.trajectories.LossTrajectories.load_array`, ``loss``
    from :meth:`~cld_hf.trajectories.LossTrajectories.train_losses`. A missing signal is an error
    that says how to record it.

    Examples
    --------
    >>> import tempfile
    >>> from cld_hf import LossTrajectories
    >>> store = LossTrajectories.create(tempfile.mkdtemp(), [0, 1], [0, 1])
    >>> _ = store.append([1.0, 2.0], [1.0, 2.0], signals={"correct": [True, False]})
    >>> {k: v.shape for k, v in load_signals(store, ["cld", "forgetting"]).items()}
    {'correct': (2, 1)}
    """
    out = {}
    for name in dict.fromkeys(s for m in check_methods(methods) for s in _method_signals(m)):
        if name == "loss":
            if any(m not in CLD_STRATEGIES and "loss" in _method_signals(m) for m in methods):
                out[name] = store.train_losses()  # S2L clusters the trajectories
            continue  # CLD reads the store's trajectories itself
        if name == "query_labels":
            out[name] = np.asarray(store.query_labels)
            continue
        try:
            if SIGNALS[name].shape == "(N, S)":
                out[name] = store.train_signal(name)
            else:
                out[name] = store.load_array(name)
        except KeyError as err:
            users = [m for m in methods if name in _method_signals(m)]
            raise ValueError(
                f"Methods {users} need the signal {name!r}, which the store "
                f"{str(store.directory)!r} does not hold ({err.args[0]}). Record the proxy run "
                f"with LossRecorder(..., signals={list(signals_for_methods(methods))}) (or "
                f"CLDCallback(..., signals=...)); cld-hf run --methods does it for you."
            ) from None
    return out


def _seed_list(seeds) -> list[int]:
    if isinstance(seeds, (int, np.integer)) and not isinstance(seeds, bool):
        if seeds < 1:
            raise ValueError(f"seeds == {seeds}, must be >= 1 (a number of seeds) or a list.")
        return list(range(int(seeds)))
    out = [int(s) for s in seeds]
    if not out:
        raise ValueError("seeds is empty; give a number of seeds or a list of seeds.")
    return out


def select_coresets(
    store,
    methods: Sequence[str],
    *,
    fractions: Iterable[float],
    seeds=1,
    balance: str = "equal",
    options: Mapping[str, Mapping] | None = None,
    progress: bool = True,
) -> list[Coreset]:
    """One coreset per method, fraction and seed, all with the same class budgets.

    For each fraction the budgets are :func:`cld_hf.class_budgets` of the store's training
    labels; every method keeps exactly ``budgets[c]`` samples of class ``c``. CLD keeps the top
    CLD scores of the store's trajectories per class (:func:`cld_hf.select_top_per_class`), the
    baselines run through :func:`cld_hf.baselines.select_baseline`. Deterministic score methods
    (CLD and the ``"score"`` baselines) give the same coreset for every seed: it is computed once
    per fraction (CLD's scores once in all) and reused; the ``"select"`` methods (Random,
    k-Center's first centre, CCS, DUAL's Beta sampling, and the greedy ones) run for each seed.

    Parameters
    ----------
    store : LossTrajectories
        The proxy run, with the signals the methods need (:func:`signals_for_methods`).
    methods : sequence of str
        Names from :data:`METHOD_NAMES`.
    fractions : iterable of float
        Coreset sizes as shares of the training set.
    seeds : int or iterable of int, default 1
        A number of seeds (``0 .. seeds - 1``) or the seeds.
    balance : {"equal", "proportional"}, default "equal"
    options : mapping, optional
        ``{method: {option: value}}`` for the baselines (see ``METHODS[m].defaults``).
    progress : bool, default True
        A tqdm bar over the methods.

    Returns
    -------
    list of :class:`Coreset`, by method (in the order given), then fraction, then seed.

    Examples
    --------
    >>> import tempfile
    >>> from cld_hf import LossTrajectories
    >>> store = LossTrajectories.create(tempfile.mkdtemp(), [0, 0, 1, 1], [0, 1])
    >>> for a, b in [(3.0, 2.0), (2.5, 1.5), (1.0, 0.5)]:  # samples 0 and 3 follow the query
    ...     _ = store.append([a, 1.0, 2.0, b], [a, b], signals={"el2n": [0.5, 0.9, 0.1, 0.2]})
    >>> [(c.method, c.indices.tolist()) for c in select_coresets(
    ...     store, ["cld", "el2n"], fractions=[0.5], progress=False)]
    [('cld', [0, 3]), ('el2n', [1, 3])]
    """
    from tqdm.auto import tqdm

    names = check_methods(methods)
    seed_list = _seed_list(seeds)
    fractions = [float(f) for f in fractions]
    options = {k: dict(v) for k, v in (options or {}).items()}
    unknown = sorted(set(options) - set(names))
    if unknown:
        raise ValueError(f"options names {unknown}, which are not in methods {names}.")
    if "cld" in options:
        raise ValueError("options['cld'] is not supported: CLD uses the store's own scoring.")
    strategy_inputs = {}
    labels = np.asarray(store.train_labels)
    budgets = {f: class_budgets(labels, fraction=f, balance=balance) for f in fractions}
    signals = load_signals(store, names)
    out: list[Coreset] = []
    for method in tqdm(names, desc="Selecting coresets", unit="method", disable=not progress):
        if method in CLD_STRATEGIES:
            start = time.perf_counter()
            if "scores" not in strategy_inputs:
                strategy_inputs["scores"] = store.scores()
                strategy_inputs["query_losses"] = store.query_losses()
            scores = strategy_inputs["scores"]
            score_seconds = time.perf_counter() - start
        for f in fractions:
            fixed = None  # a deterministic method's coreset, reused across seeds
            for i, seed in enumerate(seed_list):
                if fixed is not None:
                    out.append(Coreset(method, f, seed, fixed, 0.0))
                    continue
                start = time.perf_counter()
                if method == "cld":
                    idx = select_top_per_class(scores, labels, budgets=budgets[f])
                elif method in CLD_STRATEGIES:
                    idx = select_with_strategy(
                        scores, labels, budgets=budgets[f], strategy=CLD_STRATEGIES[method],
                        seed=seed, query_losses=strategy_inputs["query_losses"],
                        embeddings=signals.get("embeddings"), **options.get(method, {}))
                else:
                    idx = select_baseline(method, labels, budgets=budgets[f], signals=signals,
                                          seed=seed, **options.get(method, {}))
                seconds = time.perf_counter() - start
                if method in CLD_STRATEGIES and f == fractions[0]:
                    seconds += score_seconds
                idx = np.asarray(idx, dtype=np.int64)
                out.append(Coreset(method, f, seed, idx, seconds))
                if method == "cld" or (method in METHODS and METHODS[method].kind == "score"):
                    fixed = idx
            logger.info("%s at %g: %d samples", method, f, len(out[-1].indices))
    return out


def cost_rows(store, coresets: Sequence[Coreset]) -> list[dict]:
    """Selection cost per method: seconds measured, bytes of the signals read, Appendix E.

    Each row: ``method``, ``signals`` (what it reads), ``seconds`` (scoring and selection, summed
    over its coresets), ``seconds_per_coreset`` (that sum over the number of distinct coresets it
    computed: one per fraction for a deterministic method, one per fraction and seed for a
    sampler), ``extra_bytes`` (the bytes in the store of the signals it reads:
    :meth:`~cld_hf.trajectories.LossTrajectories.signal_nbytes`; CLD: the loss trajectories,
    which the other methods do not need), ``compute`` and ``storage`` (the Appendix E formulas).

    Examples
    --------
    >>> import tempfile
    >>> from cld_hf import LossTrajectories
    >>> store = LossTrajectories.create(tempfile.mkdtemp(), [0, 0, 1, 1], [0, 1])
    >>> for t in range(3):
    ...     _ = store.append([1.0, 2.0, 3.0, float(t)], [1.0, 2.0],
    ...                      signals={"correct": [True, False, True, t > 0]})
    >>> rows = cost_rows(store, select_coresets(store, ["cld", "forgetting"], fractions=[0.5],
    ...                                         progress=False))
    >>> [(r["method"], r["signals"], r["extra_bytes"]) for r in rows]
    [('cld', ['loss'], 72), ('forgetting', ['correct'], 6)]
    >>> rows[1]["compute"]
    '3N T_early f_large + 3k T_late f_large'
    """
    sizes = store.signal_nbytes()
    rows = []
    for method in dict.fromkeys(c.method for c in coresets):
        mine = [c for c in coresets if c.method == method]
        deterministic = method == "cld" or (method in METHODS
                                            and METHODS[method].kind == "score")
        computed = len({c.fraction for c in mine}) if deterministic else len(mine)
        seconds = float(sum(c.seconds for c in mine))
        used = list(_method_signals(method))
        spec = CLD_COST if method in CLD_STRATEGIES else {
            "cost": METHODS[method].cost, "storage": METHODS[method].storage,
            "reference": METHODS[method].reference}
        rows.append({
            "method": method,
            "signals": used,
            "seconds": seconds,
            "seconds_per_coreset": seconds / max(computed, 1),
            "extra_bytes": int(sum(sizes.get(s, 0) for s in used)),
            "compute": spec["cost"],
            "storage": spec["storage"],
            "reference": spec["reference"],
        })
    return rows


def _bytes(n: int) -> str:
    for unit, size in (("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} B"


def cost_markdown(rows: Sequence[Mapping]) -> str:
    """The selection-cost table: method, signals, seconds, extra storage, Appendix E formulas.

    Examples
    --------
    >>> print(cost_markdown([{"method": "el2n", "signals": ["el2n"], "seconds": 0.25,
    ...                       "seconds_per_coreset": 0.125, "extra_bytes": 4096,
    ...                       "compute": "3N T_early R f_large + 3k T_late f_large",
    ...                       "storage": "O(N)"}]))
    | method | signals read | selection s (per coreset) | extra storage | Appendix E compute | Appendix E storage |
    |---|---|---|---|---|---|
    | el2n | el2n | 0.2500 (0.1250) | 4.1 kB | 3N T_early R f_large + 3k T_late f_large | O(N) |
    """
    lines = ["| method | signals read | selection s (per coreset) | extra storage | "
             "Appendix E compute | Appendix E storage |", "|---" * 6 + "|"]
    for r in rows:
        signals = ", ".join(r["signals"]) or "none"
        lines.append(
            f"| {r['method']} | {signals} | {r['seconds']:.4f} ({r['seconds_per_coreset']:.4f}) | "
            f"{_bytes(int(r['extra_bytes']))} | {r['compute']} | {r['storage']} |"
        )
    return "\n".join(lines)


def write_selections(path, coresets: Sequence[Coreset]) -> Path:
    """Write the coresets to an Arrow file: ``method``, ``fraction``, ``seed``, ``seconds`` and
    ``indices`` (``list<int64>``, sample indices of the training set). No pickle.

    Examples
    --------
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "selections.arrow")
    >>> _ = write_selections(path, [Coreset("cld", 0.5, 0, np.array([0, 3]), 0.01)])
    >>> [(c.method, c.indices.tolist()) for c in read_selections(path)]
    [('cld', [0, 3])]
    """
    import pyarrow as pa

    path = Path(path)
    table = pa.table({
        "method": pa.array([c.method for c in coresets], pa.string()),
        "fraction": pa.array([c.fraction for c in coresets], pa.float64()),
        "seed": pa.array([c.seed for c in coresets], pa.int64()),
        "seconds": pa.array([c.seconds for c in coresets], pa.float64()),
        "indices": pa.array([np.asarray(c.indices, np.int64) for c in coresets],
                            pa.list_(pa.int64())),
    })
    return atomic_write_arrow(path, table)


def read_selections(path) -> list[Coreset]:
    """The coresets written by :func:`write_selections`.

    Examples
    --------
    >>> import os, tempfile
    >>> path = write_selections(os.path.join(tempfile.mkdtemp(), "s.arrow"),
    ...                         [Coreset("random", 0.5, 1, np.array([1, 2]), 0.0)])
    >>> [(c.method, c.seed) for c in read_selections(path)]
    [('random', 1)]
    """
    import pyarrow as pa
    import pyarrow.ipc as ipc

    with pa.memory_map(str(path), "r") as source:
        table = ipc.open_file(source).read_all()
    cols = table.to_pydict()
    return [Coreset(m, f, s, np.asarray(i, dtype=np.int64), sec) for m, f, s, sec, i in
            zip(cols["method"], cols["fraction"], cols["seed"], cols["seconds"], cols["indices"])]
