"""Staging: the coreset selected and checked, the summary, Parquet shards, cards, on disk.

:func:`_prepare` checks the data against the spec (selection, the label and score columns, and
the **sample identity**: the dataset the ``sample_index`` record names must be the
``source_dataset`` / ``source_split`` the cards will name); :func:`_stage` writes both repos
under a folder, exactly as a push commits them; :func:`export_coreset_repos` is the public,
offline entry point. Nothing here touches the network.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..columns import INDEX_COLUMN, SCORE_COLUMN, TRAJECTORY_COLUMN, find_label_column
from ..fileio import atomic_write_json
from ..identity import describe_identity, index_identity
from .spec import INDEX_CONFIG, RUN_INFO_FILE, CoresetHubSpec, build_spec, check_repo_id

logger = logging.getLogger(__name__)

__all__ = ["ExportedRepos", "export_coreset_repos", "check_index_source"]

FORMAT_VERSION = 2  # 2: the summary has "index_source" (the sample_index record)


@dataclass(frozen=True)
class ExportedRepos:
    """The two repos of a coreset staged on disk by :func:`export_coreset_repos`.

    Attributes
    ----------
    dataset_dir : pathlib.Path
        ``local_dir/dataset``: ``README.md`` (dataset card), ``cld_run.json``, ``data/`` and
        ``indices/`` Parquet shards, exactly the files :func:`push_coreset_to_hub` commits.
    model_dir : pathlib.Path or None
        ``local_dir/model``: ``README.md`` (model card), ``config.json``, ``model.safetensors``
        and any processor files; ``None`` without a model.
    summary : dict
        What both cards were rendered from: ``cld_run.json`` plus ``endpoint`` (the Hub address
        the card links point to).

    Examples
    --------
    >>> ExportedRepos(Path("out/dataset"), None, {"num_rows": 2}).model_dir is None
    True
    """

    dataset_dir: Path
    model_dir: Path | None
    summary: dict


@dataclass(frozen=True)
class _Prepared:
    """The coreset to share and what it was checked against; nothing written yet."""

    coreset: Any
    scored: Any  # the scored dataset it was selected from here, or None
    label_column: str
    identity: dict  # index_identity(coreset)
    spec: CoresetHubSpec  # source_dataset / source_split resolved against the identity


# ------------------------------------------------------------------------------ identity
def _same_dataset(recorded: str, source: str) -> bool:
    """Whether the name in an index record is ``source``: equal, or the short name that
    ``datasets.load_dataset`` gives a Hub dataset (``info.dataset_name``)."""
    from datasets.naming import camelcase_to_snakecase

    short = source.split("/")[-1]
    return recorded in (source, short, camelcase_to_snakecase(short))


def check_index_source(identity: dict | None, *, source_dataset: str | None,
                       source_split: str | None) -> tuple[str | None, str]:
    """Check that an index's record names ``source_dataset`` / ``source_split``; resolve them.

    Parameters
    ----------
    identity : dict or None
        The record of the coreset's ``sample_index`` (:func:`cld_hf.identity.index_identity`).
    source_dataset, source_split : str or None
        What the cards will name as the dataset and split ``sample_index`` indexes.

    Returns
    -------
    (source_dataset, source_split)
        ``source_dataset`` (the record's name when it is a full Hub id and none was given) and
        the split (given, else the record's, else ``"train"``).

    Raises
    ------
    ValueError
        The record names another dataset or split, or no dataset while ``source_dataset`` is
        given (an index made on an unnamed sub-dataset, e.g. the training part of a split).

    Examples
    --------
    >>> record = {"name": "me/src", "split": "train", "num_rows": 10, "fingerprint": "ab" * 32}
    >>> check_index_source(record, source_dataset=None, source_split=None)
    ('me/src', 'train')
    >>> check_index_source(record, source_dataset="me/other", source_split=None)
    Traceback (most recent call last):
    ...
    ValueError: source_dataset == 'me/other', but the coreset's sample_index counts rows of ...
    """
    identity = identity or {}
    name, split = identity.get("name"), identity.get("split")
    described = describe_identity(identity)
    if source_dataset is None and name and "/" in name:
        try:
            source_dataset = check_repo_id("source_dataset", name)
        except ValueError:
            pass
    if source_dataset is not None:
        if not name:
            raise ValueError(
                f"source_dataset == {source_dataset!r}, but the coreset's sample_index counts "
                f"rows of {described}: it was made on a dataset that was not named, e.g. the "
                f"training part of a split, so its values are not rows of {source_dataset!r}. "
                f"Make the index on the full source before splitting, naming it: "
                f"stratified_query_split(full, source_name={source_dataset!r}, "
                f"source_split={source_split or 'train'!r}) adds sample_index before it splits "
                f"(or add_index_column(full, name={source_dataset!r}, split=...)); then score "
                f"and select again. Or leave source_dataset out to share the coreset without "
                f"naming a source."
            )
        if not _same_dataset(name, source_dataset):
            raise ValueError(
                f"source_dataset == {source_dataset!r}, but the coreset's sample_index counts "
                f"rows of {described}. Pass source_dataset={name!r} if that is its Hub id; if "
                f"the rows really come from {source_dataset!r}, make the index on it: "
                f"add_index_column(full, name={source_dataset!r}, split=...) or "
                f"stratified_query_split(full, source_name={source_dataset!r}) before "
                f"splitting, then score and select again."
            )
    if source_split is not None and split and split != source_split:
        raise ValueError(
            f"source_split == {source_split!r}, but the coreset's sample_index counts rows of "
            f"{described}. Pass source_split={split!r}, or make the index on the "
            f"{source_split!r} split (stratified_query_split(full, source_split="
            f"{source_split!r}) before splitting)."
        )
    return source_dataset, source_split or split or "train"


# ------------------------------------------------------------------------------ prepare
def _prepare(dataset, spec: CoresetHubSpec) -> _Prepared:
    """Check the dataset against the spec and select the coreset; nothing is written or sent."""
    import datasets

    from ..dataset_adapters import select_coreset

    if not isinstance(dataset, datasets.Dataset):
        raise TypeError(
            f"coreset_or_scored_dataset must be a datasets.Dataset, not "
            f"{type(dataset).__name__}; pick a split of a DatasetDict, e.g. ds['train']."
        )
    label_column = find_label_column(dataset.column_names, spec.label_column)
    if SCORE_COLUMN not in dataset.column_names:
        raise ValueError(
            f"Column {SCORE_COLUMN!r} not in the dataset. Current columns in the dataset: "
            f"{dataset.column_names}. Score it first (cld_hf.add_cld_scores or cld-hf score)."
        )
    index_identity(dataset)  # a foreign sample_index is an error before any selection
    scored = None
    if spec.fraction is not None or spec.size is not None:
        scored = dataset
        coreset = select_coreset(dataset, fraction=spec.fraction, size=spec.size,
                                 label_column=label_column, balance=spec.balance)
    else:
        if INDEX_COLUMN not in dataset.column_names:
            raise ValueError(
                f"The dataset has no {INDEX_COLUMN!r} column, so it is a scored dataset rather "
                f"than a coreset; pass fraction= (e.g. 0.1) or size= to select the coreset, or "
                f"fraction=1.0 to push every scored row."
            )
        coreset = dataset
    if TRAJECTORY_COLUMN in coreset.column_names and not spec.include_trajectory:
        coreset = coreset.remove_columns(TRAJECTORY_COLUMN)
    elif spec.include_trajectory and TRAJECTORY_COLUMN not in coreset.column_names:
        raise ValueError(
            f"include_trajectory=True but the dataset has no {TRAJECTORY_COLUMN!r} column "
            f"(columns: {coreset.column_names}); score with the trajectory kept, or drop "
            f"include_trajectory."
        )
    if len(coreset) == 0:
        raise ValueError("The coreset is empty: there is nothing to push.")
    identity = index_identity(coreset)
    source, split = check_index_source(identity, source_dataset=spec.source_dataset,
                                       source_split=spec.source_split)
    spec = replace(spec, source_dataset=source, source_split=split)
    return _Prepared(coreset=coreset, scored=scored, label_column=label_column,
                    identity=identity, spec=spec)


# ------------------------------------------------------------------------------ summary
def _numpy_column(dataset, column):
    return np.asarray(dataset.with_format("numpy", columns=[column])[column][:])


def _score_stats(scores) -> dict | None:
    s = np.asarray(scores, dtype=np.float64)
    if s.size == 0:
        return None
    finite = s[~np.isnan(s)]
    if finite.size == 0:
        return {"count": int(s.size), "nan": int(s.size)}
    q25, median, q75 = np.percentile(finite, [25, 50, 75])
    return {"count": int(s.size), "min": float(finite.min()), "q25": float(q25),
            "median": float(median), "q75": float(q75), "max": float(finite.max()),
            "mean": float(finite.mean()), "std": float(finite.std()),
            "nan": int(s.size - finite.size)}


def _budgets(coreset, scored, label_column) -> list[dict]:
    labels = _numpy_column(coreset, label_column)
    classes, counts = np.unique(labels, return_counts=True)
    sizes = {}
    if scored is not None:
        all_classes, all_counts = np.unique(_numpy_column(scored, label_column), return_counts=True)
        sizes = dict(zip(all_classes.tolist(), all_counts.tolist()))
        kept = dict(zip(classes.tolist(), counts.tolist()))
        classes = all_classes  # a class the coreset left out still gets its row (k_c = 0)
        counts = np.asarray([kept.get(c, 0) for c in classes.tolist()])
    names = getattr(coreset.features[label_column], "names", None)
    out = []
    for c, k in zip(classes.tolist(), counts.tolist()):
        name = names[c] if names is not None and isinstance(c, int) and 0 <= c < len(names) else ""
        out.append({"label": c, "name": name, "k": int(k), "n": sizes.get(c)})
    return out


def _column_rows(coreset, label_column) -> list[dict]:
    meanings = {
        INDEX_COLUMN: "row index of the sample in the source dataset (see Sample identity; "
        "`Dataset.select` it)",
        SCORE_COLUMN: "CLD score: Pearson correlation of the sample's loss differences with its "
        "class's query trajectory, in [-1, 1]; higher is kept first",
        TRAJECTORY_COLUMN: "the sample's loss at each snapshot, in time order",
        label_column: "class id",
    }
    rows = []
    for name, feature in coreset.features.items():
        text = repr(feature)
        if len(text) > 80:  # e.g. a ClassLabel with 100 names
            names = getattr(feature, "names", None)
            text = (f"ClassLabel(num_classes={len(names)})" if names is not None
                    else text[:77] + "...")
        rows.append({"name": name, "feature": text,
                     "meaning": meanings.get(name, "from the source dataset")})
    return rows


def _summary(prepared: _Prepared, *, endpoint: str) -> dict:
    """The summary both cards render and ``cld_run.json`` holds (without ``endpoint``)."""
    from .. import __version__

    coreset, scored, spec = prepared.coreset, prepared.scored, prepared.spec
    method = spec.method_info
    num_scored = len(scored) if scored is not None else method.get("source_size")
    if spec.fraction is not None:
        fraction = spec.fraction
    elif scored is None and method.get("fraction") is not None:
        fraction = method["fraction"]
    else:
        fraction = len(coreset) / num_scored if num_scored else None
    return {
        "format": "cld-hf-coreset",
        "format_version": FORMAT_VERSION,
        "repo_id": spec.repo_id,
        "model_repo_id": spec.model_repo_id,
        "endpoint": endpoint,
        "source_dataset": spec.source_dataset,
        "source_revision": spec.source_revision,
        "source_split": spec.source_split,
        "index_source": dict(prepared.identity),
        "num_rows": len(coreset),
        "num_scored_rows": num_scored,
        "fraction": fraction,
        "balance": spec.balance,
        "label_column": prepared.label_column,
        "include_trajectory": spec.include_trajectory,
        "columns": _column_rows(coreset, prepared.label_column),
        "budgets": _budgets(coreset, scored, prepared.label_column),
        "score_stats": {
            "coreset": _score_stats(_numpy_column(coreset, SCORE_COLUMN)),
            "scored": (_score_stats(_numpy_column(scored, SCORE_COLUMN))
                       if scored is not None else None),
        },
        "method": method,
        "eval_results": spec.eval_results or None,
        "eval_split": method.get("eval_split", "test"),
        "license": spec.license,
        "tags": list(spec.tags),
        "cld_hf_version": __version__,
    }


# ------------------------------------------------------------------------------ files
def _write_parquet_shards(dataset, root: Path, data_dir: str, max_shard_size):
    """Write ``{data_dir}/train-XXXXX-of-YYYYY.parquet`` shards, embedding external files.

    Returns ``(dataset_nbytes, download_size)``.
    """
    from datasets.features.features import require_decoding
    from datasets.table import embed_table_storage
    from datasets.utils.py_utils import convert_file_size_to_int

    table_rows = max(len(dataset.data), 1)
    nbytes = int(dataset.data.nbytes * len(dataset) / table_rows)
    num_shards = max(1, math.ceil(nbytes / convert_file_size_to_int(max_shard_size)))
    num_shards = min(num_shards, max(len(dataset), 1))
    embed = any(require_decoding(f, ignore_decode_attribute=True)
                for f in dataset.features.values())
    download_size = 0
    for index in range(num_shards):
        shard = dataset.shard(num_shards=num_shards, index=index, contiguous=True)
        if embed:  # images / audio given as local paths: put their bytes into the Parquet
            shard = shard.with_format("arrow").map(embed_table_storage, batched=True,
                                                   keep_in_memory=True).with_format(None)
        path_in_repo = f"{data_dir}/train-{index:05d}-of-{num_shards:05d}.parquet"
        local = root / path_in_repo
        local.parent.mkdir(parents=True, exist_ok=True)
        shard.to_parquet(str(local))
        download_size += local.stat().st_size
    return nbytes, download_size


def _dataset_card_data(configs: dict):
    """``DatasetCardData`` holding ``configs`` and ``dataset_info``.

    ``configs`` maps a config name to ``(dataset, data_dir, nbytes, download_size)``.
    """
    import datasets
    from datasets.info import DatasetInfosDict
    from datasets.utils.metadata import MetadataConfigs
    from huggingface_hub import DatasetCardData

    card_data = DatasetCardData()
    infos, metadata = {}, {}
    for name, (ds, data_dir, nbytes, download_size) in configs.items():
        splits = datasets.SplitDict()
        splits.add(datasets.SplitInfo(name="train", num_bytes=nbytes, num_examples=len(ds)))
        infos[name] = datasets.DatasetInfo(config_name=name, features=ds.features, splits=splits,
                                           download_size=download_size, dataset_size=nbytes)
        metadata[name] = {"data_files": [{"split": "train", "path": f"{data_dir}/train-*"}]}
    DatasetInfosDict(infos).to_dataset_card_data(card_data)
    MetadataConfigs(metadata).to_dataset_card_data(card_data)
    return card_data


def _stage(prepared: _Prepared, root: Path, *, endpoint: str, model=None, processing_class=None,
           model_config=None, skip_model_files=None) -> ExportedRepos:
    """Write both repos under ``root/dataset`` and ``root/model`` (``root`` must be empty).

    The one implementation behind :func:`export_coreset_repos` and
    :func:`~cld_hf.hub.push_coreset_to_hub`. The model goes first: the dataset card shows its
    architecture and size.
    """
    from .cards import coreset_dataset_card, proxy_model_card
    from .model_files import save_model_files

    spec = prepared.spec
    summary = _summary(prepared, endpoint=endpoint)
    model_dir = None
    if model is not None:
        model_dir = root / "model"
        model_dir.mkdir(parents=True)
        details = save_model_files(model, model_dir, spec.model_repo_id,
                                   processing_class=processing_class, model_config=model_config,
                                   base_model=spec.method_info.get("base_model"),
                                   skip_model_files=skip_model_files)
        summary["model"] = {k: details[k] for k in ("architecture", "num_parameters",
                                                    "library_name", "base_model")}
        proxy_model_card(summary, details).save(model_dir / "README.md")

    coreset = prepared.coreset
    index_ds = coreset.select_columns([INDEX_COLUMN, prepared.label_column, SCORE_COLUMN])
    data_dir = root / "dataset"
    data_dir.mkdir(parents=True)
    rows_nbytes, rows_dl = _write_parquet_shards(coreset, data_dir, "data", spec.max_shard_size)
    idx_nbytes, idx_dl = _write_parquet_shards(index_ds, data_dir, INDEX_CONFIG,
                                               spec.max_shard_size)
    card_data = _dataset_card_data({"default": (coreset, "data", rows_nbytes, rows_dl),
                                    INDEX_CONFIG: (index_ds, INDEX_CONFIG, idx_nbytes, idx_dl)})
    coreset_dataset_card(summary, card_data=card_data).save(data_dir / "README.md")
    atomic_write_json(data_dir / RUN_INFO_FILE, {k: v for k, v in summary.items()
                                                 if k != "endpoint"})
    return ExportedRepos(dataset_dir=data_dir, model_dir=model_dir, summary=summary)


def _check_model_arguments(spec: CoresetHubSpec, model) -> None:
    """``model`` and ``model_repo_id`` go together; ``model`` is a module or a folder."""
    if (model is None) != (spec.model_repo_id is None):
        got = type(model).__name__ if model is not None else None
        raise ValueError(
            f"Pass model= and model_repo_id= together (got model={got}, "
            f"model_repo_id={spec.model_repo_id!r}): the model repo needs both."
        )
    if model is not None and not isinstance(model, (str, os.PathLike)) and not hasattr(
            model, "state_dict"):
        raise TypeError(
            f"model must be a torch.nn.Module or the path of a saved model directory, not "
            f"{type(model).__name__}."
        )


def _check_export_dir(local_dir: Path) -> None:
    """Refuse to replace ``dataset/`` or ``model/`` folders that an export did not write."""
    if local_dir.exists() and not local_dir.is_dir():
        raise NotADirectoryError(
            f"local_dir == {str(local_dir)!r} is a file; pass a directory (it is created when "
            f"missing)."
        )
    previous_export = (local_dir / "dataset" / RUN_INFO_FILE).is_file()
    for name in ("dataset", "model"):
        target = local_dir / name
        if target.is_symlink() or (target.exists() and not target.is_dir()):
            raise FileExistsError(
                f"local_dir == {str(local_dir)!r} holds {name!r}, which is not a folder; the "
                f"export writes the folder {str(target)!r}. Remove it or pass another local_dir."
            )
        if target.is_dir() and any(target.iterdir()) and not previous_export:
            raise FileExistsError(
                f"{str(target)!r} holds files that no coreset export wrote (there is no "
                f"dataset/{RUN_INFO_FILE}), and export_coreset_repos replaces that folder. Pass "
                f"another local_dir, or remove {str(target)!r}."
            )


# ------------------------------------------------------------------------------ API
def export_coreset_repos(
    coreset_or_scored_dataset,
    local_dir,
    *,
    spec: CoresetHubSpec | None = None,
    model=None,
    processing_class=None,
    model_config: dict | None = None,
    skip_model_files: list[str] | None = None,
    endpoint: str | None = None,
    **options,
) -> ExportedRepos:
    """Write the dataset repo and the model repo of a coreset to disk, as a push would send them.

    No network access: the files are those :func:`~cld_hf.hub.push_coreset_to_hub` commits for
    the same arguments (the same code writes them), byte for byte, so they can be checked,
    archived or uploaded later (``HfApi.upload_folder``). ``local_dir/dataset/`` and
    ``local_dir/model/`` are replaced when a previous export wrote them; anything else in
    ``local_dir`` is left alone.

    Parameters
    ----------
    coreset_or_scored_dataset : datasets.Dataset
        A coreset (has ``sample_index`` and ``cld_score``), exported as is; or a scored dataset
        with ``fraction`` or ``size``, from which the coreset is selected here.
    local_dir : str or path
        Where to write (created when missing).
    spec : CoresetHubSpec, optional
        What the repos hold. Its ``repo_id`` (and ``model_repo_id``) need the namespace: there
        is no token to ask for it.
    model, processing_class, model_config, skip_model_files
        The proxy model and its files, as in :func:`~cld_hf.hub.push_coreset_to_hub`.
    endpoint : str, optional
        The Hub address the card links point to; default ``huggingface_hub.constants.ENDPOINT``
        (``https://huggingface.co`` unless ``HF_ENDPOINT`` is set).
    **options
        Fields of :class:`CoresetHubSpec` (``repo_id=``, ``fraction=``, ``source_dataset=``,
        ...), applied on top of ``spec``. Any other name is a ``TypeError`` listing the fields.

    Returns
    -------
    ExportedRepos
        ``dataset_dir``, ``model_dir`` (``None`` without a model) and the ``summary``.

    Raises
    ------
    ValueError, TypeError
        Bad arguments or data (including a ``sample_index`` that does not index the named
        source), before anything is written.
    FileExistsError
        ``local_dir/dataset`` or ``local_dir/model`` holds files that no export wrote.

    Notes
    -----
    Unlike the push, every process that calls it writes: call it on the main process only when
    several share ``local_dir``.

    Examples
    --------
    >>> import tempfile
    >>> from datasets import Dataset
    >>> scored = Dataset.from_dict({"label": [0, 0, 1, 1], "cld_score": [0.1, 0.9, 0.5, 0.2]})
    >>> tmp = tempfile.TemporaryDirectory()
    >>> out = export_coreset_repos(scored, tmp.name, repo_id="me/toy-cld-50pct", fraction=0.5)
    >>> for path in sorted(out.dataset_dir.rglob("*.*")):
    ...     print(path.relative_to(out.dataset_dir).as_posix())
    README.md
    cld_run.json
    data/train-00000-of-00001.parquet
    indices/train-00000-of-00001.parquet
    >>> out.model_dir is None, out.summary["num_rows"], [b["k"] for b in out.summary["budgets"]]
    (True, 2, [1, 1])
    >>> "| 1 |  | 1 | 2 |" in (out.dataset_dir / "README.md").read_text()  # label, name, k_c, n_c
    True
    >>> tmp.cleanup()
    """
    from huggingface_hub import constants

    spec = build_spec(spec, options, caller="export_coreset_repos")
    check_repo_id("repo_id", spec.repo_id, full=True)
    if spec.model_repo_id is not None:
        check_repo_id("model_repo_id", spec.model_repo_id, full=True)
    _check_model_arguments(spec, model)
    prepared = _prepare(coreset_or_scored_dataset, spec)
    local_dir = Path(local_dir)
    _check_export_dir(local_dir)
    created = not local_dir.exists()
    local_dir.mkdir(parents=True, exist_ok=True)
    try:
        # stage next to the targets, then swap: a failure leaves a previous export as it was
        with tempfile.TemporaryDirectory(prefix=".cld-hf-export-", dir=local_dir) as tmp:
            staged = _stage(prepared, Path(tmp), endpoint=endpoint or constants.ENDPOINT,
                           model=model, processing_class=processing_class,
                           model_config=model_config, skip_model_files=skip_model_files)
            for name in ("dataset", "model"):
                target = local_dir / name
                if target.exists():
                    shutil.rmtree(target)
                if (Path(tmp) / name).is_dir():
                    os.replace(Path(tmp) / name, target)
    except BaseException:
        if created and not any(local_dir.iterdir()):  # leave no empty local_dir behind
            local_dir.rmdir()
        raise
    dataset_dir = local_dir / "dataset"
    model_dir = local_dir / "model" if staged.model_dir is not None else None
    logger.info("Exported the coreset (%d rows) to %s%s", len(prepared.coreset), dataset_dir,
                f" and the proxy model to {model_dir}" if model_dir is not None else "")
    return ExportedRepos(dataset_dir=dataset_dir, model_dir=model_dir, summary=staged.summary)
