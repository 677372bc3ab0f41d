"""Pushing coresets, cards and proxy models to the Hub (cld_hf.hub.push): the real clients
against the Hub-compatible test server, with faults injected into the server.

The harness (client process, fixtures) is ``tests/hub_client.py``; the server
``tests/hub_server.py``. Every test uses its own repo names.
"""

from __future__ import annotations

import re

import pytest
from hub_client import client_env

pytest_plugins = ["hub_client"]  # the client, local and no_network fixtures


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
        local = source.remove_columns(["cld_score", "loss_trajectory", "sample_index"])
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
            # a dataset with sample_index is taken for a coreset: the scored one has none here
            data = ds.remove_columns("sample_index") if name == "scored_without_fraction" else ds
            try:
                push_coreset_to_hub(data, **kwargs)
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


# ---------------------------------------------------------------------------- nothing half-made
# Regression tests for the reliability issue (Hub part): a failed push must leave no empty repo
# and no card linking to a repo that failed.


def test_failed_first_push_leaves_no_empty_repo(client, hub):
    hub.fail_next_commits = 1
    try:
        err = client.run("""
            result = push_error(scored_dataset(), "cld-tester/first",
                                fraction=0.2, token=TOKEN)
        """)
    finally:
        hub.clear_faults()
    assert err["type"] == "HubServerError"
    assert "HTTP 500" in err["message"] and "\n" not in err["message"]
    assert "deleted the dataset repo 'cld-tester/first'" in err["message"]
    assert ("dataset", "cld-tester/first") not in hub.repos  # not even .gitattributes


def test_dataset_commit_failure_deletes_the_model_repo_this_call_created(client, hub):
    hub.add_fault("POST", r"^/api/datasets/cld-tester/pair/commit/", status=503)
    try:
        err = client.run("""
            result = push_error(scored_dataset(), "cld-tester/pair",
                                fraction=0.2, model=tiny_bert(),
                                model_repo_id="cld-tester/pair-proxy",
                                token=TOKEN)
        """)
    finally:
        hub.clear_faults()
    # the model commit went through, then the dataset commit failed: both repos are gone
    assert any(m == "POST" and p.startswith("/api/models/cld-tester/pair-proxy/commit/")
               and status == 200 for m, p, status in hub.requests)
    assert err["type"] == "HubServerError" and "HTTP 503" in err["message"]
    assert "the model repo 'cld-tester/pair-proxy' and the dataset repo 'cld-tester/pair'" in (
        err["message"])
    assert ("model", "cld-tester/pair-proxy") not in hub.repos
    assert ("dataset", "cld-tester/pair") not in hub.repos


def test_dataset_commit_failure_says_what_an_existing_model_repo_now_holds(client, hub):
    client.run("""
        push_coreset_to_hub(scored_dataset(), "cld-tester/old-core", fraction=0.2,
                            model=tiny_bert(), model_repo_id="cld-tester/kept-proxy", token=TOKEN)
    """)
    model_before = hub.history("model", "cld-tester/kept-proxy")
    hub.add_fault("POST", r"^/api/datasets/cld-tester/new-core/commit/", status=500)
    try:
        err = client.run("""
            result = push_error(scored_dataset(), "cld-tester/new-core",
                                fraction=0.4, model=tiny_bert(seed=1),
                                model_repo_id="cld-tester/kept-proxy", token=TOKEN)
        """)
    finally:
        hub.clear_faults()
    model_after = hub.history("model", "cld-tester/kept-proxy")
    assert len(model_after) == len(model_before) + 1  # the model commit went through
    message = err["message"]
    assert "The model repo 'cld-tester/kept-proxy' existed before and now holds this call's " \
           "commit" in message
    assert "links to the dataset repo 'cld-tester/new-core', which was deleted" in message
    assert "Running the same call again finishes the push" in message
    assert ("dataset", "cld-tester/new-core") not in hub.repos
    # and the retry finishes it
    client.run("""
        push_coreset_to_hub(scored_dataset(), "cld-tester/new-core", fraction=0.4,
                            model=tiny_bert(seed=1), model_repo_id="cld-tester/kept-proxy",
                            token=TOKEN)
    """)
    assert ("dataset", "cld-tester/new-core") in hub.repos
    assert hub.history("model", "cld-tester/kept-proxy") == model_after  # nothing new to commit


def test_failed_push_to_a_new_branch_of_an_existing_repo_removes_the_branch(client, hub):
    client.run("""
        push_coreset_to_hub(scored_dataset(), "cld-tester/branchy", fraction=0.2, token=TOKEN)
    """)
    hub.add_fault("POST", r"^/api/datasets/cld-tester/branchy/commit/", status=500)
    try:
        err = client.run("""
            result = push_error(scored_dataset(), "cld-tester/branchy", fraction=0.4,
                                revision="v9", token=TOKEN)
        """)
    finally:
        hub.clear_faults()
    assert err["type"] == "HubServerError"
    assert "Nothing was written to 'cld-tester/branchy'" in err["message"]
    assert "v9" not in hub.repo("dataset", "cld-tester/branchy").refs  # no empty branch left


# ---------------------------------------------------------------------------- network failures


def test_connection_dropped_mid_commit_is_one_network_error_and_leaves_nothing(client, hub):
    hub.add_fault("POST", r"^/api/datasets/cld-tester/dropped/commit/", drop="before")
    try:
        err = client.run("""
            result = push_error(scored_dataset(), "cld-tester/dropped",
                                fraction=0.2, model=tiny_bert(),
                                model_repo_id="cld-tester/dropped-proxy",
                                token=TOKEN)
        """)
    finally:
        hub.clear_faults()
    assert err["type"] == "HubNetworkError"
    message = err["message"]
    assert "\n" not in message and "Traceback" not in message
    assert "Could not reach the Hub while committing to the dataset repo 'cld-tester/dropped'" in (
        message)
    assert "RemoteProtocolError" in message and "run the same call again" in message
    assert ("dataset", "cld-tester/dropped") not in hub.repos
    assert ("model", "cld-tester/dropped-proxy") not in hub.repos


def test_answer_lost_after_an_applied_commit_to_an_existing_repo_says_it_may_have_landed(client,
                                                                                       hub):
    client.run("""
        push_coreset_to_hub(scored_dataset(), "cld-tester/lost", fraction=0.2, token=TOKEN)
    """)
    before = hub.history("dataset", "cld-tester/lost")
    hub.add_fault("POST", r"^/api/datasets/cld-tester/lost/commit/", drop="after")
    try:
        err = client.run("""
            result = push_error(scored_dataset(), "cld-tester/lost",
                                fraction=0.6, token=TOKEN)
        """)
    finally:
        hub.clear_faults()
    assert len(hub.history("dataset", "cld-tester/lost")) == len(before) + 1  # it did land
    assert err["type"] == "HubNetworkError"
    assert "the commit may have been applied" in err["message"]
    assert ("dataset", "cld-tester/lost") in hub.repos  # it existed before: never deleted


def test_lfs_upload_failure_is_a_hub_push_error_naming_the_file(client, hub):
    hub.add_fault("PUT", r"^/lfs-upload/", status=403,
                  message="Request has expired (signed upload URL)")
    try:
        err = client.run("""
            # rows no other test pushed: the server asks for their upload
            result = push_error(scored_dataset(17), "cld-tester/lfs-fail", fraction=0.2,
                                token=TOKEN)
        """)
    finally:
        hub.clear_faults()
    assert err["type"] == "HubCommitRefusedError"
    message = err["message"]
    # the uploads run in threads: either Parquet file may be the first to fail
    assert re.search(r"uploading the LFS file '(data|indices)/train-00000-of-00001\.parquet'",
                     message)
    assert "HTTP 403: Request has expired" in message and "\n" not in message
    assert ("dataset", "cld-tester/lfs-fail") not in hub.repos


def _saved_scored_dataset(local, path):
    local.scored_dataset().save_to_disk(str(path))
    return str(path)


@pytest.mark.parametrize("case", ["offline", "dns", "refused"])
def test_cli_push_without_network_prints_one_line_and_exits_1(hub, local, tmp_path, case):
    """``cld-hf push`` in a fresh process: HF_HUB_OFFLINE=1, an endpoint whose name does not
    resolve, and a port nobody listens on."""
    import socket
    import subprocess
    import sys

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]
    extra = {"offline": {"HF_HUB_OFFLINE": "1"},
             "dns": {"HF_ENDPOINT": "http://cld-hf-test-hub.invalid"},
             "refused": {"HF_ENDPOINT": f"http://127.0.0.1:{closed_port}"}}[case]
    env = client_env(hub, tmp_path / "home", **extra)
    data = _saved_scored_dataset(local, tmp_path / "scored")
    code = (f"from cld_hf.cli import main; raise SystemExit(main(['push', {data!r}, '--repo-id', "
            f"'cld-tester/no-net-{case}', '--fraction', '0.2', '--token', {hub.write_token!r}]))")
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=120, cwd=str(tmp_path))
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("cld-hf push: error:")]
    assert len(errors) == 1, proc.stderr
    expected = {"offline": "HF_HUB_OFFLINE=1 is set", "dns": "Could not reach the Hub",
                "refused": "Could not reach the Hub"}[case]
    assert expected in errors[0] and "run the same call again" in errors[0]
    assert ("dataset", f"cld-tester/no-net-{case}") not in hub.repos


# ---------------------------------------------------------------------------- sample identity


def test_rebuild_snippet_of_the_card_gives_exactly_the_coreset_rows(client, hub):
    """End to end: index the full source, split, score, push; push the source itself; then run
    the card's own rebuild snippet against the server."""
    out = client.run("""
        from cld_hf import add_cld_scores, stratified_query_split
        names = ["airplane", "bird", "cat"]
        full = Dataset.from_dict(
            {"text": [f"row {i}" for i in range(60)], "label": [(i * 7) % 3 for i in range(60)]},
            features=Features({"text": Value("string"), "label": ClassLabel(names=names)}))
        train, query = stratified_query_split(full, fraction=0.2, seed=1,
                                              source_name="cld-tester/ident-src",
                                              source_split="train")
        rng = np.random.default_rng(0)
        scored = add_cld_scores(train, rng.uniform(-1, 1, len(train)))
        push_coreset_to_hub(scored, "cld-tester/ident", fraction=0.25,
                            source_dataset="cld-tester/ident-src", token=TOKEN)
        full.push_to_hub("cld-tester/ident-src", token=TOKEN)

        meta, text = readme("cld-tester/ident", "dataset")
        snippet = code_block(text, "### Rebuild the coreset")
        scope = {}
        exec(snippet, scope)
        pushed = load_dataset("cld-tester/ident", split="train")
        run_info = json.load(open(hf_hub_download("cld-tester/ident", "cld_run.json",
                                                  repo_type="dataset")))
        result = {"snippet": snippet, "text": text, "run_info": run_info,
                  "rebuilt_text": scope["coreset"]["text"][:],
                  "rebuilt_label": scope["coreset"]["label"][:],
                  "rebuilt_scores": scope["coreset"]["cld_score"][:],
                  "pushed_text": pushed["text"][:], "pushed_label": pushed["label"][:],
                  "pushed_scores": pushed["cld_score"][:],
                  "pushed_index": pushed["sample_index"][:],
                  "train_index_sample": train["sample_index"][:5], "num_full": len(full)}
    """)
    assert out["rebuilt_text"] == out["pushed_text"] and len(out["pushed_text"]) > 0
    assert out["rebuilt_label"] == out["pushed_label"]
    assert out["rebuilt_scores"] == out["pushed_scores"]
    assert out["pushed_text"] == [f"row {i}" for i in out["pushed_index"]]  # rows of `full`
    assert "assert len(source) == 60" in out["snippet"]
    assert "check_source(source," in out["snippet"]
    identity = out["run_info"]["index_source"]
    assert identity["name"] == "cld-tester/ident-src" and identity["split"] == "train"
    assert identity["num_rows"] == 60 and len(identity["fingerprint"]) == 64
    assert identity["fingerprint"] in out["text"] and "| rows | 60 |" in out["text"]


def test_index_of_another_dataset_or_split_or_a_sub_dataset_fails_before_anything_is_sent(
        client, hub):
    out = client.run("""
        from cld_hf import add_cld_scores
        base = Dataset.from_dict({"label": [0, 1] * 10})
        named = add_cld_scores(add_index_column(base, name="cld-tester/a", split="train"),
                               np.arange(20) / 20)
        unnamed_train = add_cld_scores(base.select(range(12)), np.arange(12) / 12)  # a sub-dataset
        errors = {}
        for name, (ds, kwargs) in {
            "other_dataset": (named, {"source_dataset": "cld-tester/b"}),
            "other_split": (named, {"source_split": "test"}),
            "sub_dataset": (unnamed_train, {"source_dataset": "cld-tester/a"}),
        }.items():
            try:
                push_coreset_to_hub(ds, f"cld-tester/ident-{name}", fraction=0.5, token=TOKEN,
                                    **kwargs)
                errors[name] = None
            except ValueError as err:
                errors[name] = str(err)
        result = errors
    """)
    assert "source_dataset == 'cld-tester/b'" in out["other_dataset"]
    assert "the 'train' split of 'cld-tester/a' (20 rows" in out["other_dataset"]
    assert "source_dataset='cld-tester/a'" in out["other_dataset"]
    assert "Pass source_split='train'" in out["other_split"]
    assert "an unnamed dataset" in out["sub_dataset"]
    assert "stratified_query_split(full, source_name='cld-tester/a'" in out["sub_dataset"]
    for name in out:
        assert ("dataset", f"cld-tester/ident-{name}") not in hub.repos


def test_index_with_fewer_rows_than_the_source_on_the_hub_is_refused(client, hub):
    out = client.run("""
        from cld_hf import add_cld_scores
        full = Dataset.from_dict({"label": [0, 1] * 20})
        full.push_to_hub("cld-tester/rows-src", token=TOKEN)
        part = add_index_column(full.select(range(30)), name="cld-tester/rows-src", split="train")
        try:
            push_coreset_to_hub(add_cld_scores(part, np.arange(30) / 30), "cld-tester/rows-core",
                                fraction=0.5, source_dataset="cld-tester/rows-src", token=TOKEN)
            result = None
        except ValueError as err:
            result = str(err)
    """)
    assert "has 40 rows on the Hub" in out and "a dataset of 30 rows" in out
    assert ("dataset", "cld-tester/rows-core") not in hub.repos


# ---------------------------------------------------------------------------- cards on the Hub


def test_adversarial_names_push_and_their_card_yaml_round_trips(client, hub):
    out = client.run("""
        evil = "a|b <script>alert(1)</script> ```\\nnew line & more"
        ds = Dataset.from_dict({"label": [0, 1, 0, 1], "cld_score": [0.1, 0.2, 0.3, 0.4]},
                               features=Features({"label": ClassLabel(names=[evil, "ok"]),
                                                  "cld_score": Value("float32")}))
        ds = add_index_column(ds, name="cld-tester/evil-src", split="train")
        push_coreset_to_hub(ds, "cld-tester/evil", fraction=0.5, tags=[evil, "plain"],
                            license="mit", token=TOKEN,
                            method_info={"command": "echo ```\\n<b>x</b> | y", evil: evil})
        meta, text = readme("cld-tester/evil", "dataset")
        result = {"tags": meta["tags"], "text": text, "names": load_dataset(
            "cld-tester/evil", split="train").features["label"].names}
    """)
    assert out["names"][0] == "a|b <script>alert(1)</script> ```\nnew line & more"
    assert "a|b <script>alert(1)</script> ```\nnew line & more" in out["tags"]
    body = out["text"].split("\n---\n", 1)[1]  # the Markdown after the YAML front matter
    assert "<script>" not in body and "&lt;script&gt;" in body
