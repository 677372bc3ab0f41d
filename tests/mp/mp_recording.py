"""Two-process recording run, launched by the tests with ``torchrun --nproc_per_node 2`` (gloo).

82 training samples, batch size 16, 2 processes: 82 does not divide by 2 x 16, so accelerate
pads the last batches (``even_batches``) and the sweeps shard unevenly. Three scenarios, each in
its own folder of OUT_DIR, checked afterwards by the tests in one process:

- ``trainer_sweep``: Trainer + CLDCallback (sweep), 3 epochs, a checkpoint every epoch.
- ``trainer_train_pass``: Trainer + CLDCallback (train_pass), learning rate 0 and gradient
  accumulation 2: every training-pass snapshot must equal the initial sweep.
- ``loop``: a custom accelerate loop with two LossRecorders (sweep, with every baseline signal
  and the final features at the last snapshot, and train_pass via capture); the weights at every
  snapshot are saved for the one-process recomputation.

Usage: torchrun --nproc_per_node 2 tests/mp/mp_recording.py OUT_DIR
"""

from __future__ import annotations

import json
import os
import sys

import torch


from helpers import MLP, digits_dataset


def trainer_run(out_dir, mode):
    from transformers import Trainer, TrainingArguments

    from cld_hf import CLDCallback

    train, query = digits_dataset(n_train=82, n_query=30)
    model = MLP(seed=0)
    args = TrainingArguments(
        out_dir, num_train_epochs=3, per_device_train_batch_size=16,
        gradient_accumulation_steps=2 if mode == "train_pass" else 1,
        learning_rate=0.0 if mode == "train_pass" else 0.5, optim="sgd",
        lr_scheduler_type="constant",
        save_strategy="epoch", logging_strategy="no", report_to=[], disable_tqdm=True, seed=0,
        use_cpu=True,
    )
    if mode == "train_pass":  # the training batches must carry the index: pass the Trainer
        trainer = Trainer(model=model, args=args, train_dataset=train)
        cld = CLDCallback(query, trainer=trainer, mode=mode, sweep_batch_size=16, progress=False)
        trainer.add_callback(cld)
    else:
        cld = CLDCallback(query, mode=mode, sweep_batch_size=16, progress=False)
        trainer = Trainer(model=model, args=args, train_dataset=train, callbacks=[cld])
    trainer.train()
    scores = cld.scores()
    if trainer.accelerator.is_main_process:
        with open(os.path.join(out_dir, "result.json"), "w") as f:
            json.dump({"scores": scores.tolist(),
                       "num_processes": trainer.accelerator.num_processes}, f)


def loop_run(out_dir):
    from accelerate import Accelerator
    from safetensors.torch import save_file
    from torch.utils.data import DataLoader

    from cld_hf.recording import IndexCollator, IndexedDataset, LossRecorder

    accelerator = Accelerator(cpu=True)
    train, query = digits_dataset(n_train=82, n_query=30)
    model = MLP(seed=1)
    signals = ["correct", "true_prob", "margin", "el2n", "grad_projection", "embeddings", "probs"]
    sweep = LossRecorder(train, query, accelerator=accelerator, output_dir=os.path.join(out_dir, "sweep"),
                         sweep_batch_size=16, progress=False, if_exists="overwrite", signals=signals)
    passes = LossRecorder(train, query, accelerator=accelerator, output_dir=os.path.join(out_dir, "train_pass"),
                          mode="train_pass", sweep_batch_size=16, progress=False, if_exists="overwrite")
    loader = DataLoader(IndexedDataset(train), batch_size=16, shuffle=True,
                        collate_fn=IndexCollator())
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    model, optimizer, loader = accelerator.prepare(model, optimizer, loader)

    def snapshot(epoch):
        sweep.record(model, epoch=epoch, final=epoch == 3)
        passes.record(model, epoch=epoch)
        if accelerator.is_main_process:
            weights = accelerator.unwrap_model(model).state_dict()
            save_file({k: v.contiguous() for k, v in weights.items()},
                      os.path.join(out_dir, f"weights-{epoch}.safetensors"))
        accelerator.wait_for_everyone()

    snapshot(0)
    for epoch in range(1, 4):
        model.train()
        with passes.capture(model):
            for batch in loader:
                outputs = model(**batch)  # the capture hook takes cld_hf_index out of the call
                accelerator.backward(outputs["loss"])
                optimizer.step()
                optimizer.zero_grad()
        snapshot(epoch)
    if accelerator.is_main_process:
        with open(os.path.join(out_dir, "result.json"), "w") as f:
            json.dump({"sweep_scores": sweep.scores().tolist(),
                       "train_pass_scores": passes.scores().tolist(),
                       "num_processes": accelerator.num_processes}, f)


def main(out_dir):
    trainer_run(os.path.join(out_dir, "trainer_sweep"), "sweep")
    trainer_run(os.path.join(out_dir, "trainer_train_pass"), "train_pass")
    loop_run(os.path.join(out_dir, "loop"))
    import torch.distributed as dist

    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
