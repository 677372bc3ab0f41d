"""CLD with TRL's SFTTrainer (cld_hf.trl, cld_hf.callback): the raw query set is prepared as the
trainer prepares its training set, one finite score per training document, and the recorded
losses are the model's own loss of each document alone (``model(**doc).loss``) at the recorded
weights, with and without packing, padding-free, completion-only, LoRA, label-free and grouped.

Regression tests for the language-model issue: ``No label column found``; the token ``labels``
column taken for a class; ``KeyError: 'input_ids'`` with a raw query set; an ``IndexError`` with
``packing=True`` / ``padding_free=True``; a plain ``PeftModel`` recording the unshifted loss.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("trl")
pytest.importorskip("peft")

from lm_helpers import (  # noqa: E402
    assert_recorded_losses_are_the_models_own,
    bpe_tokenizer,
    docstring_corpus,
    plain_documents,
    sft_config,
    tiny_gpt2,
    weights_callback,
)

from cld_hf import CLDCallback, select_coreset  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def corpus():
    return docstring_corpus(n_train=40, n_query=16)


def _sft(tmp_path, corpus, *, model=None, peft_config=None, train=None, **config):
    from trl import SFTTrainer

    tok = bpe_tokenizer()
    train_docs = corpus[0] if train is None else train
    return SFTTrainer(model=model if model is not None else tiny_gpt2(len(tok)),
                      args=sft_config(tmp_path / "run", **config), train_dataset=train_docs,
                      processing_class=tok, peft_config=peft_config)


def _record(trainer, query, **options):
    options.setdefault("progress", False)
    cld = CLDCallback(query, trainer=trainer, **options)
    weights = weights_callback()
    trainer.add_callback(cld)
    trainer.add_callback(weights)
    trainer.train()
    return cld, weights


def _rows(dataset):
    return [{"input_ids": r["input_ids"], "labels": r["labels"]} for r in dataset]


def test_raw_query_set_is_prepared_like_the_training_set_and_losses_are_the_models_own(
        tmp_path, corpus):
    train, query = corpus
    trainer = _sft(tmp_path, corpus)
    cld, weights = _record(trainer, query)
    assert "input_ids" in cld.query_dataset.column_names  # prepared by the trainer
    scores = cld.scores()
    assert scores.shape == (len(train),) and np.isfinite(scores).all()
    assert len(set(np.round(scores, 4))) > 1
    assert cld.recorder.grouping.kind == "none"  # no class column: label-free
    # The documents are the trainer's own prepared rows, and what SFT trains on, built by hand.
    tok = bpe_tokenizer()
    assert _rows(cld.recorder.train_dataset) == plain_documents(tok, train["text"])
    assert_recorded_losses_are_the_models_own(
        cld.store, trainer.model, plain_documents(tok, train["text"]), weights.weights)
    query_docs = plain_documents(tok, query["text"])
    np.testing.assert_allclose(  # the query losses too, at the last snapshot
        cld.store.query_losses()[:, -1], _own(trainer.model, query_docs), atol=1e-4)
    scored = cld.scored_dataset()
    assert {"text", "source", "cld_score", "loss_trajectory", "cld_group"} <= set(
        scored.column_names)
    core = select_coreset(scored, fraction=0.25, label_column="cld_group")  # one budget
    assert len(core) == 10


def _own(model, docs):
    from lm_helpers import per_document_losses

    return per_document_losses(model, docs)


def test_packing_records_one_loss_per_original_document(tmp_path, corpus):
    train, query = corpus
    trainer = _sft(tmp_path, corpus, packing=True, max_length=96)
    assert "seq_lengths" in trainer.train_dataset.column_names
    assert len(trainer.train_dataset) < len(train)  # rows are packs
    cld, weights = _record(trainer, query, train_dataset=train, group_column="source")
    scores = cld.scores()
    assert scores.shape == (len(train),) and np.isfinite(scores).all()
    tok = bpe_tokenizer()
    assert_recorded_losses_are_the_models_own(
        cld.store, trainer.model, plain_documents(tok, train["text"], max_length=96),
        weights.weights)
    scored = cld.scored_dataset()  # the documents as given, in their order
    assert scored["text"][:] == train["text"][:]
    assert scored.features["cld_group"].names == sorted(set(train["source"]))
    core = select_coreset(scored, fraction=0.5, label_column="cld_group")
    assert len(core) >= 10  # one budget per source (equal budgets)


def test_a_document_keeps_its_loss_inside_a_pack(corpus):
    """TRL's packing keeps documents apart (position_ids restart, no cache): the loss of a pack
    row is the token-weighted mean of its documents' own losses, so per-document losses from the
    unpacked documents are the losses the trainer trains on."""
    import torch

    trainer = _sft_in_memory(corpus, packing=True, max_length=200)
    model, collate = trainer.model, trainer.data_collator
    row = next(r for r in trainer.train_dataset if len(r["seq_lengths"]) >= 2)
    model.eval()
    with torch.no_grad():
        packed = collate([row])
        pack_loss = float(model(**packed, use_cache=False).loss)
        losses, counts, start = [], [], 0
        for length in row["seq_lengths"]:
            ids = row["input_ids"][start:start + length]
            start += length
            out = model(input_ids=torch.tensor([ids]), labels=torch.tensor([ids]),
                        use_cache=False)
            losses.append(float(out.loss))
            counts.append(length - 1)
    assert pack_loss == pytest.approx(np.average(losses, weights=counts), abs=1e-4)


def _sft_in_memory(corpus, **config):
    import tempfile
    from pathlib import Path

    return _sft(Path(tempfile.mkdtemp(prefix="cld-sft-")), corpus, **config)


def test_padding_free_batches_are_split_into_documents(tmp_path, corpus):
    train, query = corpus
    trainer = _sft(tmp_path, corpus, padding_free=True, max_length=None)
    cld, weights = _record(trainer, query)
    tok = bpe_tokenizer()
    assert_recorded_losses_are_the_models_own(
        cld.store, trainer.model, plain_documents(tok, train["text"], max_length=None),
        weights.weights)


def test_completion_only_loss_is_the_mean_over_the_completion_tokens(tmp_path, corpus):
    import datasets

    def split(ds):
        words = [t.split() for t in ds["text"]]
        return datasets.Dataset.from_dict({
            "prompt": [" ".join(w[:6]) for w in words],
            "completion": [" " + " ".join(w[6:]) for w in words],
            "source": ds["source"][:]})

    train, query = split(corpus[0]), split(corpus[1])
    trainer = _sft(tmp_path, corpus, train=train)
    cld, weights = _record(trainer, query, group_column="source")
    prepared = _rows(trainer.train_dataset)  # the trainer's own rows: prompt tokens masked
    assert all(-100 in d["labels"] for d in prepared)
    assert_recorded_losses_are_the_models_own(cld.store, trainer.model, prepared,
                                              weights.weights)
    assert _rows(cld.query_dataset) == _rows(trainer._prepare_dataset(  # noqa: SLF001
        query, trainer.processing_class, trainer.args, False, None, "check"))


@pytest.mark.parametrize("task_type", [None, "CAUSAL_LM"])
def test_lora_with_and_without_task_type_records_the_models_own_loss(tmp_path, corpus,
                                                                     task_type):
    """Regression: a plain PeftModel (no task_type) recorded the unshifted token loss, and
    every score was 1.0."""
    from peft import LoraConfig, PeftModel, get_peft_model

    tok = bpe_tokenizer()
    kwargs = {} if task_type is None else {"task_type": task_type}
    model = get_peft_model(tiny_gpt2(len(tok)), LoraConfig(
        r=4, lora_alpha=8, target_modules=["c_attn"], fan_in_fan_out=True, **kwargs))
    assert (type(model) is PeftModel) == (task_type is None)
    train, query = corpus
    trainer = _sft(tmp_path, corpus, model=model, learning_rate=5e-2)
    cld, weights = _record(trainer, query)
    assert cld.recorder.loss_type == "causal_lm"
    assert_recorded_losses_are_the_models_own(
        cld.store, trainer.model, plain_documents(tok, train["text"]), weights.weights)
    assert np.isfinite(cld.scores()).all() and not np.allclose(cld.scores(), 1.0)


def test_train_pass_takes_the_trainers_own_token_losses(tmp_path, corpus):
    """mode='train_pass' reads TRL's fused LM head outputs (per-token log-probabilities of the
    trained tokens); with a zero learning rate every snapshot is the initial loss."""
    train, query = corpus
    trainer = _sft(tmp_path, corpus, learning_rate=0.0, padding_free=True, max_length=None)
    cld, weights = _record(trainer, query, mode="train_pass")
    tok = bpe_tokenizer()
    docs = plain_documents(tok, train["text"], max_length=None)
    assert_recorded_losses_are_the_models_own(cld.store, trainer.model, docs,
                                              weights.weights[:1] * 4)


def test_a_constant_label_column_is_a_class_and_token_labels_never_are(tmp_path, corpus):
    """Regression: with a constant 'label' column, SFT's token 'labels' were taken as classes."""
    train, query = (d.add_column("label", [7] * len(d)) for d in corpus)  # 7 > num_labels
    trainer = _sft(tmp_path, corpus, train=train)
    cld, _ = _record(trainer, query)
    assert cld.recorder.grouping.kind == "class" and cld.recorder.grouping.column == "label"
    assert np.isfinite(cld.scores()).all()


def test_without_the_trainer_a_raw_query_set_names_the_fix(tmp_path, corpus):
    """Regression: KeyError: 'input_ids' deep in TRL's collator."""
    from trl import SFTTrainer

    train, query = corpus
    tok = bpe_tokenizer()
    trainer = SFTTrainer(model=tiny_gpt2(len(tok)), args=sft_config(tmp_path),
                         train_dataset=train, processing_class=tok,
                         callbacks=[CLDCallback(query, progress=False)])
    with pytest.raises(ValueError, match=r"SFTTrainer prepares its train_dataset itself.*"
                                         r"CLDCallback\(query_docs, trainer=trainer\)"):
        trainer.train()


def test_packed_rows_without_the_documents_name_the_fix(tmp_path, corpus):
    """Regression: an unclear IndexError with packing=True."""
    train, query = corpus
    trainer = _sft(tmp_path, corpus, packing=True)
    with pytest.raises(ValueError, match=r"packs of several documents.*train_dataset=train_docs"):
        CLDCallback(query, trainer=trainer)
    with pytest.raises(ValueError, match=r"query_dataset holds packs"):
        CLDCallback(trainer.train_dataset, progress=False)
    trainer.add_callback(CLDCallback(query, progress=False))
    with pytest.raises(ValueError, match=r"packs of several documents.*packing=False"):
        trainer.train()  # without the trainer: refused before any sweep


@pytest.mark.parametrize("config, options, match", [
    ({"packing": True}, {"mode": "train_pass"}, r"mode='sweep' \(the default.*packing=False"),
    ({"packing": True, "packing_strategy": "wrapped"}, {}, r"packing_strategy='bfd'"),
    ({"shuffle_dataset": True}, {"mode": "train_pass"}, "shuffle_dataset=False"),
    ({"packing": True, "truncation_mode": "keep_end"}, {}, "truncation_mode='keep_start'"),
])
def test_settings_that_lose_the_documents_are_refused_at_construction(tmp_path, corpus, config,
                                                                      options, match):
    trainer = _sft(tmp_path, corpus, **config)
    with pytest.raises(ValueError, match=match):
        CLDCallback(corpus[1], trainer=trainer, train_dataset=corpus[0], **options)


def test_shuffled_preparation_still_scores_documents_in_their_order(tmp_path, corpus):
    train, query = corpus
    trainer = _sft(tmp_path, corpus, shuffle_dataset=True)
    assert trainer.train_dataset["text"][:] != [t + "<eos>" for t in train["text"]]
    cld, weights = _record(trainer, query, train_dataset=train)
    tok = bpe_tokenizer()
    assert_recorded_losses_are_the_models_own(
        cld.store, trainer.model, plain_documents(tok, train["text"]), weights.weights)
