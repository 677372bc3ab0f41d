"""Text for ``cld-hf run --task causal-lm``: a corpus that ships with Python, a tokenizer trained
on it, a tiny GPT-2, its collator and its test perplexity.

- :func:`stdlib_docstrings` / :func:`load_stdlib_corpus`: the docstrings of the Python standard
  library (``inspect.getdoc`` of the modules, classes, functions and methods of a fixed list of
  standard packages), one document each, grouped by top-level package (``os``, ``email``,
  ``asyncio``, ...). Deterministic for a given Python version (the version is recorded).
- :func:`train_tokenizer`: a byte-level BPE tokenizer (the ``tokenizers`` library) trained on
  the training documents only, in seconds; :func:`tokenize_corpus` adds ``input_ids``.
- :func:`make_causal_lm`: a ``GPT2LMHeadModel`` built from a small ``GPT2Config`` (no download).
- :class:`CausalLMCollator`: pads a batch, ``labels`` = ``input_ids`` with ``-100`` on padding.
- :func:`perplexity`: ``exp`` of the mean token loss over every predicted token of a set.
"""

from __future__ import annotations

import hashlib
import inspect
import logging
import sys

import numpy as np

from .._validation import check_float, check_int

logger = logging.getLogger(__name__)

__all__ = [
    "STDLIB_GROUPS",
    "EOS_TOKEN",
    "stdlib_docstrings",
    "load_stdlib_corpus",
    "train_tokenizer",
    "tokenize_corpus",
    "make_causal_lm",
    "CausalLMCollator",
    "perplexity",
]

STDLIB_GROUPS: tuple[str, ...] = (
    "asyncio", "collections", "datetime", "decimal", "email", "http", "importlib", "inspect",
    "logging", "multiprocessing", "os", "pathlib", "statistics", "tarfile", "threading",
    "typing", "unittest", "urllib", "xml", "zipfile",
)
"""Top-level standard packages/modules whose docstrings make the corpus, one group each: those
with at least ~35 distinct docstrings of 40+ characters on CPython 3.11 (smaller ones such as
``argparse`` or ``textwrap`` would give a group a query set of one or two documents)."""

EOS_TOKEN = "<|endoftext|>"
"""The one special token: starts and ends every document, pads the batches."""

def _submodules(top):
    """``top`` and its public submodules (sorted), skipping tests, ``__main__`` and modules that
    do not import on this platform. (Standard library only: runs in a fresh interpreter.)"""
    import importlib
    import pkgutil
    import warnings

    skip = {"test", "tests", "idle_test", "__main__"}
    module = importlib.import_module(top)
    yield module
    if not hasattr(module, "__path__"):
        return
    for info in sorted(pkgutil.walk_packages(module.__path__, top + ".", onerror=lambda _: None),
                       key=lambda i: i.name):
        if any(p.startswith("_") or p in skip for p in info.name.split(".")):
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # deprecated modules warn on import
                yield importlib.import_module(info.name)
        except Exception:  # noqa: BLE001 - e.g. asyncio.windows_events on Linux
            continue


def _owned(module, obj):
    """Defined by ``module`` itself, or by a private/C module behind it (``_asyncio``,
    ``posix`` for ``os``), not re-exported from another public module."""
    owner = getattr(getattr(obj, "fget", obj), "__module__", None) or ""
    return owner == module.__name__ or owner.startswith("_") or owner == "posix"


def _members(module):
    """The module, then its classes (each followed by its methods and properties) and
    functions, in sorted name order."""
    import inspect

    yield module
    for name in sorted(vars(module)):
        obj = vars(module)[name]
        if name.startswith("_") or not _owned(module, obj):
            continue
        if inspect.isclass(obj):
            yield obj
            for attr in sorted(vars(obj)):
                member = vars(obj)[attr]
                if isinstance(member, (staticmethod, classmethod)):
                    member = member.__func__
                if attr.startswith("_") or not (inspect.isroutine(member)
                                                or isinstance(member, property)):
                    continue
                if getattr(getattr(member, "fget", member), "__module__", None) in (
                        None, obj.__module__) or _owned(module, member):
                    yield member
        elif inspect.isroutine(obj):
            yield obj


def _collect_docstrings(groups, min_chars):
    """The documents of :func:`stdlib_docstrings`, or ``{"error": message}``."""
    import inspect

    seen_objects, seen_texts, docs = set(), set(), []
    for group in groups:
        try:
            modules = list(_submodules(group))
        except ImportError as err:
            return {"error": f"groups contains {group!r}, which does not import ({err})"}
        for module in modules:
            for obj in _members(module):
                if id(obj) in seen_objects:
                    continue
                seen_objects.add(id(obj))
                text = obj.__doc__ if isinstance(obj, property) else inspect.getdoc(obj)
                if not isinstance(text, str):
                    continue
                text = inspect.cleandoc(text).strip()
                if len(text) < min_chars or text in seen_texts:
                    continue
                seen_texts.add(text)
                docs.append({"text": text, "group": group})
    return docs


def stdlib_docstrings(groups=STDLIB_GROUPS, *, min_chars: int = 40) -> list[dict]:
    """The docstrings of the standard library as documents ``{"text", "group"}``.

    For each group (a top-level standard package or module, in the order given), its modules
    (the package, then its public submodules in sorted order), and in each module the module
    itself, its public classes, their methods and properties, and its public functions, in
    sorted name order: ``inspect.getdoc`` of each (``property.__doc__`` for properties). Objects
    re-exported from another public module are skipped (they belong to that module); each
    object and each text is kept once, at its first occurrence; texts shorter than
    ``min_chars`` characters are dropped.

    The modules are read in a fresh interpreter (``python -I -S``) that imports nothing else:
    libraries change the standard modules they import (torch replaces ``inspect.getfile``,
    transformers adds methods to ``logging.Logger``), so reading them here would make the
    corpus depend on what this process imported before.

    Parameters
    ----------
    groups : sequence of str, default :data:`STDLIB_GROUPS`
        Importable standard modules.
    min_chars : int, default 40

    Returns
    -------
    list of dict with ``text`` (str) and ``group`` (str, the top-level name).

    Examples
    --------
    >>> docs = stdlib_docstrings(["json"])
    >>> docs[0]["group"], docs[0]["text"].split("\\n")[0]
    ('json', 'JSON (JavaScript Object Notation) <https://json.org> is a subset of')
    >>> len(docs) == len({d["text"] for d in docs})
    True
    """
    import json
    import subprocess

    check_int("min_chars", min_chars, min_val=1)
    if isinstance(groups, str):
        raise TypeError(f"groups == {groups!r}: pass a list of module names, e.g. [{groups!r}].")
    groups = [str(g) for g in groups]
    source = "\n\n".join(inspect.getsource(f) for f in (_submodules, _owned, _members,
                                                         _collect_docstrings))
    code = (f"import json, sys\n{source}\n"
            f"print(json.dumps(_collect_docstrings(json.loads(sys.argv[1]), int(sys.argv[2]))))")
    done = subprocess.run([sys.executable, "-I", "-S", "-c", code, json.dumps(groups),
                           str(min_chars)], capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        raise RuntimeError(f"Reading the standard library's docstrings failed in {sys.executable} "
                           f"-I -S:\n{done.stderr[-2000:]}")
    docs = json.loads(done.stdout)
    if isinstance(docs, dict):
        raise ValueError(f"{docs['error']}; pass standard modules, e.g. "
                         f"{list(STDLIB_GROUPS[:4])}.")
    return docs


def load_stdlib_corpus(groups=STDLIB_GROUPS, *, min_chars: int = 40, test_fraction: float = 0.15,
                       max_docs_per_group: int | None = None, seed: int = 0):
    """The standard-library docstrings as ``datasets`` train and test splits, stratified by group.

    Parameters
    ----------
    groups : sequence of str, default :data:`STDLIB_GROUPS`
    min_chars : int, default 40
        See :func:`stdlib_docstrings`.
    test_fraction : float, default 0.15
        Share of each group held out as the test split (at least one document per group).
    max_docs_per_group : int, optional
        Keep at most this many documents of each group (the first ones), before the split: a
        smaller corpus for quick runs and tests.
    seed : int, default 0
        Seed of the test split.

    Returns
    -------
    (train, test, info): ``datasets.Dataset`` objects with ``text`` (string) and ``group``
    (``ClassLabel`` over the groups, in the order given), and a dict describing the corpus (the
    Python version, the number of documents per group, a SHA-256 of the texts).

    Examples
    --------
    >>> train, test, info = load_stdlib_corpus(["json", "csv"], max_docs_per_group=10)
    >>> len(train), len(test), train.features["group"].names
    (16, 4, ['json', 'csv'])
    >>> info["documents"]
    {'json': 10, 'csv': 10}
    """
    import datasets

    from ..splits import stratified_split_indices

    check_float("test_fraction", test_fraction)
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction == {test_fraction}, must be in (0, 1).")
    if max_docs_per_group is not None:
        check_int("max_docs_per_group", max_docs_per_group, min_val=2)
    groups = list(groups) if not isinstance(groups, str) else groups
    docs = stdlib_docstrings(groups, min_chars=min_chars)
    if max_docs_per_group is not None:
        kept, count = [], dict.fromkeys(groups, 0)
        for d in docs:
            if count[d["group"]] < max_docs_per_group:
                kept.append(d)
                count[d["group"]] += 1
        docs = kept
    per_group = {g: sum(d["group"] == g for d in docs) for g in groups}
    small = {g: n for g, n in per_group.items() if n < 2}
    if small:
        raise ValueError(
            f"groups {sorted(small)} have fewer than 2 docstrings of {min_chars}+ characters "
            f"({small}), too few for a test split: drop them from groups or lower min_chars."
        )
    features = datasets.Features({"text": datasets.Value("string"),
                                  "group": datasets.ClassLabel(names=groups)})
    ids = {g: i for i, g in enumerate(groups)}
    labels = np.array([ids[d["group"]] for d in docs], dtype=np.int64)
    full = datasets.Dataset.from_dict(
        {"text": [d["text"] for d in docs], "group": labels.tolist()}, features=features)
    train_idx, test_idx = stratified_split_indices(labels, fraction=test_fraction, seed=seed)
    digest = hashlib.sha256("\0".join(d["text"] for d in docs).encode()).hexdigest()
    info = {"name": "stdlib-docstrings", "python": sys.version.split()[0],
            "documents": per_group, "num_documents": len(docs), "sha256": digest,
            "min_chars": min_chars, "test_fraction": test_fraction, "split_seed": seed}
    return full.select(train_idx), full.select(test_idx), info


def train_tokenizer(texts, *, vocab_size: int = 2048):
    """A byte-level BPE tokenizer trained on ``texts`` (``tokenizers``), with :data:`EOS_TOKEN`.

    Byte-level, so every text encodes (no unknown token). Deterministic for the same texts.

    Parameters
    ----------
    texts : iterable of str
        The training documents (never the query or test documents).
    vocab_size : int, default 2048
        Including the 256 byte tokens and :data:`EOS_TOKEN`.

    Returns
    -------
    tokenizers.Tokenizer

    Examples
    --------
    >>> tok = train_tokenizer(["Return the sum of a and b."] * 20, vocab_size=300)
    >>> tok.decode(tok.encode("Return the sum").ids)
    'Return the sum'
    >>> tok.token_to_id(EOS_TOKEN)
    0
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    check_int("vocab_size", vocab_size, min_val=258)
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[EOS_TOKEN],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tokenizer.train_from_iterator(list(texts), trainer=trainer)
    return tokenizer


def tokenize_corpus(dataset, tokenizer, *, max_length: int = 128):
    """Add ``input_ids``: ``[EOS] + tokens + [EOS]``, truncated to ``max_length`` tokens.

    Parameters
    ----------
    dataset : datasets.Dataset
        With a ``text`` column (kept).
    tokenizer : tokenizers.Tokenizer
        From :func:`train_tokenizer`.
    max_length : int, default 128
        At most this many tokens per document (the model's context).

    Returns
    -------
    datasets.Dataset with ``input_ids`` (list of int32).

    Examples
    --------
    >>> from datasets import Dataset
    >>> tok = train_tokenizer(["the cat sat on the mat"] * 10, vocab_size=280)
    >>> ds = tokenize_corpus(Dataset.from_dict({"text": ["the cat", "the mat " * 50]}), tok,
    ...                      max_length=8)
    >>> [len(ids) for ids in ds["input_ids"]], ds["input_ids"][0][0] == tok.token_to_id(EOS_TOKEN)
    ([4, 8], True)
    """
    import datasets

    check_int("max_length", max_length, min_val=3)
    eos = tokenizer.token_to_id(EOS_TOKEN)
    if eos is None:
        raise ValueError(f"The tokenizer has no {EOS_TOKEN!r} token: make it with "
                         f"train_tokenizer(texts).")
    encoded = tokenizer.encode_batch(list(dataset["text"]))
    ids = [[eos, *e.ids[: max_length - 2], eos] for e in encoded]
    return dataset.add_column("input_ids", ids,
                              feature=datasets.List(datasets.Value("int32")))


def make_causal_lm(vocab_size: int, *, n_layer: int = 2, n_embd: int = 64, n_head: int = 2,
                   n_positions: int = 128, eos_token_id: int = 0, seed: int | None = None):
    """A tiny ``GPT2LMHeadModel`` built from a ``GPT2Config`` (no download).

    Parameters
    ----------
    vocab_size : int
    n_layer, n_embd, n_head : int, default 2, 64, 2
        Depth, width and attention heads (about 0.24 M parameters with a 2048-token vocabulary).
    n_positions : int, default 128
        Context length.
    eos_token_id : int, default 0
        Also the BOS and padding token.
    seed : int, optional
        Seed of the initial weights.

    Examples
    --------
    >>> model = make_causal_lm(300, seed=0)
    >>> type(model).__name__, model.config.n_layer, sum(p.numel() for p in model.parameters())
    ('GPT2LMHeadModel', 2, 127488)
    """
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(vocab_size=vocab_size, n_positions=n_positions, n_embd=n_embd,
                        n_layer=n_layer, n_head=n_head, bos_token_id=eos_token_id,
                        eos_token_id=eos_token_id, pad_token_id=eos_token_id)
    if seed is not None:
        torch.manual_seed(seed)
    model = GPT2LMHeadModel(config)
    model.loss_type = "ForCausalLM"  # what transformers falls back to, without its warning
    return model


class CausalLMCollator:
    """Pad ``input_ids`` to the longest row of the batch; ``labels`` are the inputs with
    ``-100`` on the padding (the model shifts them). Every other column is dropped.

    Parameters
    ----------
    pad_token_id : int
        Written into the padded positions (masked out by ``attention_mask``).

    Examples
    --------
    >>> batch = CausalLMCollator(0)([{"input_ids": [0, 5, 6, 0], "label": 3},
    ...                              {"input_ids": [0, 7, 0]}])
    >>> batch["labels"].tolist(), batch["attention_mask"].tolist()
    ([[0, 5, 6, 0], [0, 7, 0, -100]], [[1, 1, 1, 1], [1, 1, 1, 0]])
    """

    def __init__(self, pad_token_id: int):
        self.pad_token_id = check_int("pad_token_id", pad_token_id, min_val=0)

    def __call__(self, features):
        import torch

        rows = [list(f["input_ids"]) for f in features]
        length = max(len(r) for r in rows)
        ids = torch.full((len(rows), length), self.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(rows), length), dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, : len(r)] = torch.as_tensor(r, dtype=torch.long)
            mask[i, : len(r)] = 1
        labels = ids.masked_fill(mask == 0, -100)
        return {"input_ids": ids, "attention_mask": mask, "labels": labels}

    def __repr__(self) -> str:
        return f"CausalLMCollator(pad_token_id={self.pad_token_id})"


def perplexity(model, dataset, collator, *, batch_size: int = 64) -> tuple[float, int]:
    """``exp`` of the mean next-token loss over every predicted token of ``dataset``.

    Token-weighted (a long document counts by its tokens, not as one), in eval mode, without
    gradients; torch's random state is left as it was.

    Parameters
    ----------
    model : transformers causal language model
    dataset : datasets.Dataset
        With ``input_ids``.
    collator : CausalLMCollator
    batch_size : int, default 64

    Returns
    -------
    (perplexity, number of predicted tokens)

    Examples
    --------
    An untrained model is close to uniform over its vocabulary:

    >>> from datasets import Dataset
    >>> ds = Dataset.from_dict({"input_ids": [[0, 5, 6, 0], [0, 7, 0]]})
    >>> ppl, tokens = perplexity(make_causal_lm(300, seed=0), ds, CausalLMCollator(0))
    >>> tokens, 250 < ppl < 350
    (5, True)
    """
    import torch
    import torch.nn.functional as F

    check_int("batch_size", batch_size, min_val=1)
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    total, count = 0.0, 0
    try:
        with torch.no_grad():
            for start in range(0, len(dataset), batch_size):
                rows = dataset[start : start + batch_size]["input_ids"]
                batch = collator([{"input_ids": r} for r in rows])
                logits = model(input_ids=batch["input_ids"].to(device),
                               attention_mask=batch["attention_mask"].to(device)).logits
                labels = batch["labels"][:, 1:].to(device)
                loss = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]).float(),
                                       labels.reshape(-1), ignore_index=-100, reduction="sum")
                total += float(loss)
                count += int((labels != -100).sum())
    finally:
        model.train(was_training)
    if count == 0:
        raise ValueError("dataset has no token to predict (every row shorter than 2 tokens).")
    return float(np.exp(total / count)), count
