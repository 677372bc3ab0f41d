"""Pushing: :func:`push_coreset_to_hub`, all or nothing across the two repos.

The order of a push, and why:

1. Everything that needs no network is checked first (the spec, the data, the sample identity),
   then offline mode, then the token (``whoami``); the repo ids get their namespace.
2. Both repos' files are staged locally (``cld_hf.hub.staging._stage``): a bad model or
   card fails before anything is created.
3. The repos are created when missing (``exist_ok=False``, so the call knows which ones it
   created), the target branch too, then every LFS file of both repos is uploaded
   (``preupload_lfs_files``), the step most likely to fail.
4. One commit to the model repo, then one to the dataset repo: the dataset card links the model,
   and the dataset repo is committed last, only after the model repo succeeded.

When a step fails, the repos this call created are deleted, so a failed first push leaves
nothing; a repo that existed before is left as the message says (a commit is all or nothing, so
it holds either its previous state or this call's complete commit). Every failure is a
:class:`~cld_hf.hub.errors.HubPushError` with a one-line message.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from .errors import HubNetworkError, hub_error
from .spec import INDEX_CONFIG, CoresetHubSpec, build_spec
from .staging import _check_model_arguments, _prepare, _stage

logger = logging.getLogger(__name__)

__all__ = ["CoresetPushResult", "push_coreset_to_hub", "is_main_process"]

_STALE_WEIGHTS = (".safetensors", ".bin", ".index.json")


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

    Examples
    --------
    >>> CoresetPushResult("me/c", dataset_commit=None).model_repo_id is None
    True
    """

    dataset_repo_id: str
    dataset_commit: Any
    model_repo_id: str | None = None
    model_commit: Any = None


def is_main_process() -> bool:
    """Whether this process pushes: accelerate's main process once an ``Accelerator`` (or a
    ``Trainer``) initialised its state, else rank 0 of ``torch.distributed``, else ``RANK``.

    Examples
    --------
    >>> is_main_process()
    True
    """
    if "accelerate" in sys.modules:
        from accelerate.state import PartialState, is_initialized

        if is_initialized():
            return PartialState().is_main_process
    if "torch" in sys.modules:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            return dist.get_rank() == 0
    return int(os.environ.get("RANK", "0")) == 0


@dataclass
class _Repo:
    """One repo of a push and what this call did to it."""

    repo_id: str
    repo_type: str
    folder: Path
    created: bool = False
    branch_created: str | None = None  # a branch this call created (in a repo it did not)
    head_before: str | None = None  # the branch head before this call's commit
    commit: Any = None
    operations: list | None = None

    @property
    def label(self) -> str:
        return f"{self.repo_type} repo {self.repo_id!r}"


def _check_source_on_hub(api, spec: CoresetHubSpec, identity: dict) -> None:
    """Best effort: the source dataset on the Hub has the number of rows the index records."""
    if not spec.source_dataset or identity.get("num_rows") is None:
        return
    try:
        info = api.dataset_info(spec.source_dataset, revision=spec.source_revision)
    except Exception as err:  # not there (yet), private, gated, network: the card still says it
        logger.info("Could not read %s on the Hub to check its size (%s)", spec.source_dataset,
                    type(err).__name__)
        return
    infos = getattr(info.card_data, "dataset_info", None) if info.card_data else None
    for config in infos if isinstance(infos, list) else [infos] if infos else []:
        if config.get("config_name", "default") != "default":
            continue
        for split in config.get("splits") or []:
            rows = split.get("num_examples")
            if split.get("name") == spec.source_split and rows is not None and (
                    rows != identity["num_rows"]):
                raise ValueError(
                    f"source_dataset == {spec.source_dataset!r}: its {spec.source_split!r} split "
                    f"has {rows} rows on the Hub, but the coreset's sample_index counts rows of a "
                    f"dataset of {identity['num_rows']} rows (a filtered or partial copy?). Make "
                    f"the index on the full split before filtering or splitting "
                    f"(stratified_query_split adds sample_index before it splits), or pass the "
                    f"source_dataset / source_split the rows come from."
                )


def _ensure_repo(api, repo: _Repo, *, private: bool) -> None:
    """Create the repo when missing, remembering whether this call created it."""
    from huggingface_hub.errors import HfHubHTTPError

    try:
        api.create_repo(repo.repo_id, repo_type=repo.repo_type, private=private, exist_ok=False)
        repo.created = True
    except HfHubHTTPError as err:
        status = getattr(err.response, "status_code", None)
        if status == 409:  # it exists: it was not made by this call
            return
        if status in (401, 402, 403):  # may exist, and the token may still write to it
            try:
                api.repo_info(repo.repo_id, repo_type=repo.repo_type)
                return
            except HfHubHTTPError:
                pass
        raise


def _ensure_branch(api, repo: _Repo, branch: str) -> None:
    """Create ``branch`` from ``main`` when missing, remembering whether this call created it."""
    from huggingface_hub.errors import HfHubHTTPError

    try:
        api.create_branch(repo.repo_id, branch=branch, repo_type=repo.repo_type, exist_ok=False)
    except HfHubHTTPError as err:
        if getattr(err.response, "status_code", None) == 409:  # it exists
            return
        raise
    repo.branch_created = branch


def _operations(api, repo: _Repo, *, revision, stale) -> list:
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete

    files = [(p.relative_to(repo.folder).as_posix(), p)
             for p in sorted(repo.folder.rglob("*")) if p.is_file()]
    new_paths = {path for path, _ in files}
    existing = api.list_repo_files(repo.repo_id, repo_type=repo.repo_type, revision=revision)
    operations = [CommitOperationDelete(path_in_repo=p) for p in existing
                  if p not in new_paths and stale(p)]
    operations += [CommitOperationAdd(path_in_repo=p, path_or_fileobj=str(local))
                   for p, local in files]
    return operations


def _rollback(api, repos: list[_Repo]) -> tuple[list[str], list[str]]:
    """Delete the repos this call created; ``(deleted, not_deleted)`` descriptions."""
    deleted, failed = {}, {}
    for repo in reversed(repos):  # the dataset repo first: it links the model repo
        if not repo.created and repo.branch_created and repo.commit is None:
            try:  # an empty branch this call added to an existing repo
                api.delete_branch(repo.repo_id, branch=repo.branch_created,
                                  repo_type=repo.repo_type)
                repo.branch_created = None
            except Exception:  # noqa: BLE001 - reported in the state message
                pass
        if not repo.created:
            continue
        try:
            api.delete_repo(repo.repo_id, repo_type=repo.repo_type, missing_ok=True)
            deleted[repo.repo_type, repo.repo_id] = repo.label
        except Exception as err:  # noqa: BLE001 - reported in the message, never hidden
            failed[repo.repo_type, repo.repo_id] = (
                f"{repo.label} ({type(err).__name__}; delete it with `hf repos delete "
                f"{repo.repo_id} --repo-type {repo.repo_type}`)")
    order = [(r.repo_type, r.repo_id) for r in repos]  # described in push order: model first
    return [deleted[k] for k in order if k in deleted], [failed[k] for k in order if k in failed]


def _head_moved(api, repo: _Repo, revision) -> bool | None:
    """After a failed commit: whether the branch head moved (``None``: could not tell)."""
    try:
        return api.repo_info(repo.repo_id, repo_type=repo.repo_type,
                             revision=revision).sha != repo.head_before
    except Exception:  # noqa: BLE001 - the network may be down: then we cannot tell
        return None


def _state(repos: list[_Repo], failing: _Repo | None, deleted, not_deleted, *, step: str,
           moved: bool | None = False) -> str:
    """What the repos look like after a failed ``step`` (``"create"``, ``"prepare"``,
    ``"upload"`` or ``"commit"``), in a sentence or two. ``moved``: whether the failing repo's
    head moved during its failed commit (``None``: unknown)."""
    parts = []
    if deleted:
        kept = any(r.commit is not None and not r.created for r in repos)
        parts.append(("This call" if kept else "Nothing is left behind: this call")
                     + f" created and then deleted the {' and the '.join(deleted)}.")
    if not_deleted:
        parts.append(f"Could not delete the empty {', '.join(not_deleted)}.")
    for repo in repos:
        if repo.created:
            continue
        if repo.commit is not None:
            linked = next((r for r in repos if r is not repo), None)
            parts.append(
                f"The {repo.label} existed before and now holds this call's commit "
                f"{repo.commit.oid[:8]} (was {str(repo.head_before)[:8]}); its card links to the "
                f"{linked.label if linked else 'dataset repo'}, which "
                + ("was deleted." if linked is not None and linked.created else
                   "keeps its previous content.") + " Running the same call again finishes the "
                "push (unchanged files are skipped).")
        elif repo.head_before is None:  # not reached yet, or failed while being created
            if repo is failing and step == "create":
                parts.append(f"The {repo.label} was not created.")
        elif repo is failing and moved:
            parts.append(f"The {repo.label} existed before and its head moved during the failed "
                         f"commit (was {str(repo.head_before)[:8]}): the commit may have been "
                         f"applied, with the Hub's answer lost. Running the same call again "
                         f"changes nothing if it was.")
        elif repo is failing and moved is None:
            parts.append(f"The {repo.label} existed before and holds either its previous state "
                         f"or this call's complete commit (a commit is all or nothing; the "
                         f"answer was lost).")
        elif repo is failing:
            parts.append(f"Nothing was written to {repo.repo_id!r}: a commit is all or nothing, "
                         f"so the {repo.label} is as it was.")
        else:
            parts.append(f"The {repo.label} is unchanged.")
        if not repo.created and repo.branch_created and repo.commit is None:
            parts.append(f"Could not delete the branch {repo.branch_created!r} this call added "
                         f"to the {repo.label} (it points at main; `hf repos branch delete "
                         f"{repo.repo_id} {repo.branch_created} --repo-type {repo.repo_type}`).")
    return " ".join(parts)


def push_coreset_to_hub(
    coreset_or_scored_dataset,
    repo_id: str | None = None,
    *,
    spec: CoresetHubSpec | None = None,
    model=None,
    processing_class=None,
    model_config: dict | None = None,
    skip_model_files: list[str] | None = None,
    private: bool = False,
    token: str | None = None,
    revision: str | None = None,
    create_pr: bool = False,
    commit_message: str | None = None,
    commit_description: str | None = None,
    **options,
) -> CoresetPushResult | None:
    """Push a CLD coreset (rows + an index-only config), its card and the proxy model to the Hub.

    Parameters
    ----------
    coreset_or_scored_dataset : datasets.Dataset
        A coreset (from :func:`~cld_hf.select_coreset`: has ``sample_index`` and
        ``cld_score``), pushed as is; or a scored dataset (has ``cld_score``) together with
        ``fraction`` or ``size``, from which the coreset is selected here.
    repo_id : str, optional
        Dataset repo, ``"namespace/name"`` (``"name"`` alone: your namespace); the same as
        ``spec.repo_id`` (given here, it replaces it).
    spec : CoresetHubSpec, optional
        What the repos hold: source dataset, selection, card fields (see
        :class:`~cld_hf.hub.CoresetHubSpec`).
    model : torch.nn.Module or path, optional
        The trained proxy model (``trainer.model``). A transformers model is saved with
        ``save_pretrained``; a plain module as ``model.safetensors`` + ``config.json``. A path
        names a saved model directory whose allowed files (safetensors weights, config,
        tokenizer and processor files) are pushed; any other file is an error unless skipped.
        Needs ``model_repo_id``.
    processing_class : optional
        Tokenizer / image processor saved beside a transformers model.
    model_config : dict, optional
        JSON-able constructor arguments of a plain torch module, stored in ``config.json``.
    skip_model_files : list of str, optional
        File names (``fnmatch`` patterns) of a saved model folder to leave out, besides the
        ``Trainer`` state files that are always left out.
    private, token, revision, create_pr, commit_message, commit_description
        As in ``huggingface_hub.HfApi``. ``revision`` names a branch, created from ``main`` when
        missing; ``create_pr=True`` opens a pull request instead of committing to the branch.
    **options
        Fields of :class:`~cld_hf.hub.CoresetHubSpec` (``model_repo_id=``, ``fraction=``,
        ``source_dataset=``, ``method_info=``, ...), applied on top of ``spec``. Any other name
        is a ``TypeError`` that lists the fields.

    Returns
    -------
    CoresetPushResult, or ``None`` on a process other than the main one.

    Raises
    ------
    ValueError, TypeError
        Bad arguments or data, before anything is sent; among them a ``sample_index`` that
        does not index the ``source_dataset`` / ``source_split`` the cards would name.
    HubPushError
        The Hub could not be reached, refused the token or failed a step; the one-line message
        names the cause, what is left on the Hub (repos this call created are deleted) and the
        retry. Subclasses: ``HubAuthError``, ``HubNetworkError``, ``HubServerError``,
        ``HubCommitRefusedError``.

    See Also
    --------
    export_coreset_repos : the same files, written to a local folder without network access.

    Examples
    --------
    >>> from datasets import Dataset
    >>> from cld_hf import add_index_column
    >>> full = Dataset.from_dict({"label": [0, 0, 1, 1]})
    >>> scored = add_index_column(full, name="me/toy", split="train").add_column(
    ...     "cld_score", [0.1, 0.9, 0.5, 0.2])
    >>> result = push_coreset_to_hub(scored, "me/toy-cld-50pct", fraction=0.5,
    ...                              source_dataset="me/toy")          # doctest: +SKIP
    >>> result.dataset_commit.commit_url                               # doctest: +SKIP
    'https://huggingface.co/datasets/me/toy-cld-50pct/commit/...'
    >>> push_coreset_to_hub(scored, "me/toy-cld-50pct", fracton=0.5)
    Traceback (most recent call last):
    ...
    TypeError: push_coreset_to_hub() got an unexpected keyword argument 'fracton' (did you ...
    """
    # ---- arguments and data, all checked before anything is sent
    if repo_id is not None:
        options["repo_id"] = repo_id
    spec = build_spec(spec, options, caller="push_coreset_to_hub")
    _check_model_arguments(spec, model)
    prepared = _prepare(coreset_or_scored_dataset, spec)

    if not is_main_process():
        logger.debug("Not the main process: leaving the push to process 0.")
        return None

    from huggingface_hub import HfApi, constants

    from .. import __version__

    if getattr(constants, "is_offline_mode", lambda: constants.HF_HUB_OFFLINE)():
        raise HubNetworkError(
            "Offline mode: HF_HUB_OFFLINE=1 is set, so nothing was sent and nothing was created. "
            "Unset HF_HUB_OFFLINE (or write the repos with export_coreset_repos and upload them "
            "later) and run the same call again.", repo_id=spec.repo_id, cause="offline mode")
    api = HfApi(token=token, library_name="cld-hf", library_version=__version__)
    try:
        user = api.whoami()["name"]
    except Exception as err:
        error = hub_error(err, action="checking the token", repo_id=spec.repo_id,
                          state="Nothing was sent or created.")
        if error is None:
            raise
        raise error from err
    full = {"repo_id": spec.repo_id if "/" in spec.repo_id else f"{user}/{spec.repo_id}"}
    if spec.model_repo_id is not None and "/" not in spec.model_repo_id:
        full["model_repo_id"] = f"{user}/{spec.model_repo_id}"
    prepared = replace(prepared, spec=replace(prepared.spec, **full))
    spec = prepared.spec
    _check_source_on_hub(api, spec, prepared.identity)

    with tempfile.TemporaryDirectory(prefix="cld-hf-push-") as tmp:
        # ---- stage every file locally first: a bad model or card fails before any upload
        staged = _stage(prepared, Path(tmp), endpoint=api.endpoint or constants.ENDPOINT,
                       model=model, processing_class=processing_class,
                       model_config=model_config, skip_model_files=skip_model_files)
        repos = []
        if staged.model_dir is not None:
            repos.append(_Repo(spec.model_repo_id, "model", staged.model_dir))
        repos.append(_Repo(spec.repo_id, "dataset", staged.dataset_dir))
        num_rows = len(prepared.coreset)
        messages = {
            "model": commit_message or f"Add CLD proxy model for {spec.repo_id}",
            "dataset": commit_message or (
                f"Add CLD coreset: {num_rows} rows"
                + (f" of {spec.source_dataset}" if spec.source_dataset else "")),
        }
        stale = {"model": lambda p: p.endswith(_STALE_WEIGHTS),
                 "dataset": lambda p: p.startswith(("data/", f"{INDEX_CONFIG}/"))}
        branch = revision if revision not in (None, "main") and not create_pr else None
        current, action, step = None, "creating the repos", "create"
        try:
            for repo in repos:
                current, action, step = repo, f"creating the {repo.label}", "create"
                _ensure_repo(api, repo, private=private)
            for repo in repos:
                current, step = repo, "prepare"
                if branch is not None:
                    action = f"creating the branch {branch!r} of the {repo.label}"
                    _ensure_branch(api, repo, branch)
                action = f"reading the {repo.label}"
                repo.head_before = api.repo_info(repo.repo_id, repo_type=repo.repo_type,
                                                 revision=revision if not create_pr else None).sha
                repo.operations = _operations(api, repo, revision=revision,
                                              stale=stale[repo.repo_type])
            for repo in repos:  # the uploads, the step most likely to fail, before any commit
                current, action, step = repo, f"uploading the files of the {repo.label}", "upload"
                api.preupload_lfs_files(repo.repo_id, additions=[
                    op for op in repo.operations if hasattr(op, "path_or_fileobj")],
                    repo_type=repo.repo_type, revision=revision, create_pr=create_pr,
                    free_memory=False)
            for repo in repos:  # the model first: the dataset repo is committed last
                current, action, step = repo, f"committing to the {repo.label}", "commit"
                repo.commit = api.create_commit(
                    repo.repo_id, repo.operations, commit_message=messages[repo.repo_type],
                    commit_description=commit_description, repo_type=repo.repo_type,
                    revision=revision, create_pr=create_pr)
                logger.info("Pushed the %s to %s", "proxy model" if repo.repo_type == "model"
                            else f"coreset ({num_rows} rows)", repo.commit.commit_url)
        except BaseException as err:
            moved = False
            if step == "commit" and current is not None and not current.created and not create_pr:
                moved = _head_moved(api, current, revision)
            deleted, not_deleted = _rollback(api, repos)
            if not isinstance(err, Exception):
                raise
            state = _state(repos, current, deleted, not_deleted, step=step, moved=moved)
            error = hub_error(err, action=action, repo_id=current.repo_id if current else None,
                              state=state)
            if error is None:
                raise
            raise error from err
    model_repo = repos[0] if len(repos) == 2 else None
    return CoresetPushResult(
        dataset_repo_id=spec.repo_id, dataset_commit=repos[-1].commit,
        model_repo_id=model_repo.repo_id if model_repo else None,
        model_commit=model_repo.commit if model_repo else None)

