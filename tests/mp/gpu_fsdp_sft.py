"""Two-GPU check: TRL's SFTTrainer under accelerate FSDP with CLDCallback, self-checking.

Not part of the CPU suite (accelerate and the Trainer fall back to DDP on CPU; the CPU suite
shards with torch's own FSDP instead: tests/mp/mp_lm_fsdp.py). On a machine with 2 GPUs:

    accelerate launch --num_processes 2 --use_fsdp --fsdp_version 2 \\
        --fsdp_auto_wrap_policy TRANSFORMER_BASED_WRAP \\
        --fsdp_transformer_layer_cls_to_wrap GPT2Block \\
        tests/mp/gpu_fsdp_sft.py OUT_DIR --require-fsdp [--packing]

(``PYTHONPATH=<repo>:<repo>/tests``.) It trains a tiny GPT-2 on standard-library docstrings for 3
epochs with the callback (label-free, and per source module with ``--grouped``), gathers the full
weights at every snapshot, and on the main process recomputes every document's loss alone
(``model(**doc).loss``) at those weights; it exits non-zero when a recorded loss differs by more
than 1e-3 (bf16 is not used) or a document has no finite score. Without ``--require-fsdp`` it
runs anywhere (on CPU under ``torchrun --nproc_per_node 2``: DDP, a dry run of this script).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np
import torch


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out_dir")
    parser.add_argument("--require-fsdp", action="store_true")
    parser.add_argument("--packing", action="store_true")
    parser.add_argument("--grouped", action="store_true")
    args = parser.parse_args(argv)

    from transformers import TrainerCallback
    from trl import SFTTrainer

    from cld_hf import CLDCallback
    from lm_helpers import (bpe_tokenizer, docstring_corpus, per_document_losses, plain_documents,
                            sft_config, tiny_gpt2)

    train, query = docstring_corpus(n_train=40, n_query=16)
    tok = bpe_tokenizer()
    config = sft_config(args.out_dir, use_cpu=not torch.cuda.is_available(),
                        packing=args.packing, max_length=96)

    class FullWeights(TrainerCallback):
        """The full (gathered) weights at every snapshot, on the main process."""

        def __init__(self, trainer):
            self.trainer, self.weights = trainer, []

        def _keep(self):
            from torch.distributed.checkpoint.state_dict import (StateDictOptions,
                                                                 get_model_state_dict)

            if torch.distributed.is_initialized():
                state = get_model_state_dict(self.trainer.model_wrapped, options=StateDictOptions(
                    full_state_dict=True, cpu_offload=True))
            else:
                state = {k: v.detach().cpu().clone()
                         for k, v in self.trainer.model.state_dict().items()}
            if self.trainer.accelerator.is_main_process:  # copies: not the live parameters
                self.weights.append({k: v.detach().cpu().clone() for k, v in state.items()})

        def on_train_begin(self, *a, **k):
            self._keep()

        def on_epoch_end(self, *a, **k):
            self._keep()

    trainer = SFTTrainer(model=tiny_gpt2(len(tok)), args=config, train_dataset=train,
                         processing_class=tok)
    distributed = str(trainer.accelerator.distributed_type)
    if args.require_fsdp and "FSDP" not in distributed:
        print(f"not FSDP: {distributed}", file=sys.stderr)
        return 2
    options = {"group_column": "source"} if args.grouped else {}
    cld = CLDCallback(query, trainer=trainer, progress=False,
                      train_dataset=train if args.packing else None, **options)
    weights = FullWeights(trainer)
    trainer.add_callback(cld)
    trainer.add_callback(weights)
    trainer.train()
    scores = cld.scores()
    status = 0
    if trainer.accelerator.is_main_process:
        model = tiny_gpt2(len(tok))
        docs = plain_documents(tok, train["text"], max_length=96)
        recorded = cld.store.train_losses()
        worst = 0.0
        for snapshot, state in enumerate(weights.weights):
            state = {k.removeprefix("module."): v for k, v in state.items()}
            missing, unexpected = model.load_state_dict(state, strict=False)
            if unexpected or set(missing) - {"lm_head.weight"}:
                raise RuntimeError(f"weights do not fit: missing {missing}, unexpected "
                                   f"{unexpected[:5]}")
            model.tie_weights()
            worst = max(worst, float(np.abs(recorded[:, snapshot]
                                            - per_document_losses(model, docs)).max()))
        ok = worst <= 1e-3 and np.isfinite(scores).all() and len(scores) == len(train)
        result = {"distributed_type": distributed,
                  "num_processes": trainer.accelerator.num_processes,
                  "max_abs_loss_difference": worst, "num_scores": len(scores),
                  "grouping": cld.recorder.grouping.to_dict(), "ok": bool(ok)}
        print(json.dumps(result))
        with open(os.path.join(args.out_dir, "result.json"), "w") as f:
            json.dump(result, f)
        status = 0 if ok else 1
    trainer.accelerator.wait_for_everyone()
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    return status


if __name__ == "__main__":
    raise SystemExit(main())
