"""`evaluate` metric modules shipped inside cld-hf: metric scripts on the Hub cannot be fetched
offline, so the ones the project needs load by path.

Examples
--------
>>> metric = load_metric("accuracy")
>>> metric.compute(predictions=[0, 1], references=[0, 0])
{'accuracy': 0.5}
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["load_metric", "available_metrics"]

_HERE = Path(__file__).parent


def available_metrics() -> list[str]:
    """Names of the metric modules shipped with cld-hf.

    Examples
    --------
    >>> "accuracy" in available_metrics()
    True
    """
    return sorted(p.parent.name for p in _HERE.glob("*/*.py") if p.stem == p.parent.name)


def load_metric(name: str, **kwargs):
    """``evaluate.load`` of a metric module shipped with cld-hf (works offline).

    Parameters
    ----------
    name : str
        One of :func:`available_metrics`.
    **kwargs
        Passed to ``evaluate.load``.

    Examples
    --------
    >>> load_metric("accuracy").compute(predictions=[0, 1, 1], references=[0, 1, 0])
    {'accuracy': 0.6666666666666666}
    """
    import evaluate

    if name not in available_metrics():
        raise ValueError(
            f"metric {name!r} is not shipped with cld-hf; available: {available_metrics()}. "
            f"Metric scripts on the Hub cannot be fetched offline; any other metric can be "
            f"passed as a callable."
        )
    return evaluate.load(str(_HERE / name / f"{name}.py"), **kwargs)
