"""Dataset and model cards for a shared coreset, from the Jinja templates in ``model_cards/``.

Both cards are built from one *summary*: the plain, JSON-able dict that
:func:`cld_hf.hub.push_coreset_to_hub` (and :func:`cld_hf.hub.export_coreset_repos`, offline)
also writes to the dataset repo as ``cld_run.json``. The dataset card renders
``model_cards/coreset_dataset_card.md`` through ``huggingface_hub.DatasetCard.from_template``,
the model card ``model_cards/proxy_model_card.md`` through ``ModelCard.from_template``; the YAML
front matter is the card data (``{{ card_data }}``), everything else is template text.

Nothing user-given reaches the Markdown raw: text and table cells go through :func:`md_text`
(HTML ``<``, ``>``, ``&`` escaped, ``|`` escaped, one line), inline code through :func:`md_code`,
code blocks through :func:`md_fence` (a fence longer than any backtick run of the code). A value
the summary does not hold is left out (its line, row or section), never a placeholder.

Templates are looked up in the top-level ``model_cards/`` directory of a source checkout or an
editable install, then among the installed files of the ``cld-hf`` distribution (``pyproject.toml``
installs them as data files under ``share/cld-hf/model_cards``).

Summary keys read here (all optional unless marked): ``repo_id`` (required), ``model_repo_id``,
``endpoint``, ``source_dataset``, ``source_revision``, ``source_split``, ``index_source`` (the
``sample_index`` record: ``name``, ``split``, ``num_rows``, ``fingerprint``), ``num_rows``
(required), ``num_scored_rows``, ``fraction``, ``balance``, ``label_column``, ``columns``
(``[{name, feature, meaning}]``), ``budgets`` (``[{label, name, k, n}]``), ``score_stats``
(``{"coreset": {...}, "scored": {...}}``), ``method`` (the ``method_info`` dict),
``eval_results``, ``eval_split``, ``license``, ``tags``, ``model``, ``cld_hf_version``.
"""

from __future__ import annotations

import html
import importlib.metadata
import json
import logging
import re
from pathlib import Path

logger = logging.getLogger(__name__)

__all__ = [
    "DATASET_TEMPLATE",
    "MODEL_TEMPLATE",
    "CITATION_BIBTEX",
    "find_template",
    "size_category",
    "md_text",
    "md_code",
    "md_fence",
    "rebuild_snippet",
    "coreset_dataset_card",
    "proxy_model_card",
]

DATASET_TEMPLATE = "coreset_dataset_card.md"
MODEL_TEMPLATE = "proxy_model_card.md"
CLD_HF_URL = "https://pypi.org/project/cld-hf/"
CARD_TAGS = ["coreset", "cld", "data-pruning", "cld-hf"]
PAPER_URL = "https://arxiv.org/abs/2508.20230"

CITATION_BIBTEX = """@article{nagaraj2025coresets,
  title         = {Coresets from Trajectories: Selecting Data via Correlation of Loss Differences},
  author        = {Nagaraj, Manish and Ravikumar, Deepak and Roy, Kaushik},
  journal       = {Transactions on Machine Learning Research},
  year          = {2025},
  eprint        = {2508.20230},
  archivePrefix = {arXiv},
  url           = {https://arxiv.org/abs/2508.20230}
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


# ------------------------------------------------------------------------------ escaping
def md_text(value) -> str:
    """``value`` as Markdown text safe in prose and table cells.

    HTML special characters become entities, backslashes, ``|`` and backticks are escaped, and
    line breaks become spaces, so the text can neither open HTML, nor split a table row, nor
    start a code span.

    Examples
    --------
    >>> md_text("a|b <script>\\n`x`")
    'a\\\\|b &lt;script&gt; \\\\`x\\\\`'
    """
    text = html.escape(str(value), quote=False)
    text = text.replace("\\", "\\\\").replace("|", "\\|").replace("`", "\\`")
    return " ".join(text.splitlines())


def md_code(value, *, table: bool = False) -> str:
    """``value`` as an inline code span that no backtick in it can close.

    The delimiter is one backtick longer than the longest run of backticks in ``value``; line
    breaks become spaces. ``table=True`` is for a table cell, where a ``|`` would split the row:
    a value holding one is given as escaped text (:func:`md_text`) instead.

    Examples
    --------
    >>> md_code("sample_index"), md_code("a`b")
    ('`sample_index`', '``a`b``')
    >>> md_code("a|b", table=True)
    'a\\\\|b'
    """
    text = " ".join(str(value).splitlines())
    if table and "|" in text:
        return md_text(text)
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if text.startswith("`") or text.endswith("`") or not text.strip() else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def md_fence(code: str, language: str = "") -> str:
    """A fenced code block holding ``code`` verbatim: the fence is longer than any backtick run.

    Examples
    --------
    >>> print(md_fence("echo ```", "bash"))
    ````bash
    echo ```
    ````
    """
    code = str(code)
    longest = max((len(run) for run in re.findall(r"`+", code)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{language}\n{code}\n{fence}"


# ------------------------------------------------------------------------------ helpers
def find_template(name: str) -> Path:
    """Path of a card template: ``model_cards/<name>`` of the checkout, else the installed copy.

    Examples
    --------
    >>> find_template("coreset_dataset_card.md").name
    'coreset_dataset_card.md'
    """
    local = Path(__file__).resolve().parents[2] / "model_cards" / name
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
    if not repo_id:
        return None
    return f"[{md_text(repo_id)}]({_hub_url(endpoint, repo_type, repo_id)})"


def _fmt(value) -> str | None:
    """A table cell: numbers short, lists joined, text escaped; ``None`` stays ``None``."""
    if value is None or value == "" or value == []:
        return None
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(v for v in (_fmt(x) for x in value) if v is not None)
    if isinstance(value, dict):
        return md_text(json.dumps(value, sort_keys=True))
    return md_text(value)


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
# Keys that are rendered elsewhere (or recomputed from the data), not as "other" rows.
_HANDLED_KEYS = {k for k, _ in _METHOD_ROWS} | {
    "command", "fraction", "size", "balance", "budgets", "source_size", "source_dataset",
    "source_revision", "source_split", "eval_results", "eval_split", "license", "base_model",
    "task", "tags", "proxy_test_accuracy",
}


def _parameter_rows(summary: dict) -> list[dict]:
    """``[{name, value}]`` of the parameters table; a row without a value is left out."""
    method = summary.get("method") or {}
    rows = []
    for key, label in _METHOD_ROWS:
        value = method.get(key)
        if key == "proxy_model" and value is None:
            value = (summary.get("model") or {}).get("architecture")
        rows.append({"name": label, "value": _fmt(value)})
        if key == "num_snapshots" and isinstance(value, int) and value > 0:
            rows.append({"name": "loss differences per sample", "value": _fmt(value - 1)})
    balance = summary.get("balance")
    source = summary.get("source_dataset")
    rows += [
        {"name": "coreset fraction", "value": _fmt(summary.get("fraction"))},
        {"name": "coreset size", "value": _fmt(summary.get("num_rows"))},
        {"name": "balance rule", "value": _BALANCE_TEXT.get(balance, _fmt(balance))},
        {"name": "label column",
         "value": md_code(summary["label_column"], table=True)
         if summary.get("label_column") else None},
        {"name": "source dataset", "value": _fmt(source)},
        {"name": "source split", "value": _fmt(summary.get("source_split")) if source else None},
        {"name": "source revision", "value": _fmt(summary.get("source_revision"))},
    ]
    for key in sorted(set(method) - _HANDLED_KEYS):
        rows.append({"name": md_code(key, table=True), "value": _fmt(method[key])})
    return [r for r in rows if r["value"] is not None]


def _stats_rows(summary: dict) -> list[dict]:
    keys = ("count", "min", "q25", "median", "q75", "max", "mean", "std")
    rows = []
    for name, stats in (summary.get("score_stats") or {}).items():
        if stats:
            cells = {k: _fmt(stats[k]) if stats.get(k) is not None else "" for k in keys}
            rows.append({"set": md_text(name), **cells})
    return rows


def _fraction_text(summary: dict) -> str | None:
    fraction = summary.get("fraction")
    return f"fraction {fraction:.4g}" if isinstance(fraction, (int, float)) else None


def _source_text(summary: dict) -> str:
    """The dataset the coreset came from, as Markdown: a Hub link, else a name, else its size."""
    identity = summary.get("index_source") or {}
    link = _link(summary.get("endpoint"), "dataset", summary.get("source_dataset"))
    if link:
        return link
    name = identity.get("name") or (summary.get("method") or {}).get("dataset")
    if name:
        return md_code(name)
    rows = identity.get("num_rows") or summary.get("num_scored_rows")
    return f"a dataset of {rows} rows" if rows else "a scored dataset"


def _identity_rows(summary: dict) -> list[dict]:
    identity = summary.get("index_source") or {}
    rows = [
        {"name": "dataset", "value": md_code(identity["name"], table=True)
         if identity.get("name") else "unnamed (made on a dataset that was not named)"},
        {"name": "split", "value": md_code(identity["split"], table=True)
         if identity.get("split") else None},
        {"name": "rows", "value": _fmt(identity.get("num_rows"))},
        {"name": "fingerprint", "value": md_code(identity["fingerprint"], table=True) +
         " (cld-hf's: SHA-256 of the row count and the label column)"
         if identity.get("fingerprint") else None},
    ]
    return [r for r in rows if r["value"] is not None] if identity else []


def rebuild_snippet(summary: dict) -> str:
    """Python code that rebuilds the coreset from the source dataset and the ``indices`` config.

    It checks that the loaded source is the dataset ``sample_index`` counts rows of (its number
    of rows, and, with cld-hf installed, its fingerprint). Without ``source_dataset`` it starts
    from a ``source`` variable the reader provides.

    Examples
    --------
    >>> code = rebuild_snippet({"repo_id": "me/c", "source_dataset": "me/src",
    ...     "source_split": "train", "label_column": "label",
    ...     "index_source": {"name": "me/src", "split": "train", "num_rows": 10,
    ...                      "fingerprint": "ab" * 32}})
    >>> print(code)  # doctest: +ELLIPSIS
    from datasets import load_dataset
    <BLANKLINE>
    idx = load_dataset("me/c", "indices", split="train")
    source = load_dataset("me/src", split="train")
    assert len(source) == 10, "not the dataset that sample_index counts rows of"
    # optional, with cld-hf installed: the same rows in the same order (label fingerprint)
    from cld_hf.identity import check_source
    check_source(source, {"name": "me/src", "split": "train", "num_rows": 10,
                          "fingerprint": "abab..."}, label_column="label")
    coreset = source.select(idx["sample_index"][:])
    coreset = coreset.add_column("cld_score", idx["cld_score"][:])  # optional: keep the scores
    """
    repo_id = summary["repo_id"]
    identity = summary.get("index_source") or {}
    source = summary.get("source_dataset")
    lines = ["from datasets import load_dataset", "",
             f"idx = load_dataset({json.dumps(repo_id)}, \"indices\", split=\"train\")"]
    if source:
        args = [json.dumps(source), f"split={json.dumps(summary.get('source_split') or 'train')}"]
        if summary.get("source_revision"):
            args.append(f"revision={json.dumps(summary['source_revision'])}")
        lines.append(f"source = load_dataset({', '.join(args)})")
    else:
        lines.append("# source: your copy of the dataset that sample_index counts rows of")
    if identity.get("num_rows") is not None:
        lines.append(f"assert len(source) == {int(identity['num_rows'])}, "
                     f"\"not the dataset that sample_index counts rows of\"")
    if identity.get("fingerprint"):
        label = summary.get("label_column")
        lines += ["# optional, with cld-hf installed: the same rows in the same order "
                  "(label fingerprint)",
                  "from cld_hf.identity import check_source",
                  "check_source(source, {"
                  + ", ".join(f"{json.dumps(k)}: {json.dumps(identity[k])}"
                              for k in ("name", "split", "num_rows")
                              if identity.get(k) is not None) + ",",
                  f"                      \"fingerprint\": {json.dumps(identity['fingerprint'])}}}"
                  + (f", label_column={json.dumps(label)})" if label else ")")]
    lines += ["coreset = source.select(idx[\"sample_index\"][:])",
              "coreset = coreset.add_column(\"cld_score\", idx[\"cld_score\"][:])  "
              "# optional: keep the scores"]
    return "\n".join(lines)


def _evaluation_rows(summary: dict) -> list[dict]:
    split = md_text(summary.get("eval_split") or "test")
    results = dict(summary.get("eval_results") or {})
    accuracy = (summary.get("method") or {}).get("proxy_test_accuracy")
    if not results and isinstance(accuracy, (int, float)) and not isinstance(accuracy, bool):
        results = {"accuracy": accuracy}
    return [{"metric": md_text(name), "split": split, "value": _fmt(float(value))}
            for name, value in results.items()]


# ------------------------------------------------------------------------------ cards
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
    >>> "Correlation of Loss Differences" in card.text, "More Information Needed" in card.text
    (True, False)
    """
    from huggingface_hub import DatasetCard, DatasetCardData

    card_data = card_data if card_data is not None else DatasetCardData()
    method = summary.get("method") or {}
    endpoint = summary.get("endpoint")
    source = summary.get("source_dataset")
    card_data.tags = list(dict.fromkeys([*CARD_TAGS, *(summary.get("tags") or [])]))
    card_data.size_categories = [size_category(int(summary["num_rows"]))]
    if source:
        card_data.source_datasets = [f"extended|{source}"]
    if summary.get("license"):
        card_data.license = summary["license"]
    card_data.pretty_name = f"CLD coreset of {source}" if source else "CLD coreset"
    budgets = [{"label": md_text(b["label"]), "name": md_text(b.get("name") or ""),
                "k": b["k"], "n": b.get("n")} for b in summary.get("budgets") or []]
    columns = [{"name": md_code(c["name"], table=True),
                "feature": md_code(c["feature"], table=True),
                "meaning": c["meaning"]}  # our own text, not the user's
               for c in summary.get("columns") or []]
    label_column = summary.get("label_column") or "label"
    model_link = _link(endpoint, "model", summary.get("model_repo_id"))
    if model_link is None and method.get("proxy_model"):
        model_link = md_text(method["proxy_model"])
    load_rows = md_fence(f"from datasets import load_dataset\n\n"
                         f"coreset = load_dataset({json.dumps(summary['repo_id'])}, "
                         f"split=\"train\")", "python")
    return DatasetCard.from_template(
        card_data,
        template_path=str(find_template(DATASET_TEMPLATE)),
        title=md_text(card_data.pretty_name),
        repo_id=md_text(summary["repo_id"]),
        load_default=md_code(f"load_dataset({json.dumps(summary['repo_id'])}, split=\"train\")",
                             table=True),
        load_indices=md_code(f"load_dataset({json.dumps(summary['repo_id'])}, \"indices\", "
                             f"split=\"train\")", table=True),
        source_text=_source_text(summary),
        source_split=md_code(summary["source_split"]) if source and summary.get(
            "source_split") else None,
        source_revision=md_code(summary["source_revision"]) if summary.get(
            "source_revision") else None,
        model_link=model_link,
        license=md_text(summary["license"]) if summary.get("license") else None,
        num_rows=summary["num_rows"],
        num_scored_rows=summary.get("num_scored_rows"),
        fraction_text=_fraction_text(summary),
        label_column=md_code(label_column, table=True),
        row_columns=", ".join(c["name"] for c in columns) or "all columns",
        identity_rows=_identity_rows(summary),
        identity_named=bool((summary.get("index_source") or {}).get("name")),
        load_rows=load_rows,
        rebuild=md_fence(rebuild_snippet(summary), "python"),
        has_source=bool(source),
        columns=columns,
        parameters=_parameter_rows(summary),
        num_classes=len(budgets),
        budgets=budgets,
        has_class_sizes=any(b.get("n") is not None for b in budgets),
        score_stats=_stats_rows(summary),
        command=md_fence(method["command"], "bash") if method.get("command") else None,
        citation=md_fence(CITATION_BIBTEX, "bibtex"),
        paper_url=PAPER_URL,
        cld_hf_url=CLD_HF_URL,
        cld_hf_version=md_text(summary.get("cld_hf_version") or ""),
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
    holds metrics, a ``model-index``.

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
    >>> "| accuracy | test | 0.5 |" in card.text, "More Information Needed" in card.text
    (True, False)
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
    num_parameters = model_details.get("num_parameters")
    return ModelCard.from_template(
        card_data,
        template_path=str(find_template(MODEL_TEMPLATE)),
        model_title=md_text(f"CLD proxy model: {model_repo_id.split('/')[-1]}"),
        dataset_link=_link(endpoint, "dataset", summary["repo_id"]),
        source_text=_source_text(summary),
        source_split=md_code(summary["source_split"]) if source and summary.get(
            "source_split") else None,
        source_revision=md_code(summary["source_revision"]) if summary.get(
            "source_revision") else None,
        architecture=md_text(model_details["architecture"]) if model_details.get(
            "architecture") else None,
        num_parameters=f"{int(num_parameters):,}" if num_parameters else None,
        base_model_text=_link(endpoint, "model", model_details.get("base_model")),
        license=md_text(summary["license"]) if summary.get("license") else None,
        load_snippet=md_fence(model_details.get("load_snippet") or "", "python")
        if model_details.get("load_snippet") else None,
        parameters=_parameter_rows(summary),
        eval_rows=_evaluation_rows(summary),
        command=md_fence(method["command"], "bash") if method.get("command") else None,
        citation=md_fence(CITATION_BIBTEX, "bibtex"),
        paper_url=PAPER_URL,
        framework_versions={md_text(k): md_text(v) for k, v in _framework_versions().items()},
    )
