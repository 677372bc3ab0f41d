"""`cld-hf run --push-to-hub` against the Hub test server: the coreset with its ClassLabel names
and the proxy model with its tokenizer arrive, and the cards carry what the run knows."""

from __future__ import annotations

from hub_client import client  # noqa: F401  (fixture)


def test_run_pushes_a_text_coreset_with_class_names_and_the_proxy_with_its_tokenizer(
        client, tmp_path):  # noqa: F811
    out = client.run(f"""
        import os
        from datasets import Dataset, DatasetDict, load_dataset
        from huggingface_hub import HfApi
        from cld_hf.cli import main
        os.environ["HF_TOKEN"] = TOKEN
        words = {{"pos": "good great happy".split(), "neg": "bad awful sad".split()}}
        rows = [{{"text": f"the film was {{words[lab][i % 3]}} and {{words[lab][(i + 1) % 3]}}",
                  "sentiment": lab}} for i in range(36) for lab in ["pos", "neg"][i % 2:i % 2 + 1]]
        DatasetDict({{"train": Dataset.from_list(rows[:28]), "test": Dataset.from_list(rows[28:])}}
                    ).save_to_disk({str(tmp_path / "reviews")!r})
        code = main(["run", "--dataset", {str(tmp_path / "reviews")!r}, "--label-column", "sentiment",
                     "--output-dir", {str(tmp_path / "run")!r}, "--push-to-hub", "cld-tester/app-run",
                     "--proxy-epochs", "2", "--target-epochs", "1", "--seeds", "1",
                     "--fractions", "0.5", "--batch-size", "8", "--no-plots", "--no-full-baseline",
                     "--threads", "1", "--no-progress"])
        core = load_dataset("cld-tester/app-run", split="train")
        meta, text = readme("cld-tester/app-run", "dataset")
        model_meta, model_text = readme("cld-tester/app-run-proxy", "model")
        result = {{"code": code, "names": core.features["sentiment"].names, "rows": len(core),
                   "model_files": sorted(HfApi().list_repo_files("cld-tester/app-run-proxy")),
                   "text": text, "model_text": model_text,
                   "pipeline": model_meta.get("pipeline_tag")}}
    """)
    assert out["code"] == 0
    assert out["names"] == ["neg", "pos"] and out["rows"] > 0
    assert {"tokenizer.json", "model.safetensors", "config.json"} <= set(out["model_files"])
    assert "| 0 | neg |" in out["text"] and "| `test_accuracy` | proxy model: " in out["text"]
    assert "--push-to-hub cld-tester/app-run" in out["text"]  # the command that reproduces it
    assert out["pipeline"] == "text-classification"
    assert "| accuracy | test |" in out["model_text"]
