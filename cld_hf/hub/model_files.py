"""The model repo's files: the proxy model saved (or a saved folder copied) without pickles.

Only an **allow list** of files goes to the Hub (:data:`ALLOWED_MODEL_FILES`): safetensors
weights and their index, and the JSON / text files of configs, tokenizers and processors, each
checked to be of its format (JSON parses, a safetensors header parses, text is UTF-8, a
sentencepiece model is neither a pickle nor a zip). The by-products of a ``Trainer``
checkpoint (:data:`SKIPPED_BY_DEFAULT`: ``training_args.bin``, ``optimizer.pt``, ...), the old
``README.md`` (replaced by the card), dot files and sub-folders are left out; any other file
is an error that names it and the fix (convert it, or leave it out with ``skip_model_files``).
"""

from __future__ import annotations

import fnmatch
import json
import logging
import math
import os
import shutil
from pathlib import Path

from .._validation import check_json
from ..fileio import atomic_write_json

logger = logging.getLogger(__name__)

__all__ = ["ALLOWED_MODEL_FILES", "SKIPPED_BY_DEFAULT", "check_model_files", "save_model_files"]

ALLOWED_MODEL_FILES = (
    # weights: safetensors only, and the index of sharded weights
    "*.safetensors", "*.safetensors.index.json",
    # configs
    "config.json", "generation_config.json", "adapter_config.json",
    "preprocessor_config.json", "processor_config.json", "image_processor_config.json",
    "video_preprocessor_config.json", "feature_extractor_config.json",
    # tokenizers
    "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
    "vocab.json", "vocab.txt", "merges.txt", "chat_template.jinja", "chat_template.json",
    "tokenizer.model", "spiece.model", "sentencepiece.model", "sentencepiece.bpe.model",
)
"""File names (``fnmatch`` patterns) a model repo may get; everything else stays behind."""

SKIPPED_BY_DEFAULT = (
    "README.md",  # replaced by the model card
    "training_args.bin", "optimizer.pt", "scheduler.pt", "scaler.pt", "rng_state.pth",
    "rng_state_*.pth", "trainer_state.json",  # Trainer checkpoint state, not the model
)
"""File names left out of a saved model folder without an error (logged)."""

_TASK_BY_CLASS_SUFFIX = {
    "ForImageClassification": "image-classification",
    "ForSequenceClassification": "text-classification",
    "ForAudioClassification": "audio-classification",
    "ForTokenClassification": "token-classification",
    "ForVideoClassification": "video-classification",
}
_PICKLE_OR_ZIP = (b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05", b"PK\x03\x04")


def _task_of(class_name: str) -> str | None:
    return next((task for suffix, task in _TASK_BY_CLASS_SUFFIX.items()
                 if class_name.endswith(suffix)), None)


def _matches(name: str, patterns) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


def _format_problem(path: Path) -> str | None:
    """Why an allowed name does not hold what its name says, or ``None``."""
    name = path.name
    try:
        if name.endswith(".safetensors"):
            _safetensors_num_parameters(path)
        elif name.endswith(".json"):
            json.loads(path.read_text(encoding="utf-8"))
        elif name.endswith((".txt", ".jinja")):
            path.read_text(encoding="utf-8")
        elif name.endswith(".model"):
            with open(path, "rb") as f:
                if f.read(4).startswith(_PICKLE_OR_ZIP):
                    return "a pickle or zip archive, not a sentencepiece model"
    except (OSError, ValueError, UnicodeDecodeError, KeyError, TypeError) as err:
        return f"not a valid {path.suffix} file ({type(err).__name__})"
    return None


def check_model_files(folder, *, skip_model_files=None) -> list[str]:
    """The files of a saved model folder that go to the Hub; an error for any that may not.

    Parameters
    ----------
    folder : str or path
        A folder written by ``save_pretrained`` (or cld-hf's plain-module layout).
    skip_model_files : list of str, optional
        More file names (``fnmatch`` patterns, e.g. ``"*.pkl"``) to leave out, besides
        :data:`SKIPPED_BY_DEFAULT`.

    Returns
    -------
    list of str
        The names to push, sorted.

    Raises
    ------
    ValueError
        A file that is neither allowed nor skipped (named, with the fix), or an allowed name
        whose content is not of its format.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> d = Path(tempfile.mkdtemp())
    >>> _ = (d / "config.json").write_text("{}")
    >>> _ = (d / "training_args.bin").write_bytes(b"\\x80\\x04")   # skipped by default
    >>> check_model_files(d)
    ['config.json']
    >>> _ = (d / "model.joblib").write_bytes(b"\\x80\\x04")
    >>> check_model_files(d)
    Traceback (most recent call last):
    ...
    ValueError: model == '...' holds files cld-hf does not push: ['model.joblib']. ...
    >>> check_model_files(d, skip_model_files=["*.joblib"])
    ['config.json']
    """
    folder = Path(folder)
    skip = list(SKIPPED_BY_DEFAULT)
    if skip_model_files is not None:
        if isinstance(skip_model_files, str) or not all(
                isinstance(p, str) for p in skip_model_files):
            raise TypeError(f"skip_model_files == {skip_model_files!r}, must be a list of file "
                            f"names or patterns, e.g. ['*.pkl'].")
        skip += list(skip_model_files)
    keep, refused, bad_format, skipped = [], [], [], []
    for path in sorted(folder.iterdir()):
        if path.is_dir() or path.name.startswith(".") or _matches(path.name, skip):
            skipped.append(path.name + ("/" if path.is_dir() else ""))
        elif not _matches(path.name, ALLOWED_MODEL_FILES):
            refused.append(path.name)
        elif (problem := _format_problem(path)) is not None:
            bad_format.append(f"{path.name} ({problem})")
        else:
            keep.append(path.name)
    if refused:
        raise ValueError(
            f"model == {str(folder)!r} holds files cld-hf does not push: {refused}. Only "
            f"safetensors weights (and their index) and config / tokenizer / processor files "
            f"({', '.join(ALLOWED_MODEL_FILES[2:8])}, ...) go to the Hub, never pickles or "
            f"other formats that can run code when loaded. Convert weights to safetensors "
            f"(save_pretrained saves them by default), or leave the files out with "
            f"skip_model_files={refused!r} (cld-hf push: --skip-model-file NAME)."
        )
    if bad_format:
        raise ValueError(
            f"model == {str(folder)!r} holds files whose content does not match their name: "
            f"{bad_format}. Save the model again (save_pretrained), or leave them out with "
            f"skip_model_files=[...]."
        )
    if skipped:
        logger.info("Not pushing from %s: %s", folder, skipped)
    return keep


def _safetensors_num_parameters(path: Path) -> int:
    """Parameter count from a safetensors header (8-byte length + JSON), without loading."""
    with open(path, "rb") as f:
        length = int.from_bytes(f.read(8), "little")
        if not 0 < length <= 100 << 20:
            raise ValueError(f"bad safetensors header length {length}")
        header = json.loads(f.read(length))
    return int(sum(math.prod(v["shape"]) for k, v in header.items() if k != "__metadata__"))


def _unwrap(model):
    from accelerate.utils import extract_model_from_parallel

    return extract_model_from_parallel(model)


def _hub_model_name(name, repo_id: str) -> str | None:
    """``name`` (a config's ``_name_or_path``) when it is a Hub model id, else ``None``."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    name = str(name or "")
    if not name or name == repo_id or os.path.exists(name):
        return None
    try:
        validate_repo_id(name)
    except HFValidationError:
        return None
    return name


def _torch_load_snippet(repo_id: str, cls: str, module: str) -> str:
    return (
        "import json\n\nfrom huggingface_hub import hf_hub_download\n"
        "from safetensors.torch import load_model\n\n"
        f'config = json.load(open(hf_hub_download("{repo_id}", "config.json")))\n'
        f'model = {cls}(**config["init_kwargs"])  # {cls} from {module}\n'
        f'load_model(model, hf_hub_download("{repo_id}", "model.safetensors"))'
    )


def _copy_model_dir(source: Path, folder: Path, repo_id: str, *, base_model, skip) -> dict:
    if not source.is_dir() or not (source / "config.json").is_file():
        raise FileNotFoundError(
            f"model == {str(source)!r} is not a saved model directory (no config.json); pass a "
            f"directory written by save_pretrained, or the model object itself."
        )
    names = check_model_files(source, skip_model_files=skip)
    weights = [n for n in names if n.endswith(".safetensors")]
    if not weights:
        raise ValueError(
            f"model == {str(source)!r} holds no *.safetensors weights; cld-hf shares safetensors "
            f"only. Save the model with save_pretrained (safetensors is its default)."
        )
    for name in names:
        shutil.copy2(source / name, folder / name)
    config = json.loads((source / "config.json").read_text())
    cls = str((config.get("architectures") or [config.get("class_name") or "unknown"])[0])
    is_transformers = "model_type" in config or "architectures" in config
    if base_model is None and is_transformers:
        base_model = _hub_model_name(config.get("_name_or_path"), repo_id)
    return {
        "library_name": "transformers" if is_transformers else "pytorch",
        "pipeline_tag": _task_of(cls),
        "load_snippet": (f"from transformers import {cls}\n\n"
                         f'model = {cls}.from_pretrained("{repo_id}")') if is_transformers
        else _torch_load_snippet(repo_id, cls, str(config.get("module", "your code"))),
        "architecture": cls,
        "num_parameters": sum(_safetensors_num_parameters(folder / w) for w in weights),
        "base_model": base_model,
    }


def save_model_files(model, folder, repo_id: str, *, processing_class=None, model_config=None,
                     base_model=None, skip_model_files=None) -> dict:
    """Write the model repo's files (without the card) into ``folder``; return what the card shows.

    Parameters
    ----------
    model : torch.nn.Module or path
        A transformers model (``save_pretrained``), a plain module (``model.safetensors`` +
        ``config.json`` holding ``model_config``), or a saved model folder, copied through the
        allow list (:func:`check_model_files`).
    folder : str or path
        An existing, empty folder.
    repo_id : str
        The model repo, for the load snippet.
    processing_class, model_config, base_model, skip_model_files
        As in :func:`cld_hf.hub.push_coreset_to_hub`.

    Returns
    -------
    dict
        ``library_name``, ``pipeline_tag``, ``load_snippet``, ``architecture``,
        ``num_parameters``, ``base_model``.

    Examples
    --------
    >>> import tempfile, torch
    >>> d = save_model_files(torch.nn.Linear(2, 1), tempfile.mkdtemp(), "me/proxy")
    >>> d["architecture"], d["num_parameters"], d["library_name"]
    ('Linear', 3, 'pytorch')
    """
    folder = Path(folder)
    if isinstance(model, (str, os.PathLike)):
        if processing_class is not None or model_config is not None:
            raise ValueError(
                "processing_class / model_config apply to a model object; a saved model "
                "directory already holds its config and processor files. Drop them."
            )
        return _copy_model_dir(Path(model), folder, repo_id, base_model=base_model,
                               skip=skip_model_files)
    import torch

    if not isinstance(model, torch.nn.Module):
        raise TypeError(
            f"model must be a torch.nn.Module (a transformers PreTrainedModel or a plain module) "
            f"or the path of a saved model directory, not {type(model).__name__}."
        )
    model = _unwrap(model)
    cls = type(model).__name__
    num_parameters = int(sum(p.numel() for p in model.parameters()))
    from transformers import PreTrainedModel

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
            base_model = _hub_model_name(getattr(model.config, "_name_or_path", ""), repo_id)
        module = "transformers" if is_transformers else type(model).__module__
        details = {
            "library_name": "transformers" if is_transformers else "pytorch",
            "pipeline_tag": _task_of(cls),
            "load_snippet": f'from {module} import {cls}\n\n'
                            f'model = {cls}.from_pretrained("{repo_id}")',
        }
    else:
        from safetensors.torch import save_model

        if processing_class is not None:
            raise ValueError("processing_class needs a model with save_pretrained; drop it.")
        init_kwargs = check_json("model_config", model_config)
        save_model(model, str(folder / "model.safetensors"), metadata={"format": "pt"})
        config = {"cld_hf_format": "torch-module-safetensors", "class_name": cls,
                  "module": type(model).__module__, "init_kwargs": init_kwargs,
                  "num_parameters": num_parameters}
        atomic_write_json(folder / "config.json", config)
        details = {"library_name": "pytorch", "pipeline_tag": None,
                   "load_snippet": _torch_load_snippet(repo_id, cls, type(model).__module__)}
    keep = set(check_model_files(folder, skip_model_files=skip_model_files))
    for path in folder.iterdir():  # what save_pretrained wrote besides the allowed files
        if path.name not in keep:
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    details.update(architecture=cls, num_parameters=num_parameters, base_model=base_model)
    return details
