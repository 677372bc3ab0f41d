"""Built-in datasets and models for demos and tests, available offline.

- ``digits``: scikit-learn's 1,797 real 8x8 handwritten digits, as a ``datasets.DatasetDict``
  with ``pixel_values`` (float32, 1x8x8, scaled to [0, 1]) and ``label`` (``ClassLabel``).
- ``mnist1d``: MNIST-1D (the ``mnist1d`` package generates it offline with ``make_dataset``),
  40-sample 1-D signals presented as 1x1x40 images.

Models are ``transformers`` models built from a config (no download): a small ResNet for
images, a small BERT for text, whose WordPiece tokenizer is trained on the training texts with
the ``tokenizers`` library (:func:`train_text_tokenizer`).
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "BUILTIN_DATASETS",
    "load_builtin_dataset",
    "make_image_classifier",
    "make_text_classifier",
    "train_text_tokenizer",
    "describe_builtin_model",
]

BUILTIN_DATASETS = ("digits", "mnist1d")


def _to_dataset_dict(x_train, y_train, x_test, y_test, num_classes: int, description: str):
    import datasets

    shape = tuple(x_train.shape[1:])
    features = datasets.Features(
        {
            "pixel_values": datasets.Array3D(shape=shape, dtype="float32"),
            "label": datasets.ClassLabel(names=[str(i) for i in range(num_classes)]),
        }
    )
    info = datasets.DatasetInfo(description=description, features=features)

    def make(x, y, split):
        return datasets.Dataset.from_dict(
            {"pixel_values": x.astype(np.float32), "label": y.astype(np.int64)},
            features=features, info=info, split=split,
        )

    return datasets.DatasetDict(
        {"train": make(x_train, y_train, "train"), "test": make(x_test, y_test, "test")}
    )


def load_builtin_dataset(name: str = "digits", *, seed: int = 0, test_fraction: float = 0.25):
    """A built-in dataset as a ``DatasetDict`` with ``train`` and ``test`` splits.

    Parameters
    ----------
    name : {"digits", "mnist1d"}
    seed : int, default 0
        Seed of the stratified train/test split (digits) or of the generator (mnist1d).
    test_fraction : float, default 0.25
        Share of digits held out as the test split (MNIST-1D has its own: 4000/1000).

    Examples
    --------
    >>> ds = load_builtin_dataset("digits")
    >>> ds["train"].num_rows, ds["test"].num_rows, ds["train"].features["pixel_values"].shape
    (1347, 450, (1, 8, 8))
    """
    if name == "digits":
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split

        bunch = load_digits()
        x = (bunch.images / 16.0)[:, None, :, :]  # (N, 1, 8, 8) in [0, 1]
        x_tr, x_te, y_tr, y_te = train_test_split(
            x, bunch.target, test_size=test_fraction, random_state=seed, stratify=bunch.target
        )
        return _to_dataset_dict(x_tr, y_tr, x_te, y_te, 10,
                                "scikit-learn digits: 1,797 real 8x8 handwritten digits")
    if name == "mnist1d":
        from mnist1d.data import get_dataset_args, make_dataset

        args = get_dataset_args()
        args.seed = seed
        data = make_dataset(args)
        x_tr = np.asarray(data["x"], dtype=np.float32)[:, None, None, :]
        x_te = np.asarray(data["x_test"], dtype=np.float32)[:, None, None, :]
        return _to_dataset_dict(x_tr, np.asarray(data["y"]), x_te, np.asarray(data["y_test"]), 10,
                                "MNIST-1D (generated offline with mnist1d.make_dataset)")
    raise ValueError(
        f"name == {name!r} is not a built-in dataset; choose one of {list(BUILTIN_DATASETS)} or "
        f"pass a saved dataset directory."
    )


def make_image_classifier(num_labels: int, *, num_channels: int = 1, width: int = 16,
                          seed: int | None = None):
    """A small ``transformers`` ResNet for image classification, built from a config.

    Parameters
    ----------
    num_labels : int
    num_channels : int, default 1
    width : int, default 16
        Channels of the stem and first stage (the second stage has twice as many).
    seed : int, optional
        Seed for the initial weights.

    Examples
    --------
    >>> model = make_image_classifier(10)
    >>> type(model).__name__, model.config.num_labels
    ('ResNetForImageClassification', 10)
    """
    import torch
    from transformers import ResNetConfig, ResNetForImageClassification

    config = ResNetConfig(
        num_channels=num_channels,
        embedding_size=width,
        hidden_sizes=[width, 2 * width],
        depths=[1, 1],
        layer_type="basic",
        num_labels=num_labels,
        downsample_in_first_stage=False,
    )
    if seed is not None:
        torch.manual_seed(seed)
    return ResNetForImageClassification(config)


SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


def train_text_tokenizer(texts, *, vocab_size: int = 4000, max_length: int = 128):
    """A BERT-style WordPiece tokenizer trained on ``texts`` (``tokenizers``; no download).

    Lower-cased, ``[CLS] text [SEP]``, special tokens ``[PAD] [UNK] [CLS] [SEP] [MASK]``;
    returned as a ``transformers`` fast tokenizer (``save_pretrained`` writes
    ``tokenizer.json``), so the proxy model can be loaded with its tokenizer.

    Parameters
    ----------
    texts : iterable of str
        The training texts (never the test split).
    vocab_size : int, default 4000
        Upper bound; a small corpus gives fewer tokens.
    max_length : int, default 128
        ``model_max_length`` of the tokenizer.

    Examples
    --------
    >>> tok = train_text_tokenizer(["the cat sat", "the dog ran"], vocab_size=50)
    >>> tok.convert_ids_to_tokens(tok("The cat ran")["input_ids"])
    ['[CLS]', 'the', 'cat', 'ran', '[SEP]']
    """
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=list(SPECIAL_TOKENS),
                                        show_progress=False)
    tokenizer.train_from_iterator((str(t) for t in texts), trainer=trainer)
    cls, sep = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
        sep_token="[SEP]", mask_token="[MASK]", model_max_length=max_length)


TEXT_MODEL = {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
              "intermediate_size": 128}
"""The built-in text classifier: a BERT this small trains in seconds on a CPU."""


def make_text_classifier(num_labels: int, tokenizer, *, max_length: int = 128,
                         seed: int | None = None):
    """A small ``transformers`` BERT for sequence classification, built from a config.

    Parameters
    ----------
    num_labels : int
    tokenizer : the tokenizer whose vocabulary it embeds (:func:`train_text_tokenizer`)
    max_length : int, default 128
        Longest input (position embeddings).
    seed : int, optional

    Examples
    --------
    >>> tok = train_text_tokenizer(["a b c"], vocab_size=30)
    >>> model = make_text_classifier(3, tok, seed=0)
    >>> type(model).__name__, model.config.num_labels, model.config.hidden_size
    ('BertForSequenceClassification', 3, 64)
    """
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    config = BertConfig(vocab_size=len(tokenizer), max_position_embeddings=max_length,
                        num_labels=num_labels, pad_token_id=tokenizer.pad_token_id, **TEXT_MODEL)
    if seed is not None:
        torch.manual_seed(seed)
    return BertForSequenceClassification(config)


def describe_builtin_model(task: str) -> str:
    """How the cards name the built-in model of ``task``.

    Examples
    --------
    >>> describe_builtin_model("text-classification")
    'BERT (transformers, built from a config: hidden 64, 2 layers, 2 heads; WordPiece tokenizer trained on the training split)'
    """
    if task == "text-classification":
        return (f"BERT (transformers, built from a config: hidden {TEXT_MODEL['hidden_size']}, "
                f"{TEXT_MODEL['num_hidden_layers']} layers, {TEXT_MODEL['num_attention_heads']} "
                f"heads; WordPiece tokenizer trained on the training split)")
    return ("ResNet (transformers, built from a config: embedding 16, hidden sizes [16, 32], "
            "depths [1, 1])")
