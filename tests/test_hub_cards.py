"""Cards (cld_hf.hub.cards): rendered from the model_cards/ templates, every user-given text
escaped, no placeholder where the value is known, the full citation. Offline, in this process.
"""

from __future__ import annotations

import re

import pytest

from cld_hf.hub import export_coreset_repos
from cld_hf.hub.cards import CITATION_BIBTEX, md_code, md_fence, md_text

pytest_plugins = ["hub_client"]  # the client, local and no_network fixtures

EVIL = "a|b <script>alert(1)</script> ```x``` \\| & <img src=x onerror=alert(1)>\nline 2"

# ---------------------------------------------------------------------------- packaging


def test_card_templates_are_shipped_by_pyproject_data_files():
    """A non-editable install finds the templates only if pyproject installs every one of them."""
    import glob
    import tomllib
    from pathlib import Path

    from cld_hf.hub.cards import DATASET_TEMPLATE, MODEL_TEMPLATE, find_template

    root = Path(__file__).resolve().parent.parent
    config = tomllib.loads((root / "pyproject.toml").read_text())
    data_files = config["tool"]["setuptools"]["data-files"]
    shipped = {Path(p).name for patterns in data_files.values() for pattern in patterns
               for p in glob.glob(str(root / pattern))}
    assert {DATASET_TEMPLATE, MODEL_TEMPLATE} <= shipped
    assert any(target.endswith("model_cards") for target in data_files)
    assert find_template(DATASET_TEMPLATE).read_text().lstrip().startswith("---\n{{ card_data }}")
    for name in (DATASET_TEMPLATE, MODEL_TEMPLATE):
        assert "More Information Needed" not in find_template(name).read_text()


# ---------------------------------------------------------------------------- escaping


def _cells(line: str) -> list[str]:
    """Split a Markdown table row as GFM does: a backslash escapes the next character."""
    cells, cell, i = [], "", 0
    while i < len(line):
        if line[i] == "\\" and i + 1 < len(line):
            cell += line[i:i + 2]
            i += 2
            continue
        if line[i] == "|":
            cells.append(cell)
            cell = ""
        else:
            cell += line[i]
        i += 1
    return cells + [cell]


def _strip_fences(text: str) -> str:
    return re.sub(r"^(`{3,})[a-z]*\n.*?\n\1$", "", text, flags=re.S | re.M)


def _check_tables(text: str) -> None:
    """Every row of every table has as many cells as the table's header."""
    width = None
    for line in _strip_fences(text).splitlines():
        if not line.startswith("|"):
            width = None
            continue
        if width is None:
            width = len(_cells(line))
        assert len(_cells(line)) == width, f"row breaks its table: {line!r}"


@pytest.mark.parametrize("value", [EVIL, "plain", "`", "| |", "\\", "x\r\ny", "<>&"])
def test_md_text_cannot_open_html_split_a_row_or_break_a_line(value):
    text = md_text(value)
    assert "\n" not in text and "\r" not in text
    assert "<" not in text and ">" not in text
    assert len(_cells(f"|{text}|")) == 3  # one cell, whatever the value
    assert re.search(r"(?<!\\)(\\\\)*`", text) is None  # every backtick escaped


@pytest.mark.parametrize("value", ["a`b", "``x``", "`start", "end`", "plain"])
def test_md_code_uses_a_delimiter_longer_than_any_backtick_run(value):
    span = md_code(value)
    fence = re.match(r"`+", span).group(0)
    assert len(fence) > max((len(r) for r in re.findall(r"`+", value)), default=0)
    assert span.endswith(fence) and span[len(fence):-len(fence)].strip() == value


def test_md_fence_is_longer_than_any_backtick_run_in_the_code():
    code = "echo ```\n````` inside\n<b>x</b>"
    block = md_fence(code, "bash")
    assert block.startswith("``````bash\n") and block.endswith("\n``````")
    assert block[len("``````bash\n"):-len("\n``````")] == code  # verbatim


def test_adversarial_names_stay_inside_their_cells_and_fences(local, no_network, tmp_path):
    from datasets import ClassLabel, Dataset, Features, Value

    from cld_hf import add_index_column

    n = 8
    ds = Dataset.from_dict(
        {"label": [i % 2 for i in range(n)], "cld_score": [float(i) for i in range(n)],
         "x|y`<i>": ["v"] * n},
        features=Features({"label": ClassLabel(names=[EVIL, "fine"]),
                           "cld_score": Value("float32"), "x|y`<i>": Value("string")}))
    ds = add_index_column(ds, name="me/src", split="train")
    command = "cld-hf run --name '```' | tee log <b>bold</b>\nsecond line"
    out = export_coreset_repos(
        ds, tmp_path / "out", repo_id="me/c", fraction=0.5, model=local.tiny_bert(),
        model_repo_id="me/c-proxy", license=EVIL, tags=[EVIL],
        method_info={"command": command, "proxy_model": EVIL, EVIL: EVIL})
    for readme in (out.dataset_dir / "README.md", out.model_dir / "README.md"):
        text = readme.read_text()
        body = text.split("\n---\n", 1)[1]  # the Markdown after the YAML front matter
        _check_tables(body)
        outside = _strip_fences(body)
        for raw in ("<script>", "<img", "<b>", "<i>"):
            assert raw not in outside, (readme, raw)
        assert "&lt;script&gt;" in outside
        fenced = re.findall(r"^(`{3,})bash\n(.*?)\n\1$", body, flags=re.S | re.M)
        assert [code for _, code in fenced] == [command]  # the command, verbatim, in one fence
    # the YAML front matter keeps the values exactly (yaml escapes them)
    from huggingface_hub import DatasetCard

    card = DatasetCard.load(out.dataset_dir / "README.md")
    assert EVIL in card.data.tags and card.data.license == EVIL


# ---------------------------------------------------------------------------- no placeholders

# method_info as `cld-hf run` (cld_hf.experiment) writes it for the default run on digits
_DEFAULT_RUN_INFO = {
    "proxy_model": "ResNet (transformers, built from a config: embedding 16, hidden sizes "
                   "[16, 32], depths [1, 1])",
    "epochs": 10, "num_snapshots": 10, "record_mode": "sweep", "query_fraction": 0.1,
    "query_seed": 0, "num_train": 9, "num_query": 1, "source_dataset": None, "dataset": "digits",
    "balance": "equal", "label_noise": 0.0, "methods": ["cld"], "signals": [],
    "command": "cld-hf run", "proxy_test_accuracy": 0.6125, "fraction": 0.5,
}


def test_default_run_cards_have_no_placeholder_and_show_what_is_known(local, no_network,
                                                                      tmp_path):
    """Regression test for the issue about output a person reads: the default run's dataset
    card had "[More Information Needed]" 5 times, its model card 6 times, the evaluation was a
    placeholder though the proxy accuracy was known, and the citation had no authors."""
    from cld_hf import add_index_column

    scored = add_index_column(local.scored_dataset().remove_columns("sample_index"),
                              split="train")  # what the default run's index records: no name
    out = export_coreset_repos(scored, tmp_path / "out", repo_id="your-namespace/digits-cld-50pct",
                               fraction=0.5, model=local.tiny_bert(),
                               model_repo_id="your-namespace/digits-cld-50pct-proxy",
                               method_info=_DEFAULT_RUN_INFO)
    data = (out.dataset_dir / "README.md").read_text()
    model = (out.model_dir / "README.md").read_text()
    for text in (data, model):
        assert "More Information Needed" not in text
        assert "author        = {Nagaraj, Manish and Ravikumar, Deepak and Roy, Kaushik}" in text
        assert "eprint        = {2508.20230}" in text and "Transactions on Machine Learning" in text
        assert "**License:**" not in text  # unknown: the line is left out
    assert "A class-balanced coreset of `digits`," in data
    assert "| proxy training epochs | 10 |" in data and "| `dataset` | digits |" in data
    assert "- **Architecture:** BertForSequenceClassification (" in model
    assert "## Evaluation" in model and "| accuracy | test | 0.6125 |" in model
    assert "## Reproduce" in model and "cld-hf run" in model
    # without a command nor an accuracy, those sections are left out rather than empty
    bare = export_coreset_repos(scored, tmp_path / "bare", repo_id="me/c", fraction=0.5,
                                model=local.tiny_bert(), model_repo_id="me/c-proxy")
    bare_model = (bare.model_dir / "README.md").read_text()
    bare_data = (bare.dataset_dir / "README.md").read_text()
    assert "## Evaluation" not in bare_model and "## Reproduce" not in bare_model
    assert "### Reproduce" not in bare_data and "More Information Needed" not in bare_data
    assert "A class-balanced coreset of a dataset of 10 rows" in bare_data


def test_citation_is_bibtex_with_authors_venue_and_arxiv():
    assert CITATION_BIBTEX.startswith("@article{")
    for part in ("Nagaraj, Manish and Ravikumar, Deepak and Roy, Kaushik",
                 "Transactions on Machine Learning Research", "2025", "2508.20230"):
        assert part in CITATION_BIBTEX
