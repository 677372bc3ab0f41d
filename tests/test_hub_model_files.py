"""The model repo's files (cld_hf.hub.model_files): an allow list, never a pickle.

Regression tests for the reliability issue: the old deny list pushed ``model.joblib``,
``optimizer.pt.tar``, ``state.pkl.gz`` and object-dtype ``.npy`` files. Offline, in this process.
"""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
from hub_client import tree

from cld_hf.hub import export_coreset_repos
from cld_hf.hub.model_files import check_model_files

pytest_plugins = ["hub_client"]  # the client, local and no_network fixtures

_PICKLES = ["model.joblib", "optimizer.pt.tar", "state.pkl.gz", "features.npy"]


@pytest.fixture
def saved_model(local, tmp_path):
    """A save_pretrained folder of the tiny BERT plus files that must never be pushed."""
    folder = tmp_path / "proxy"
    local.tiny_bert().save_pretrained(str(folder))
    blob = pickle.dumps({"anything": object.__name__})
    for name in _PICKLES[:3]:
        (folder / name).write_bytes(blob)
    np.save(folder / "features.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    return folder


def test_files_outside_the_allow_list_are_an_error_naming_them_and_the_fix(local, saved_model,
                                                                          no_network, tmp_path):
    with pytest.raises(ValueError) as info:
        export_coreset_repos(local.scored_dataset(), tmp_path / "out", repo_id="me/c",
                             fraction=0.5, model=saved_model, model_repo_id="me/c-proxy")
    message = str(info.value)
    assert f"holds files cld-hf does not push: {sorted(_PICKLES)}" in message
    assert f"skip_model_files={sorted(_PICKLES)!r}" in message and "--skip-model-file" in message
    assert not (tmp_path / "out").exists()  # checked while staging: nothing was written


def test_skip_model_files_leaves_them_out_and_only_allowed_files_are_pushed(
        local, saved_model, no_network, tmp_path):
    (saved_model / "training_args.bin").write_bytes(pickle.dumps({"lr": 0.1}))  # by default
    (saved_model / "README.md").write_text("old card")  # replaced by the model card
    (saved_model / "checkpoint-5").mkdir()  # sub-folders are never pushed
    (saved_model / "checkpoint-5" / "optimizer.pt").write_bytes(b"\x80\x04")
    out = export_coreset_repos(local.scored_dataset(), tmp_path / "out", repo_id="me/c",
                               fraction=0.5, model=saved_model, model_repo_id="me/c-proxy",
                               skip_model_files=["*.joblib", "*.tar", "*.gz", "*.npy"])
    assert sorted(tree(out.model_dir)) == ["README.md", "config.json", "model.safetensors"]
    assert "old card" not in (out.model_dir / "README.md").read_text()


def test_allowed_names_must_hold_their_format(tmp_path):
    (tmp_path / "config.json").write_bytes(pickle.dumps({"a": 1}))  # not JSON
    (tmp_path / "tokenizer.model").write_bytes(pickle.dumps({"a": 1}))  # a pickle, not spm
    (tmp_path / "model.safetensors").write_bytes(b"\x00" * 16)
    with pytest.raises(ValueError, match="content does not match their name") as info:
        check_model_files(tmp_path)
    for name in ("config.json", "tokenizer.model", "model.safetensors"):
        assert name in str(info.value)


def test_tokenizer_and_processor_files_are_allowed(tmp_path):
    names = {"config.json": "{}", "tokenizer.json": "{}", "tokenizer_config.json": "{}",
             "special_tokens_map.json": "{}", "generation_config.json": "{}",
             "preprocessor_config.json": "{}", "vocab.txt": "[PAD]\n", "merges.txt": "#v\n",
             "model.safetensors.index.json": json.dumps({"weight_map": {}})}
    for name, text in names.items():
        (tmp_path / name).write_text(text)
    (tmp_path / "spiece.model").write_bytes(b"\x0a\x0b protobuf")
    assert check_model_files(tmp_path) == sorted([*names, "spiece.model"])
    with pytest.raises(TypeError, match="skip_model_files == '\\*.bin'"):
        check_model_files(tmp_path, skip_model_files="*.bin")


def test_transformers_model_with_a_tokenizer_keeps_the_tokenizer_files(no_network, local,
                                                                      tmp_path):
    from helpers import tiny_tokenizer

    out = export_coreset_repos(local.scored_dataset(), tmp_path / "out", repo_id="me/c",
                               fraction=0.5, model=local.tiny_bert(), model_repo_id="me/c-proxy",
                               processing_class=tiny_tokenizer())
    files = set(tree(out.model_dir))
    assert {"README.md", "config.json", "model.safetensors", "tokenizer.json",
            "tokenizer_config.json"} <= files
    assert all(check in files for check in check_model_files(out.model_dir))
