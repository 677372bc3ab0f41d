"""Argument checks shared by every layer, written once (NumPy only).

Errors follow scikit-learn's ``check_scalar``: they name the argument, give the offending value
and the bound, and say how to fix it, e.g. ``"every == 0, must be >= 1."``.

Examples
--------
>>> check_int("every", 3, min_val=1)
3
>>> check_int("every", 0, min_val=1)
Traceback (most recent call last):
...
ValueError: every == 0, must be >= 1.
"""

from __future__ import annotations

import json
import numbers

import numpy as np

__all__ = [
    "MAX_NAMED",
    "check_int",
    "check_float",
    "check_choice",
    "check_bool",
    "check_callable",
    "check_labels",
    "check_real_array",
    "check_json",
    "raise_non_finite",
]

MAX_NAMED = 10
"""At most this many offending row indices (or values) are named in an error message."""


def check_int(name: str, value, *, min_val: int | None = None, max_val: int | None = None) -> int:
    """``value`` as an int within the bounds, or a ``check_scalar``-style error.

    Examples
    --------
    >>> check_int("batch_size", 64, min_val=1)
    64
    >>> check_int("batch_size", 1.5)
    Traceback (most recent call last):
    ...
    TypeError: batch_size must be an instance of int, not float.
    """
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an instance of int, not {type(value).__name__}.")
    if min_val is not None and value < min_val:
        raise ValueError(f"{name} == {value}, must be >= {min_val}.")
    if max_val is not None and value > max_val:
        raise ValueError(f"{name} == {value}, must be <= {max_val}.")
    return int(value)


def check_float(
    name: str,
    value,
    *,
    min_val: float | None = None,
    max_val: float | None = None,
    include_min: bool = True,
    include_max: bool = True,
) -> float:
    """``value`` as a finite float within the bounds, or a ``check_scalar``-style error.

    Examples
    --------
    >>> check_float("fraction", 0.1, min_val=0.0, max_val=1.0, include_min=False)
    0.1
    >>> check_float("fraction", 0.0, min_val=0.0, include_min=False)
    Traceback (most recent call last):
    ...
    ValueError: fraction == 0.0, must be > 0.0.
    """
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be an instance of float, not {type(value).__name__}.")
    value = float(value)
    if not np.isfinite(value):
        raise ValueError(f"{name} == {value}, must be a finite number.")
    if min_val is not None and (value < min_val or (not include_min and value == min_val)):
        raise ValueError(f"{name} == {value}, must be {'>=' if include_min else '>'} {min_val}.")
    if max_val is not None and (value > max_val or (not include_max and value == max_val)):
        raise ValueError(f"{name} == {value}, must be {'<=' if include_max else '<'} {max_val}.")
    return value


def check_choice(name: str, value, choices):
    """``value`` if it is one of ``choices``, else an error listing them.

    Examples
    --------
    >>> check_choice("mode", "sweep", ("sweep", "train_pass"))
    'sweep'
    >>> check_choice("mode", "eval", ("sweep", "train_pass"))
    Traceback (most recent call last):
    ...
    ValueError: mode == 'eval', must be one of ['sweep', 'train_pass'].
    """
    if value not in choices:
        raise ValueError(f"{name} == {value!r}, must be one of {list(choices)}.")
    return value


def check_bool(name: str, value) -> bool:
    """``value`` if it is a bool (or a NumPy bool), else a ``TypeError``.

    Examples
    --------
    >>> check_bool("streaming", True)
    True
    >>> check_bool("streaming", "yes")
    Traceback (most recent call last):
    ...
    TypeError: streaming must be True or False, not str.
    """
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, not {type(value).__name__}.")
    return bool(value)


def check_callable(name: str, value, signature: str):
    """``value`` if it is ``None`` or callable, else a ``TypeError`` naming the expected call.

    Examples
    --------
    >>> check_callable("per_sample_loss", None, "fn(outputs, batch) -> Tensor[B]") is None
    True
    >>> check_callable("per_sample_loss", 3, "fn(outputs, batch) -> Tensor[B]")
    Traceback (most recent call last):
    ...
    TypeError: per_sample_loss must be a callable fn(outputs, batch) -> Tensor[B], not int.
    """
    if value is not None and not callable(value):
        raise TypeError(f"{name} must be a callable {signature}, not {type(value).__name__}.")
    return value


def check_labels(labels, name: str = "labels", n: int | None = None, *,
                 against: str = "the losses") -> np.ndarray:
    """One-dimensional integer class ids, ``n`` of them when given.

    Parameters
    ----------
    labels : array-like of int
    name : str, default "labels"
        Named in the error.
    n : int, optional
        The number of rows the labels must match.
    against : str, default "the losses"
        What has ``n`` rows, for the error message.

    Examples
    --------
    >>> check_labels([0, 1, 1]).tolist()
    [0, 1, 1]
    >>> check_labels([0.5, 1.0])
    Traceback (most recent call last):
    ...
    TypeError: labels must hold integer class ids, got dtype float64. ...
    """
    arr = np.asarray(labels)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {arr.shape}.")
    if arr.dtype == bool or not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(
            f"{name} must hold integer class ids, got dtype {arr.dtype}. "
            f"Map class names to integers first (e.g. a datasets ClassLabel feature or "
            f"`np.unique(labels, return_inverse=True)[1]`)."
        )
    if n is not None and len(arr) != n:
        raise ValueError(
            f"{name} has {len(arr)} entries but {against} have {n} rows; pass one label per "
            f"row, from the same dataset in the same order."
        )
    return arr


def check_real_array(arr, name: str, *, ndim: int = 2, layout: str = "(samples, snapshots)"):
    """An array of real numbers with ``ndim`` dimensions (not copied when it already is one).

    Examples
    --------
    >>> check_real_array([[1.0, 2.0]], "train_losses").shape
    (1, 2)
    >>> check_real_array([1.0, 2.0], "train_losses")
    Traceback (most recent call last):
    ...
    ValueError: train_losses must be a 2-D array (samples, snapshots), got shape (2,). ...
    """
    a = arr if isinstance(arr, np.ndarray) else np.asarray(arr)
    if a.ndim != ndim:
        hint = " Stack one column per snapshot, e.g. `np.stack(snapshots, axis=1)`." if (
            "snapshot" in layout) else ""
        raise ValueError(f"{name} must be a {ndim}-D array {layout}, got shape {a.shape}.{hint}")
    if a.dtype == bool or not (np.issubdtype(a.dtype, np.floating)
                               or np.issubdtype(a.dtype, np.integer)):
        raise TypeError(f"{name} must hold real numbers, got dtype {a.dtype}.")
    return a


def check_trajectory_pair(train_losses, query_losses) -> tuple[np.ndarray, np.ndarray]:
    """The training and query loss trajectories: two 2-D real arrays with the same snapshots.

    Examples
    --------
    >>> train, query = check_trajectory_pair([[1.0, 0.5]], [[2.0, 1.0], [1.0, 0.9]])
    >>> train.shape, query.shape
    ((1, 2), (2, 2))
    >>> check_trajectory_pair([[1.0, 0.5]], [[2.0, 1.0, 0.4]])
    Traceback (most recent call last):
    ...
    ValueError: train_losses has 2 snapshots (columns) but query_losses has 3; record the ...
    """
    train = check_real_array(train_losses, "train_losses")
    query = check_real_array(query_losses, "query_losses")
    if query.shape[1] != train.shape[1]:
        raise ValueError(
            f"train_losses has {train.shape[1]} snapshots (columns) but query_losses has "
            f"{query.shape[1]}; record the training and query losses at the same snapshots."
        )
    return train, query


def raise_non_finite(name: str, arr: np.ndarray, bad_rows, *, snapshot=None, fix: str) -> None:
    """Raise the error for NaN/inf values in the rows ``bad_rows`` of ``arr``, naming them.

    Examples
    --------
    >>> raise_non_finite("losses", np.array([1.0, np.nan]), [1], fix="Record again.")
    Traceback (most recent call last):
    ...
    ValueError: losses contains 1 NaN or inf value(s) in 1 row(s); first row indices: [1]. ...
    """
    bad_rows = np.asarray(bad_rows)
    sub = np.asarray(arr[bad_rows])
    count = int(np.count_nonzero(~np.isfinite(sub)))
    where = f" at snapshot {snapshot}" if snapshot is not None else ""
    raise ValueError(
        f"{name} contains {count} NaN or inf value(s){where} in {len(bad_rows)} row(s); first "
        f"row indices: {bad_rows[:MAX_NAMED].tolist()}. {fix}"
    )


def check_json(name: str, value) -> dict:
    """A dict of plain JSON values (a copy), ``{}`` for ``None``.

    Examples
    --------
    >>> check_json("metadata", {"epochs": 3})
    {'epochs': 3}
    >>> check_json("metadata", {"model": object()})
    Traceback (most recent call last):
    ...
    ValueError: metadata['model'] == <object object at ...> is not plain JSON ...
    """
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise TypeError(f"{name} must be a dict, not {type(value).__name__}.")
    for key, item in value.items():
        try:
            json.dumps(item, allow_nan=False)
        except (TypeError, ValueError) as err:
            raise ValueError(
                f"{name}[{key!r}] == {item!r} is not plain JSON ({err}); use str, int, float, "
                f"bool, None, lists and dicts of those."
            ) from None
    return dict(value)
