"""Column names shared by every layer, and the one rule for finding the label column."""

from __future__ import annotations

__all__ = [
    "INDEX_COLUMN",
    "SCORE_COLUMN",
    "TRAJECTORY_COLUMN",
    "LABEL_CANDIDATES",
    "find_label_column",
]

INDEX_COLUMN = "sample_index"
"""Integer row index of a sample in the dataset it was scored in; survives ``Dataset.select``."""

SCORE_COLUMN = "cld_score"
"""float32 CLD score of a training sample."""

TRAJECTORY_COLUMN = "loss_trajectory"
"""``List(Value("float32"), length=S)``: the sample's loss at each snapshot."""

LABEL_CANDIDATES = ("labels", "label")
"""Where the label column is looked for, in order, when none is named."""


def find_label_column(column_names, label_column: str | None = None) -> str:
    """The label column of a dataset: ``label_column`` if given, else ``labels``, then ``label``.

    Parameters
    ----------
    column_names : iterable of str
        ``dataset.column_names``.
    label_column : str, optional
        Name it explicitly.

    Examples
    --------
    >>> find_label_column(["pixel_values", "label"])
    'label'
    >>> find_label_column(["x", "target"], "target")
    'target'
    """
    names = list(column_names)
    if label_column is not None:
        if label_column not in names:
            raise ValueError(
                f"label_column {label_column!r} is not in the dataset. "
                f"Current columns in the dataset: {names}."
            )
        return label_column
    for name in LABEL_CANDIDATES:
        if name in names:
            return name
    raise ValueError(
        f"No label column found: looked for {list(LABEL_CANDIDATES)} in the dataset's columns "
        f"{names}. Name the column of the class ids (label_column=... in Python, "
        f"--label-column on the command line)."
    )
