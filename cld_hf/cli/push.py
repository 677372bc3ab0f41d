"""``cld-hf push``: share a saved coreset (or scored dataset) and the proxy model on the Hub.

Reads the dataset saved with ``save_to_disk`` (by ``cld-hf score``, ``cld-hf select`` or your
own code) and, when present, ``cld_run.json`` next to it as ``method_info`` (its keys are listed
in :mod:`cld_hf.hub`); then calls :func:`cld_hf.hub.push_coreset_to_hub`: one commit to the
dataset repo and, with ``--model-dir``, one to the model repo.

Exit codes: 0 pushed, 1 the push failed (bad data, token refused, no network, Hub error: one
line says why, what is left on the Hub and how to retry), 2 bad arguments.
"""

from __future__ import annotations

import argparse
import sys

from .common import fraction_type, positive_int

EPILOG = """\
examples:
  cld-hf push out/coreset-10pct --repo-id me/cifar100-cld-10pct --source-dataset uoft-cs/cifar100
  cld-hf push out/scored --fraction 0.1 --repo-id me/cifar100-cld-10pct     # select, then push
  cld-hf push out/coreset-10pct --repo-id me/cifar100-cld-10pct \\
      --model-dir out/proxy --model-repo-id me/cifar100-resnet18-proxy      # + the proxy model
  cld-hf push out/coreset-10pct --repo-id me/c --revision v2               # to branch v2
  cld-hf push out/coreset-10pct --repo-id me/c --create-pr                  # open a pull request

The token comes from --token, else HF_TOKEN, else `hf auth login`. cld_run.json next to the
dataset (written by cld-hf score / select) fills the card: proxy model, epochs, snapshots, query
fraction and seed, the command that reproduces the scores.
"""


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "push",
        help="push a coreset, its scores and the proxy model to the Hugging Face Hub",
        description="Push a saved coreset (or a scored dataset with --fraction/--size) to a Hub\n"
        "dataset repo with two configs (the coreset rows; sample_index + label + scores only)\n"
        "and a dataset card; with --model-dir, also the proxy model and its card.\n"
        "One commit per repo: a failed push changes nothing.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("dataset", metavar="SAVED_DATASET_DIR",
                   help="a coreset or scored dataset saved with save_to_disk")
    p.add_argument("--repo-id", required=True, help="dataset repo, e.g. me/cifar100-cld-10pct")
    size = p.add_mutually_exclusive_group()
    size.add_argument("--fraction", type=fraction_type,
                      help="select this share of a scored dataset before pushing, e.g. 0.1")
    size.add_argument("--size", type=positive_int, help="select this many samples first")
    p.add_argument("--balance", choices=["equal", "proportional"], default=None,
                   help="budget rule (default: cld_run.json's, else equal)")
    p.add_argument("--split", default=None, help="split of the input when it is a DatasetDict")
    p.add_argument("--label-column", default=None, help="default: labels, then label")
    p.add_argument("--include-trajectory", action="store_true",
                   help="also push the loss_trajectory column")
    model = p.add_argument_group("proxy model")
    model.add_argument("--model-dir", default=None,
                       help="saved model directory (save_pretrained; safetensors) to push")
    model.add_argument("--model-repo-id", default=None, help="model repo, e.g. me/proxy")
    model.add_argument("--skip-model-file", action="append", default=None,
                       dest="skip_model_files", metavar="NAME",
                       help="leave this file (or fnmatch pattern) of --model-dir out "
                            "(repeatable); only safetensors, config and tokenizer files are "
                            "pushed, any other file is an error unless skipped")
    card = p.add_argument_group("card")
    card.add_argument("--source-dataset", default=None,
                      help="Hub id of the dataset sample_index points into (default: cld_run.json)")
    card.add_argument("--source-revision", default=None,
                      help="revision (commit or tag) of --source-dataset")
    card.add_argument("--source-split", default=None, help="default: cld_run.json's, else train")
    card.add_argument("--license", default=None, help="e.g. the source dataset's license")
    card.add_argument("--tag", action="append", default=None, dest="tags",
                      help="extra card tag (repeatable)")
    hub = p.add_argument_group("Hub")
    hub.add_argument("--private", action="store_true", help="create the repos private")
    hub.add_argument("--token", default=None, help="Hub token with write access")
    hub.add_argument("--revision", default=None, help="branch to push to (created if missing)")
    hub.add_argument("--create-pr", action="store_true", help="open a pull request instead")
    hub.add_argument("--commit-message", default=None,
                     help="message of both commits (default: one naming the coreset)")
    hub.add_argument("--max-shard-size", default="500MB",
                     help="largest Parquet shard (default: 500MB)")
    p.set_defaults(func=run)


def run(args) -> int:
    if (args.model_dir is None) != (args.model_repo_id is None):
        print("cld-hf push: error: --model-dir and --model-repo-id go together "
              f"(got --model-dir={args.model_dir!r}, --model-repo-id={args.model_repo_id!r}).",
              file=sys.stderr)
        return 2

    from ..hub import HubPushError, push_coreset_to_hub
    from .common import load_saved_dataset, read_run_info

    dataset = load_saved_dataset(args.dataset, args.split)
    method_info = read_run_info(args.dataset)
    try:
        result = push_coreset_to_hub(
            dataset, args.repo_id,
            model=args.model_dir, model_repo_id=args.model_repo_id,
            skip_model_files=args.skip_model_files,
            source_dataset=args.source_dataset, source_revision=args.source_revision,
            source_split=args.source_split, fraction=args.fraction, size=args.size,
            balance=args.balance, label_column=args.label_column, method_info=method_info,
            include_trajectory=args.include_trajectory, license=args.license, tags=args.tags,
            private=args.private, token=args.token, revision=args.revision,
            create_pr=args.create_pr, commit_message=args.commit_message,
            max_shard_size=args.max_shard_size,
        )
    except HubPushError as err:
        print(f"cld-hf push: error: {err}", file=sys.stderr)
        return 1
    if result is None:  # not the main process
        return 0
    commit = result.dataset_commit
    print(f"dataset: {result.dataset_repo_id} -> {commit.pr_url or commit.commit_url}")
    if result.model_commit is not None:
        commit = result.model_commit
        print(f"model:   {result.model_repo_id} -> {commit.pr_url or commit.commit_url}")
    return 0
