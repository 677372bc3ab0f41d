"""Token losses of language models (cld_hf.recording.losses): padding-free batches split by
``position_ids``, TRL's fused LM head outputs, and the loss type resolved from what the model
computes (its own ``loss``; the base model under PEFT), never from a wrapper's class name."""

from __future__ import annotations

import math

import pytest
import torch

from lm_helpers import tiny_gpt2, tiny_t5

from cld_hf.recording.losses import (
    PerSampleLoss,
    fused_per_sequence_loss,
    model_loss_kind,
    per_sequence_token_loss,
    sequence_means,
)


def _random_logits(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def test_a_flattened_batch_gives_each_sequence_the_loss_it_has_alone():
    logits = _random_logits(1, 9, 5)
    labels = torch.tensor([[-100, 1, 2, 3, -100, 4, 0, -100, -100]])  # TRL masks sequence starts
    positions = torch.tensor([[0, 1, 2, 3, 0, 1, 2, 0, 0]])  # 2 sequences + 2 padding tokens
    got = per_sequence_token_loss(logits, labels, shift=True, position_ids=positions,
                                  num_sequences=2)
    first = per_sequence_token_loss(logits[:, :4], labels[:, :4], shift=True)
    second = per_sequence_token_loss(logits[:, 4:7], labels[:, 4:7], shift=True)
    torch.testing.assert_close(got, torch.cat([first, second]))


def test_a_flattened_batch_without_position_ids_or_with_extra_sequences_is_an_error():
    logits, labels = _random_logits(1, 4, 3), torch.tensor([[0, 1, 2, 1]])
    with pytest.raises(ValueError, match="needs the position_ids"):
        per_sequence_token_loss(logits, labels, num_sequences=2)
    with pytest.raises(ValueError, match=r"holds 2 samples, but its position_ids start 3 "
                                         r"sequences.*packing=False"):
        per_sequence_token_loss(logits, labels, position_ids=torch.tensor([[0, 1, 0, 0]]),
                                num_sequences=2)


def test_fused_outputs_give_the_same_losses_as_the_logits():
    logits = _random_logits(2, 5, 7)
    labels = torch.tensor([[3, 1, -100, 2, 2], [5, 5, 5, -100, -100]])
    target = labels[:, 1:]
    log_probs = torch.log_softmax(logits[:, :-1], dim=-1).gather(
        -1, target.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    mask = target != -100
    fused = fused_per_sequence_loss({"log_probs": log_probs * mask, "label_mask": mask})
    torch.testing.assert_close(fused, per_sequence_token_loss(logits, labels, shift=True))


def test_a_sequence_without_target_tokens_is_nan():
    mean = sequence_means(torch.ones(2, 3), torch.tensor([[True, False, False], [False] * 3]))
    assert mean[0].item() == 1.0 and math.isnan(mean[1].item())


def _own(logits, labels, shift):
    if shift:
        logits, labels = logits[:, :-1], labels[:, 1:]
    return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                                             labels.reshape(-1), ignore_index=-100)


@pytest.mark.parametrize("shift, resolved", [(True, "causal_lm"), (False, "token")])
def test_the_shift_is_the_one_that_reproduces_the_models_own_loss(shift, resolved):
    logits = _random_logits(3, 6, 11)
    labels = torch.randint(0, 11, (3, 6), generator=torch.Generator().manual_seed(1))
    labels[0, 4:] = -100
    loss = PerSampleLoss()
    batch = {"labels": labels}
    got = loss({"logits": logits, "loss": _own(logits, labels, shift)}, batch,
               torch.nn.Linear(1, 1))
    assert loss.resolved == resolved
    torch.testing.assert_close(got, per_sequence_token_loss(logits, labels, shift=shift))
    # Later batches are checked against the model's loss too.
    with pytest.raises(ValueError, match=r"model's own loss of this batch is .*loss_type="):
        loss({"logits": logits, "loss": 2 * _own(logits, labels, shift)}, batch)


def test_a_loss_that_matches_no_shift_is_an_error_naming_the_fix():
    logits, labels = _random_logits(2, 4, 5), torch.tensor([[1, 2, 3, 4], [4, 3, 2, 1]])
    with pytest.raises(ValueError, match=r"next-token \(causal_lm\) .*position-wise.*"
                                         r"per_sample_loss="):
        PerSampleLoss()({"logits": logits, "loss": torch.tensor(123.0)}, {"labels": labels})
    explicit = PerSampleLoss(loss_type="causal_lm")  # trusted, not checked (e.g. a router loss)
    explicit({"logits": logits, "loss": torch.tensor(123.0)}, {"labels": labels})


def test_the_structure_of_the_base_model_decides_without_a_loss():
    from peft import LoraConfig, get_peft_model

    pytest.importorskip("peft")
    gpt2, t5 = tiny_gpt2(50), tiny_t5(50)
    plain_peft = get_peft_model(tiny_gpt2(50), LoraConfig(r=2, target_modules=["c_attn"],
                                                          fan_in_fan_out=True))
    assert type(plain_peft).__name__ == "PeftModel"
    assert [model_loss_kind(m) for m in (gpt2, t5, plain_peft)] == ["causal_lm", "seq2seq",
                                                                     "causal_lm"]
    from transformers import BertConfig, BertForMaskedLM

    bert = BertForMaskedLM(BertConfig(vocab_size=50, hidden_size=8, num_hidden_layers=1,
                                      num_attention_heads=2, intermediate_size=16))
    assert model_loss_kind(bert) == "token"
    logits, labels = _random_logits(1, 4, 50), torch.tensor([[1, 2, 3, 4]])
    loss = PerSampleLoss()
    loss({"logits": logits}, {"labels": labels}, plain_peft)  # no loss returned
    assert loss.resolved == "causal_lm"


def test_the_model_sees_the_peft_wrapped_forward_and_its_own_loss_decides():
    """A plain PeftModel (no task_type) around GPT-2: the recorded loss is the model's own
    next-token loss, not the unshifted one its class name used to select."""
    from peft import LoraConfig, get_peft_model

    pytest.importorskip("peft")
    model = get_peft_model(tiny_gpt2(50), LoraConfig(r=2, target_modules=["c_attn"],
                                                     fan_in_fan_out=True))
    ids = torch.tensor([[5, 9, 11, 3, 7]])
    with torch.no_grad():
        out = model(input_ids=ids, labels=ids, use_cache=False)
    loss = PerSampleLoss()
    got = loss(out, {"labels": ids, "input_ids": ids}, model)
    assert loss.resolved == "causal_lm"
    assert got.item() == pytest.approx(out.loss.item(), abs=1e-5)
