"""scripts/render_cards.py: the two cards of a short `cld-hf run`, copied where the README can
include them."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from huggingface_hub import DatasetCard, ModelCard

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "render_cards.py"


def _script(monkeypatch):
    spec = importlib.util.spec_from_file_location("render_cards", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "render_cards", module)
    spec.loader.exec_module(module)
    return module


def test_render_cards_copies_both_rendered_cards(tmp_path, monkeypatch, capsys):
    script = _script(monkeypatch)
    out = tmp_path / "cards"
    fast = ["--proxy-epochs", "2", "--target-epochs", "1", "--fractions", "0.1",
            "--no-full-baseline", "--threads", "1"]
    assert script.main(["--output", str(out), "--run-dir", str(tmp_path / "scratch"), "--",
                        *fast]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["coreset_dataset_card.md",
                                                     "proxy_model_card.md"]
    dataset_card = DatasetCard.load(out / "coreset_dataset_card.md")
    assert "coreset" in dataset_card.data.tags
    text = dataset_card.text
    assert "cld-hf run --output-dir cld_run --overwrite-output-dir --seeds 1 --no-plots " \
           "--proxy-epochs 2" in text
    assert str(tmp_path) not in text  # no machine-specific path in the recorded command
    assert "| `test_accuracy` | proxy model: " in text and "| 0 | 0 |" in text
    assert "| accuracy | test |" in ModelCard.load(out / "proxy_model_card.md").text
    assert (tmp_path / "scratch" / "cld_run" / "results.json").exists()  # --run-dir kept

    body = script.strip_front_matter((out / "proxy_model_card.md").read_text())  # --body-only
    assert body.startswith("# CLD proxy model") and "tags:" not in body
