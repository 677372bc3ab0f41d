"""Which kernel :func:`~cld_hf.scoring.batch.cld_scores` and
:class:`~cld_hf.scoring.streaming.StreamingCLD` run: NumPy, or the compiled kernels of
:mod:`cld_hf.scoring._numba_rows` when numba is installed (``pip install "cld-hf[fast]"``).
NumPy only; numba is imported only when a compiled kernel runs.

The streaming update is the same float64 arithmetic in the same order either way, so the two
give the same state to the last bit. The two batch kernels apply the same rules to each row (see
"Precision" in :mod:`cld_hf.scoring`): a float32 one-pass result kept where ``m2 > s2 / 2``, the
float64 two-pass formula otherwise, the same zero-variance rule, and the same float64 path for
rows with non-finite or huge losses. They differ only in the order of float32 additions, so
their scores agree to ~1e-6 (typically 1e-7).
The NumPy kernel makes four passes over each cache-sized chunk (differences, class
trajectories, two row-wise dot products); the compiled kernel reads each row once.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import logging
import os
from typing import Literal

import numpy as np

from .._validation import check_choice, check_int
from .common import FAST_MIN_CENTRED, ZERO_VAR_REL, _FAST_MIN_S2

logger = logging.getLogger(__name__)

__all__ = ["KERNELS", "AUTO_MIN_VALUES", "AUTO_MIN_STREAM_ROWS", "numba_available",
           "numba_problem", "choose_kernel", "kernel_threads", "compiled_scorer",
           "compiled_stream_update"]

Kernel = Literal["auto", "numpy", "numba"]
KERNELS = ("auto", "numpy", "numba")

AUTO_MIN_VALUES = 1 << 24
"""``kernel="auto"`` runs the compiled kernel from this many trajectory values (``N * S``) on:
below it NumPy takes less than ~25 ms, and the compiled kernel's first call in a process
(compiling or loading it from numba's on-disk cache) would cost more than it saves."""

_COMPILED_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


@functools.cache
def _numba_installed() -> bool:
    return importlib.util.find_spec("numba") is not None


@functools.cache
def numba_problem() -> str | None:
    """Why the compiled kernel cannot run here (numba missing, or installed but failing to
    import), or ``None`` when it can. Imports numba the first time it is asked.

    Examples
    --------
    >>> numba_problem() is None or "numba" in numba_problem()
    True
    """
    if not _numba_installed():
        return "numba is not installed"
    try:
        importlib.import_module("numba")
    except Exception as exc:  # e.g. a numba built for another NumPy
        return f"numba is installed but does not import ({type(exc).__name__}: {exc})"
    return None


def numba_available() -> bool:
    """Whether the compiled kernel can run (numba, the ``fast`` extra, imports).

    Examples
    --------
    >>> isinstance(numba_available(), bool)
    True
    """
    return numba_problem() is None


AUTO_MIN_STREAM_ROWS = 1 << 22
"""``StreamingCLD(kernel="auto")`` updates with the compiled kernel from this many training rows
on: there, ~90 updates save more than compiling the kernel costs (the README's scoring benchmark
measures both updates at 1.27M rows, where the saving over 90 updates is about what a first
call costs, so ``"auto"`` keeps NumPy)."""


def choose_kernel(kernel: str, num_values: int, dtype, *, auto_min: int = AUTO_MIN_VALUES) -> str:
    """The kernel for ``num_values`` losses of ``dtype``: ``"numpy"`` or ``"numba"``.

    ``"auto"`` takes numba when it is installed, the losses are float32 or float64 and there are at
    least ``auto_min`` of them (:data:`AUTO_MIN_VALUES` for a trajectory,
    :data:`AUTO_MIN_STREAM_ROWS` rows for a streaming update); ``"numba"`` insists (an error says
    what is missing); ``"numpy"`` never compiles anything.

    Examples
    --------
    >>> choose_kernel("auto", 1000, np.float32)
    'numpy'
    >>> choose_kernel("numpy", 10**9, np.float32)
    'numpy'
    >>> choose_kernel("fastest", 10, np.float32)
    Traceback (most recent call last):
    ...
    ValueError: kernel == 'fastest', must be one of ['auto', 'numpy', 'numba'].
    """
    check_choice("kernel", kernel, KERNELS)
    if kernel == "numpy":
        return "numpy"
    compiled = np.dtype(dtype) in _COMPILED_DTYPES
    if kernel == "numba":
        if not numba_available():
            raise ImportError(
                f"kernel='numba' needs numba, and {numba_problem()}: pip install "
                f"'cld-hf[fast]' (or pass kernel='auto' / 'numpy' for the NumPy kernel).")
        if not compiled:
            raise TypeError(
                f"kernel='numba' scores float32 or float64 losses, got {np.dtype(dtype)}: cast "
                f"the trajectory (e.g. losses.astype(np.float32)) or pass kernel='numpy'.")
        return "numba"
    if compiled and num_values >= auto_min and _numba_installed():  # cached: once per update
        if numba_available():
            return "numba"
        _warn_once(numba_problem())  # installed but broken
    return "numpy"


@functools.cache
def _warn_once(problem: str) -> None:
    logger.warning("kernel='auto' scores with the NumPy kernel: %s. Reinstall it (pip install "
                   "'cld-hf[fast]') for the compiled kernel, or pass kernel='numpy' to say so.",
                   problem)


MAX_THREADS = 8
"""``threads=None`` runs the compiled kernel on the CPUs this process may use, at most this many
(beyond a few, the read of the trajectory is the limit)."""


def kernel_threads(threads: int | None) -> int:
    """How many threads the compiled kernel uses for ``threads`` (``None``: the CPUs this process
    may use, at most :data:`MAX_THREADS`).

    Examples
    --------
    >>> kernel_threads(3)
    3
    >>> 1 <= kernel_threads(None) <= MAX_THREADS
    True
    """
    if threads is None:
        try:
            cpus = len(os.sched_getaffinity(0))
        except AttributeError:  # not on Linux
            cpus = os.cpu_count() or 1
        return max(1, min(cpus, MAX_THREADS))
    return check_int("threads", threads, min_val=1)


def compiled_stream_update():
    """The compiled :class:`~cld_hf.scoring.streaming.StreamingCLD` update,
    :func:`cld_hf.scoring._numba_rows.stream_update` (imports numba).

    Examples
    --------
    >>> update = compiled_stream_update()  # needs numba
    >>> prev, shift = np.array([4.0, 1.0], np.float32), np.array([-1.0, 1.0])
    >>> acc_sq, acc_co = np.zeros(2), np.zeros(2)
    >>> update(np.array([2.0, 3.0], np.float32), prev, shift, np.zeros(0), acc_sq, acc_co,
    ...        np.zeros(2, np.uint8), np.array([0.5]), 1.0, False, 0, 2)
    >>> prev.tolist(), acc_sq.tolist(), acc_co.tolist()
    ([2.0, 3.0], [1.0, 1.0], [-0.5, 0.5])
    """
    from ._numba_rows import stream_update

    return stream_update


def compiled_scorer(unit: np.ndarray, omega: np.ndarray | None, dtype):
    """The compiled kernel for ``dtype`` losses, bound to the class trajectories ``unit``
    (``(C, T)``, centred, unit norm) and the step weights ``omega`` (``None``: Algorithm 1).

    The returned ``score(x, codes, out)`` writes the CLD score of every row of the C-contiguous
    block ``x`` (``(n, T + 1)``) against ``unit[codes]`` into ``out`` (float32) and returns the
    positions of the rows the caller scores again with its float64 path (their float64 sums
    are not finite: NaN/inf or huge losses). See :mod:`cld_hf.scoring._numba_rows`.

    Examples
    --------
    >>> x = np.array([[4.0, 3.0, 1.0, 0.5], [1.0, 2.0, 4.0, 4.5]], dtype=np.float32)
    >>> g = np.array([[-1.0, -2.0, -0.5]]); g -= g.mean(); g /= np.linalg.norm(g)
    >>> score = compiled_scorer(g, None, np.float32)  # needs numba
    >>> out = np.empty(2, np.float32)
    >>> rest = score(x, np.zeros(2, np.intp), out)
    >>> out.round(4).tolist(), rest.tolist()
    ([1.0, -1.0], [])
    """
    from ._numba_rows import exact_rows, fast_rows

    fast = np.dtype(dtype).type
    weighted = omega is not None
    omega64 = np.ones(unit.shape[1]) if omega is None else np.asarray(omega, dtype=np.float64)
    unit_fast = np.ascontiguousarray(unit, dtype=fast)
    unit64 = np.ascontiguousarray(unit, dtype=np.float64)
    omega_fast = omega64.astype(fast)
    none = np.zeros(0, dtype=np.intp)

    def score(x: np.ndarray, codes: np.ndarray, out: np.ndarray) -> np.ndarray:
        if fast_rows(x, codes, unit_fast, omega_fast, weighted, fast(0), FAST_MIN_CENTRED,
                     _FAST_MIN_S2, out) == 0:
            return none
        rest = np.flatnonzero(np.isnan(out))
        if exact_rows(x, rest, codes, unit64, omega64, ZERO_VAR_REL**2, out) == 0:
            return none
        return rest[np.isnan(out[rest])]

    return score
