"""Language-model fixtures of the ``test_lm_*`` tests: a real text corpus (docstrings of Python
standard-library modules), a BPE tokenizer trained on it locally, tiny GPT-2 / T5 models built from
configs, and an independent per-document loss: ``model(**doc).loss`` of each document alone."""

from __future__ import annotations

import functools
import inspect

import numpy as np
import torch

MODULES = ("json", "os.path", "collections", "textwrap", "string", "functools", "itertools",
           "heapq", "bisect", "shlex", "fnmatch", "difflib", "statistics")


@functools.lru_cache(maxsize=None)
def _docstrings(max_chars: int) -> tuple:
    import importlib

    seen, out = set(), []
    for module_name in MODULES:
        module = importlib.import_module(module_name)
        for name in sorted(dir(module)):
            if name.startswith("_"):
                continue
            doc = inspect.getdoc(getattr(module, name))
            if not doc or len(doc) < 60:
                continue
            text = " ".join(doc.split())[:max_chars]
            if text in seen:
                continue
            seen.add(text)
            out.append((text, module_name.split(".")[0]))
    return tuple(out)


def docstring_corpus(n_train: int = 40, n_query: int = 16, *, max_chars: int = 160, seed: int = 0,
                     per_source: int = 2):
    """``(train, query)`` datasets of standard-library docstrings: ``text`` and ``source`` (the
    module). The query set takes up to ``n_query`` rows, at most ``per_source`` per module, of
    the modules the training set has."""
    import datasets

    rows = _docstrings(max_chars)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(rows))
    rows = [rows[i] for i in order]
    query, rest = [], []
    for text, source in rows:
        taken = sum(1 for _, s in query if s == source)
        (query if len(query) < n_query and taken < per_source else rest).append(
            (text, source))
    query_sources = {s for _, s in query}
    train = [r for r in rest if r[1] in query_sources][:n_train]

    def make(part):
        return datasets.Dataset.from_dict({"text": [t for t, _ in part],
                                           "source": [s for _, s in part]})

    return make(train), make(query)


def tokenized_corpus(n_train: int, n_query: int, *, max_length: int = 40):
    """:func:`docstring_corpus` tokenised for a causal LM: ``input_ids``, ``attention_mask``,
    ``source``."""
    tok = bpe_tokenizer()
    return tuple(d.map(lambda b: tok(b["text"], truncation=True, max_length=max_length),
                       batched=True, remove_columns=["text"])
                 for d in docstring_corpus(n_train=n_train, n_query=n_query))


@functools.lru_cache(maxsize=None)
def bpe_tokenizer(vocab_size: int = 300):
    """A byte-level BPE tokenizer trained on the corpus in a second (``<pad>``, ``<eos>``,
    ``<unk>``, and ``<s>`` for T5's decoder start)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    texts = [t for t, _ in _docstrings(400)]
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(texts, trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=["<pad>", "<eos>", "<unk>", "<s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False))
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>",
                                   unk_token="<unk>", bos_token="<s>")


def tiny_gpt2(vocab_size: int, seed: int = 0, *, positions: int = 256):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    cfg = GPT2Config(vocab_size=vocab_size, n_positions=positions, n_embd=32, n_layer=1,
                     n_head=2, n_inner=64, pad_token_id=0, eos_token_id=1, bos_token_id=1,
                     resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    return GPT2LMHeadModel(cfg)


def tiny_t5(vocab_size: int, seed: int = 0):
    from transformers import T5Config, T5ForConditionalGeneration

    torch.manual_seed(seed)
    cfg = T5Config(vocab_size=vocab_size, d_model=32, d_kv=8, d_ff=64, num_layers=1,
                   num_decoder_layers=1, num_heads=2, dropout_rate=0.0, pad_token_id=0,
                   eos_token_id=1, decoder_start_token_id=3)
    return T5ForConditionalGeneration(cfg)


def per_document_losses(model, docs) -> np.ndarray:
    """The model's own loss of each document alone: ``model(**doc).loss`` (no cld_hf code).

    ``docs`` are dicts of token lists: ``input_ids`` and ``labels`` (-100 where no loss is
    taken), and for seq2seq ``attention_mask``."""
    model.eval()
    out = []
    with torch.no_grad():
        for doc in docs:
            inputs = {k: torch.tensor([v]) for k, v in doc.items()
                      if k in ("input_ids", "labels", "attention_mask")}
            out.append(float(model(**inputs, use_cache=False).loss))
    return np.asarray(out)


def load_weights(model, path):
    """``model`` with the weights of a checkpoint folder (``model.safetensors``)."""
    import os

    from safetensors.torch import load_file

    state = load_file(os.path.join(path, "model.safetensors"))
    missing, unexpected = model.load_state_dict(state, strict=False)
    assert not unexpected, unexpected
    # tied weights (lm_head = wte) are saved once
    assert all("lm_head" in k or "decoder.embed_tokens" in k or "encoder.embed_tokens" in k
               for k in missing), missing
    if hasattr(model, "tie_weights"):
        model.tie_weights()
    return model


def weights_callback():
    """A Trainer callback keeping a copy of the model's weights at every CLD snapshot (before
    training and at the end of every epoch), in ``.weights``."""
    from transformers import TrainerCallback

    class WeightsAtSnapshots(TrainerCallback):
        def __init__(self):
            self.weights = []

        def _keep(self, model):
            self.weights.append({k: v.detach().clone() for k, v in model.state_dict().items()})

        def on_train_begin(self, args, state, control, model=None, **kwargs):
            self._keep(model)

        def on_epoch_end(self, args, state, control, model=None, **kwargs):
            self._keep(model)

    return WeightsAtSnapshots()


def assert_recorded_losses_are_the_models_own(store, model, docs, weights, *, atol=1e-4):
    """Every snapshot's training losses equal ``model(**doc).loss`` of each document alone at
    the weights of that snapshot; the model is left with the last weights."""
    recorded = store.train_losses()
    assert recorded.shape == (len(docs), len(weights))
    assert np.isfinite(recorded).all()
    for snapshot, state in enumerate(weights):
        model.load_state_dict(state)
        np.testing.assert_allclose(recorded[:, snapshot], per_document_losses(model, docs),
                                   atol=atol, rtol=0)


def sft_config(out, **options):
    """A small, quiet SFTConfig on CPU: 3 epochs (4 snapshots), batch 8, max_length 64."""
    from trl import SFTConfig

    defaults = dict(num_train_epochs=3, per_device_train_batch_size=8,
                    per_device_eval_batch_size=8, max_length=64, learning_rate=5e-3,
                    report_to=[], use_cpu=True, logging_strategy="no", save_strategy="no",
                    disable_tqdm=True, seed=0, dataset_num_proc=None)
    defaults.update(options)
    return SFTConfig(str(out), **defaults)


def plain_documents(tokenizer, texts, max_length=64):
    """What SFT trains on for plain text, built by hand: the tokens of ``text + eos``,
    truncated to ``max_length``, every token a label (the model shifts them)."""
    docs = []
    for text in texts:
        ids = tokenizer(text + tokenizer.eos_token)["input_ids"][:max_length]
        docs.append({"input_ids": ids, "labels": ids})
    return docs
