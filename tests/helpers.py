"""Shared fixtures of the recording, callback and loop tests: tiny data, tiny models, and an
independent loss recomputation (a plain loop over rows, no cld_hf code) to check the recorder."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn

TESTS_DIR = Path(__file__).resolve().parent
REPO_ROOT = TESTS_DIR.parent
PYTHON = sys.executable
HUB_USER = "cld-tester"
"""The user of the Hub test server (tests/hub_server.py)."""


def digits_dataset(n_train=82, n_query=30, *, image=False, seed=0, classes=10):
    """(train, query) ``datasets.Dataset`` from scikit-learn's digits: ``pixel_values``, ``label``.

    ``image=True`` gives ``(1, 8, 8)`` pixel arrays for convolutional models. The query set takes
    ``n_query`` rows spread over the classes (stratified), the training set ``n_train`` others.
    """
    import datasets
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    keep = y < classes
    x, y = (x[keep] / 16.0).astype(np.float32), y[keep].astype(np.int64)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(y))
    x, y = x[order], y[order]
    per_class = n_query // classes + 1
    query_idx = np.concatenate([np.flatnonzero(y == c)[:per_class] for c in range(classes)])
    query_idx = np.sort(query_idx)[:n_query]
    rest = np.setdiff1d(np.arange(len(y)), query_idx)[:n_train]

    def make(idx):
        pix = x[idx].reshape(-1, 1, 8, 8) if image else x[idx]
        feats = datasets.Features({
            "pixel_values": (datasets.Array3D((1, 8, 8), "float32") if image
                             else datasets.List(datasets.Value("float32"), length=64)),
            "label": datasets.ClassLabel(num_classes=classes),
        })
        return datasets.Dataset.from_dict({"pixel_values": pix, "label": y[idx]}, features=feats)

    return make(rest), make(query_idx)


class MLP(nn.Module):
    """A plain ``torch.nn.Module`` whose forward returns ``loss`` and ``logits`` (no dropout, no
    batch norm: training-mode and eval-mode forwards agree)."""

    def __init__(self, num_features=64, num_classes=10, hidden=32, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.net = nn.Sequential(nn.Linear(num_features, hidden), nn.Tanh(),
                                 nn.Linear(hidden, num_classes))

    def forward(self, pixel_values, labels=None):
        logits = self.net(pixel_values.flatten(1))
        out = {"logits": logits}
        if labels is not None:
            out["loss"] = nn.functional.cross_entropy(logits, labels)
        return out


class NoLogits(nn.Module):
    """A model whose output has a loss but no logits."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(64, 10)

    def forward(self, pixel_values, labels=None):
        return {"loss": nn.functional.cross_entropy(self.lin(pixel_values), labels)}


def tiny_resnet(num_classes=10, seed=0):
    from transformers import ResNetConfig, ResNetForImageClassification

    torch.manual_seed(seed)
    cfg = ResNetConfig(num_channels=1, embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1],
                       layer_type="basic", num_labels=num_classes, downsample_in_first_stage=False)
    return ResNetForImageClassification(cfg)


WORDS_POS = ["good", "great", "fine", "nice", "happy", "bright"]
WORDS_NEG = ["bad", "awful", "poor", "sad", "dark", "ugly"]
WORDS_FILL = ["the", "a", "day", "film", "was", "is", "very", "quite"]


def text_datasets(n_train=60, n_query=12, seed=0):
    """(train, query) with a ``text`` column (unused by the model) and ``label`` (0 neg, 1 pos)."""
    import datasets

    rng = np.random.default_rng(seed)

    def make(n):
        texts, labels = [], []
        for i in range(n):
            lab = i % 2
            words = list(rng.choice(WORDS_FILL, size=rng.integers(2, 6)))
            words += list(rng.choice(WORDS_POS if lab else WORDS_NEG, size=rng.integers(1, 3)))
            rng.shuffle(words)
            texts.append(" ".join(words))
            labels.append(lab)
        return datasets.Dataset.from_dict({"text": texts, "label": labels})

    return make(n_train), make(n_query)


def tiny_tokenizer():
    """A WordLevel tokenizer built locally with ``tokenizers`` (no Hub)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]",
                                         *WORDS_POS, *WORDS_NEG, *WORDS_FILL])}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]",
                                   cls_token="[CLS]", sep_token="[SEP]")


def tiny_bert(vocab_size, seed=0):
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(seed)
    cfg = BertConfig(vocab_size=vocab_size, hidden_size=16, num_hidden_layers=1,
                     num_attention_heads=2, intermediate_size=32, max_position_embeddings=32,
                     num_labels=2, hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1)
    return BertForSequenceClassification(cfg)


def recompute_losses(model, dataset, *, batch_size=7):
    """Cross entropy of every row, in row order, with a plain loop (independent of cld_hf)."""
    model.eval()
    pix = torch.tensor(np.asarray(dataset.with_format("numpy")["pixel_values"][:]))
    lab = torch.tensor(np.asarray(dataset.with_format("numpy")["label"][:]))
    out = []
    with torch.no_grad():
        for s in range(0, len(lab), batch_size):
            logits = model(pixel_values=pix[s : s + batch_size])["logits"]
            labels = lab[s : s + batch_size]
            out.append(nn.functional.cross_entropy(logits, labels, reduction="none"))
    return torch.cat(out).numpy()


def load_mlp_checkpoint(path, **kwargs):
    """An :class:`MLP` with the weights of a Trainer checkpoint folder (``model.safetensors``)."""
    from safetensors.torch import load_file

    model = MLP(**kwargs)
    model.load_state_dict(load_file(os.path.join(path, "model.safetensors")))
    return model


def run_torchrun(script, *args, nproc=2, timeout=240):
    """Run ``tests/mp/<script>`` on ``nproc`` CPU processes (gloo) with torchrun; return stdout."""
    env = dict(os.environ, PYTHONPATH=f"{REPO_ROOT}{os.pathsep}{TESTS_DIR}",
               OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="", TOKENIZERS_PARALLELISM="false")
    cmd = [PYTHON, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc),
           "--master_addr", "127.0.0.1", "--master_port", str(_free_port()),
           str(TESTS_DIR / "mp" / script), *map(str, args)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env,
                          cwd=str(REPO_ROOT))
    if proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(cmd)} failed with exit code {proc.returncode}\n"
            f"--- stdout ---\n{proc.stdout[-4000:]}\n--- stderr ---\n{proc.stderr[-8000:]}"
        )
    return proc.stdout


def _free_port():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


_MP_RESULTS = {}


def mp_results():
    """Output folder of ``tests/mp/mp_recording.py`` run once per test session on 2 processes."""
    if "dir" not in _MP_RESULTS:
        import atexit
        import shutil
        import tempfile

        out = Path(tempfile.mkdtemp(prefix="cld-mp-"))
        atexit.register(shutil.rmtree, out, ignore_errors=True)
        run_torchrun("mp_recording.py", out)
        _MP_RESULTS["dir"] = out
    return _MP_RESULTS["dir"]


def recompute_signals(model, dataset, *, batch_size=7):
    """The baselines' signals of every row of ``dataset`` for an :class:`MLP`, in row order,
    with plain torch (independent of cld_hf): ``correct``, ``true_prob``, ``margin``, ``el2n``,
    ``probs``, ``embeddings`` (the input of the last Linear) and ``grad_projection`` (each row's
    gradient of its loss w.r.t. the last Linear's weight and bias, by autograd, projected on the
    mean gradient)."""
    model.eval()
    pix = torch.tensor(np.asarray(dataset.with_format("numpy")["pixel_values"][:]))
    lab = torch.tensor(np.asarray(dataset.with_format("numpy")["label"][:]))
    head = model.net[-1]
    with torch.no_grad():
        feats = torch.cat([model.net[:-1](pix[s : s + batch_size].flatten(1))
                           for s in range(0, len(lab), batch_size)])
        logits = head(feats)
    probs = torch.softmax(logits.double(), dim=1)
    rows = torch.arange(len(lab))
    other = logits.clone()
    other[rows, lab] = -float("inf")
    onehot = nn.functional.one_hot(lab, logits.shape[1]).double()
    grads = []
    for i in range(len(lab)):
        loss = nn.functional.cross_entropy(head(feats[i : i + 1]), lab[i : i + 1])
        gw, gb = torch.autograd.grad(loss, [head.weight, head.bias])
        grads.append(torch.cat([gw.flatten(), gb]).double())
    grads = torch.stack(grads)
    mean = grads.mean(dim=0)
    return {
        "correct": (logits.argmax(dim=1) == lab).numpy(),
        "true_prob": probs[rows, lab].numpy(),
        "margin": (logits[rows, lab] - other.max(dim=1).values).numpy(),
        "el2n": torch.linalg.vector_norm(probs - onehot, dim=1).numpy(),
        "probs": probs.numpy(),
        "embeddings": feats.numpy(),
        "grad_projection": (grads @ mean / torch.linalg.vector_norm(mean)).numpy(),
    }


# ------------------------------------------------------------------ toy problems for the examples
class ToyNet(nn.Module):
    """A linear classifier of 1-feature inputs with fixed initial weights (the docstrings' model)."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(1, 2)
        with torch.no_grad():
            self.lin.weight.copy_(torch.tensor([[1.0], [-1.0]]))
            self.lin.bias.zero_()

    def forward(self, x, labels=None):
        logits = self.lin(x)
        if labels is None:
            return {"logits": logits}
        return {"loss": nn.functional.cross_entropy(logits, labels), "logits": logits}


def temporary_directory() -> str:
    """A temporary folder removed when the interpreter exits."""
    import atexit
    import shutil
    import tempfile

    path = tempfile.mkdtemp(prefix="cld-test-")
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


def toy_recorder(*, epochs: int = 0, **options):
    """A recorder over 4 training and 2 query samples of a toy problem, and its model, after
    ``epochs`` snapshots taken while a bias shift stands in for training (used by docstrings)."""
    from datasets import Dataset

    from cld_hf import LossRecorder

    train = Dataset.from_dict({"x": [[0.0], [1.0], [2.0], [3.0]], "label": [0, 1, 0, 1]})
    query = Dataset.from_dict({"x": [[0.5], [2.5]], "label": [0, 1]})
    model = ToyNet()
    options.setdefault("progress", False)
    recorder = LossRecorder(train, query, output_dir=temporary_directory(), **options)
    for epoch in range(epochs):
        with torch.no_grad():
            model.lin.bias.add_(torch.tensor([0.5, -0.5]) * epoch * epoch)
        recorder.record(model, epoch=epoch)
    return recorder, model


_TOY_CALLBACK = {}


def toy_callback():
    """A CLDCallback after a 3-epoch Trainer run on a toy problem (8 training and 4 query
    samples), trained once per process (used by docstrings)."""
    if "cld" not in _TOY_CALLBACK:
        import contextlib
        import io

        from datasets import Dataset
        from transformers import Trainer, TrainingArguments

        from cld_hf import CLDCallback

        xs = [[0.0], [1.0], [2.0], [3.0], [0.2], [1.2], [2.2], [3.2]]
        train = Dataset.from_dict({"x": xs, "label": [0, 1, 0, 1] * 2})
        query = Dataset.from_dict({"x": [[0.5], [1.5], [2.5], [3.5]], "label": [0, 1, 0, 1]})
        torch.manual_seed(0)
        cld = CLDCallback(query, progress=False, log_summary=False)
        args = TrainingArguments(temporary_directory(), num_train_epochs=3,
                                 per_device_train_batch_size=4, learning_rate=0.5, optim="sgd",
                                 use_cpu=True, report_to=[], disable_tqdm=True,
                                 logging_strategy="no", save_strategy="no")
        trainer = Trainer(model=ToyNet(), args=args, train_dataset=train, callbacks=[cld])
        with contextlib.redirect_stdout(io.StringIO()):
            trainer.train()
        _TOY_CALLBACK["cld"] = cld
    return _TOY_CALLBACK["cld"]



# ------------------------------------------------------------------ recorder tests
def make_recorder(accelerator, data, tmp_path, **kwargs):
    """A LossRecorder over ``data`` in ``tmp_path / "cld"`` (sweep batch 16, no progress bar)."""
    from cld_hf import LossRecorder

    kwargs.setdefault("sweep_batch_size", 16)
    kwargs.setdefault("progress", False)
    train, query = data
    return LossRecorder(train, query, accelerator=accelerator, output_dir=tmp_path / "cld", **kwargs)


def train_epoch(model, train, *, lr=0.5, seed=0, batch_size=16):
    """One epoch of plain SGD over the rows in a shuffled order."""
    from cld_hf import IndexCollator, IndexedDataset
    from cld_hf.recording import INDEX_KEY

    g = torch.Generator().manual_seed(seed)
    loader = torch.utils.data.DataLoader(IndexedDataset(train), batch_size=batch_size,
                                         shuffle=True, generator=g, collate_fn=IndexCollator())
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    model.train()
    for batch in loader:
        batch.pop(INDEX_KEY)
        model(**batch)["loss"].backward()
        opt.step()
        opt.zero_grad()


def assert_signals_match(store, want_by_snapshot, *, final=None, atol=1e-5):
    """The store's signals equal an independent recomputation per snapshot (and final arrays):
    every signal the store holds that :func:`recompute_signals` recomputes, and ``tdds_kl``
    from consecutive recomputed softmaxes."""
    want_by_snapshot = [dict(w) for w in want_by_snapshot]
    for t, w in enumerate(want_by_snapshot):  # the TDDS code's term, written out independently
        if t == 0:
            w["tdds_kl"] = np.zeros(len(w["probs"]))
        else:
            p, q = w["probs"], want_by_snapshot[t - 1]["probs"]
            w["tdds_kl"] = np.abs(p * (np.log(p + 1e-8) - np.log(q + 1e-8))).sum(axis=1)
    names = [n for n in store.signal_names if n in want_by_snapshot[0]]
    assert names, store.signal_names
    for name in names:
        got = store.train_signal(name)
        want = np.stack([w[name] for w in want_by_snapshot], axis=1)
        assert got.shape == want.shape
        if name == "correct":
            assert got.dtype == bool
            np.testing.assert_array_equal(got, want)
        else:
            assert got.dtype == np.float32
            np.testing.assert_allclose(got, want, atol=atol)
    if final is not None:
        for name in (n for n in store.array_names if n in final):
            np.testing.assert_allclose(store.load_array(name), final[name], atol=atol)


DOCTEST_GLOBALS = {"toy_recorder": toy_recorder, "toy_callback": toy_callback}
"""Names the docstrings of cld_hf may use besides their module's own (tests/test_docstrings.py)."""
