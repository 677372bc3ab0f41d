"""`RecorderConfig`: the one options dataclass of the recording, for every entry point.

:class:`~cld_hf.recording.recorder.LossRecorder`, :class:`~cld_hf.callback.CLDCallback`, the
scripts (through ``transformers.HfArgumentParser``) and ``cld-hf run`` all take it; options are
never re-declared layer by layer. Callables (``per_sample_loss``, ``eval_transform``,
``collate_fn``) are constructor arguments of the recorder and the callback, not options.

No torch import here: the config is validated and parsed without loading the recording layer.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Literal

from .._validation import check_bool, check_choice, check_int

__all__ = [
    "RecorderConfig",
    "MODES",
    "LOSS_TYPES",
    "IF_EXISTS",
    "UNSEEN",
    "SNAPSHOT_SIGNALS",
    "FINAL_SIGNALS",
    "make_config",
]

MODES = ("sweep", "train_pass")
LOSS_TYPES = ("auto", "classification", "causal_lm", "seq2seq", "token")
IF_EXISTS = ("error", "overwrite", "resume")
UNSEEN = ("error", "sweep")

SNAPSHOT_SIGNALS = ("correct", "true_prob", "margin", "el2n", "grad_projection", "tdds_kl")
"""Signals the recorder can record at every snapshot (``signals=``), one store column each."""

FINAL_SIGNALS = ("embeddings", "probs", "query_embeddings", "query_probs", "curvature",
                 "boundary_steps")
"""Signals recorded once, at the end of training (``record(model, final=True)``)."""


@dataclass
class RecorderConfig:
    r"""Options of the CLD recording (Algorithm 1 by default; every departure is named).

    > Parameters that control what is recorded

    Args:
        mode (`str`, *optional*, defaults to `"sweep"`):
            Where the training losses come from: `"sweep"`, an eval-mode pass over the training
            and query sets after every epoch (Algorithm 1, as the authors' code); `"train_pass"`,
            the training forward passes of the epoch (only the query set is swept; an
            approximation, see the recorder's docstring).
        record_initial (`bool`, *optional*, defaults to `True`):
            Record snapshot 0 before training (Algorithm 1, line 8). `False` reproduces the
            authors' code (T epochs give T - 1 loss differences). Used by the callback.
        every_n_epochs (`int`, *optional*, defaults to `1`):
            Record epochs 0, k, 2k, ... only.
        streaming (`bool`, *optional*, defaults to `False`):
            Score with `StreamingCLD` as the snapshots land and keep no trajectory (O(N) state).
        signals (`list[str]`, *optional*, defaults to `[]`):
            Extra signals for the baselines, from the logits of the same sweeps: per snapshot any
            of `correct`, `true_prob`, `margin`, `el2n`, `grad_projection`, `tdds_kl`; at the
            end of training `embeddings`, `probs`, `query_embeddings`, `query_probs`, and the
            input-gradient probes `curvature`, `boundary_steps` (image models).
        feature_module (`str`, *optional*):
            Name (in `model.named_modules()`) of the module whose input is the `embeddings`
            signal; default: the last `Linear` with one output per class.

    > Parameters that control the losses and labels

    Args:
        loss_type (`str`, *optional*, defaults to `"auto"`):
            `"classification"` (cross entropy of `(B, C)` logits), `"causal_lm"` (mean loss of the
            next-token predictions of each sequence), `"seq2seq"` (mean loss of the target tokens,
            no shift: T5, BART), `"token"` (mean loss of the labelled positions: masked LM, token
            classification), or `"auto"`: from what the model computes: 2-D logits are
            classification; for 3-D logits the shift that reproduces the model's own `loss`
            (checked on every batch), else the model's structure (the base model under PEFT).
        label_column (`str`, *optional*):
            Class column of both datasets; found as `labels`, then `label` (a scalar integer per
            row: a token-level `labels` column is never a class).
        group_column (`str`, *optional*):
            Score per group instead of per class: a task, source or domain column of both
            datasets (integers or strings). Each group gets its own query trajectory and, in
            `select_coreset`, its own budget: the analogue of classes for data without them.
        label_free (`bool`, *optional*, defaults to `False`):
            One group: every training sample is scored against the mean loss differences of all
            query samples, and the coreset has one budget. Chosen automatically for token data
            (an `input_ids` column or token-level `labels`) without a class column. The paper's
            guarantees speak of the per-class form (Algorithm 1); label-free is its one-class
            case.
        missing_query_class (`str`, *optional*, defaults to `"error"`):
            A training class without query samples: fail at construction, or (`"global"`) score
            it against the all-class query trajectory.
        unseen (`str`, *optional*, defaults to `"error"`):
            `train_pass` only: a training sample no fed batch contained is an error naming it,
            or (`"sweep"`) its loss is taken by an eval-mode forward at the end of the epoch.

    > Parameters that control the sweeps and the output

    Args:
        if_exists (`str`, *optional*, defaults to `"error"`):
            `output_dir` already holds a recording: refuse (`"error"`), replace it
            (`"overwrite"`, the only way a recording is ever deleted), or continue it
            (`"resume"`).
        sweep_batch_size (`int`, *optional*):
            Per-process batch size of the sweeps (recorder: 64; callback: the larger of the
            Trainer's `per_device_eval_batch_size` and twice its `per_device_train_batch_size`).
        sweep_num_workers (`int`, *optional*):
            DataLoader workers of the sweeps (callback: the Trainer's `dataloader_num_workers`).
        remove_unused_columns (`bool`, *optional*, defaults to `True`):
            Give the model only the columns its `forward` accepts (and the labels).
        input_columns (`list[str]`, *optional*):
            The columns to keep with `remove_unused_columns`; inferred from `model.forward`.
        progress (`bool`, *optional*, defaults to `True`):
            tqdm progress bars for the sweeps, on the main process.
        log_summary (`bool`, *optional*, defaults to `True`):
            Callback: log the per-class score summary at the end of training.

    Examples
    --------
    >>> RecorderConfig(mode="train_pass", every_n_epochs=2).every_n_epochs
    2
    >>> RecorderConfig(mode="eval")
    Traceback (most recent call last):
    ...
    ValueError: mode == 'eval', must be one of ['sweep', 'train_pass'].

    It parses from a command line with ``HfArgumentParser``:

    >>> from transformers import HfArgumentParser
    >>> (config,) = HfArgumentParser(RecorderConfig).parse_args_into_dataclasses(
    ...     ["--every_n_epochs", "2", "--signals", "correct", "margin"])
    >>> config.every_n_epochs, config.signals
    (2, ['correct', 'margin'])
    """

    # What is recorded
    mode: Literal["sweep", "train_pass"] = field(default="sweep", metadata={
        "help": "'sweep': an eval-mode pass over the training and query sets after every epoch "
                "(Algorithm 1); 'train_pass': training losses from the training forward passes"})
    record_initial: bool = field(default=True, metadata={
        "help": "record snapshot 0 before training (Algorithm 1); False reproduces the authors' "
                "code"})
    every_n_epochs: int = field(default=1, metadata={"help": "record every k-th epoch only"})
    streaming: bool = field(default=False, metadata={
        "help": "score as the snapshots land (StreamingCLD) and keep no trajectory"})
    signals: list[str] = field(default_factory=list, metadata={
        "help": "extra signals for the baselines: correct true_prob margin el2n grad_projection "
                "tdds_kl (per snapshot); embeddings probs query_embeddings query_probs "
                "curvature boundary_steps (end of training)"})
    feature_module: str | None = field(default=None, metadata={
        "help": "module whose input is the embeddings signal (default: the classifier head)"})
    # Losses and labels
    loss_type: Literal["auto", "classification", "causal_lm", "seq2seq", "token"] = field(
        default="auto", metadata={"help": "per-sample loss: classification, causal_lm, seq2seq, "
                                          "token or auto (from what the model computes)"})
    label_column: str | None = field(default=None, metadata={
        "help": "class column (default: 'labels', then 'label'; never a token-level column)"})
    group_column: str | None = field(default=None, metadata={
        "help": "score per group (task, source, domain column) instead of per class"})
    label_free: bool = field(default=False, metadata={
        "help": "one group: score every sample against the mean of all query samples"})
    missing_query_class: Literal["error", "global"] = field(default="error", metadata={
        "help": "a class without query samples: 'error', or 'global' (all-class trajectory)"})
    unseen: Literal["error", "sweep"] = field(default="error", metadata={
        "help": "train_pass: a sample no fed batch held is an 'error', or is swept ('sweep')"})
    # Sweeps and output
    if_exists: Literal["error", "overwrite", "resume"] = field(default="error", metadata={
        "help": "output_dir holds a recording: 'error', 'overwrite' (delete it) or 'resume'"})
    sweep_batch_size: int | None = field(default=None, metadata={
        "help": "per-process sweep batch size (default: 64; with a Trainer, the larger of its "
                "eval batch size and twice its training batch size)"})
    sweep_num_workers: int | None = field(default=None, metadata={
        "help": "sweep DataLoader workers (default: 0, or the Trainer's)"})
    remove_unused_columns: bool = field(default=True, metadata={
        "help": "give the model only the columns its forward accepts"})
    input_columns: list[str] | None = field(default=None, metadata={
        "help": "columns to keep (default: inferred from model.forward)"})
    progress: bool = field(default=True, metadata={"help": "progress bars for the sweeps"})
    log_summary: bool = field(default=True, metadata={
        "help": "log the per-class score summary at the end of training"})

    def __post_init__(self):
        check_choice("mode", self.mode, MODES)
        check_choice("loss_type", self.loss_type, LOSS_TYPES)
        check_choice("missing_query_class", self.missing_query_class, ("error", "global"))
        check_choice("unseen", self.unseen, UNSEEN)
        check_choice("if_exists", self.if_exists, IF_EXISTS)
        for name in ("record_initial", "streaming", "remove_unused_columns", "progress",
                     "log_summary", "label_free"):
            check_bool(name, getattr(self, name))
        check_int("every_n_epochs", self.every_n_epochs, min_val=1)
        if self.sweep_batch_size is not None:
            check_int("sweep_batch_size", self.sweep_batch_size, min_val=1)
        if self.sweep_num_workers is not None:
            check_int("sweep_num_workers", self.sweep_num_workers, min_val=0)
        for name in ("label_column", "group_column"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                raise TypeError(f"{name} must be a str, not {type(value).__name__}.")
        chosen = [f"{name}={getattr(self, name)!r}" for name in ("label_column", "group_column")
                  if getattr(self, name) is not None] + (["label_free=True"] if self.label_free
                                                         else [])
        if len(chosen) > 1:
            raise ValueError(
                f"{' and '.join(chosen)} both say how samples are grouped; pass one: "
                f"label_column= (classes, Algorithm 1), group_column= (a task, source or domain "
                f"column) or label_free=True (one group)."
            )
        if self.input_columns is not None:
            if isinstance(self.input_columns, str):
                raise TypeError(f"input_columns == {self.input_columns!r}: pass a list of names.")
            self.input_columns = list(self.input_columns)
        self.signals = check_signals(self.signals, mode=self.mode, streaming=self.streaming)
        if self.feature_module is not None and not (
                isinstance(self.feature_module, str) or hasattr(self.feature_module,
                                                                "named_modules")):
            raise TypeError(
                f"feature_module must be the name of a module (str) or the module itself, not "
                f"{type(self.feature_module).__name__}."
            )

    @property
    def final_signals(self) -> list[str]:
        """The requested end-of-training signals."""
        return [s for s in self.signals if s in FINAL_SIGNALS]

    def to_dict(self) -> dict:
        """The options as a JSON-able dict (kept in the store's metadata).

        Examples
        --------
        >>> RecorderConfig().to_dict()["mode"]
        'sweep'
        """
        out = dataclasses.asdict(self)
        if self.feature_module is not None and not isinstance(self.feature_module, str):
            out["feature_module"] = type(self.feature_module).__name__
        return out


def check_signals(signals, *, mode: str, streaming: bool) -> list[str]:
    """The requested signals as a list without duplicates, or an error naming the fix.

    Examples
    --------
    >>> check_signals(["margin", "margin", "embeddings"], mode="sweep", streaming=False)
    ['margin', 'embeddings']
    """
    if isinstance(signals, str):
        raise TypeError(f"signals == {signals!r}: pass a list of names, e.g. signals=[{signals!r}].")
    names = list(dict.fromkeys(signals or ()))
    valid = SNAPSHOT_SIGNALS + FINAL_SIGNALS
    unknown = [n for n in names if n not in valid]
    if unknown:
        raise ValueError(f"signals contains {unknown}, each must be one of {list(valid)}.")
    if names and streaming:
        raise ValueError(
            f"signals == {names} needs the store, but streaming=True keeps none. Record with "
            f"streaming=False to record signals."
        )
    per_snapshot = [n for n in names if n in SNAPSHOT_SIGNALS]
    if per_snapshot and mode != "sweep":
        raise ValueError(
            f"signals {per_snapshot} are taken from the eval-mode sweep of every snapshot, but "
            f"mode == {mode!r} takes the training losses from the training forward passes. Use "
            f"mode='sweep', or record only {list(FINAL_SIGNALS)} (a sweep at the end)."
        )
    return names


def make_config(config: RecorderConfig | None, options: dict) -> RecorderConfig:
    """``config`` with ``options`` (keyword arguments of the recorder or callback) applied.

    Examples
    --------
    >>> make_config(None, {"mode": "train_pass"}).mode
    'train_pass'
    >>> make_config(RecorderConfig(every_n_epochs=2), {"streaming": True}).every_n_epochs
    2
    >>> make_config(None, {"epochs": 3})
    Traceback (most recent call last):
    ...
    TypeError: Unknown recording option(s) ['epochs']; the options are the fields of RecorderConfig: ...
    """
    if config is not None and not isinstance(config, RecorderConfig):
        raise TypeError(f"config must be a RecorderConfig, not {type(config).__name__}.")
    known = {f.name for f in dataclasses.fields(RecorderConfig)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise TypeError(
            f"Unknown recording option(s) {unknown}; the options are the fields of "
            f"RecorderConfig: {sorted(known)}."
        )
    if config is None:
        return RecorderConfig(**options)
    return dataclasses.replace(config, **options) if options else config
