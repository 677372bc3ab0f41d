"""Sample identity: the sample_index column says which dataset it indexes (cld_hf.identity)."""

import json

import numpy as np
import pytest
from datasets import ClassLabel, Dataset, Features, Value

from cld_hf import add_index_column, index_identity, select_coreset, stratified_query_split
from cld_hf.identity import check_source, dataset_fingerprint, source_identity


@pytest.fixture
def source():
    features = Features({"x": Value("int64"), "label": ClassLabel(names=["a", "b", "c"])})
    return Dataset.from_dict({"x": list(range(30)), "label": [0, 1, 2] * 10}, features=features)


def test_the_record_survives_select_save_and_parquet(tmp_path, source):
    ds = add_index_column(source, name="me/src", split="train")
    core = ds.select([3, 7]).remove_columns("x")
    assert core["sample_index"][:] == [3, 7]
    core.save_to_disk(str(tmp_path / "saved"))
    core.to_parquet(str(tmp_path / "core.parquet"))
    from datasets import load_from_disk

    for again in (load_from_disk(str(tmp_path / "saved")),
                  Dataset.from_parquet(str(tmp_path / "core.parquet"))):
        assert index_identity(again) == {"name": "me/src", "split": "train", "num_rows": 30,
                                         "fingerprint": dataset_fingerprint(source)}


def test_a_user_sample_index_column_is_never_taken_for_a_row_index(source):
    """Regression test for the reliability issue: a column already named sample_index was
    silently taken as the coreset index."""
    theirs = source.add_column("sample_index", list(range(100, 130)))
    with pytest.raises(ValueError, match="cld-hf did not write.*rename_column"):
        index_identity(theirs)
    with pytest.raises(ValueError, match="cld-hf did not write"):
        stratified_query_split(theirs)
    with pytest.raises(ValueError, match="cld-hf did not write"):
        select_coreset(theirs.add_column("cld_score", [0.0] * 30), fraction=0.1)


def test_the_fingerprint_sees_order_and_rows_not_transformations(source):
    fp = dataset_fingerprint(source)
    assert dataset_fingerprint(source.map(lambda r: r)) == fp
    assert dataset_fingerprint(source.select(range(29))) != fp
    assert dataset_fingerprint(source.select([1, 0, *range(2, 30)])) != fp
    check_source(source, source_identity(source))
    with pytest.raises(ValueError, match="not the same rows in the same order"):
        check_source(source.shuffle(seed=0), source_identity(source))


def test_a_coreset_of_a_split_indexes_the_source_not_the_training_part(source):
    """Regression test: the README flow pushed indices counting rows of the training part."""
    train, _ = stratified_query_split(source, fraction=0.2, seed=0, source_name="me/src")
    scored = train.add_column("cld_score", np.linspace(0, 1, len(train)).astype(np.float32))
    core = select_coreset(scored, fraction=0.5)
    rebuilt = source.select(core["sample_index"][:])
    assert rebuilt["x"][:] == core["x"][:] and rebuilt["label"][:] == core["label"][:]
    assert index_identity(core)["num_rows"] == len(source) != len(train)
    assert json.loads(core.features["sample_index"].id)["cld_hf_index"]["name"] == "me/src"
