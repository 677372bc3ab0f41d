"""Share a CLD coreset, its scores and the proxy model that scored it on the Hugging Face Hub.

:func:`push_coreset_to_hub` makes **one commit per repo** with every file of that repo (through
``HfApi.create_commit``), commits the dataset repo last, and deletes a repo it created when a
later step fails, so a failed push leaves nothing half-made; running the same call again is safe
(unchanged files are skipped by the Hub client). :func:`export_coreset_repos` writes the same
two repos to a local folder instead, without any network access. Both take a
:class:`CoresetHubSpec` (``spec=``) or its fields as keyword arguments.

Modules: :mod:`~cld_hf.hub.spec` (the spec and its checks), :mod:`~cld_hf.hub.staging`
(selection, sample identity, summary, Parquet, export), :mod:`~cld_hf.hub.model_files` (the
model repo's files, allow list), :mod:`~cld_hf.hub.cards` (cards, escaping),
:mod:`~cld_hf.hub.push` (the push) and :mod:`~cld_hf.hub.errors` (the ``HubPushError`` family).

Dataset repo (``repo_id``)::

    README.md                               dataset card (model_cards/coreset_dataset_card.md)
    cld_run.json                            the summary: method_info + budgets + score statistics
                                            + index_source (the dataset sample_index indexes)
    data/train-00000-of-0000N.parquet       config "default": the coreset rows
    indices/train-00000-of-0000N.parquet    config "indices": sample_index, label, cld_score

The ``default`` config holds every column of the coreset: the source columns, ``sample_index``
(the row of the sample in the source dataset), the label, ``cld_score`` and, only with
``include_trajectory=True``, ``loss_trajectory``. The ``indices`` config lets someone who already
has the source dataset rebuild the coreset without downloading its rows (the card's snippet
checks first that the source is the dataset the index was made on)::

    idx = load_dataset(repo_id, "indices", split="train")
    coreset = source.select(idx["sample_index"][:])

Both configs, their features and sizes are declared in the card's YAML (``configs`` and
``dataset_info``), as ``Dataset.push_to_hub`` writes them, so ``load_dataset`` restores the exact
features (``ClassLabel`` names, ``float32`` scores, fixed-length trajectories, and the
``sample_index`` record). A re-push removes stale Parquet shards under ``data/`` and
``indices/``.

Sample identity
---------------
``sample_index`` carries in its feature which dataset it indexes (name, split, rows,
fingerprint; :mod:`cld_hf.identity`). The cards and ``cld_run.json`` state that record; a
``source_dataset`` / ``source_split`` that contradicts it, or an index made on an unnamed
sub-dataset while ``source_dataset`` is given, is an error before anything is staged.

Model repo (``model_repo_id``, when ``model`` is given)::

    README.md           model card (model_cards/proxy_model_card.md), links the coreset repo
    config.json         transformers config, or {"cld_hf_format", "class_name", "init_kwargs"...}
    model.safetensors   weights (save_pretrained for transformers models; safetensors.torch
                        .save_model for a plain torch.nn.Module); never a pickle

Only allowed files go to the model repo (:data:`~cld_hf.hub.model_files.ALLOWED_MODEL_FILES`).
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
- ``proxy_test_accuracy`` (float): shown as the model card's evaluation when ``eval_results``
  is not given.
- ``dataset`` (str): the name of the scored dataset when it is not a Hub dataset.
- ``fraction``, ``size``, ``balance``: how a saved coreset was selected (``balance`` defaults the
  field of the same name when the dataset is already a coreset).
- ``source_dataset``, ``source_revision``, ``source_split`` (str), ``eval_results``
  (``{"accuracy": 0.61}``), ``eval_split`` (str, default ``"test"``), ``license``, ``base_model``,
  ``task`` (str): defaults for the fields of the same name.

Per-class budgets (``k_c``, and ``n_c`` when the scored dataset is given) and score statistics
are always computed from the data, never taken from ``method_info``.

Several processes
-----------------
Only the main process pushes: under ``torchrun``/``accelerate launch`` (accelerate's state when
``accelerate.state.is_initialized()``, else ``torch.distributed``, else the ``RANK`` variable)
every other process returns ``None`` at once, without waiting for the push.
"""

from __future__ import annotations

from .errors import (
    HubAuthError,
    HubCommitRefusedError,
    HubNetworkError,
    HubPushError,
    HubServerError,
)
from .push import CoresetPushResult, push_coreset_to_hub
from .spec import INDEX_CONFIG, RUN_INFO_FILE, CoresetHubSpec
from .staging import ExportedRepos, export_coreset_repos

__all__ = [
    "push_coreset_to_hub",
    "export_coreset_repos",
    "CoresetHubSpec",
    "CoresetPushResult",
    "ExportedRepos",
    "HubPushError",
    "HubAuthError",
    "HubNetworkError",
    "HubServerError",
    "HubCommitRefusedError",
    "RUN_INFO_FILE",
    "INDEX_CONFIG",
]
