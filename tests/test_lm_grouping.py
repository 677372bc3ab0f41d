"""Label-free and grouped CLD (cld_hf.recording.indexing.resolve_groups, RecorderConfig): a
token-level ``labels`` column is never a class, token data without classes is label-free, a
``group_column`` gives the per-group form, and the store, the scored dataset and
``select_coreset`` work label-free too."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from datasets import Dataset

from lm_helpers import bpe_tokenizer, tiny_gpt2, tokenized_corpus

from cld_hf import LossRecorder, RecorderConfig, class_budgets, select_coreset
from cld_hf.recording.indexing import GROUP_COLUMN, resolve_groups


def _lm(n, **extra):
    return Dataset.from_dict({"input_ids": [[1, 2, 3]] * n, "labels": [[1, 2, 3]] * n, **extra})


def test_token_labels_are_never_a_class_and_token_data_is_label_free():
    grouping, train, query = resolve_groups(_lm(3), _lm(2))
    assert (grouping.kind, grouping.implicit) == ("none", True)
    assert train.tolist() == [0, 0, 0] and query.tolist() == [0, 0]
    with_class = _lm(3, label=[2, 0, 2])
    grouping, train, _ = resolve_groups(with_class, _lm(1, label=[0]))
    assert (grouping.kind, grouping.column, train.tolist()) == ("class", "label", [2, 0, 2])


def test_string_groups_are_numbered_in_sorted_order_over_both_sets():
    train, query = _lm(3, source=["os", "json", "os"]), _lm(2, source=["re", "json"])
    grouping, train_ids, query_ids = resolve_groups(train, query, group_column="source")
    assert grouping.names == ("json", "os", "re")
    assert train_ids.tolist() == [1, 0, 1] and query_ids.tolist() == [2, 0]


@pytest.mark.parametrize("kwargs, datasets, match", [
    ({"group_column": "task"}, (_lm(2), _lm(1)), r"group_column 'task' is not in train_dataset"
                                                 r".*Current columns in the dataset"),
    ({}, (Dataset.from_dict({"x": [1.0]}),) * 2, r"No class column found.*label_column=.*"
                                                 r"label_free=True.*group_column="),
    ({"group_column": "labels"}, (_lm(2), _lm(1)), "holds a sequence per row"),
    ({"label_column": "labels"}, (_lm(2), _lm(1)), r"token-level 'labels' column .* is not a "
                                                   r"class.*label_free=True"),
])
def test_bad_groupings_name_the_argument_and_the_fix(kwargs, datasets, match):
    with pytest.raises(ValueError, match=match):
        resolve_groups(*datasets, **kwargs)


def test_one_grouping_option_at_a_time():
    with pytest.raises(ValueError, match=r"label_column='label' and label_free=True both say"):
        RecorderConfig(label_column="label", label_free=True)
    with pytest.raises(TypeError, match="group_column must be a str"):
        RecorderConfig(group_column=3)


@pytest.fixture(scope="module")
def tokenized():
    return tokenized_corpus(24, 16, max_length=32)


def _recorder(tmp_path, tokenized, **options):
    from transformers import DataCollatorForLanguageModeling

    train, query = tokenized
    return LossRecorder(train, query, output_dir=tmp_path / "cld", progress=False,
                        sweep_batch_size=5,
                        collate_fn=DataCollatorForLanguageModeling(bpe_tokenizer(), mlm=False),
                        **options)


def _train_a_bit(model, seed):
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(seed)))


@pytest.mark.parametrize("options", [{}, {"label_free": True}, {"group_column": "source"}])
def test_a_custom_loop_records_label_free_or_grouped_and_selects(tmp_path, tokenized, options):
    recorder = _recorder(tmp_path, tokenized, **options)
    model = tiny_gpt2(len(bpe_tokenizer()))
    for epoch in range(4):
        _train_a_bit(model, epoch)
        recorder.record(model, epoch=epoch)
    assert recorder.loss_type == "causal_lm"
    scores = recorder.scores()
    assert scores.shape == (24,) and np.isfinite(scores).all()
    grouped = "group_column" in options
    store = recorder.read_store()
    assert store.metadata["grouping"]["kind"] == ("group" if grouped else "none")
    if not grouped:
        assert store.train_labels.tolist() == [0] * 24
    scored = recorder.scored_dataset()
    names = scored.features[GROUP_COLUMN].names  # the groups of both sets
    assert names == (sorted(set(tokenized[0]["source"]) | set(tokenized[1]["source"]))
                     if grouped else ["all"])
    present = np.unique(np.asarray(scored[GROUP_COLUMN][:]))
    core = select_coreset(scored, size=len(present) * 2, label_column=GROUP_COLUMN)
    per_group = np.bincount(np.asarray(core[GROUP_COLUMN][:]), minlength=len(names))
    budgets = class_budgets(recorder.train_labels, size=len(present) * 2)  # equal per group
    assert {int(g): int(per_group[g]) for g in present} == {int(g): int(k)
                                                           for g, k in budgets.items()}
    if not grouped:  # one budget: the highest scores overall
        assert sorted(core["sample_index"][:]) == sorted(np.argsort(-scores, kind="stable")[:2])


def test_resuming_checks_the_groups(tmp_path, tokenized):
    recorder = _recorder(tmp_path, tokenized, group_column="source")
    recorder.record(tiny_gpt2(len(bpe_tokenizer())), epoch=0)
    train, query = tokenized
    relabelled = train.map(lambda r: {"source": "x" + r["source"][:2]})
    with pytest.raises(ValueError, match=r"recorded per group of 'source' \(10 groups\), "
                                         r"groups \['bisect'"):
        LossRecorder(relabelled, query.map(lambda r: {"source": "x" + r["source"][:2]}),
                     output_dir=tmp_path / "cld", group_column="source", if_exists="resume",
                     progress=False)


def test_a_classifier_without_a_class_column_says_how_to_go_label_free(tmp_path):
    """Token data with classification logits: the implicit label-free grouping is refused."""
    from transformers import BertConfig, BertForSequenceClassification

    train = Dataset.from_dict({"input_ids": [[2, 3, 4]] * 4, "category": [0, 1, 0, 1]})
    model = BertForSequenceClassification(BertConfig(
        vocab_size=10, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=16, num_labels=2))
    recorder = LossRecorder(train, train, output_dir=tmp_path / "cld", progress=False)
    with pytest.raises(ValueError, match=r"classification logits.*no class column.*"
                                         r"label_column=.*label_free=True"):
        recorder.record(model, epoch=0)
    explicit = LossRecorder(train, train, output_dir=tmp_path / "cld2", progress=False,
                            label_column="category")
    explicit.record(model, epoch=0)
