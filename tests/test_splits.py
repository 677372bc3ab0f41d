"""The stratified query split of row indices (cld_hf.splits, NumPy only)."""

import numpy as np

from cld_hf import stratified_split_indices



def test_stratified_split_partitions_and_holds_out_each_class():
    labels = np.repeat(np.arange(5), [100, 50, 20, 3, 1])
    train, query = stratified_split_indices(labels, fraction=0.1, seed=3)
    assert np.array_equal(np.sort(np.concatenate([train, query])), np.arange(len(labels)))
    per_class = np.bincount(labels[query], minlength=5)
    assert per_class.tolist() == [10, 5, 2, 1, 0]  # at least 1 each, a singleton stays in training
    again_train, again_query = stratified_split_indices(labels, fraction=0.1, seed=3)
    assert np.array_equal(query, again_query)
    assert not np.array_equal(query, stratified_split_indices(labels, fraction=0.1, seed=4)[1])


