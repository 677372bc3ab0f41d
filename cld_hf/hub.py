"""Share a CLD coreset, its scores and the proxy model that scored it on the Hugging Face Hub.

:func:`push_coreset_to_hub` makes **one commit per repo** with every file of that repo (through
``HfApi.create_commit``), so a failed push leaves the repo as it was, and running the same call
again is safe (unchanged files are skipped by the Hub client).

:func:`export_coreset_repos` writes the same two repos to a local folder instead, without any
network access (``local_dir/dataset/`` and ``local_dir/model/``): the push stages its files with
the same code, into a temporary folder, after asking the Hub for the token's namespace.

Dataset repo (``repo_id``)::

    README.md                               dataset card (model_cards/coreset_dataset_card.md)
    cld_run.json                            the summary: method_info + budgets + score statistics
    data/train-00000-of-0000N.parquet       config "default": the coreset rows
    indices/train-00000-of-0000N.parquet    config "indices": sample_index, label, cld_score

The ``default`` config holds every column of the coreset: the source columns, ``sample_index``
(the row index in the scored dataset), the label, ``cld_score`` and, only with
``include_trajectory=True``, ``loss_trajectory``. The ``indices`` config lets someone who already
has the source dataset rebuild the coreset without downloading its rows::

    idx = load_dataset(repo_id, "indices", split="train")
    coreset = source.select(idx["sample_index"])

Both configs, their features and sizes are declared in the card's YAML (``configs`` and
``dataset_info``), as ``Dataset.push_to_hub`` writes them, so ``load_dataset`` restores the exact
features (``ClassLabel`` names, ``float32`` scores, fixed-length trajectories). A re-push removes
stale Parquet shards under ``data/`` and ``indices/``.

Model repo (``model_repo_id``, when ``model`` is given)::

    README.md           model card (model_cards/proxy_model_card.md), links the coreset repo
    config.json         transformers config, or {"cld_hf_format", "class_name", "init_kwargs"...}
    model.safetensors   weights (save_pretrained for transformers models; safetensors.torch
                        .save_model for a plain torch.nn.Module); never a pickle

A re-push removes stale weight files (``*.safetensors``, ``*.bin``, ``*.index.json``).

``method_info`` / ``cld_run.json``
----------------------------------
``method_info`` is a plain JSON-able dict that the training side fills; ``cld-hf push`` reads it
from ``cld_run.json`` next to the saved dataset (``cld-hf score`` and ``cld-hf select`` write that
file). Keys the cards show by name (every other key is listed as is):

- ``proxy_model`` (str): the scoring model, e.g. ``"resnet18, 3x3 stem, no max-pool"``.
- ``epochs`` (int): epochs the proxy model trained.
- ``num_snapshots`` (int): loss snapshots used for scoring (``num_snapshots - 1`` differences);
  ``first`` / ``every`` (int): the snapshot window, when one was used.
- ``record_mode`` (str): how the losses were recorded, e.g. ``"eval-sweep"``.
- ``query_fraction`` (float), ``query_seed`` (int), ``num_query`` / ``num_train`` (int): the
  stratified query hold-out.
- ``command`` (str): the command line that reproduces the scores.
- ``fraction``, ``size``, ``balance``: how a saved coreset was selected (``balance`` defaults the
  argument of the same name when the dataset is already a coreset).
- ``source_dataset``, ``source_revision``, ``source_split`` (str), ``eval_results``
  (``{"accuracy": 0.61}``), ``eval_split`` (str, default ``"test"``), ``license``, ``base_model``,
  ``task`` (str): defaults for the arguments of the same name.

Per-class budgets (``k_c``, and ``n_c`` when the scored dataset is given) and score statistics
are always computed from the data, never taken from ``method_info``.

Several processes
-----------------
Only the main process pushes: under ``torchrun``/``accelerate launch`` (accelerate's
``PartialState`` when it is initialised, else ``torch.distributed``, else the ``RANK`` variable)
every other process returns ``None`` at once, without waiting for the push.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .columns import INDEX_COLUMN, SCORE_COLUMN, TRAJECTORY_COLUMN, find_label_column
from .dataset_adapters import select_coreset

logger = logging.getLogger(__name__)

__all__ = ["push_coreset_to_hub", "export_coreset_repos", "ExportedRepos", "CoresetPushResult",
           "HubPushError"]

INDEX_CONFIG = "indices"
RUN_INFO_FILE = "cld_run.json"
_REPO_ID_RE = re.compile(r"^(?:[A-Za-z0-9][\w.-]*/)?[A-Za-z0-9][\w.-]*$")
_PICKLE_SUFFIXES = {".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt"}
_STALE_WEIGHTS = (".safetensors", ".bin", ".index.json")
_TASK_BY_CLASS_SUFFIX = {
    "ForImageClassification": "image-classification",
    "ForSequenceClassification": "text-classification",
    "ForAudioClassification": "audio-classification",
    "ForTokenClassification": "token-classification",
    "ForVideoClassification": "video-classification",
}


def _task_of(class_name: str) -> str | None:
    return next((task for suffix, task in _TASK_BY_CLASS_SUFFIX.items()
                 if class_name.endswith(suffix)), None)


class HubPushError(RuntimeError):
    """A push the Hub refused or failed: the message says which repo, why, and what to do."""


@dataclass(frozen=True)
class CoresetPushResult:
    """What :func:`push_coreset_to_hub` pushed.

    Attributes
    ----------
    dataset_repo_id : str
        Full ``namespace/name`` of the dataset repo.
    dataset_commit : huggingface_hub.CommitInfo
        Its commit (``.oid``, ``.commit_url``, ``.pr_url`` with ``create_pr=True``).
    model_repo_id, model_commit
        The same for the model repo, ``None`` without a model.
    """

    dataset_repo_id: str
    dataset_commit: Any
    model_repo_id: str | None = None
    model_commit: Any = None


# ------------------------------------------------------------------------------------ checks
def _check_repo_id(name: str, value) -> str:
    if not isinstance(value, str) or not _REPO_ID_RE.match(value) or ".." in value:
        raise ValueError(
            f"{name} == {value!r} is not a Hub repo id; pass 'namespace/name' (or just 'name' "
            f"for your own namespace), letters, digits, '-', '_' and '.' only."
        )
    return value


def _check_json(name: str, value) -> dict:
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


def _is_main_process() -> bool:
    if "accelerate" in sys.modules:
        from accelerate import PartialState

        if PartialState._shared_state:  # initialised by Trainer / Accelerator: trust it
            return PartialState().is_main_process
    if "torch" in sys.modules:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            return dist.get_rank() == 0
    return int(os.environ.get("RANK", "0")) == 0


# ------------------------------------------------------------------------------------ data
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
    feature = coreset.features[label_column]
    names = getattr(feature, "names", None)
    out = []
    for c, k in zip(classes.tolist(), counts.tolist()):
        name = names[c] if names is not None and isinstance(c, int) and 0 <= c < len(names) else ""
        out.append({"label": c, "name": name, "k": int(k), "n": sizes.get(c)})
    return out


def _column_rows(coreset, label_column) -> list[dict]:
    meanings = {
        INDEX_COLUMN: "row index of the sample in the scored source split (`Dataset.select` it)",
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
        rows.append({"name": name, "feature": text.replace("|", "\\|"),
                     "meaning": meanings.get(name, "from the source dataset")})
    return rows


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


# ------------------------------------------------------------------------------------ model
def _unwrap(model):
    try:
        from accelerate.utils import extract_model_from_parallel

        return extract_model_from_parallel(model)
    except ImportError:  # pragma: no cover - accelerate is a dependency
        return getattr(model, "module", model)


def _safetensors_num_parameters(path: Path) -> int:
    """Parameter count from a safetensors header (8-byte length + JSON), without loading."""
    with open(path, "rb") as f:
        header = json.loads(f.read(int.from_bytes(f.read(8), "little")))
    return int(sum(math.prod(v["shape"]) for k, v in header.items() if k != "__metadata__"))


def _copy_model_dir(source: Path, folder: Path, repo_id: str, *, base_model=None) -> dict:
    """Stage a saved model directory (``save_pretrained`` or ``cld-hf``'s plain-module layout)."""
    import shutil

    if not source.is_dir() or not (source / "config.json").is_file():
        raise FileNotFoundError(
            f"model == {str(source)!r} is not a saved model directory (no config.json); pass a "
            f"directory written by save_pretrained, or the model object itself."
        )
    weights = sorted(source.glob("*.safetensors"))
    if not weights:
        raise ValueError(
            f"model == {str(source)!r} holds no *.safetensors weights; cld-hf shares safetensors "
            f"only. Save the model with save_pretrained (safetensors is its default)."
        )
    skipped = []
    for path in sorted(source.iterdir()):
        if not path.is_file() or path.name == "README.md":
            continue
        if path.suffix in _PICKLE_SUFFIXES:
            skipped.append(path.name)
            continue
        shutil.copy2(path, folder / path.name)
    if skipped:
        logger.warning("Not pushing pickle files from %s: %s", source, skipped)
    config = json.loads((source / "config.json").read_text())
    cls = (config.get("architectures") or [config.get("class_name") or "unknown"])[0]
    is_transformers = "model_type" in config or "architectures" in config
    if base_model is None and is_transformers:
        name = str(config.get("_name_or_path") or "")
        if name and _REPO_ID_RE.match(name) and not os.path.exists(name) and name != repo_id:
            base_model = name
    return {
        "library_name": "transformers" if is_transformers else "pytorch",
        "pipeline_tag": _task_of(cls),
        "load_snippet": (f"from transformers import {cls}\n\n"
                         f'model = {cls}.from_pretrained("{repo_id}")') if is_transformers
        else _torch_load_snippet(repo_id, cls, config.get("module", "your code")),
        "architecture": cls,
        "num_parameters": sum(_safetensors_num_parameters(w) for w in weights),
        "base_model": base_model,
    }


def _torch_load_snippet(repo_id: str, cls: str, module: str) -> str:
    return (
        "import json\n\nfrom huggingface_hub import hf_hub_download\n"
        "from safetensors.torch import load_model\n\n"
        f'config = json.load(open(hf_hub_download("{repo_id}", "config.json")))\n'
        f'model = {cls}(**config["init_kwargs"])  # {cls} from {module}\n'
        f'load_model(model, hf_hub_download("{repo_id}", "model.safetensors"))'
    )


def _save_model(model, folder: Path, repo_id: str, *, processing_class=None,
                model_config=None, base_model=None) -> dict:
    """Write the model's files into ``folder``; return the details the model card shows."""
    if isinstance(model, (str, os.PathLike)):
        if processing_class is not None or model_config is not None:
            raise ValueError(
                "processing_class / model_config apply to a model object; a saved model "
                "directory already holds its config and processor files. Drop them."
            )
        return _copy_model_dir(Path(model), folder, repo_id, base_model=base_model)
    import torch

    if not isinstance(model, torch.nn.Module):
        raise TypeError(
            f"model must be a torch.nn.Module (a transformers PreTrainedModel or a plain module) "
            f"or the path of a saved model directory, not {type(model).__name__}."
        )
    model = _unwrap(model)
    cls = type(model).__name__
    num_parameters = int(sum(p.numel() for p in model.parameters()))
    try:
        from transformers import PreTrainedModel
    except ImportError:  # pragma: no cover - transformers is a dependency
        PreTrainedModel = ()
    if isinstance(model, PreTrainedModel) or callable(getattr(model, "save_pretrained", None)):
        if model_config is not None:
            raise ValueError(
                f"model_config is only for a plain torch.nn.Module; {cls} saves its own config "
                f"with save_pretrained. Drop model_config=."
            )
        model.save_pretrained(str(folder))
        if processing_class is not None:
            processing_class.save_pretrained(str(folder))
        is_transformers = isinstance(model, PreTrainedModel)
        if base_model is None and is_transformers:
            name = str(getattr(model.config, "_name_or_path", "") or "")
            if name and _REPO_ID_RE.match(name) and not os.path.exists(name) and name != repo_id:
                base_model = name
        task = _task_of(cls)
        module = "transformers" if is_transformers else type(model).__module__
        details = {
            "library_name": "transformers" if is_transformers else "pytorch",
            "pipeline_tag": task,
            "load_snippet": f'from {module} import {cls}\n\n'
                            f'model = {cls}.from_pretrained("{repo_id}")',
        }
    else:
        from safetensors.torch import save_model

        if processing_class is not None:
            raise ValueError("processing_class needs a model with save_pretrained; drop it.")
        init_kwargs = _check_json("model_config", model_config)
        save_model(model, str(folder / "model.safetensors"), metadata={"format": "pt"})
        config = {"cld_hf_format": "torch-module-safetensors", "class_name": cls,
                  "module": type(model).__module__, "init_kwargs": init_kwargs,
                  "num_parameters": num_parameters}
        (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")
        details = {"library_name": "pytorch", "pipeline_tag": None,
                   "load_snippet": _torch_load_snippet(repo_id, cls, type(model).__module__)}
    pickles = sorted(p.name for p in folder.rglob("*") if p.suffix in _PICKLE_SUFFIXES)
    if pickles:
        raise ValueError(
            f"Saving {cls} wrote pickle files {pickles}; cld-hf shares safetensors only. Save the "
            f"model with safetensors (transformers' save_pretrained does by default)."
        )
    details.update(architecture=cls, num_parameters=num_parameters, base_model=base_model)
    return details


# ------------------------------------------------------------------------------------ Hub calls
def _describe(err) -> str:
    response = getattr(err, "response", None)
    status = getattr(response, "status_code", None)
    server = response.headers.get("X-Error-Message") if response is not None else None
    text = server or str(err).strip().splitlines()[0]
    return f"HTTP {status}: {text}" if status else text


def _hub_error(err, *, what: str, repo_id: str, pushed: list[str]) -> HubPushError:
    """Turn a huggingface_hub error into a HubPushError that names the fix."""
    status = getattr(getattr(err, "response", None), "status_code", None)
    done = (f" Already pushed in this call: {', '.join(pushed)} (running the call again skips "
            f"what did not change).") if pushed else ""
    if type(err).__name__ == "LocalTokenNotFoundError":
        return HubPushError(
            "token: no Hub token found (token=None, HF_TOKEN unset, not logged in). Pass "
            "token='hf_...' with write access, run `hf auth login`, or set HF_TOKEN."
        )
    if status == 401:
        return HubPushError(
            f"token: the Hub did not accept the token while {what} ({_describe(err)}). Pass "
            f"token='hf_...' with write access, run `hf auth login`, or set HF_TOKEN.{done}"
        )
    if status == 403:
        return HubPushError(
            f"token: the token may not write to {repo_id!r} while {what} ({_describe(err)}). Use "
            f"a token with write access to the namespace {repo_id.split('/')[0]!r}, or push to "
            f"your own namespace.{done}"
        )
    if status is not None and status >= 500:
        return HubPushError(
            f"The Hub failed while {what} ({_describe(err)}). Nothing was written to {repo_id!r}: "
            f"each repo gets one commit, all or nothing. Run the same call again.{done}"
        )
    return HubPushError(f"Pushing to {repo_id!r} failed while {what} ({_describe(err)}).{done}")


def _commit(api, repo_id: str, repo_type: str, files: list, *, stale, revision, create_pr,
            commit_message, commit_description, private):
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete

    api.create_repo(repo_id, repo_type=repo_type, private=private, exist_ok=True)
    if revision is not None and revision != "main" and not create_pr:
        api.create_branch(repo_id, branch=revision, repo_type=repo_type, exist_ok=True)
    new_paths = {path for path, _ in files}
    existing = api.list_repo_files(repo_id, repo_type=repo_type, revision=revision)
    operations = [CommitOperationDelete(path_in_repo=p) for p in existing
                  if p not in new_paths and stale(p)]
    operations += [CommitOperationAdd(path_in_repo=p, path_or_fileobj=str(local))
                   for p, local in files]
    return api.create_commit(repo_id, operations, commit_message=commit_message,
                             commit_description=commit_description, repo_type=repo_type,
                             revision=revision, create_pr=create_pr)


# ------------------------------------------------------------------------------------ staging
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
    """

    dataset_dir: Path
    model_dir: Path | None
    summary: dict


@dataclass(frozen=True)
class _Plan:
    """The checked arguments and the coreset, before any repo id is resolved or file written."""

    coreset: Any
    scored: Any
    label_column: str
    method: dict
    model: Any
    processing_class: Any
    model_config: dict | None
    source_dataset: str | None
    source_revision: str | None
    source_split: str
    fraction: float | None
    balance: str
    eval_results: dict
    include_trajectory: bool
    license: str | None
    tags: list
    max_shard_size: int | str


def _prepare(coreset_or_scored_dataset, *, repo_id, model, model_repo_id, processing_class,
             model_config, source_dataset, source_revision, source_split, fraction, size,
             balance, label_column, method_info, eval_results, include_trajectory, license, tags,
             max_shard_size) -> _Plan:
    """Check every argument and select the coreset; nothing is written or sent."""
    import datasets

    if not isinstance(coreset_or_scored_dataset, datasets.Dataset):
        raise TypeError(
            f"coreset_or_scored_dataset must be a datasets.Dataset, not "
            f"{type(coreset_or_scored_dataset).__name__}; pick a split of a DatasetDict, "
            f"e.g. ds['train']."
        )
    _check_repo_id("repo_id", repo_id)
    if (model is None) != (model_repo_id is None):
        got = type(model).__name__ if model is not None else None
        raise ValueError(
            f"Pass model= and model_repo_id= together (got model={got}, "
            f"model_repo_id={model_repo_id!r}): the model repo needs both."
        )
    if model_repo_id is not None:
        _check_repo_id("model_repo_id", model_repo_id)
        if not isinstance(model, (str, os.PathLike)) and not hasattr(model, "state_dict"):
            raise TypeError(
                f"model must be a torch.nn.Module or the path of a saved model directory, not "
                f"{type(model).__name__}."
            )
    method = _check_json("method_info", method_info)
    source_dataset = source_dataset or method.get("source_dataset")
    source_revision = source_revision or method.get("source_revision")
    source_split = source_split or method.get("source_split") or "train"
    balance = balance or method.get("balance") or "equal"
    if balance not in ("equal", "proportional"):
        raise ValueError(f"balance == {balance!r}, must be 'equal' or 'proportional'.")
    eval_results = _check_json("eval_results", eval_results or method.get("eval_results"))
    license = license or method.get("license")
    if source_dataset is not None:
        _check_repo_id("source_dataset", source_dataset)
    for name, value in eval_results.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"eval_results[{name!r}] == {value!r}, must be a number (e.g. 0.61).")
    if eval_results and source_dataset is None:
        raise ValueError(
            f"eval_results == {eval_results!r} needs the dataset they were measured on: pass "
            f"source_dataset='<Hub id of the source dataset>'."
        )

    dataset = coreset_or_scored_dataset
    label_column = find_label_column(dataset.column_names, label_column)
    if SCORE_COLUMN not in dataset.column_names:
        raise ValueError(
            f"Column {SCORE_COLUMN!r} not in the dataset. Current columns in the dataset: "
            f"{dataset.column_names}. Score it first (cld_hf.add_cld_scores or cld-hf score)."
        )
    scored = None
    if fraction is not None or size is not None:
        scored = dataset
        coreset = select_coreset(dataset, fraction=fraction, size=size, label_column=label_column,
                                 balance=balance)
    else:
        if INDEX_COLUMN not in dataset.column_names:
            raise ValueError(
                f"The dataset has no {INDEX_COLUMN!r} column, so it is a scored dataset rather "
                f"than a coreset; pass fraction= (e.g. 0.1) or size= to select the coreset, or "
                f"fraction=1.0 to push every scored row."
            )
        coreset = dataset
    if TRAJECTORY_COLUMN in coreset.column_names and not include_trajectory:
        coreset = coreset.remove_columns(TRAJECTORY_COLUMN)
    elif include_trajectory and TRAJECTORY_COLUMN not in coreset.column_names:
        raise ValueError(
            f"include_trajectory=True but the dataset has no {TRAJECTORY_COLUMN!r} column "
            f"(columns: {coreset.column_names}); score with the trajectory kept, or drop "
            f"include_trajectory."
        )
    if len(coreset) == 0:
        raise ValueError("The coreset is empty: there is nothing to push.")
    return _Plan(coreset=coreset, scored=scored, label_column=label_column, method=method,
                 model=model, processing_class=processing_class, model_config=model_config,
                 source_dataset=source_dataset, source_revision=source_revision,
                 source_split=source_split, fraction=fraction, balance=balance,
                 eval_results=eval_results, include_trajectory=bool(include_trajectory),
                 license=license, tags=list(tags or []), max_shard_size=max_shard_size)


def _summary(plan: _Plan, *, repo_id: str, model_repo_id: str | None, endpoint: str) -> dict:
    """The summary both cards render and ``cld_run.json`` holds (without ``endpoint``)."""
    from . import __version__

    coreset, scored, method = plan.coreset, plan.scored, plan.method
    num_scored = len(scored) if scored is not None else method.get("source_size")
    if plan.fraction is not None:
        fraction = plan.fraction
    elif scored is None and method.get("fraction") is not None:
        fraction = method["fraction"]
    else:
        fraction = len(coreset) / num_scored if num_scored else None
    return {
        "format": "cld-hf-coreset",
        "format_version": 1,
        "repo_id": repo_id,
        "model_repo_id": model_repo_id,
        "endpoint": endpoint,
        "source_dataset": plan.source_dataset,
        "source_revision": plan.source_revision,
        "source_split": plan.source_split,
        "num_rows": len(coreset),
        "num_scored_rows": num_scored,
        "fraction": fraction,
        "balance": plan.balance,
        "label_column": plan.label_column,
        "include_trajectory": plan.include_trajectory,
        "columns": _column_rows(coreset, plan.label_column),
        "budgets": _budgets(coreset, scored, plan.label_column),
        "score_stats": {
            "coreset": _score_stats(_numpy_column(coreset, SCORE_COLUMN)),
            "scored": (_score_stats(_numpy_column(scored, SCORE_COLUMN))
                       if scored is not None else None),
        },
        "method": method,
        "eval_results": plan.eval_results or None,
        "eval_split": method.get("eval_split", "test"),
        "license": plan.license,
        "tags": list(plan.tags),
        "cld_hf_version": __version__,
    }


def _stage(plan: _Plan, root: Path, *, repo_id: str, model_repo_id: str | None,
           endpoint: str) -> ExportedRepos:
    """Write both repos under ``root/dataset`` and ``root/model`` (``root`` must be empty).

    The one implementation behind :func:`export_coreset_repos` and :func:`push_coreset_to_hub`.
    The model goes first: the dataset card shows its architecture and size.
    """
    from .cards import coreset_dataset_card, proxy_model_card

    summary = _summary(plan, repo_id=repo_id, model_repo_id=model_repo_id, endpoint=endpoint)
    model_dir = None
    if plan.model is not None:
        model_dir = root / "model"
        model_dir.mkdir(parents=True)
        details = _save_model(plan.model, model_dir, model_repo_id,
                              processing_class=plan.processing_class,
                              model_config=plan.model_config,
                              base_model=plan.method.get("base_model"))
        summary["model"] = {k: details[k] for k in ("architecture", "num_parameters",
                                                    "library_name", "base_model")}
        proxy_model_card(summary, details).save(model_dir / "README.md")

    coreset = plan.coreset
    index_ds = coreset.select_columns([INDEX_COLUMN, plan.label_column, SCORE_COLUMN])
    data_dir = root / "dataset"
    data_dir.mkdir(parents=True)
    rows_nbytes, rows_dl = _write_parquet_shards(coreset, data_dir, "data", plan.max_shard_size)
    idx_nbytes, idx_dl = _write_parquet_shards(index_ds, data_dir, INDEX_CONFIG,
                                               plan.max_shard_size)
    card_data = _dataset_card_data({"default": (coreset, "data", rows_nbytes, rows_dl),
                                    INDEX_CONFIG: (index_ds, INDEX_CONFIG, idx_nbytes, idx_dl)})
    coreset_dataset_card(summary, card_data=card_data).save(data_dir / "README.md")
    run_info = {k: v for k, v in summary.items() if k != "endpoint"}
    (data_dir / RUN_INFO_FILE).write_text(json.dumps(run_info, indent=2) + "\n")
    return ExportedRepos(dataset_dir=data_dir, model_dir=model_dir, summary=summary)


def _repo_files(folder: Path) -> list[tuple[str, Path]]:
    """``[(path_in_repo, local_path), ...]`` of every file under a staged repo folder."""
    return [(p.relative_to(folder).as_posix(), p)
            for p in sorted(folder.rglob("*")) if p.is_file()]


def _check_full_repo_id(name: str, value):
    _check_repo_id(name, value)
    if "/" not in value:
        raise ValueError(
            f"{name} == {value!r} has no namespace. The exported cards name the repos as given, "
            f"so pass {name}='<your-namespace>/{value}' (push_coreset_to_hub alone fills in the "
            f"token's namespace, as it asks the Hub for it)."
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


# ------------------------------------------------------------------------------------ API
def export_coreset_repos(
    coreset_or_scored_dataset,
    local_dir,
    *,
    repo_id: str,
    model=None,
    model_repo_id: str | None = None,
    processing_class=None,
    model_config: dict | None = None,
    source_dataset: str | None = None,
    source_revision: str | None = None,
    source_split: str | None = None,
    fraction: float | None = None,
    size: int | None = None,
    balance: str | None = None,
    label_column: str | None = None,
    method_info: dict | None = None,
    eval_results: dict | None = None,
    include_trajectory: bool = False,
    license: str | None = None,
    tags: list[str] | None = None,
    max_shard_size: int | str = "500MB",
    endpoint: str | None = None,
) -> ExportedRepos:
    """Write the dataset repo and the model repo of a coreset to disk, as a push would send them.

    No network access: the files are those :func:`push_coreset_to_hub` commits for the same
    arguments (the same code writes them), byte for byte, so they can be checked, archived or
    uploaded later (``HfApi.upload_folder``). ``local_dir/dataset/`` and ``local_dir/model/`` are
    replaced when a previous export wrote them; anything else in ``local_dir`` is left alone.

    Parameters
    ----------
    coreset_or_scored_dataset : datasets.Dataset
        A coreset (has ``sample_index`` and ``cld_score``), exported as is; or a scored dataset
        with ``fraction`` or ``size``, from which the coreset is selected here.
    local_dir : str or path
        Where to write (created when missing).
    repo_id : str
        The dataset repo the cards name, ``"namespace/name"`` (the namespace is required: there
        is no token to ask for it).
    model, model_repo_id, processing_class, model_config
        The proxy model and its repo (``"namespace/name"``), as in :func:`push_coreset_to_hub`.
    source_dataset, source_revision, source_split, fraction, size, balance, label_column, \
method_info, eval_results, include_trajectory, license, tags, max_shard_size
        As in :func:`push_coreset_to_hub`.
    endpoint : str, optional
        The Hub address the card links point to; default ``huggingface_hub.constants.ENDPOINT``
        (``https://huggingface.co`` unless ``HF_ENDPOINT`` is set).

    Returns
    -------
    ExportedRepos
        ``dataset_dir``, ``model_dir`` (``None`` without a model) and the ``summary``.

    Raises
    ------
    ValueError, TypeError
        Bad arguments or data, before anything is written.
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
    >>> out = export_coreset_repos(scored, tmp.name, repo_id="me/toy-cld-50pct", fraction=0.5,
    ...                            source_dataset="me/toy")
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
    import shutil

    from huggingface_hub import constants

    _check_full_repo_id("repo_id", repo_id)
    if model_repo_id is not None:
        _check_full_repo_id("model_repo_id", model_repo_id)
    plan = _prepare(
        coreset_or_scored_dataset, repo_id=repo_id, model=model, model_repo_id=model_repo_id,
        processing_class=processing_class, model_config=model_config,
        source_dataset=source_dataset, source_revision=source_revision,
        source_split=source_split, fraction=fraction, size=size, balance=balance,
        label_column=label_column, method_info=method_info, eval_results=eval_results,
        include_trajectory=include_trajectory, license=license, tags=tags,
        max_shard_size=max_shard_size)
    local_dir = Path(local_dir)
    _check_export_dir(local_dir)
    created = not local_dir.exists()
    local_dir.mkdir(parents=True, exist_ok=True)
    try:
        # stage next to the targets, then swap: a failure leaves a previous export as it was
        with tempfile.TemporaryDirectory(prefix=".cld-hf-export-", dir=local_dir) as tmp:
            staged = _stage(plan, Path(tmp), repo_id=repo_id, model_repo_id=model_repo_id,
                            endpoint=endpoint or constants.ENDPOINT)
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
    logger.info("Exported the coreset (%d rows) to %s%s", len(plan.coreset), dataset_dir,
                f" and the proxy model to {model_dir}" if model_dir is not None else "")
    return ExportedRepos(dataset_dir=dataset_dir, model_dir=model_dir, summary=staged.summary)


def push_coreset_to_hub(
    coreset_or_scored_dataset,
    repo_id: str,
    *,
    model=None,
    model_repo_id: str | None = None,
    processing_class=None,
    model_config: dict | None = None,
    source_dataset: str | None = None,
    source_revision: str | None = None,
    source_split: str | None = None,
    fraction: float | None = None,
    size: int | None = None,
    balance: str | None = None,
    label_column: str | None = None,
    method_info: dict | None = None,
    eval_results: dict | None = None,
    include_trajectory: bool = False,
    license: str | None = None,
    tags: list[str] | None = None,
    private: bool = False,
    token: str | None = None,
    revision: str | None = None,
    create_pr: bool = False,
    commit_message: str | None = None,
    commit_description: str | None = None,
    max_shard_size: int | str = "500MB",
) -> CoresetPushResult | None:
    """Push a CLD coreset (rows + an index-only config), its card and the proxy model to the Hub.

    Parameters
    ----------
    coreset_or_scored_dataset : datasets.Dataset
        A coreset (from :func:`~cld_hf.selection.select_coreset`: has ``sample_index`` and
        ``cld_score``), pushed as is; or a scored dataset (has ``cld_score``) together with
        ``fraction`` or ``size``, from which the coreset is selected here.
    repo_id : str
        Dataset repo, ``"namespace/name"`` (``"name"`` alone: your namespace).
    model : torch.nn.Module or path, optional
        The trained proxy model (``trainer.model``). A transformers model is saved with
        ``save_pretrained``; a plain module as ``model.safetensors`` + ``config.json``. A path
        names a saved model directory, pushed as it is (without pickle files; it must hold
        ``config.json`` and ``*.safetensors``).
    model_repo_id : str, optional
        Model repo; required with ``model``.
    processing_class : optional
        Tokenizer / image processor saved beside a transformers model.
    model_config : dict, optional
        JSON-able constructor arguments of a plain torch module, stored in ``config.json``.
    source_dataset, source_revision, source_split : str, optional
        The Hub dataset (and revision, split; default ``"train"``) that ``sample_index`` indexes.
    fraction, size : optional
        Select the coreset from a scored dataset (see :func:`~cld_hf.selection.class_budgets`).
    balance : {"equal", "proportional"}, optional
        The budget rule (default ``method_info["balance"]``, else ``"equal"``).
    label_column : str, optional
        Found as ``labels``, then ``label``, when not given.
    method_info : dict, optional
        How the scores were made (see "method_info / cld_run.json" in the module docstring).
    eval_results : dict, optional
        Metrics of the proxy model, e.g. ``{"accuracy": 0.61}``, written as ``model-index``.
    include_trajectory : bool, default False
        Also push the ``loss_trajectory`` column.
    license : str, optional
        Card license (e.g. the source dataset's).
    tags : list of str, optional
        Extra card tags (``coreset``, ``cld``, ``data-pruning`` and ``cld-hf`` are always set).
    private, token, revision, create_pr, commit_message, commit_description
        As in ``huggingface_hub.HfApi``. ``revision`` names a branch, created from ``main`` when
        missing; ``create_pr=True`` opens a pull request instead of committing to the branch.
    max_shard_size : int or str, default "500MB"
        Largest Parquet shard.

    Returns
    -------
    CoresetPushResult, or ``None`` on a process other than the main one.

    Raises
    ------
    ValueError, TypeError
        Bad arguments or data, before anything is sent.
    HubPushError
        The Hub refused the token or failed a commit; the message names the repo and the fix.

    See Also
    --------
    export_coreset_repos : the same files, written to a local folder without network access.

    Examples
    --------
    >>> from datasets import Dataset
    >>> scored = Dataset.from_dict({"label": [0, 0, 1, 1], "cld_score": [0.1, 0.9, 0.5, 0.2]})
    >>> result = push_coreset_to_hub(scored, "me/toy-cld-50pct", fraction=0.5,
    ...                              source_dataset="me/toy")          # doctest: +SKIP
    >>> result.dataset_commit.commit_url                               # doctest: +SKIP
    'https://huggingface.co/datasets/me/toy-cld-50pct/commit/...'
    """
    # ---- arguments, all checked before anything is sent
    plan = _prepare(
        coreset_or_scored_dataset, repo_id=repo_id, model=model, model_repo_id=model_repo_id,
        processing_class=processing_class, model_config=model_config,
        source_dataset=source_dataset, source_revision=source_revision,
        source_split=source_split, fraction=fraction, size=size, balance=balance,
        label_column=label_column, method_info=method_info, eval_results=eval_results,
        include_trajectory=include_trajectory, license=license, tags=tags,
        max_shard_size=max_shard_size)

    if not _is_main_process():
        logger.debug("Not the main process: leaving the push to process 0.")
        return None

    from huggingface_hub import HfApi, constants
    from huggingface_hub.errors import HfHubHTTPError, LocalTokenNotFoundError

    from . import __version__

    api = HfApi(token=token, library_name="cld-hf", library_version=__version__)
    pushed: list[str] = []
    try:
        user = api.whoami()["name"]
    except (HfHubHTTPError, LocalTokenNotFoundError) as err:
        raise _hub_error(err, what="checking the token", repo_id=repo_id, pushed=pushed) from err
    repo_id = repo_id if "/" in repo_id else f"{user}/{repo_id}"
    if model_repo_id is not None and "/" not in model_repo_id:
        model_repo_id = f"{user}/{model_repo_id}"

    with tempfile.TemporaryDirectory(prefix="cld-hf-push-") as tmp:
        # ---- stage every file locally first: a bad model or card fails before any upload
        staged = _stage(plan, Path(tmp), repo_id=repo_id, model_repo_id=model_repo_id,
                        endpoint=api.endpoint or constants.ENDPOINT)

        # ---- one commit per repo: the model first, so the dataset card's link resolves
        common = {"revision": revision, "create_pr": create_pr, "private": private,
                  "commit_description": commit_description}
        model_commit = None
        if staged.model_dir is not None:
            what = f"pushing the model to {model_repo_id!r}"
            try:
                model_commit = _commit(
                    api, model_repo_id, "model", _repo_files(staged.model_dir),
                    stale=lambda p: p.endswith(_STALE_WEIGHTS),
                    commit_message=commit_message or f"Add CLD proxy model for {repo_id}",
                    **common)
            except (HfHubHTTPError, LocalTokenNotFoundError) as err:
                raise _hub_error(err, what=what, repo_id=model_repo_id, pushed=pushed) from err
            pushed.append(f"model {model_repo_id} ({model_commit.oid[:8]})")
            logger.info("Pushed the proxy model to %s", model_commit.commit_url)
        num_rows = len(plan.coreset)
        try:
            dataset_commit = _commit(
                api, repo_id, "dataset", _repo_files(staged.dataset_dir),
                stale=lambda p: p.startswith(("data/", f"{INDEX_CONFIG}/")),
                commit_message=commit_message or (
                    f"Add CLD coreset: {num_rows} rows"
                    + (f" of {plan.source_dataset}" if plan.source_dataset else "")),
                **common)
        except (HfHubHTTPError, LocalTokenNotFoundError) as err:
            raise _hub_error(err, what=f"pushing the coreset to {repo_id!r}", repo_id=repo_id,
                             pushed=pushed) from err
    logger.info("Pushed the coreset (%d rows) to %s", num_rows, dataset_commit.commit_url)
    return CoresetPushResult(dataset_repo_id=repo_id, dataset_commit=dataset_commit,
                             model_repo_id=model_repo_id, model_commit=model_commit)
