"""The method applied to datasets: select_coreset, add_cld_scores, scored_dataset, the query
split of a Dataset (cld_hf.dataset_adapters)."""

import numpy as np
import pytest
from datasets import ClassLabel, Dataset, Features, List, Value

from cld_hf import (
    add_cld_scores,
    index_identity,
    scored_dataset,
    select_coreset,
    stratified_query_split,
)



@pytest.fixture
def scored():
    features = Features({"x": Value("int64"), "label": ClassLabel(names=["a", "b"]), "cld_score": Value("float32")})
    return Dataset.from_dict(
        {"x": list(range(10, 20)), "label": [0, 1] * 5, "cld_score": np.arange(10, dtype=np.float32)},
        features=features,
    )


def test_select_coreset_keeps_source_index_and_features(scored):
    core = select_coreset(scored, fraction=0.4)
    assert core["sample_index"][:] == [6, 7, 8, 9]
    assert core["x"][:] == [16, 17, 18, 19]
    assert core.features["label"] == scored.features["label"]
    assert core.features["sample_index"].dtype == "int64"
    assert index_identity(core)["num_rows"] == len(scored)  # it says what it indexes
    # a coreset of a coreset still traces back to the original rows
    again = select_coreset(core, size=2)
    assert again["sample_index"][:] == [8, 9]


def test_select_coreset_finds_labels_column_and_named_columns():
    ds = Dataset.from_dict({"labels": [0, 0, 1, 1], "s": [0.1, 0.2, 0.4, 0.3]})
    assert select_coreset(ds, size=2, score_column="s")["sample_index"][:] == [1, 2]
    ds2 = Dataset.from_dict({"y": [0, 0, 1, 1], "cld_score": [0.1, 0.2, 0.4, 0.3]})
    assert select_coreset(ds2, size=2, label_column="y")["sample_index"][:] == [1, 2]
    with pytest.raises(ValueError, match=r"No class column found in the dataset \(columns \['y', "
                                         r"'cld_score'\]\): looked for a scalar integer column "
                                         r"named \['labels', 'label'\]"):
        select_coreset(ds2, size=2)
    with pytest.raises(ValueError, match=r"Column 'cld_score' not in the dataset. Current columns in the dataset: \['labels', 's'\]"):
        select_coreset(ds, size=2)


def test_add_cld_scores_float32_feature_and_errors(scored):
    base = scored.remove_columns("cld_score")
    ds = add_cld_scores(base, np.linspace(0, 1, 10))
    assert ds.features["cld_score"] == Value("float32")
    np.testing.assert_allclose(ds["cld_score"][:], np.linspace(0, 1, 10).astype(np.float32))
    with pytest.raises(ValueError, match="already has a column 'cld_score'"):
        add_cld_scores(ds, np.zeros(10))
    assert add_cld_scores(ds, np.zeros(10), overwrite=True)["cld_score"][:] == [0.0] * 10
    with pytest.raises(ValueError, match="scores has shape .3,. but the dataset has 10 rows"):
        add_cld_scores(base, np.zeros(3))


def test_stratified_query_split_datasets(scored):
    train, query = stratified_query_split(scored, fraction=0.2, seed=0)
    assert len(train) + len(query) == len(scored)
    assert sorted(query["label"][:]) == [0, 1]
    assert set(train["x"][:]).isdisjoint(query["x"][:])
    with pytest.raises(ValueError, match=r"fraction == 1.0, must be in \(0, 1\)"):
        stratified_query_split(scored, fraction=1.0)




def test_the_query_split_carries_each_rows_index_in_the_source(scored):
    train, query = stratified_query_split(scored, fraction=0.2, seed=0, source_name="me/toy",
                                          source_split="train")
    rows = np.concatenate([train["sample_index"][:], query["sample_index"][:]])
    assert sorted(rows.tolist()) == list(range(len(scored)))
    assert train["x"][:] == [scored["x"][i] for i in train["sample_index"][:]]
    record = index_identity(train)
    assert record["name"] == "me/toy" and record["split"] == "train" and record["num_rows"] == 10
    assert index_identity(query) == record


def test_scored_dataset_is_the_one_assembly_of_scores_and_trajectories(scored):
    base = scored.remove_columns("cld_score")
    traj = np.arange(30, dtype=np.float32).reshape(10, 3)
    out = scored_dataset(base, np.linspace(-1, 1, 10), trajectory=traj)
    assert out.features["loss_trajectory"] == List(Value("float32"), length=3)
    np.testing.assert_array_equal(out.with_format("numpy")["loss_trajectory"][:], traj)
    assert out.data.column("loss_trajectory").type.list_size == 3  # a FixedSizeList, no lists
    with pytest.raises(ValueError, match=r"already has the column\(s\) \['cld_score'\]"):
        scored_dataset(out, np.zeros(10))
    with pytest.raises(ValueError, match=r"trajectory has shape \(9, 3\)"):
        scored_dataset(base, np.zeros(10), trajectory=traj[:9])
    with pytest.raises(TypeError, match="must be a datasets.Dataset"):
        scored_dataset([1, 2], [0.0, 1.0])


# ------------------------------------------------------------------ groups and label-free data


def test_select_coreset_groups_label_free_and_by_a_group_column():
    from datasets import Dataset

    ds = Dataset.from_dict({"text": list("abcdef"), "source": ["x", "y", "x", "y", "x", "x"],
                            "labels": [[1, 2], [3], [4], [5], [6], [7]],  # token labels
                            "cld_score": [0.9, 0.1, 0.5, 0.8, 0.2, 0.7]})
    assert select_coreset(ds, size=3, label_free=True)["text"][:] == ["a", "d", "f"]
    # per source: x has 4 rows, y 2; equal budgets of 2 (the top two of each)
    assert select_coreset(ds, size=4, group_column="source")["text"][:] == ["a", "b", "d", "f"]
    with pytest.raises(ValueError, match="No class column found in the dataset"):
        select_coreset(ds, size=3)  # token-level labels are never a class
    with pytest.raises(ValueError, match="label_column and label_free both"):
        select_coreset(ds, size=3, label_column="source", label_free=True)


def test_select_coreset_reads_the_recordings_group_column_by_itself():
    from datasets import ClassLabel, Dataset

    ds = Dataset.from_dict({"label": [0, 0, 0, 0], "cld_group": [0, 1, 0, 1],
                            "cld_score": [0.1, 0.2, 0.3, 0.4]})
    ds = ds.cast_column("cld_group", ClassLabel(names=["os", "json"]))
    core = select_coreset(ds, size=2)
    assert core["cld_score"][:] == pytest.approx([0.3, 0.4])  # one of each group
    assert select_coreset(ds, size=2, label_column="label")["cld_score"][:] == pytest.approx(
        [0.3, 0.4])
