"""The sweep of a sharded language model (FSDP1 and FSDP2, 2 CPU processes, gloo;
tests/mp/mp_lm_fsdp.py): every document is recorded once per snapshot, with the loss the full
model gives it alone at that snapshot's weights."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from helpers import run_torchrun
from lm_helpers import bpe_tokenizer, per_document_losses, tiny_gpt2, tokenized_corpus

from cld_hf import LossTrajectories

pytestmark = [pytest.mark.multiprocess, pytest.mark.slow]


@pytest.fixture(scope="module")
def fsdp_runs(tmp_path_factory):
    out = tmp_path_factory.mktemp("fsdp")
    run_torchrun("mp_lm_fsdp.py", out, timeout=400)
    return out


@pytest.mark.parametrize("version", ["fsdp2", "fsdp1"])
def test_a_sharded_model_records_every_document_with_its_own_loss(fsdp_runs, version):
    from mp.mp_lm_fsdp import EPOCHS, N_QUERY, N_TRAIN

    out = fsdp_runs / version
    result = json.loads((out / "result.json").read_text())
    assert result["num_processes"] == 2 and result["loss_type"] == "causal_lm"
    assert ("FSDP" in result["model"]) or ("FullyShardedDataParallel" in result["model"])
    store = LossTrajectories(out / "cld")
    assert store.num_snapshots == EPOCHS + 1
    train, query = tokenized_corpus(N_TRAIN, N_QUERY)
    model = tiny_gpt2(len(bpe_tokenizer()))
    docs = [{"input_ids": ids, "labels": ids} for ids in train["input_ids"]]
    query_docs = [{"input_ids": ids, "labels": ids} for ids in query["input_ids"]]
    for snapshot in range(EPOCHS + 1):
        state = torch.load(out / f"weights_{snapshot}.pt")
        model.load_state_dict(state, strict=False)
        model.tie_weights()
        np.testing.assert_allclose(store.train_losses()[:, snapshot],
                                   per_document_losses(model, docs), atol=1e-4, rtol=0)
        np.testing.assert_allclose(store.query_losses()[:, snapshot],
                                   per_document_losses(model, query_docs), atol=1e-4, rtol=0)
    scores = np.asarray(result["scores"])
    assert scores.shape == (N_TRAIN,) and np.isfinite(scores).all()
    # The training moved the weights: the snapshots differ.
    assert not np.allclose(store.train_losses()[:, 0], store.train_losses()[:, -1])
