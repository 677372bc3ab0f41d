"""Tests of the text job (cld_hf.app.text, cld_hf.app.lm_experiment, scripts/compare_lm.py):
the corpus is deterministic and stratified, the tokenizer and collator do what they say, the
perplexity is exp of the token-weighted mean loss, and a tiny end-to-end run writes its results
with the same per-group budgets for every method."""

import doctest
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from cld_hf.app import lm_experiment, text
from cld_hf.app.arguments import RunArguments
from cld_hf.app.lm_experiment import (
    LM_DEFAULTS,
    length_matched_random,
    lm_settings,
    run_lm_experiment,
)
from cld_hf.app.lm_results import paired_differences, perplexity_markdown
from cld_hf.app.text import (
    EOS_TOKEN,
    CausalLMCollator,
    load_stdlib_corpus,
    make_causal_lm,
    perplexity,
    stdlib_docstrings,
    tokenize_corpus,
    train_tokenizer,
)
from cld_hf.recording.config import RecorderConfig

ROOT = Path(__file__).resolve().parent.parent


def _args(tmp_path, **overrides):
    values = dict(dataset="stdlib-docstrings", output_dir=str(tmp_path / "run"), proxy_epochs=2,
                  target_epochs=1, seeds=2, fractions=[0.5], batch_size=16,
                  learning_rate=3e-3, query_fraction=0.2)
    values.update(overrides)
    methods = values.pop("methods", ["cld", "random", "s2l", "random_length"])
    args = RunArguments(**values)
    args.methods = methods  # RunArguments checks against baselines.METHODS, which may lack s2l
    return args


# ------------------------------------------------------------------------------ doctests


@pytest.mark.parametrize("module", [text, lm_experiment])
def test_docstring_examples_of_the_text_modules_run(module):
    # cld_hf/app has no __init__.py, so tests/test_docstrings.py does not walk it.
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0


# ------------------------------------------------------------------------------ the corpus


def test_stdlib_docstrings_do_not_depend_on_what_this_process_imported():
    # torch (imported here) replaces inspect.getfile: read in this process, its docstring would
    # be lost. The corpus is read in a fresh interpreter, so it equals a bare python's.
    docs = stdlib_docstrings(["inspect"])
    code = ("import inspect; print(sum(1 for _ in [0] if inspect.getdoc(inspect.getfile)"
            ".startswith('Work out which source')))")
    bare = subprocess.run([sys.executable, "-I", "-S", "-c", code], capture_output=True,
                          text=True, check=True)
    assert bare.stdout.strip() == "1"
    assert any(d["text"].startswith("Work out which source or compiled file") for d in docs)
    assert docs == stdlib_docstrings(["inspect"])


def test_stdlib_docstrings_are_distinct_long_enough_and_grouped_in_order():
    docs = stdlib_docstrings(["json", "csv"], min_chars=60)
    groups = [d["group"] for d in docs]
    assert groups == sorted(groups, key=["json", "csv"].index)  # json's first, then csv's
    assert all(len(d["text"]) >= 60 for d in docs)
    assert len({d["text"] for d in docs}) == len(docs)
    # csv's reader is C code (_csv): it belongs to csv; json.tool is a public submodule.
    assert any(d["group"] == "csv" and "reader" in d["text"] for d in docs)


def test_stdlib_corpus_is_stratified_and_deterministic():
    train, test, info = load_stdlib_corpus(["json", "csv", "os"], max_docs_per_group=20,
                                           test_fraction=0.25)
    again = load_stdlib_corpus(["json", "csv", "os"], max_docs_per_group=20, test_fraction=0.25)
    assert train["text"][:] == again[0]["text"][:] and info == again[2]
    assert info["documents"] == {"json": 20, "csv": 20, "os": 20}
    assert np.bincount(test["group"][:]).tolist() == [5, 5, 5]
    assert not set(train["text"][:]) & set(test["text"][:])
    assert train.features["group"].names == ["json", "csv", "os"]


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"groups": ["no_such_module_xyz"]}, ValueError,
         "groups contains 'no_such_module_xyz', which does not import"),
        ({"groups": "json"}, TypeError, "pass a list of module names"),
        ({"groups": ["json"], "min_chars": 10**6}, ValueError,
         r"groups \['json'\] have fewer than 2 docstrings"),
        ({"groups": ["json"], "test_fraction": 1.0}, ValueError,
         r"test_fraction == 1.0, must be in \(0, 1\)"),
    ],
)
def test_stdlib_corpus_errors_name_the_argument(kwargs, error, match):
    with pytest.raises(error, match=match):
        load_stdlib_corpus(**kwargs)


# ------------------------------------------------------------------ tokenizer, collator, model


def test_tokenizer_is_deterministic_and_documents_start_and_end_with_eos():
    from datasets import Dataset

    texts = stdlib_docstrings(["json"])
    texts = [d["text"] for d in texts]
    a, b = train_tokenizer(texts, vocab_size=400), train_tokenizer(texts, vocab_size=400)
    assert a.to_str() == b.to_str() and a.get_vocab_size() == 400
    ds = tokenize_corpus(Dataset.from_dict({"text": texts[:3]}), a, max_length=16)
    eos = a.token_to_id(EOS_TOKEN)
    for ids, t in zip(ds["input_ids"], texts[:3]):
        assert ids[0] == eos and ids[-1] == eos and len(ids) <= 16
        assert t.startswith(a.decode(ids[1:-1]))


def test_collator_pads_and_masks_the_padding_out_of_the_labels():
    batch = CausalLMCollator(7)([{"input_ids": [7, 1, 2, 7], "label": 0, "sample_index": 3},
                                 {"input_ids": [7, 3, 7]}])
    assert set(batch) == {"input_ids", "attention_mask", "labels"}
    assert batch["input_ids"].tolist() == [[7, 1, 2, 7], [7, 3, 7, 7]]
    assert batch["labels"].tolist() == [[7, 1, 2, 7], [7, 3, 7, -100]]


class _Uniform(torch.nn.Module):
    """Zero logits: every next token has probability 1/vocab, so the perplexity is vocab."""

    def __init__(self, vocab):
        super().__init__()
        self.vocab = vocab
        self.w = torch.nn.Parameter(torch.zeros(1))

    def forward(self, input_ids, attention_mask=None):
        from types import SimpleNamespace

        return SimpleNamespace(logits=torch.zeros(*input_ids.shape, self.vocab) + 0 * self.w)


def test_perplexity_is_exp_of_the_token_weighted_mean_loss():
    from datasets import Dataset

    ds = Dataset.from_dict({"input_ids": [[0, 5, 6, 0], [0, 7, 0], [0, 1]]})
    ppl, tokens = perplexity(_Uniform(50), ds, CausalLMCollator(0), batch_size=2)
    assert tokens == 3 + 2 + 1 and ppl == pytest.approx(50.0)
    model = make_causal_lm(50, seed=0)
    model.train()
    ppl_a, _ = perplexity(model, ds, CausalLMCollator(0), batch_size=1)
    ppl_b, _ = perplexity(model, ds, CausalLMCollator(0), batch_size=3)
    assert ppl_a == pytest.approx(ppl_b, rel=1e-5) and model.training  # mode restored


# ------------------------------------------------------------------------------ tables


def test_perplexity_table_has_the_shape_of_the_accuracy_table():
    rows = [{"fraction": f, "method": m, "seed": s, "perplexity": p}
            for f, m, s, p in [(0.3, "cld", 0, 80.0), (0.1, "cld", 0, 100.0),
                               (0.1, "random", 0, 110.0), (0.1, "random", 1, 130.0),
                               (0.1, "cld", 1, 110.0)]]
    table = perplexity_markdown(rows).splitlines()
    assert table[0] == "| fraction | cld | random |"
    assert table[2] == "| 10% | 105.00 ± 5.00 | 120.00 ± 10.00 |"
    assert table[3] == "| 30% | 80.00 ± 0.00 | - |"
    diffs = paired_differences(rows)
    assert diffs == [{"fraction": 0.1, "method": "cld", "mean": -15.0, "std": 5.0, "seeds": 2}]
    with pytest.raises(ValueError, match="baseline == 's2l' has no runs"):
        paired_differences(rows, baseline="s2l")


def test_length_matched_random_keeps_the_groups_and_the_length_profile():
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1], [200, 100])
    lengths = rng.integers(5, 65, size=300)
    longest = np.concatenate([np.argsort(-lengths[:200])[:40],
                              200 + np.argsort(-lengths[200:])[:20]])
    sel = length_matched_random(labels, lengths, longest, seed=1)
    assert np.bincount(labels[sel]).tolist() == [40, 20] and len(set(sel.tolist())) == 60
    assert lengths[sel].sum() > 0.9 * lengths[longest].sum()  # the long ones, roughly
    assert lengths[sel].sum() > 1.4 * lengths.mean() * 60
    assert sel.tolist() != np.sort(longest).tolist()  # but not the same documents
    assert length_matched_random(labels, lengths, longest, seed=1).tolist() == sel.tolist()


# ------------------------------------------------------------------------------ options


@pytest.mark.parametrize(
    "overrides, match",
    [
        ({"dataset": "digits"}, "dataset == 'digits': the causal-lm task runs on the built-in"),
        ({"methods": ["cld", "forgetting"]}, r"drop \['forgetting'\]"),
        ({"methods": ["cld", "cld"]}, "names a method twice"),
    ],
)
def test_lm_settings_refuse_what_the_text_job_cannot_run(tmp_path, overrides, match):
    with pytest.raises(ValueError, match=match):
        lm_settings(_args(tmp_path, **overrides))


@pytest.mark.parametrize(
    "config, match",
    [
        (RecorderConfig(signals=["correct"]), r"signals == \['correct'\]: these are classif"),
        (RecorderConfig(every_n_epochs=2), "records 2 snapshot"),
    ],
)
def test_run_lm_experiment_refuses_recordings_it_cannot_use(tmp_path, config, match):
    with pytest.raises(ValueError, match=match):
        run_lm_experiment(_args(tmp_path), config)
    assert not (tmp_path / "run").exists()  # refused before anything was written


def test_lm_defaults_are_valid_run_arguments():
    args = RunArguments(**{k: v for k, v in LM_DEFAULTS.items() if k != "methods"})
    args.methods = LM_DEFAULTS["methods"]
    assert lm_settings(args)["methods"] == ["cld", "random", "s2l"]


# ------------------------------------------------------------------------------ end to end


@pytest.fixture(scope="module")
def lm_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("lm")
    args = _args(tmp)
    (tmp / "run").mkdir()
    (tmp / "run" / "notes.txt").write_text("mine")  # not an output: never removed
    results = run_lm_experiment(args, RecorderConfig(progress=False, log_summary=False),
                                max_docs_per_group=8)
    return args, results


def test_run_lm_experiment_writes_results_with_every_method_seed_and_fraction(lm_run):
    args, results = lm_run
    out = Path(args.output_dir)
    saved = json.loads((out / "results.json").read_text())
    assert saved["runs"] == results["runs"] and saved["task"] == "causal-lm"
    methods = ("cld", "random", "s2l", "random_length")
    assert {(r["method"], r["seed"]) for r in results["runs"]} == {
        (m, s) for m in methods for s in (0, 1)}
    assert all(np.isfinite(r["perplexity"]) and r["perplexity"] > 1 for r in results["runs"])
    assert len(results["full_data_perplexity"]) == 2
    md = (out / "results.md").read_text()
    assert results["table_markdown"] in md and "## Selection cost" in md
    assert "| fraction | cld | random | s2l | random_length |" in results["table_markdown"]
    assert [r["method"] for r in results["costs"]] == list(methods)
    assert "cld - random_length" in md
    assert (out / "notes.txt").read_text() == "mine"
    assert {"trajectories", "tokenizer.json", "selections.arrow", "proxy_model",
            "coreset-cld-50pct"} <= {p.name for p in out.iterdir()}
    assert not (out / "target_training").exists() and "failed_steps" not in results


def test_run_lm_experiment_gives_every_method_the_same_group_budgets(lm_run):
    from cld_hf import LossTrajectories, class_budgets
    from cld_hf.app.comparison import read_selections

    args, results = lm_run
    out = Path(args.output_dir)
    store = LossTrajectories(out / "trajectories")
    labels = np.asarray(store.train_labels)
    assert store.train_losses().shape == (results["corpus"]["num_train"], 3)  # 0 + 2 epochs
    budgets = class_budgets(labels, fraction=0.5)
    selections = read_selections(out / "selections.arrow")
    assert len(selections) == 4 * 2
    for c in selections:
        counts = np.bincount(labels[c.indices], minlength=len(budgets))
        assert counts.tolist() == [budgets[g] for g in sorted(budgets)]
    cld = [c.indices.tolist() for c in selections if c.method == "cld"]
    assert cld[0] == cld[1]  # deterministic: the same coreset for every seed
    randoms = [c.indices.tolist() for c in selections if c.method == "random"]
    assert randoms[0] != randoms[1]


def test_run_lm_experiment_refuses_to_overwrite_a_previous_run(lm_run, tmp_path):
    args, _ = lm_run
    with pytest.raises(FileExistsError, match="--overwrite-output-dir"):
        run_lm_experiment(args)


# ------------------------------------------------------------------------------ the script


def test_compare_lm_script_help_exits_zero():
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "compare_lm.py"), "--help"],
                          capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "--max_docs_per_group" in proc.stdout


def test_compare_lm_report_names_the_command_machine_and_paired_table(lm_run):
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import compare_lm
    finally:
        sys.path.pop(0)
    _, results = lm_run
    text_ = compare_lm.report_markdown(results, command="python scripts/compare_lm.py --seeds 2",
                                       started="today", machine_before="here",
                                       machine_after="there")
    assert "- command: `python scripts/compare_lm.py --seeds 2`" in text_
    assert "## Paired with random (same seed)" in text_ and "cld - random" in text_
    assert "| fraction | cld | random | s2l | random_length |" in text_
    assert "Paired with `random_length`" in text_
