"""cld-hf: CLD coresets (Correlation of Loss Differences) for the Hugging Face stack.

The NumPy core (scoring, selection, splits) and the trajectory store import eagerly; the layers
that need torch (recording, the Trainer callback, the accelerate helper, the Hub) load on first
use, so ``import cld_hf`` stays light.
"""

from __future__ import annotations

import importlib

from .columns import INDEX_COLUMN, SCORE_COLUMN, TRAJECTORY_COLUMN, find_label_column
from .identity import add_index_column, index_identity
from .scoring import StreamingCLD, cld_scores, snapshot_window
from .dataset_adapters import (
    add_cld_scores,
    scored_dataset,
    select_coreset,
    stratified_query_split,
)
from .selection import class_budgets, select_random_per_class, select_top_per_class
from .splits import stratified_split_indices
from .trajectories import LossTrajectories, trajectory_column

__version__ = "0.1.0"

# name -> module, imported on first attribute access (PEP 562)
_LAZY = {
    "RecorderConfig": "recording.config",
    "LossRecorder": "recording",
    "IndexedDataset": "recording",
    "IndexCollator": "recording",
    "IncompleteSnapshotError": "recording",
    "place_by_index": "recording",
    "CLDCallback": "callback",
    "push_coreset_to_hub": "hub",
    "HubPushError": "hub",
    "CoresetPushResult": "hub",
    "export_coreset_repos": "hub",
    "ExportedRepos": "hub",
    "CoresetHubSpec": "hub",
}

__all__ = [
    "INDEX_COLUMN",
    "SCORE_COLUMN",
    "TRAJECTORY_COLUMN",
    "LossTrajectories",
    "StreamingCLD",
    "add_cld_scores",
    "add_index_column",
    "class_budgets",
    "cld_scores",
    "find_label_column",
    "index_identity",
    "scored_dataset",
    "select_coreset",
    "select_random_per_class",
    "select_top_per_class",
    "snapshot_window",
    "stratified_query_split",
    "stratified_split_indices",
    "trajectory_column",
    *_LAZY,
]


def __getattr__(name):
    if name in _LAZY:
        module = importlib.import_module(f".{_LAZY[name]}", __name__)
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
