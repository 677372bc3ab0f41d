"""Pushing coresets, cards and proxy models to the Hub: the real clients against a local Hub.

``tests/hub_server.py`` serves a Hub-compatible API on 127.0.0.1 (in a thread of this process).
``huggingface_hub``, ``datasets`` and ``transformers`` read ``HF_ENDPOINT`` when they are
imported, so the pushing and loading code runs in ONE long-lived Python subprocess started with
``HF_ENDPOINT`` pointing at that server, ``HF_HUB_DISABLE_XET=1``, no ``HF_HUB_OFFLINE`` and every
cache under ``tmp_path``. Each test sends it a snippet (``client.run(code)``) and gets back the
snippet's ``result`` value; an exception in the snippet fails the test with its traceback.
Starting that process once keeps the heavy imports (torch, transformers) to one per module.

Every test uses its own repo names; the server is shared by the module.
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
from hub_server import HubServer

from helpers import HUB_USER as USER

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

# The fixtures, shared by the client process (_SETUP) and the in-process export tests.
_HELPERS = r"""
import json, os, re
import numpy as np
import torch
import yaml
from datasets import ClassLabel, Dataset, Features, List, Value, load_dataset
from cld_hf import select_coreset

def scored_dataset(n=10):
    # dPrune-style fixture: scores 0..n-1, two classes, a text column, 3-snapshot trajectories
    features = Features({"text": Value("string"), "label": ClassLabel(names=["cat", "dog"]),
                         "cld_score": Value("float32"),
                         "loss_trajectory": List(Value("float32"), length=3)})
    return Dataset.from_dict(
        {"text": [f"sample {i}" for i in range(n)], "label": [i % 2 for i in range(n)],
         "cld_score": np.arange(n, dtype=np.float32),
         "loss_trajectory": (np.arange(3 * n, dtype=np.float32).reshape(n, 3) / 7).tolist()},
        features=features)

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
"""

_SETUP = _HELPERS + r"""
from huggingface_hub import HfApi, hf_hub_download
from cld_hf.hub import HubPushError, push_coreset_to_hub

TOKEN = os.environ["CLD_TEST_WRITE_TOKEN"]
api = HfApi(token=TOKEN)

def readme(repo_id, repo_type, revision=None):
    path = hf_hub_download(repo_id, "README.md", repo_type=repo_type, revision=revision)
    text = open(path, encoding="utf-8").read()
    return front_matter(text), text

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
        self.stdout = reply["stdout"]
        return reply["result"]

    def close(self):
        self._proc.stdin.close()
        try:
            self._proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self._proc.kill()
        self._log.close()


@pytest.fixture(scope="module")
def client(hub, tmp_path_factory):
    home = tmp_path_factory.mktemp("hf-home")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("HF_", "HUGGING_FACE_", "TRANSFORMERS_", "DATASETS_"))}
    env.update(
        HF_ENDPOINT=hub.url, HF_HUB_DISABLE_XET="1", HF_HUB_DISABLE_TELEMETRY="1",
        HF_HOME=str(home), HF_HUB_CACHE=str(home / "hub"), HF_DATASETS_CACHE=str(home / "datasets"),
        HF_HUB_DISABLE_PROGRESS_BARS="1", HF_DATASETS_DISABLE_PROGRESS_BARS="1",
        TRANSFORMERS_VERBOSITY="error", TOKENIZERS_PARALLELISM="false",
        CLD_TEST_WRITE_TOKEN=hub.write_token,
    )
    proc = HubClient(env, home, home / "client.log")
    assert proc.run(_SETUP) == "ready"
    yield proc
    proc.close()


# ---------------------------------------------------------------------------- datasets


def test_push_scored_dataset_then_load_dataset_gives_the_same_rows_features_and_scores(client, hub):
    out = client.run("""
        scored = scored_dataset()
        r = push_coreset_to_hub(scored, "cld-tester/rows", fraction=0.4, include_trajectory=True,
                                source_dataset="cld-tester/src", token=TOKEN)
        expected = select_coreset(scored, fraction=0.4)
        loaded = load_dataset("cld-tester/rows", split="train")
        result = {"expected": rows(expected), "loaded": rows(loaded), "repo": r.dataset_repo_id,
                  "scores": loaded["cld_score"][:]}
    """)
    assert out["repo"] == "cld-tester/rows"
    assert out["loaded"] == out["expected"]
    assert out["scores"] == [6.0, 7.0, 8.0, 9.0]  # the top 2 of each class
    assert "List(Value('float32'), length=3)" in out["loaded"]["features"]
    assert "ClassLabel(names=['cat', 'dog'])" in out["loaded"]["features"]
    assert set(hub.files("dataset", "cld-tester/rows")) == {
        ".gitattributes", "README.md", "cld_run.json",
        "data/train-00000-of-00001.parquet", "indices/train-00000-of-00001.parquet"}
    assert len(hub.history("dataset", "cld-tester/rows")) == 2  # create + ONE commit


def test_index_config_rebuilds_the_coreset_from_the_local_source_dataset(client, hub):
    out = client.run("""
        source = scored_dataset(12)
        coreset = select_coreset(source, size=5)
        push_coreset_to_hub(coreset, "cld-tester/idx", source_dataset="cld-tester/src",
                            token=TOKEN)
        pushed = load_dataset("cld-tester/idx", split="train")
        idx = load_dataset("cld-tester/idx", "indices", split="train")
        local = source.remove_columns(["cld_score", "loss_trajectory"])
        rebuilt = local.select(idx["sample_index"][:])
        rebuilt = rebuilt.add_column("cld_score", idx["cld_score"][:], feature=Value("float32"))
        rebuilt = rebuilt.add_column("sample_index", idx["sample_index"][:], feature=Value("int64"))
        result = {"pushed": rows(pushed), "rebuilt": rows(rebuilt), "index": rows(idx)}
    """)
    assert out["rebuilt"] == out["pushed"]
    assert "loss_trajectory" not in out["pushed"]["rows"]  # only with include_trajectory=True
    assert set(out["index"]["rows"]) == {"sample_index", "label", "cld_score"}
    assert out["index"]["rows"]["sample_index"] == [6, 8, 9, 10, 11]  # 3 of class 0, 2 of class 1


def test_repush_replaces_stale_parquet_shards(client, hub):
    out = client.run("""
        push_coreset_to_hub(scored_dataset(40), "cld-tester/shards", fraction=0.5, token=TOKEN,
                            max_shard_size=200)
        before = sorted(api.list_repo_files("cld-tester/shards", repo_type="dataset"))
        push_coreset_to_hub(scored_dataset(40), "cld-tester/shards", fraction=0.25, token=TOKEN)
        after = sorted(api.list_repo_files("cld-tester/shards", repo_type="dataset"))
        result = {"before": before, "after": after,
                  "rows": len(load_dataset("cld-tester/shards", split="train"))}
    """)
    assert sum(p.startswith("data/") for p in out["before"]) > 1
    assert [p for p in out["after"] if p.startswith(("data/", "indices/"))] == [
        "data/train-00000-of-00001.parquet", "indices/train-00000-of-00001.parquet"]
    assert out["rows"] == 10


# ---------------------------------------------------------------------------- models and cards


def test_push_transformers_model_round_trips_and_cards_link_both_repos(client, hub):
    out = client.run("""
        from huggingface_hub import ModelCard
        from transformers import BertForSequenceClassification
        model = tiny_bert()
        r = push_coreset_to_hub(
            scored_dataset(), "cld-tester/cards", fraction=0.4, model=model,
            model_repo_id="cld-tester/cards-proxy", source_dataset="cld-tester/src",
            license="mit", token=TOKEN, eval_results={"accuracy": 0.75},
            method_info={"proxy_model": "tiny BERT", "epochs": 7, "num_snapshots": 7,
                         "query_fraction": 0.1, "query_seed": 3, "record_mode": "eval-sweep",
                         "command": "cld-hf run --epochs 7"})
        loaded = BertForSequenceClassification.from_pretrained("cld-tester/cards-proxy")
        model_meta, model_text = readme("cld-tester/cards-proxy", "model")
        data_meta, data_text = readme("cld-tester/cards", "dataset")
        card = ModelCard.load("cld-tester/cards-proxy")
        result = {"same": same_weights(model, loaded), "model_meta": model_meta,
                  "model_text": model_text, "data_meta": data_meta, "data_text": data_text,
                  "accuracy": card.data.eval_results[0].metric_value,
                  "files": sorted(api.list_repo_files("cld-tester/cards-proxy"))}
    """)
    assert out["same"] is True
    assert out["files"] == [".gitattributes", "README.md", "config.json", "model.safetensors"]
    mm, dm = out["model_meta"], out["data_meta"]
    assert mm["library_name"] == "transformers"
    assert mm["datasets"] == ["cld-tester/src", "cld-tester/cards"]  # links the coreset repo
    assert {"coreset", "cld"} <= set(mm["tags"]) and mm["license"] == "mit"
    assert mm["pipeline_tag"] == "text-classification"
    assert out["accuracy"] == 0.75
    assert "base_model" not in mm  # built from a config: nothing to link
    assert {"coreset", "cld"} <= set(dm["tags"])
    assert dm["size_categories"] == ["n<1K"]
    assert dm["source_datasets"] == ["extended|cld-tester/src"]
    assert dm["license"] == "mit"
    assert [c["config_name"] for c in dm["configs"]] == ["default", "indices"]
    assert f"{hub.url}/cld-tester/cards-proxy" in out["data_text"]  # dataset card -> model
    assert f"{hub.url}/datasets/cld-tester/cards" in out["model_text"]  # model card -> dataset
    text = out["data_text"]
    for expected in ("| proxy training epochs | 7 |", "| query split seed | 3 |",
                     "| query (validation) fraction per class | 0.1 |",
                     "| loss differences per sample | 6 |", "| 0 | cat | 2 | 5 |",
                     "cld-hf run --epochs 7", "Transactions on Machine Learning Research",
                     'load_dataset("cld-tester/cards", "indices", split="train")'):
        assert expected in text


def test_push_plain_torch_module_round_trips_through_safetensors(client, hub):
    out = client.run("""
        from safetensors.torch import load_model

        class TinyNet(torch.nn.Module):
            def __init__(self, width=3):
                super().__init__()
                self.body = torch.nn.Linear(4, width)
                self.head = torch.nn.Linear(width, 2)

        torch.manual_seed(1)
        net = TinyNet(width=5)
        r = push_coreset_to_hub(scored_dataset(), "cld-tester/plain", fraction=0.2, model=net,
                                model_repo_id="cld-tester/plain-proxy", model_config={"width": 5},
                                method_info={"base_model": "cld-tester/pretrained-net"},
                                token=TOKEN)
        config = json.load(open(hf_hub_download("cld-tester/plain-proxy", "config.json")))
        fresh = TinyNet(**config["init_kwargs"])
        load_model(fresh, hf_hub_download("cld-tester/plain-proxy", "model.safetensors"))
        meta, _ = readme("cld-tester/plain-proxy", "model")
        result = {"same": same_weights(net, fresh), "config": config, "meta": meta}
    """)
    assert out["same"] is True
    assert out["config"]["class_name"] == "TinyNet"
    assert out["config"]["init_kwargs"] == {"width": 5}
    assert out["config"]["num_parameters"] == 4 * 5 + 5 + 5 * 2 + 2
    assert out["meta"]["library_name"] == "pytorch"
    assert out["meta"]["base_model"] == "cld-tester/pretrained-net"
    assert "cld-tester/plain" in out["meta"]["datasets"]


# ---------------------------------------------------------------------------- failures


def test_failed_commit_leaves_the_repo_untouched_and_a_retry_succeeds(client, hub):
    client.run("""
        push_coreset_to_hub(scored_dataset(), "cld-tester/flaky", fraction=0.2, token=TOKEN)
    """)
    files_before = hub.files("dataset", "cld-tester/flaky")
    history_before = hub.history("dataset", "cld-tester/flaky")
    hub.fail_next_commits = 1
    try:
        message = client.run("""
            try:
                push_coreset_to_hub(scored_dataset(), "cld-tester/flaky", fraction=0.6,
                                    token=TOKEN)
                result = None
            except HubPushError as err:
                result = str(err)
        """)
    finally:
        hub.fail_next_commits = 0
    assert message is not None, "the failed commit must raise HubPushError"
    assert "HTTP 500" in message and "cld-tester/flaky" in message
    assert "Nothing was written" in message and "again" in message
    assert hub.files("dataset", "cld-tester/flaky") == files_before
    assert hub.history("dataset", "cld-tester/flaky") == history_before
    retried = client.run("""
        push_coreset_to_hub(scored_dataset(), "cld-tester/flaky", fraction=0.6, token=TOKEN)
        result = load_dataset("cld-tester/flaky", split="train")["sample_index"][:]
    """)
    assert retried == [4, 5, 6, 7, 8, 9]
    assert len(hub.history("dataset", "cld-tester/flaky")) == len(history_before) + 1


@pytest.mark.parametrize(
    "token, expected",
    [("None", ["token", "HF_TOKEN", "hf auth login"]),
     ("'hf_not_a_valid_token'", ["token", "HTTP 401", "Invalid credentials"]),
     ("READ", ["token", "HTTP 403", "write access"])],
    ids=["missing", "wrong", "read-only"],
)
def test_missing_or_wrong_token_is_a_clear_error_and_creates_nothing(client, hub, token, expected):
    token = token.replace("READ", repr(hub.read_token))
    message = client.run(f"""
        try:
            push_coreset_to_hub(scored_dataset(), "cld-tester/denied", fraction=0.2,
                                token={token})
            result = None
        except HubPushError as err:
            result = str(err)
    """)
    assert message is not None
    for part in expected:
        assert part in message
    assert ("dataset", "cld-tester/denied") not in hub.repos


def test_bad_arguments_fail_before_anything_is_sent(client, hub):
    out = client.run("""
        ds = scored_dataset()
        errors = {}
        for name, kwargs in {
            "scored_without_fraction": {},
            "model_without_repo": {"fraction": 0.2, "model": tiny_bert()},
            "bad_repo_id": {"fraction": 0.2, "repo_id": "a/b/c"},
            "eval_without_source": {"fraction": 0.2, "eval_results": {"accuracy": 0.5}},
            "method_info_not_json": {"fraction": 0.2, "method_info": {"epochs": object()}},
        }.items():
            kwargs = {"repo_id": "cld-tester/never", "token": TOKEN, **kwargs}
            try:
                push_coreset_to_hub(ds, **kwargs)
                errors[name] = None
            except (ValueError, TypeError) as err:
                errors[name] = str(err)
        result = errors
    """)
    assert "fraction=" in out["scored_without_fraction"]
    assert "model_repo_id" in out["model_without_repo"]
    assert "'a/b/c'" in out["bad_repo_id"]
    assert "source_dataset=" in out["eval_without_source"]
    assert "method_info['epochs']" in out["method_info_not_json"]
    assert ("dataset", "cld-tester/never") not in hub.repos


# ---------------------------------------------------------------------------- Hub options


def test_revision_branch_and_pull_request_leave_main_untouched(client, hub):
    out = client.run("""
        push_coreset_to_hub(scored_dataset(), "cld-tester/revs", fraction=0.2, token=TOKEN)
        main_before = api.dataset_info("cld-tester/revs").sha
        branch = push_coreset_to_hub(scored_dataset(), "cld-tester/revs", fraction=0.4,
                                     token=TOKEN, revision="v2", commit_message="v2 coreset")
        pr = push_coreset_to_hub(scored_dataset(), "cld-tester/revs", fraction=0.6, token=TOKEN,
                                 create_pr=True)
        result = {
            "main_unchanged": api.dataset_info("cld-tester/revs").sha == main_before,
            "main_rows": len(load_dataset("cld-tester/revs", split="train")),
            "v2_rows": len(load_dataset("cld-tester/revs", split="train", revision="v2")),
            "pr_url": pr.dataset_commit.pr_url,
            "pr_rows": len(load_dataset("cld-tester/revs", split="train", revision="refs/pr/1")),
            "v2_message": api.list_repo_commits("cld-tester/revs", repo_type="dataset",
                                                revision="v2")[0].title,
        }
    """)
    assert out["main_unchanged"] is True
    assert (out["main_rows"], out["v2_rows"], out["pr_rows"]) == (2, 4, 6)
    assert out["pr_url"].endswith("/datasets/cld-tester/revs/discussions/1")
    assert out["v2_message"] == "v2 coreset"


def test_private_push_creates_a_private_repo(client, hub):
    out = client.run("""
        from huggingface_hub.errors import RepositoryNotFoundError
        push_coreset_to_hub(scored_dataset(), "secret", fraction=0.2, token=TOKEN, private=True)
        try:
            HfApi(token=False).dataset_info("cld-tester/secret")
            anonymous = "visible"
        except RepositoryNotFoundError:
            anonymous = "not found"
        result = {"private": api.dataset_info("cld-tester/secret").private, "anonymous": anonymous}
    """)
    # "secret" (no namespace) went to the token owner's namespace, invisible without a token
    assert out == {"private": True, "anonymous": "not found"}


def test_only_the_main_process_pushes(client, hub):
    out = client.run("""
        os.environ["RANK"] = "1"
        try:
            result = push_coreset_to_hub(scored_dataset(), "cld-tester/rank1", fraction=0.2,
                                         token=TOKEN)
        finally:
            del os.environ["RANK"]
    """)
    assert out is None
    assert ("dataset", "cld-tester/rank1") not in hub.repos


# ---------------------------------------------------------------------------- CLI


def test_cli_push_help_exits_0(capsys):
    from cld_hf.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["push", "--help"])
    assert exit_info.value.code == 0
    help_text = capsys.readouterr().out
    assert "--repo-id" in help_text and "--model-dir" in help_text and "examples:" in help_text


def test_cli_push_saved_dataset_with_run_info_and_model_dir(client, hub, tmp_path):
    out = client.run(f"""
        from cld_hf.cli import main
        from transformers import BertForSequenceClassification
        scored_dataset().save_to_disk({str(tmp_path / "scored")!r})
        json.dump({{"epochs": 5, "num_snapshots": 5, "query_fraction": 0.2, "query_seed": 0,
                    "command": "cld-hf run --epochs 5", "source_dataset": "cld-tester/src"}},
                  open({str(tmp_path / "scored" / "cld_run.json")!r}, "w"))
        model = tiny_bert(seed=2)
        model.save_pretrained({str(tmp_path / "proxy")!r})
        torch.save({{"lr": 0.1}}, {str(tmp_path / "proxy" / "training_args.bin")!r})  # a pickle
        code = main(["push", {str(tmp_path / "scored")!r}, "--repo-id", "cld-tester/cli",
                     "--fraction", "0.4", "--model-dir", {str(tmp_path / "proxy")!r},
                     "--model-repo-id", "cld-tester/cli-proxy", "--token", TOKEN])
        loaded = BertForSequenceClassification.from_pretrained("cld-tester/cli-proxy")
        meta, text = readme("cld-tester/cli", "dataset")
        result = {{"code": code, "same": same_weights(model, loaded), "meta": meta, "text": text,
                   "model_files": sorted(api.list_repo_files("cld-tester/cli-proxy")),
                   "scores": load_dataset("cld-tester/cli", split="train")["cld_score"][:]}}
    """)
    assert out["code"] == 0
    assert "dataset: cld-tester/cli ->" in client.stdout
    assert out["same"] is True
    assert "training_args.bin" not in out["model_files"]  # pickles are never pushed
    assert out["scores"] == [6.0, 7.0, 8.0, 9.0]
    assert out["meta"]["source_datasets"] == ["extended|cld-tester/src"]  # from cld_run.json
    assert "| proxy training epochs | 5 |" in out["text"]
    assert "cld-hf run --epochs 5" in out["text"]


def test_cli_push_errors_exit_1_or_2_with_a_message(client, hub, tmp_path):
    out = client.run(f"""
        import contextlib, io
        from cld_hf.cli import main
        scored_dataset().save_to_disk({str(tmp_path / "scored")!r})
        scored, missing = {str(tmp_path / "scored")!r}, {str(tmp_path / "nope")!r}
        codes = {{}}
        for name, argv in {{
            "model_dir_alone": ["--model-dir", {str(tmp_path)!r}],
            "wrong_token": ["--fraction", "0.2", "--token", "hf_wrong"],
            "missing_dir": ["--fraction", "0.2", "--token", TOKEN],
        }}.items():
            target = missing if name == "missing_dir" else scored
            err = io.StringIO()
            with contextlib.redirect_stderr(err):
                codes[name] = (main(["push", target, "--repo-id", "cld-tester/cli-err", *argv]),
                               err.getvalue())
        result = codes
    """)
    assert out["model_dir_alone"][0] == 2 and "--model-repo-id" in out["model_dir_alone"][1]
    assert out["wrong_token"][0] == 1 and "Invalid credentials" in out["wrong_token"][1]
    assert out["missing_dir"][0] == 1 and "does not exist" in out["missing_dir"][1]
    assert ("dataset", "cld-tester/cli-err") not in hub.repos


# ---------------------------------------------------------------------------- packaging


def test_card_templates_are_shipped_by_pyproject_data_files():
    """A non-editable install finds the templates only if pyproject installs every one of them."""
    import glob
    import tomllib
    from pathlib import Path

    from cld_hf.cards import DATASET_TEMPLATE, MODEL_TEMPLATE, find_template

    root = Path(__file__).resolve().parent.parent
    config = tomllib.loads((root / "pyproject.toml").read_text())
    data_files = config["tool"]["setuptools"]["data-files"]
    shipped = {Path(p).name for patterns in data_files.values() for pattern in patterns
               for p in glob.glob(str(root / pattern))}
    assert {DATASET_TEMPLATE, MODEL_TEMPLATE} <= shipped
    assert any(target.endswith("model_cards") for target in data_files)
    assert find_template(DATASET_TEMPLATE).read_text().lstrip().startswith("---\n{{ card_data }}")


# ---------------------------------------------------------------------------- server itself


def test_server_rejects_an_lfs_file_that_was_never_uploaded(hub):
    """The commit endpoint checks LFS objects, so a client that skipped the upload cannot pass."""
    import urllib.error
    import urllib.request

    def post(path, body, content_type="application/json"):
        request = urllib.request.Request(
            f"{hub.url}{path}", data=body, method="POST",
            headers={"Authorization": f"Bearer {hub.write_token}", "Content-Type": content_type})
        try:
            with urllib.request.urlopen(request) as response:
                return response.status
        except urllib.error.HTTPError as err:
            return err.code

    assert post("/api/repos/create", json.dumps({"name": "raw", "type": "model"}).encode()) == 200
    payload = b"\n".join(json.dumps(line).encode() for line in [
        {"key": "header", "value": {"summary": "bad"}},
        {"key": "lfsFile", "value": {"path": "w.safetensors", "algo": "sha256", "oid": "0" * 64}},
    ])
    assert post("/api/models/cld-tester/raw/commit/main", payload, "application/x-ndjson") == 422
    assert hub.history("model", "cld-tester/raw") == ["initial commit"]


# ---------------------------------------------------------------------------- offline export
# export_coreset_repos runs in THIS process, with no server, no HF_ENDPOINT and every socket
# connection refused; only the byte-for-byte comparison also pushes (through the client).

_EXPORT_ARGS = dict(
    fraction=0.4, source_dataset="cld-tester/src", license="mit", tags=["demo"],
    eval_results={"accuracy": 0.75},
    method_info={"proxy_model": "tiny BERT", "epochs": 7, "num_snapshots": 7,
                 "query_fraction": 0.1, "query_seed": 3, "command": "cld-hf run --epochs 7"},
)


@pytest.fixture(scope="module")
def local():
    """The shared fixtures (scored_dataset, tiny_bert, ...) imported in this process."""
    import types

    namespace = {"__name__": "hub_local"}
    exec(compile(_HELPERS, "<_HELPERS>", "exec"), namespace)
    return types.SimpleNamespace(**namespace)


@pytest.fixture
def no_network(monkeypatch):
    """Every socket connection attempted during the test fails loudly."""
    import socket

    def refuse(self, address, *args, **kwargs):
        raise AssertionError(f"network access during an offline export: connect({address!r})")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)


def _tree(folder) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_export_writes_both_repos_offline_and_they_load_back(local, no_network, tmp_path):
    from datasets import load_dataset
    from huggingface_hub import DatasetCard, ModelCard, constants
    from transformers import BertForSequenceClassification

    from cld_hf.hub import export_coreset_repos

    scored, model = local.scored_dataset(), local.tiny_bert()
    out = export_coreset_repos(scored, tmp_path / "out", repo_id="me/cards", model=model,
                               model_repo_id="me/cards-proxy", **_EXPORT_ARGS)

    assert out.dataset_dir == tmp_path / "out" / "dataset"
    assert out.model_dir == tmp_path / "out" / "model"
    assert sorted(_tree(out.dataset_dir)) == [
        "README.md", "cld_run.json", "data/train-00000-of-00001.parquet",
        "indices/train-00000-of-00001.parquet"]
    assert sorted(_tree(out.model_dir)) == ["README.md", "config.json", "model.safetensors"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["dataset", "model"]

    # the dataset card: YAML that parses, both configs, links to the model repo, budgets
    endpoint = constants.ENDPOINT.rstrip("/")
    card = DatasetCard.load(out.dataset_dir / "README.md")
    configs = {c["config_name"]: c["data_files"] for c in card.data.configs}
    assert configs == {"default": [{"split": "train", "path": "data/train-*"}],
                       "indices": [{"split": "train", "path": "indices/train-*"}]}
    assert [i["config_name"] for i in card.data.dataset_info] == ["default", "indices"]
    assert card.data.source_datasets == ["extended|cld-tester/src"]
    assert f"[me/cards-proxy]({endpoint}/me/cards-proxy)" in card.text
    assert f"({endpoint}/datasets/cld-tester/src)" in card.text
    assert "| 0 | cat | 2 | 5 |" in card.text and "| 1 | dog | 2 | 5 |" in card.text
    assert "| proxy training epochs | 7 |" in card.text

    # the model card links the coreset repo back
    model_card = ModelCard.load(out.model_dir / "README.md")
    assert model_card.data.datasets == ["cld-tester/src", "me/cards"]
    assert model_card.data.eval_results[0].metric_value == 0.75
    assert f"[me/cards]({endpoint}/datasets/me/cards)" in model_card.text

    # cld_run.json is the summary, less the endpoint
    run_info = json.loads((out.dataset_dir / "cld_run.json").read_text())
    assert out.summary["endpoint"] == constants.ENDPOINT
    assert run_info == json.loads(json.dumps(
        {k: v for k, v in out.summary.items() if k != "endpoint"}))

    # the Parquet shards are the coreset rows and its index config, features included
    expected = local.select_coreset(scored, fraction=0.4).remove_columns("loss_trajectory")
    cache = str(tmp_path / "cache")
    rows = load_dataset("parquet", data_files=str(out.dataset_dir / "data" / "*.parquet"),
                        split="train", cache_dir=cache)
    index = load_dataset("parquet", data_files=str(out.dataset_dir / "indices" / "*.parquet"),
                         split="train", cache_dir=cache)
    assert local.rows(rows) == local.rows(expected)
    assert local.rows(index) == local.rows(
        expected.select_columns(["sample_index", "label", "cld_score"]))

    # the model folder reloads to the same weights
    loaded = BertForSequenceClassification.from_pretrained(out.model_dir)
    assert local.same_weights(model, loaded)


def test_export_needs_full_repo_ids_and_replaces_only_its_own_folders(local, no_network,
                                                                       tmp_path):
    from cld_hf.hub import export_coreset_repos

    scored = local.scored_dataset(40)
    with pytest.raises(ValueError, match=r"repo_id == 'cards' has no namespace.*"
                                         r"repo_id='<your-namespace>/cards'"):
        export_coreset_repos(scored, tmp_path / "a", repo_id="cards", fraction=0.5)
    with pytest.raises(ValueError, match=r"model_repo_id == 'proxy' has no namespace"):
        export_coreset_repos(scored, tmp_path / "a", repo_id="me/c", fraction=0.5,
                             model=local.tiny_bert(), model_repo_id="proxy")
    with pytest.raises(ValueError, match="fraction="):  # bad data: nothing is written
        export_coreset_repos(scored, tmp_path / "a", repo_id="me/c")
    assert not (tmp_path / "a").exists()

    # a re-export replaces the previous one (stale shards, a model no longer given) ...
    out_dir = tmp_path / "out"
    export_coreset_repos(scored, out_dir, repo_id="me/c", fraction=0.5, max_shard_size=200,
                         model=local.tiny_bert(), model_repo_id="me/c-proxy")
    (out_dir / "results.json").write_text("{}")
    assert sum(p.startswith("data/") for p in _tree(out_dir / "dataset")) > 1
    out = export_coreset_repos(scored, out_dir, repo_id="me/c", fraction=0.25)
    assert out.model_dir is None and not (out_dir / "model").exists()
    assert [p for p in _tree(out.dataset_dir) if p.endswith(".parquet")] == [
        "data/train-00000-of-00001.parquet", "indices/train-00000-of-00001.parquet"]
    assert sorted(p.name for p in out_dir.iterdir()) == ["dataset", "results.json"]

    # a failure while staging (model_config is for plain modules) leaves the last export as is
    before = _tree(out_dir / "dataset")
    for target in (out_dir, tmp_path / "b"):
        with pytest.raises(ValueError, match="Drop model_config="):
            export_coreset_repos(scored, target, repo_id="me/c", fraction=0.5,
                                 model=local.tiny_bert(), model_repo_id="me/c-proxy",
                                 model_config={"width": 3})
    assert _tree(out_dir / "dataset") == before
    assert sorted(p.name for p in out_dir.iterdir()) == ["dataset", "results.json"]
    assert not (tmp_path / "b").exists()

    # ... but never a folder it did not write
    foreign = tmp_path / "foreign"
    (foreign / "model").mkdir(parents=True)
    (foreign / "model" / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="remove"):
        export_coreset_repos(scored, foreign, repo_id="me/c", fraction=0.25)
    assert (foreign / "model" / "notes.txt").read_text() == "mine"
    assert not (foreign / "dataset").exists()


def test_export_is_byte_identical_to_what_a_push_commits(client, hub, local, tmp_path):
    from huggingface_hub import constants

    from cld_hf.hub import export_coreset_repos

    client.run(f"""
        push_coreset_to_hub(scored_dataset(), "cld-tester/same", model=tiny_bert(seed=3),
                            model_repo_id="cld-tester/same-proxy", token=TOKEN,
                            **{_EXPORT_ARGS!r})
        result = None
    """)
    pushed = {repo_type: {p: b for p, b in hub.files(repo_type, repo_id).items()
                          if p != ".gitattributes"}
              for repo_type, repo_id in (("dataset", "cld-tester/same"),
                                         ("model", "cld-tester/same-proxy"))}
    ids = {"repo_id": "cld-tester/same", "model_repo_id": "cld-tester/same-proxy"}
    same_endpoint = export_coreset_repos(
        local.scored_dataset(), tmp_path / "same", model=local.tiny_bert(seed=3),
        endpoint=hub.url, **ids, **_EXPORT_ARGS)
    default_endpoint = export_coreset_repos(
        local.scored_dataset(), tmp_path / "default", model=local.tiny_bert(seed=3),
        **ids, **_EXPORT_ARGS)

    # with the server's endpoint: every file, cards included, byte for byte
    assert _tree(same_endpoint.dataset_dir) == pushed["dataset"]
    assert _tree(same_endpoint.model_dir) == pushed["model"]

    # with the default endpoint: only the card links differ
    for repo_type, folder in (("dataset", default_endpoint.dataset_dir),
                              ("model", default_endpoint.model_dir)):
        exported = _tree(folder)
        assert sorted(exported) == sorted(pushed[repo_type])
        for path, content in exported.items():
            if path == "README.md":
                assert hub.url.encode() in pushed[repo_type][path]
                assert content == pushed[repo_type][path].replace(
                    hub.url.encode(), constants.ENDPOINT.rstrip("/").encode())
            else:
                assert content == pushed[repo_type][path], path
