"""`RunArguments`: the options of ``cld-hf run`` (``HfArgumentParser``-ready), validated once."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

__all__ = ["RunArguments", "check_run", "default_threads", "default_learning_rate",
           "signals_needed", "NOISE_COLUMN", "ORIGINAL_LABEL_COLUMN"]

NOISE_COLUMN = "label_is_noisy"
ORIGINAL_LABEL_COLUMN = "original_label"


@dataclass
class RunArguments:
    """Options of ``cld-hf run`` (and of ``HfArgumentParser`` in scripts); see each field's help.

    > Data: ``dataset``, ``train_split``, ``test_split``, ``task``, ``image_column``,
    ``text_column``, ``image_size``, ``max_length``, ``label_noise`` (the label column is
    ``RecorderConfig.label_column``, shared with the recording).

    > Method: ``query_fraction``, ``seed``, ``fractions``, ``balance``, ``proxy_epochs``, ``methods``.

    > Models and training: ``model``, ``target_epochs``, ``seeds``, ``batch_size``,
    ``learning_rate``, ``full_baseline``, ``threads``.

    > Output: ``output_dir``, ``overwrite_output_dir``, ``push_to_hub``, ``hub_private``,
    ``plots``.

    Examples
    --------
    >>> RunArguments(fractions=[0.2], seeds=2).fractions
    [0.2]
    >>> RunArguments(query_fraction=1.5)
    Traceback (most recent call last):
    ...
    ValueError: query_fraction == 1.5, must be in (0, 1).
    >>> RunArguments(methods=["cld", "random", "forgetting", "el2n"]).methods
    ['cld', 'random', 'forgetting', 'el2n']
    """

    # Data
    dataset: str = field(default="digits", metadata={
        "help": "built-in 'digits' (scikit-learn) or 'mnist1d', a save_to_disk directory "
                "(images, image arrays or nested lists, or a text column), an imagefolder "
                "directory, a Hub dataset id (when online), or 'stdlib-docstrings' (causal-lm)"})
    train_split: str = field(default="train", metadata={"help": "split to select from"})
    test_split: str = field(default="test", metadata={
        "help": "split for test accuracy (if missing, 20%% of the training split is held out)"})
    task: Literal["auto", "image-classification", "text-classification", "causal-lm"] = field(
        default="auto", metadata={
            "help": "what the models learn; auto: image-classification when the data has an "
                    "image column, text-classification when it has a 'text' column, causal-lm "
                    "for --dataset stdlib-docstrings"})
    image_column: str | None = field(default=None, metadata={
        "help": "column of the images (PIL, arrays or nested lists; default: the Image "
                "column, else pixel_values, image, img)"})
    text_column: str | None = field(default=None, metadata={
        "help": "column of the texts (default: text, then sentence)"})
    image_size: int = field(default=32, metadata={
        "help": "side of the square images fed to the model when the data holds PIL images "
                "(arrays keep their size)"})
    max_length: int = field(default=128, metadata={
        "help": "text: longest input in tokens (longer texts are truncated)"})
    label_noise: float = field(default=0.0, metadata={
        "help": "share of training labels flipped to another class (recorded in a column)"})
    # Method
    query_fraction: float = field(default=0.1, metadata={
        "help": "share of each class held out as the CLD query set"})
    seed: int = field(default=0, metadata={"help": "seed of the query split, noise and proxy"})
    fractions: list[float] = field(default_factory=lambda: [0.1, 0.3], metadata={
        "help": "coreset fractions (one or several)"})
    balance: Literal["equal", "proportional"] = field(default="equal", metadata={
        "help": "per-class budgets: 'equal' (the paper's) or 'proportional'"})
    proxy_epochs: int = field(default=15, metadata={"help": "proxy training epochs"})
    methods: list[str] = field(default_factory=lambda: ["cld", "random"], metadata={
        "help": "coreset methods to compare, each with the same class budgets: 'cld' (top-k), "
                "'cld_noise_adaptive', 'cld_coverage' (cld_hf.strategies) and any of "
                "random forgetting el2n aum ccs_aum dyn_unc dual dual_beta herding moderate "
                "kcenter graphcut d2_pruning cal grand craig tdds (cld_hf.baselines.METHODS); the "
                "proxy run records the signals they need in its loss sweeps"})
    # Models and training
    model: str | None = field(default=None, metadata={
        "help": "local directory or Hub id of an image- or text-classification model (and its "
                "tokenizer) for proxy and target; default: a small ResNet (images) or BERT "
                "(text, with a WordPiece tokenizer trained on the training split) built from a "
                "config"})
    target_epochs: int = field(default=20, metadata={"help": "target training epochs"})
    seeds: int = field(default=3, metadata={"help": "target runs (seeds) per coreset"})
    batch_size: int = field(default=64, metadata={"help": "per-device batch size"})
    learning_rate: float | None = field(default=None, metadata={
        "help": "AdamW learning rate (default: 1e-2 for the built-in ResNet, 1e-3 for the "
                "built-in BERT, 5e-5 to fine-tune a --model)"})
    full_baseline: bool = field(default=True, metadata={
        "help": "also train the target on the full training set (--no-full-baseline skips it)"})
    # Output
    output_dir: str = field(default="cld_run", metadata={"help": "where everything is written"})
    overwrite_output_dir: bool = field(default=False, metadata={
        "help": "write into an existing non-empty output directory"})
    push_to_hub: str | None = field(default=None, metadata={
        "help": "dataset repo id to push the first coreset to (the proxy goes to <id>-proxy)"})
    hub_private: bool = field(default=False, metadata={"help": "make pushed repos private"})
    plots: bool = field(default=True, metadata={
        "help": "write the PNG plots (--no-plots skips them)"})
    threads: int | None = field(default=None, metadata={
        "help": "torch CPU threads (default: one fewer than the CPU cores, at least 1, so that "
                "a second busy process does not make every step wait for a core)"})

    def __post_init__(self):
        from .inputs import TASKS

        if self.task not in TASKS:
            raise ValueError(f"task == {self.task!r}, must be one of {list(TASKS)}.")
        if not self.dataset:
            raise ValueError("dataset is empty; pass a built-in name (digits, mnist1d), a "
                             "directory or a Hub id.")
        if not self.output_dir:
            raise ValueError("output_dir is empty; pass a directory, e.g. --output-dir cld_run.")
        if self.learning_rate is not None and not self.learning_rate > 0:
            raise ValueError(f"learning_rate == {self.learning_rate}, must be > 0.")
        if self.image_size < 1:
            raise ValueError(f"image_size == {self.image_size}, must be >= 1.")
        if self.max_length < 8:
            raise ValueError(f"max_length == {self.max_length}, must be >= 8 tokens.")
        if not 0.0 < self.query_fraction < 1.0:
            raise ValueError(f"query_fraction == {self.query_fraction}, must be in (0, 1).")
        if not 0.0 <= self.label_noise < 1.0:
            raise ValueError(f"label_noise == {self.label_noise}, must be in [0, 1).")
        if not self.fractions:
            raise ValueError("fractions is empty; give at least one, e.g. --fractions 0.1 0.3.")
        for f in self.fractions:
            if not 0.0 < f <= 1.0:
                raise ValueError(f"fractions contains {f}, each must be in (0, 1].")
        if self.balance not in ("equal", "proportional"):
            raise ValueError(f"balance == {self.balance!r}, must be 'equal' or 'proportional'.")
        if self.push_to_hub is not None and self.push_to_hub.count("/") != 1:
            raise ValueError(
                f"push_to_hub == {self.push_to_hub!r}, must be a dataset repo id "
                f"'<namespace>/<name>' (the proxy model goes to '<namespace>/<name>-proxy')."
            )
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"threads == {self.threads}, must be >= 1.")
        for name in ("proxy_epochs", "target_epochs", "seeds", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} == {getattr(self, name)}, must be >= 1.")
        if self.proxy_epochs < 2:
            raise ValueError(
                f"proxy_epochs == {self.proxy_epochs}: CLD needs at least 3 loss snapshots "
                f"(the initial one and 2 epochs); use proxy_epochs >= 2."
            )
        from .comparison import check_methods, min_snapshots

        self.methods = check_methods(self.methods)
        self.fractions = [float(f) for f in self.fractions]
        if len(set(self.fractions)) != len(self.fractions):
            raise ValueError(f"fractions == {self.fractions} lists a fraction more than once; "
                             f"give each once.")
        need = min_snapshots(self.methods)
        if self.proxy_epochs + 1 < need:
            windowed = [m for m in self.methods if min_snapshots([m]) == need]
            raise ValueError(
                f"proxy_epochs == {self.proxy_epochs} gives {self.proxy_epochs + 1} snapshots, but "
                f"methods {windowed} use a window of {need} snapshots; use proxy_epochs >= "
                f"{need - 1} or drop them from methods."
            )


def check_run(args: RunArguments, config) -> None:
    """Cross-checks of the run's options and the recording options (``RecorderConfig``).

    Examples
    --------
    >>> from cld_hf.recording.config import RecorderConfig
    >>> check_run(RunArguments(methods=["cld", "forgetting"]), RecorderConfig(mode="train_pass"))
    Traceback (most recent call last):
    ...
    ValueError: mode == 'train_pass', but methods ['cld', 'forgetting'] read training dynamics ...
    """
    if config.mode != "sweep" and any(
            s not in ("embeddings", "probs") for s in signals_needed(args.methods)):
        raise ValueError(
            f"mode == {config.mode!r}, but methods {args.methods} read training dynamics "
            f"recorded in the eval sweeps: use --mode sweep."
        )
    snapshots = args.proxy_epochs // config.every_n_epochs + int(config.record_initial)
    if snapshots < 3:
        raise ValueError(
            f"proxy_epochs == {args.proxy_epochs} with every_n_epochs == {config.every_n_epochs} "
            f"and record_initial == {config.record_initial} records {snapshots} snapshot(s); CLD "
            f"needs at least 3 (2 loss differences): train the proxy longer."
        )


def default_learning_rate(args: RunArguments, task: str) -> float:
    """``args.learning_rate``, else the default of the model the run trains.

    Examples
    --------
    >>> default_learning_rate(RunArguments(), "image-classification")
    0.01
    >>> default_learning_rate(RunArguments(), "text-classification")
    0.001
    >>> default_learning_rate(RunArguments(model="bert-base-uncased"), "text-classification")
    5e-05
    """
    if args.learning_rate is not None:
        return float(args.learning_rate)
    if args.model is not None:
        return 5e-5
    return 1e-3 if task == "text-classification" else 1e-2


def default_threads() -> int:
    """torch CPU threads for a run: one fewer than the cores this process may use, at least 1.

    With every core busy in torch's own thread pool, one other busy process (a second job, a
    test suite) makes each step wait for a core: on two cores a training step took ~40x longer
    with two threads than with one (the README's threads benchmark).

    Examples
    --------
    >>> default_threads() >= 1
    True
    """
    import os

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, (cores or 1) - 1)


def signals_needed(methods) -> tuple[str, ...]:
    """The recorder signals of ``methods`` (:func:`cld_hf.comparison.signals_for_methods`).

    Examples
    --------
    >>> signals_needed(["cld", "random", "forgetting", "herding"])
    ('correct', 'embeddings')
    """
    from .comparison import signals_for_methods

    return signals_for_methods(methods)


