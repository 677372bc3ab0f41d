"""The spec of the shared repos (cld_hf.hub.spec): one dataclass, checked before anything is
staged, built from ``spec=`` and/or keyword arguments in one place."""

from __future__ import annotations

import dataclasses

import pytest

from cld_hf.hub import CoresetHubSpec, export_coreset_repos, push_coreset_to_hub
from cld_hf.hub.spec import build_spec, check_repo_id


def test_every_field_has_help_text_like_trl_configs():
    for f in dataclasses.fields(CoresetHubSpec):
        assert f.metadata.get("help"), f.name


@pytest.mark.parametrize("repo_id", ["me/coreset.git", "me/a--b", "me/a..b", "a/b/c", "-me/x",
                                     "me/" + "x" * 100, "me/with space"])
def test_repo_ids_the_hub_refuses_are_errors_naming_the_value(repo_id):
    """Regression test: the old hand regex accepted `x.git` and `a--b`."""
    with pytest.raises(ValueError, match=rf"repo_id == {repo_id!r} is not a Hub repo id"):
        CoresetHubSpec(repo_id)


def test_repo_ids_are_checked_before_anything_is_staged(tmp_path):
    from datasets import Dataset

    scored = Dataset.from_dict({"label": [0, 1], "cld_score": [0.1, 0.2]})
    for field in ("repo_id", "model_repo_id", "source_dataset"):
        kwargs = {"repo_id": "me/c", "fraction": 0.5, field: "me/x.git"}
        with pytest.raises(ValueError, match=rf"{field} == 'me/x.git' is not a Hub repo id"):
            export_coreset_repos(scored, tmp_path / "out", **kwargs)
    assert not (tmp_path / "out").exists()


def test_check_repo_id_full_needs_the_namespace():
    assert check_repo_id("repo_id", "name") == "name"
    with pytest.raises(ValueError, match="has no namespace"):
        check_repo_id("repo_id", "name", full=True)
    with pytest.raises(TypeError, match="repo_id must be a str"):
        check_repo_id("repo_id", 3)


@pytest.mark.parametrize("kwargs, error, match", [
    ({"balance": "even"}, ValueError, r"balance == 'even', must be one of"),
    ({"fraction": 0.0}, ValueError, r"fraction == 0.0, must be > 0.0"),
    ({"fraction": 1.5}, ValueError, r"fraction == 1.5, must be <= 1.0"),
    ({"size": 0}, ValueError, r"size == 0, must be >= 1"),
    ({"fraction": 0.1, "size": 3}, ValueError, r"fraction= or size=, not both"),
    ({"tags": "vision"}, TypeError, r"tags == 'vision', must be a list"),
    ({"include_trajectory": "yes"}, TypeError, r"include_trajectory must be True or False"),
    ({"max_shard_size": "big"}, ValueError, r"max_shard_size == 'big' is not a size"),
    ({"source_split": "train[:10%]"}, ValueError,
     r"source_split == 'train\[:10%\]' is not .* whole split"),
    ({"eval_results": {"accuracy": "high"}}, ValueError, r"eval_results\['accuracy'\]"),
    ({"method_info": {"epochs": object()}}, ValueError, r"method_info\['epochs'\]"),
    ({"license": ""}, TypeError, r"license must be a non-empty str"),
])
def test_bad_fields_are_errors_naming_the_field_and_value(kwargs, error, match):
    with pytest.raises(error, match=match):
        CoresetHubSpec("me/c", **kwargs)


def test_method_info_fills_the_fields_it_holds_and_arguments_win():
    info = {"source_dataset": "me/src", "source_split": "test", "balance": "proportional",
            "license": "mit", "eval_results": {"accuracy": 0.5}, "epochs": 3}
    spec = CoresetHubSpec("me/c", method_info=info)
    assert (spec.source_dataset, spec.source_split, spec.balance, spec.license) == (
        "me/src", "test", "proportional", "mit")
    assert spec.eval_results == {"accuracy": 0.5}
    assert CoresetHubSpec("me/c", method_info=info, balance="equal").balance == "equal"


def test_keyword_arguments_build_or_override_the_spec():
    base = CoresetHubSpec("me/c", fraction=0.1, license="mit")
    spec = build_spec(base, {"fraction": 0.2, "license": None}, caller="f")
    assert spec.fraction == 0.2 and spec.license == "mit"  # None: an argument left unset
    assert base.fraction == 0.1
    assert build_spec(base, {}, caller="f") is base
    with pytest.raises(TypeError, match=r"f\(\) needs repo_id="):
        build_spec(None, {"fraction": 0.1}, caller="f")
    with pytest.raises(TypeError, match="spec must be a CoresetHubSpec"):
        build_spec({"repo_id": "me/c"}, {}, caller="f")


def test_unknown_keyword_is_a_type_error_listing_the_fields():
    from datasets import Dataset

    scored = Dataset.from_dict({"label": [0, 1], "cld_score": [0.1, 0.2]})
    with pytest.raises(TypeError) as info:
        push_coreset_to_hub(scored, "me/c", fracton=0.5, licence="mit")
    message = str(info.value)
    assert "'fracton' (did you mean 'fraction'?)" in message
    assert "'licence' (did you mean 'license'?)" in message
    for name in ("repo_id", "source_dataset", "max_shard_size", "include_trajectory"):
        assert name in message
    with pytest.raises(TypeError, match="export_coreset_repos"):
        export_coreset_repos(scored, "unused", repo_id="me/c", fracton=0.5)
