"""Recording: per-sample losses of the training and query sets, one snapshot per epoch.

- :mod:`.config`: :class:`RecorderConfig`, the one options dataclass;
- :mod:`.losses`: per-sample losses from a model's outputs (classification, token losses);
- :mod:`.features`: the baselines' signals and penultimate features from the same forward;
- :mod:`.indexing`: :class:`IndexedDataset`, :class:`IndexCollator`: the sample index travels
  (the grouping rules are :mod:`cld_hf.groups`);
- :mod:`.gather`: sharding, gathering, :func:`place_by_index` (NumPy);
- :mod:`.sweep`: one eval-mode sweep (no autograd, its own RNG);
- :mod:`.train_pass`: losses fed from the training forward passes;
- :mod:`.recorder`: :class:`LossRecorder`, which uses all of the above and the store.
"""

import importlib

from .config import FINAL_SIGNALS, SNAPSHOT_SIGNALS, RecorderConfig

# The torch side loads on first use, so importing the config (a CLI's --help) stays light.
_LAZY = {
    "LossRecorder": "recorder",
    "INDEX_KEY": "indexing",
    "IndexedDataset": "indexing",
    "IndexCollator": "indexing",
    "IncompleteSnapshotError": "gather",
    "place_by_index": "gather",
    "per_sample_cross_entropy": "losses",
    "per_sequence_token_loss": "losses",
    "default_per_sample_loss": "losses",
    "classification_signals": "features",
    "find_feature_module": "features",
}

__all__ = [
    "LossRecorder",
    "RecorderConfig",
    "INDEX_KEY",
    "IndexedDataset",
    "IndexCollator",
    "IncompleteSnapshotError",
    "place_by_index",
    "per_sample_cross_entropy",
    "per_sequence_token_loss",
    "default_per_sample_loss",
    "classification_signals",
    "find_feature_module",
    "SNAPSHOT_SIGNALS",
    "FINAL_SIGNALS",
]


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
