"""What the two repos of a shared coreset hold: :class:`CoresetHubSpec`, checked once.

Every option of :func:`~cld_hf.hub.push_coreset_to_hub` and
:func:`~cld_hf.hub.export_coreset_repos` that describes the repos is a field of
:class:`CoresetHubSpec`; the functions take ``spec=`` and, as sugar, the same fields as keyword
arguments, turned into a spec by :func:`build_spec` (the one place that does it). Objects that
are not options (the dataset, the model, ``processing_class``) and options of the Hub call
(token, private, revision, ...) stay arguments of the functions.

Also the names of the repo layout: :data:`RUN_INFO_FILE` (``cld_run.json``) and
:data:`INDEX_CONFIG` (``indices``).
"""

from __future__ import annotations

import dataclasses
import difflib
import numbers
import re
from dataclasses import dataclass, field

from .._validation import check_bool, check_choice, check_float, check_int, check_json

__all__ = ["CoresetHubSpec", "build_spec", "check_repo_id", "RUN_INFO_FILE", "INDEX_CONFIG",
           "BALANCE_RULES"]

RUN_INFO_FILE = "cld_run.json"
"""The run record: written next to a saved scored dataset or coreset by ``cld-hf score`` /
``select`` / ``run``, read back as ``method_info`` by ``cld-hf push``, and committed to the
dataset repo (the summary the cards were rendered from)."""

INDEX_CONFIG = "indices"
"""The dataset repo's index-only config: ``sample_index``, the label and ``cld_score``."""

BALANCE_RULES = ("equal", "proportional")
_SPLIT_NAME = re.compile(r"\w+(\.\w+)*")  # a split name, as datasets.naming defines it

# Keys of method_info that default a field of the same name (see CoresetHubSpec).
_FROM_METHOD_INFO = ("source_dataset", "source_revision", "source_split", "balance",
                     "eval_results", "license")


def check_repo_id(name: str, value, *, full: bool = False) -> str:
    """``value`` if it is a Hub repo id (``huggingface_hub.utils.validate_repo_id``), else an
    error naming the argument, the value and the fix.

    Parameters
    ----------
    name : str
        The argument, for the message.
    value : str
    full : bool, default False
        Require the ``namespace/name`` form.

    Examples
    --------
    >>> check_repo_id("repo_id", "me/cifar100-cld-10pct")
    'me/cifar100-cld-10pct'
    >>> check_repo_id("repo_id", "me/coreset.git")
    Traceback (most recent call last):
    ...
    ValueError: repo_id == 'me/coreset.git' is not a Hub repo id (Repo_id cannot end by '.git': ...
    """
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str such as 'namespace/name', not "
                        f"{type(value).__name__}.")
    try:
        validate_repo_id(value)
    except HFValidationError as err:
        raise ValueError(
            f"{name} == {value!r} is not a Hub repo id ({err}). Pass 'namespace/name' (or "
            f"'name' for the token's namespace): letters, digits, '-', '_' and '.', no '--' or "
            f"'..', not ending in '.git'."
        ) from None
    if full and "/" not in value:
        raise ValueError(
            f"{name} == {value!r} has no namespace. The exported cards name the repos as given, "
            f"so pass {name}='<your-namespace>/{value}' (push_coreset_to_hub alone fills in the "
            f"token's namespace, as it asks the Hub for it)."
        )
    return value


def _check_optional_str(name: str, value) -> str | None:
    if value is not None and (not isinstance(value, str) or not value.strip()):
        raise TypeError(f"{name} must be a non-empty str or None, not {value!r}.")
    return value


@dataclass
class CoresetHubSpec:
    """What the dataset repo (and the model repo) of a coreset hold; checked in ``__post_init__``.

    Fields that ``method_info`` also holds (``source_dataset``, ``source_revision``,
    ``source_split``, ``balance``, ``eval_results``, ``license``) default to its values, so a
    ``cld_run.json`` fills them. A bad field is an error naming it, its value and the fix, raised
    before anything is staged or sent.

    Parameters
    ----------
    > Parameters that name the repos

    repo_id : str
        Dataset repo, ``"namespace/name"`` (``"name"`` alone: the token's namespace, for a push).
    model_repo_id : str, optional
        Model repo of the proxy model; required when a model is given.

    > Parameters that name the source dataset

    source_dataset : str, optional
        Hub id of the dataset ``sample_index`` indexes. Checked against the index's own record
        (:func:`cld_hf.identity.index_identity`): a different dataset, or an index made on an
        unnamed sub-dataset, is an error.
    source_revision : str, optional
        Its revision.
    source_split : str, optional
        Its split (default: the index's record, else ``"train"``).

    > Parameters that control the selection

    fraction : float, optional
        Select this share of a scored dataset, in (0, 1].
    size : int, optional
        Select this many samples of a scored dataset.
    balance : {"equal", "proportional"}, optional
        The budget rule (default ``method_info["balance"]``, else ``"equal"``).
    label_column : str, optional
        Found as ``labels``, then ``label``, when not given.

    > Parameters that fill the cards

    method_info : dict, optional
        Plain-JSON record of how the scores were made (see :mod:`cld_hf.hub`).
    eval_results : dict, optional
        Metrics of the proxy model, e.g. ``{"accuracy": 0.61}`` (needs ``source_dataset``).
    include_trajectory : bool, default False
        Also share the ``loss_trajectory`` column.
    license : str, optional
        Card license (e.g. the source dataset's).
    tags : list of str, optional
        Extra card tags (``coreset``, ``cld``, ``data-pruning`` and ``cld-hf`` are always set).
    max_shard_size : int or str, default "500MB"
        Largest Parquet shard.

    Examples
    --------
    >>> spec = CoresetHubSpec("me/toy-cld-50pct", fraction=0.5,
    ...                       method_info={"source_dataset": "me/toy", "epochs": 3})
    >>> spec.source_dataset, spec.balance
    ('me/toy', 'equal')
    >>> CoresetHubSpec("me/toy", balance="even")
    Traceback (most recent call last):
    ...
    ValueError: balance == 'even', must be one of ['equal', 'proportional'].
    """

    # Repos
    repo_id: str = field(metadata={"help": "dataset repo, 'namespace/name'"})
    model_repo_id: str | None = field(
        default=None, metadata={"help": "model repo of the proxy model (required with a model)"})
    # Source dataset
    source_dataset: str | None = field(
        default=None, metadata={"help": "Hub id of the dataset that sample_index indexes"})
    source_revision: str | None = field(
        default=None, metadata={"help": "revision of the source dataset"})
    source_split: str | None = field(
        default=None, metadata={"help": "split of the source dataset (default: the index's)"})
    # Selection
    fraction: float | None = field(
        default=None, metadata={"help": "select this share of a scored dataset, in (0, 1]"})
    size: int | None = field(
        default=None, metadata={"help": "select this many samples of a scored dataset"})
    balance: str | None = field(
        default=None, metadata={"help": "budget rule: 'equal' (default) or 'proportional'"})
    label_column: str | None = field(
        default=None, metadata={"help": "label column (default: labels, then label)"})
    # Cards
    method_info: dict | None = field(
        default=None, metadata={"help": "plain-JSON record of how the scores were made"})
    eval_results: dict | None = field(
        default=None, metadata={"help": "proxy model metrics, e.g. {'accuracy': 0.61}"})
    include_trajectory: bool = field(
        default=False, metadata={"help": "also share the loss_trajectory column"})
    license: str | None = field(default=None, metadata={"help": "card license"})
    tags: list[str] | None = field(default=None, metadata={"help": "extra card tags"})
    max_shard_size: int | str = field(
        default="500MB", metadata={"help": "largest Parquet shard, e.g. '500MB' or 10_000_000"})

    def __post_init__(self):
        check_repo_id("repo_id", self.repo_id)
        if self.model_repo_id is not None:
            check_repo_id("model_repo_id", self.model_repo_id)
        self.method_info = check_json("method_info", self.method_info)
        for key in _FROM_METHOD_INFO:  # method_info (cld_run.json) fills what is not given
            if getattr(self, key) is None and self.method_info.get(key) is not None:
                setattr(self, key, self.method_info[key])
        if self.source_dataset is not None:
            check_repo_id("source_dataset", self.source_dataset)
        _check_optional_str("source_revision", self.source_revision)
        _check_optional_str("source_split", self.source_split)
        if self.source_split is not None and not _SPLIT_NAME.fullmatch(self.source_split):
            raise ValueError(
                f"source_split == {self.source_split!r} is not the name of a whole split; pass "
                f"e.g. 'train'. A slice such as 'train[:10%]' is a sub-dataset: index the whole "
                f"split (stratified_query_split adds sample_index before it splits).")
        if self.fraction is not None and self.size is not None:
            raise ValueError(
                f"Pass fraction= or size=, not both (got fraction={self.fraction!r}, "
                f"size={self.size!r}).")
        if self.fraction is not None:
            self.fraction = check_float("fraction", self.fraction, min_val=0.0, max_val=1.0,
                                        include_min=False)
        if self.size is not None:
            self.size = check_int("size", self.size, min_val=1)
        self.balance = check_choice("balance", self.balance or "equal", BALANCE_RULES)
        _check_optional_str("label_column", self.label_column)
        self.eval_results = check_json("eval_results", self.eval_results)
        for name, value in self.eval_results.items():
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                raise ValueError(
                    f"eval_results[{name!r}] == {value!r}, must be a number (e.g. 0.61).")
        if self.eval_results and self.source_dataset is None:
            raise ValueError(
                f"eval_results == {self.eval_results!r} needs the dataset they were measured "
                f"on: pass source_dataset='<Hub id of the source dataset>'."
            )
        self.include_trajectory = check_bool("include_trajectory", self.include_trajectory)
        _check_optional_str("license", self.license)
        if self.tags is not None:
            if isinstance(self.tags, str) or not all(
                    isinstance(t, str) and t.strip() for t in self.tags):
                raise TypeError(
                    f"tags == {self.tags!r}, must be a list of non-empty str, e.g. "
                    f"['vision'].")
        self.tags = list(self.tags or [])
        self.max_shard_size = _check_shard_size(self.max_shard_size)


def _check_shard_size(value):
    from datasets.utils.py_utils import convert_file_size_to_int

    if isinstance(value, bool) or not isinstance(value, (numbers.Integral, str)):
        raise TypeError(f"max_shard_size must be an int (bytes) or a str such as '500MB', not "
                        f"{type(value).__name__}.")
    try:
        nbytes = convert_file_size_to_int(value if isinstance(value, str) else int(value))
    except ValueError:
        nbytes = None
    if not isinstance(nbytes, int) or nbytes < 1:
        raise ValueError(f"max_shard_size == {value!r} is not a size; pass e.g. '500MB' or "
                         f"500_000_000 (bytes).")
    return value if isinstance(value, str) else int(value)


def _fields() -> list[str]:
    return [f.name for f in dataclasses.fields(CoresetHubSpec)]


def build_spec(spec: CoresetHubSpec | None, options: dict, *, caller: str) -> CoresetHubSpec:
    """The spec of a call: ``spec`` with ``options`` (its fields as keywords) applied on top.

    Parameters
    ----------
    spec : CoresetHubSpec, optional
    options : dict
        Keyword arguments the caller received for the spec's fields; ``None`` values are
        dropped (an argument left at its default). An unknown name is a ``TypeError`` listing
        the fields.
    caller : str
        The public function, for the message.

    Examples
    --------
    >>> build_spec(None, {"repo_id": "me/c", "fraction": 0.1}, caller="f").fraction
    0.1
    >>> build_spec(None, {"repo_id": "me/c", "fracton": 0.1}, caller="f")
    Traceback (most recent call last):
    ...
    TypeError: f() got an unexpected keyword argument 'fracton' (did you mean 'fraction'?). ...
    """
    names = _fields()
    unknown = [k for k in options if k not in names]
    if unknown:
        hints = [f"{k!r}" + (f" (did you mean {m[0]!r}?)" if (m := difflib.get_close_matches(
            k, names, n=1)) else "") for k in unknown]
        raise TypeError(
            f"{caller}() got an unexpected keyword argument{'s' if len(unknown) > 1 else ''} "
            f"{', '.join(hints)}. Its options are the fields of CoresetHubSpec: {names}; the "
            f"other arguments are model, processing_class, model_config, skip_model_files and "
            f"the Hub call's."
        )
    given = {k: v for k, v in options.items() if v is not None}
    if spec is None:
        if "repo_id" not in given:
            raise TypeError(f"{caller}() needs repo_id= (or spec=CoresetHubSpec(repo_id=...)).")
        return CoresetHubSpec(**given)
    if not isinstance(spec, CoresetHubSpec):
        raise TypeError(f"spec must be a CoresetHubSpec, not {type(spec).__name__}.")
    return dataclasses.replace(spec, **given) if given else spec
