"""The CIFAR-recipe scripts (issue 4) run on CPU: proxy with LossRecorder, then a target on a coreset."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from datasets import load_from_disk

from cld_hf import LossTrajectories, cld_scores, select_top_per_class

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"


def run_script(name, *args, cwd):
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    proc = subprocess.run([sys.executable, str(SCRIPTS / name), *map(str, args)], capture_output=True,
                          text=True, env=env, cwd=cwd, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_train_proxy_then_train_on_coreset(tmp_path):
    proxy = tmp_path / "proxy"
    result = run_script("train_proxy.py", "--dataset", "digits", "--epochs", "2", "--max_train_samples", "150",
                        "--image_size", "16", "--batch_size", "32", "--sweep_batch_size", "64",
                        "--output_dir", proxy, "--cpu", cwd=tmp_path)
    assert result["num_snapshots"] == 3 and result["num_train"] + result["num_query"] == 150
    store = LossTrajectories(proxy / "trajectories")
    train_losses = store.train_losses()
    assert train_losses.shape == (result["num_train"], 3) and np.isfinite(train_losses).all()
    scored = load_from_disk(str(proxy / "scored"))
    scores = cld_scores(train_losses, store.train_labels, store.query_losses(), store.query_labels)
    np.testing.assert_allclose(scored["cld_score"][:], scores, atol=1e-6)
    assert sorted(p.name for p in (proxy / "model").iterdir()) == ["config.json", "model.safetensors"]
    assert json.loads((proxy / "scored" / "cld_run.json").read_text())["num_snapshots"] == 3

    target = run_script("train_on_coreset.py", "--scored", proxy / "scored", "--fraction", "0.3",
                        "--dataset", "digits", "--epochs", "1", "--image_size", "16", "--batch_size", "32",
                        "--output_dir", tmp_path / "target", "--cpu", cwd=tmp_path)
    expected = select_top_per_class(scores, np.asarray(scored["label"][:]), fraction=0.3)
    assert target["coreset_size"] == len(expected)
    full = json.loads((tmp_path / "target" / "result.json").read_text())
    assert full["best_test_accuracy"] == max(full["test_accuracy_per_epoch"])
    assert 0.0 <= full["final_test_accuracy"] <= 1.0


def test_train_proxy_train_pass_records_the_training_forward(tmp_path):
    result = run_script("train_proxy.py", "--dataset", "digits", "--epochs", "2", "--max_train_samples", "90",
                        "--image_size", "16", "--batch_size", "16", "--mode", "train_pass",
                        "--arch", "resnet18", "--output_dir", tmp_path / "p", "--cpu", cwd=tmp_path)
    store = LossTrajectories(tmp_path / "p" / "trajectories")
    assert result["num_snapshots"] == store.num_snapshots == 3
    # every training sample got a loss from the epoch's training batches (none missing)
    assert np.isfinite(store.train_losses()).all()


def test_train_proxy_refuses_too_few_snapshots(tmp_path):
    proc = subprocess.run([sys.executable, str(SCRIPTS / "train_proxy.py"), "--epochs", "1",
                           "--output_dir", str(tmp_path / "x"), "--cpu"], capture_output=True, text=True)
    assert proc.returncode == 1 and "CLD needs at least 3" in proc.stderr
    assert not (tmp_path / "x").exists()


def test_bench_callback_gpu_preset_runs_on_cpu_with_allow_cpu(tmp_path):
    """The gpu preset's code path (synthetic CIFAR-shaped data, ResNet-18, warm-up, workers, bf16,
    the timing pair around CLDCallback) on CPU with a tiny N; no timing is asserted."""
    out_json, out_md = tmp_path / "gpu.json", tmp_path / "gpu.md"
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [sys.executable, str(SCRIPTS / "bench_callback.py"), "--preset", "gpu", "--allow-cpu",
         "--num-train", "256", "--num-query", "40", "--size", "16", "--epochs", "2",
         "--repeats", "1", "--batch-size", "64", "--eval-batch-size", "128", "--num-workers", "1",
         "--threads", "1", "--warmup-steps", "1", "--bf16", "--json", str(out_json),
         "--markdown", str(out_md)],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out_json.read_text())
    assert (result["preset"], result["N"], result["Q"], result["bf16"]) == ("gpu", 256, 40, True)
    assert result["parameters"] == 11_181_642 and result["device"] == "CPU"
    assert result["recording_samples"] == {"sweep": 296, "train_pass": 40}
    assert all(len(result["epoch_times_s"][m]) == 2 for m in ("plain", "sweep", "train_pass"))
    assert all(len(result["recording_times_s"][m]) == 2 for m in ("sweep", "train_pass"))
    for key in ("recording_samples_per_s", "initial_snapshot_samples_per_s"):
        assert all(v > 0 for v in result[key].values())
    assert all(v > 0 for v in result["train_samples_per_s"].values())
    assert "ResNet-18" in proc.stdout and "samples/s" in proc.stdout
    assert "| `CLDCallback(mode=\"sweep\")` |" in out_md.read_text()


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is available")
def test_bench_callback_gpu_preset_needs_cuda(tmp_path):
    proc = subprocess.run([sys.executable, str(SCRIPTS / "bench_callback.py"), "--preset", "gpu"],
                          capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        "bench_callback.py: error: --preset gpu needs a CUDA device, and "
        "torch.cuda.is_available() is False here; run the cpu preset (the default)."]


def test_compare_strategies_runs_each_strategy_on_the_same_budgets(tmp_path):
    """A tiny clean-digits setting: every strategy (the epoch-normalised top-k included) trains
    a target on a coreset of the same size per seed, and the report tabulates each."""
    out = tmp_path / "strategies"
    proc = subprocess.run(
        [sys.executable, str(SCRIPTS / "compare_strategies.py"), "--datasets", "digits",
         "--noise", "0", "--fractions", "0.1", "--seeds", "1", "--proxy_epochs", "3",
         "--digits_target_epochs", "1", "--threads", "1", "--strategies", "top",
         "top_query_spread", "noise_adaptive", "random", "--output_dir", str(out)],
        capture_output=True, text=True, timeout=600,
        env=dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = json.loads((out / "runs.json").read_text())["runs"]
    assert sorted(r["strategy"] for r in runs) == ["noise_adaptive", "random", "top",
                                                     "top_query_spread"]
    n_train = json.loads((out / "digits-noise0" / "setting.json").read_text())["num_train"]
    assert len({r["size"] for r in runs}) == 1 and 0.09 < runs[0]["size"] / n_train < 0.11
    report = (out / "results.md").read_text()
    assert "| digits-noise0 | 10% | top_query_spread | 1 |" in report
