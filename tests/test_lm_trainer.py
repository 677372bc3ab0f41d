"""CLD for language models with transformers' Trainer and Seq2SeqTrainer (cld_hf.callback): a
causal LM (plain and under PEFT without ``task_type``) and a T5, label-free and grouped; one
finite score per document and recorded losses equal to ``model(**doc).loss`` of each document
alone at the recorded weights.

Regression tests for the language-model issue: ``No label column found`` without a class
column, and ``Seq2SeqTrainer`` working only with an invented class column.
"""

from __future__ import annotations

import numpy as np
import pytest

from lm_helpers import (
    assert_recorded_losses_are_the_models_own,
    bpe_tokenizer,
    docstring_corpus,
    tiny_gpt2,
    tiny_t5,
    tokenized_corpus,
    weights_callback,
)

from cld_hf import CLDCallback, select_coreset

pytestmark = pytest.mark.slow


def _args(tmp_path, cls=None, **options):
    from transformers import TrainingArguments

    defaults = dict(num_train_epochs=3, per_device_train_batch_size=8,
                    per_device_eval_batch_size=8, learning_rate=5e-3, report_to=[],
                    use_cpu=True, logging_strategy="no", save_strategy="no", disable_tqdm=True,
                    seed=0)
    defaults.update(options)
    return (cls or TrainingArguments)(str(tmp_path / "run"), **defaults)


@pytest.fixture(scope="module")
def causal_corpus():
    """Tokenised docstrings (``input_ids``, ``attention_mask``, ``source``)."""
    return tokenized_corpus(40, 16, max_length=48)


def _causal_docs(dataset):
    return [{"input_ids": ids, "labels": ids} for ids in dataset["input_ids"]]


def _train_causal(tmp_path, corpus, model, *, add_with_trainer=False, **options):
    from transformers import DataCollatorForLanguageModeling, Trainer

    train, query = corpus
    options.setdefault("progress", False)
    weights = weights_callback()
    collator = DataCollatorForLanguageModeling(bpe_tokenizer(), mlm=False)
    trainer = Trainer(model=model, args=_args(tmp_path), train_dataset=train,
                      data_collator=collator, callbacks=[weights])
    cld = CLDCallback(query, trainer=trainer if add_with_trainer else None, **options)
    trainer.add_callback(cld)
    trainer.train()
    return cld, weights


def test_causal_lm_with_trainer_is_label_free_without_a_class_column(tmp_path, causal_corpus):
    """Regression: 'No label column found' for a corpus without classes."""
    model = tiny_gpt2(len(bpe_tokenizer()))
    cld, weights = _train_causal(tmp_path, causal_corpus, model)
    assert cld.recorder.grouping.kind == "none" and cld.recorder.loss_type == "causal_lm"
    assert cld.scores().shape == (40,) and np.isfinite(cld.scores()).all()
    assert_recorded_losses_are_the_models_own(cld.store, model, _causal_docs(causal_corpus[0]),
                                              weights.weights)


def test_causal_lm_grouped_by_source_reads_the_column_through_the_trainer(tmp_path,
                                                                          causal_corpus):
    model = tiny_gpt2(len(bpe_tokenizer()))
    with pytest.raises(ValueError, match=r"group_column 'source' is not in the training set the "
                                         r"Trainer feeds.*CLDCallback\(query, trainer=trainer"):
        _train_causal(tmp_path / "a", causal_corpus, tiny_gpt2(len(bpe_tokenizer())),
                      group_column="source")
    cld, weights = _train_causal(tmp_path / "b", causal_corpus, model, add_with_trainer=True,
                                 group_column="source")
    grouping = cld.recorder.grouping
    assert grouping.kind == "group" and grouping.names == tuple(sorted(set(
        causal_corpus[0]["source"])))
    assert_recorded_losses_are_the_models_own(cld.store, model, _causal_docs(causal_corpus[0]),
                                              weights.weights)
    scored = cld.scored_dataset()
    assert scored["source"][:] == causal_corpus[0]["source"][:]
    picked = select_coreset(scored, size=len(grouping.names) * 2, label_column="cld_group")
    assert sorted(set(picked["source"])) == list(grouping.names)  # one budget per group


def test_a_plain_peft_model_with_trainer_records_the_shifted_loss(tmp_path, causal_corpus):
    """Regression: a PeftModel without task_type recorded the unshifted token loss (7.3400 where
    the model's loss was 7.4863) and every score was 1.0."""
    from peft import LoraConfig, PeftModel, get_peft_model

    pytest.importorskip("peft")
    model = get_peft_model(tiny_gpt2(len(bpe_tokenizer())), LoraConfig(
        r=4, lora_alpha=8, target_modules=["c_attn"], fan_in_fan_out=True))
    assert type(model) is PeftModel
    cld, weights = _train_causal(tmp_path, causal_corpus, model)
    assert cld.recorder.loss_type == "causal_lm"
    assert_recorded_losses_are_the_models_own(cld.store, model, _causal_docs(causal_corpus[0]),
                                              weights.weights)
    assert not np.allclose(cld.scores(), 1.0)


@pytest.fixture(scope="module")
def seq2seq_corpus():
    """Docstrings as a copy task: the text's first 6 words as the target of the text."""
    tok = bpe_tokenizer()
    train, query = docstring_corpus(n_train=40, n_query=16)

    def tokenize(batch):
        enc = tok(batch["text"], truncation=True, max_length=48)
        targets = [" ".join(t.split()[:6]) + tok.eos_token for t in batch["text"]]
        enc["labels"] = tok(targets)["input_ids"]
        return enc

    return tuple(d.map(tokenize, batched=True, remove_columns=["text"]) for d in (train, query))


@pytest.mark.parametrize("grouped", [False, True])
def test_seq2seq_trainer_records_the_mean_target_token_loss(tmp_path, seq2seq_corpus, grouped):
    """Regression: Seq2SeqTrainer with a tiny T5 worked only when a class column was invented."""
    from transformers import DataCollatorForSeq2Seq, Seq2SeqTrainer, Seq2SeqTrainingArguments

    train, query = seq2seq_corpus
    model = tiny_t5(len(bpe_tokenizer()))
    weights = weights_callback()
    trainer = Seq2SeqTrainer(
        model=model, args=_args(tmp_path, Seq2SeqTrainingArguments), train_dataset=train,
        data_collator=DataCollatorForSeq2Seq(bpe_tokenizer(), model=model), callbacks=[weights])
    options = {"group_column": "source"} if grouped else {}
    cld = CLDCallback(query, trainer=trainer, progress=False, **options)
    trainer.add_callback(cld)
    trainer.train()
    assert cld.recorder.loss_type == "seq2seq"
    assert cld.recorder.grouping.kind == ("group" if grouped else "none")
    assert np.isfinite(cld.scores()).all() and cld.scores().shape == (len(train),)
    docs = [{"input_ids": r["input_ids"], "attention_mask": r["attention_mask"],
             "labels": r["labels"]} for r in train]
    assert_recorded_losses_are_the_models_own(cld.store, model, docs, weights.weights)


def test_train_pass_of_a_causal_lm_with_gradient_accumulation(tmp_path, causal_corpus):
    """The training step passes num_items_in_batch (label tokens of the whole accumulated step),
    so the model's loss is a sum over those: the check against it rescales. With a zero learning
    rate every training-pass snapshot is the initial loss of each document."""
    from transformers import DataCollatorForLanguageModeling, Trainer

    train, query = causal_corpus
    model = tiny_gpt2(len(bpe_tokenizer()))
    weights = weights_callback()
    trainer = Trainer(model=model, args=_args(tmp_path, gradient_accumulation_steps=2,
                                              learning_rate=0.0),
                      train_dataset=train, callbacks=[weights],
                      data_collator=DataCollatorForLanguageModeling(bpe_tokenizer(), mlm=False))
    cld = CLDCallback(query, trainer=trainer, mode="train_pass", progress=False)
    trainer.add_callback(cld)
    trainer.train()
    assert cld.recorder.loss_type == "causal_lm"
    assert_recorded_losses_are_the_models_own(cld.store, model, _causal_docs(train),
                                              weights.weights[:1] * 4)
