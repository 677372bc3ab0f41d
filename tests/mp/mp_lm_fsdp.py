"""Two-process recording of a *sharded* causal LM: torch FSDP on CPU (gloo), launched by the tests
with ``torchrun --nproc_per_node 2``.

accelerate and the Trainer fall back to DDP on CPU (``use_cpu=True`` ignores ``fsdp=``,
``Accelerator(cpu=True, fsdp_plugin=...)`` prepares DDP), so the model is sharded with torch's
own FSDP (``fully_shard``, FSDP2, and ``FullyShardedDataParallel``, FSDP1) and driven by a
custom loop with a LossRecorder, which gets its processes from accelerate's ``PartialState``.
Every rank holds a shard of the weights, so each sweep forward is collective: every rank must
run the same number of sweep batches (the sweep pads the shards). 37 training documents and 11
query documents, sweep batch 4: neither divides evenly over 2 x 4.

For each FSDP version, OUT_DIR/<version>/ gets the store (cld/), the full weights at every
snapshot (weights_<s>.pt, gathered with torch.distributed.checkpoint) and result.json; the tests
recompute every document's loss alone in one process and compare.

Usage: torchrun --nproc_per_node 2 tests/mp/mp_lm_fsdp.py OUT_DIR
"""

from __future__ import annotations

import json
import os
import sys

import torch

from lm_helpers import bpe_tokenizer, tiny_gpt2, tokenized_corpus

N_TRAIN, N_QUERY, EPOCHS = 37, 11, 3


def shard(model, version):
    if version == "fsdp2":
        from torch.distributed.fsdp import fully_shard

        for block in model.transformer.h:
            fully_shard(block)
        return fully_shard(model)
    from torch.distributed.fsdp import FullyShardedDataParallel

    return FullyShardedDataParallel(model, device_id=torch.device("cpu"), use_orig_params=True)


def full_weights(model):
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True,
                                                                cpu_offload=True))


def run(out_dir, version):
    from accelerate import PartialState
    from torch.utils.data import DataLoader, DistributedSampler
    from transformers import DataCollatorForLanguageModeling

    from cld_hf import LossRecorder

    state = PartialState(cpu=True)  # on CPU accelerate needs cpu=True to see the processes
    tok = bpe_tokenizer()
    train, query = (d.remove_columns("source") for d in tokenized_corpus(N_TRAIN, N_QUERY))
    collate = DataCollatorForLanguageModeling(tok, mlm=False)
    model = shard(tiny_gpt2(len(tok), seed=0), version)
    recorder = LossRecorder(train, query, output_dir=os.path.join(out_dir, "cld"),
                            collate_fn=collate, sweep_batch_size=4, progress=False)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    sampler = DistributedSampler(range(N_TRAIN), num_replicas=state.num_processes,
                                 rank=state.process_index, shuffle=True, seed=0)
    loader = DataLoader(train.with_format(columns=["input_ids", "attention_mask"]),
                        batch_size=4, sampler=sampler, collate_fn=collate)
    for epoch in range(EPOCHS + 1):
        weights = full_weights(model)  # collective: every rank
        if state.is_main_process:
            torch.save(weights, os.path.join(out_dir, f"weights_{epoch}.pt"))
        recorder.record(model, epoch=epoch)
        if epoch == EPOCHS:
            break
        sampler.set_epoch(epoch)
        model.train()
        for batch in loader:
            model(**batch, use_cache=False).loss.backward()
            optimizer.step()
            optimizer.zero_grad()
    scores = recorder.scores()
    if state.is_main_process:
        with open(os.path.join(out_dir, "result.json"), "w") as f:
            json.dump({"scores": scores.tolist(), "num_processes": state.num_processes,
                       "model": type(model).__name__, "loss_type": recorder.loss_type}, f)
    state.wait_for_everyone()


def main(out_root):
    torch.set_num_threads(1)
    for version in ("fsdp2", "fsdp1"):
        out_dir = os.path.join(out_root, version)
        os.makedirs(out_dir, exist_ok=True)
        run(out_dir, version)
    torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
