"""``datasets`` adapters: the NumPy method applied to a ``datasets.Dataset``, in one place.

- :func:`stratified_query_split`: the per-class query hold-out of a dataset;
- :func:`add_cld_scores`: the scores as a float32 feature (and, from :mod:`cld_hf.identity`,
  :func:`add_index_column`: each row's index in its source, which every split carries);
- :func:`scored_dataset`: the one way a scored dataset is assembled (scores, optionally the
  loss trajectories as ``List(Value("float32"), length=S)``), used by the recorder, the callback
  and ``cld-hf score``;
- :func:`select_coreset`: a class-balanced coreset through ``Dataset.select``;
- :func:`column_values`: one column as a NumPy array, without decoding the other columns.

``datasets`` is imported inside the functions, so importing this module stays light.
"""

from __future__ import annotations

import numpy as np

from .columns import SCORE_COLUMN, TRAJECTORY_COLUMN, find_label_column
from .identity import add_index_column, index_identity
from .selection import Balance
from .splits import stratified_split_indices

__all__ = [
    "column_values",
    "add_cld_scores",
    "scored_dataset",
    "select_coreset",
    "stratified_query_split",
]


def column_values(dataset, column: str) -> np.ndarray:
    """One column of a ``datasets.Dataset`` as a NumPy array (no other column is read).

    Examples
    --------
    >>> from datasets import Dataset
    >>> column_values(Dataset.from_dict({"label": [2, 0], "x": ["a", "b"]}), "label").tolist()
    [2, 0]
    """
    if column not in dataset.column_names:
        raise ValueError(
            f"Column {column!r} not in the dataset. Current columns in the dataset: "
            f"{dataset.column_names}."
        )
    return np.asarray(dataset.with_format("numpy", columns=[column])[column][:])


def stratified_query_split(dataset, *, fraction: float = 0.1, seed: int = 0, label_column=None,
                           source_name: str | None = None, source_split: str | None = None):
    """Split a ``datasets.Dataset`` into ``(train_dataset, query_dataset)``, stratified by class.

    Both parts carry ``sample_index``: each row's index in ``dataset`` (added first when
    ``dataset`` has none; see :func:`cld_hf.identity.add_index_column`), so scores, coresets and
    pushed indices refer to rows of ``dataset``, never to rows of the training part.

    Parameters
    ----------
    dataset : datasets.Dataset
    fraction : float, default 0.1
        Share of each class held out as the query set.
    seed : int, default 0
    label_column : str, optional
        Found as ``labels``, then ``label``, when not given.
    source_name, source_split : str, optional
        The name (e.g. the Hub id) and split of ``dataset``, recorded with the index (default:
        ``dataset.info.dataset_name`` and ``dataset.split``).

    Examples
    --------
    >>> from datasets import Dataset
    >>> ds = Dataset.from_dict({"x": list(range(40)), "label": [0, 1, 2, 3] * 10})
    >>> train, query = stratified_query_split(ds, fraction=0.2, seed=0)
    >>> len(train), len(query), sorted(set(query["label"]))
    (32, 8, [0, 1, 2, 3])
    >>> query["sample_index"][:3]                 # rows of ds
    [2, 9, 13]
    """
    label_column = find_label_column(dataset.column_names, label_column)
    dataset = add_index_column(dataset, name=source_name, split=source_split,
                               label_column=label_column)
    labels = column_values(dataset, label_column)
    train_idx, query_idx = stratified_split_indices(labels, fraction=fraction, seed=seed)
    return dataset.select(train_idx), dataset.select(query_idx)


def select_coreset(
    dataset,
    *,
    fraction: float | None = None,
    size: int | None = None,
    score_column: str = SCORE_COLUMN,
    label_column: str | None = None,
    balance: Balance = "equal",
    strategy: str = "top",
    seed: int = 0,
    query_losses=None,
    embeddings=None,
    group_column: str | None = None,
    label_free: bool = False,
    **strategy_options,
):
    """The class-balanced coreset of a scored ``datasets.Dataset``, through ``Dataset.select``.

    Each class keeps its ``k_c`` highest scores (:func:`~cld_hf.selection.select_top_per_class`).
    The coreset has a ``sample_index`` column: the one ``dataset`` carries (each row's index in
    the source it was split from), or, when it has none, each row's index in ``dataset``
    (recorded as the source); either way the column's feature says which dataset it indexes
    (:func:`cld_hf.identity.index_identity`).

    Parameters
    ----------
    dataset : datasets.Dataset
        With a score column and a label column.
    fraction, size, balance
        See :func:`~cld_hf.selection.class_budgets`.
    score_column : str, default "cld_score"
    label_column : str, optional
        The class column. When not given: ``cld_group`` when the dataset has it (the grouping of
        a label-free or grouped recording, :mod:`cld_hf.groups`), else the first scalar one of
        ``labels``, ``label`` (a token-level ``labels`` column is never a class).
    group_column : str, optional
        Budgets per value of this column (a task, source or domain; any scalars) instead.
    label_free : bool, default False
        One budget for all rows.
    strategy : str, default "top"
        How each class's ``k_c`` samples are chosen (:data:`cld_hf.strategies.STRATEGIES`):
        ``"top"`` is Algorithm 1 (the highest scores); ``"noise_adaptive"`` and ``"coverage"``
        use the scores only to drop the suspected-noise tail (they need ``query_losses``, the
        ``(Q, S)`` query trajectory, and ``"coverage"`` the ``embeddings`` of the rows).
    seed : int, default 0
        For the strategies that sample.
    **strategy_options
        Options of the strategy (e.g. ``drop_multiplier=2.0``).

    Returns
    -------
    datasets.Dataset, rows in their original order.

    Examples
    --------
    >>> from datasets import Dataset
    >>> ds = Dataset.from_dict({"label": [0, 0, 0, 1, 1, 1],
    ...                         "cld_score": [0.1, 0.9, 0.5, 0.5, 0.2, 0.8]})
    >>> core = select_coreset(ds, size=4)
    >>> core["sample_index"][:], core["cld_score"][:]
    ([1, 2, 3, 5], [0.9, 0.5, 0.5, 0.8])
    """
    from .selection import class_budgets
    from .strategies import select_with_strategy

    label_column, labels = _selection_groups(dataset, label_column, group_column, label_free)
    scores = column_values(dataset, score_column)
    budgets = class_budgets(labels, fraction=fraction, size=size, balance=balance)
    indices = select_with_strategy(scores, labels, budgets=budgets, strategy=strategy, seed=seed,
                                   query_losses=query_losses, embeddings=embeddings,
                                   **strategy_options)
    if index_identity(dataset) is None:
        dataset = add_index_column(dataset, label_column=label_column)
    return dataset.select(indices)


def _selection_groups(dataset, label_column, group_column, label_free):
    """``(class column or None, group id of every row)`` for :func:`select_coreset`."""
    from .groups import selection_column

    given = [n for n, v in (("label_column", label_column), ("group_column", group_column),
                            ("label_free", label_free or None)) if v is not None]
    if len(given) > 1:
        raise ValueError(f"{' and '.join(given)} both say how to group the rows: pass one.")
    if label_free:
        return None, np.zeros(len(dataset), dtype=np.int64)
    if group_column is not None:
        values = column_values(dataset, group_column)
        return None, np.unique(values, return_inverse=True)[1].astype(np.int64)
    column = selection_column(dataset, label_column)
    return column, column_values(dataset, column)


def add_cld_scores(dataset, scores, *, column: str = SCORE_COLUMN, overwrite: bool = False):
    """Add the CLD scores to ``dataset`` as a float32 feature.

    Parameters
    ----------
    dataset : datasets.Dataset
        The training set the scores were computed on, in the same row order.
    scores : float array of shape (len(dataset),)
    column : str, default "cld_score"
    overwrite : bool, default False
        Replace an existing column of that name.

    Examples
    --------
    >>> from datasets import Dataset
    >>> ds = add_cld_scores(Dataset.from_dict({"label": [0, 1]}), [0.25, -0.5])
    >>> ds.features["cld_score"], ds["cld_score"][:]
    (Value('float32'), [0.25, -0.5])
    """
    import datasets

    sc = np.asarray(scores, dtype=np.float32)
    if sc.ndim != 1 or len(sc) != len(dataset):
        raise ValueError(
            f"scores has shape {sc.shape} but the dataset has {len(dataset)} rows. Ensure the "
            f"scores were computed on this dataset (same rows, same order)."
        )
    if column in dataset.column_names:
        if not overwrite:
            raise ValueError(
                f"The dataset already has a column {column!r}; pass overwrite=True to replace "
                f"it or column='<another name>' to keep both."
            )
        dataset = dataset.remove_columns(column)
    return dataset.add_column(column, sc, feature=datasets.Value("float32"))


def scored_dataset(dataset, scores, *, trajectory=None, overwrite: bool = False):
    """``dataset`` + ``cld_score`` (float32) [+ ``loss_trajectory``]: a scored dataset.

    The one way cld-hf assembles a scored dataset. A custom transform set on ``dataset``
    (``with_transform``) is dropped, since it would hide the new columns; ``datasets`` flattens
    an indices mapping (a dataset made by ``select``) to add the columns.

    Parameters
    ----------
    dataset : datasets.Dataset
        The training set the scores were computed on, in the same row order.
    scores : float array of shape (len(dataset),)
    trajectory : float array of shape (len(dataset), S), optional
        The loss of each row at each snapshot, added as ``loss_trajectory``
        (``List(Value("float32"), length=S)``, built from an Arrow ``FixedSizeListArray``).
    overwrite : bool, default False
        Replace existing ``cld_score`` / ``loss_trajectory`` columns instead of refusing.

    Examples
    --------
    >>> from datasets import Dataset
    >>> ds = Dataset.from_dict({"label": [0, 1]})
    >>> scored = scored_dataset(ds, [0.5, -0.5], trajectory=[[2.0, 1.0, 0.5], [1.0, 1.5, 2.0]])
    >>> scored.features["cld_score"], scored.features["loss_trajectory"]
    (Value('float32'), List(Value('float32'), length=3))
    """
    import datasets

    from .store_signals import trajectory_column

    if not isinstance(dataset, datasets.Dataset):
        raise TypeError(
            f"dataset must be a datasets.Dataset, not {type(dataset).__name__}; without one, "
            f"use the scores array itself."
        )
    if dataset.format.get("type") == "custom":
        dataset = dataset.with_format(None)
    columns = [SCORE_COLUMN] + ([TRAJECTORY_COLUMN] if trajectory is not None else [])
    present = [c for c in columns if c in dataset.column_names]
    if present and not overwrite:
        raise ValueError(
            f"The dataset already has the column(s) {present}; remove them "
            f"(dataset.remove_columns({present!r})) or pass overwrite=True."
        )
    if present:
        dataset = dataset.remove_columns(present)
    dataset = add_cld_scores(dataset, scores)
    if trajectory is not None:
        matrix = np.asarray(trajectory, dtype=np.float32)
        if matrix.ndim != 2 or len(matrix) != len(dataset):
            raise ValueError(
                f"trajectory has shape {matrix.shape}; it must be (len(dataset), S) = "
                f"({len(dataset)}, S): one row per row of the dataset, one column per snapshot."
            )
        dataset = dataset.add_column(
            TRAJECTORY_COLUMN, trajectory_column(matrix),
            feature=datasets.List(datasets.Value("float32"), length=matrix.shape[1]),
        )
    return dataset
