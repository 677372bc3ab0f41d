"""preset "authors": the authors' public code reproduced exactly (cld_hf.authors).

The reference functions below follow manishnagaraj/CLD_Coresets_from_Trajectories line by line
(Utils/dataset_utils.py's per-class split, Compute_CLD_scores.py's per-class loop and sort,
train_on_coresets.py's top-k per class), written here independently of cld-hf.
"""

import numpy as np
import pytest
import torch

from cld_hf import cld_scores
from cld_hf.authors import authors_config, authors_query_split, authors_select


def reference_split(targets, num_classes, val_ratio=0.10, seed=42):
    g = torch.Generator().manual_seed(seed)
    targets = torch.as_tensor(targets, dtype=torch.long)
    train_indices, val_indices = [], []
    for c in range(num_classes):
        cls_idxs = torch.nonzero(targets == c, as_tuple=False).squeeze(1)
        perm = cls_idxs[torch.randperm(len(cls_idxs), generator=g)]
        split_at = int(len(perm) * (1.0 - val_ratio))
        train_indices.extend(perm[:split_at].tolist())
        val_indices.extend(perm[split_at:].tolist())
    return train_indices, val_indices


def reference_cld_sort(train_losses, val_losses, train_labels, val_labels, num_classes):
    """Compute_CLD_scores.py: (E, N) arrays in, {class: positions sorted by r, descending}."""
    d_train = np.diff(train_losses, axis=0)
    out = {}
    for i in range(num_classes):
        train_mask, val_mask = train_labels == i, val_labels == i
        if not np.any(train_mask) or not np.any(val_mask):
            out[str(i)] = np.array([], dtype=int)
            continue
        d_avg_val = np.diff(val_losses[:, val_mask].mean(axis=1))
        x = d_train[:, train_mask]
        x_std = x.std(axis=0)
        y_std = d_avg_val.std()
        xz = (x - x.mean(axis=0)) / np.where(x_std == 0, 1.0, x_std)
        yz = (d_avg_val - d_avg_val.mean()) / (1.0 if y_std == 0 else y_std)
        r = (xz * yz[:, None]).mean(axis=0)
        out[str(i)] = np.flatnonzero(train_mask)[np.argsort(r)[::-1]]
    return out


@pytest.mark.parametrize("seed", range(3))
def test_the_split_scores_and_selection_equal_the_reference_code(seed):
    rng = np.random.default_rng(seed)
    num_classes, n = 5, 400
    targets = rng.integers(0, num_classes, size=n)
    train_idx, val_idx = reference_split(targets, num_classes)
    train, query = authors_query_split(targets, fraction=0.1)
    assert train.tolist() == train_idx and query.tolist() == val_idx
    # 12 epochs of losses, no snapshot 0 (authors_config), by position in the split
    epochs = 12
    losses = np.exp(-np.outer(rng.uniform(0.05, 0.3, n), np.arange(epochs))) + rng.normal(
        0, 0.02, (n, epochs))
    losses[rng.choice(n, 20)] = np.round(losses[rng.choice(n, 20)], 1)  # some equal scores
    tr_losses, q_losses = losses[train].T, losses[query].T  # (E, N) as the authors stack them
    tr_lab, q_lab = targets[train], targets[query]
    want = reference_cld_sort(tr_losses, q_losses, tr_lab, q_lab, num_classes)
    scores = cld_scores(tr_losses.T, tr_lab, q_losses.T, q_lab)
    for k in (5, 20):
        expected = np.sort(np.concatenate([want[str(c)][:k] for c in range(num_classes)]))
        got = authors_select(scores, tr_lab, q_lab, k_per_class=k)
        assert got.tolist() == expected.tolist()
    assert authors_config().record_initial is False


def test_a_class_without_query_samples_is_skipped_as_in_the_reference():
    labels = np.array([0, 0, 1, 1, 2, 2])
    scores = np.array([0.1, 0.9, 0.5, 0.4, 0.3, 0.2])
    assert authors_select(scores, labels, [0, 1], k_per_class=1).tolist() == [1, 2]
