"""RecorderConfig: the one options dataclass (cld_hf.recording.config)."""

import pytest

from cld_hf import RecorderConfig
from cld_hf.recording.config import make_config


@pytest.mark.parametrize("options, error, match", [
    ({"mode": "eval"}, ValueError, r"mode == 'eval', must be one of \['sweep', 'train_pass'\]"),
    ({"every_n_epochs": 0}, ValueError, "every_n_epochs == 0, must be >= 1"),
    ({"every_n_epochs": 1.5}, TypeError, "every_n_epochs must be an instance of int"),
    ({"sweep_batch_size": 0}, ValueError, "sweep_batch_size == 0, must be >= 1"),
    ({"streaming": "yes"}, TypeError, "streaming must be True or False"),
    ({"signals": "margin"}, TypeError, r"pass a list of names, e.g. signals=\['margin'\]"),
    ({"signals": ["loss"]}, ValueError, "signals contains \\['loss'\\]"),
    ({"signals": ["probs"], "streaming": True}, ValueError, "streaming=True keeps none"),
    ({"signals": ["margin"], "mode": "train_pass"}, ValueError, "Use mode='sweep'"),
    ({"if_exists": "replace"}, ValueError, "if_exists == 'replace'"),
    ({"input_columns": "x"}, TypeError, "pass a list of names"),
])
def test_bad_options_name_the_option_the_value_and_the_fix(options, error, match):
    with pytest.raises(error, match=match):
        RecorderConfig(**options)


def test_keyword_options_override_a_config_and_unknown_ones_list_the_fields():
    base = RecorderConfig(every_n_epochs=3, signals=["margin", "margin"])
    assert base.signals == ["margin"]  # duplicates dropped
    both = make_config(base, {"streaming": False, "mode": "sweep"})
    assert both.every_n_epochs == 3 and base.every_n_epochs == 3
    with pytest.raises(TypeError, match=r"Unknown recording option\(s\) \['batch_size'\].*"
                                        r"sweep_batch_size"):
        make_config(None, {"batch_size": 16})
    with pytest.raises(TypeError, match="config must be a RecorderConfig"):
        make_config({"mode": "sweep"}, {})


def test_the_config_parses_from_a_command_line_and_round_trips_as_json():
    import json

    from transformers import HfArgumentParser

    (config,) = HfArgumentParser(RecorderConfig).parse_args_into_dataclasses(
        ["--mode", "train_pass", "--record_initial", "false", "--every_n_epochs", "2"])
    assert (config.mode, config.record_initial, config.every_n_epochs) == ("train_pass", False, 2)
    assert RecorderConfig(**json.loads(json.dumps(config.to_dict()))) == config
