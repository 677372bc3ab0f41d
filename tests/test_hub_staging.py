"""Staging and the offline export (cld_hf.hub.staging): the files of both repos on disk,
the sample identity checks, and byte-for-byte equality with what a push commits.

``export_coreset_repos`` runs in THIS process, with no server, no HF_ENDPOINT and every socket
connection refused; only the byte-for-byte comparison also pushes (through the client process of
``tests/hub_client.py``).
"""

from __future__ import annotations

import json

import pytest
from hub_client import tree

pytest_plugins = ["hub_client"]  # the client, local and no_network fixtures

_EXPORT_ARGS = dict(
    fraction=0.4, source_dataset="cld-tester/src", license="mit", tags=["demo"],
    eval_results={"accuracy": 0.75},
    method_info={"proxy_model": "tiny BERT", "epochs": 7, "num_snapshots": 7,
                 "query_fraction": 0.1, "query_seed": 3, "command": "cld-hf run --epochs 7"},
)


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
    assert sorted(tree(out.dataset_dir)) == [
        "README.md", "cld_run.json", "data/train-00000-of-00001.parquet",
        "indices/train-00000-of-00001.parquet"]
    assert sorted(tree(out.model_dir)) == ["README.md", "config.json", "model.safetensors"]
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
        # (a dataset with sample_index is taken for a coreset: this scored one has none)
        export_coreset_repos(scored.remove_columns("sample_index"), tmp_path / "a",
                             repo_id="me/c")
    assert not (tmp_path / "a").exists()

    # a re-export replaces the previous one (stale shards, a model no longer given) ...
    out_dir = tmp_path / "out"
    export_coreset_repos(scored, out_dir, repo_id="me/c", fraction=0.5, max_shard_size=200,
                         model=local.tiny_bert(), model_repo_id="me/c-proxy")
    (out_dir / "results.json").write_text("{}")
    assert sum(p.startswith("data/") for p in tree(out_dir / "dataset")) > 1
    out = export_coreset_repos(scored, out_dir, repo_id="me/c", fraction=0.25)
    assert out.model_dir is None and not (out_dir / "model").exists()
    assert [p for p in tree(out.dataset_dir) if p.endswith(".parquet")] == [
        "data/train-00000-of-00001.parquet", "indices/train-00000-of-00001.parquet"]
    assert sorted(p.name for p in out_dir.iterdir()) == ["dataset", "results.json"]

    # a failure while staging (model_config is for plain modules) leaves the last export as is
    before = tree(out_dir / "dataset")
    for target in (out_dir, tmp_path / "b"):
        with pytest.raises(ValueError, match="Drop model_config="):
            export_coreset_repos(scored, target, repo_id="me/c", fraction=0.5,
                                 model=local.tiny_bert(), model_repo_id="me/c-proxy",
                                 model_config={"width": 3})
    assert tree(out_dir / "dataset") == before
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
    assert tree(same_endpoint.dataset_dir) == pushed["dataset"]
    assert tree(same_endpoint.model_dir) == pushed["model"]

    # with the default endpoint: only the card links differ
    for repo_type, folder in (("dataset", default_endpoint.dataset_dir),
                              ("model", default_endpoint.model_dir)):
        exported = tree(folder)
        assert sorted(exported) == sorted(pushed[repo_type])
        for path, content in exported.items():
            if path == "README.md":
                assert hub.url.encode() in pushed[repo_type][path]
                assert content == pushed[repo_type][path].replace(
                    hub.url.encode(), constants.ENDPOINT.rstrip("/").encode())
            else:
                assert content == pushed[repo_type][path], path


# ---------------------------------------------------------------------------- sample identity

_RECORD = {"name": "cld-tester/src", "split": "train", "num_rows": 10, "fingerprint": "ab" * 32}


@pytest.mark.parametrize("record, source, split, expected", [
    (_RECORD, None, None, ("cld-tester/src", "train")),  # the record's own Hub id
    (_RECORD, "cld-tester/src", "train", ("cld-tester/src", "train")),
    ({**_RECORD, "name": "src"}, "cld-tester/src", None, ("cld-tester/src", "train")),
    ({**_RECORD, "name": "my_data"}, "me/MyData", None, ("me/MyData", "train")),  # load_dataset
    ({**_RECORD, "name": None, "split": None}, None, None, (None, "train")),
    ({**_RECORD, "name": "digits", "split": "test"}, None, None, (None, "test")),
])
def test_check_index_source_accepts_what_the_record_names(record, source, split, expected):
    from cld_hf.hub.staging import check_index_source

    assert check_index_source(record, source_dataset=source, source_split=split) == expected


@pytest.mark.parametrize("record, source, split, match", [
    (_RECORD, "cld-tester/other", None, r"source_dataset == 'cld-tester/other', but .* the "
     r"'train' split of 'cld-tester/src' \(10 rows, fingerprint abababababab\)\. Pass "
     r"source_dataset='cld-tester/src'"),
    (_RECORD, None, "test", r"source_split == 'test', but .*Pass source_split='train'"),
    ({**_RECORD, "name": None}, "cld-tester/src", None,
     r"an unnamed dataset.*stratified_query_split\(full, source_name='cld-tester/src', "
     r"source_split='train'\) adds sample_index before it splits"),
])
def test_check_index_source_refuses_another_dataset_split_or_an_unnamed_index(record, source,
                                                                               split, match):
    from cld_hf.hub.staging import check_index_source

    with pytest.raises(ValueError, match=match):
        check_index_source(record, source_dataset=source, source_split=split)


def test_export_states_the_index_source_in_the_card_and_run_info(local, no_network, tmp_path):
    from cld_hf.hub import export_coreset_repos
    from cld_hf.identity import index_identity

    scored = local.scored_dataset(12)
    out = export_coreset_repos(scored, tmp_path / "out", repo_id="me/c", fraction=0.5)
    record = index_identity(scored)
    run_info = json.loads((out.dataset_dir / "cld_run.json").read_text())
    assert run_info["index_source"] == record
    assert run_info["source_dataset"] == "cld-tester/src"  # from the record itself
    assert run_info["source_split"] == "train"
    text = (out.dataset_dir / "README.md").read_text()
    assert f"| fingerprint | `{record['fingerprint']}`" in text
    assert "| rows | 12 |" in text and "| dataset | `cld-tester/src` |" in text
    assert "assert len(source) == 12" in text


def test_export_fails_before_writing_when_the_index_names_another_source(local, no_network,
                                                                        tmp_path):
    from cld_hf.hub import export_coreset_repos

    with pytest.raises(ValueError, match="source_dataset == 'me/other'"):
        export_coreset_repos(local.scored_dataset(), tmp_path / "out", repo_id="me/c",
                             fraction=0.5, source_dataset="me/other")
    assert not (tmp_path / "out").exists()


def test_spec_and_keyword_arguments_export_the_same_files(local, no_network, tmp_path):
    from cld_hf.hub import CoresetHubSpec, export_coreset_repos

    scored = local.scored_dataset()
    spec = CoresetHubSpec("me/c", **{**_EXPORT_ARGS, "fraction": 0.2})
    by_spec = export_coreset_repos(scored, tmp_path / "a", spec=spec, fraction=0.4)  # override
    by_keywords = export_coreset_repos(scored, tmp_path / "b", repo_id="me/c", **_EXPORT_ARGS)
    assert tree(by_spec.dataset_dir) == tree(by_keywords.dataset_dir)
    assert spec.fraction == 0.2  # the caller's spec is not changed
