"""scripts/bench_sft.py runs (a smoke test on a few documents) and reports paired ratios."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

pytest.importorskip("trl")
pytestmark = pytest.mark.slow

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "bench_sft.py"


def test_bench_sft_reports_paired_ratios_to_the_plain_sft_epoch(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("bench_sft", SCRIPT)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "bench.json"
    assert bench.main(["--docs", "24", "--epochs", "1", "--repeats", "1", "--width", "32",
                       "--max-length", "48", "--configs", "plain", "sweep", "--json",
                       str(out)]) == 0
    results = json.loads(out.read_text())
    assert set(results["ratio_paired"]) == {"plain", "sweep"}
    assert results["ratio_paired"]["plain"] == 1.0 and results["ratio_paired"]["sweep"] > 0
    assert "load" in results["loads"][0]
    assert "CLDCallback sweep" in capsys.readouterr().out
