"""Dataset and model cards for a pushed coreset, from the Jinja templates in ``model_cards/``.

Both cards are built from one *summary*: the plain, JSON-able dict that
:func:`cld_hf.hub.push_coreset_to_hub` (and :func:`cld_hf.hub.export_coreset_repos`, offline)
also writes to the dataset repo as ``cld_run.json``.
The dataset card renders ``model_cards/coreset_dataset_card.md`` through
``huggingface_hub.DatasetCard.from_template``, the model card ``model_cards/proxy_model_card.md``
through ``ModelCard.from_template``; the YAML front matter is the card data
(``{{ card_data }}``), everything else is template text.

Templates are looked up in the top-level ``model_cards/`` directory of a source checkout or an
editable install, then among the installed files of the ``cld-hf`` distribution (``pyproject.toml``
installs them as data files under ``share/cld-hf/model_cards``).

Summary keys read here (all optional unless marked): ``repo_id`` (required), ``model_repo_id``,
``endpoint``, ``source_dataset``, ``source_revision``, ``source_split``, ``num_rows`` (required),
``num_scored_rows``, ``fraction``, ``balance``, ``label_column``, ``columns`` (``[{name, feature,
meaning}]``), ``budgets`` (``[{label, name, k, n}]``), ``score_stats`` (``{"coreset": {...},
"scored": {...}}``), ``method`` (the ``method_info`` dict), ``eval_results``, ``eval_split``,
``license``, ``tags``, ``cld_hf_version``.
"""

from __future__ import annotations

import importlib.metadata
import logging
from pathlib import Path

logger = logging.getLogger(__name__)

__all__ = [
    "DATASET_TEMPLATE",
    "MODEL_TEMPLATE",
    "CITATION_BIBTEX",
    "find_template",
    "size_category",
    "coreset_dataset_card",
    "proxy_model_card",
]

DATASET_TEMPLATE = "coreset_dataset_card.md"
MODEL_TEMPLATE = "proxy_model_card.md"
CLD_HF_URL = "https://pypi.org/project/cld-hf/"
CARD_TAGS = ["coreset", "cld", "data-pruning", "cld-hf"]

# Title and venue only: the seed text names no authors, and we invent none.
CITATION_BIBTEX = """@article{cld_coresets_from_trajectories_2025,
  title   = {Coresets from Trajectories: Selecting Data via Correlation of Loss Differences},
  journal = {Transactions on Machine Learning Research},
  year    = {2025}
}"""

_BALANCE_TEXT = {
    "equal": "equal: the same `k` for every class (the paper's rule); a class smaller than its "
    "share gives all its samples and the rest is shared equally",
    "proportional": "proportional: `k_c` follows the class ratios of the scored set "
    "(largest remainder)",
}

_SIZE_CATEGORIES = [  # (upper bound, Hub size_categories value)
    (1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"),
    (10_000_000, "1M<n<10M"), (100_000_000, "10M<n<100M"), (1_000_000_000, "100M<n<1B"),
    (10_000_000_000, "1B<n<10B"), (100_000_000_000, "10B<n<100B"), (1_000_000_000_000, "100B<n<1T"),
]


def find_template(name: str) -> Path:
    """Path of a card template: ``model_cards/<name>`` of the checkout, else the installed copy.

    Examples
    --------
    >>> find_template("coreset_dataset_card.md").name
    'coreset_dataset_card.md'
    """
    local = Path(__file__).resolve().parent.parent / "model_cards" / name
    if local.is_file():
        return local
    try:
        for file in importlib.metadata.files("cld-hf") or []:
            if file.name == name and "model_cards" in file.parts:
                path = Path(file.locate()).resolve()
                if path.is_file():
                    return path
    except importlib.metadata.PackageNotFoundError:
        pass
    raise FileNotFoundError(
        f"Card template {name!r} not found: looked in {local.parent} and among the installed files "
        f"of cld-hf. Reinstall cld-hf (pip install --force-reinstall cld-hf) or run from a "
        f"checkout."
    )


def size_category(num_rows: int) -> str:
    """The Hub's ``size_categories`` value for a number of rows.

    Examples
    --------
    >>> size_category(999), size_category(1000), size_category(45_000)
    ('n<1K', '1K<n<10K', '10K<n<100K')
    """
    for bound, name in _SIZE_CATEGORIES:
        if num_rows < bound:
            return name
    return "n>1T"


def _hub_url(endpoint: str | None, repo_type: str, repo_id: str) -> str:
    from huggingface_hub import constants

    base = (endpoint or constants.ENDPOINT).rstrip("/")
    return f"{base}/{'datasets/' if repo_type == 'dataset' else ''}{repo_id}"


def _link(endpoint, repo_type, repo_id) -> str | None:
    return f"[{repo_id}]({_hub_url(endpoint, repo_type, repo_id)})" if repo_id else None


def _fmt(value) -> str:
    """A table cell: numbers short, None empty (the template shows [More Information Needed])."""
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(_fmt(v) for v in value)
    return str(value).replace("|", "\\|").replace("\n", " ")


def _framework_versions() -> dict[str, str]:
    out = {}
    for dist in ("cld-hf", "transformers", "datasets", "huggingface_hub", "torch", "accelerate"):
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return out


# Keys of method_info shown in the parameters table, in this order, with their labels.
_METHOD_ROWS = [
    ("proxy_model", "scoring (proxy) model"),
    ("epochs", "proxy training epochs"),
    ("num_snapshots", "loss snapshots used"),
    ("first", "first snapshots kept (window)"),
    ("every", "every n-th snapshot kept"),
    ("record_mode", "how losses were recorded"),
    ("query_fraction", "query (validation) fraction per class"),
    ("query_seed", "query split seed"),
    ("num_query", "query samples"),
    ("num_train", "scored training samples"),
    ("missing_query_class", "class without query samples"),
    ("streaming", "streaming scorer"),
]
_ALWAYS_SHOWN = {"proxy_model", "epochs", "num_snapshots", "query_fraction", "query_seed"}
# Keys that are rendered elsewhere (or recomputed from the data), not as "other" rows.
_HANDLED_KEYS = {k for k, _ in _METHOD_ROWS} | {
    "command", "fraction", "size", "balance", "budgets", "source_size", "source_dataset",
    "source_revision", "source_split", "eval_results", "eval_split", "license", "base_model",
    "task", "tags",
}


def _parameter_rows(summary: dict) -> list[dict]:
    method = summary.get("method") or {}
    rows = []
    for key, label in _METHOD_ROWS:
        value = method.get(key)
        if key == "proxy_model" and value is None:
            value = (summary.get("model") or {}).get("architecture")
        if key in method or value is not None or key in _ALWAYS_SHOWN:
            rows.append({"name": label, "value": _fmt(value)})
        if key == "num_snapshots" and isinstance(value, int) and value > 0:
            rows.append({"name": "loss differences per sample", "value": _fmt(value - 1)})
    balance = summary.get("balance")
    rows += [
        {"name": "coreset fraction", "value": _fmt(summary.get("fraction"))},
        {"name": "coreset size", "value": _fmt(summary.get("num_rows"))},
        {"name": "balance rule", "value": _BALANCE_TEXT.get(balance, _fmt(balance))},
        {"name": "label column", "value": _fmt(summary.get("label_column"))},
        {"name": "source dataset", "value": _fmt(summary.get("source_dataset"))},
        {"name": "source split", "value": _fmt(summary.get("source_split"))},
        {"name": "source revision", "value": _fmt(summary.get("source_revision"))},
    ]
    for key in sorted(set(method) - _HANDLED_KEYS):
        rows.append({"name": f"`{key}`", "value": _fmt(method[key])})
    return rows


def _stats_rows(summary: dict) -> list[dict]:
    rows = []
    for name, stats in (summary.get("score_stats") or {}).items():
        if stats:
            rows.append({"set": name, **{k: _fmt(v) for k, v in stats.items()}})
    return rows


def _fraction_text(summary: dict) -> str | None:
    fraction = summary.get("fraction")
    return f"fraction {fraction:.4g}" if isinstance(fraction, (int, float)) else None


def coreset_dataset_card(summary: dict, *, card_data=None):
    """The dataset card (``huggingface_hub.DatasetCard``) of a coreset, from its summary.

    Parameters
    ----------
    summary : dict
        See the module docstring; ``repo_id`` and ``num_rows`` are required.
    card_data : huggingface_hub.DatasetCardData, optional
        Card data to extend (e.g. holding the ``configs`` and ``dataset_info`` that ``datasets``
        reads). ``tags``, ``size_categories``, ``source_datasets``, ``license`` and
        ``pretty_name`` are set from the summary.

    Examples
    --------
    >>> card = coreset_dataset_card({"repo_id": "me/c", "num_rows": 3, "balance": "equal",
    ...                              "source_dataset": "cifar100", "label_column": "label"})
    >>> card.data.size_categories, card.data.source_datasets, "coreset" in card.data.tags
    (['n<1K'], ['extended|cifar100'], True)
    >>> "Correlation of Loss Differences" in card.text
    True
    """
    from huggingface_hub import DatasetCard, DatasetCardData

    card_data = card_data if card_data is not None else DatasetCardData()
    method = summary.get("method") or {}
    tags = list(dict.fromkeys([*CARD_TAGS, *(summary.get("tags") or [])]))
    card_data.tags = tags
    card_data.size_categories = [size_category(int(summary["num_rows"]))]
    if summary.get("source_dataset"):
        card_data.source_datasets = [f"extended|{summary['source_dataset']}"]
    if summary.get("license"):
        card_data.license = summary["license"]
    card_data.pretty_name = summary.get("pretty_name") or (
        f"CLD coreset of {summary['source_dataset']}" if summary.get("source_dataset")
        else "CLD coreset"
    )
    endpoint = summary.get("endpoint")
    budgets = summary.get("budgets") or []
    columns = summary.get("columns") or []
    return DatasetCard.from_template(
        card_data,
        template_path=str(find_template(DATASET_TEMPLATE)),
        repo_id=summary["repo_id"],
        source_dataset=summary.get("source_dataset"),
        source_revision=summary.get("source_revision"),
        source_split=summary.get("source_split"),
        source_link=_link(endpoint, "dataset", summary.get("source_dataset")),
        model_link=(_link(endpoint, "model", summary.get("model_repo_id"))
                    or method.get("proxy_model")),
        num_rows=summary["num_rows"],
        num_scored_rows=summary.get("num_scored_rows"),
        fraction_text=_fraction_text(summary),
        label_column=summary.get("label_column") or "label",
        row_columns=", ".join(f"`{c['name']}`" for c in columns) or "all columns",
        columns=columns,
        parameters=_parameter_rows(summary),
        num_classes=len(budgets),
        budgets=budgets,
        has_class_sizes=any(b.get("n") is not None for b in budgets),
        score_stats=_stats_rows(summary),
        command=method.get("command"),
        citation_bibtex=CITATION_BIBTEX,
        cld_hf_url=CLD_HF_URL,
        cld_hf_version=summary.get("cld_hf_version", ""),
    )


def proxy_model_card(summary: dict, model_details: dict):
    """The model card (``huggingface_hub.ModelCard``) of the proxy model that scored a coreset.

    Parameters
    ----------
    summary : dict
        The coreset's summary (see the module docstring); ``model_repo_id`` is required.
    model_details : dict
        ``library_name`` ("transformers" or "pytorch"), ``architecture``, ``num_parameters``,
        ``base_model`` (a Hub id or None), ``pipeline_tag`` (or None), ``load_snippet``.

    Returns
    -------
    huggingface_hub.ModelCard whose YAML lists the source dataset and the coreset repo under
    ``datasets`` (so the Hub links the two repos both ways) and, when ``summary["eval_results"]``
    holds accuracies, a ``model-index``.

    Examples
    --------
    >>> card = proxy_model_card(
    ...     {"repo_id": "me/core", "model_repo_id": "me/proxy", "num_rows": 3,
    ...      "source_dataset": "cifar100", "eval_results": {"accuracy": 0.5}},
    ...     {"library_name": "transformers", "architecture": "ResNetForImageClassification",
    ...      "num_parameters": 10, "base_model": None, "pipeline_tag": "image-classification",
    ...      "load_snippet": "..."})
    >>> card.data.datasets, card.data.eval_results[0].metric_value
    (['cifar100', 'me/core'], 0.5)
    """
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    method = summary.get("method") or {}
    model_repo_id = summary["model_repo_id"]
    source = summary.get("source_dataset")
    eval_split = summary.get("eval_split") or "test"
    eval_results = summary.get("eval_results") or {}
    if eval_results and not source:
        raise ValueError(
            f"eval_results == {eval_results!r} needs the dataset they were measured on: pass "
            f"source_dataset='<Hub id of the source dataset>'."
        )
    task = model_details.get("pipeline_tag") or method.get("task") or "image-classification"
    results = [
        EvalResult(task_type=task, dataset_type=source, dataset_name=source,
                   dataset_split=eval_split, metric_type=name, metric_name=name,
                   metric_value=float(value))
        for name, value in eval_results.items()
    ]
    tags = list(dict.fromkeys([*CARD_TAGS, "proxy-model", *(summary.get("tags") or [])]))
    if model_details.get("library_name") == "pytorch":
        tags.append("safetensors")
    card_data = ModelCardData(
        model_name=model_repo_id.split("/")[-1],
        library_name=model_details.get("library_name"),
        tags=tags,
        datasets=[d for d in (source, summary["repo_id"]) if d],
        base_model=model_details.get("base_model"),
        license=summary.get("license"),
        pipeline_tag=model_details.get("pipeline_tag"),
        eval_results=results or None,
    )
    endpoint = summary.get("endpoint")
    base = model_details.get("base_model")
    return ModelCard.from_template(
        card_data,
        template_path=str(find_template(MODEL_TEMPLATE)),
        model_title=f"CLD proxy model: {model_repo_id.split('/')[-1]}",
        dataset_link=_link(endpoint, "dataset", summary["repo_id"]),
        source_link=_link(endpoint, "dataset", source),
        source_split=summary.get("source_split"),
        source_revision=summary.get("source_revision"),
        architecture=model_details.get("architecture"),
        num_parameters=f"{int(model_details.get('num_parameters') or 0):,}",
        base_model_text=_link(endpoint, "model", base),
        load_snippet=model_details.get("load_snippet", ""),
        parameters=_parameter_rows(summary),
        eval_rows=[{"metric": n, "split": eval_split, "value": _fmt(float(v))}
                   for n, v in eval_results.items()],
        command=method.get("command"),
        citation_bibtex=CITATION_BIBTEX,
        framework_versions=_framework_versions(),
    )
