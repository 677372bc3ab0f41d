"""Per-sample losses and the baselines' signals (cld_hf.recording.losses)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch


from helpers import (
    digits_dataset,
    tiny_resnet,
)

from cld_hf.recording import (
    classification_signals,
    default_per_sample_loss,
    find_feature_module,
    per_sample_cross_entropy,
    per_sequence_token_loss,
)


from helpers import make_recorder


def test_per_sample_cross_entropy_matches_hand_computed_values():
    logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 0.0, 0.0], [1.0, 3.0, 0.0]])
    got = per_sample_cross_entropy(logits, torch.tensor([0, 2, 1])).tolist()
    # -log softmax(logits)[label]
    want = [math.log(math.exp(2) + 2) - 2, math.log(3), math.log(math.e + math.exp(3) + 1) - 3]
    assert got == pytest.approx(want, abs=1e-6)


def test_token_loss_is_mean_over_labelled_tokens_and_shifts_for_causal_lm():
    # Vocabulary of 2; position p predicts token 0 with probability sigmoid(z_p).
    z = torch.tensor([[0.0, 2.0, -1.0]])
    logits = torch.stack([z, torch.zeros_like(z)], dim=-1)  # (1, 3, 2)

    def nll(zp, token):
        p0 = 1 / (1 + math.exp(-zp))
        return -math.log(p0 if token == 0 else 1 - p0)

    masked = per_sequence_token_loss(logits, torch.tensor([[0, -100, 1]])).item()
    assert masked == pytest.approx((nll(0.0, 0) + nll(-1.0, 1)) / 2, abs=1e-6)
    # causal: logits at positions 0, 1 predict labels at positions 1, 2
    causal = per_sequence_token_loss(logits, torch.tensor([[7, 1, -100]]), shift=True).item()
    assert causal == pytest.approx(nll(0.0, 1), abs=1e-6)


def test_auto_loss_type_recognises_a_causal_lm_by_class_name():
    class TinyForCausalLM(torch.nn.Module):
        pass

    logits = torch.zeros(1, 3, 4)
    logits[0, 0, 2] = 5.0  # position 0 confidently predicts token 2
    batch = {"labels": torch.tensor([[2, 2, 3]])}
    causal = default_per_sample_loss({"logits": logits}, batch, model=TinyForCausalLM())
    token = default_per_sample_loss({"logits": logits}, batch, model=torch.nn.Linear(1, 1))
    want = (-5 + math.log(math.exp(5) + 3) + math.log(4)) / 2  # positions 0 and 1 predict
    assert causal.item() == pytest.approx(want, abs=1e-5)
    assert token.item() == pytest.approx(torch.nn.functional.cross_entropy(
        logits[0], batch["labels"][0]).item(), abs=1e-6)


def test_classification_loss_with_float_labels_names_the_fix():
    with pytest.raises(TypeError, match="per_sample_loss"):
        per_sample_cross_entropy(torch.zeros(2, 3), torch.tensor([0.5, 1.0]))


def test_classification_signals_by_hand():
    logits = torch.tensor([[1.0, 3.0, 0.0], [0.0, 0.0, 0.0]])
    labels = torch.tensor([1, 2])
    out = classification_signals(logits, labels, ["correct", "true_prob", "margin", "el2n"])
    p = torch.softmax(logits, dim=1)
    assert out["correct"].tolist() == [True, False]  # a tie goes to the lower class
    assert out["margin"].tolist() == [2.0, 0.0]
    np.testing.assert_allclose(out["true_prob"], [p[0, 1], 1 / 3], atol=1e-7)
    el2n0 = math.sqrt(p[0, 0] ** 2 + (1 - p[0, 1]) ** 2 + p[0, 2] ** 2)
    np.testing.assert_allclose(out["el2n"], [el2n0, math.sqrt(2 / 9 + 4 / 9)], atol=1e-6)
    with pytest.raises(ValueError, match=r"class ids in \[0, 2\].*\[0, 5\]"):
        classification_signals(logits, torch.tensor([0, 5]), ["margin"])


def test_final_features_of_a_transformers_resnet_are_the_pooled_features(accelerator, tmp_path):
    """The rule picks the ResNet's classifier.1 (the last Linear with one output per class)."""
    train, query = digits_dataset(n_train=40, n_query=30, image=True)
    model = tiny_resnet()
    assert find_feature_module(model, num_classes=10)[0] == "classifier.1"
    rec = make_recorder(accelerator, (train, query), tmp_path, signals=["embeddings", "probs"])
    rec.record(model, epoch=0)
    assert not rec.final_features_recorded
    assert rec.record_final_features(model) == ["embeddings", "probs"]
    pix = torch.tensor(np.asarray(train.with_format("numpy")["pixel_values"][:]))
    model.eval()
    with torch.no_grad():
        pooled = model.resnet(pix).pooler_output.flatten(1)
        probs = torch.softmax(model(pixel_values=pix).logits, dim=1)
    np.testing.assert_allclose(rec.store.load_array("embeddings"), pooled.numpy(), atol=1e-5)
    np.testing.assert_allclose(rec.store.load_array("probs"), probs.numpy(), atol=1e-6)
    assert rec.store.signal_names == []  # no per-snapshot signal was asked for
