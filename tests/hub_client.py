"""The Hub tests' harness: a client process for the real clients, and shared fixtures.

``tests/hub_server.py`` serves a Hub-compatible API on 127.0.0.1 (in a thread of the test
process; the ``hub`` fixture of ``conftest.py``). ``huggingface_hub``, ``datasets`` and
``transformers`` read ``HF_ENDPOINT`` when they are imported, so the pushing and loading code
runs in ONE long-lived Python subprocess per test module, started with ``HF_ENDPOINT`` pointing
at that server, ``HF_HUB_DISABLE_XET=1``, no ``HF_HUB_OFFLINE``, every cache under
``tmp_path`` and ``PYTHONPATH`` on this checkout (so it imports this worktree's ``cld_hf``, not
an installed one). Each test sends it a snippet (``client.run(code)``) and gets back the
snippet's ``result`` value; an exception in the snippet fails the test with its traceback.

A test module uses the fixtures by importing them: ``from hub_client import client, local``.
Every test uses its own repo names; the server is shared by the session.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import textwrap
import threading

import pytest

from helpers import REPO_ROOT

_WORKER = r"""
import contextlib, io, json, sys, traceback
namespace = {"__name__": "hub_client"}
for line in sys.stdin:
    request = json.loads(line)
    out, err = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            exec(compile(request["code"], "<test snippet>", "exec"), namespace)
        reply = {"ok": True, "result": namespace.pop("result", None)}
    except BaseException:
        reply = {"ok": False, "traceback": traceback.format_exc()}
    reply.update(stdout=out.getvalue(), stderr=err.getvalue()[-4000:])
    sys.__stdout__.write(json.dumps(reply, default=repr) + "\n")
    sys.__stdout__.flush()
"""

# The fixtures, shared by the client process (SETUP) and the in-process tests (``local``).
HELPERS = r"""
import json, os, re
import numpy as np
import torch
import yaml
from datasets import ClassLabel, Dataset, Features, List, Value, load_dataset
from cld_hf import add_index_column, select_coreset

SOURCE = "cld-tester/src"

def scored_dataset(n=10):
    # dPrune-style fixture: scores 0..n-1, two classes, a text column, 3-snapshot trajectories;
    # its sample_index names the source it indexes (the 'train' split of cld-tester/src)
    features = Features({"text": Value("string"), "label": ClassLabel(names=["cat", "dog"]),
                         "cld_score": Value("float32"),
                         "loss_trajectory": List(Value("float32"), length=3)})
    ds = Dataset.from_dict(
        {"text": [f"sample {i}" for i in range(n)], "label": [i % 2 for i in range(n)],
         "cld_score": np.arange(n, dtype=np.float32),
         "loss_trajectory": (np.arange(3 * n, dtype=np.float32).reshape(n, 3) / 7).tolist()},
        features=features)
    return add_index_column(ds, name=SOURCE, split="train")

def tiny_bert(seed=0):
    from transformers import BertConfig, BertForSequenceClassification
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=40, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=8, max_position_embeddings=16, num_labels=2)
    return BertForSequenceClassification(config)

def same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sorted(sa) == sorted(sb) and all(torch.equal(sa[k], sb[k]) for k in sa)

def front_matter(text):
    return yaml.safe_load(re.match(r"^---\n(.*?)\n---\n", text, flags=re.S).group(1))

def rows(ds):
    return {"features": repr(ds.features), "rows": ds.to_dict()}

def code_block(text, after):
    # the first fenced code block after the heading `after` in a rendered card
    start = text.index(after)
    match = re.search(r"^(`{3,})[a-z]*\n(.*?)\n\1$", text[start:], flags=re.S | re.M)
    return match.group(2)
"""

SETUP = HELPERS + r"""
from huggingface_hub import HfApi, hf_hub_download
from cld_hf.hub import CoresetHubSpec, HubPushError, push_coreset_to_hub
from cld_hf.hub import errors as hub_errors

TOKEN = os.environ["CLD_TEST_WRITE_TOKEN"]
api = HfApi(token=TOKEN)

def readme(repo_id, repo_type, revision=None):
    path = hf_hub_download(repo_id, "README.md", repo_type=repo_type, revision=revision)
    text = open(path, encoding="utf-8").read()
    return front_matter(text), text

def push_error(*args, **kwargs):
    # push, expecting a HubPushError: its class name and message
    try:
        push_coreset_to_hub(*args, **kwargs)
    except HubPushError as err:
        return {"type": type(err).__name__, "message": str(err)}
    return None

result = "ready"
"""


class HubClient:
    """One Python subprocess, started with the Hub variables set, that runs test snippets."""

    def __init__(self, env: dict, cwd, log_path):
        self._log = open(log_path, "w")
        self._proc = subprocess.Popen(
            [sys.executable, "-u", "-c", _WORKER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=self._log, text=True, env=env, cwd=str(cwd),
        )
        self._replies: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self._proc.stdout:
            self._replies.put(json.loads(line))
        self._replies.put(None)

    def run(self, code: str, timeout: float = 300):
        """Run ``code`` in the subprocess; return its ``result`` variable."""
        self._proc.stdin.write(json.dumps({"code": textwrap.dedent(code)}) + "\n")
        self._proc.stdin.flush()
        reply = self._replies.get(timeout=timeout)
        if reply is None:
            raise RuntimeError(f"the client process died; see {self._log.name}")
        if not reply["ok"]:
            pytest.fail(f"snippet failed in the client process:\n{reply['traceback']}\n"
                        f"stderr:\n{reply['stderr']}", pytrace=False)
        self.stdout, self.stderr = reply["stdout"], reply["stderr"]
        return reply["result"]

    def close(self):
        self._proc.stdin.close()
        try:
            self._proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self._proc.kill()
        self._log.close()


def client_env(hub, home, **extra) -> dict:
    """The environment of a process that talks to the test server (and imports this checkout)."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("HF_", "HUGGING_FACE_", "TRANSFORMERS_", "DATASETS_"))}
    env.update(
        HF_ENDPOINT=hub.url, HF_HUB_DISABLE_XET="1", HF_HUB_DISABLE_TELEMETRY="1",
        HF_HOME=str(home), HF_HUB_CACHE=str(home / "hub"), HF_DATASETS_CACHE=str(home / "datasets"),
        HF_HUB_DISABLE_PROGRESS_BARS="1", HF_DATASETS_DISABLE_PROGRESS_BARS="1",
        TRANSFORMERS_VERBOSITY="error", TOKENIZERS_PARALLELISM="false",
        CLD_TEST_WRITE_TOKEN=hub.write_token,
        PYTHONPATH=os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH")) if p),
    )
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def client(hub, tmp_path_factory):
    """The client process of this test module (see the module docstring)."""
    home = tmp_path_factory.mktemp("hf-home")
    proc = HubClient(client_env(hub, home), home, home / "client.log")
    assert proc.run(SETUP + "\nimport cld_hf\nresult = cld_hf.__file__") == str(
        REPO_ROOT / "cld_hf" / "__init__.py")  # this checkout's cld_hf, not an installed one
    yield proc
    proc.close()


@pytest.fixture(scope="module")
def local():
    """The shared fixtures (scored_dataset, tiny_bert, ...) imported in this process."""
    import types

    namespace = {"__name__": "hub_local"}
    exec(compile(HELPERS, "<HELPERS>", "exec"), namespace)
    return types.SimpleNamespace(**namespace)


@pytest.fixture
def no_network(monkeypatch):
    """Every socket connection attempted during the test fails loudly."""
    import socket

    def refuse(self, address, *args, **kwargs):
        raise AssertionError(f"network access during an offline export: connect({address!r})")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)


def tree(folder) -> dict[str, bytes]:
    """``{path: bytes}`` of every file under ``folder``."""
    return {p.relative_to(folder).as_posix(): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}
